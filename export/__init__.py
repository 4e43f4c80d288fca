"""edgeae.export: PyTorch models to ONNX, ORT and TFLite flight artifacts (fp32 and int8), with parity proofs.

Installed as ``edgeae.export`` (the folder sits at the repository top); needs the ``export`` extra.
"""

import os as _os

# onnxruntime's telemetry off before it can be imported (edgeae/__init__.py says why), also where this folder is
# imported by its top-level name (tests, scripts run from the repository root); a value the user set is kept
_os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

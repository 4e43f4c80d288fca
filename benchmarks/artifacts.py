"""Zoo models as flight artifacts for the benchmarks: exported (and parity-checked) once, then reused."""

from __future__ import annotations

import os
from pathlib import Path

ART_DIR = Path(os.environ.get("EDGEAE_BENCH_ARTIFACTS", "runs/bench-artifacts"))
SUFFIX = {"cae": "", "cae-encoder": "-encoder", "cae-decoder": "-decoder", "vae": ""}


def zoo_artifact(zoo_name: str, kind: str = "cae", fmt: str = "onnx", precision: str = "fp32") -> Path:
    """``ART_DIR/<zoo>/<zoo><suffix>.<precision>.<fmt>``; exports every ONNX and TFLite route when missing."""
    from edgeae.export.api import ExportConfig, export_model

    path = ART_DIR / zoo_name / f"{zoo_name}{SUFFIX[kind]}.{precision}.{fmt}"
    if not path.is_file():
        export_model(zoo_name, ART_DIR / zoo_name, ExportConfig(formats=("onnx", "tflite"), latency=False))
    return path

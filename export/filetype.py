"""What an artifact file is, from its first bytes: a plain refusal before a runtime's parser error.

onnxruntime says "No graph was found in the protobuf" for an empty ``.onnx`` and "Protobuf parsing failed" for
a TFLite file named ``.onnx``; :func:`check_artifact_file` says "0-byte file" and "this is a TFLite flatbuffer
(TFL3), not ONNX" instead. The export tools (``latency``, ``tail``, ``board check``) call it on every file.
"""

from __future__ import annotations

import os
from pathlib import Path

from edgeae.firmware_sim.runtime import IDENTIFIERS, sniff  # the runtime's own first-bytes check

EXPECTED = {".onnx": "onnx", ".ort": "ort", ".tflite": "tflite"}
WHAT = {"onnx": "ONNX", "ort": "ORT format", "tflite": "TFLite"}


def check_artifact_file(path: str | os.PathLike[str]) -> None:
    """Refuse a file that cannot be the artifact its suffix names (ValueError / FileNotFoundError saying what
    it is instead); pass anything else on to the runtime, which checks the rest."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file")
    want = EXPECTED.get(p.suffix)
    if want is None:
        raise ValueError(f"{p}: not an artifact (expected .onnx, .ort or .tflite)")
    with open(p, "rb") as fh:
        head = fh.read(8)
    got = sniff(head)
    if got == "empty":
        raise ValueError(f"{p}: 0-byte file (an interrupted copy or export?)")
    if got == want or (got == "unknown" and want == "onnx"):
        return
    if got == "unknown":
        tag = {"ort": "ORTM", "tflite": "TFL3"}[want]
        raise ValueError(f"{p}: not {WHAT[want]} (no {tag} identifier at byte 4: a damaged or different file)")
    what = IDENTIFIERS[head[4:8]][1] if got in ("tflite", "ort") else "an ONNX protobuf"
    raise ValueError(f"{p}: this is {what}, not {WHAT[want]}; rename it to {p.stem}.{got}")

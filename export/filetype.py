"""What an artifact file is, from its first bytes: a plain refusal before a runtime's parser error.

onnxruntime says "No graph was found in the protobuf" for an empty ``.onnx`` and "Protobuf parsing failed" for
a TFLite or ORT-format file named ``.onnx``; :func:`check_artifact_file` says "0-byte file" and "this is a TFLite
flatbuffer (TFL3), not ONNX" instead. The export tools (``latency``, ``tail``, ``board check``) call it on every
file. The check is the flight runtime's own (:func:`edgeae.firmware_sim.artifact_file.check_artifact_file`), so
the export refuses exactly the files ``firmware-sim`` refuses; only the words are the export's (what to rename).
"""

from __future__ import annotations

import os
from pathlib import Path

from edgeae.firmware_sim.artifact_file import IDENTIFIERS, ArtifactError
from edgeae.firmware_sim.artifact_file import check_artifact_file as flight_check

WHAT = {"onnx": "ONNX", "ort": "ORT format", "tflite": "TFLite"}
TAGS = {"ort": "ORTM", "tflite": "TFL3"}


def check_artifact_file(path: str | os.PathLike[str]) -> None:
    """Refuse a file that cannot be the artifact its suffix names (ValueError / FileNotFoundError saying what
    it is instead); pass anything else on to the runtime, which checks the rest."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file")
    try:
        flight_check(p)
    except ArtifactError as exc:
        want, got = exc.expected, exc.found
        if want is None or got is None:  # not a suffix/content mismatch (an unknown suffix)
            raise ArtifactError(f"{p}: not an artifact (expected .onnx, .ort or .tflite)") from None
        if got == "empty":
            msg = f"{p}: 0-byte file (an interrupted copy or export?)"
        elif got == "unknown":
            msg = f"{p}: not {WHAT[want]} (no {TAGS[want]} identifier at byte 4: a damaged or different file)"
        else:
            what = next((text for fmt, text in IDENTIFIERS.values() if fmt == got), "an ONNX protobuf")
            msg = f"{p}: this is {what}, not {WHAT[want]}; rename it to {p.stem}.{got}"
        raise ArtifactError(msg, expected=want, found=got) from None

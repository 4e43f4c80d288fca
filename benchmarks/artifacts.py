"""Zoo models as flight artifacts for the benchmarks: exported (and parity-checked) once, then reused.

The cache folder of a model carries a stamp (the checkpoint's hash and the export choices that change the
files, e.g. the VAE's TFLite static batch and decoder form); a stale folder is exported again, so a cached
artifact is always the one a fresh clone would build.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

ART_DIR = Path(os.environ.get("EDGEAE_BENCH_ARTIFACTS", "runs/bench-artifacts"))
SUFFIX = {"cae": "", "cae-encoder": "-encoder", "cae-decoder": "-decoder", "vae": ""}
STAMP = ".export-stamp"


@functools.cache
def export_stamp(zoo_name: str) -> str:
    """What the cached artifacts of ``zoo_name`` were built from (the checkpoint is hashed once per process)."""
    from edgeae.export.api import ExportConfig
    from edgeae.export.graphs import VAE_EXPORT_FORM, VAE_TFLITE_BATCH

    from edgeae.predictor import resolve_model_path

    digest = hashlib.sha256(Path(resolve_model_path(zoo_name, "checkpoint")).read_bytes()).hexdigest()
    bits = 7 if ExportConfig().reduce_range else 8
    return (
        f"checkpoint {digest[:16]}; vae tflite static batch {VAE_TFLITE_BATCH}; vae form {VAE_EXPORT_FORM}; "
        f"int8 onnx weights {bits}-bit; calibration from the model's own training data"  # since session 31
    )


def is_fresh(zoo_name: str) -> bool:
    """Whether the cached folder of ``zoo_name`` was built from today's checkpoint and export layout."""
    stamp = ART_DIR / zoo_name / STAMP
    return stamp.is_file() and stamp.read_text() == export_stamp(zoo_name)


def write_stamp(zoo_name: str) -> None:
    (ART_DIR / zoo_name / STAMP).write_text(export_stamp(zoo_name))


def zoo_artifact(zoo_name: str, kind: str = "cae", fmt: str = "onnx", precision: str = "fp32") -> Path:
    """``ART_DIR/<zoo>/<zoo><suffix>.<precision>.<fmt>``; exports every ONNX and TFLite route when missing or
    built from another checkpoint or export layout."""
    from edgeae.export.api import ExportConfig, export_model

    folder = ART_DIR / zoo_name
    path = folder / f"{zoo_name}{SUFFIX[kind]}.{precision}.{fmt}"
    if not path.is_file() or not is_fresh(zoo_name):
        export_model(zoo_name, folder, ExportConfig(formats=("onnx", "tflite"), latency=False))
        write_stamp(zoo_name)
    return path

"""What the ground station writes for a product: its images (atomically, all or none), strict JSON, the file
names, and the reasons a product fails under (:class:`~.station.GroundStation` writes with these)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from .limits import LimitError

NAMES_LISTED = 1000
"""Products a report names as not decoded (all are counted)."""


class OutputError(OSError):
    """A product's output file could not be written: ``path`` is the file, ``errno`` the system's reason."""

    def __init__(self, path: Path, exc: OSError) -> None:
        # no errno (numpy, a library's own message): its text, without the file name edgeae.atomic added
        why = os.strerror(exc.errno) if exc.errno else (exc.strerror or str(exc)).removeprefix(f"cannot write {path}: ")
        super().__init__(exc.errno, f"cannot write {path}: {why}")
        self.path = path

    def __str__(self) -> str:
        return str(self.strerror)


PSNR_CAP_DB = 120.0
"""The highest PSNR a report gives (an MSE of 1e-12 on [0, 1] samples): an exact rebuild reports this, not
Infinity, which JSON cannot hold."""


def strict_json(obj: Any) -> str:
    """``obj`` as indented, strict JSON: a NaN or infinite float (which JSON cannot hold) is written as null."""
    return json.dumps(_finite(obj), indent=2, default=str, allow_nan=False)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def image_ext(image: np.ndarray) -> str:
    """``.png`` for grey and RGB, ``.tif`` for any other channel count (PNG holds 1 or 3)."""
    return ".png" if image.ndim == 2 or image.shape[2] in (1, 3) else ".tif"


def failure_reason(exc: BaseException) -> str:
    """The counter a failed product is reported under: ``limit``, ``decode``, ``memory``, ``io`` or ``internal``."""
    if isinstance(exc, LimitError):
        return exc.reason
    if isinstance(exc, MemoryError):
        return "memory"
    if isinstance(exc, OSError):
        return "io"
    if isinstance(exc, ValueError):  # DecodeError, MetadataError, shape mismatches in the decoder
        return "decode"
    return "internal"


def product_name(key: tuple[str, int, int]) -> str:
    """File stem of a product: frame_<id>, latent_<id>, patch_<id>_<index> or telemetry_<id>."""
    kind, frame_id, index = key
    return {
        "sparse": f"frame_{frame_id}",
        "latent": f"latent_{frame_id}",
        "patch": f"patch_{frame_id}_{index}",
        "telemetry": f"telemetry_{frame_id}",
    }[kind]


def write_images(out: Path, images: list[tuple[str, np.ndarray, int]]) -> None:
    """Write one product's images (file name in ``out``, array, bit depth), each atomically; when one cannot
    be written, the ones written before it are removed (a failed product leaves no file that looks complete)
    and :class:`OutputError` names the file."""
    from edgeae.imageio import write_image

    written: list[Path] = []
    path = out
    try:
        for name, array, depth in images:
            path = out / name
            write_image(path, array, bit_depth=depth)
            written.append(path)
    except BaseException as exc:
        for f in written:
            f.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise OutputError(path, exc) from exc
        raise

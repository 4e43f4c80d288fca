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


REPORT_MAX_DEPTH = 128
"""Deepest nesting :func:`strict_json` writes (a report holds a telemetry record, at most
``flat_decode.TELEMETRY_MAX_DEPTH`` deep, 3 levels down in ``stream.json``): deeper is a ``ValueError``, never a
``RecursionError`` out of the walk."""


def strict_json(obj: Any) -> str:
    """``obj`` as indented, strict JSON: a NaN or infinite float (which JSON cannot hold) is written as null.
    ``ValueError`` when ``obj`` is nested deeper than :data:`REPORT_MAX_DEPTH`."""
    return json.dumps(_finite(obj, 0), indent=2, default=str, allow_nan=False)


def _finite(obj: Any, depth: int) -> Any:
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, dict | list | tuple) and depth >= REPORT_MAX_DEPTH:
        raise ValueError(f"report nested deeper than {REPORT_MAX_DEPTH} levels: not written as JSON")
    if isinstance(obj, dict):
        return {k: _finite(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v, depth + 1) for v in obj]
    return obj


def image_ext(image: np.ndarray) -> str:
    """``.png`` for grey and RGB, ``.tif`` for any other channel count (PNG holds 1 or 3)."""
    return ".png" if image.ndim == 2 or image.shape[2] in (1, 3) else ".tif"


def sample_scaling(bit_depth: int) -> tuple[int, dict[str, Any]]:
    """The bit depth a ground image of ``bit_depth``-bit samples is written at, and how its samples ``v`` give the
    sent counts back: 8 bits up to 8 (``raw = v`` at 8), else 16 at full scale (a 12-bit frame's counts × 65535 /
    4095: the file reads back as the same image; its raw counts in a 16-bit file would read back 16× darker), from
    which ``raw = round(v * (2**bit_depth - 1) / (2**bits - 1))``, exact for every pixel that arrived. Frames and
    anomaly patches of one camera use the same scale; their reports record it (``output_samples``)."""
    bits = 16 if bit_depth > 8 else 8
    top, full = 2**bits - 1, 2**bit_depth - 1
    rule = "raw = v" if top == full else f"raw = round(v * {full} / {top})"
    return bits, {"bits": bits, "rule": f"{rule} (exact for the pixels received)", "scale": full}


PATCH_FILE_KEYS = ("output_samples", "pixels_received", "valid_map", "missing_pixels_written_as")
"""What a patch's report says about its written images (:func:`patch_images`): dropped when the files are removed."""


def patch_images(
    frame_id: int, header: dict, values: np.ndarray, received: np.ndarray
) -> tuple[list[tuple[str, np.ndarray, int]], dict[str, Any]]:
    """An anomaly patch's images (for :func:`write_images`) on its frame's scale (:func:`sample_scaling`) and what
    its report says about them. ``values``, ``received``: (size, size, C) counts and which arrived. A patch that
    arrived in part also gets a validity map (white = all the pixel's channels arrived; the others are written 0)."""
    bits, scaling = sample_scaling(header["bit_depth"])
    stem = f"patch_{frame_id}_{header['index']}"
    image = values.astype(np.float32) / np.float32(2 ** header["bit_depth"] - 1)  # as the frame's samples
    images: list[tuple[str, np.ndarray, int]] = [(f"{stem}{image_ext(image)}", image, bits)]
    whole = np.asarray(received.all(axis=2))
    rep: dict[str, Any] = {
        "bit_depth": header["bit_depth"],
        "output_samples": scaling,
        "pixels_received": int(whole.sum()),
    }
    if not whole.all():
        images.append((f"{stem}_valid.png", whole, 8))
        rep.update(valid_map=f"{stem}_valid.png", missing_pixels_written_as=0)
    return images, rep


def psnr_fields(orig: np.ndarray, recon: np.ndarray, known: np.ndarray | None) -> dict[str, Any]:
    """What a frame's report says of its rebuild ``recon`` against the original ``orig`` (both float32 (H, W, C)
    in [0, 1]): ``psnr`` (capped at :data:`PSNR_CAP_DB`: JSON has no Infinity), ``psnr_over`` (the pixels it
    covers), ``psnr_note`` when identical, and ``psnr_unknown_pixels`` over the pixels not ``known`` (bool
    (H, W)); else ``psnr_error`` (other shapes). A pixel NaN in ``orig`` holds no data
    (:func:`edgeae.ground.validity.mark_no_data`: the no-data rule of ``edgeae reconstruct``) and is left out of
    both, as ``edgeae reconstruct`` leaves it out of its PSNR."""
    if orig.shape != recon.shape:
        return {"psnr_error": f"original shape {orig.shape} differs from frame {recon.shape}"}
    from .validity import coverage

    valid = np.isfinite(orig).all(axis=2) if orig.ndim == 3 else np.isfinite(orig)
    if not valid.any():
        return {"psnr": None, "psnr_over": "no pixel: the original holds no data"}
    value = _banded_psnr(orig, recon, None if valid.all() else valid)
    # unrounded, as edgeae reconstruct's: a figure rounded here and again when printed read 24.59 beside its 24.60
    rep: dict[str, Any] = {"psnr": min(value, PSNR_CAP_DB) if not math.isnan(value) else None}
    rep["psnr_over"] = coverage(valid)
    if math.isinf(value) and value > 0:
        rep["psnr_note"] = f"identical to the original (PSNR infinite, reported as {PSNR_CAP_DB:g} dB)"
    if known is not None and not known.all():
        lost = ~known & valid
        if lost.any():  # MSE floored at the cap, as the PSNR
            mse = max(_banded_mse(orig, recon, lost, clip=True), 10 ** (-PSNR_CAP_DB / 10))
            rep["psnr_unknown_pixels"] = round(float(10 * np.log10(1.0 / mse)), 3)
    return rep


def _banded_psnr(orig: np.ndarray, recon: np.ndarray, valid: np.ndarray | None) -> float:
    """PSNR (dB, data range 1) of ``recon`` against ``orig`` over the ``valid`` pixels (None: all)."""
    mse = _banded_mse(orig, recon, valid)
    if not math.isfinite(mse):  # a NaN/inf sample of the rebuild among the pixels with data
        return math.nan
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


def _banded_mse(orig: np.ndarray, recon: np.ndarray, where: np.ndarray | None, clip: bool = False) -> float:
    """Mean squared error over the pixels ``where`` (None: all; ``clip``: ``recon`` clipped to [0, 1]) in float64,
    summed in row bands as :func:`edgeae.metrics.compare` sums (``edgeae reconstruct``'s PSNR: the same figure):
    no whole-frame float64 copy or fancy-index copy of the frame (review s36 r15 #1: 32 B a sample on a strip with
    no-data, 25 B without, now a band's)."""
    from edgeae.metrics import BAND_SAMPLES

    h = orig.shape[0]
    rows = max(1, BAND_SAMPLES // max(int(orig[0].size), 1))
    total, n = 0.0, 0
    for r0 in range(0, h, rows):
        a, b = orig[r0 : r0 + rows], recon[r0 : r0 + rows]
        if clip:
            b = np.clip(b, 0, 1)
        if where is not None:
            m = where[r0 : r0 + rows]
            a, b = a[m], b[m]
        d = b.astype(np.float64) - a.astype(np.float64)
        total += float(np.square(d).sum())
        n += int(d.size)
    return total / n if n else math.nan


def remove_images(out: Path, name: str) -> None:
    """Remove the images product ``name`` wrote into ``out`` (``<name>.png`` / ``.tif``, ``<name>_valid.png``),
    not its report."""
    for f in [*out.glob(f"{name}.*"), out / f"{name}_valid.png"]:
        if f.suffix != ".json":
            f.unlink(missing_ok=True)


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

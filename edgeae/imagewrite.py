"""Write images (PNG, JPEG, PGM/PPM, TIFF/BigTIFF) at 8 or 16 bits, atomically: :func:`write_image`.

The reading side, and the rest of the image I/O API, is :mod:`edgeae.imageio` (which re-exports this).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from edgeae._optional import require

log = logging.getLogger("edgeae.imageio")  # the name its warnings always had: a filter set for it still applies

WRITE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".pgm", ".ppm")


def write_image(path: str | os.PathLike[str], array: np.ndarray, *, bit_depth: int = 8, durable: bool = False) -> Path:
    """Write (H, W), (H, W, 1) or (H, W, 3) RGB to PNG/JPEG/PGM/PPM/TIFF; return the path.

    TIFF also takes any other channel count (H, W, C), written as C samples per pixel (multispectral).
    Float arrays are taken as [0, 1] (values outside are clipped; NaN written as 0, with a logged warning; an
    array reaching past 1.5, 0-255 data, is clipped with a warning naming its range) and quantised to
    ``bit_depth`` (8 or 16; JPEG is 8 only); uint8/uint16 arrays are written as they are, at their own depth
    (``bit_depth=16`` with uint8 is warned about: scale it first). An empty array is refused. TIFFs are written
    in strips of about 1 MB (so a reader can stream them), large ones as BigTIFF. The file is written atomically
    (:mod:`edgeae.atomic`): a failed write (a full disk) leaves no cut-off file, and its ``OSError`` names the
    file (with its errno, except a TIFF's: numpy writes its samples, uncopied, and gives none). ``durable``: also
    fsync the file and its folder (a power loss then cannot leave an empty file; off by default: it costs
    milliseconds a file).
    """
    p = Path(os.fspath(path))
    ext = p.suffix.lower()
    if ext not in WRITE_EXTENSIONS:
        raise ValueError(f"{p}: cannot write {ext or 'no extension'!r}; use one of {', '.join(WRITE_EXTENSIONS)}")
    arr = np.asarray(array)
    if arr.size == 0:
        raise ValueError(f"{p}: the array is empty (shape {arr.shape}): no image to write")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    tiff = ext in (".tif", ".tiff")
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3 and not tiff):
        raise ValueError(
            f"{p}: array must be (H, W), (H, W, 1) or (H, W, 3), got {arr.shape} (TIFF holds any channel count)"
        )
    if arr.dtype.kind == "f":
        if bit_depth not in (8, 16):
            raise ValueError(f"{p}: bit_depth must be 8 or 16, got {bit_depth}")
        top = 2**bit_depth - 1
        dtype = np.uint8 if bit_depth == 8 else np.uint16
        finite = np.isfinite(arr)
        bad = int(arr.size - np.count_nonzero(finite))
        if bad:  # a NaN or inf sample has no pixel value: say how many were written as black (or white, +inf)
            log.warning("%s: %d NaN/inf samples written as 0 (NaN, -inf) or full scale (+inf)", p, bad)
        hi = float(np.max(arr, where=finite, initial=-np.inf))
        if hi > 1.5:  # 0-255 (or raw count) data: clipped to [0, 1] it would be written nearly all white
            lo = float(np.min(arr, where=finite, initial=np.inf))
            log.warning(
                "%s: float samples span [%.4g, %.4g] but are written as [0, 1] (%d samples above 1 clipped to "
                "white); divide by 255 (2**bits - 1) first, or pass uint8/uint16 samples",
                p,
                lo,
                hi,
                int(np.count_nonzero(arr > 1.0)),
            )
        arr = np.round(np.clip(np.nan_to_num(arr, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0) * top).astype(dtype)
    elif arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"{p}: write float [0, 1], uint8 or uint16 arrays, got {arr.dtype}")
    elif arr.dtype == np.uint8 and bit_depth == 16:
        log.warning(
            "%s: uint8 samples are written at 8 bits (bit_depth=16 applies to float arrays); for a 16-bit file pass "
            "uint16 (e.g. array.astype(np.uint16) * 257) or floats in [0, 1]",
            p,
        )
    if ext in (".jpg", ".jpeg") and arr.dtype != np.uint8:
        raise ValueError(f"{p}: JPEG holds 8-bit samples only; write PNG or TIFF for 16-bit")
    if ext == ".pgm" and arr.ndim == 3:
        raise ValueError(f"{p}: PGM is grey only; write .ppm for RGB")
    if ext == ".ppm" and arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    p.parent.mkdir(parents=True, exist_ok=True)
    from edgeae.atomic import atomic_path  # the file appears whole or not at all (a full disk, Ctrl-C)

    if ext in (".tif", ".tiff"):
        tifffile = require("tifffile")
        photometric = "rgb" if arr.ndim == 3 and arr.shape[2] == 3 else "minisblack"
        # samples interleaved per pixel: without it tifffile takes the first axis of an (H, W, C) array whose C is
        # not 3 as pages (30 pages of 20 × 4); the extra samples are written unspecified (bands, not alpha)
        layout = {"planarconfig": "contig"} if arr.ndim == 3 else {}
        # to the path, so tifffile writes the samples with numpy's tofile (no copy of the image; on a full disk its
        # error has no errno, and atomic_path names the file); through a file object it would copy them first
        # strips of about 1 MB (tifffile's default is one strip of the whole image), so a reader can stream them
        rows = max(1, 2**20 // (arr.nbytes // arr.shape[0]))
        with atomic_path(p, durable=durable) as tmp:
            tifffile.imwrite(tmp, arr, photometric=photometric, bigtiff=arr.nbytes > 2**31, rowsperstrip=rows, **layout)
        return p
    cv2 = require("cv2")
    bgr = arr[:, :, ::-1] if arr.ndim == 3 else arr
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(bgr))
    if not ok:
        raise ValueError(f"{p}: OpenCV could not encode {arr.dtype} {arr.shape} as {ext}")
    with atomic_path(p, durable=durable) as tmp, open(tmp, "wb") as f:
        f.write(buf)  # the encoded bytes, uncopied (not buf.tofile: its OSError on a full disk has no errno)
    return p

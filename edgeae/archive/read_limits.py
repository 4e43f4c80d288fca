"""The bounds on what a read of an archive product allocates, each checked before anything large is: a window of rows
over the read limit (``EDGEAE_MAX_IMAGE_BYTES``, :func:`edgeae.archive.gdal_env.max_window_bytes`) is refused, a
product whose last samples cannot be read (a raw file or a JPEG 2000 file cut short) is refused at open, and a
whole-product read obeys the decode limits (:class:`edgeae.imagedecode.ImageLimits`). Each check takes the open
:class:`edgeae.archive.reader.ProductReader`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from edgeae._headers import ImageReadError
from edgeae._optional import require
from edgeae.archive.gdal_env import _open_env, dataset_files, dataset_message, max_window_bytes
from edgeae.archive.open_checks import RAW_DRIVERS, check_jp2

if TYPE_CHECKING:
    from edgeae.archive.reader import ProductReader

_JP2_SUFFIXES = (".jp2", ".j2k", ".j2c", ".jpx", ".jpf")
LAST_SAMPLES = 64  # samples of the last line read at open: enough to find a short file, bounded whatever the width


def _size(n: int) -> str:
    for unit, k in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << k:
            return f"{n / (1 << k):.1f} {unit}"
    return f"{n} bytes"


def check_window(r: ProductReader, y0: int, y1: int) -> int:
    """Bytes of a read of rows [y0, y1) of ``r``, refused over :func:`max_window_bytes` before anything is allocated."""
    nbytes = (y1 - y0) * r.width * len(r.bands) * r.raw_dtype.itemsize
    cap = max_window_bytes()
    if nbytes > cap:
        raise ImageReadError(
            f"{r.path}: reading rows {y0}..{y1} takes {_size(nbytes)} ({y1 - y0} × {r.width} × "
            f"{len(r.bands)} samples of {r.raw_dtype}), over the {_size(cap)} read limit "
            "(EDGEAE_MAX_IMAGE_BYTES)"
        )
    return nbytes


def check_last_line(r: ProductReader) -> None:
    """Refuse at open a raw product whose last samples cannot be read, or a JPEG 2000 cut short; reads at most
    :data:`LAST_SAMPLES` samples (the end of the last line of the last band: the end of the data in every
    interleaving), so nothing the size of a line is allocated before the limits are checked."""
    check_window(r, r.height - 1, r.height)  # for every driver: a line too wide is refused as such
    files = dataset_files(r.ds)
    for f in files:  # a JPEG 2000 product, or the one a PDS3 COMPRESSED_FILE names
        if Path(f).suffix.lower() in _JP2_SUFFIXES or (r.driver == "JP2OpenJPEG" and f == files[0]):
            check_jp2(r.path, Path(f))
    if r.driver not in RAW_DRIVERS or r._moved is not None:  # compressed: a line can mean many tiles;
        return  # a relocated PDS3 image was checked to fit (formats.check_complete)
    rasterio = require("rasterio")
    from rasterio.windows import Window

    k = min(r.width, LAST_SAMPLES)
    try:
        with _open_env(**r._opts):
            r.ds.read([r.count], window=Window(r.width - k, r.height - 1, k, 1))
    except (rasterio.errors.RasterioIOError, UnicodeDecodeError) as exc:
        raise ImageReadError(
            f"{r.path}: truncated or corrupt: its last line cannot be read ({dataset_message(r.ds, exc)})"
        ) from exc


def check_decode_limits(r: ProductReader) -> None:
    """A whole-product read obeys the decoded-size limits of :mod:`edgeae.imageio` (streaming does not need to)."""
    try:
        from edgeae.imagedecode import ImageLimits
    except ImportError:  # an edgeae without decode limits
        return
    lim = ImageLimits.from_env()
    pixels = r.height * r.width
    nbytes = pixels * len(r.bands) * 4  # float32 pixels
    if pixels > lim.max_pixels or nbytes > lim.max_bytes:
        raise ImageReadError(
            f"{r.path}: {r.height}×{r.width}×{len(r.bands)} is over the decode limits ({lim.max_pixels} pixels, "
            f"{lim.max_bytes} bytes; EDGEAE_MAX_IMAGE_PIXELS / EDGEAE_MAX_IMAGE_BYTES): stream it "
            "(edgeae.strips.iter_patches, edgeae scan, edgeae score) instead of reading it whole"
        )

"""The bounds on what a read of an archive product allocates, each checked before anything large is: a window of rows
over the read limit (``EDGEAE_MAX_IMAGE_BYTES``, :func:`edgeae.archive.gdal_env.max_window_bytes`) is refused, a
product whose last samples cannot be read (a raw file or a JPEG 2000 file cut short) is refused at open, and a
whole-product read obeys the decode limits (:class:`edgeae.imagedecode.ImageLimits`). Each check takes the open
:class:`edgeae.archive.reader.ProductReader`.

A read of a whole image band by band (:mod:`edgeae.strips`: ``edgeae scan``, ``edgeae score``), of an archive product
or of any other image, is refused before its first band when the image declares more pixels than its files can hold
or than a streaming cap (:func:`check_stream_pixels`, ``EDGEAE_MAX_STREAM_PIXELS``): a 4.9 MB sparse GeoTIFF declaring
200,000 × 200,000 pixels was streamed band after band (781 bands of 2-5 s). So is a pass over a whole product
(:meth:`~edgeae.archive.reader.ProductReader.stats`: the scaling's range, a scan's missing-data count).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeae._headers import ImageReadError
from edgeae._optional import require
from edgeae.archive.gdal_env import _open_env, dataset_files, dataset_message, max_window_bytes
from edgeae.archive.open_checks import RAW_DRIVERS, check_jp2

if TYPE_CHECKING:
    from edgeae.archive.reader import ProductReader

_JP2_SUFFIXES = (".jp2", ".j2k", ".j2c", ".jpx", ".jpf")
LAST_SAMPLES = 64  # samples of the last line read at open: enough to find a short file, bounded whatever the width
STREAM_FLOOR = 1 << 28  # pixels any file may declare and stream (the decode limit's default: a NAC-size strip)
STREAM_PIXELS_PER_BYTE = 1024  # deflate packs at most ~1,032 samples in a byte: only sparse tiles or zeros go past
STREAM_CAP = 1 << 34  # pixels (17.2 G) no streamed image may declare by default, whatever its file size


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


def max_stream_pixels(file_bytes: int) -> int:
    """The most pixels an image of ``file_bytes`` bytes may declare to be streamed: ``EDGEAE_MAX_STREAM_PIXELS`` when
    set (``1e10``, ``20G``: then the one limit, whatever the file), else :data:`STREAM_PIXELS_PER_BYTE` a byte of its
    files, at least :data:`STREAM_FLOOR` and at most :data:`STREAM_CAP`."""
    text = os.environ.get("EDGEAE_MAX_STREAM_PIXELS", "").strip()
    if text:
        from edgeae.imagedecode import _parse_size

        return _parse_size(text, "EDGEAE_MAX_STREAM_PIXELS")
    return min(STREAM_CAP, max(STREAM_FLOOR, STREAM_PIXELS_PER_BYTE * max(0, int(file_bytes))))


def data_bytes(reader: Any) -> int:
    """Bytes of the files a row reader reads: a GDAL product's files (label and data), else the image file itself."""
    inner = getattr(reader, "inner", reader)  # a demosaicing wrapper
    ds = getattr(inner, "ds", None)
    names = [os.fspath(inner.path)] + (dataset_files(ds) if ds is not None else [])
    total = 0
    for name in dict.fromkeys(os.path.abspath(n) for n in names):
        try:
            total += os.stat(name).st_size
        except (OSError, ValueError):  # a /vsi path, a file gone: it holds nothing we can count
            continue
    return total


def check_stream_pixels(reader: Any) -> None:
    """Refuse, before any band is read, to stream an image (``reader``: a :mod:`edgeae.row_bands` row reader) that
    declares more pixels than :func:`max_stream_pixels` allows for its files: a compressed bomb (sparse tiles) would
    be streamed without end, a band of no-data after another."""
    h, w = int(reader.height), int(reader.width)
    nbytes = data_bytes(reader)
    cap = max_stream_pixels(nbytes)
    if h * w > cap:
        rule = "EDGEAE_MAX_STREAM_PIXELS"
        if not os.environ.get(rule, "").strip():
            per = f"{STREAM_PIXELS_PER_BYTE:,} pixels a byte of its {_size(nbytes)} of files"
            rule = f"{per}, within 2^28..2^34; {rule}"
        raise ImageReadError(
            f"{reader.path}: declares {w}×{h} = {h * w:,} pixels, over the streaming limit of {cap:,} pixels ({rule}): "
            "a compressed bomb (sparse tiles) or an image too large to stream; set EDGEAE_MAX_STREAM_PIXELS to stream "
            "it anyway"
        )

"""Read an image file as bands of rows: random row access and each band normalised with its validity.

:class:`RowReader` reads TIFF/BigTIFF (tiled or stripped, any tifffile codec, pyramidal: finest level)
segment by segment: only the strips/tiles that intersect the requested rows are read from disk and
decoded, so peak memory is about one band of rows. PNG, JPEG and PNM have no random access: they are
decoded once in full. Planetary archive products (:mod:`edgeae.archive`) are read through GDAL windows
(:class:`edgeae.archive.reader.ProductReader`), raw colour-filter mosaics are demosaiced per range.

:func:`_iter_bands` turns row ranges into :class:`Strip` s (float pixels in [0, 1] and a valid mask),
running no-data detection per band and carrying the no-data mask across band boundaries. The streaming
API built on these bands is :mod:`edgeae.strips`.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from edgeae import _headers
from edgeae._headers import ImageReadError
from edgeae._optional import require, tiff_codec_error
from edgeae.imagedecode import check_band
from edgeae.imageio import _split_samples, convert_channels, read_raw, to_float
from edgeae.nodata import Margin, across_channels, margin_mask, nodata_mask, valid_mask
from edgeae.stopping import Flag
from edgeae.stopping import check as check_stop
from edgeae.tiling import axis_starts

log = logging.getLogger("edgeae.strips")  # the logger these warnings had before the module was split

__all__ = ["RowReader", "Strip"]


@dataclass(frozen=True)
class Strip:
    """Rows [y0, y1) of an image: ``pixels`` float32 (y1 - y0, W, C) in [0, 1], ``valid`` bool (rows, W)."""

    y0: int
    y1: int
    pixels: np.ndarray
    valid: np.ndarray


class RowReader:
    """Random access to rows of an image file as stored samples (rows, W, C) plus alpha (or None)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(os.fspath(path))
        self.info = _headers.probe(self.path)
        self.height, self.width = self.info.height, self.info.width
        self._tif: Any = None
        self._full: tuple[np.ndarray, np.ndarray | None] | None = None
        self.channels = self.info.channels  # what read_rows returns: 1 or 3 (a multiband TIFF: band 1, or RGB)
        if self.info.format == "tiff":
            self._open_tiff()
            self.bit_depth = self.info.bit_depth
            note = self.info.band_note()
            if note:
                log.warning("%s: %s", self.path, note)
        else:
            raw, self.bit_depth, alpha = read_raw(self.path)
            self._full = (raw, alpha)
            self.dtype = raw.dtype
            self.channels = int(raw.shape[2])

    def _open_tiff(self) -> None:
        tifffile = require("tifffile")
        self._tif = tifffile.TiffFile(self.path)
        series = self._tif.series[0]
        level = series.levels[0] if getattr(series, "levels", None) else series
        if len(level.pages) != 1:
            self.close()
            raise ImageReadError(f"{self.path}: multi-page TIFF series cannot be streamed; store one 2-D image")
        page = level.keyframe
        self._page = page
        self.dtype = np.dtype(page.dtype)
        self._samples = page.shaped[0] * page.shaped[4]  # separate planes × contiguous samples
        if page.is_tiled:
            self._seg_rows, self._seg_cols = int(page.tilelength), int(page.tilewidth)
        else:
            self._seg_rows = min(int(page.rowsperstrip) or self.height, self.height)
            self._seg_cols = self.width
        # uncompressed strips of whole bytes are read row by row (seek to the rows asked for): no segment is decoded
        # whole, so only a compressed (or tiled, or bit-packed) one must fit the byte limit
        self._raw_strips = (
            not page.is_tiled
            and page.compression == 1
            and page.predictor == 1
            and page.fillorder == 1
            and page.photometric != 6  # YCbCr may be subsampled
            and page.bitspersample == 8 * self.dtype.itemsize
        )
        try:  # from the header, before anything is decoded: a segment is decoded whole, a row is the least read
            if not self._raw_strips:
                check_band(self.path, 0, self._seg_rows, self._seg_cols, page.shaped[4], itemsize=self.dtype.itemsize,
                           what="one decoded TIFF segment")  # fmt: skip
            check_band(self.path, 0, 1, self.width, self.channels)
        except ImageReadError:
            self.close()
            raise

    def close(self) -> None:
        if self._tif is not None:
            self._tif.close()
            self._tif = None

    def __enter__(self) -> RowReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def read_rows(self, y0: int, y1: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Stored samples of rows [y0, y1) as (rows, W, C) in RGB order, and alpha (rows, W) or None."""
        if not 0 <= y0 < y1 <= self.height:
            raise ValueError(f"{self.path}: rows [{y0}, {y1}) outside 0..{self.height}")
        if self._full is not None:
            raw, alpha = self._full
            return raw[y0:y1], None if alpha is None else alpha[y0:y1]
        check_band(self.path, y0, y1, self.width, self._samples, itemsize=self.dtype.itemsize, what="stored samples")
        return _split_samples(self._read_tiff_rows(y0, y1), self.info, self.path)

    def _read_tiff_rows(self, y0: int, y1: int) -> np.ndarray:
        page, fh = self._page, self._tif.filehandle
        planes, contig = page.shaped[0], page.shaped[4]
        out = np.zeros((y1 - y0, self.width, planes * contig), dtype=self.dtype)
        n_y = math.ceil(self.height / self._seg_rows)
        if self._raw_strips:
            self._read_raw_rows(out, y0, y1, n_y)
            return out
        n_x = math.ceil(self.width / self._seg_cols)
        for s in range(planes):
            for sy in range(y0 // self._seg_rows, (y1 - 1) // self._seg_rows + 1):
                for sx in range(n_x):
                    index = (s * n_y + sy) * n_x + sx
                    offset, count = page.dataoffsets[index], page.databytecounts[index]
                    data = None
                    if count:
                        fh.seek(offset)
                        data = fh.read(count)
                    try:
                        seg, (ps, _, py, px, _), _shape = page.decode(data, index, jpegtables=page.jpegtables)
                    except Exception as exc:
                        codec = tiff_codec_error(self.path, exc)  # its codec needs imagecodecs: not a bad file
                        if codec is not None:
                            raise codec from exc
                        raise ImageReadError(f"{self.path}: cannot decode TIFF segment {index} ({exc})") from exc
                    if seg is None:
                        continue
                    seg = seg[0]  # drop depth
                    h = min(seg.shape[0], self.height - py)
                    w = min(seg.shape[1], self.width - px)
                    a, b = max(y0, py), min(y1, py + h)
                    chan = slice(ps * contig, (ps + 1) * contig)
                    out[a - y0 : b - y0, px : px + w, chan] = seg[a - py : b - py, :w]
        return out

    def _read_raw_rows(self, out: np.ndarray, y0: int, y1: int, n_y: int) -> None:
        """Rows [y0, y1) of uncompressed strips into ``out``, reading only their bytes (a strip is not read whole)."""
        page, fh = self._page, self._tif.filehandle
        contig = page.shaped[4]
        stored = self.dtype.newbyteorder(self._tif.byteorder)
        row_bytes = self.width * contig * self.dtype.itemsize
        for s in range(page.shaped[0]):
            for sy in range(y0 // self._seg_rows, (y1 - 1) // self._seg_rows + 1):
                index, py = s * n_y + sy, sy * self._seg_rows
                rows = min(self._seg_rows, self.height - py)
                offset, count = page.dataoffsets[index], page.databytecounts[index]
                if not count:  # a sparse strip: zeros, as tifffile reads it
                    continue
                if count < rows * row_bytes:
                    raise ImageReadError(
                        f"{self.path}: corrupt TIFF strip {index}: {count} bytes, its {rows} rows of "
                        f"{row_bytes} bytes need {rows * row_bytes}"
                    )
                a, b = max(y0, py), min(y1, py + rows)
                fh.seek(offset + (a - py) * row_bytes)
                data = fh.read((b - a) * row_bytes)
                if len(data) < (b - a) * row_bytes:
                    raise ImageReadError(f"{self.path}: truncated TIFF (strip {index} ends at byte {fh.tell()})")
                seg = np.frombuffer(data, dtype=stored).reshape(b - a, self.width, contig)
                out[a - y0 : b - y0, :, s * contig : (s + 1) * contig] = seg


def _row_ranges(height: int, size: int, step: int) -> list[tuple[int, int]]:
    """[y0, y1) ranges of ``size`` rows every ``step`` rows; the last one may be shorter."""
    out, y = [], 0
    while True:
        out.append((y, min(y + size, height)))
        if y + size >= height:
            return out
        y += step


def _band_groups(height: int, patch: int, stride: int, band_rows: int) -> tuple[list[list[int]], list[tuple[int, int]]]:
    """Patch rows grouped into bands of about ``band_rows`` rows: each group's patch top rows and the band's
    [row0, row1) that holds all of their pixels."""
    groups: list[list[int]] = []
    for y in axis_starts(height, patch, stride):
        if groups and y + patch - groups[-1][0] <= max(band_rows, patch):
            groups[-1].append(y)
        else:
            groups.append([y])
    return groups, [(g[0], min(g[-1] + patch, height)) for g in groups]


def _open_reader(path: str | os.PathLike[str], bayer: str | None = None) -> Any:
    """A row reader for ``path``: GDAL windows for archive products, else TIFF segments / one decode;
    ``bayer``: demosaic the rows of a raw colour-filter mosaic (:class:`_BayerRows`)."""
    from edgeae.archive.formats import is_archive_path

    p = Path(os.fspath(path))
    if is_archive_path(p):
        from edgeae.archive.reader import ProductReader

        reader: Any = ProductReader(p)
    else:
        reader = RowReader(p)
    return _BayerRows(reader, bayer) if bayer else reader


class _BayerRows:
    """Rows of a raw colour-filter mosaic, demosaiced to RGB exactly as the whole frame would be (one row of
    context is read above and below each range)."""

    def __init__(self, inner: Any, pattern: str) -> None:
        self.inner, self.pattern = inner, pattern
        self.path, self.height, self.width = inner.path, inner.height, inner.width
        self.bit_depth = inner.bit_depth
        self.channels = 3

    @property
    def heuristic_nodata(self) -> bool:
        """The inner reader's no-data rule (a planetary product's label, not the black-margin heuristics)."""
        return bool(getattr(self.inner, "heuristic_nodata", True))

    @property
    def zero_fill(self) -> bool:
        return bool(getattr(self.inner, "zero_fill", False))

    def read_rows(self, y0: int, y1: int) -> tuple[np.ndarray, np.ndarray | None]:
        from edgeae.bayer import demosaic_bilinear, shifted

        a, b = max(0, y0 - 1), min(self.height, y1 + 1)
        raw, alpha = self.inner.read_rows(a, b)
        try:
            rgb = demosaic_bilinear(raw, shifted(self.pattern, a))
        except ValueError as exc:
            raise ImageReadError(f"{self.path}: cannot demosaic as {self.pattern}: {exc}") from exc
        return rgb[y0 - a : y1 - a], None if alpha is None else alpha[y0 - a : y1 - a]

    def close(self) -> None:
        self.inner.close()

    def __enter__(self) -> _BayerRows:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _iter_bands(
    reader: Any,
    ranges: Sequence[tuple[int, int]],
    channels: int | None,
    detect_nodata: bool,
    margin: Margin | None = None,
    *,
    stop: Flag | None = None,
    whole: bool = False,
) -> Iterator[Strip]:
    """Decode each row range, normalise it and compute its validity, carrying no-data downwards. ``stop`` (default:
    the flag :func:`edgeae.stopping.current` gives on the thread it runs on) is checked before each band: once set,
    :class:`edgeae.stopping.Stopped` is raised before the next band is read. ``whole``: the ranges cover the whole
    image, which must then pass :func:`edgeae.archive.read_limits.check_stream_pixels` (checked after the first
    band's size, before any row is read)."""
    prev: tuple[int, int, np.ndarray, np.ndarray] | None = None  # y0, y1, raw, valid of the last band
    # the float32 band built (to_float, convert_channels), refused over the decode limits before any row is read
    built = max(getattr(reader, "channels", 0) or len(getattr(reader, "bands", (1,))), channels or 0)
    for y0, y1 in ranges:
        check_stop(stop, f"{reader.path}: stopped before rows {y0}..{y1} of {reader.height} (asked to stop)")
        check_band(reader.path, y0, y1, reader.width, built)
        if whole and prev is None:  # a product declaring far more pixels than its file holds: not streamed for ever
            from edgeae.archive.read_limits import check_stream_pixels

            check_stream_pixels(reader)
        raw, alpha = reader.read_rows(y0, y1)
        if prev is None and not isinstance(reader, _BayerRows):  # the first band tells, as read_image's check does
            from edgeae.bayer import looks_like_mosaic

            if looks_like_mosaic(raw):
                log.warning(
                    "%s looks like an undemosaiced colour-filter mosaic (2x2 repeating values); give --bayer "
                    "PATTERN (bayer= in the library) to demosaic it",
                    reader.path,
                )
        pixels, _ = to_float(raw, reader.bit_depth, path=reader.path)
        valid = np.ones(raw.shape[:2], dtype=bool)
        if raw.dtype.kind == "f":
            valid &= across_channels(raw, np.logical_and, np.isfinite)
        if alpha is not None:
            valid &= alpha > 0
        heuristic = detect_nodata and getattr(reader, "heuristic_nodata", True)
        # a product without a declared no-data value: only its border regions of exact 0 (ProductReader.zero_fill)
        zero = detect_nodata and not heuristic and getattr(reader, "zero_fill", False)
        if heuristic or zero:
            edges = ["left", "right"] + (["top"] if y0 == 0 else []) + (["bottom"] if y1 == reader.height else [])
            ctx = prev is not None and prev[0] <= y0 - 1 < prev[1]
            threshold = 0.0 if zero else None
            if prev is not None and ctx:
                row = y0 - 1 - prev[0]
                stack = np.concatenate([prev[2][row : row + 1], raw])
                seed = np.zeros(stack.shape[:2], dtype=bool)
                seed[0] = ~prev[3][row]
                nd = nodata_mask(stack, bit_depth=reader.bit_depth, threshold=threshold, edges=edges, seed=seed)[1:]
            else:
                nd = nodata_mask(raw, bit_depth=reader.bit_depth, threshold=threshold, edges=edges)
            valid &= nd
        # the flight runtime's own mask (dark/saturated margins seen from the border), for images; a planetary
        # product's label says what is missing (its no-data values), as read_product does for the whole product:
        # the heuristics read a product stretched to its range as margin (an HRSC strip: 0 % valid)
        if detect_nodata and getattr(reader, "heuristic_nodata", True):
            edges = ["left", "right"] + (["top"] if y0 == 0 else []) + (["bottom"] if y1 == reader.height else [])
            valid &= valid_mask(
                raw,
                bit_depth=reader.bit_depth,
                edges=edges,
                margin=margin,
                row0=y0,
                frame_height=reader.height,
                reduce="min" if isinstance(reader, _BayerRows) else "max",  # demosaiced margins stay dark
            )
        elif margin:  # a fixed margin still applies
            valid &= margin_mask(valid.shape, margin, y0, reader.height)
        prev = (y0, y1, raw, valid)
        yield Strip(y0, y1, convert_channels(pixels, channels), valid)

"""Stream huge images as horizontal strips or patches with memory independent of the image height.

TIFF/BigTIFF (tiled or stripped, any tifffile codec, pyramidal: finest level) is read segment by
segment: only the strips/tiles that intersect the requested rows are read from disk and decoded, so
peak memory is about one band of rows. PNG, JPEG and PNM have no random access: they are decoded
once in full and then cut into strips (convert them to tiled TIFF with :func:`write_tiled_bigtiff`
style tools for frames that do not fit in memory).

No-data detection runs per band and carries the no-data mask across band boundaries (a margin
running down the frame stays invalid); a dark region that only reaches the image border further
down than the current band is not seen (see docs/io.md).

Planetary archive products (PDS3, PDS4, ISIS3, VICAR, JP2, GeoTIFF: :mod:`edgeae.archive`) are read
through GDAL windows of the requested rows with a capped block cache, so they stream in bounded memory
too; their no-data comes from the label's special values, not from the black-margin heuristic.
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
from edgeae._optional import require
from edgeae.imageio import convert_channels, read_image, read_raw, to_float
from edgeae.nodata import Margin, margin_mask, nodata_mask, valid_mask
from edgeae.tiling import axis_starts, pad_to_patch, valid_fraction

log = logging.getLogger(__name__)

__all__ = [
    "Patch",
    "PatchBlock",
    "RowReader",
    "Strip",
    "iter_patch_blocks",
    "iter_patches",
    "iter_strips",
    "write_tiled_bigtiff",
]


@dataclass(frozen=True)
class Strip:
    """Rows [y0, y1) of an image: ``pixels`` float32 (y1 - y0, W, C) in [0, 1], ``valid`` bool (rows, W)."""

    y0: int
    y1: int
    pixels: np.ndarray
    valid: np.ndarray


@dataclass(frozen=True)
class Patch:
    """A patch whose top-left pixel is (y, x) in the full image; ``pixels`` float32 (patch, patch, C)."""

    x: int
    y: int
    pixels: np.ndarray
    valid_frac: float


class RowReader:
    """Random access to rows of an image file as stored samples (rows, W, C) plus alpha (or None)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(os.fspath(path))
        self.info = _headers.probe(self.path)
        self.height, self.width = self.info.height, self.info.width
        self._tif: Any = None
        self._full: tuple[np.ndarray, np.ndarray | None] | None = None
        if self.info.format == "tiff":
            self._open_tiff()
            self.bit_depth = self.info.bit_depth
        else:
            raw, self.bit_depth, alpha = read_raw(self.path)
            self._full = (raw, alpha)
            self.dtype = raw.dtype

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
        out = self._read_tiff_rows(y0, y1)
        if out.shape[2] in (2, 4):
            return out[:, :, :-1], out[:, :, -1]
        return out, None

    def _read_tiff_rows(self, y0: int, y1: int) -> np.ndarray:
        page, fh = self._page, self._tif.filehandle
        planes, contig = page.shaped[0], page.shaped[4]
        out = np.zeros((y1 - y0, self.width, planes * contig), dtype=self.dtype)
        n_y = math.ceil(self.height / self._seg_rows)
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
) -> Iterator[Strip]:
    """Decode each row range, normalise it and compute its validity, carrying no-data downwards."""
    prev: tuple[int, int, np.ndarray, np.ndarray] | None = None  # y0, y1, raw, valid of the last band
    for y0, y1 in ranges:
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
            valid &= np.isfinite(raw).all(axis=2)
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


def iter_strips(
    path: str | os.PathLike[str],
    strip_rows: int = 256,
    overlap: int = 0,
    *,
    channels: int | None = None,
    detect_nodata: bool = True,
) -> Iterator[Strip]:
    """Yield :class:`Strip` s of ``strip_rows`` rows (the last may be shorter), ``overlap`` rows shared.

    TIFFs are read segment by segment (memory ~ one strip); PNG/JPEG/PNM are decoded once.
    """
    if strip_rows < 1 or not 0 <= overlap < strip_rows:
        raise ValueError(f"need strip_rows >= 1 and 0 <= overlap < strip_rows, got {strip_rows}, {overlap}")
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be None, 1 or 3, got {channels!r}")
    with _open_reader(path) as reader:
        ranges = _row_ranges(reader.height, strip_rows, strip_rows - overlap)
        yield from _iter_bands(reader, ranges, channels, detect_nodata)


def iter_patches(
    path: str | os.PathLike[str],
    patch: int,
    stride: int | None = None,
    *,
    channels: int | None = None,
    min_valid: float = 0.0,
    band_rows: int = 256,
    detect_nodata: bool = True,
    bayer: str | None = None,
    margin: Margin | None = None,
) -> Iterator[Patch]:
    """Yield every ``patch``×``patch`` :class:`Patch` on the :func:`edgeae.tiling.tile_positions` grid.

    Row-major order; right/bottom edges are covered by flush patches; images smaller than the patch
    are reflect-padded. Patches with a valid fraction below ``min_valid`` are skipped. Rows are read
    in bands of about ``band_rows`` rows, so memory does not grow with the image height. ``bayer``:
    demosaic a raw colour-filter mosaic first; ``margin``: a fixed margin counted as invalid.
    """
    stride = patch if stride is None else stride
    if not 0.0 <= min_valid <= 1.0:
        raise ValueError(f"min_valid must be in [0, 1], got {min_valid}")
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be None, 1 or 3, got {channels!r}")
    with _open_reader(path, bayer) as reader:
        h, w = reader.height, reader.width
        xs = axis_starts(w, patch, stride)
        groups, ranges = _band_groups(h, patch, stride, band_rows)
        for group, band in zip(groups, _iter_bands(reader, ranges, channels, detect_nodata, margin), strict=True):
            pix, _ = pad_to_patch(band.pixels, patch)
            ok = _padded_valid(band.valid, patch)
            local = [(y - band.y0, x) for y in group for x in xs]
            fracs = valid_fraction(band.valid, local, patch)
            for (ly, x), frac in zip(local, fracs, strict=True):
                if frac >= min_valid:
                    tile = np.ascontiguousarray(pix[ly : ly + patch, x : x + patch])
                    if 0.0 < frac < 1.0:  # (P, P, C) <-> (1, C, P, P)
                        m = ok[None, ly : ly + patch, x : x + patch]
                        filled = fill_patches(tile.transpose(2, 0, 1)[None], m)[0]
                        tile = np.ascontiguousarray(filled.transpose(1, 2, 0))
                    yield Patch(x=x, y=ly + band.y0, pixels=tile, valid_frac=float(frac))


def read_patch_pixels(
    path: str | os.PathLike[str],
    patch: int,
    xs: Sequence[int] | np.ndarray,
    ys: Sequence[int] | np.ndarray,
    *,
    channels: int | None = None,
    stride: int | None = None,
    bayer: str | None = None,
) -> np.ndarray:
    """float32 (k, C, P, P) pixels of the patches with corners (``xs``, ``ys``): the pixels
    :func:`iter_patch_blocks` cuts at those corners, read from only the rows they cover (one ``patch``-row read per
    distinct ``y``; tiled and striped TIFFs read just those segments). Validity is not computed: it depends on the
    rows read before (no-data carried downwards), the pixels do not. Raises when a corner is off the image, or
    (``stride`` given) off the :func:`edgeae.tiling.axis_starts` grid of that stride. ``bayer``: demosaiced first, as
    the scan read them."""
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be None, 1 or 3, got {channels!r}")
    xa, ya = np.asarray(xs, np.int64).reshape(-1), np.asarray(ys, np.int64).reshape(-1)
    if xa.shape != ya.shape:
        raise ValueError(f"need one y per x, got {xa.shape} and {ya.shape}")
    with _open_reader(path, bayer) as reader:
        h, w = reader.height, reader.width
        bad = (xa < 0) | (ya < 0) | (xa > max(0, w - patch)) | (ya > max(0, h - patch))
        if stride is not None:
            bad |= ~(np.isin(xa, axis_starts(w, patch, stride)) & np.isin(ya, axis_starts(h, patch, stride)))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            where = "image" if stride is None else f"patch grid (stride {stride})"
            raise ValueError(
                f"{path}: {int(bad.sum())} of {len(bad)} patch corners are off the {w}x{h} {where} for {patch}-px "
                f"patches, e.g. ({xa[i]}, {ya[i]})"
            )
        out: np.ndarray | None = None
        for y in np.unique(ya):
            (band,) = _iter_bands(reader, [(int(y), min(int(y) + patch, h))], channels, False)
            pix, _ = pad_to_patch(band.pixels, patch)
            at = np.flatnonzero(ya == y)
            if out is None:
                out = np.empty((len(xa), pix.shape[2], patch, patch), np.float32)
            for j in at:
                out[j] = pix[:patch, xa[j] : xa[j] + patch].transpose(2, 0, 1)
    return out if out is not None else np.zeros((0, channels or 1, patch, patch), np.float32)


@dataclass(frozen=True)
class PatchBlock:
    """The patches of one band of rows, as arrays: top-left ``ys``, ``xs`` (int64, full-image pixels, the
    raster order of :func:`iter_patches`), ``valid_frac`` (float64) and ``windows``, a zero-copy
    (rows', W', C, P, P) float32 view of the band: patch ``k`` is ``windows[ys[k] - y0, xs[k]]``."""

    y0: int
    ys: np.ndarray
    xs: np.ndarray
    valid_frac: np.ndarray
    windows: np.ndarray
    valid_windows: np.ndarray | None = None  # (rows', W', P, P) bool view of the band's valid mask

    def pixels(self, index: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The patches at positions ``index`` as (n, C, P, P) float32 (written into ``out`` when given), the
        no-data pixels of a partial patch filled with the mean of its valid ones (:func:`fill_patches`)."""
        rows, cols = self.ys[index] - self.y0, self.xs[index]
        got = self.windows[rows, cols]
        if out is None:
            out = got  # fancy indexing made a copy
        else:
            out[...] = got
        part = np.flatnonzero((self.valid_frac[index] < 1.0) & (self.valid_frac[index] > 0.0))
        if part.size and self.valid_windows is not None:
            out[part] = fill_patches(out[part], self.valid_windows[rows[part], cols[part]])
        return out


def iter_patch_blocks(
    path: str | os.PathLike[str],
    patch: int,
    stride: int | None = None,
    *,
    channels: int | None = None,
    band_rows: int = 256,
    detect_nodata: bool = True,
    bayer: str | None = None,
    margin: Margin | None = None,
) -> Iterator[PatchBlock]:
    """:func:`iter_patches` one band at a time, as arrays over a strided view instead of a Python object and
    a copy per patch: the same positions, order, pixels and valid fractions (tested), for scoring paths that
    fill their batch buffers straight from the view."""
    stride = patch if stride is None else stride
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be None, 1 or 3, got {channels!r}")
    with _open_reader(path, bayer) as reader:
        h, w = reader.height, reader.width
        xs = axis_starts(w, patch, stride)
        groups, ranges = _band_groups(h, patch, stride, band_rows)
        xa = np.asarray(xs, np.int64)
        for group, band in zip(groups, _iter_bands(reader, ranges, channels, detect_nodata, margin), strict=True):
            pix, _ = pad_to_patch(band.pixels, patch)
            by = np.repeat(np.asarray(group, np.int64), len(xa))
            bx = np.tile(xa, len(group))
            windows = np.lib.stride_tricks.sliding_window_view(pix, (patch, patch), axis=(0, 1))
            vwin = np.lib.stride_tricks.sliding_window_view(_padded_valid(band.valid, patch), (patch, patch))
            frac = _valid_fractions(band.valid, by - band.y0, bx, patch)
            yield PatchBlock(band.y0, by, bx, frac, windows, vwin)


def fill_patches(pixels: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``pixels`` (n, C, P, P) float with each patch's no-data pixels (``valid`` (n, P, P) False) set to the mean
    of its valid ones, per channel; returns ``pixels`` (filled in place when writable).

    What a scored patch holds where it has no data: read as 0 (black), a no-data margin, NaN sample or the
    reflected padding of a small image inside a patch added an edge that the reconstruction error scores, so
    partial patches ranked above whole ones (a moon crop with 4 NaN columns: its edge patches up 10-30 %, ranks
    13-54 → 10-17). The patch's own mean depends on nothing outside it (not on where a band of rows starts),
    and costs only the partial patches (a strip's margins: the patches along them). A patch with no valid
    pixel is left as read.
    """
    out = pixels if pixels.flags.writeable else np.array(pixels)
    ok = np.asarray(valid, dtype=bool)
    for k in range(out.shape[0]):
        m = ok[k]
        if m.all() or not m.any():
            continue
        for c in range(out.shape[1]):
            band = out[k, c]
            band[~m] = float(band[m].mean())
    return out


def _padded_valid(valid: np.ndarray, patch: int) -> np.ndarray:
    """The band's valid mask padded (bottom/right) to at least ``patch`` with False, as :func:`pad_to_patch`
    pads the pixels: the reflected padding is not data."""
    h, w = valid.shape
    ph, pw = max(0, patch - h), max(0, patch - w)
    return np.pad(valid, ((0, ph), (0, pw)), constant_values=False) if ph or pw else valid


def _valid_fractions(valid: np.ndarray, ys: np.ndarray, xs: np.ndarray, patch: int) -> np.ndarray:
    """:func:`edgeae.tiling.valid_fraction` for arrays of positions: the same integer counts over the same
    windows (padding past a small image's edge counts as missing), from one column sum per row of patches
    instead of a summed-area table of the band."""
    v = np.asarray(valid, dtype=bool)
    h, w = v.shape
    out = np.empty(ys.size, dtype=np.float64)
    for y in np.unique(ys):
        at = np.flatnonzero(ys == y)
        y1 = min(int(y) + patch, h)
        cs = np.zeros(w + 1, dtype=np.int64)
        np.cumsum(v[y:y1].sum(axis=0, dtype=np.int64), out=cs[1:])
        x0 = xs[at]
        x1 = np.minimum(x0 + patch, w)
        out[at] = (cs[x1] - cs[x0]) / float(patch * patch)
    return out


def write_tiled_bigtiff(
    path: str | os.PathLike[str],
    shape: tuple[int, int],
    source_images: Sequence[str | os.PathLike[str] | np.ndarray],
    *,
    tile: int = 512,
    seed: int = 0,
    nodata_margin: int = 0,
    compression: str | None = None,
    progress: bool = False,
) -> Path:
    """Write a huge grey uint8 BigTIFF of ``shape`` (H, W) tiled from random crops of real images.

    Tiles are generated one at a time (random source, random crop and flips from ``seed``) and
    streamed to tifffile, so the frame is never held in memory. ``nodata_margin`` zeroes that many
    columns on the left and right, like the masked edges of an LRO NAC strip. The sources are held
    in memory as grey uint8 and drawn from in the order given.
    """
    tifffile = require("tifffile")
    h, w = (int(shape[0]), int(shape[1]))
    if h < 1 or w < 1 or tile < 16 or tile % 16:
        raise ValueError(f"need a positive shape and a tile that is a multiple of 16, got {shape}, {tile}")
    sources: list[np.ndarray] = []
    for src in source_images:
        if isinstance(src, np.ndarray):
            arr = np.asarray(src)
            arr = arr if arr.ndim == 2 else arr[..., 0]
        else:
            arr = np.round(read_image(src, channels=1, detect_nodata=False).pixels[:, :, 0] * 255)
        img = pad_to_patch(arr.astype(np.uint8), tile)[0]
        sources.append(img)
    if not sources:
        raise ValueError("write_tiled_bigtiff needs at least one source image")
    rng = np.random.default_rng(seed)
    n_y, n_x = math.ceil(h / tile), math.ceil(w / tile)

    def tiles() -> Iterator[np.ndarray]:
        for _ty in range(n_y):
            for tx in range(n_x):
                img = sources[int(rng.integers(len(sources)))]
                y = int(rng.integers(img.shape[0] - tile + 1))
                x = int(rng.integers(img.shape[1] - tile + 1))
                t = img[y : y + tile, x : x + tile]
                if rng.random() < 0.5:
                    t = t[:, ::-1]
                if rng.random() < 0.5:
                    t = t[::-1]
                t = np.array(t)
                if nodata_margin > 0:
                    c0 = tx * tile
                    t[:, : max(0, nodata_margin - c0)] = 0
                    t[:, max(0, w - nodata_margin - c0) :] = 0
                yield t

    it: Any = tiles()
    if progress:
        bar = require("tqdm").tqdm(it, total=n_y * n_x, desc="tiles", unit="tile")
        it = (t for t in bar)  # tifffile wants a generator, not any iterable
    p = Path(os.fspath(path))
    p.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(
        p, it, shape=(h, w), dtype=np.uint8, tile=(tile, tile), bigtiff=True,
        photometric="minisblack", compression=compression,
    )  # fmt: skip
    return p


def _peak_rss_mb() -> float:
    import resource  # POSIX only; this helper backs the memory figure in docs/io.md

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m edgeae.strips make-frame OUT.tif SRC...`` | ``stream FRAME.tif``: the memory figure."""
    import argparse
    import json
    import time

    ap = argparse.ArgumentParser(prog="python -m edgeae.strips", description=main.__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    mk = sub.add_parser("make-frame", help="write a huge tiled grey BigTIFF from real images")
    mk.add_argument("out")
    mk.add_argument("sources", nargs="+")
    mk.add_argument("--shape", type=int, nargs=2, default=(52224, 5064), metavar=("H", "W"))
    mk.add_argument("--tile", type=int, default=512)
    mk.add_argument("--seed", type=int, default=0)
    mk.add_argument("--nodata-margin", type=int, default=40)
    st = sub.add_parser("stream", help="stream every patch of FRAME and print JSON with the peak RSS")
    st.add_argument("frame")
    st.add_argument("--patch", type=int, default=64)
    st.add_argument("--stride", type=int, default=None)
    st.add_argument("--band-rows", type=int, default=256)
    st.add_argument("--min-valid", type=float, default=0.0)
    args = ap.parse_args(argv)
    start_rss, t0 = _peak_rss_mb(), time.perf_counter()
    if args.cmd == "make-frame":
        p = write_tiled_bigtiff(
            args.out, tuple(args.shape), sorted(args.sources), tile=args.tile, seed=args.seed,
            nodata_margin=args.nodata_margin, progress=True,
        )  # fmt: skip
        result: dict[str, Any] = {"frame": str(p), "bytes": p.stat().st_size}
    else:
        from edgeae.imageio import image_shape

        h, w, c = image_shape(args.frame)
        n = kept = 0
        valid_sum = 0.0
        for q in iter_patches(args.frame, args.patch, args.stride, band_rows=args.band_rows):
            n += 1
            valid_sum += q.valid_frac
            kept += q.valid_frac >= args.min_valid
        result = {
            "frame": args.frame, "shape": [h, w, c], "frame_mb": h * w * c / 1e6,
            "patch": args.patch, "stride": args.stride or args.patch, "band_rows": args.band_rows,
            "patches": n, "kept": kept, "mean_valid_frac": valid_sum / max(n, 1),
        }  # fmt: skip
    result["seconds"] = round(time.perf_counter() - t0, 2)
    result["rss_before_mb"] = round(start_rss, 1)
    result["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

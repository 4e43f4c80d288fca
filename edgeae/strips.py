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

The row readers and the decoding of row ranges into :class:`Strip` s live in :mod:`edgeae.row_bands`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeae._optional import require
from edgeae.atomic import atomic_path
from edgeae.imageio import read_image
from edgeae.nodata import Margin, fill_patches
from edgeae.row_bands import RowReader, Strip, _band_groups, _iter_bands, _open_reader, _row_ranges
from edgeae.stopping import Flag
from edgeae.tiling import axis_starts, pad_to_patch, valid_fraction

__all__ = [
    "Patch",
    "PatchBlock",
    "RowReader",
    "Strip",
    "iter_patch_blocks",
    "iter_patches",
    "iter_strips",
    "preview",
    "write_tiled_bigtiff",
]


@dataclass(frozen=True)
class Patch:
    """A patch whose top-left pixel is (y, x) in the full image; ``pixels`` float32 (patch, patch, C)."""

    x: int
    y: int
    pixels: np.ndarray
    valid_frac: float


def iter_strips(
    path: str | os.PathLike[str],
    strip_rows: int = 256,
    overlap: int = 0,
    *,
    channels: int | None = None,
    detect_nodata: bool = True,
    stop: Flag | None = None,
) -> Iterator[Strip]:
    """Yield :class:`Strip` s of ``strip_rows`` rows (the last may be shorter), ``overlap`` rows shared.

    TIFFs are read segment by segment (memory ~ one strip); PNG/JPEG/PNM are decoded once. ``stop``: a flag (a
    ``threading.Event``) checked before each strip, :class:`edgeae.stopping.Stopped` raised once it is set (default:
    the flag of the :func:`edgeae.firmware_sim.score.background` thread this runs on, if any). A file declaring more
    pixels than it can hold, or than ``EDGEAE_MAX_STREAM_PIXELS``, is refused before any strip is read (docs/io.md).
    """
    if strip_rows < 1 or not 0 <= overlap < strip_rows:
        raise ValueError(f"need strip_rows >= 1 and 0 <= overlap < strip_rows, got {strip_rows}, {overlap}")
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be None, 1 or 3, got {channels!r}")
    with _open_reader(path) as reader:
        ranges = _row_ranges(reader.height, strip_rows, strip_rows - overlap)
        yield from _iter_bands(reader, ranges, channels, detect_nodata, stop=stop, whole=True)


def preview(path: str | os.PathLike[str], step: int, strip_rows: int = 512) -> np.ndarray:
    """Every ``step``-th pixel of every ``step``-th row of ``path``: float32 (ceil(H/step), ceil(W/step), C) in [0, 1],
    NaN where no data; read strip by strip (:func:`iter_strips`), so a TIFF never holds more than a strip and the
    preview (the backdrop of ``edgeae score --map``)."""
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    rows = []
    for s in iter_strips(path, strip_rows=max(strip_rows, step) // step * step):
        pick = s.pixels[(-s.y0) % step :: step, ::step]
        ok = s.valid[(-s.y0) % step :: step, ::step]
        rows.append(np.where(ok[..., None], pick, np.float32(np.nan)))
    return np.concatenate(rows) if rows else np.zeros((0, 0, 1), np.float32)


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
    stop: Flag | None = None,
) -> Iterator[Patch]:
    """Yield every ``patch``×``patch`` :class:`Patch` on the :func:`edgeae.tiling.tile_positions` grid.

    Row-major order; right/bottom edges are covered by flush patches; images smaller than the patch
    are reflect-padded. Patches with a valid fraction below ``min_valid`` are skipped. Rows are read
    in bands of about ``band_rows`` rows, so memory does not grow with the image height. ``bayer``:
    demosaic a raw colour-filter mosaic first; ``margin``: a fixed margin counted as invalid; ``stop``: checked before
    each band, as in :func:`iter_strips` (which also says what is refused before any band is read).
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
        bands = _iter_bands(reader, ranges, channels, detect_nodata, margin, stop=stop, whole=True)
        for group, band in zip(groups, bands, strict=True):
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
    stop: Flag | None = None,
) -> Iterator[PatchBlock]:
    """:func:`iter_patches` one band at a time, as arrays over a strided view instead of a Python object and
    a copy per patch: the same positions, order, pixels and valid fractions (tested), for scoring paths that
    fill their batch buffers straight from the view; the same refusals and ``stop``."""
    stride = patch if stride is None else stride
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be None, 1 or 3, got {channels!r}")
    with _open_reader(path, bayer) as reader:
        h, w = reader.height, reader.width
        xs = axis_starts(w, patch, stride)
        groups, ranges = _band_groups(h, patch, stride, band_rows)
        xa = np.asarray(xs, np.int64)
        bands = _iter_bands(reader, ranges, channels, detect_nodata, margin, stop=stop, whole=True)
        for group, band in zip(groups, bands, strict=True):
            pix, _ = pad_to_patch(band.pixels, patch)
            by = np.repeat(np.asarray(group, np.int64), len(xa))
            bx = np.tile(xa, len(group))
            windows = np.lib.stride_tricks.sliding_window_view(pix, (patch, patch), axis=(0, 1))
            vwin = np.lib.stride_tricks.sliding_window_view(_padded_valid(band.valid, patch), (patch, patch))
            frac = _valid_fractions(band.valid, by - band.y0, bx, patch)
            yield PatchBlock(band.y0, by, bx, frac, windows, vwin)


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
    in memory as grey uint8 and drawn from in the order given. The file appears complete or not at all
    (:func:`edgeae.atomic.atomic_path`). ``progress``: a bar on stderr when it is a terminal.
    """
    tifffile = require("tifffile")
    h, w = (int(shape[0]), int(shape[1]))
    if h < 1 or w < 1:  # these checks come before the sources are read
        raise ValueError(f"need a positive frame shape (H, W), got {h} x {w}")
    if tile < 16 or tile % 16:
        raise ValueError(f"the tile side must be a multiple of 16 (TIFF tiles), got {tile}")
    if nodata_margin < 0:
        raise ValueError(f"the no-data margin must be >= 0 columns, got {nodata_margin}")
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
    bar: Any = None
    if progress:
        from edgeae.reconstruct import show_progress

        if show_progress(True, n_y * n_x):
            bar = require("tqdm").tqdm(total=n_y * n_x, desc="tiles", unit="tile")

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
                if bar is not None:  # counted as handed over: tifffile stops after the last, never asking again
                    bar.update(1)
                yield t

    p = Path(os.fspath(path))
    p.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(p) as tmp:  # tifffile pulls the tiles from the generator: the frame is never held
            tifffile.imwrite(
                tmp, tiles(), shape=(h, w), dtype=np.uint8, tile=(tile, tile), bigtiff=True,
                photometric="minisblack", compression=compression,
            )  # fmt: skip
    finally:
        if bar is not None:
            bar.close()
    return p


if __name__ == "__main__":  # python -m edgeae.strips: the command line lives in edgeae.cli.strips_tool
    from edgeae.cli.strips_tool import main

    raise SystemExit(main())

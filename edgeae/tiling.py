"""Cut images into square patches and blend them back, covering every pixel.

Positions are (y, x) top-left corners on a regular grid of ``stride``; the last row/column of
patches is moved flush with the bottom/right edge so no pixel is ever dropped. An image smaller
than the patch is reflect-padded at the bottom/right (:func:`pad_to_patch` records the padding),
so one patch at (0, 0) covers it. :func:`blend_tiles` averages overlapping patches with a window
that is strictly positive everywhere, so border pixels seen by a single patch keep their value.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "axis_count",
    "axis_starts",
    "blend_tiles",
    "extract_tiles",
    "filter_positions",
    "pad_to_patch",
    "tile_positions",
    "tile_window",
    "valid_fraction",
]

Position = tuple[int, int]


def _check(patch: int, stride: int) -> None:
    if patch < 1:
        raise ValueError(f"patch must be >= 1, got {patch}")
    if not stride >= 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if stride > patch:
        raise ValueError(f"stride {stride} > patch {patch} would leave gaps between patches")


def axis_starts(n: int, patch: int, stride: int) -> list[int]:
    """Start offsets along one axis of length ``n``; the last one is flush with the end (``n - patch``)."""
    _check(patch, stride)
    if n < 1:
        raise ValueError(f"axis length must be >= 1, got {n}")
    if n <= patch:
        return [0]
    starts = list(range(0, n - patch + 1, stride))
    if starts[-1] + patch < n:
        starts.append(n - patch)
    return starts


def axis_count(n: int, patch: int, stride: int) -> int:
    """``len(axis_starts(n, patch, stride))`` computed without building the list (n may be huge)."""
    _check(patch, stride)
    if n < 1:
        raise ValueError(f"axis length must be >= 1, got {n}")
    if n <= patch:
        return 1
    k = (n - patch) // stride + 1
    return k + 1 if (k - 1) * stride + patch < n else k


def tile_positions(h: int, w: int, patch: int, stride: int | None = None) -> list[Position]:
    """(y, x) top-left corners of ``patch``×``patch`` tiles covering an (h, w) image, row-major.

    ``stride`` defaults to ``patch`` (no overlap). The last row/column is flush with the edge.
    """
    stride = patch if stride is None else stride
    ys = axis_starts(h, patch, stride)
    xs = axis_starts(w, patch, stride)
    return [(y, x) for y in ys for x in xs]


def pad_to_patch(image: np.ndarray, patch: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Reflect-pad (H, W[, C]) at the bottom/right up to ``patch``; return (padded, (pad_h, pad_w))."""
    h, w = image.shape[:2]
    pad_h, pad_w = max(0, patch - h), max(0, patch - w)
    if pad_h == 0 and pad_w == 0:
        return image, (0, 0)
    widths: list[tuple[int, int]] = [(0, pad_h), (0, pad_w)] + [(0, 0)] * (image.ndim - 2)
    if min(h, w) > 1:
        return np.pad(image, widths, mode="reflect"), (pad_h, pad_w)
    return np.pad(image, widths, mode="edge"), (pad_h, pad_w)  # reflect needs two samples


def extract_tiles(image: np.ndarray, positions: Sequence[Position], patch: int) -> np.ndarray:
    """Stack the tiles at ``positions`` from (H, W) or (H, W, C): (N, patch, patch[, C]), same dtype.

    Images smaller than the patch are reflect-padded first (see :func:`pad_to_patch`).
    """
    img, _ = pad_to_patch(np.asarray(image), patch)
    h, w = img.shape[:2]
    out = np.empty((len(positions), patch, patch, *img.shape[2:]), dtype=img.dtype)
    for i, (y, x) in enumerate(positions):
        if y < 0 or x < 0 or y + patch > h or x + patch > w:
            raise ValueError(f"tile at (y={y}, x={x}) of size {patch} lies outside the {h}x{w} image")
        out[i] = img[y : y + patch, x : x + patch]
    return out


def tile_window(patch: int, window: str = "hann") -> np.ndarray:
    """(patch, patch) float64 blending weights > 0: 'hann' (sampled at pixel centres) or 'uniform'."""
    if window == "uniform":
        return np.ones((patch, patch))
    if window == "hann":
        t = (np.arange(patch) + 0.5) / patch
        w1 = np.sin(np.pi * t) ** 2  # never 0 at pixel centres; >= sin²(π/2p)
        return np.outer(w1, w1)
    raise ValueError(f"window must be 'hann' or 'uniform', got {window!r}")


def blend_tiles(
    tiles: np.ndarray,
    positions: Sequence[Position],
    out_shape: tuple[int, ...],
    patch: int | None = None,
    window: str = "hann",
) -> np.ndarray:
    """Weighted average of overlapping tiles (N, p, p[, C]) into ``out_shape`` (H, W[, C]), float32.

    Tiles that reach past the image (from :func:`pad_to_patch`) are cropped. Every output pixel must
    be covered by some tile; the positions from :func:`tile_positions` guarantee it.
    """
    tiles = np.asarray(tiles)
    p = tiles.shape[1] if patch is None else patch
    if tiles.shape[0] != len(positions) or tiles.shape[1:3] != (p, p):
        raise ValueError(f"tiles {tiles.shape} do not match {len(positions)} positions of size {p}")
    h, w = out_shape[:2]
    extra = tuple(out_shape[2:])
    if tiles.shape[3:] != extra:
        raise ValueError(f"tile channels {tiles.shape[3:]} do not match out_shape {out_shape}")
    acc = np.zeros((h, w, *extra), dtype=np.float64)
    wsum = np.zeros((h, w), dtype=np.float64)
    win = tile_window(p, window)
    for tile, (y, x) in zip(tiles, positions, strict=True):
        th, tw = min(p, h - y), min(p, w - x)
        if th <= 0 or tw <= 0 or y < 0 or x < 0:
            raise ValueError(f"tile at (y={y}, x={x}) lies outside the {h}x{w} output")
        wt = win[:th, :tw]
        acc[y : y + th, x : x + tw] += tile[:th, :tw] * (wt[..., None] if extra else wt)
        wsum[y : y + th, x : x + tw] += wt
    if not (wsum > 0).all():
        missing = int((wsum == 0).sum())
        raise ValueError(f"{missing} output pixels are covered by no tile; use tile_positions()")
    out = acc / (wsum[..., None] if extra else wsum)
    return out.astype(np.float32)


def valid_fraction(valid: np.ndarray, positions: Sequence[Position], patch: int) -> np.ndarray:
    """Fraction of valid pixels in each tile (N,) from a bool (H, W) mask, via a summed-area table.

    The denominator is the whole tile: the reflected padding of an image smaller than the patch counts as
    missing, so such a tile is not reported as whole (it is scored from mirrored pixels).
    """
    v = np.asarray(valid, dtype=bool)
    h, w = v.shape
    sat = np.zeros((h + 1, w + 1), dtype=np.int32 if h * w < 2**31 else np.int64)
    np.cumsum(v, axis=0, dtype=sat.dtype, out=sat[1:, 1:])
    np.cumsum(sat[1:, 1:], axis=1, out=sat[1:, 1:])
    out = np.empty(len(positions), dtype=np.float64)
    for i, (y, x) in enumerate(positions):
        y1, x1 = min(y + patch, h), min(x + patch, w)
        total = int(sat[y1, x1]) - int(sat[y, x1]) - int(sat[y1, x]) + int(sat[y, x])
        out[i] = total / (patch * patch)
    return out


def filter_positions(
    valid: np.ndarray, positions: Sequence[Position], patch: int, min_valid: float = 0.9
) -> list[Position]:
    """Keep the positions whose tile has at least ``min_valid`` valid pixels (no-data filtering)."""
    if not 0.0 <= min_valid <= 1.0:
        raise ValueError(f"min_valid must be in [0, 1], got {min_valid}")
    frac = valid_fraction(valid, positions, patch)
    return [pos for pos, f in zip(positions, frac, strict=True) if f >= min_valid]

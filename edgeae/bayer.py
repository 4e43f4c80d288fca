"""Raw colour-filter (Bayer) mosaics: detect them, and demosaic them before scoring or reconstruction.

A raw Mastcam-Z frame is one sample per pixel behind an RGGB filter mosaic (often stored as grey, or as
RGB with three equal channels). Scored or reconstructed as if it were an image, its 2×2 filter pattern is
the strongest "texture" in the frame. Numpy only (the flight runtime imports it; a flight-only install has
no OpenCV): :func:`demosaic_bilinear` is the classic bilinear interpolation, which OpenCV's
``cv2.COLOR_Bayer*2RGB`` also computes (they agree to one 8-bit step away from the outermost pixel ring,
tested); :func:`demosaic` is it too, on the ground as in flight (until session 32 it used OpenCV when installed, so
a frame the rover mission sent whole did not compare exactly with its original on the ground).
:func:`demosaic_strips` demosaics a frame streamed in row strips exactly, carrying one row across seams.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

import numpy as np

__all__ = [
    "PATTERNS",
    "channels_equal",
    "demosaic",
    "demosaic_bilinear",
    "demosaic_strips",
    "looks_like_mosaic",
    "mosaic_plane",
    "sampled_channels_equal",
]

log = logging.getLogger(__name__)

PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")
# OpenCV names a mosaic by the 2×2 block starting at its second row and column (RGGB -> BayerBG)
MOSAIC_RATIO = 1.15  # neighbour differences this much larger than same-colour (2-px) differences: a mosaic

_K_G = np.array([[0, 1, 0], [1, 4, 1], [0, 1, 0]], np.float32) / 4
_K_RB = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], np.float32) / 4


def _check(pattern: str) -> str:
    p = pattern.upper()
    if p not in PATTERNS:
        raise ValueError(f"unknown Bayer pattern {pattern!r}; choose from {PATTERNS}")
    return p


def shifted(pattern: str, row0: int = 0, col0: int = 0) -> str:
    """The pattern seen from pixel (row0, col0) of a frame whose pixel (0, 0) starts ``pattern``."""
    p = _check(pattern)
    if row0 % 2:
        p = p[2:] + p[:2]
    if col0 % 2:
        p = p[1] + p[0] + p[3] + p[2]
    return p


def channels_equal(a: np.ndarray, block_rows: int = 256) -> bool:
    """Whether the first three channels of an (H, W, C ≥ 3) frame are equal, compared ``block_rows`` rows at a
    time (the comparison's temporaries stay a block's worth, not the frame's)."""
    for r in range(0, a.shape[0], max(1, block_rows)):
        b = a[r : r + block_rows]
        if not (np.array_equal(b[:, :, 0], b[:, :, 1]) and np.array_equal(b[:, :, 1], b[:, :, 2])):
            return False
    return True


def sampled_channels_equal(a: np.ndarray, rows: int = 64) -> bool:
    """Whether the first three channels of an (H, W, C ≥ 3) frame are equal on at most ``rows`` rows spread evenly
    over it: a bounded read (a memory-mapped frame stays on disk), enough to tell a mosaic stored grey in RGB from
    a colour frame, whose channels differ nearly everywhere."""
    picks = np.unique(np.linspace(0, a.shape[0] - 1, min(rows, a.shape[0])).astype(np.int64))
    s = a[picks]
    return bool(np.array_equal(s[:, :, 0], s[:, :, 1]) and np.array_equal(s[:, :, 1], s[:, :, 2]))


def mosaic_plane(raw: np.ndarray) -> np.ndarray:
    """The (H, W) mosaic of a raw frame stored as (H, W), (H, W, 1) or (H, W, 3) with equal channels.

    Raises ValueError for a frame whose channels differ (already colour: nothing to demosaic). The channels are
    compared a block of rows at a time, so the check's temporaries stay small."""
    a = np.asarray(raw)
    if a.ndim == 2:
        return a
    if a.ndim == 3 and a.shape[2] == 1:
        return a[:, :, 0]
    if a.ndim == 3 and a.shape[2] >= 3:
        if not channels_equal(a):
            raise ValueError("frame has distinct colour channels: it is already demosaiced")
        return a[:, :, 0]
    raise ValueError(f"expected an (H, W) or (H, W, C) frame, got shape {a.shape}")


def _conv3(plane: np.ndarray, k: np.ndarray) -> np.ndarray:
    """3×3 correlation of (H+2, W+2) padded float32 ``plane`` -> (H, W)."""
    h, w = plane.shape[0] - 2, plane.shape[1] - 2
    out = np.zeros((h, w), np.float32)
    for dy in range(3):
        for dx in range(3):
            if k[dy, dx]:
                out += k[dy, dx] * plane[dy : dy + h, dx : dx + w]
    return out


def _block(m: np.ndarray, p: str, above: np.ndarray | None, below: np.ndarray | None, dtype: np.dtype) -> np.ndarray:
    h, w = m.shape
    # mirror without repeating the edge (row -1 = row 1): keeps every colour site on its own parity
    top = above if above is not None else (m[1] if h > 1 else below)
    bottom = below if below is not None else (m[h - 2] if h > 1 else above)
    rows = [np.asarray(r, np.float32).reshape(1, -1)[:, :w] if r is not None else m[:1].astype(np.float32)
            for r in (top, bottom)]  # fmt: skip
    f = np.concatenate([rows[0], m.astype(np.float32), rows[1]])
    pad = np.pad(f, ((0, 0), (1, 1)), mode="reflect" if w > 1 else "edge")
    out = np.empty((h, w, 3), dtype)
    plane = np.empty_like(pad)
    for ch, c in enumerate("RGB"):
        plane.fill(0.0)
        for i, site in enumerate(p):
            if site == c:  # padded row/col k holds frame row/col k - 1: same parity as i's when k = i + 1 mod 2
                dy, dx = (i // 2 + 1) % 2, (i % 2 + 1) % 2
                plane[dy::2, dx::2] = pad[dy::2, dx::2]
        v = _conv3(plane, _K_G if c == "G" else _K_RB)
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            np.rint(v, out=v)
            np.clip(v, info.min, info.max, out=v)
        out[:, :, ch] = v
    return out


def demosaic_bilinear(
    raw: np.ndarray,
    pattern: str,
    above: np.ndarray | None = None,
    below: np.ndarray | None = None,
    block_rows: int = 128,
) -> np.ndarray:
    """Bilinear demosaic of an (H, W) mosaic -> (H, W, 3) RGB in the input's dtype (integers rounded).

    ``above`` / ``below``: the frame row just above / below ``raw`` (a strip of a larger frame), so strips
    demosaic exactly like the whole frame; at a frame border the mosaic is mirrored (same colour sites).
    Works in blocks of ``block_rows`` rows: the float temporaries stay a few hundred KiB per block.
    """
    p = _check(pattern)
    m = mosaic_plane(raw)
    h, w = m.shape
    dtype = m.dtype if np.issubdtype(m.dtype, np.integer) else np.dtype(np.float32)
    out = np.empty((h, w, 3), dtype)
    step = max(2, block_rows - block_rows % 2)
    for r in range(0, h, step):
        r1 = min(h, r + step)
        out[r:r1] = _block(m[r:r1], shifted(p, r), m[r - 1] if r > 0 else above, m[r1] if r1 < h else below, dtype)
    return out


def demosaic(raw: np.ndarray, pattern: str) -> np.ndarray:
    """(H, W[, C]) mosaic -> (H, W, 3) RGB by :func:`demosaic_bilinear`, the flight's own demosaicing."""
    p = _check(pattern)
    return demosaic_bilinear(mosaic_plane(raw), p)


def demosaic_strips(strips: Iterable[tuple[int, np.ndarray]], pattern: str) -> Iterator[tuple[int, np.ndarray]]:
    """Demosaic ``(row0, strip)`` pairs of one frame (strips of (rows, W[, C]) raw samples, in order) into
    ``(row0, (rows, W, 3))``, exactly as the whole frame would be: one strip is held back to see the first
    row of the next (strip buffers may be reused by the reader, so rows are copied)."""
    p = _check(pattern)
    prev: tuple[int, np.ndarray] | None = None
    above: np.ndarray | None = None
    for r0, strip in strips:
        plane = np.array(mosaic_plane(strip), copy=True)
        if prev is not None:
            pr0, pplane = prev
            out = demosaic_bilinear(pplane, shifted(p, pr0), above=above, below=plane[0])
            above = pplane[-1].copy()
            yield pr0, out
        prev = (r0, plane)
    if prev is not None:
        pr0, pplane = prev
        yield pr0, demosaic_bilinear(pplane, shifted(p, pr0), above=above)


MOSAIC_SIDE = 512
"""The side of the central crop :func:`looks_like_mosaic` tests (a caller may read that crop on its own)."""


def looks_like_mosaic(raw: np.ndarray, ratio: float = MOSAIC_RATIO, max_side: int = MOSAIC_SIDE) -> bool:
    """Whether a grey (or equal-channel RGB) frame looks like an undemosaiced colour-filter mosaic.

    In a natural image neighbouring pixels differ less than pixels two apart; behind a colour filter
    mosaic the neighbours sit under different filters and differ *more* than same-colour pixels two apart
    (2×2 repeating values). Both axes must show it, by ``ratio``. A central crop of at most ``max_side``
    pixels is tested (only its pixels are read); frames whose channels differ there are never mosaics.
    """
    a = np.asarray(raw)
    if a.ndim < 2:
        return False
    h, w = a.shape[:2]
    if h < 8 or w < 8:
        return False
    y0, x0 = max(0, (h - max_side) // 2) & ~1, max(0, (w - max_side) // 2) & ~1
    try:  # the crop only: a memory-mapped frame is not read whole (nor its channels compared whole)
        c = mosaic_plane(a[y0 : y0 + max_side, x0 : x0 + max_side]).astype(np.float32)
    except ValueError:
        return False
    d1x = np.abs(c[:, 1:-1] - c[:, :-2]).mean()
    d2x = np.abs(c[:, 2:] - c[:, :-2]).mean()
    d1y = np.abs(c[1:-1] - c[:-2]).mean()
    d2y = np.abs(c[2:] - c[:-2]).mean()
    return bool(d1x > ratio * max(d2x, 1e-6) and d1y > ratio * max(d2y, 1e-6))

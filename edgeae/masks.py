"""Deterministic sparse-sampling masks: a pure function of (seed, shape, keep fraction, pattern).

The spacecraft sends the seed, not the mask; the ground regenerates the mask bit for bit. The random bits
come from a counter-based hash (the SplitMix64 output function over a per-pattern key and a counter) in
numpy ``uint64`` wrap-around arithmetic, so the result is defined by the algorithm alone (not by numpy's
``Generator``), is identical on every platform and numpy version, and any row range can be generated on
its own. The algorithm, its constants and golden values are in ``docs/masks.md``; ``PRNG_VERSION`` is part
of the wire format and changes whenever a single output bit would change.

``True`` in a mask means the pixel is kept (sampled and sent); the wire's "mask order" is raster order of
the kept pixels (:func:`mask_indices`). Numpy only: flight code imports this module.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

PRNG_VERSION = 1

# SplitMix64 (Steele, Lea, Flood 2014; the variant in Vigna's splitmix64.c)
GAMMA = 0x9E3779B97F4A7C15
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB

# pattern name -> id mixed into the key; ids are part of the wire format, never reuse one
PATTERN_IDS: dict[str, int] = {"uniform": 1, "jittered": 2}
PATTERNS = tuple(PATTERN_IDS)

_U64 = np.uint64
_CHUNK = 1 << 20  # grid cells hashed per step of the jittered pattern, bounds temporary memory


class MaskError(ValueError):
    """Invalid mask parameters (seed, shape, keep fraction, pattern or row range)."""


# --------------------------------------------------------------------------------------------- hashing
def mix64(z: np.ndarray) -> np.ndarray:
    """The SplitMix64 finaliser (a bijection on uint64), element-wise with wrap-around arithmetic."""
    z = np.asarray(z, dtype=_U64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> _U64(30))) * _U64(MIX1)
        z = (z ^ (z >> _U64(27))) * _U64(MIX2)
    return z ^ (z >> _U64(31))


def stream_key(seed: int, pattern: str) -> int:
    """The per-(seed, pattern) key: ``mix64(seed XOR (pattern_id * GAMMA mod 2**64))``."""
    _check_seed(seed)
    pid = _pattern_id(pattern)
    salt = (pid * GAMMA) & 0xFFFFFFFFFFFFFFFF
    return int(mix64(np.array([int(seed) ^ salt], dtype=_U64))[0])  # int(): a numpy integer seed too


def hash_counter(key: int, counter: np.ndarray) -> np.ndarray:
    """``mix64(key + (counter + 1) * GAMMA)`` mod 2**64: output number ``counter`` of SplitMix64(key)."""
    c = np.asarray(counter, dtype=_U64)
    with np.errstate(over="ignore"):
        state = _U64(key) + (c + _U64(1)) * _U64(GAMMA)
    return mix64(state)


def unit_float(h: np.ndarray) -> np.ndarray:
    """The top 53 bits of a uint64 hash as a float64 in [0, 1) (exact: ``(h >> 11) * 2**-53``)."""
    return (np.asarray(h, dtype=_U64) >> _U64(11)).astype(np.float64) * (2.0**-53)


# ------------------------------------------------------------------------------------------ validation
def _check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise MaskError(f"mask seed must be an integer, got {type(seed).__name__} {seed!r}")
    if not 0 <= int(seed) < 2**64:
        raise MaskError(f"mask seed must be in [0, 2**64), got {seed}")


def _pattern_id(pattern: str) -> int:
    if pattern not in PATTERN_IDS:
        raise MaskError(f"unknown mask pattern {pattern!r}; expected one of {PATTERNS}")
    return PATTERN_IDS[pattern]


def _check_keep(keep: float) -> float:
    if isinstance(keep, bool) or not isinstance(keep, numbers.Real):
        raise MaskError(f"keep fraction must be a number, got {type(keep).__name__} {keep!r}")
    k = float(keep)
    if not (0.0 < k <= 1.0) or math.isnan(k):
        raise MaskError(f"keep fraction must be in (0, 1], got {keep}")
    return k


def _check_rows(row0: int, row1: int | None, h: int) -> int:
    """``row1`` (``h`` when None) after checking that [row0, row1) is an integer row range inside the mask."""
    r1 = h if row1 is None else row1
    for name, v in (("row0", row0), ("row1", r1)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise MaskError(f"{name} must be an integer, got {v!r}")
    if not 0 <= row0 <= r1 <= h:
        raise MaskError(f"row range [{row0}, {r1}) is outside a mask of height {h}")
    return int(r1)


def _check_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    try:
        dims = tuple(shape)
    except TypeError:
        raise MaskError(f"mask shape must be (height, width), got {shape!r}") from None
    if len(dims) != 2:
        raise MaskError(f"mask shape must be (height, width), got {shape!r}")
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, numbers.Integral) or int(d) <= 0:
            raise MaskError(f"mask shape must be two positive integers, got {shape!r}")
    h, w = int(dims[0]), int(dims[1])
    if h * w >= 2**62:
        raise MaskError(f"mask shape {shape!r} is too large ({h * w} pixels)")
    return h, w


_CHECKED_BYTES = 64 << 20  # masks from this size up are checked against the memory available before allocating


def _check_mask_memory(n_bytes: int, shape: tuple[int, ...]) -> None:
    """Refuse (:class:`MaskError`) a bool mask of ``n_bytes`` bytes that does not fit in the memory available
    now, naming the shape, instead of numpy's allocation error (or the system's OOM killer) half way through."""
    if n_bytes < _CHECKED_BYTES:
        return
    from edgeae.memory_probe import available_memory  # neutral, standard library only; lazy: most masks are small

    have = available_memory()
    if have is not None and n_bytes > have:
        raise MaskError(
            f"mask shape {tuple(shape)!r} needs {n_bytes / 2**30:.1f} GiB as a bool array but {have / 2**30:.1f} GiB "
            "of memory is available: generate it in strips (iter_mask_strips, make_mask_rows, kept_indices_rows)"
        )


@dataclass(frozen=True)
class MaskSpec:
    """Everything the ground needs to regenerate a mask for a frame of a given shape."""

    seed: int
    keep: float
    pattern: str = "uniform"
    prng_version: int = PRNG_VERSION

    def __post_init__(self) -> None:
        _check_seed(self.seed)
        object.__setattr__(self, "keep", _check_keep(self.keep))
        _pattern_id(self.pattern)
        if self.prng_version != PRNG_VERSION:
            raise MaskError(
                f"mask PRNG version {self.prng_version} is not supported (this edgeae implements "
                f"version {PRNG_VERSION})"
            )

    def make(self, shape: tuple[int, int]) -> np.ndarray:
        return make_mask(self.seed, shape, self.keep, self.pattern)


# -------------------------------------------------------------------------------------------- patterns
_BLOCK = 1 << 14  # pixels hashed per step of the uniform pattern: its few uint64 buffers stay in L2 cache
_STEPS: np.ndarray | None = None  # i * GAMMA mod 2**64 for i < _BLOCK, built on first use


def _gamma_steps() -> np.ndarray:
    global _STEPS
    if _STEPS is None:
        with np.errstate(over="ignore"):
            _STEPS = np.arange(_BLOCK, dtype=_U64) * _U64(GAMMA)
    return _STEPS


def uniform_threshold(keep: float) -> int | None:
    """The integer form of ``unit_float(h) < keep``: ``h < T`` with ``T = ceil(keep * 2**53) << 11``, or None
    when every pixel is kept (keep = 1). Exact: keep·2**53 is exact in float64 and h >> 11 is an integer."""
    if keep >= 1.0:
        return None
    return math.ceil(keep * 2.0**53) << 11


def _uniform_rows(key: int, w: int, keep: float, row0: int, row1: int, out: np.ndarray | None = None) -> np.ndarray:
    """Bernoulli(keep) per pixel: keep when the 53-bit uniform of hash(pixel index) < keep.

    Bit-identical to ``unit_float(hash_counter(key, idx)) < keep`` (docs/masks.md), computed in cache-sized
    blocks with in-place uint64 arithmetic: the counter's state advances by GAMMA per pixel, so each block is
    a precomputed ``i * GAMMA`` plus one scalar, and the float comparison becomes an integer one."""
    n = (row1 - row0) * w
    flat = np.empty(n, dtype=bool) if out is None else out.reshape(-1)
    if flat.size != n or flat.dtype != bool:
        raise MaskError(f"out must be a bool array of {n} elements, got {flat.dtype} {flat.size}")
    threshold = uniform_threshold(keep)
    if threshold is None:
        flat[:] = True
        return flat.reshape(row1 - row0, w)
    steps = _gamma_steps()
    z = np.empty(min(n, _BLOCK), dtype=_U64)
    tmp = np.empty_like(z)
    t = _U64(threshold)
    start = row0 * w
    m64 = (1 << 64) - 1
    for lo in range(0, n, _BLOCK):
        k = min(_BLOCK, n - lo)
        zz, tt = z[:k], tmp[:k]
        state0 = (key + (start + lo + 1) * GAMMA) & m64  # hash_counter's state of pixel start + lo
        np.add(steps[:k], _U64(state0), out=zz)
        np.right_shift(zz, _U64(30), out=tt)
        np.bitwise_xor(zz, tt, out=zz)
        np.multiply(zz, _U64(MIX1), out=zz)
        np.right_shift(zz, _U64(27), out=tt)
        np.bitwise_xor(zz, tt, out=zz)
        np.multiply(zz, _U64(MIX2), out=zz)
        np.right_shift(zz, _U64(31), out=tt)
        np.bitwise_xor(zz, tt, out=zz)
        np.less(zz, t, out=flat[lo : lo + k])
    return flat.reshape(row1 - row0, w)


def jitter_grid(shape: tuple[int, int], keep: float) -> tuple[int, int]:
    """Cells per axis of the jittered grid: ``max(1, floor(n * sqrt(keep) + 0.5))`` for n = height, width."""
    h, w = _check_shape(shape)
    s = math.sqrt(_check_keep(keep))
    return max(1, math.floor(h * s + 0.5)), max(1, math.floor(w * s + 0.5))


def _jittered_points(
    key: int, h: int, w: int, keep: float, row0: int, row1: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(rows, columns) of the kept pixels in rows [row0, row1), one per grid cell, in blocks of cell rows;
    cell (cy, cx) spans rows [cy*h//ny, (cy+1)*h//ny) (same for columns)."""
    ny, nx = jitter_grid((h, w), keep)
    if row1 <= row0:
        return
    # row r lies in cell row ((r + 1) * ny - 1) // h, the largest cy with cy * h // ny <= r
    cy0 = ((row0 + 1) * ny - 1) // h
    cy1 = (row1 * ny - 1) // h + 1
    cx = np.arange(nx, dtype=np.int64)
    x0 = (cx * w) // nx
    cw = ((cx + 1) * w) // nx - x0
    rows_per_step = max(1, _CHUNK // nx)
    for a in range(cy0, cy1, rows_per_step):
        cy = np.arange(a, min(cy1, a + rows_per_step), dtype=np.int64)
        y0 = (cy * h) // ny
        ch = ((cy + 1) * h) // ny - y0
        cell = (cy[:, None] * nx + cx[None, :]).astype(_U64)
        hv = hash_counter(key, cell)
        with np.errstate(over="ignore"):
            ox = ((hv & _U64(0xFFFFFFFF)) * cw[None, :].astype(_U64)) >> _U64(32)
            oy = ((hv >> _U64(32)) * ch[:, None].astype(_U64)) >> _U64(32)
        ys = y0[:, None] + oy.astype(np.int64)
        xs = np.broadcast_to(x0[None, :], ys.shape) + ox.astype(np.int64)
        sel = (ys >= row0) & (ys < row1)
        yield ys[sel], xs[sel]


def _jittered_rows(
    key: int, h: int, w: int, keep: float, row0: int, row1: int, out: np.ndarray | None = None
) -> np.ndarray:
    """One kept pixel per grid cell (:func:`_jittered_points`) as a bool mask of rows [row0, row1)."""
    if out is None:
        out = np.zeros((row1 - row0, w), dtype=bool)
    else:
        if out.shape != (row1 - row0, w) or out.dtype != bool:
            raise MaskError(f"out must be bool {(row1 - row0, w)}, got {out.dtype} {out.shape}")
        out[...] = False
    for ys, xs in _jittered_points(key, h, w, keep, row0, row1):
        out[ys - row0, xs] = True
    return out


# ---------------------------------------------------------------------------------------------- public
def make_mask_rows(
    seed: int,
    shape: tuple[int, int],
    keep: float,
    pattern: str = "uniform",
    row0: int = 0,
    row1: int | None = None,
    *,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Rows ``[row0, row1)`` of the mask of a (height, width) frame, bool (row1 - row0, width), True = kept.

    Equal to ``make_mask(seed, shape, keep, pattern)[row0:row1]`` bit for bit, without computing other rows.
    ``out`` (contiguous bool, that shape) is filled and returned instead of a new array, so a streaming
    caller reuses one buffer; temporaries stay a few hundred KiB whatever the row range.
    """
    h, w = _check_shape(shape)
    k = _check_keep(keep)
    key = stream_key(seed, pattern)
    r1 = _check_rows(row0, row1, h)
    if out is not None and (out.shape != (r1 - row0, w) or not out.flags.c_contiguous):
        raise MaskError(f"out must be a contiguous bool array of shape {(r1 - row0, w)}, got {out.shape}")
    if out is None:
        _check_mask_memory((r1 - row0) * w, shape)
    if pattern == "uniform":
        return _uniform_rows(key, w, k, int(row0), int(r1), out)
    return _jittered_rows(key, h, w, k, int(row0), int(r1), out)


def kept_indices_rows(
    seed: int, shape: tuple[int, int], keep: float, pattern: str = "uniform", row0: int = 0, row1: int | None = None
) -> np.ndarray:
    """Flat raster indices (int64, ascending: the wire's sample order) of the kept pixels of rows ``[row0,
    row1)``, counted from the first pixel of ``row0``: ``mask_indices(make_mask_rows(...))`` without the bool
    mask. For ``jittered`` only the kept pixels are computed (no pass over every pixel of the rows), which is
    what makes it the cheap pattern for huge frames; ``uniform`` hashes every pixel either way."""
    if pattern != "jittered":
        return np.flatnonzero(make_mask_rows(seed, shape, keep, pattern, row0, row1))
    h, w = _check_shape(shape)
    k = _check_keep(keep)
    key = stream_key(seed, pattern)
    r1 = _check_rows(row0, row1, h)
    parts = [(ys - row0) * w + xs for ys, xs in _jittered_points(key, h, w, k, int(row0), r1)]
    idx = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    idx.sort()
    return idx


def mask_rows_and_indices(
    seed: int, shape: tuple[int, int], keep: float, pattern: str, row0: int, row1: int, *, out: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``[row0, row1)`` of the mask written into ``out`` (as :func:`make_mask_rows`) *and* the flat
    indices of their kept pixels (as :func:`kept_indices_rows`), each computed the cheap way for the pattern:
    a streaming sampler needs both (the indices pick the samples, the mask feeds masked models)."""
    if pattern != "jittered":
        mask = make_mask_rows(seed, shape, keep, pattern, row0, row1, out=out)
        return mask, np.flatnonzero(mask)
    idx = kept_indices_rows(seed, shape, keep, pattern, row0, row1)
    if out.shape != (row1 - row0, shape[1]) or out.dtype != bool or not out.flags.c_contiguous:
        raise MaskError(f"out must be a contiguous bool array of shape {(row1 - row0, shape[1])}, got {out.shape}")
    out[...] = False
    out.reshape(-1)[idx] = True
    return out, idx


def make_mask(seed: int, shape: tuple[int, int], keep: float, pattern: str = "uniform") -> np.ndarray:
    """The full bool (height, width) mask, True = pixel kept. A pure function of its arguments: the flight runtime
    and the ground make the same mask from the same four values, so it never crosses the link (docs/masks.md).

    ``seed``: a whole number in [0, 2**64) (first, as on the wire); ``shape``: (height, width); ``keep``: the
    fraction of pixels kept, in (0, 1] (0.1 keeps a tenth); ``pattern``: ``"uniform"`` (each pixel kept with
    probability ``keep``) or ``"jittered"`` (one pixel in each cell of a grid whose cells hold 1 / keep pixels).
    ``make_mask(seed=1, shape=(480, 640), keep=0.1)``."""
    return make_mask_rows(seed, shape, keep, pattern, 0, None)


def iter_mask_strips(
    seed: int, shape: tuple[int, int], keep: float, pattern: str = "uniform", strip_rows: int = 256
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(row0, rows)`` strips of the mask top to bottom, for frames too large to hold a full mask."""
    h, _ = _check_shape(shape)
    if strip_rows <= 0:
        raise MaskError(f"strip_rows must be positive, got {strip_rows}")
    for r0 in range(0, h, strip_rows):
        yield r0, make_mask_rows(seed, shape, keep, pattern, r0, min(h, r0 + strip_rows))


def mask_indices(mask: np.ndarray) -> np.ndarray:
    """Flat raster indices (int64) of the kept pixels: the order in which the wire carries their values."""
    m = np.asarray(mask)
    if m.dtype != bool or m.ndim != 2:
        raise MaskError(f"mask must be a 2-D bool array, got {m.dtype} {m.shape}")
    return np.flatnonzero(m)


def apply_mask(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A copy of ``image`` (H, W) or (H, W, C) with destroyed pixels (mask False) set to 0 on all channels."""
    img = np.asarray(image)
    m = np.asarray(mask)
    if m.dtype != bool or m.shape != img.shape[:2] or img.ndim not in (2, 3):
        raise MaskError(f"mask {m.dtype} {m.shape} does not match image of shape {img.shape}")
    out = img.copy()
    out[~m] = 0
    return out

"""How an archive product's samples become float32 [0, 1]: the rule of :mod:`edgeae.archive.reader`.

``bit_depth``: pixels = raw / (2**bits - 1); ``range``: pixels = (raw - lo) / (hi - lo) over the measured valid
range. A constant product still gets a positive width (its pixels are then 0), also above 2**53 where
``lo + 1 == lo``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["Scaling", "choose_scaling", "normalise", "valid_range"]


@dataclass(frozen=True)
class Scaling:
    """pixels = (raw - raw_lo) / (raw_hi - raw_lo); physical value = raw × multiplier + offset."""

    kind: str  # "bit_depth" | "range"
    raw_lo: float
    raw_hi: float
    bits: int
    multiplier: float = 1.0
    offset: float = 0.0
    unit: str | None = None

    @property
    def physical_lo(self) -> float:
        return self.raw_lo * self.multiplier + self.offset

    @property
    def physical_hi(self) -> float:
        return self.raw_hi * self.multiplier + self.offset

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "physical_lo": self.physical_lo, "physical_hi": self.physical_hi}


def choose_scaling(dtype: np.dtype, bits: int | None, vmin: float | None, vmax: float | None) -> Scaling:
    """The scaling rule of :mod:`edgeae.archive.reader` from the valid range (None when nothing is valid)."""
    if dtype == np.uint8:
        return Scaling("bit_depth", 0.0, 255.0, 8)
    if dtype.kind in "ui" and bits and 0 < bits <= 8 * dtype.itemsize:
        top = float(2**bits - 1)
        if vmin is None or vmax is None or (vmin >= 0 and vmax <= top):
            return Scaling("bit_depth", 0.0, top, bits)
    width = 8 * dtype.itemsize
    if vmin is None or vmax is None:
        return Scaling("range", 0.0, 1.0, width)
    lo, hi = float(vmin), float(vmax)
    if not hi > lo:  # a constant product: any positive width maps it to 0
        hi = lo + 1.0
        if not hi > lo:  # |lo| >= 2**53: lo + 1 rounds back to lo; the next double does not
            hi = math.nextafter(lo, math.inf)
            if math.isinf(hi):
                lo, hi = math.nextafter(lo, -math.inf), lo
    return Scaling("range", lo, hi, width)


def valid_range(raw: np.ndarray, bad: np.ndarray) -> tuple[float | None, float | None]:
    """(min, max) of ``raw`` (rows, W, C) where ``bad`` (rows, W) is False; (None, None) when nothing is.

    Masked reductions: boolean indexing would allocate two int64 index arrays (8× the mask) per call.
    """
    ok = ~bad
    if not ok.any():
        return None, None
    lo = hi = None
    for c in range(raw.shape[2]):
        a = raw[:, :, c]
        big = np.inf if a.dtype.kind == "f" else np.iinfo(a.dtype).max
        small = -np.inf if a.dtype.kind == "f" else np.iinfo(a.dtype).min
        m, n = float(np.min(a, where=ok, initial=big)), float(np.max(a, where=ok, initial=small))
        lo = m if lo is None else min(lo, m)
        hi = n if hi is None else max(hi, n)
    return lo, hi


def normalise(raw: np.ndarray, bad: np.ndarray, s: Scaling) -> np.ndarray:
    """float32 (rows, W, C) in [0, 1] from ``raw`` (rows, W, C) by ``s``; pixels where ``bad`` (rows, W) are 0."""
    k = 1.0 / (s.raw_hi - s.raw_lo) if s.raw_hi > s.raw_lo else 1.0
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        k32, lo32 = np.float32(k), np.float32(s.raw_lo)
        if raw.dtype.itemsize > 4 or not (0 < k32 < np.inf) or not np.isfinite(lo32):
            # float32 cannot hold the factor or the offset (a range near 1e-38 or 1e38 wide): float64
            out = ((raw.astype(np.float64) - s.raw_lo) * k).astype(np.float32)
        else:
            out = raw.astype(np.float32)
            out -= lo32
            out *= k32
    out[bad] = 0.0
    np.clip(out, 0.0, 1.0, out=out)  # float rounding only: every valid value lies in [lo, hi]
    return out

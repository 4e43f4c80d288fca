"""A sparse frame's sampling mask as the ground regenerates it: a strip of rows at a time, only where a received
piece is checked (numpy only). A piece whose claim its rows cannot plausibly hold is refused before any pixel is
hashed (:meth:`FrameMask.claim_bounds`), one that claims more kept pixels than its rows hold as soon as the count
passes its claim, and a frame none of whose pieces fits is refused before the rest of its mask is hashed or any
frame-size array is touched (audit a3 #5: one 70-byte packet cost 20 s and 1.3 GB before it was refused)."""

from __future__ import annotations

import math

import numpy as np

from edgeae.masks import jitter_grid, make_mask_rows, uniform_threshold

STRIP_PIXELS = 1 << 22
"""Pixels hashed per strip (whole rows, at least one): ~20 ms of hashing and 4 MB of the mask touched."""

CLAIM_SIGMAS = 12
CLAIM_SLACK = 32
"""A uniform mask's count of kept pixels in N pixels is Binomial(N, p): a claim further than ``CLAIM_SIGMAS`` σ +
``CLAIM_SLACK`` from N·p is refused unhashed. Bernstein's inequality puts a true count there with probability under
2·e^-48 (~3e-21) a piece, whatever N and p: a flight's piece is never refused by it."""


class FrameMask:
    """The bool (height, width) mask of one frame (True = kept), each strip of rows generated on first use.

    ``mask`` is allocated empty: its memory is touched only where a strip is generated, so checking a piece costs
    the strips of the rows it claims, not the frame. :meth:`full` generates the strips still missing."""

    def __init__(self, seed: int, shape: tuple[int, int], keep: float, pattern: str) -> None:
        self.seed, self.shape, self.keep, self.pattern = seed, shape, keep, pattern
        self.mask = np.empty(shape, dtype=bool)
        self.step = max(1, STRIP_PIXELS // shape[1])  # rows per strip
        self._done = np.zeros(-(-shape[0] // self.step), dtype=bool)

    def _strip(self, k: int) -> tuple[int, int]:
        """Rows [a, b) of strip ``k``, generated into ``mask`` when they are not yet."""
        a, b = k * self.step, min(self.shape[0], (k + 1) * self.step)
        if not self._done[k]:
            make_mask_rows(self.seed, self.shape, self.keep, self.pattern, a, b, out=self.mask[a:b])
            self._done[k] = True
        return a, b

    def rows(self, r0: int, r1: int) -> np.ndarray:
        """Rows [r0, r1) of the mask (a view), generating the strips they fall in."""
        for k in range(r0 // self.step, -(-r1 // self.step)):
            self._strip(k)
        return self.mask[r0:r1]

    def claim_bounds(self, r0: int, r1: int, c0: int, c1: int) -> tuple[int, int]:
        """The least and most kept pixels rows [r0, r1) × columns [c0, c1) can hold, without hashing a pixel.

        ``jittered`` (one kept pixel per grid cell, inside it): the cells the rectangle holds whole, and the cells
        it crosses. ``uniform``: the Binomial count's plausible range (:data:`CLAIM_SIGMAS`), within [0, pixels]."""
        area = (r1 - r0) * (c1 - c0)
        if self.pattern == "jittered":
            (h, w), (ny, nx) = self.shape, jitter_grid(self.shape, self.keep)
            rows_in, rows_met = _cells(r0, r1, h, ny)
            cols_in, cols_met = _cells(c0, c1, w, nx)
            return rows_in * cols_in, rows_met * cols_met
        t = uniform_threshold(self.keep)
        if t is None:  # keep 1: every pixel is kept
            return area, area
        p = t / 2.0**64
        mean, sd = area * p, math.sqrt(area * p * (1.0 - p))
        margin = CLAIM_SIGMAS * sd + CLAIM_SLACK
        return max(0, math.ceil(mean - margin)), min(area, math.floor(mean + margin))

    def fits(self, r0: int, r1: int, c0: int, c1: int, n: int) -> bool:
        """Whether rows [r0, r1) × columns [c0, c1) keep exactly ``n`` pixels: a claim outside
        :meth:`claim_bounds` is refused unhashed, any other counted (:meth:`count`, stopping once past ``n``)."""
        lo, hi = self.claim_bounds(r0, r1, c0, c1)
        return lo <= n <= hi and self.count(r0, r1, c0, c1, n) == n

    def count(self, r0: int, r1: int, c0: int, c1: int, limit: int) -> int:
        """Kept pixels in rows [r0, r1) × columns [c0, c1), counted a strip at a time from the top; stops as soon
        as the count passes ``limit`` (then the count so far, over ``limit``, is returned)."""
        n = 0
        for k in range(r0 // self.step, -(-r1 // self.step)):
            a, b = self._strip(k)
            n += int(np.count_nonzero(self.mask[max(a, r0) : min(b, r1), c0:c1]))
            if n > limit:
                break
        return n

    def generated(self) -> bool:
        """Whether every strip of the mask has been generated (then counting it hashes nothing)."""
        return bool(self._done.all())

    def full(self) -> np.ndarray:
        """The whole mask (every strip generated)."""
        return self.rows(0, self.shape[0])


def _cells(a: int, b: int, n: int, cells: int) -> tuple[int, int]:
    """Of ``cells`` jittered grid cells along an axis of ``n`` pixels (cell k spans [k*n//cells, (k+1)*n//cells),
    at least one pixel: cells <= n), how many [a, b) holds whole, and how many it meets."""
    first, last = ((a + 1) * cells - 1) // n, (b * cells - 1) // n  # the cells of pixels a and b - 1
    whole_first = first if first * n // cells == a else first + 1
    whole_last = last if (last + 1) * n // cells == b else last - 1
    return max(0, whole_last - whole_first + 1), last - first + 1

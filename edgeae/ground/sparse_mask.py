"""A sparse frame's sampling mask as the ground regenerates it: a strip of rows at a time, only where a received
piece is checked (numpy only). A piece that claims more kept pixels than its rows hold is refused as soon as the
count passes its claim, and a frame none of whose pieces fits is refused before the rest of its mask is hashed or
any frame-size array is touched (audit a3 #5: one 70-byte packet cost 20 s and 1.3 GB before it was refused)."""

from __future__ import annotations

import numpy as np

from edgeae.masks import make_mask_rows

STRIP_PIXELS = 1 << 22
"""Pixels hashed per strip (whole rows, at least one): ~20 ms of hashing and 4 MB of the mask touched."""


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

    def full(self) -> np.ndarray:
        """The whole mask (every strip generated)."""
        return self.rows(0, self.shape[0])

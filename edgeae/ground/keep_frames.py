"""The frames the keep search (:mod:`.keep_search`) packs, and their estimated sizes. Numpy and the wire package.

:class:`KeptPixels`: the uniform mask's frames between two keeps, a bit per pixel and the pixels between in hash
order. :class:`Window`: the frames between two packed ones from the larger one's samples, without a pass over the
frame. :func:`planned_packets`: a frame's packet count from 16 of its packets. A frame's wire size is its packets'
headers (70 B a packet in layout 2) plus their coded samples; the planner (:func:`edgeae.wire.sparse_plan.
plan_sparse`) picks each band's packet count from the compression of at most 16 of its packets, so one sample more
or less moves the count by a few packets either way (on a 2048×2048 frame ±400 B around a line, where the coded
samples stray ±80 B). Repeating that choice estimates a frame's size to about the coded samples' spread for the
cost of coding 16 packets, not thousands. An estimate only chooses which frames the search packs: every answer is
packed (the planner may still add packets when one does not fit, which the estimate does not know).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgeae.wire.layout import WireConfig
from edgeae.wire.sparse_plan import first_packet_count

KEEP_STEPS = 1 << 53
"""Keeps are searched as ``t / 2**53`` for whole numbers t: a uniform mask keeps a pixel when the top 53 bits of its
hash are under ``ceil(keep * 2**53)`` (:func:`edgeae.masks.uniform_threshold`), so these keeps give every uniform
mask there is, and a larger t keeps the same pixels and more (masks nested in the keep)."""
_GATHER = 1 << 16  # pixels gathered per step (bounds the temporary mask)


class KeptPixels:
    """The frames of the uniform mask of ``seed`` between thresholds ``fits`` and ``over`` (fits < over): the mask
    ``fits`` keeps, a bit per pixel, and the pixels ``over`` adds to it (flat raster indices, int32 for frames under
    2**31 pixels) in the order of their hashes' top 53 bits (a pixel is kept when they are under the threshold,
    :func:`edgeae.masks.uniform_threshold`). Frame ``k`` (0 … :attr:`steps`) is ``fits``'s plus the first k of those
    pixels and any of the same hash as the k-th (a frame that the next k gives again cannot end a search: it is the
    same size). Built from the two masks a strip of rows at a time (one pass over the frame); memory: a bit per
    pixel and 4 bytes per pixel between the two (24 while they are sorted)."""

    def __init__(self, samples: np.ndarray, seed: int, fits: int, over: int) -> None:
        from edgeae.masks import make_mask_rows, stream_key

        h, w, c = samples.shape
        kind = np.int32 if h * w < 2**31 else np.int64
        strip = 8 * max(1, (1 << 13) // max(w, 1))  # rows; a multiple of 8, so each strip's bits start on a byte
        bo, bf = np.empty((min(h, strip), w), bool), np.empty((min(h, strip), w), bool)
        bits: list[np.ndarray] = []
        add: list[np.ndarray] = []
        self.rows = np.zeros(h, np.int64)  # kept pixels per row of frame 0 (what ``fits`` keeps)
        for r0 in range(0, h, strip):
            r1 = min(h, r0 + strip)
            mo = make_mask_rows(seed, (h, w), over / KEEP_STEPS, "uniform", r0, r1, out=bo[: r1 - r0]).reshape(-1)
            mf = make_mask_rows(seed, (h, w), fits / KEEP_STEPS, "uniform", r0, r1, out=bf[: r1 - r0]).reshape(-1)
            bits.append(np.packbits(mf))
            add.append((np.flatnonzero(mo & ~mf) + r0 * w).astype(kind))
            self.rows[r0:r1] = np.count_nonzero(mf.reshape(r1 - r0, w), axis=1)
        self.bits = np.concatenate(bits)
        self.key, self.fits, self.width, self.base = stream_key(seed, "uniform"), fits, w, int(self.rows.sum())
        between = np.concatenate(add)
        self.add = between[np.argsort(self._tops(between), kind="stable")]  # by hash
        self.steps = len(self.add)
        self.flat = samples.reshape(h * w, c)

    def _tops(self, pixels: np.ndarray) -> np.ndarray:
        from edgeae.masks import hash_counter

        return hash_counter(self.key, pixels.astype(np.uint64)) >> np.uint64(11)

    def threshold(self, k: int) -> int:
        """The threshold t of frame ``k`` (keep ``t / 2**53``)."""
        return int(self._tops(self.add[k - 1 : k])[0]) + 1 if k else self.fits

    def end(self, k: int) -> int:
        """The pixels frame ``k`` adds to frame 0: k, and those after of the k-th's hash (one hash, two pixels)."""
        end = k
        while 0 < end < self.steps and self.threshold(end + 1) == self.threshold(k):
            end += 1
        return end

    def values(self, k: int, want: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The samples of frame ``k`` in raster order ((n, C), the wire's order), its kept pixels per row, and the
        sample numbers of the pixels ``want`` (flat indices of pixels the frame keeps)."""
        add = np.sort(self.add[: self.end(k)])
        want = np.zeros(0, np.int64) if want is None else want
        order = np.argsort(want)
        ws, ranks = want[order], np.empty(len(want), np.int64)
        n = len(self.flat)
        out = np.empty((self.base + len(add), self.flat.shape[1]), self.flat.dtype)
        o = 0
        for a in range(0, n, _GATHER):  # a multiple of 8: a whole byte of bits
            b = min(n, a + _GATHER)
            mask = np.unpackbits(self.bits[a // 8 : -(-b // 8)], count=b - a).view(bool)
            i, j = np.searchsorted(add, (a, b))
            mask[add[i:j] - a] = True
            i, j = np.searchsorted(ws, (a, b))
            if j > i:
                ranks[order[i:j]] = o + np.cumsum(mask)[ws[i:j] - a] - 1
            got = self.flat[a:b][mask]
            out[o : o + len(got)] = got
            o += len(got)
        return out, self.rows + np.bincount(add // self.width, minlength=len(self.rows)), ranks


class Window:
    """Frames ``lo`` … ``hi`` of ``kept`` from frame ``hi``'s samples: frame k lacks the pixels frame ``hi`` adds
    after it, whose sample numbers in frame ``hi`` are kept (8 bytes a pixel, 24 with their order)."""

    def __init__(self, kept: KeptPixels, lo: int, hi: int) -> None:
        self.kept, self.top = kept, kept.end(hi)
        self.added = kept.add[kept.end(lo) : self.top]
        self.values, self.counts, self.ranks = kept.values(hi, self.added)
        self._order = np.argsort(self.ranks)  # the added pixels by sample number: a frame's gaps without a sort
        self._sorted = self.ranks[self._order]

    def frame(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The samples (raster order) and kept pixels per row of frame ``k``: frame ``hi``'s samples without those
        it lacks (a mask of the array's shape, which numpy applies without an index array)."""
        drop = self._lacks(k)
        if not drop:
            return self.values, self.counts
        n, c = self.values.shape
        keep = np.ones((n, c), bool)
        keep[self.ranks[len(self.ranks) - drop :]] = False
        return self.values[keep].reshape(-1, c), self.counts - self._rows(drop)

    def take(self, k: int) -> tuple[Callable[[np.ndarray], np.ndarray], np.ndarray]:
        """A getter of frame ``k``'s samples by number, and its kept pixels per row, without building the frame."""
        drop = self._lacks(k)
        if not drop:
            return self.values.__getitem__, self.counts
        gone = self._sorted[self._order >= len(self.ranks) - drop]
        shift = gone - np.arange(len(gone))  # sample i of frame k is sample i + (gaps at or before it) of hi

        def take(i: np.ndarray) -> np.ndarray:
            return self.values[i + np.searchsorted(shift, i, side="right")]

        return take, self.counts - self._rows(drop)

    def _lacks(self, k: int) -> int:
        return self.top - self.kept.end(k)

    def _rows(self, drop: int) -> np.ndarray:
        return np.bincount(self.added[len(self.added) - drop :] // self.kept.width, minlength=len(self.counts))


def planned_packets(
    take: Callable[[np.ndarray], np.ndarray], counts: np.ndarray, wire: WireConfig, bits: int, unit: int
) -> int:
    """The packets the layout-2 planner first plans for a frame with ``counts`` kept pixels per row (H,), whose
    samples of numbers ``i`` (raster order) are ``take(i)`` ((n, C), ``unit`` bytes a pixel): the sum over its bands
    of :func:`edgeae.wire.sparse_plan.first_packet_count`, the count the planner checks first."""
    cum = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
    band = wire.band_rows or len(counts)
    total = 0
    for r0 in range(0, len(counts), band):
        r1 = min(len(counts), r0 + band)
        n, v0 = int(cum[r1] - cum[r0]), int(cum[r0])
        total += first_packet_count(take, v0, n, r1 - r0, unit, wire, bits)[2]
    return total

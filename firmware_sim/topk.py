"""The top-k keepers of a frame's scored patches: :class:`TopK` (the ``k`` highest scores, above a threshold
when one is set) and :class:`TermsTopK` (the ``k`` highest by the frame-normalised ``terms-max`` score), both
with bounded memory while the frame streams; :class:`Candidate` is one kept patch with its pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class Candidate:
    score: float
    x: int
    y: int
    pixels: np.ndarray


class TopK:
    """The ``k`` highest-scoring patches of a frame (above ``threshold`` when one is set), bounded memory.

    :attr:`flagged` counts the patches above the threshold; without one it is None: no patch is judged anomalous,
    the ``k`` highest are sent by rank (until session 31 every scored patch counted as flagged)."""

    def __init__(self, k: int, threshold: float | None) -> None:
        self.k = max(1, k)
        self.threshold = threshold
        self.items: list[Candidate] = []
        self.above = 0  # finite scores above the threshold (every finite score without one)
        self.scored = 0
        self.nonfinite = 0  # scores that were NaN or infinite (a model fault): counted, never flagged
        self.max_score = float("-inf")

    def offer(self, score: float, x: int, y: int, pixels: np.ndarray) -> None:
        score = float(score)
        self.scored += 1
        if not math.isfinite(score):
            self.nonfinite += 1
            return
        self.max_score = max(self.max_score, score)
        if self.threshold is not None and not score > self.threshold:
            return
        self.above += 1
        if len(self.items) < self.k:
            self.items.append(Candidate(score, x, y, pixels.copy()))
        else:
            low = min(range(len(self.items)), key=lambda i: self.items[i].score)
            if score > self.items[low].score:
                self.items[low] = Candidate(score, x, y, pixels.copy())

    def offer_batch(self, scores: np.ndarray, xs: np.ndarray, ys: np.ndarray, raw: np.ndarray) -> None:
        """:meth:`offer` for a batch, in order, with the same outcome: a score at or below the lowest kept one
        (when ``k`` are kept) can never enter, so only the few that can are offered one by one. ``raw`` holds
        the patches as (N, C, P, P) raw samples."""
        s = np.asarray(scores, np.float64)
        if s.size == 0:
            return
        self.scored += int(s.size)
        finite = np.isfinite(s)
        self.nonfinite += int(s.size - finite.sum())
        if finite.any():
            self.max_score = max(self.max_score, float(s[finite].max()))
        passing = (s > self.threshold if self.threshold is not None else np.ones(s.size, bool)) & finite
        self.above += int(passing.sum())
        if len(self.items) >= self.k:
            passing &= s > min(c.score for c in self.items)
        for i in np.flatnonzero(passing):
            score = float(s[i])
            if len(self.items) < self.k:
                self.items.append(Candidate(score, int(xs[i]), int(ys[i]), raw[i].transpose(1, 2, 0).copy()))
                continue
            low = min(range(len(self.items)), key=lambda j: self.items[j].score)
            if score > self.items[low].score:
                self.items[low] = Candidate(score, int(xs[i]), int(ys[i]), raw[i].transpose(1, 2, 0).copy())

    @property
    def flagged(self) -> int | None:
        """Patches above the threshold; None without a threshold (the top ``k`` are sent by rank, none flagged)."""
        return None if self.threshold is None else self.above

    def ranked(self) -> list[Candidate]:
        return sorted(self.items, key=lambda c: (-c.score, c.y, c.x))


class TermsTopK:
    """The ``k`` highest patches of a frame by the ``terms-max`` score (:mod:`edgeae.anomaly.terms`), which
    needs the whole frame's medians of both terms: exact and streaming, with bounded memory.

    A patch among the ``k`` highest by max(rec / a, mu2 / b) is among the ``k`` highest by rec or by mu2
    (whichever term attains its maximum: fewer than ``k`` patches can exceed it in that term), so two
    :class:`TopK` keep those candidates (with their pixels) while the frame streams, and every scored patch's
    two terms and position are kept (at most ``capacity``: the frame's patch grid; 24 bytes a patch) for the
    medians. :meth:`ranked` normalises and ranks the union at the end of the frame. Offered scores are (N, 2)
    arrays of (rec, mu2); ``threshold`` applies to the normalised score (multiples of the frame's medians).
    """

    def __init__(self, k: int, threshold: float | None, capacity: int) -> None:
        self.k = max(1, k)
        self.threshold = threshold
        self.by_term = (TopK(self.k, None), TopK(self.k, None))
        self.terms = np.empty((max(0, int(capacity)), 2), np.float64)
        self.xy = np.empty((len(self.terms), 2), np.int32)  # pixel positions: 2 x 4 bytes a patch
        self.scored = 0
        self._done: tuple[list[Candidate], np.ndarray] | None = None

    def _keep(self, t: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> None:
        n, i = len(t), self.scored
        if i + n > len(self.terms):
            raise ValueError(f"more patches scored ({i + n}) than the frame's grid holds ({len(self.terms)})")
        self.terms[i : i + n] = t
        self.xy[i : i + n, 0] = xs
        self.xy[i : i + n, 1] = ys
        self.scored += n
        self._done = None

    def offer(self, score: np.ndarray, x: int, y: int, pixels: np.ndarray) -> None:
        t = np.asarray(score, np.float64).reshape(1, 2)
        self._keep(t, np.array([x]), np.array([y]))
        for j, top in enumerate(self.by_term):
            top.offer(float(t[0, j]), x, y, pixels)

    def offer_batch(self, scores: np.ndarray, xs: np.ndarray, ys: np.ndarray, raw: np.ndarray) -> None:
        t = np.asarray(scores, np.float64).reshape(-1, 2)
        if t.size == 0:
            return
        self._keep(t, xs, ys)
        for j, top in enumerate(self.by_term):
            top.offer_batch(t[:, j], xs, ys, raw)

    def _finish(self) -> tuple[list[Candidate], np.ndarray]:
        if self._done is not None:
            return self._done
        from edgeae.anomaly.terms import frame_scales, terms_max

        t, xy = self.terms[: self.scored], self.xy[: self.scored]
        if not len(t):
            self._done = ([], np.empty(0))
            return self._done
        every = terms_max(t[:, 0], t[:, 1], frame_scales(t[:, 0], t[:, 1]))
        union = {(c.x, c.y): c for top in self.by_term for c in top.items}
        out = []
        for (x, y), c in union.items():
            row = int(np.flatnonzero((xy[:, 0] == x) & (xy[:, 1] == y))[0])
            s = float(every[row])
            if math.isfinite(s) and (self.threshold is None or s > self.threshold):
                out.append(Candidate(s, x, y, c.pixels))
        out.sort(key=lambda c: (-c.score, c.y, c.x))
        self._done = (out[: self.k], every)
        return self._done

    def ranked(self) -> list[Candidate]:
        return list(self._finish()[0])

    @property
    def items(self) -> list[Candidate]:
        return self.ranked()

    @property
    def flagged(self) -> int | None:
        """Patches whose normalised score is above the threshold; None without a threshold (sent by rank)."""
        if self.threshold is None:
            return None
        every = self._finish()[1]
        return int((every[np.isfinite(every)] > self.threshold).sum())

    @property
    def nonfinite(self) -> int:
        every = self._finish()[1]
        return int(every.size - np.isfinite(every).sum())

    @property
    def max_score(self) -> float:
        every = self._finish()[1]
        every = every[np.isfinite(every)]
        return float(every.max()) if every.size else float("-inf")

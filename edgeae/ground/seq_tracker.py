"""Sequence counts of one APID on the ground: unwrapped across the 14-bit wrap and recorded as valid, corrupt or
refused, so gaps are found across the 16383 -> 0 wrap and with reordering up to half the counter range (a jump of
8192 or more is read as going backwards). Used by :class:`edgeae.ground.reassembly.Receiver`."""

from __future__ import annotations

import bisect
from collections.abc import Iterable

from edgeae.wire.packets import SEQ_MODULO

HALF = SEQ_MODULO // 2


HALF = SEQ_MODULO // 2


class _Sorted:
    """A set of unwrapped counts kept in order as well, for range counts (rebuilt when the set was changed
    directly)."""

    def __init__(self, counts: set[int]) -> None:
        self.counts = counts
        self.sorted: list[int] = []
        self.new: list[int] = []  # added since ``sorted`` was built

    def add(self, u: int) -> None:
        if u not in self.counts:
            self.counts.add(u)
            self.new.append(u)

    def count_in(self, a: int, b: int, exclude: tuple[set[int], ...]) -> int:
        """Counts in [a, b) not in any of ``exclude``: O(log n + hits), not a scan of every count."""
        if len(self.sorted) + len(self.new) != len(self.counts):
            self.sorted, self.new = sorted(self.counts), []
        elif self.new:
            self.sorted.extend(sorted(self.new))  # two sorted runs: Timsort merges them in linear time
            self.sorted.sort()
            self.new = []
        i, j = bisect.bisect_left(self.sorted, a), bisect.bisect_left(self.sorted, b)
        return sum(1 for s in self.sorted[i:j] if not any(s in e for e in exclude))


class SeqTracker:
    """Unwraps the 14-bit sequence counts of one APID and records which were seen: ``valid``, ``corrupt``
    (arrived damaged: CRC, length, cut short) and ``refused`` (arrived CRC-valid but refused for their headers:
    a codec, header or sample check), the last two attributed by their unverified primary header."""

    def __init__(self) -> None:
        self.top: int | None = None  # highest unwrapped count so far
        self.valid: set[int] = set()
        self.corrupt: set[int] = set()
        self.refused: set[int] = set()
        self._corrupt = _Sorted(self.corrupt)
        self._refused = _Sorted(self.refused)

    def add_corrupt(self, u: int) -> None:
        """Record an unwrapped count whose packet arrived damaged."""
        self._corrupt.add(u)

    def add_refused(self, u: int) -> None:
        """Record an unwrapped count whose packet arrived (CRC-valid) but was refused for its headers."""
        self._refused.add(u)

    def corrupt_in(self, a: int, b: int) -> int:
        """Counts in [a, b) that arrived only damaged: O(log n + hits), not a scan of every corrupt count."""
        return self._corrupt.count_in(a, b, (self.valid,))

    def refused_in(self, a: int, b: int) -> int:
        """Counts in [a, b) that arrived only refused (neither valid nor damaged)."""
        return self._refused.count_in(a, b, (self.valid, self.corrupt))

    def unwrap(self, seq: int, update: bool = True) -> int:
        """The unwrapped count nearest the highest so far (``update=False``: an unverified header)."""
        if self.top is None:
            if update:
                self.top = seq
            return seq
        d = (seq - self.top) % SEQ_MODULO
        if d >= HALF:
            d -= SEQ_MODULO
        u = self.top + d
        if update:
            self.top = max(self.top, u)
        return u

    def gaps(self, extra: Iterable[tuple[int, int]] = (), limit: int = 50) -> tuple[int, list[list[int]]]:
        """Unwrapped counts never received (valid, corrupt or refused) inside the span seen, widened by ``extra``
        ranges [a, b) that products are known to occupy: (how many, the first ``limit`` runs as [first, last]
        wrapped counts). Time and memory grow with the packets seen, never with the span they claim."""
        seen = sorted(self.valid | self.corrupt | self.refused)
        span = self.span(extra, seen)
        if span is None:
            return 0, []
        lo, hi = span
        runs: list[tuple[int, int]] = []
        prev = lo - 1
        for s in [*seen, hi + 1]:
            if s > prev + 1:
                runs.append((prev + 1, s - 1))
            prev = s
        count = sum(b - a + 1 for a, b in runs)
        return count, [[a % SEQ_MODULO, b % SEQ_MODULO] for a, b in runs[:limit]]

    def span(self, extra: Iterable[tuple[int, int]] = (), seen: list[int] | None = None) -> tuple[int, int] | None:
        """The unwrapped counts [first, last] that gaps are counted in: those received (valid, corrupt, refused),
        widened by the ``extra`` ranges [a, b) of products; None before any. Nothing outside it can be seen
        (a product lost whole before the first count received, as at the start of a pass decoded alone)."""
        seen = seen if seen is not None else sorted(self.valid | self.corrupt | self.refused)
        if not seen:
            return None
        lo, hi = seen[0], seen[-1]
        for a, b in extra:
            lo, hi = min(lo, a), max(hi, b - 1)
        return lo, hi

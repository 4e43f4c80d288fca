"""Scanning helpers of the packet-file readers (:mod:`edgeae.wire.stream`): a sliding window over a file,
plausible space-packet headers found by numpy, and the CRC-valid packets ahead of a position."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import BinaryIO

import numpy as np

from .packets import CRC_LEN, IDLE_APID, MAX_PACKET, PRIMARY_HEADER, crc16


class Window:
    """Bytes ``[base, base + len(buf))`` of a file, read ``chunk`` bytes or more at a time. Bytes before
    ``floor`` (see :meth:`release`) are dropped at the next read, so the buffer holds what the caller still
    needs and no more."""

    def __init__(self, read_at: Callable[[int, int], bytes], start: int, size: int, chunk: int) -> None:
        self.read_at, self.size, self.chunk = read_at, size, max(int(chunk), 1)
        self.base = self.floor = start
        self.buf = b""

    def span(self, a: int, b: int) -> tuple[bytes, int]:
        """A buffer and its file offset holding at least bytes [a, min(b, size)); ``a`` >= floor."""
        b = min(b, self.size)
        end = self.base + len(self.buf)
        if b > end:
            lo = self.floor
            hi = min(max(b, lo + self.chunk), self.size)
            keep = self.buf[lo - self.base :] if lo < end else b""
            frm = max(end, lo)
            more = self.read_at(frm, hi - frm)
            if len(more) < hi - frm:  # the file is shorter than it was when opened
                self.size = frm + len(more)
            self.buf, self.base = keep + more, lo
        return self.buf, self.base

    def release(self, x: int) -> None:
        """Bytes before ``x`` are no longer needed."""
        self.floor = max(self.floor, x)


def file_reader(f: BinaryIO) -> Callable[[int, int], bytes]:
    def read_at(offset: int, n: int) -> bytes:
        f.seek(offset)
        return f.read(n)

    return read_at


def bytes_reader(data: bytes) -> Callable[[int, int], bytes]:
    view = memoryview(data).cast("B")
    return lambda offset, n: bytes(view[offset : offset + n])


# ------------------------------------------------------------------------------------------- headers
def apid_table(apids: Iterable[int]) -> np.ndarray:
    """bool[2048]: True at the APIDs a plausible header may carry."""
    table = np.zeros(2048, dtype=bool)
    table[[a for a in apids if 0 <= a < 2048]] = True
    return table


def headers(a: np.ndarray, lo: int, hi: int, table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Offsets i in [lo, hi) of the uint8 array ``a`` where a plausible primary header starts, and the total
    length each announces (int64, one numpy pass; temporaries of ``hi - lo`` bytes each).

    Plausible: version 0, telemetry, no secondary header, sequence flags 'unsegmented', an APID where
    ``table`` is True, and a length that holds a CRC and ends inside ``a``.
    """
    hi = min(hi, a.size - PRIMARY_HEADER - CRC_LEN + 1)
    if hi <= lo:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    idx = np.flatnonzero(((a[lo:hi] & 0xF8) == 0) & ((a[lo + 2 : hi + 2] & 0xC0) == 0xC0)) + lo
    idx = idx[table[((a[idx] & 0x07).astype(np.intp) << 8) | a[idx + 1]]]
    total = ((a[idx + 4].astype(np.int64) << 8) | a[idx + 5]) + PRIMARY_HEADER + 1
    ok = (total >= PRIMARY_HEADER + CRC_LEN) & (idx + total <= a.size)
    return idx[ok], total[ok]


def packet_total(buf: bytes, i: int, apids: frozenset[int]) -> int:
    """The total length a plausible primary header at ``buf[i:]`` announces (see :func:`headers`), else 0."""
    if i < 0 or i + PRIMARY_HEADER > len(buf):
        return 0
    b0 = buf[i]
    if (b0 & 0xF8) or (buf[i + 2] & 0xC0) != 0xC0 or ((b0 & 0x07) << 8 | buf[i + 1]) not in apids:
        return 0
    total = (buf[i + 4] << 8 | buf[i + 5]) + PRIMARY_HEADER + 1
    return total if total >= PRIMARY_HEADER + CRC_LEN else 0


def crc_ok(buf: bytes, i: int, total: int) -> bool:
    """Whether the packet of ``total`` bytes at ``buf[i:]`` carries a matching CRC."""
    return crc16(buf[i : i + total - CRC_LEN]) == int.from_bytes(buf[i + total - CRC_LEN : i + total], "big")


def idle_fill(buf: bytes, i: int, total: int, at_end: bool, apids: frozenset[int]) -> bool:
    """Whether the plausible packet of ``total`` bytes at ``buf[i:]`` is a CCSDS idle packet (APID 0x7FF) that
    lines up: it ends the data (``at_end``) or a plausible header (``apids``) follows it. Idle packets carry
    no CRC of ours (other senders' fill has none), so lining up stands in for the CRC."""
    return (
        bool(apids)
        and ((buf[i] & 0x07) << 8 | buf[i + 1]) == IDLE_APID
        and (at_end or packet_total(buf, i + total, apids) > 0)
    )


class Finder:
    """Finds the CRC-valid packets ahead in a window: plausible headers by numpy, a window's ``chunk`` bytes
    at a time and every offset once; the CRC only at those. Calls must come with non-decreasing ``start``."""

    def __init__(self, win: Window, table: np.ndarray, apids: frozenset[int] = frozenset()) -> None:
        self.win, self.table, self.apids = win, table, apids  # apids: also stop at idle packets that line up
        self.idx = np.zeros(0, dtype=np.int64)  # absolute offsets of plausible headers not yet passed
        self.tot = np.zeros(0, dtype=np.int64)
        self.k = 0
        self.done = win.floor  # header offsets below this have been looked at

    def next(self, start: int, stop: int, release: bool) -> int | None:
        """The first offset in [start, stop) where a CRC-valid packet (or an idle packet that lines up, see
        :func:`idle_fill`) starts, or None. ``release``: bytes before the offsets looked at are not needed (else
        the window keeps them)."""
        win = self.win
        stop = min(stop, win.size)
        while True:
            while self.k < len(self.idx):
                i = int(self.idx[self.k])
                if i >= stop:
                    return None
                if i >= start:
                    t = int(self.tot[self.k])
                    buf, base = win.span(i, i + t + PRIMARY_HEADER)
                    if crc_ok(buf, i - base, t) or idle_fill(buf, i - base, t, i + t == win.size, self.apids):
                        return i
                self.k += 1
            lo = max(self.done, start)
            if lo >= stop:
                return None
            hi = min(lo + win.chunk, win.size)
            if release:
                win.release(lo)
            buf, base = win.span(lo, hi + MAX_PACKET)
            idx, self.tot = headers(np.frombuffer(buf, dtype=np.uint8), lo - base, hi - base, self.table)
            self.idx, self.k, self.done = idx + base, 0, hi

"""Packet files: a recorded downlink as timestamped records (``.bin``), and plain concatenated packets.

Record file (version 1): magic ``b"EAPK"``, one version byte, then records ``f64 arrival time (s) | u32
length | packet bytes``, big-endian. Records survive corrupted packet bytes (the length is outside the
packet), like datagrams from a radio frame layer. A record length that cannot be right (longer than any
packet, past the end of the file, or out of line with the packet it holds and the record after it) is
reported as :class:`Damage` with its record number and byte offset, and the reader resynchronises on the
next whole record; so is a truncated last record. Nothing is raised but a wrong magic or version.

A plain stream is space packets back to back, as CCSDS defines them; the reader trusts the length field
only when the CRC then matches (an idle packet, APID 0x7FF: when the next header or the end of the file
follows it), and otherwise resynchronises on the next plausible header, counting skipped
bytes. A damaged packet (a plausible header of a wire APID whose CRC or length fails) is handed on as it
is, so that a receiver counts it as corrupt just as it does a damaged record.

Both readers go through a file :data:`CHUNK` bytes at a time (plus the look-ahead of one record or packet):
memory is a small multiple of that whatever the size of the file, and time is linear in it.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np

from ._scan import Finder, Window, apid_table, bytes_reader, crc_ok, file_reader, headers, idle_fill, packet_total
from .packets import APIDS, COMMON, CRC_LEN, IDLE_APID, MAX_PACKET, PRIMARY_HEADER

MAGIC = b"EAPK"
FILE_VERSION = 1
RECORD = struct.Struct(">dI")
CHUNK = 4 << 20
"""Bytes looked at per numpy pass and read per file read."""
LOOK = 2 * RECORD.size + MAX_PACKET + PRIMARY_HEADER
"""Bytes past a record's start that its checks read: itself, the next record header and that packet's header."""
MIN_PACKET = PRIMARY_HEADER + COMMON.size + CRC_LEN
"""The smallest packet of this wire format (a shorter length field in a damaged packet is not believed)."""
PACKET = "packet"
CORRUPT = "corrupt"
GARBAGE = "garbage"


class PacketFileError(ValueError):
    """A file that is not an edgeae packet file."""


@dataclass(frozen=True)
class Damage:
    """Bytes of a packet file that formed no record or packet, or a record read by its packet's own length.

    ``record``: in a record file the number (from 0) of the record where it starts, that is the whole records
    before it; in a plain stream the pieces before it. ``reason``: ``length`` (a record length that cannot be
    right: the bytes up to the next whole record are skipped), ``repaired`` (a record length that disagrees
    with the CRC-valid packet it holds: read by the packet's own length, nothing skipped), ``truncated`` (the
    file ends inside a record), ``garbage`` (plain stream: bytes that formed no packet).
    """

    path: str
    offset: int
    nbytes: int
    record: int
    reason: str
    detail: str

    def __str__(self) -> str:
        where = f"after {self.record} packets" if self.reason == GARBAGE else f"record {self.record}"
        return f"{self.path}: {where} at byte {self.offset}: {self.detail}"


def write_packet_file(path: str | Path, records: Iterable[tuple[float, bytes]]) -> int:
    """Write ``(arrival_time_s, packet)`` records; returns the number written.

    Atomic (:mod:`edgeae.atomic`): a failed write (a full disk, Ctrl-C) leaves no cut-off file, ``path`` keeps
    what it held before, and the ``OSError`` names ``path``."""
    from edgeae.atomic import atomic_path

    n = 0
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(MAGIC + bytes([FILE_VERSION]))
        for t, pkt in records:
            f.write(RECORD.pack(float(t), len(pkt)))
            f.write(pkt)
            n += 1
    return n


# ------------------------------------------------------------------------------------------- windows
# ------------------------------------------------------------------------------------------- plain streams
class Piece(NamedTuple):
    """One stretch of a plain stream: a CRC-valid ``packet`` (or a CCSDS idle packet, APID 0x7FF, that lines
    up with what follows: idle fill carries no CRC of ours), a ``corrupt`` packet (a plausible header of a
    wire APID whose CRC or length fails; ``data`` holds its bytes) or ``garbage`` (``data`` is empty)."""

    kind: str
    offset: int
    nbytes: int
    data: bytes


def _pieces(win: Window, apids: Iterable[int]) -> Iterator[Piece]:
    """The pieces of the plain stream in ``win``, in order; together they cover every byte once."""
    aps = frozenset(apids)
    wire = aps - {IDLE_APID}
    foreign = frozenset(range(IDLE_APID)) - aps
    finder = Finder(win, apid_table(aps), aps)
    pos = win.floor
    while pos < win.size:
        buf, base = win.span(pos, pos + win.chunk + MAX_PACKET + PRIMARY_HEADER)
        end = base + len(buf)
        # a packet starting before it lies in buf, and so does the header after it
        visible = end if end >= win.size else end - MAX_PACKET - PRIMARY_HEADER
        t = 0
        while pos < visible:  # packets back to back: no numpy, no search
            t = packet_total(buf, pos - base, aps)
            if not (
                t
                and pos + t <= end
                and (crc_ok(buf, pos - base, t) or idle_fill(buf, pos - base, t, pos + t == win.size, aps))
            ):
                # where the packets stop lining up: a CRC-valid packet of another APID (another instrument's, in a
                # CCSDS stream) is a packet, handed on for the receiver to count by its APID, not noise. Looked for
                # only here, not at every offset of noise, where a plausible header with a matching CRC is chance
                f = packet_total(buf, pos - base, foreign)
                if not (f and pos + f <= end and crc_ok(buf, pos - base, f)):
                    break
                t = f
            yield Piece(PACKET, pos, t, buf[pos - base : pos - base + t])
            pos += t
        win.release(pos)
        if pos >= visible:
            continue
        j = pos - base
        if t and ((buf[j] & 0x07) << 8 | buf[j + 1]) in wire:  # a damaged packet: up to the next good one
            # its length is believed when it is that of a real packet and fits the file
            stop = pos + t if t >= MIN_PACKET and pos + t <= win.size else min(pos + MAX_PACKET, win.size)
            nxt = finder.next(pos + 1, stop, release=False)
            e = stop if nxt is None else nxt
            buf, base = win.span(pos, e)
            yield Piece(CORRUPT, pos, e - pos, buf[pos - base : e - base])
        else:
            nxt = finder.next(pos + 1, win.size, release=True)
            e = win.size if nxt is None else nxt
            yield Piece(GARBAGE, pos, e - pos, b"")
        pos = e
        win.release(pos)


def _default_apids(apids: Iterable[int] | None) -> tuple[int, ...]:
    return tuple(apids) if apids is not None else (*APIDS.values(), IDLE_APID)


def stream_pieces(data: bytes, apids: Iterable[int] | None = None, chunk: int = CHUNK) -> Iterator[Piece]:
    """The :class:`Piece` s of a plain stream in memory (``apids``: the wire format's and the idle APID)."""
    return _pieces(Window(bytes_reader(data), 0, len(data), chunk), _default_apids(apids))


def split_stream(data: bytes, apids: Iterable[int] | None = None) -> Iterator[tuple[bytes | None, int]]:
    """Split back-to-back space packets: yields ``(packet, 0)`` for each CRC-valid packet (and each idle packet
    that lines up) and
    ``(None, k)`` for each run of k bytes skipped while resynchronising (garbage or a damaged packet).

    Linear time and memory bounded by :data:`CHUNK`: plausible primary headers (``apids``: the wire format's
    APIDs and the idle APID by default) are found by numpy a window at a time, and the CRC is computed only
    at those offsets. :func:`stream_pieces` also hands out the bytes of damaged packets.
    """
    skipped = 0
    for piece in stream_pieces(data, apids):
        if piece.kind == PACKET:
            if skipped:
                yield None, skipped
                skipped = 0
            yield piece.data, 0
        else:
            skipped += piece.nbytes
    if skipped:
        yield None, skipped


def iter_stream_file(
    path: str | Path, apids: Iterable[int] | None = None, chunk: int = CHUNK
) -> Iterator[tuple[float, bytes] | Damage]:
    """A plain stream file read a window at a time: ``(0.0, packet)`` for each packet, damaged packets
    included (a receiver counts those as corrupt), and a :class:`Damage` (``garbage``) for each run of bytes
    that formed no packet."""
    name = str(path)
    aps = _default_apids(apids)
    with open(path, "rb") as f:
        _check_seekable(f, path)
        f.seek(0, 2)
        win = Window(file_reader(f), 0, f.tell(), chunk)
        for n, piece in enumerate(_pieces(win, aps)):
            if piece.kind == GARBAGE:
                yield Damage(name, piece.offset, piece.nbytes, n, GARBAGE, f"{piece.nbytes:,} bytes formed no packet")
            else:
                yield 0.0, piece.data


# ------------------------------------------------------------------------------------------- record files
def _aligned(buf: bytes, i: int, fend: int, apids: frozenset[int]) -> bool:
    """Whether a record at ``buf[i:]`` ends inside the file (``fend``: its end in ``buf`` offsets) and holds a
    packet whose own length field gives the record's length."""
    if i + RECORD.size > fend:
        return False
    n = int.from_bytes(buf[i + 8 : i + 12], "big")
    return (
        n >= PRIMARY_HEADER + CRC_LEN and i + RECORD.size + n <= fend and packet_total(buf, i + RECORD.size, apids) == n
    )


def _sane(buf: bytes, i: int, fend: int) -> bool:
    """Whether a record header at ``buf[i:]`` could be one: a finite time and a length that fits the file."""
    if i + RECORD.size > fend:
        return False
    t, n = RECORD.unpack_from(buf, i)
    return math.isfinite(t) and n <= MAX_PACKET and i + RECORD.size + n <= fend


def _record_ok(buf: bytes, j: int, n: int, fend: int, apids: frozenset[int]) -> bool:
    """Whether the length ``n`` of the record at ``buf[j:]`` (inside the file) can be trusted: its packet's own
    length agrees, or the record ends the file, or the next record lines up (any next record when this one
    holds no packet at all, such as a stray datagram a ground station recorded)."""
    own = packet_total(buf, j + RECORD.size, apids)
    after = j + RECORD.size + n
    if (own and own == n) or after == fend:
        return True
    return _aligned(buf, after, fend, apids) if own else _sane(buf, after, fend)


def _repair(buf: bytes, j: int, fend: int, apids: frozenset[int]) -> int:
    """The length of the CRC-valid packet that the record at ``buf[j:]`` holds when the record ends the file or
    the next record lines up at its end (the record's own length field is then the damage), else 0."""
    p = j + RECORD.size
    t = packet_total(buf, p, apids)
    if not t or p + t > fend or not crc_ok(buf, p, t):
        return 0
    return t if p + t == fend or _aligned(buf, p + t, fend, apids) else 0


def _next_record(win: Window, start: int, table: np.ndarray, apids: frozenset[int]) -> int | None:
    """The first offset >= ``start`` of a record that holds a packet of the record's length which is CRC-valid
    or followed by another such record (or by the end of the file); None when there is none."""
    lo = start + RECORD.size  # offsets of packet headers
    while lo < win.size:
        hi = min(lo + win.chunk, win.size)
        win.release(lo - RECORD.size)
        buf, base = win.span(lo - RECORD.size, hi + LOOK)
        a = np.frombuffer(buf, dtype=np.uint8)
        fend = win.size - base
        idx, tot = headers(a, lo - base, hi - base, table)
        sel = _be32(a, idx - 4) == tot
        for p, t in zip(idx[sel].tolist(), tot[sel].tolist(), strict=True):
            if crc_ok(buf, p, t) or p + t == fend or _aligned(buf, p + t, fend, apids):
                return base + p - RECORD.size
        lo = hi
    return None


def _be32(a: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """The big-endian u32 at each offset ``idx`` of the uint8 array ``a`` (int64)."""
    return (
        (a[idx].astype(np.int64) << 24)
        | (a[idx + 1].astype(np.int64) << 16)
        | (a[idx + 2].astype(np.int64) << 8)
        | a[idx + 3]
    )


def _why(n: int, pos: int, size: int) -> str:
    if n > MAX_PACKET:
        return f"record length {n:,} is more than the largest packet ({MAX_PACKET:,} bytes)"
    if pos + RECORD.size + n > size:
        return f"record length {n:,} runs {pos + RECORD.size + n - size:,} bytes past the end of the file"
    return f"record length {n:,} does not line up with the packet it holds nor with the record after it"


def _records(win: Window, path: str, apids: frozenset[int]) -> Iterator[tuple[float, bytes] | Damage]:
    """The records of a record file (after its magic and version) and the :class:`Damage` between them."""
    table = apid_table(apids)
    pos, k = win.floor, 0
    while pos < win.size:
        buf, base = win.span(pos, pos + win.chunk + LOOK)
        size = win.size
        end = base + len(buf)
        visible = size if end >= size else end - LOOK  # the checks of a record starting before it read buf only
        bad = False
        while pos < visible and size - pos >= RECORD.size:
            j = pos - base
            t, n = RECORD.unpack_from(buf, j)
            if n > MAX_PACKET or pos + RECORD.size + n > size or not _record_ok(buf, j, n, size - base, apids):
                bad = True
                break
            yield t, buf[j + RECORD.size : j + RECORD.size + n]
            k += 1
            pos += RECORD.size + n
        win.release(pos)
        if not bad:
            if size - pos >= RECORD.size:
                continue  # this buffer is used up
            if pos < size:
                yield Damage(
                    path, pos, size - pos, k, "truncated", f"the file ends {size - pos} bytes into a record header"
                )
            return
        j = pos - base
        t, n = RECORD.unpack_from(buf, j)
        fixed = _repair(buf, j, size - base, apids)
        if fixed:
            what = f"record length {n:,} disagrees with the CRC-valid packet it holds: read by the packet's own length"
            yield Damage(path, pos, 0, k, "repaired", f"{what} ({fixed:,} bytes)")
            yield t, buf[j + RECORD.size : j + RECORD.size + fixed]
            k += 1
            pos += RECORD.size + fixed
            continue
        q = _next_record(win, pos + 1, table, apids)
        if q is None:
            reason = "truncated" if n <= MAX_PACKET and pos + RECORD.size + n > size else "length"
            msg = f"{_why(n, pos, size)}; no whole record follows: {size - pos:,} bytes to the end skipped"
            yield Damage(path, pos, size - pos, k, reason, msg)
            return
        msg = f"{_why(n, pos, size)}; {q - pos:,} bytes skipped to the next whole record at byte {q:,}"
        yield Damage(path, pos, q - pos, k, "length", msg)
        pos = q


def _check_seekable(f: BinaryIO, path: str | Path) -> None:
    """Refuse (:class:`PacketFileError`) a pipe or a device: both readers go back and forth in windows."""
    if not f.seekable():
        raise PacketFileError(
            f"{path}: not a regular file (a pipe or a device): packet files are read in windows, back and forth; "
            "save the stream to a file first (e.g. cat ... > rx.bin) and decode that"
        )


def check_header(head: bytes, path: str | Path) -> None:
    """Raise :class:`PacketFileError` unless ``head`` (the first 5 bytes of the file ``path``) is a record
    file's header: the magic and version :data:`FILE_VERSION`."""
    if len(head) < len(MAGIC) + 1 and MAGIC.startswith(head[: len(MAGIC)]):
        missing = "version missing" if len(head) == len(MAGIC) else "magic cut short, version missing"
        raise PacketFileError(
            f"{path}: truncated packet-file header ({len(head)} of {len(MAGIC) + 1} bytes; {missing})"
        )
    if head[: len(MAGIC)] != MAGIC:
        raise PacketFileError(f"{path}: not an edgeae packet file (magic {head[: len(MAGIC)]!r}, want {MAGIC!r})")
    if head[len(MAGIC)] != FILE_VERSION:
        raise PacketFileError(f"{path}: packet file version {head[len(MAGIC)]} is not {FILE_VERSION}")


def iter_packet_file(
    path: str | Path, apids: Iterable[int] | None = None, chunk: int = CHUNK
) -> Iterator[tuple[float, bytes] | Damage]:
    """The ``(arrival_time_s, packet)`` records of a packet file, read a window at a time, with a
    :class:`Damage` wherever bytes formed no whole record; raises :class:`PacketFileError` (at once) on a
    wrong magic or version."""
    f = open(path, "rb")  # noqa: SIM115 (closed by the generator)
    try:
        _check_seekable(f, path)
        head = f.read(len(MAGIC) + 1)
        check_header(head, path)
        f.seek(0, 2)
        win = Window(file_reader(f), len(head), f.tell(), chunk)
    except BaseException:
        f.close()
        raise
    return _closing(f, _records(win, str(path), frozenset(_default_apids(apids))))


def _closing(f: BinaryIO, items: Iterator[tuple[float, bytes] | Damage]) -> Iterator[tuple[float, bytes] | Damage]:
    with f:
        yield from items


def read_packet_file(path: str | Path) -> tuple[list[tuple[float, bytes]], int]:
    """Records of a packet file and the number of bytes that formed no whole record (damaged record lengths
    and a truncated end; :func:`iter_packet_file` says where)."""
    out: list[tuple[float, bytes]] = []
    skipped = 0
    for item in iter_packet_file(path):
        if isinstance(item, Damage):
            skipped += item.nbytes
        else:
            out.append(item)
    return out, skipped

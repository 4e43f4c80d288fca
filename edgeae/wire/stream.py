"""Packet files: a recorded downlink as timestamped records (``.bin``), and plain concatenated packets.

Record file (version 1): magic ``b"EAPK"``, one version byte, then records ``f64 arrival time (s) | u32
length | packet bytes``, big-endian. Records survive corrupted packet bytes (the length is outside the
packet), like datagrams from a radio frame layer. A truncated last record is reported, not raised.

A plain stream (``split_stream``) is space packets back to back, as CCSDS defines them; the reader trusts the
length field only when the CRC then matches, and otherwise slides one byte on, counting skipped bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from pathlib import Path

from .packets import CRC_LEN, PRIMARY_HEADER, crc16

MAGIC = b"EAPK"
FILE_VERSION = 1
RECORD = struct.Struct(">dI")


class PacketFileError(ValueError):
    """A file that is not an edgeae packet file."""


def write_packet_file(path: str | Path, records: Iterable[tuple[float, bytes]]) -> int:
    """Write ``(arrival_time_s, packet)`` records; returns the number written."""
    n = 0
    with open(path, "wb") as f:
        f.write(MAGIC + bytes([FILE_VERSION]))
        for t, pkt in records:
            f.write(RECORD.pack(float(t), len(pkt)))
            f.write(pkt)
            n += 1
    return n


def read_packet_file(path: str | Path) -> tuple[list[tuple[float, bytes]], int]:
    """Records of a packet file and the number of trailing bytes that formed no whole record."""
    data = Path(path).read_bytes()
    if data[:4] != MAGIC:
        raise PacketFileError(f"{path}: not an edgeae packet file (magic {data[:4]!r}, want {MAGIC!r})")
    if len(data) < 5 or data[4] != FILE_VERSION:
        raise PacketFileError(f"{path}: packet file version {data[4:5].hex() or 'missing'} is not {FILE_VERSION}")
    out: list[tuple[float, bytes]] = []
    pos = 5
    while pos + RECORD.size <= len(data):
        t, n = RECORD.unpack_from(data, pos)
        if pos + RECORD.size + n > len(data):
            break
        out.append((t, data[pos + RECORD.size : pos + RECORD.size + n]))
        pos += RECORD.size + n
    return out, len(data) - pos


def split_stream(data: bytes) -> Iterator[tuple[bytes | None, int]]:
    """Split back-to-back space packets: yields ``(packet, 0)`` for each CRC-valid packet and
    ``(None, k)`` for each run of k bytes skipped while resynchronising (garbage or a damaged packet)."""
    pos = 0
    skipped = 0
    n = len(data)
    while pos + PRIMARY_HEADER + CRC_LEN <= n:
        total = ((data[pos + 4] << 8) | data[pos + 5]) + PRIMARY_HEADER + 1
        end = pos + total
        if end <= n and total >= PRIMARY_HEADER + CRC_LEN:
            pkt = data[pos:end]
            if crc16(pkt[:-CRC_LEN]) == int.from_bytes(pkt[-CRC_LEN:], "big"):
                if skipped:
                    yield None, skipped
                    skipped = 0
                yield pkt, 0
                pos = end
                continue
        pos += 1
        skipped += 1
    skipped += n - pos
    if skipped:
        yield None, skipped

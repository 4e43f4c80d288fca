"""Damaged packet files and plain streams: resynchronisation, damage reports, corrupt counts, bounded memory.

Packets come from the project's own writer (``packetise``); damage is done to their bytes as a radio link or
a disk would, and the ground must lose no more than the damaged packet, say where the damage is, and count a
damaged packet the same way whether it arrived in a record file or in a plain stream.
"""

from __future__ import annotations

import itertools
import json
import logging
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from edgeae.ground.reassembly import Receiver
from edgeae.ground.sources import iter_packets, read_packets
from edgeae.masks import make_mask
from edgeae.wire.packets import APIDS, IDLE_APID, SequenceCounters, WireConfig, build_packet, crc16, packetise
from edgeae.wire.parse import WireError, parse_packet
from edgeae.wire.products import SparseFrame
from edgeae.wire.stream import (
    MAGIC,
    RECORD,
    Damage,
    iter_packet_file,
    read_packet_file,
    split_stream,
    stream_pieces,
    write_packet_file,
)

HEAD = len(MAGIC) + 1


def packets(frame_id: int = 7, n_min: int = 10, dark: bool = False) -> list[bytes]:
    """A small random RGB sparse frame (all zero when ``dark``, as a night sky: zero bytes in the packets
    look like record headers of length 0) cut into at least ``n_min`` packets of at most 384 bytes."""
    rng = np.random.default_rng(frame_id)
    img = rng.integers(0, 1 if dark else 256, (64, 64, 3), dtype=np.uint8)
    m = make_mask(3, (64, 64), 0.3)
    fr = SparseFrame(frame_id, 64, 64, 3, 8, 0.3, "uniform", 3, 1, img[m])
    pkts = packetise(fr, config=WireConfig(384), counters=SequenceCounters({APIDS["sparse"]: 40}))
    assert len(pkts) >= n_min
    return pkts


def record_file(path: Path, pkts: list[bytes]) -> list[int]:
    """Write the packets as records 0.5 s apart; the byte offset of each record."""
    write_packet_file(path, [(0.5 * i, p) for i, p in enumerate(pkts)])
    offsets, pos = [], HEAD
    for p in pkts:
        offsets.append(pos)
        pos += RECORD.size + len(p)
    return offsets


def set_length(path: Path, offset: int, n: int) -> None:
    data = bytearray(path.read_bytes())
    struct.pack_into(">I", data, offset + 8, n)
    path.write_bytes(bytes(data))


def receive(pkts: list[bytes]) -> dict:
    """The report of the one product the packets make."""
    rx = Receiver()
    for p in pkts:
        rx.receive(p)
    (asm,) = rx.products.values()
    return rx.product_report(asm)


def split(items: list) -> tuple[list[tuple[float, bytes]], list[Damage]]:
    return [i for i in items if not isinstance(i, Damage)], [i for i in items if isinstance(i, Damage)]


# ------------------------------------------------------------------------------------------- record files
@pytest.mark.parametrize("dark", [False, True])
@pytest.mark.parametrize("bad", ["past_end", "too_long", "too_short", "off_by_one", "zero"])
def test_damaged_record_length_loses_nothing_and_is_reported(tmp_path: Path, bad: str, dark: bool) -> None:
    pkts = packets(dark=dark)
    f = tmp_path / "s2.bin"
    offs = record_file(f, pkts)
    n = len(pkts[3])
    wrong = {"past_end": 10**9, "too_long": n + 37, "too_short": n - 100, "off_by_one": n - 1, "zero": 0}[bad]
    set_length(f, offs[3], wrong)
    recs, dmg = split(list(iter_packet_file(f)))
    assert [p for _, p in recs] == pkts  # the damaged record is read by its packet's own length
    assert [t for t, _ in recs] == [0.5 * i for i in range(len(pkts))]
    assert len(dmg) == 1 and dmg[0].reason == "repaired" and dmg[0].nbytes == 0
    assert (dmg[0].record, dmg[0].offset) == (3, offs[3])
    assert str(f) in str(dmg[0]) and "record 3" in str(dmg[0]) and f"byte {offs[3]}" in str(dmg[0])
    assert read_packet_file(f) == ([(0.5 * i, p) for i, p in enumerate(pkts)], 0)
    assert receive([p for _, p in recs])["packets_lost"] == 0


@pytest.mark.parametrize("dark", [False, True])
def test_damaged_length_of_a_damaged_packet_skips_that_record_only(tmp_path: Path, dark: bool) -> None:
    pkts = packets(dark=dark)
    f = tmp_path / "s2.bin"
    offs = record_file(f, pkts)
    data = bytearray(f.read_bytes())
    data[offs[3] + RECORD.size + 100] ^= 0x20  # its packet fails the CRC: nothing to read it by
    f.write_bytes(bytes(data))
    for wrong in (10**9, len(pkts[3]) + 37, len(pkts[3]) - 100):
        set_length(f, offs[3], wrong)
        recs, dmg = split(list(iter_packet_file(f)))
        assert [p for _, p in recs] == pkts[:3] + pkts[4:]
        assert [(d.reason, d.record, d.offset, d.nbytes) for d in dmg] == [("length", 3, offs[3], offs[4] - offs[3])]
        assert f"next whole record at byte {offs[4]:,}" in str(dmg[0])
        rep = receive([p for _, p in recs])
        assert rep["packets_received"] == len(pkts) - 1 and rep["packets_lost"] == 1
        recs_old, rest = read_packet_file(f)
        assert [p for _, p in recs_old] == pkts[:3] + pkts[4:] and rest == offs[4] - offs[3]


@pytest.mark.parametrize("dark", [False, True])
@pytest.mark.parametrize("seed", range(20))
def test_any_bit_flip_in_a_record_length_loses_at_most_that_record(tmp_path: Path, seed: int, dark: bool) -> None:
    rng = np.random.default_rng(seed)
    pkts = packets(dark=dark)
    f = tmp_path / "s2.bin"
    offs = record_file(f, pkts)
    k = int(rng.integers(len(pkts)))
    set_length(f, offs[k], len(pkts[k]) ^ (1 << int(rng.integers(32))))
    recs, dmg = split(list(iter_packet_file(f)))
    got = [p for _, p in recs]
    assert got == pkts or got == pkts[:k] + pkts[k + 1 :]
    assert len(dmg) == 1 and dmg[0].record == k and dmg[0].offset == offs[k]


def test_truncated_last_record_is_reported_with_its_offset(tmp_path: Path) -> None:
    pkts = packets()
    f = tmp_path / "s2.bin"
    offs = record_file(f, pkts)
    whole = f.read_bytes()
    last = len(pkts) - 1
    f.write_bytes(whole[:-7])  # inside the last packet
    recs, dmg = split(list(iter_packet_file(f)))
    assert [p for _, p in recs] == pkts[:-1]
    assert [(d.reason, d.record, d.offset, d.nbytes) for d in dmg] == [
        ("truncated", last, offs[last], len(whole) - 7 - offs[last])
    ]
    assert "past the end of the file" in str(dmg[0])
    f.write_bytes(whole[: offs[last] + 5])  # inside the last record header
    recs, dmg = split(list(iter_packet_file(f)))
    assert len(recs) == last and [(d.reason, d.offset, d.nbytes) for d in dmg] == [("truncated", offs[last], 5)]


def test_records_that_hold_no_packet_are_kept_as_recorded(tmp_path: Path) -> None:
    """A ground station records every datagram (``received.bin``), strays and damaged packets included."""
    pkts = packets()
    bad_len = bytearray(pkts[2])
    bad_len[5] ^= 0x04  # the packet's own length field is damaged, not the record's
    recs = [pkts[0], b"hello", b"", bytes(range(200)), pkts[1], bytes(bad_len), pkts[3], b"\x00" * 40, b"x"]
    f = tmp_path / "received.bin"
    write_packet_file(f, [(0.1 * i, p) for i, p in enumerate(recs)])
    got, dmg = split(list(iter_packet_file(f)))
    assert [p for _, p in got] == recs and dmg == []


def test_damage_is_logged_with_file_record_and_offset(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pkts = packets()
    f = tmp_path / "s2.bin"
    offs = record_file(f, pkts)
    set_length(f, offs[5], 10**9)
    with caplog.at_level(logging.WARNING, logger="edgeae"):
        recs, skipped = read_packets(f)
    assert [p for _, p in recs] == pkts and skipped == 0
    (msg,) = [r.getMessage() for r in caplog.records]
    assert msg.startswith(f"{f}: record 5 at byte {offs[5]}: record length 1,000,000,000")


@pytest.mark.parametrize("chunk", [1, 97, 4096])
def test_small_windows_read_records_and_resync_the_same(tmp_path: Path, chunk: int) -> None:
    pkts = packets()
    f = tmp_path / "s2.bin"
    offs = record_file(f, pkts)
    data = bytearray(f.read_bytes())
    data[offs[6] + RECORD.size + 50] ^= 1
    f.write_bytes(bytes(data))
    set_length(f, offs[6], 3)
    set_length(f, offs[2], 10**6)
    want = list(iter_packet_file(f))
    assert sum(isinstance(i, Damage) for i in want) == 2
    assert list(iter_packet_file(f, chunk=chunk)) == want


# ------------------------------------------------------------------------------------------- plain streams
def damaged_pair(pkts: list[bytes]) -> tuple[list[bytes], bytes, bytes]:
    """Packets 3 (a CRC flip) and 6 (a changed length field) damaged."""
    crc = bytearray(pkts[3])
    crc[200] ^= 0x04
    length = bytearray(pkts[6])
    length[5] ^= 0x10
    out = list(pkts)
    out[3], out[6] = bytes(crc), bytes(length)
    return out, bytes(crc), bytes(length)


def test_damaged_packet_in_a_plain_stream_counts_as_corrupt_like_in_a_record_file(tmp_path: Path) -> None:
    pkts = packets()
    damaged, crc, length = damaged_pair(pkts)
    raw = tmp_path / "pass_00001.bin"
    raw.write_bytes(b"".join(damaged))
    rec = tmp_path / "s2.bin"
    write_packet_file(rec, [(0.0, p) for p in damaged])
    from_raw, skipped = read_packets(raw)
    from_rec, _ = read_packets(rec)
    assert from_raw[3][1] == crc and from_raw[6][1].startswith(length[:100])
    assert skipped <= 16  # at most the tail of the packet whose length field now says 16 bytes less
    for got in (from_raw, from_rec):
        rep = receive([p for _, p in got])
        assert (rep["packets_received"], rep["packets_corrupt"], rep["packets_lost"]) == (len(pkts) - 2, 2, 0)
    # the plain split keeps its contract: only CRC-valid packets, damaged ones counted as skipped bytes
    parts = list(split_stream(b"".join(damaged)))
    assert [p for p, _ in parts if p is not None] == pkts[:3] + pkts[4:6] + pkts[7:]
    assert sum(k for p, k in parts if p is None) == len(crc) + len(length)


def test_plain_stream_pieces_cover_every_byte_and_name_what_they_are() -> None:
    pkts = packets()
    damaged, _, _ = damaged_pair(pkts)
    noise = np.random.default_rng(5).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    idle = build_packet(IDLE_APID, 0, b"fill")
    blob = noise + b"".join(damaged[:5]) + idle + noise + b"".join(damaged[5:]) + pkts[0][:-9]
    pieces = list(stream_pieces(blob))
    assert sum(p.nbytes for p in pieces) == len(blob)
    assert all(a.offset + a.nbytes == b.offset for a, b in itertools.pairwise(pieces))
    kinds = [p.kind for p in pieces]
    assert kinds.count("corrupt") == 3  # the CRC flip, the changed length, the truncated last packet
    assert [p.data for p in pieces if p.kind == "packet"] == [*pkts[:3], pkts[4], idle, pkts[5], *pkts[7:]]
    assert pieces[-1].kind == "corrupt" and pieces[-1].data == pkts[0][:-9]
    rep = receive([p.data for p in pieces if p.kind != "garbage"])
    assert rep["packets_corrupt"] == 2 and rep["packets_lost"] == 0  # the truncated copy duplicates a count
    for chunk in (1, 333, 5000):  # windows smaller than a packet split the same
        assert list(stream_pieces(blob, chunk=chunk)) == pieces


def test_noise_is_garbage_not_corrupt_packets() -> None:
    noise = np.random.default_rng(11).integers(0, 256, 2_000_000, dtype=np.uint8).tobytes()
    pieces = list(stream_pieces(noise))
    assert [(p.kind, p.nbytes) for p in pieces] == [("garbage", len(noise))]


# ------------------------------------------------------------------------------------------- parse
def test_segmented_packets_are_refused_everywhere(tmp_path: Path) -> None:
    pkts = packets()
    seg = bytearray(pkts[2])
    seg[2] = (seg[2] & 0x3F) | 0x40  # sequence flags 0b01: first segment
    seg[-2:] = crc16(bytes(seg[:-2])).to_bytes(2, "big")
    seg_b = bytes(seg)
    with pytest.raises(WireError, match="sequence flags 0b01") as exc:
        parse_packet(seg_b)
    assert exc.value.reason == "type"
    f = tmp_path / "s2.bin"
    write_packet_file(f, [(0.0, p) for p in [*pkts[:2], seg_b, *pkts[3:]]])
    rx = Receiver()
    for _, p in read_packets(f)[0]:
        rx.receive(p)
    assert rx.rejected == {"type": 1} and rx.accepted == len(pkts) - 1
    assert [p for p, _ in split_stream(b"".join([*pkts[:2], seg_b, *pkts[3:]])) if p is not None] == pkts[:2] + pkts[3:]


# ------------------------------------------------------------------------------------------- memory
def _peak_script(path: Path, how: str) -> str:
    return textwrap.dedent(
        f"""
        import json
        from edgeae.ground.sources import iter_packets, read_packets
        from edgeae.wire.stream import Damage

        def hwm():
            return int([l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1]) * 1024

        before = hwm()
        if {how!r} == "read":
            recs, skipped = read_packets({str(path)!r})
            n = len(recs)
        else:
            n = skipped = 0
            for item in iter_packets({str(path)!r}):
                if isinstance(item, Damage):
                    skipped += item.nbytes
                else:
                    n += 1
        print(json.dumps({{"extra": hwm() - before, "n": n, "skipped": skipped}}))
        """
    )


def _peak(path: Path, how: str) -> dict:
    res = subprocess.run([sys.executable, "-c", _peak_script(path, how)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc")
def test_memory_stays_bounded_by_the_window_not_the_file(tmp_path: Path) -> None:
    size = 80_000_000
    noise = np.random.default_rng(3).integers(0, 256, size, dtype=np.uint8).tobytes()
    raw = tmp_path / "noise.raw"
    raw.write_bytes(noise)
    got = _peak(raw, "read")  # was about 15 bytes of numpy temporaries per byte of file (1.2 GB here)
    assert (got["n"], got["skipped"]) == (0, size)
    assert got["extra"] < 48 << 20, f"{got['extra'] / 2**20:.0f} MiB over the imports"
    rec = tmp_path / "garbage.bin"
    rec.write_bytes(MAGIC + b"\x01" + noise)  # the first record length is impossible: all of it is resynced over
    got = _peak(rec, "read")
    assert (got["n"], got["skipped"]) == (0, size)
    assert got["extra"] < 48 << 20, f"{got['extra'] / 2**20:.0f} MiB over the imports"
    del noise
    tiny = tmp_path / "tiny.bin"  # 1.5 million one-byte records: a list of them alone is ~200 MB
    tiny.write_bytes(MAGIC + b"\x01" + (RECORD.pack(0.0, 1) + b"\x00") * 1_500_000)
    got = _peak(tiny, "iter")
    assert (got["n"], got["skipped"]) == (1_500_000, 0)
    assert got["extra"] < 48 << 20, f"{got['extra'] / 2**20:.0f} MiB over the imports"


def test_iter_packets_reads_lazily(tmp_path: Path) -> None:
    pkts = packets()
    f = tmp_path / "s2.bin"
    record_file(f, pkts)
    it = iter_packets(f)
    assert next(it) == (0.0, pkts[0])
    assert [p for _, p in it] == pkts[1:]

"""The ground station never crashes: 100,000+ random and mutated packets, seeded, in a few seconds."""

from __future__ import annotations

import struct

import numpy as np

from edgeae.ground.station import GroundStation
from edgeae.masks import make_mask
from edgeae.wire.packets import SequenceCounters, WireConfig, crc16, packetise
from edgeae.wire.products import AnomalyPatch, LatentFrame, SparseFrame, TelemetryRecord


def _seeds() -> list[bytes]:
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (40, 50, 3)).astype(np.uint8)
    m = make_mask(2, (40, 50), 0.2)
    ctr = SequenceCounters()
    cfg = WireConfig(200, "delta-deflate")
    out = packetise(SparseFrame(1, 40, 50, 3, 8, 0.2, "uniform", 2, 1, img[m]), config=cfg, counters=ctr)
    lat = rng.integers(-128, 128, (4, 8, 4, 4)).astype(np.int8)
    out += packetise(LatentFrame(1, "x", 64, 64, 3, 32, 32, 2, 2, 0.1, "int8", lat), config=cfg, counters=ctr)
    out += packetise(AnomalyPatch(1, 3, 4, 8, 1.0, img[:8, :8]), config=cfg, counters=ctr)
    out += packetise(TelemetryRecord(1, b'{"a": [1, 2, 3]}'), config=cfg, counters=ctr)
    return out


def _recrc(pkt: bytearray) -> bytes:
    if len(pkt) >= 8:
        pkt[-2:] = struct.pack(">H", crc16(bytes(pkt[:-2])))
    return bytes(pkt)


def test_fuzz_100k_packets() -> None:
    rng = np.random.default_rng(2024)
    seeds = _seeds()
    gs = GroundStation(max_pixels=1 << 16)
    n = 100_000
    kinds = rng.integers(0, 6, n)
    for i in range(n):
        base = bytearray(seeds[rng.integers(len(seeds))])
        k = kinds[i]
        if k == 0:  # garbage of any length
            pkt = rng.integers(0, 256, rng.integers(0, 300), dtype=np.uint8).tobytes()
        elif k == 1:  # bit flips, CRC left as is
            for _ in range(rng.integers(1, 4)):
                j = rng.integers(len(base) * 8)
                base[j // 8] ^= 0x80 >> (j % 8)
            pkt = bytes(base)
        elif k == 2:  # random bytes changed, then a valid CRC (exercises every header check)
            for _ in range(rng.integers(1, 4)):
                base[rng.integers(6, len(base) - 2)] = rng.integers(256)
            pkt = _recrc(base)
        elif k == 3:  # truncated or extended, with or without a fixed length field and CRC
            cut = int(rng.integers(0, len(base) + 20))
            body = bytearray(base[:cut] + rng.integers(0, 256, max(0, cut - len(base)), dtype=np.uint8).tobytes())
            if rng.random() < 0.5 and len(body) >= 8:
                body[4:6] = struct.pack(">H", len(body) - 7)
                pkt = _recrc(body)
            else:
                pkt = bytes(body)
        elif k == 4:  # a valid packet under another APID or a strange header, CRC fixed
            base[0] = (base[0] & 0xF8) | int(rng.integers(0, 8))
            base[1] = int(rng.integers(256))
            if rng.random() < 0.3:
                base[0] ^= 0x10  # telecommand type bit
            pkt = _recrc(base)
        else:  # a good packet (duplicates galore)
            pkt = bytes(base)
        gs.receive(pkt)
    r = gs.receiver
    assert r.received == n
    assert r.accepted + r.duplicates + r.conflicting + r.idle + sum(r.rejected.values()) == n
    assert r.rejected["crc"] > 10_000 and r.rejected["apid"] > 1_000 and r.rejected["header"] > 100
    assert "internal" not in r.rejected, r.rejected
    report = gs.finish()  # decoding whatever got through must not crash either
    frame = report["products"]["frame_1"]
    assert frame["packets_received"] == frame["packets_expected"]
    assert frame["pixels_received"] == frame["pixels_sent"]
    assert report["products"]["telemetry_1"]["telemetry"] == {"a": [1, 2, 3]}

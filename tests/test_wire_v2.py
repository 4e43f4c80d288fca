"""Payload layout 2 (interleaved sparse packets) and the CCSDS 121 sample codec."""

from __future__ import annotations

import dataclasses
import math
import struct

import numpy as np
import pytest

from edgeae.ground.decode import longest_row_gap
from edgeae.ground.link import LinkConfig, simulate
from edgeae.ground.station import GroundStation
from edgeae.masks import make_mask
from edgeae.wire import codec as wcodec
from edgeae.wire import interleave as il
from edgeae.wire.packets import (
    COMMON,
    PRIMARY_HEADER,
    SPARSE_V2,
    SequenceCounters,
    WireConfig,
    build_packet,
    packetise,
    row_counts,
)
from edgeae.wire.parse import WireError, parse_packet
from edgeae.wire.products import AnomalyPatch, SparseFrame

pytest.importorskip("imagecodecs")


def frame(h=96, w=128, c=3, keep=0.1, seed=11, bits=8, frame_id=1) -> tuple[SparseFrame, np.ndarray]:
    """A sparse frame of a smooth image with texture, and the image."""
    rng = np.random.default_rng(seed)
    top = 2**bits - 1
    yy, xx = np.mgrid[0:h, 0:w]
    base = (np.sin(xx / 9.0) + np.cos(yy / 13.0) + 2) / 4 * top * 0.8
    img = np.clip(base[..., None] + rng.integers(0, max(2, top // 16), (h, w, c)), 0, top)
    img = img.astype(np.uint8 if bits <= 8 else np.uint16)
    m = make_mask(seed, (h, w), keep)
    return SparseFrame(frame_id, h, w, c, bits, keep, "uniform", seed, 1, img[m]), img


def regather(parsed, n: int, c: int, dtype) -> tuple[np.ndarray, np.ndarray]:
    """Samples put back at their kept-pixel numbers (one band), and how often each number was carried."""
    out = np.zeros((n, c), dtype)
    seen = np.zeros(n, int)
    for q in parsed:
        h = q.header
        idx = il.packet_indices(h["n_band"], h["seg"], h["band_parts"], h["step"], h["band_index"])
        out[idx] = q.samples
        seen[idx] += 1
    return out, seen


# ------------------------------------------------------------------------------------------ interleave
def test_interleave_spec_example() -> None:
    """docs/wire-format.md: 10 kept pixels, segments of 2, 3 packets, step 2 (segment t -> packet 2t mod 3)."""
    got = [il.packet_indices(10, 2, 3, 2, j).tolist() for j in range(3)]
    assert got == [[0, 1, 6, 7], [4, 5], [2, 3, 8, 9]]
    assert [il.packet_samples(10, 2, 3, 2, j) for j in range(3)] == [4, 2, 4]


def test_packet_samples_matches_indices_and_covers_once() -> None:
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(0, 400))
        seg = int(rng.integers(1, 20))
        t = il.segment_count(n, seg)
        parts = int(rng.integers(1, max(1, t) + 1))
        step = il.interleave_step(parts)
        seen = np.zeros(n, int)
        for j in range(parts):
            idx = il.packet_indices(n, seg, parts, step, j)
            assert idx.size == il.packet_samples(n, seg, parts, step, j)
            assert np.all(np.diff(idx) > 0)
            seen[idx] += 1
        assert (seen == 1).all()


def test_interleave_step_spreads_neighbours() -> None:
    for parts in (3, 7, 64, 70, 85, 1000, 5531):
        g = il.interleave_step(parts)
        assert math.gcd(g, parts) == 1
        if parts >= 20:  # consecutive segments, and packets sent back to back, are far apart
            assert il._spread(g, parts, 4) >= parts // 10
            assert il._spread(pow(g, -1, parts), parts, 4) >= parts // 10


def test_interleave_rejects_bad_parameters() -> None:
    for args in ((10, 0, 3, 2, 0), (10, 2, 3, 3, 0), (10, 2, 4, 2, 0), (10, 2, 3, 2, 3), (10, 2, 6, 1, 0)):
        with pytest.raises(il.InterleaveError):
            il.packet_samples(*args)


# ------------------------------------------------------------------------------------------ round trips
@pytest.mark.parametrize("codec", ["none", "delta-deflate", "ccsds121"])
@pytest.mark.parametrize("size", [128, 1024, 4096])
@pytest.mark.parametrize("bits", [8, 12])
def test_v2_round_trip(codec: str, size: int, bits: int) -> None:
    fr, _ = frame(bits=bits)
    pkts = packetise(fr, config=WireConfig(size, codec))
    assert all(len(p) <= size for p in pkts)
    parsed = [parse_packet(p) for p in pkts]
    assert [q.part for q in parsed] == list(range(len(pkts)))
    got, seen = regather(parsed, fr.values.shape[0], fr.channels, fr.values.dtype)
    assert (seen == 1).all()
    np.testing.assert_array_equal(got, fr.values)
    if codec != "none" and size >= 1024:
        assert any(q.codec != 0 for q in parsed)


def test_v2_bands_round_trip_through_the_ground() -> None:
    fr, img = frame(h=100, w=64, c=1, keep=0.3)
    pkts = packetise(fr, config=WireConfig(256, "ccsds121", band_rows=16))
    bands = {(q.header["row0"], q.header["row1"]) for q in map(parse_packet, pkts)}
    assert sorted(bands) == [(r, min(100, r + 16)) for r in range(0, 100, 16)]
    gs = GroundStation()
    for p in pkts[::-1]:  # any order
        gs.receive(p)
    gs.finish()
    known = gs.known[1]
    m = make_mask(fr.seed, (100, 64), fr.keep)
    assert (known == m).all()
    np.testing.assert_array_equal(np.round(gs.images[1][m] * 255).astype(np.uint8), img[m])


def test_layout_1_still_decodes() -> None:
    fr, img = frame()
    gs = GroundStation()
    for p in packetise(fr, config=WireConfig(512, "ccsds121", layout=1)):
        gs.receive(p)
    gs.finish()
    m = make_mask(fr.seed, (fr.height, fr.width), fr.keep)
    assert (gs.known[1] == m).all()
    np.testing.assert_array_equal(np.round(gs.images[1][m] * 255).astype(np.uint8), img[m])


def test_sparse_stream_sends_the_same_bytes() -> None:
    """The flight runtime's streamed packetiser (row counts + a spool) == packetise, for every codec."""
    from edgeae.firmware_sim.sparse_stream import sparse_packets

    fr, _ = frame(h=70, w=90)
    for cfg in (WireConfig(512), WireConfig(512, "ccsds121"), WireConfig(700, "delta-deflate", band_rows=20)):
        a = packetise(fr, config=cfg, counters=SequenceCounters({0x100: 5}))
        b = list(sparse_packets(fr, row_counts(fr), cfg, SequenceCounters({0x100: 5})))
        assert a == b
    v1 = WireConfig(512, layout=1)
    assert packetise(fr, config=v1) == list(sparse_packets(fr, row_counts(fr), v1))


def test_planner_spools_send_the_bodies_they_checked() -> None:
    """Bodies sent from the planner's spools == bodies coded again, for every codec and band layout; a band
    sent raw leaves its spool empty."""
    from edgeae.wire.sparse import BodySpool, plan_sparse, sparse_v2_bodies

    n_coded = 0
    for fr, _ in (frame(h=70, w=90), frame(h=256, w=256, keep=0.3)):
        for cfg in (WireConfig(512), WireConfig(512, "ccsds121"), WireConfig(700, "delta-deflate", band_rows=20)):
            spools: list[BodySpool] = []
            plan = plan_sparse(fr, row_counts(fr), cfg, spools)
            assert plan == plan_sparse(fr, row_counts(fr), cfg) and len(spools) == len(plan)
            assert list(sparse_v2_bodies(fr, plan, cfg, spools)) == list(sparse_v2_bodies(fr, plan, cfg))
            assert all(len(sp) in (0, b.parts) for sp, b in zip(spools, plan, strict=True))
            assert cfg.codec != "none" or not any(len(sp) for sp in spools)
            n_coded += sum(len(sp) > 0 for sp in spools)
            for sp in spools:
                sp.close()
    assert n_coded > 0  # some bands were coded by the planner and sent from its spool
    fr, _ = frame(h=256, w=256, keep=0.3)
    cfg = WireConfig(512, "ccsds121", band_rows=8)  # 32 bands: one temporary file, not 32 descriptors
    spools = []
    plan = plan_sparse(fr, row_counts(fr), cfg, spools)
    assert len(plan) == 32 and len({id(sp.file) for sp in spools}) == 1
    assert list(sparse_v2_bodies(fr, plan, cfg, spools)) == list(sparse_v2_bodies(fr, plan, cfg))
    spools[0].close()


# ------------------------------------------------------------------------------------------ loss pattern
def test_loss_leaves_no_band_of_rows() -> None:
    """At 20% packet loss no run of more than 2 rows goes without a sample (layout 1 loses whole bands)."""
    fr, _ = frame(h=256, w=256, keep=0.1)
    worst = {1: 0, 2: 0}
    for layout in (1, 2):
        pkts = packetise(fr, config=WireConfig(1024, "ccsds121", layout=layout))
        for seed in range(6):
            for link in (LinkConfig(seed=seed, loss=0.2), LinkConfig(seed=seed, burst_p=0.02, burst_r=0.2)):
                gs = GroundStation()
                for _, p in simulate(pkts, link)[0]:
                    gs.receive(p)
                gs.finish()
                if 1 in gs.known:
                    worst[layout] = max(worst[layout], longest_row_gap(gs.known[1]))
    assert worst[2] <= 2
    assert worst[1] > 10


def test_longest_row_gap() -> None:
    k = np.ones((10, 4), bool)
    assert longest_row_gap(k) == 0
    k[2:5] = False
    k[7] = False
    assert longest_row_gap(k) == 3
    assert longest_row_gap(np.zeros((6, 3), bool)) == 6


# ------------------------------------------------------------------------------------------ parse bounds
def _v2_packet(**override) -> bytes:
    f = dict(h=100, w=100, c=1, bits=8, keep=0.5, pat=1, seed=1, prng=1, r0=0, r1=100, n_band=10, seg=2, parts=3,
             index=0, step=2, n=4)  # fmt: skip
    f.update(override)
    head = SPARSE_V2.pack(*f.values())
    body = COMMON.pack(2, 0, 1, 0, 1) + head + bytes(f["n"] * f["c"])
    return build_packet(0x100, 0, body)


def test_parse_checks_every_v2_count_before_allocating() -> None:
    assert parse_packet(_v2_packet()).samples.shape == (4, 1)
    bad = [
        dict(n=5),  # not the count the interleave gives
        dict(step=3),  # shares a factor with parts
        dict(parts=6),  # more packets than segments
        dict(index=3),
        dict(r1=101),
        dict(n_band=100 * 100 + 1),
        dict(seg=0),
    ]
    for b in bad:
        with pytest.raises(WireError) as exc:
            parse_packet(_v2_packet(**b))
        assert exc.value.reason == "header", b
    # a CRC-valid 100-byte packet announcing 1 TB of samples is refused on its header, nothing allocated
    n_band = 2**32 - 1
    n = il.packet_samples(n_band, 65535, 1, 1, 0)
    head = SPARSE_V2.pack(65535, 65535, 255, 8, 0.5, 1, 1, 1, 0, 65535, n_band, 65535, 1, 0, 1, n)
    with pytest.raises(WireError) as exc:
        parse_packet(build_packet(0x100, 0, COMMON.pack(2, 3, 1, 0, 1) + head + b"\x00" * 8))
    assert exc.value.reason == "header"


def test_parse_rejects_ccsds121_on_latents_and_survives_damaged_streams() -> None:
    from edgeae.wire.packets import LATENT

    lat_head = LATENT.pack(b"e1", 4, 4, 1, 4, 4, 1, 1, 0, 1.0, 1, 1, 2, 0, 2)
    with pytest.raises(WireError) as exc:
        parse_packet(build_packet(0x101, 0, COMMON.pack(2, 3, 1, 0, 1) + lat_head + b"\x00\x00"))
    assert exc.value.reason == "codec"
    fr, _ = frame(h=40, w=40, c=1, keep=0.5)
    pkt = next(p for p in packetise(fr, config=WireConfig(1024, "ccsds121")) if p[PRIMARY_HEADER + 1] == 3)
    off = PRIMARY_HEADER + COMMON.size + SPARSE_V2.size
    damaged = bytearray(pkt[:-2])
    damaged[off : off + 4] = b"\xff\xff\xff\xff"
    damaged = bytes(damaged) + struct.pack(">H", __import__("binascii").crc_hqx(bytes(damaged), 0xFFFF))
    try:
        q = parse_packet(damaged)  # a re-CRC'd damaged stream either fails or decodes to other samples
    except WireError as exc:
        assert exc.reason == "samples"
    else:
        assert q.samples.shape == parse_packet(pkt).samples.shape


# ------------------------------------------------------------------------------------------ CCSDS 121
@pytest.mark.parametrize(("dtype", "bits"), [(np.uint8, 8), (np.uint8, 6), (np.uint16, 12), (np.uint16, 16)])
@pytest.mark.parametrize("channels", [1, 3])
def test_ccsds121_is_bit_exact(dtype, bits: int, channels: int) -> None:
    rng = np.random.default_rng(bits + channels)
    top = 2**bits
    smooth = (np.cumsum(rng.integers(-3, 4, (2000, channels)), axis=0) % top).astype(dtype)
    noise = rng.integers(0, top, (777, channels)).astype(dtype)
    edge = np.array([[0] * channels, [top - 1] * channels] * 9, dtype)
    for a in (smooth, noise, edge, smooth[:1], smooth[:0]):
        data = wcodec.encode_samples(a, 3, bits)
        np.testing.assert_array_equal(wcodec.decode_samples(data, 3, dtype, a.shape, bits), a)
    assert len(wcodec.encode_samples(smooth, 3, bits)) < 0.6 * smooth.nbytes
    with pytest.raises(wcodec.CodecError):
        wcodec.encode_samples(np.zeros(3, np.int8), 3)
    with pytest.raises(wcodec.CodecError):
        wcodec.decode_samples(wcodec.encode_samples(smooth, 3, bits)[:5], 3, dtype, smooth.shape, bits)


@pytest.mark.parametrize("channels", [1, 3])
def test_ccsds121_patches_round_trip(channels: int) -> None:
    rng = np.random.default_rng(channels)
    yy, xx = np.mgrid[0:64, 0:64]
    pix = ((xx + yy)[..., None] * 2 + rng.integers(0, 4, (64, 64, channels))).astype(np.uint16)
    ap = AnomalyPatch(3, 5, 6, 64, 2.5, pix, bit_depth=10)
    pk = packetise(ap, config=WireConfig(512, "ccsds121"))
    parsed = [parse_packet(p) for p in pk]
    assert all(q.codec == 3 for q in parsed)
    assert all(q.header["e0"] % channels == 0 for q in parsed)
    np.testing.assert_array_equal(np.concatenate([q.samples for q in parsed]), pix.reshape(-1))
    raw = packetise(ap, config=WireConfig(512))
    assert sum(map(len, pk)) < 0.7 * sum(map(len, raw))


def test_codec_none_sends_what_it_always_sent() -> None:
    """With the ground's defaults, a layout-2 frame and a layout-1 frame carry the same samples."""
    fr, _ = frame()
    a = sum(map(len, packetise(fr, config=WireConfig(1024, layout=1))))
    b = sum(map(len, packetise(fr, config=WireConfig(1024))))
    assert abs(a - b) / a < 0.05
    assert dataclasses.replace(WireConfig(), codec="ccsds121").layout == 2


def test_ccsds121_packets_survive_mutation() -> None:
    """Damaged ccsds121 streams behind a valid CRC: libaec errors become WireError('samples'), never a crash."""
    from edgeae.wire.packets import crc16

    rng = np.random.default_rng(5)
    fr, img = frame(h=60, w=80, keep=0.3)
    cfg = WireConfig(300, "ccsds121")
    seeds = packetise(fr, config=cfg) + packetise(AnomalyPatch(1, 3, 4, 16, 1.0, img[:16, :16]), config=cfg)
    assert all(parse_packet(p).codec == 3 for p in seeds[:3])
    reasons: dict[str, int] = {}
    for _ in range(3000):
        b = bytearray(seeds[rng.integers(len(seeds))])
        start = PRIMARY_HEADER + COMMON.size + (SPARSE_V2.size if b[1] == 0 else 30)
        for _ in range(rng.integers(1, 6)):
            b[rng.integers(start, len(b) - 2)] = rng.integers(256)
        if rng.random() < 0.3:  # truncated stream, length field and CRC fixed up
            b = b[: int(rng.integers(start, len(b)))] + bytearray(2)
            b[4:6] = struct.pack(">H", len(b) - 7)
        b[-2:] = struct.pack(">H", crc16(bytes(b[:-2])))
        try:
            parse_packet(bytes(b))
            reasons["ok"] = reasons.get("ok", 0) + 1
        except WireError as exc:
            reasons[exc.reason] = reasons.get(exc.reason, 0) + 1
    assert set(reasons) <= {"ok", "samples", "header"} and reasons.get("samples", 0) > 100

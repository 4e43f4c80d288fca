"""Wire format: golden bytes, round trips, packet sizes, codecs, CRC and the packet file."""

from __future__ import annotations

import binascii

import numpy as np
import pytest

from edgeae.masks import make_mask
from edgeae.wire import codec as wcodec
from edgeae.wire.packets import (
    APIDS,
    SequenceCounters,
    WireConfig,
    crc16,
    overhead,
    packetise,
)
from edgeae.wire.parse import WireError, parse_packet
from edgeae.wire.products import AnomalyPatch, LatentFrame, SparseFrame, TelemetryRecord
from edgeae.wire.stream import read_packet_file, split_stream, write_packet_file


def sparse_frame(h=60, w=90, c=3, keep=0.1, seed=11, bits=8, frame_id=1, pattern="uniform") -> SparseFrame:
    rng = np.random.default_rng(seed)
    top = 2**bits - 1
    ramp = np.linspace(0, top * 0.8, w)[None, :, None]
    img = np.clip(ramp + rng.integers(0, max(2, top // 8), (h, w, c)), 0, top)
    img = img.astype(np.uint8 if bits <= 8 else np.uint16)
    m = make_mask(seed, (h, w), keep, pattern)
    return SparseFrame(frame_id, h, w, c, bits, keep, pattern, seed, 1, img[m])


# golden bytes: a 2x3 grey frame with keep 0.5, seed 5 (mask keeps (0,1), (0,2), (1,0)), values 10, 20, 30
GOLDEN_SPARSE = (
    "0100c000003e"  # primary header: TM, APID 0x100, unsegmented, count 0, data length 63-1
    "01"
    "00"
    "00000007"
    "0000"
    "0001"  # layout 1, codec none, frame 7, part 0 of 1
    "00000002"
    "00000003"
    "01"
    "08"
    "3fe0000000000000"
    "01"
    "0000000000000005"
    "01"  # h w C bits keep pat seed prng
    "00000000"
    "00000002"
    "00000000"
    "00000003"
    "00000003"  # rows [0,2) cols [0,3) n=3
    "0a141e"  # samples
    "9509"  # CRC-16/CCITT-FALSE
)
GOLDEN_TELEMETRY = "0103c0000019010000000007000000010000000200000000000000027b7dab33"
GOLDEN_LATENT = (
    "0101c0000045010000000007000000016162313200000000000000000000000000000004000000040100040004000100"
    "01003fe00000000000000002000100010000000000000002ff026239"
)
GOLDEN_PATCH = "0102c000002a0100000000070000000100000001000000020001010800003fd00000000000000000000000000001092071"
# payload layout 2 (the default): the same 2x3 frame as one interleaved packet. Kind header: h w C bits keep pat
# seed prng, band rows [0,2), n_band 3, segment 1, packet 0 of 1, step 1, n 3
GOLDEN_SPARSE_V2 = (
    "0100c0000042"  # primary header: data length 67-1
    "02000000000700000001"  # layout 2, codec none, frame 7, part 0 of 1
    "00000002"
    "00000003"
    "01"
    "08"
    "3fe0000000000000"
    "01"
    "0000000000000005"
    "01"  # h w C bits keep pat seed prng
    "00000000"
    "00000002"
    "00000003"  # band rows [0,2), n_band 3
    "0001"
    "0001"
    "0000"
    "0001"
    "00000003"  # segment 1, 1 packet in the band, index 0, step 1, n 3
    "0a141e"  # samples
    "dbfa"  # CRC
)
GOLDEN_TELEMETRY_V2 = "0103c0000019020000000007000000010000000200000000000000027b7df236"
GOLDEN_PATCH_V2 = "0102c000002a0200000000070000000100000001000000020001010800003fd0000000000000000000000000000109f970"
GOLDEN_LATENT_V2 = (
    "0101c000004502000000000700000001616231320000000000000000000000000000000400000004010004000400010001003fe0000000"
    "0000000002000100010000000000000002ff022d20"
)
# layout 2 interleave: a 4x8 RGB frame, keep 0.75 (24 kept pixels), 128-byte packets -> segments of one pixel in
# 2 packets with step 1: packet 0 carries kept pixels 0, 2, 4, ..., packet 1 carries 1, 3, 5, ...
GOLDEN_INTERLEAVED = [
    "0100c000006302000000000800000002000000040000000803083fe8000000000000010000000000000003010000000000000004"
    "0000001800010002000000010000000c00070e2a3138545b627e858ca8afb6d2d9e0fc030a262d3450575e7a8188a4abb2ced5dcf222",
    "0100c001006302000000000800010002000000040000000803083fe8000000000000010000000000000003010000000000000004"
    "0000001800010002000100010000000c151c233f464d697077939aa1bdc4cbe7eef511181f3b4249656c738f969db9c0c7e3eaf13c51",
]


def test_crc16_is_ccitt_false() -> None:
    assert crc16(b"123456789") == 0x29B1
    fastcrc = pytest.importorskip("fastcrc")  # the CRC that spacepackets' ECSS packets use
    data = bytes(range(256)) * 3
    assert crc16(data) == fastcrc.crc16.ibm_3740(data)


def test_golden_bytes() -> None:
    """Payload layout 1: what every sender wrote before layout 2 (still written with ``layout=1``)."""
    v1 = WireConfig(layout=1)
    m = make_mask(5, (2, 3), 0.5)
    assert m.tolist() == [[False, True, True], [True, False, False]]
    fr = SparseFrame(7, 2, 3, 1, 8, 0.5, "uniform", 5, 1, np.array([[10], [20], [30]], np.uint8))
    assert [p.hex() for p in packetise(fr, config=v1)] == [GOLDEN_SPARSE]
    assert [p.hex() for p in packetise(TelemetryRecord(7, b"{}"), config=v1)] == [GOLDEN_TELEMETRY]
    lat = LatentFrame(7, "ab12", 4, 4, 1, 4, 4, 1, 1, 0.5, "int8", np.array([-1, 2], np.int8).reshape(1, 2, 1, 1))
    assert [p.hex() for p in packetise(lat, config=v1)] == [GOLDEN_LATENT]
    patch = AnomalyPatch(7, 1, 2, 1, 0.25, np.array([[[9]]], np.uint8))
    assert [p.hex() for p in packetise(patch, config=v1)] == [GOLDEN_PATCH]


def test_golden_bytes_layout_2() -> None:
    fr = SparseFrame(7, 2, 3, 1, 8, 0.5, "uniform", 5, 1, np.array([[10], [20], [30]], np.uint8))
    assert [p.hex() for p in packetise(fr)] == [GOLDEN_SPARSE_V2]
    assert [p.hex() for p in packetise(TelemetryRecord(7, b"{}"))] == [GOLDEN_TELEMETRY_V2]
    patch = AnomalyPatch(7, 1, 2, 1, 0.25, np.array([[[9]]], np.uint8))
    assert [p.hex() for p in packetise(patch)] == [GOLDEN_PATCH_V2]
    lat = LatentFrame(7, "ab12", 4, 4, 1, 4, 4, 1, 1, 0.5, "int8", np.array([-1, 2], np.int8).reshape(1, 2, 1, 1))
    assert [p.hex() for p in packetise(lat)] == [GOLDEN_LATENT_V2]
    m = make_mask(3, (4, 8), 0.75)
    vals = (np.arange(int(m.sum()) * 3).reshape(-1, 3) * 7 % 256).astype(np.uint8)
    fr2 = SparseFrame(8, 4, 8, 3, 8, 0.75, "uniform", 3, 1, vals)
    pk = packetise(fr2, config=WireConfig(128))
    assert [p.hex() for p in pk] == GOLDEN_INTERLEAVED
    parsed = [parse_packet(p) for p in pk]
    np.testing.assert_array_equal(parsed[0].samples, vals[0::2])
    np.testing.assert_array_equal(parsed[1].samples, vals[1::2])


def test_golden_parses() -> None:
    for golden, layout in ((GOLDEN_SPARSE, 1), (GOLDEN_SPARSE_V2, 2)):
        p = parse_packet(binascii.unhexlify(golden))
        assert (p.apid, p.seq_count, p.frame_id, p.part, p.parts, p.kind) == (0x100, 0, 7, 0, 1, "sparse")
        assert p.header["keep"] == 0.5 and p.header["seed"] == 5 and p.header["n"] == 3
        assert p.header["layout"] == layout
        assert p.samples.tolist() == [[10], [20], [30]]


@pytest.mark.parametrize("codec", ["none", "delta-deflate"])
@pytest.mark.parametrize("size", [128, 512, 4096])
@pytest.mark.parametrize("bits", [8, 12])
def test_sparse_round_trip(codec: str, size: int, bits: int) -> None:
    """Layout 1: rectangles of rows that tile the frame."""
    fr = sparse_frame(bits=bits)
    pkts = packetise(fr, config=WireConfig(size, codec, layout=1))
    assert all(len(p) <= size for p in pkts)
    parsed = [parse_packet(p) for p in pkts]
    assert [q.part for q in parsed] == list(range(len(pkts)))
    assert all(q.parts == len(pkts) for q in parsed)
    vals = np.concatenate([q.samples for q in parsed])
    np.testing.assert_array_equal(vals, fr.values)
    # the rectangles tile the frame exactly once
    cover = np.zeros((fr.height, fr.width), int)
    for q in parsed:
        h = q.header
        cover[h["row0"] : h["row1"], h["col0"] : h["col1"]] += 1
    assert (cover == 1).all()


def test_long_rows_split_by_columns() -> None:
    fr = sparse_frame(h=3, w=4000, c=1, keep=0.5, bits=16)
    pkts = packetise(fr, config=WireConfig(256, layout=1))
    parsed = [parse_packet(p) for p in pkts]
    assert any(q.header["col0"] > 0 for q in parsed)
    assert all(q.header["row1"] - q.header["row0"] == 1 for q in parsed)
    np.testing.assert_array_equal(np.concatenate([q.samples for q in parsed]), fr.values)


def test_delta_deflate_shrinks_smooth_samples() -> None:
    fr = sparse_frame(h=200, w=300, keep=0.25)
    plain = sum(map(len, packetise(fr, config=WireConfig(4096, "none"))))
    coded = sum(map(len, packetise(fr, config=WireConfig(4096, "delta-deflate"))))
    assert coded < 0.9 * plain


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_codec_round_trip(dtype: type) -> None:
    rng = np.random.default_rng(0)
    a: np.ndarray = rng.integers(0, np.iinfo(dtype).max, (300, 3), endpoint=True).astype(dtype)
    for cid in (0, 1, 2, 3):
        b = wcodec.decode_samples(wcodec.encode_samples(a, cid), cid, a.dtype, a.shape)
        np.testing.assert_array_equal(a, b)
    with pytest.raises(wcodec.CodecError):
        wcodec.decode_samples(wcodec.encode_samples(a, 1)[:-3], 1, a.dtype, a.shape)


def test_other_products_round_trip() -> None:
    rng = np.random.default_rng(1)
    lat = LatentFrame(
        2,
        "e1",
        300,
        400,
        3,
        128,
        128,
        3,
        4,
        0.05,
        "int8",
        rng.integers(-128, 128, (12, 16, 8, 8)).astype(np.int8),
    )
    fp = LatentFrame(
        2, "e1", 300, 400, 3, 128, 128, 3, 4, 1.0, "fp16", rng.normal(size=(12, 4, 8, 8)).astype(np.float16)
    )
    patch = AnomalyPatch(2, 10, 20, 64, 3.5, rng.integers(0, 4095, (64, 64, 1)).astype(np.uint16), bit_depth=12)
    for prod, arr in ((lat, lat.latents), (fp, fp.latents), (patch, patch.pixels)):
        for codec in ("none", "delta-deflate"):
            parsed = [parse_packet(p) for p in packetise(prod, config=WireConfig(1024, codec))]
            flat = np.concatenate([q.samples for q in parsed])
            np.testing.assert_array_equal(flat, arr.reshape(-1))
    tm = TelemetryRecord(2, b'{"t": 1.5}' * 200)
    parsed = [parse_packet(p) for p in packetise(tm, config=WireConfig(256))]
    assert bytes(np.concatenate([q.samples for q in parsed])) == tm.payload


def test_sequence_counts_per_apid_wrap() -> None:
    ctr = SequenceCounters({APIDS["sparse"]: 16382})
    pkts = packetise(sparse_frame(), config=WireConfig(256), counters=ctr)
    tm = packetise(TelemetryRecord(1, b"{}"), counters=ctr)
    seqs = [parse_packet(p).seq_count for p in pkts]
    assert seqs[:3] == [16382, 16383, 0]
    assert parse_packet(tm[0]).seq_count == 0


def test_packet_overhead_is_documented() -> None:
    assert overhead("sparse") == 6 + 10 + 52 + 2  # layout 2
    assert overhead("sparse", 1) == 6 + 10 + 48 + 2
    assert overhead("latent") == 6 + 10 + 56 + 2
    assert overhead("patch") == 6 + 10 + 30 + 2
    assert overhead("telemetry") == 6 + 10 + 12 + 2


def test_crc_catches_every_single_bit_error() -> None:
    pkt = packetise(sparse_frame(h=8, w=16))[0]
    for bit in range(len(pkt) * 8):
        bad = bytearray(pkt)
        bad[bit // 8] ^= 0x80 >> (bit % 8)
        with pytest.raises(WireError):
            parse_packet(bytes(bad))


def test_rejects_bad_products() -> None:
    with pytest.raises(ValueError, match="uint8"):
        SparseFrame(1, 2, 2, 1, 8, 0.5, "uniform", 1, 1, np.zeros((1, 1), np.uint16))
    with pytest.raises(ValueError, match="pattern"):
        SparseFrame(1, 2, 2, 1, 8, 0.5, "spiral", 1, 1, np.zeros((1, 1), np.uint8))
    with pytest.raises(ValueError, match="mask keeps"):
        packetise(SparseFrame(1, 20, 20, 1, 8, 0.5, "uniform", 1, 1, np.zeros((3, 1), np.uint8)))
    with pytest.raises(ValueError, match="max_packet_size"):
        WireConfig(64)


def test_packet_file_and_stream(tmp_path) -> None:
    pkts = packetise(sparse_frame(), config=WireConfig(256))
    path = tmp_path / "p.bin"
    write_packet_file(path, [(i * 0.5, p) for i, p in enumerate(pkts)])
    recs, rest = read_packet_file(path)
    assert rest == 0 and [r[1] for r in recs] == pkts and recs[2][0] == 1.0
    path.write_bytes(path.read_bytes()[:-7])  # truncated last record
    recs, rest = read_packet_file(path)
    assert len(recs) == len(pkts) - 1 and rest > 0
    # a plain stream with garbage in front and between packets resynchronises on the CRC
    blob = b"\x01\x00junk" + pkts[0] + b"\xff" * 5 + pkts[1] + pkts[2][:-1]
    got = list(split_stream(blob))
    assert [p for p, _ in got if p is not None] == [pkts[0], pkts[1]]
    assert sum(k for p, k in got if p is None) == 6 + 5 + len(pkts[2]) - 1


def test_wire_imports_nothing_heavy() -> None:
    import subprocess
    import sys

    code = (
        "import sys; import edgeae.wire.packets, edgeae.wire.parse, "
        "edgeae.wire.stream; "
        "print(sorted(m for m in ('torch', 'cv2', 'onnxruntime', 'scipy', 'imagecodecs') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_wire_is_neutral_ground_and_flight_never_import_each_other() -> None:
    """The wire contract belongs to neither side: the ground never imports the flight runtime and back."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    flight_in_ground = re.compile(r"^\s*(from|import)\s+edgeae\.firmware_sim", re.M)
    ground_in_flight = re.compile(r"^\s*(from|import)\s+edgeae\.ground", re.M)
    wire_imports = re.compile(r"^\s*(from|import)\s+edgeae\.(firmware_sim|ground)", re.M)
    bad = [str(p) for p in (root / "edgeae" / "ground").rglob("*.py") if flight_in_ground.search(p.read_text())]
    bad += [str(p) for p in (root / "firmware_sim").rglob("*.py") if ground_in_flight.search(p.read_text())]
    bad += [str(p) for p in (root / "edgeae" / "wire").rglob("*.py") if wire_imports.search(p.read_text())]
    assert bad == []

"""Wire contract audit fixes (session 30): the 4 MiB piece limit in layout 1, codec 1 on colour patches, idle
packets, header checks the doc promises (PRNG version, telemetry codecs, patches past any frame), the record-file
header, neutral library messages and the ``downlink simulate --codec`` choices."""

from __future__ import annotations

import json
import logging
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

import edgeae.wire.parse as wparse
import edgeae.wire.sparse as wsparse
import edgeae.wire.sparse_plan as wsparse_plan
from edgeae.cli import main
from edgeae.wire import codec as wcodec
from edgeae.wire.packets import (
    APIDS,
    COMMON,
    IDLE_APID,
    PATCH,
    TELEMETRY,
    TooManyPackets,
    WireConfig,
    build_packet,
    crc16,
    packetise,
)
from edgeae.wire.parse import WireError, parse_packet
from edgeae.wire.products import AnomalyPatch, SparseFrame
from edgeae.wire.stream import PacketFileError, iter_packet_file, stream_pieces, write_packet_file

EOT_HEX = "07ffc000000b4544474541452d454f545231"  # docs/wire-format.md, "End of transmission"


def _black(h: int, c: int) -> SparseFrame:
    return SparseFrame(0, h, h, c, 8, 1.0, "uniform", 0, 1, np.zeros((h * h, c), np.uint8))


def _announced(pkt: bytes) -> int:
    p = parse_packet(pkt)
    return p.samples.nbytes


# ------------------------------------------------------------------------------------- item 1: 4 MiB per packet
@pytest.mark.parametrize(("layout", "cap", "h", "c", "size"), [(1, 65536, 300, 1, 1024), (2, 4000, 200, 3, 8192)])
def test_no_sender_packet_announces_more_than_max_piece_bytes(
    monkeypatch: pytest.MonkeyPatch, layout: int, cap: int, h: int, c: int, size: int
) -> None:
    """A black frame codes ~1000x smaller: layout 1's whole-row packets took as many rows as fit coded (the 4 MiB
    cap was missing), layout 2 could round one segment over it. The limit is scaled down to keep this fast."""
    monkeypatch.setattr(wsparse, "MAX_PIECE_BYTES", cap)
    monkeypatch.setattr(wsparse_plan, "MAX_PIECE_BYTES", cap)
    monkeypatch.setattr(wparse, "MAX_PIECE_BYTES", cap)
    pkts = packetise(_black(h, c), config=WireConfig(size, "delta-deflate", layout))
    sizes = [_announced(p) for p in pkts]  # parse_packet refuses a packet over the cap ('header')
    assert max(sizes) <= cap and sum(sizes) == h * h * c


# ------------------------------------------------------------------------------ item 2: codec 1 on colour patches
def _patch_packet(pixels: np.ndarray, e0: int, n: int, data: bytes, codec: int = 1) -> bytes:
    size, _, c = pixels.shape
    head = COMMON.pack(2, codec, 3, 0, 1) + PATCH.pack(5, 6, size, c, 8, 0, 1.5, e0, n)
    return build_packet(APIDS["patch"], 0, head + data)


def _doc_delta(flat: np.ndarray, channels: int, first: int) -> bytes:
    """Codec 1 as docs/wire-format.md words it, written out sample by sample."""
    last: dict[int, int] = {}
    out = bytearray()
    for i, v in enumerate(flat.tolist()):
        ch = (first + i) % channels
        out.append((v - last.get(ch, 0)) % 256)
        last[ch] = v
    return zlib.compress(bytes(out), 9)


@pytest.mark.parametrize(("e0", "n"), [(0, 48), (3, 30), (1, 20)])  # whole pixels, and ranges that split one
def test_codec_1_patch_differences_run_per_channel(e0: int, n: int) -> None:
    rgb = np.random.default_rng(2).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    flat = rgb.reshape(-1)[e0 : e0 + n]
    data = _doc_delta(flat, 3, e0 % 3)
    assert wcodec.encode_delta_pixels(flat, 3, e0 % 3) == data
    got = parse_packet(_patch_packet(rgb, e0, n, data)).samples
    np.testing.assert_array_equal(got, flat)  # was: differences taken across channels (10 30 60 61 ...)


def test_codec_1_patch_16_bit_and_grey() -> None:
    px = np.random.default_rng(3).integers(0, 4096, (3, 3, 2), dtype=np.uint16).reshape(-1)[1:16]
    back = wcodec.decode_delta_pixels(wcodec.encode_delta_pixels(px, 2, 1), np.dtype(np.uint16), 15, 2, 1)
    np.testing.assert_array_equal(back, px)
    grey = np.arange(9, dtype=np.uint8).reshape(3, 3, 1) * 20
    pkt = _patch_packet(grey, 0, 9, wcodec.encode_samples(grey.reshape(-1), 1))  # one channel: as before
    np.testing.assert_array_equal(parse_packet(pkt).samples, grey.reshape(-1))


# ------------------------------------------------------------------------------------------- item 3: idle packets
def _idle_no_crc(n: int = 20) -> bytes:
    return struct.pack(">HHH", 0x0000 | IDLE_APID, 0xC000, n - 7) + b"\x55" * (n - 6)


def test_idle_packets_are_idle_with_or_without_our_crc() -> None:
    for pkt in (_idle_no_crc(), _idle_no_crc(7), build_packet(IDLE_APID, 3, b"fill"), bytes.fromhex(EOT_HEX)):
        with pytest.raises(WireError) as exc:
            parse_packet(pkt)
        assert exc.value.reason == "idle"  # was 'crc' (damage) for CCSDS fill without our CRC-16
    bad = bytearray(_idle_no_crc())
    bad[5] += 1  # a length that does not fit: not taken for an idle packet
    with pytest.raises(WireError, match="length"):
        parse_packet(bytes(bad))


def test_eot_packet_bytes_are_the_documented_ones() -> None:
    assert build_packet(IDLE_APID, 0, b"EDGEAE-EOT").hex() == EOT_HEX
    assert EOT_HEX in Path(__file__).parents[1].joinpath("docs", "wire-format.md").read_text()


def test_idle_fill_in_a_plain_stream_is_not_garbage() -> None:
    fr = packetise(_black(8, 1), config=WireConfig(128))
    fill = _idle_no_crc(40)
    blob = fill + fr[0] + fill + fill + b"".join(fr[1:]) + fill
    for chunk in (1, 50, 1 << 20):
        pieces = list(stream_pieces(blob, chunk=chunk))
        assert [p.kind for p in pieces] == ["packet"] * (len(fr) + 4)  # was: the fill counted as garbage
        assert [p.data for p in pieces if p.data != fill] == fr
    noise = np.random.default_rng(1).integers(0, 256, 500, dtype=np.uint8).tobytes()
    pieces = list(stream_pieces(noise + fill + fr[0]))  # after garbage: the fill is where the stream resumes
    assert [(p.kind, p.nbytes) for p in pieces] == [("garbage", 500), ("packet", 40), ("packet", len(fr[0]))]


def test_idle_fill_in_a_record_file_is_idle(tmp_path: Path) -> None:
    path = tmp_path / "r.bin"
    write_packet_file(path, [(0.0, _idle_no_crc()), (1.0, bytes.fromhex(EOT_HEX))])
    items = list(iter_packet_file(path))
    assert len(items) == 2
    for item in items:
        assert isinstance(item, tuple)  # a record, not Damage
        with pytest.raises(WireError, match=r"^idle"):
            parse_packet(item[1])


# ------------------------------------------------------------------------------------ item 8: header checks
def _sparse_v2_with(prng: int) -> bytes:
    fr = SparseFrame(7, 2, 3, 1, 8, 0.5, "uniform", 5, 1, np.array([[10], [20], [30]], np.uint8))
    pkt = bytearray(packetise(fr)[0])
    pkt[6 + 10 + 27] = prng
    pkt[-2:] = crc16(bytes(pkt[:-2])).to_bytes(2, "big")
    return bytes(pkt)


@pytest.mark.parametrize("prng", [0, 2, 255])
def test_a_mask_prng_version_the_ground_lacks_is_refused_in_parse(prng: int) -> None:
    assert parse_packet(_sparse_v2_with(1)).header["prng_version"] == 1
    with pytest.raises(WireError, match="prng: mask PRNG version"):  # was: accepted, failed later as 'decode'
        parse_packet(_sparse_v2_with(prng))


@pytest.mark.parametrize("codec", [1, 3])
def test_telemetry_is_refused_with_codec_1_or_3(codec: int) -> None:
    data = b'{"a": 1}'
    head = COMMON.pack(2, codec, 1, 0, 1) + TELEMETRY.pack(len(data), 0, len(data))
    with pytest.raises(WireError) as exc:
        parse_packet(build_packet(APIDS["telemetry"], 0, head + zlib.compress(data)))
    assert exc.value.reason == "codec"
    ok = COMMON.pack(2, 2, 1, 0, 1) + TELEMETRY.pack(len(data), 0, len(data))
    assert bytes(parse_packet(build_packet(APIDS["telemetry"], 0, ok + zlib.compress(data))).samples) == data


# ------------------------------------------------------------------------------ item 9: patches past any frame
def test_a_patch_past_the_largest_frame_is_refused() -> None:
    px = np.zeros((2, 2, 1), np.uint8)
    for x, y in ((2**32 - 1, 0), (0, 2**32 - 2)):
        head = COMMON.pack(2, 0, 1, 0, 1) + PATCH.pack(x, y, 2, 1, 8, 0, 1.0, 0, 4)
        with pytest.raises(WireError, match="header: patch at"):  # was: accepted (hf/mix.bin)
            parse_packet(build_packet(APIDS["patch"], 0, head + bytes(4)))
        with pytest.raises(ValueError, match="runs past the largest frame"):
            AnomalyPatch(1, x, y, 2, 1.0, px)
    assert parse_packet(packetise(AnomalyPatch(1, 2**32 - 3, 0, 2, 1.0, px))[0]).header["x"] == 2**32 - 3


# ---------------------------------------------------------------------- item 13: a truncated record-file header
@pytest.mark.parametrize(("head", "msg"), [(b"EAPK", r"4 of 5 bytes; version missing"), (b"EA", r"2 of 5")])
def test_a_truncated_record_file_header_says_so(tmp_path: Path, head: bytes, msg: str) -> None:
    path = tmp_path / "h.bin"
    path.write_bytes(head)
    with pytest.raises(PacketFileError, match=f"truncated packet-file header \\({msg}"):
        iter_packet_file(path)
    path.write_bytes(b"EAPK\x02")
    with pytest.raises(PacketFileError, match="version 2 is not 1"):
        iter_packet_file(path)


# ---------------------------------------------------------- too many packets: neutral in the library, CLI adds
def test_too_many_packets_names_no_cli_option_in_the_library() -> None:
    msg = wsparse.too_many_packets("sparse", 3, 70000)
    assert "--" not in msg and "raise the packet size limit, keep fewer pixels or code the samples losslessly" in msg
    assert issubclass(TooManyPackets, ValueError)


@pytest.fixture()
def image(tmp_path: Path) -> Path:
    cv2 = pytest.importorskip("cv2")
    y, x = np.mgrid[0:24, 0:32]
    p = tmp_path / "scene.png"
    cv2.imwrite(str(p), (x * 5 + y * 3).astype(np.uint8))
    return p


def test_simulate_adds_its_option_names_to_too_many_packets(
    tmp_path: Path, image: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # modules that bind packetise when first imported are imported unpatched first, so that the stand-in
    # below cannot leak into later tests
    import importlib

    for name in ("edgeae.ground.baselines", "edgeae.ground.pipeline", "edgeae.ground.budget_downlink"):
        importlib.import_module(name)
    import edgeae.wire.packets as wpackets

    def refuse(*_a: object, **_k: object) -> list[bytes]:
        raise TooManyPackets(wsparse.too_many_packets("sparse", 0, 70000))

    monkeypatch.setattr(wpackets, "packetise", refuse)
    argv = ["downlink", "simulate", "--image", str(image), "--codec", "none", "--out", str(tmp_path / "o.bin")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "needs 70,000 packets" in err and "(--max-packet, --keep, --codec)" in err


# ------------------------------------------------------------------------- item 11: --codec help and choices
def test_codec_choices_are_the_sample_codecs_and_auto(
    tmp_path: Path, image: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgeae.cli.downlink import SAMPLE_CODEC_CHOICES

    assert set(SAMPLE_CODEC_CHOICES) == {*wcodec.SAMPLE_CODECS, "auto"}
    out = tmp_path / "a.bin"
    assert main(["downlink", "simulate", "--image", str(image), "--codec", "auto", "--out", str(out)]) == 0
    rep = json.loads(out.with_suffix(".json").read_text())
    assert rep["product"]["codec"] == wcodec.resolve_sample_codec("auto")  # what the packets carry
    capsys.readouterr()
    with pytest.raises(SystemExit):  # was: accepted, sending image samples as codec 2 (deflate)
        main(["downlink", "simulate", "--image", str(image), "--codec", "deflate", "--out", str(tmp_path / "d.bin")])
    err = capsys.readouterr().err
    assert "invalid choice: 'deflate'" in err and "auto" in err


# --------------------------------------------------------------------------- item 12: a frame with no samples
def test_a_frame_that_keeps_no_pixel_is_sent_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    fr = SparseFrame(4, 10, 10, 1, 8, 1e-6, "uniform", 0, 1, np.zeros((0, 1), np.uint8))
    with caplog.at_level(logging.WARNING, logger="edgeae.wire.packets"):
        pkts = packetise(fr)
    assert len(pkts) == 1 and parse_packet(pkts[0]).header["n"] == 0
    assert "sparse frame 4: keep 1e-06 keeps 0 of 100 pixels: sent with no samples" in caplog.text


# ---------------------------------------------------------------------------- item 14: goldens in the spec
def test_the_spec_prints_the_golden_packets() -> None:
    import re

    from edgeae.wire.products import LatentFrame, TelemetryRecord

    doc = Path(__file__).parents[1].joinpath("docs", "wire-format.md").read_text()
    block = doc[doc.index("## Golden packets") : doc.index("## Session rules")]
    fr = SparseFrame(7, 2, 3, 1, 8, 0.5, "uniform", 5, 1, np.array([[10], [20], [30]], np.uint8))
    code = block.split("```")[1]
    v2 = "".join("".join(re.findall(r"[0-9a-f]+", line.split("   ")[0])) for line in code.splitlines())
    assert v2 == packetise(fr)[0].hex()
    v1 = "".join(re.findall(r"`([0-9a-f]+)`", block[block.index("layout 1") : block.index("Layout 2, frame")]))
    assert v1 == packetise(fr, config=WireConfig(layout=1))[0].hex()
    lat = LatentFrame(7, "ab12", 4, 4, 1, 4, 4, 1, 1, 0.5, "int8", np.array([-1, 2], np.int8).reshape(1, 2, 1, 1))
    patch = AnomalyPatch(7, 1, 2, 1, 0.25, np.array([[[9]]], np.uint8))
    for prod in (TelemetryRecord(7, b"{}"), patch, lat):
        assert f"`{packetise(prod)[0].hex()}`" in block

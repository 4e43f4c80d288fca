"""Ground accounting, session 30 audit: idle fill is not damage, refused and truncated packets are charged to
their products (not lost), patches are checked against their frame, an empty mask has no pixel fraction,
non-finite latents never reach the decoder, and the record-file header check is the wire's own."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from edgeae.cli import main
from edgeae.ground.reassembly import Receiver
from edgeae.ground.sources import check_packet_files, feed_packets, iter_packets, sparse_from_samples
from edgeae.ground.station import GroundStation
from edgeae.wire.packets import IDLE_APID, SequenceCounters, WireConfig, build_packet, crc16, packetise
from edgeae.wire.products import AnomalyPatch, LatentFrame, SparseFrame, TelemetryRecord
from edgeae.wire.stream import PacketFileError, write_packet_file


def _frame(frame_id: int = 7, shape: tuple[int, int, int] = (48, 64, 3), keep: float = 0.2) -> SparseFrame:
    s = (np.arange(np.prod(shape)).reshape(shape) % 251).astype(np.uint8)
    return sparse_from_samples(s, 8, keep, 1, frame_id=frame_id)


def _bin(path: Path, packets: list[bytes]) -> Path:
    write_packet_file(path, [(float(i), p) for i, p in enumerate(packets)])
    return path


def _recrc(pkt: bytearray) -> bytes:
    pkt[-2:] = struct.pack(">H", crc16(bytes(pkt[:-2])))
    return bytes(pkt)


def _balanced(st: dict) -> bool:
    return st["packets_received"] == (
        st["packets_accepted"] + st["duplicates"] + st["idle_packets"] + sum(st["rejected"].values())
    )


# ------------------------------------------------------------------------ A: idle packets are fill, not damage
def test_idle_packets_are_counted_apart_from_rejected(tmp_path: Path, capsys) -> None:
    from edgeae.ground.transport import EOT

    pkts = packetise(_frame(), config=WireConfig(256))
    fill = build_packet(IDLE_APID, 0, b"fill")
    no_crc = fill[:-2] + b"\x00\x00"  # other equipment's fill carries no CRC of ours
    r = Receiver()
    for p in [pkts[0], fill, no_crc, EOT, *pkts[1:]]:
        r.receive(p)
    st = r.stream_report()
    assert st["rejected"] == {} and st["idle_packets"] == 3  # were rejected {"idle": 3}: fill as damage
    assert _balanced(st)
    assert r.product_report(r.products[("sparse", 7, 0)])["packets_lost"] == 0
    raw = tmp_path / "pass_00001.bin"  # a raw stream with fill between packets
    raw.write_bytes(b"".join([pkts[0], fill, *pkts[1:], fill]))
    assert main(["ground", "decode", str(raw), "--out", str(tmp_path / "g")]) == 0
    out = capsys.readouterr().out
    assert "rejected: none, 2 idle (fill) packets" in out
    st = json.loads((tmp_path / "g" / "stream.json").read_text())["stream"]
    assert st["idle_packets"] == 2 and _balanced(st)


# -------------------------------------------------- F: refused and truncated packets are charged, not lost
def _codec_refused(pkt: bytes) -> bytes:
    b = bytearray(pkt)
    b[7] = 1  # the common header's codec byte: codec 1 on telemetry is refused (CRC fixed: it arrived intact)
    return _recrc(b)


def _bits_refused(pkt: bytes) -> bytes:
    b = bytearray(pkt)
    b[6 + 10 + 11] = 0  # the patch header's bit depth: 0 is refused as a header fault
    return _recrc(b)


@pytest.mark.parametrize(
    ("product", "damage", "reason", "kind"),
    [
        (TelemetryRecord(3, bytes(range(256)) * 3), _codec_refused, "codec", "telemetry"),
        (AnomalyPatch(3, 0, 0, 16, 1.0, np.ones((16, 16, 3), np.uint8)), _bits_refused, "header", "patch"),
    ],
)
def test_a_packet_refused_for_its_headers_is_charged_to_its_product_not_lost(product, damage, reason, kind) -> None:
    pkts = packetise(product, config=WireConfig(128))
    assert len(pkts) > 3
    r = Receiver()
    for i, p in enumerate(pkts):
        r.receive(damage(p) if i == 2 else p)
    assert r.rejected == {reason: 1}
    rep = r.product_report(next(iter(r.products.values())))
    assert rep["packets_lost"] == 0  # was 1: a packet that arrived was reported as lost on the link
    assert (rep["packets_received"], rep["packets_refused"], rep["packets_corrupt"], rep["packets_lost"]) == (
        len(pkts) - 1,
        1,
        0,
        0,
    )
    seq = r.stream_report()["sequence"][kind]
    assert (seq["refused"], seq["missing"]) == (1, 0)


def test_a_truncated_last_record_counts_as_corrupt_not_lost(tmp_path: Path, capsys) -> None:
    pkts = packetise(_frame(), config=WireConfig(256))
    f = _bin(tmp_path / "rx.bin", pkts)
    f.write_bytes(f.read_bytes()[:-7])  # the file ends inside the last packet
    r = Receiver()
    skipped, damage = feed_packets(f, lambda _t, p: r.receive(p))
    assert [d.reason for d in damage] == ["truncated"] and skipped == 0
    rep = r.product_report(r.products[("sparse", 7, 0)])
    assert (rep["packets_received"], rep["packets_corrupt"], rep["packets_lost"]) == (len(pkts) - 1, 1, 0)  # was lost
    assert main(["ground", "decode", str(f), "--out", str(tmp_path / "g")]) == 0
    frame = json.loads((tmp_path / "g" / "frame_7.json").read_text())
    assert (frame["packets_corrupt"], frame["packets_lost"]) == (1, 0)
    st = json.loads((tmp_path / "g" / "stream.json").read_text())["stream"]
    assert st["file_damage"][0]["reason"] == "truncated" and st["rejected"] == {"length": 1} and _balanced(st)
    f.write_bytes(f.read_bytes()[: -(len(pkts[-1]) - 7 + 4)])  # inside the record header: nothing to attribute
    r = Receiver()
    skipped, damage = feed_packets(f, lambda _t, p: r.receive(p))
    assert skipped == 8 and r.received == len(pkts) - 1


# -------------------------------------------------------------------- B: patches checked against their frame
def test_a_patch_outside_its_frame_is_refused_and_counted(tmp_path: Path) -> None:
    ctr = SequenceCounters()
    pkts = packetise(_frame(5, (8, 8, 1), keep=0.5), counters=ctr)
    inside = AnomalyPatch(5, 4, 4, 4, 1.0, np.full((4, 4, 1), 9, np.uint8), index=0)
    outside = AnomalyPatch(5, 6, 0, 4, 1.0, np.full((4, 4, 1), 9, np.uint8), index=1)  # inside 2^32, not 8x8
    pkts += packetise(inside, counters=ctr) + packetise(outside, counters=ctr)
    gs = GroundStation(out=tmp_path / "g")
    for p in pkts:
        gs.receive(p)
    rep = gs.finish()
    bad = rep["products"]["patch_5_1"]
    assert bad["error_reason"] == "decode" and "runs past its sparse frame 5 (8 wide, 8 high)" in bad["error"]
    assert rep["stream"]["products_failed"] == {"decode": 1}  # was: written, no error
    assert "error" not in rep["products"]["patch_5_0"] and (tmp_path / "g" / "patch_5_0.png").exists()
    assert not (tmp_path / "g" / "patch_5_1.png").exists()


def test_budget_receive_clips_a_patch_past_the_frame() -> None:
    from edgeae.ground.budget_downlink import Downlink, receive
    from edgeae.ground.feature_sets import LabelledFrame
    from edgeae.ground.link import LinkConfig

    samples = np.zeros((8, 8, 3), np.uint8)
    frame = LabelledFrame("f", "s", samples, 4, np.zeros((0, 2), int), "test")
    px = np.full((4, 4, 3), 255, np.uint8)
    sent = Downlink("prioritised", packetise(AnomalyPatch(0, 6, 2, 4, 1.0, px)), patches=((6, 2),))
    got = receive(frame, sent, LinkConfig(), None)  # was: ValueError (shape mismatch)
    assert got.patches_clipped == 1 and got.whole == () and not got.lost
    assert got.exact.sum() == 8 and got.exact[2:6, 6:8].all()
    assert np.allclose(got.image[2:6, 6:8], 1.0)


# ------------------------------------------------------------------------ D: a mask that keeps no pixel
def test_a_frame_whose_mask_keeps_no_pixel_has_no_fraction(tmp_path: Path, capsys) -> None:
    fr = _frame(4, (3, 3, 1), keep=0.01)
    assert fr.values.size == 0
    f = _bin(tmp_path / "e.bin", packetise(fr))
    main(["ground", "decode", str(f), "--out", str(tmp_path / "g")])
    out = capsys.readouterr().out
    rep = json.loads((tmp_path / "g" / "frame_4.json").read_text())
    assert rep["pixels_sent"] == 0 and rep["pixel_fraction_received"] is None  # was 0.0
    assert "no pixels sampled" in out and "0.0% of sampled pixels" not in out


# ------------------------------------------------------------------------ E: non-finite float16 latents
def test_non_finite_latents_are_not_received_and_never_reach_the_decoder() -> None:
    lat = np.ones((4, 8, 4, 4), np.float16)
    lat[0, 0, 0, :3] = [np.nan, np.inf, -np.inf]
    lat[2, 1, 1, 1] = np.nan
    seen: list[np.ndarray] = []

    def decoder(x: np.ndarray) -> np.ndarray:
        seen.append(np.asarray(x))
        return np.zeros((x.shape[0], 3, 32, 32), np.float32)

    gs = GroundStation(decoder=decoder)
    for p in packetise(LatentFrame(2, "x", 64, 64, 3, 32, 32, 2, 2, 1.0, "fp16", lat), config=WireConfig(256)):
        gs.receive(p)
    rep = gs.finish()["products"]["latent_2"]
    assert seen and all(np.isfinite(x).all() for x in seen)  # was: NaN and inf handed to the decoder
    assert "error" not in rep, rep
    assert rep["latent_nonfinite"] == 4 and rep["tiles_complete"] == 2  # tiles 0 and 2 lack elements
    assert rep["elements_received"] == pytest.approx(1 - 4 / lat.size)


# ----------------------------------------------------------- C: the record-file header check is the wire's
@pytest.mark.parametrize(
    ("head", "msg"),
    [
        (b"EAPK", "truncated packet-file header (4 of 5 bytes; version missing)"),
        (b"EA", "truncated packet-file header (2 of 5 bytes; magic cut short, version missing)"),
        (b"EAPK\x02", "packet file version 2 is not 1"),
    ],
)
def test_packet_file_headers_are_checked_by_the_wire(tmp_path: Path, capsys, head: bytes, msg: str) -> None:
    f = tmp_path / "h.bin"
    f.write_bytes(head)
    with pytest.raises(PacketFileError) as exc:
        check_packet_files(f)
    assert str(exc.value) == f"{f}: {msg}"
    with pytest.raises(PacketFileError):  # the reader takes the file for a record file too (b"EA" was a raw stream)
        list(iter_packets(f))
    assert main(["ground", "decode", str(f), "--out", str(tmp_path / "g")]) == 2
    assert msg in capsys.readouterr().err and not (tmp_path / "g").exists()


def test_a_patch_decoded_before_its_frame_is_checked_again_at_the_end(tmp_path: Path) -> None:
    """``serve`` decodes a patch as soon as it is complete, and the flight sends patches before the frame: the
    patch past its frame was written and never checked. ``finish`` checks it again and removes its file."""
    ctr = SequenceCounters()
    outside = packetise(AnomalyPatch(5, 6, 0, 4, 1.0, np.full((4, 4, 1), 9, np.uint8), index=0), counters=ctr)
    frame = packetise(_frame(5, (8, 8, 1), keep=0.5), counters=ctr)
    gs = GroundStation(out=tmp_path / "g")
    for p in outside:
        gs.receive(p)
    gs.decode(gs.complete())  # what serve's decode worker does as soon as a product is complete
    assert (tmp_path / "g" / "patch_5_0.png").exists()
    for p in frame:
        gs.receive(p)
    rep = gs.finish()
    assert rep["products"]["patch_5_0"]["error_reason"] == "decode"
    assert rep["stream"]["products_failed"] == {"decode": 1}
    assert not (tmp_path / "g" / "patch_5_0.png").exists()
    assert json.loads((tmp_path / "g" / "patch_5_0.json").read_text())["error_reason"] == "decode"

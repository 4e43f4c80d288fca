"""Ground station: reassembly in any order, duplicates, gaps across the 14-bit wrap, decoding, reports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeae.ground.link import LinkConfig, simulate
from edgeae.ground.reassembly import Receiver
from edgeae.ground.seq_tracker import SeqTracker
from edgeae.ground.station import GroundStation
from edgeae.masks import make_mask
from edgeae.wire.packets import APIDS, SEQ_MODULO, SequenceCounters, WireConfig, packetise
from edgeae.wire.products import SparseFrame, TelemetryRecord


def frame(frame_id: int = 1, h: int = 48, w: int = 64, keep: float = 0.2, seed: int = 9):
    rng = np.random.default_rng(frame_id)
    img = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
    m = make_mask(seed, (h, w), keep)
    return img, m, SparseFrame(frame_id, h, w, 3, 8, keep, "uniform", seed, 1, img[m])


def test_any_order_and_duplicates_rebuild_exactly() -> None:
    img, m, fr = frame()
    pkts = packetise(fr, config=WireConfig(200))
    order = np.random.default_rng(0).permutation(len(pkts))
    gs = GroundStation()
    for i in order:
        gs.receive(pkts[i])
    for i in order[:5]:
        assert not gs.receive(pkts[i])  # duplicate
    assert gs.complete() == [("sparse", 1, 0)]
    rep = gs.finish()
    f = rep["products"]["frame_1"]
    assert f["packets_expected"] == f["packets_received"] == len(pkts) and f["packets_lost"] == 0
    assert rep["stream"]["duplicates"] == 5
    assert rep["stream"]["sequence"]["sparse"]["missing"] == 0
    got = gs.images[1]
    want = img.astype(np.float32) / 255
    np.testing.assert_allclose(got[m], want[m], atol=1e-7)


def test_lost_packet_removes_only_its_pixels_and_is_reported() -> None:
    _, m, fr = frame()
    pkts = packetise(fr, config=WireConfig(200))
    drop = {2, 3, 7}
    gs = GroundStation()
    for i, p in enumerate(pkts):
        if i not in drop:
            gs.receive(p)
    rep = gs.finish()
    f = rep["products"]["frame_1"]
    assert f["packets_lost"] == 3 and f["packets_received"] == len(pkts) - 3
    res_known = gs.images[1] > 0  # unfilled: unknown pixels stay 0
    lost_pixels = 0
    r = Receiver()
    for i in sorted(drop):
        q = r.receive(pkts[i])
        assert q is not None
        lost_pixels += q.header["n"]
    assert f["pixels_received"] == int(m.sum()) - lost_pixels
    assert res_known.any(axis=2).sum() <= f["pixels_received"]
    assert rep["stream"]["sequence"]["sparse"]["missing_ranges"] == [[2, 3], [7, 7]]


def test_gaps_detected_across_sequence_wrap() -> None:
    ctr = SequenceCounters({APIDS["sparse"]: SEQ_MODULO - 4})
    pkts = []
    for fid in range(3):
        pkts += packetise(frame(fid)[2], config=WireConfig(300), counters=ctr)
    assert len(pkts) > 8
    drop = {2, 3, 4, 6}  # counts 16382, 16383, 0 and 2
    r = Receiver()
    for i in reversed(range(len(pkts))):  # reversed arrival as well
        if i not in drop:
            r.receive(pkts[i])
    seq = r.stream_report()["sequence"]["sparse"]
    assert seq["missing"] == 4
    assert seq["missing_ranges"] == [[16382, 0], [2, 2]]


def test_whole_frame_lost_at_the_end_is_a_gap_from_part_counts() -> None:
    pk = packetise(frame(1)[2], config=WireConfig(300))
    r = Receiver()
    for p in pk[:-2]:
        r.receive(p)
    assert r.stream_report()["sequence"]["sparse"]["missing"] == 2  # known from parts, beyond the last count


def test_seq_tracker_unwrap() -> None:
    t = SeqTracker()
    assert [t.unwrap(s) for s in (16380, 16383, 1, 0, 5)] == [16380, 16383, 16385, 16384, 16389]


def test_corrupt_packets_are_counted_per_frame() -> None:
    pkts = packetise(frame()[2], config=WireConfig(200))
    bad = bytearray(pkts[4])
    bad[40] ^= 0x01
    gs = GroundStation()
    for i, p in enumerate(pkts):
        gs.receive(bytes(bad) if i == 4 else p)
    f = gs.finish()["products"]["frame_1"]
    assert (f["packets_corrupt"], f["packets_lost"], f["packets_received"]) == (1, 0, len(pkts) - 1)
    assert gs.receiver.rejected["crc"] == 1


def test_majority_header_wins_over_an_impostor() -> None:
    _, _, fr = frame()
    pkts = packetise(fr, config=WireConfig(200))
    _, _, other = frame(seed=10)  # same frame id, different seed: a conflicting header
    imp = packetise(other, config=WireConfig(200))[0]
    r = Receiver()
    r.receive(imp)
    for p in pkts:
        r.receive(p)
    asm = r.products[("sparse", 1, 0)]
    assert asm.header["seed"] == 9 and asm.inconsistent == 1 and len(asm.pieces) == len(pkts)


def test_lossy_link_end_to_end_with_inpainting(tmp_path: Path) -> None:
    pytest.importorskip("cv2")
    from edgeae.ground.station import make_filler

    y, x = np.mgrid[0:96, 0:128]
    img = np.stack([x * 2, y * 2, (x + y)], axis=2).astype(np.uint8)
    m = make_mask(3, (96, 128), 0.1)
    fr = SparseFrame(5, 96, 128, 3, 8, 0.1, "uniform", 3, 1, img[m])
    ctr = SequenceCounters()
    pkts = packetise(fr, config=WireConfig(256), counters=ctr)
    pkts += packetise(TelemetryRecord(5, json.dumps({"t": 1}).encode()), counters=ctr)
    out, _ = simulate(pkts, LinkConfig(seed=1, loss=0.1, ber=2e-5, duplicate=0.05, reorder=0.2))
    fill, name = make_filler(None, "telea")
    gs = GroundStation(out=tmp_path, fill=fill, fill_name=name, originals={5: img.astype(np.float32) / 255})
    for _, p in out:
        gs.receive(p)
    rep = gs.finish()
    f = rep["products"]["frame_5"]
    assert f["packets_lost"] + f["packets_corrupt"] == len(pkts) - 1 - f["packets_received"]
    assert f["psnr"] > 25  # a smooth ramp inpaints well even with packets missing
    for name in ("frame_5.png", "frame_5_valid.png", "frame_5.json", "stream.json"):
        assert (tmp_path / name).is_file()


def test_downlink_frame_pipeline() -> None:
    from edgeae.ground.pipeline import downlink_frame

    y, x = np.mgrid[0:64, 0:96]
    s = np.stack([x * 2, y * 3, x + y], axis=2).astype(np.uint8)
    perfect = downlink_frame(s, 8, keep=0.2, seed=1, wire=WireConfig(256))
    lossy = downlink_frame(s, 8, keep=0.2, seed=1, wire=WireConfig(256), link=LinkConfig(seed=3, loss=0.3))
    assert perfect.report["pixel_fraction_received"] == 1.0
    assert perfect.known.sum() == make_mask(1, (64, 96), 0.2).sum()
    assert 0.4 < lossy.report["pixel_fraction_received"] < 0.95
    assert lossy.link.lost_packets == lossy.packets - lossy.report["packets_received"]
    gone = downlink_frame(s, 8, link=LinkConfig(loss=1.0))
    assert gone.report["frame_lost"] and gone.recon.shape == s.shape


def test_what_the_fill_did_reaches_the_frame_report() -> None:
    """A fill's notes (the adaptation step kept, a cross-check that fell back) land in the frame's report."""
    from edgeae.ground.pipeline import downlink_frame

    def fill(image: np.ndarray, known: np.ndarray, notes: dict | None = None) -> np.ndarray:
        if notes is not None:
            notes["adapt"] = {"steps": 3, "chosen_step": 1}
            notes["cross_check_error"] = "simulated"
        return image

    s = (np.arange(48 * 64 * 3).reshape(48, 64, 3) % 251).astype(np.uint8)
    rep = downlink_frame(s, 8, keep=0.2, seed=1, fill=fill, fill_name="test").report
    assert rep["adapt"] == {"steps": 3, "chosen_step": 1} and rep["cross_check_error"] == "simulated"
    assert "adapt" not in downlink_frame(s, 8, keep=0.2, seed=1).report


def test_latent_frame_decoded_with_a_decoder(tmp_path: Path) -> None:
    """Latents travel, a lost packet zeroes its elements, the decoder output is blended over the tiling."""
    from edgeae.tiling import tile_positions
    from edgeae.wire.products import LatentFrame

    h, w, tile = 40, 56, 16
    pos = tile_positions(h, w, tile, tile)
    rows, cols = len({y for y, _ in pos}), len({x for _, x in pos})
    lat = np.arange(len(pos) * 3 * 4 * 4).reshape(len(pos), 3, 4, 4) % 100

    def decoder(z: np.ndarray) -> np.ndarray:  # (N, 3, 4, 4) -> (N, 3, 16, 16): nearest upsampling / 100
        return np.repeat(np.repeat(z, 4, axis=2), 4, axis=3) / 100.0

    fr = LatentFrame(4, "enc01", h, w, 3, tile, tile, rows, cols, 0.5, "int8", (lat * 2).astype(np.int8))
    pkts = packetise(fr, config=WireConfig(256))
    assert len(pkts) >= 3
    gs = GroundStation(out=tmp_path, decoder=decoder)
    for p in pkts[:-1]:
        gs.receive(p)
    rep = gs.finish()["products"]["latent_4"]
    assert rep["encoder_id"] == "enc01" and rep["packets_lost"] == 1
    assert rep["tiles_complete"] == len(pos) - 1
    img = gs.images[4]
    assert img.shape == (h, w, 3)
    y, x = pos[0]
    np.testing.assert_allclose(
        img[y : y + tile, x : x + tile], decoder(lat[:1].astype(float))[0].transpose(1, 2, 0), atol=1e-5
    )
    assert (tmp_path / "latent_4.png").is_file()


def test_encode_latents_and_downlink() -> None:
    from edgeae.ground.pipeline import downlink_latents, encode_latents
    from edgeae.ground.sources import as_float

    def enc(x: np.ndarray) -> np.ndarray:  # (N, 3, 32, 32) -> (N, 3, 8, 8): 4x4 average pooling
        return x.reshape(x.shape[0], 3, 8, 4, 8, 4).mean(axis=(3, 5))

    def dec(z: np.ndarray) -> np.ndarray:
        return np.repeat(np.repeat(z, 4, axis=2), 4, axis=3)

    y, x = np.mgrid[0:70, 0:90]
    s = np.stack([x * 2, y * 3, x + y], axis=2).astype(np.uint8)
    fr = encode_latents(s, 8, enc, tile=32, frame_id=3, input_keep=1.0)  # a stand-in encoder: the whole tile
    assert fr.latents.dtype == np.int8 and fr.latents.shape == (9, 3, 8, 8) and (fr.grid_rows, fr.grid_cols) == (3, 3)
    rep, img, nbytes = downlink_latents(fr, dec, original=as_float(s, 8))
    assert img is not None and img.shape == s.shape and nbytes < s.nbytes / 4
    assert rep["psnr"] > 30  # a smooth ramp survives 4x pooling and int8 quantisation

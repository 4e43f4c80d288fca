"""Session 36 (f4): the ground's memory check of a sparse frame runs on what was received. A frame none of whose
received pieces carries a sample is reported as not received (or as sampling none), one none of whose pieces fits
its mask as a decode failure, whatever its size; only a frame that may be built is checked for memory, before its
mask is made whole and its frame-size arrays allocated (and before any of its mask is hashed: test_ground_s36_h1.py).
Before, a huge frame that came out "not received" was refused as ``memory`` on a small machine (the check ran before
the decode's accounting)."""

from __future__ import annotations

import numpy as np
import pytest

from edgeae.ground import limits, sparse_mask
from edgeae.ground.station import GroundStation
from edgeae.masks import make_mask
from edgeae.wire.layout import SPARSE_V2, WireConfig
from edgeae.wire.packets import SequenceCounters, build_packet, packetise
from edgeae.wire.parse import parse_packet
from edgeae.wire.products import AnomalyPatch, SparseFrame

# layout 2, 16384 x 16384 grey, keep 1e-7, seed 5 (tests/test_ground_s35.py): the product header and its packet id
AUDIT_PACKET = bytes.fromhex(
    "0100c000003f02000000000900000001000040000000400001083e7ad7f29abcaf48010000000000000005010000000000004000000000"
    "000001000100000001000000002e01"
)
SMALL_MACHINE = 1 << 30  # 1 GiB available; a 16384 x 16384 grey frame needs ~9 GiB to rebuild with any fill


def _huge_packet(row1: int) -> bytes:
    """One layout-2 packet of the 16384 x 16384 frame 9: a band of rows [0, row1) claiming no kept pixel, carrying
    no sample (row 0 keeps none, so [0, 1) fits; the mask's first kept pixel is in row 1,663, so [0, 2048) does not)."""
    body = AUDIT_PACKET[6:-2]
    # height, width, channels, bits, keep, pattern, seed, prng, row0, row1, n_band, seg, parts, index, step, n
    fields = (16384, 16384, 1, 8, 1e-7, 1, 5, 1, 0, row1, 0, 1, 1, 0, 1, 0)
    return build_packet(((AUDIT_PACKET[0] << 8) | AUDIT_PACKET[1]) & 0x7FF, 0, body[:10] + SPARSE_V2.pack(*fields))


@pytest.fixture
def small_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "available_memory", lambda: SMALL_MACHINE)


@pytest.fixture
def no_whole_mask(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a frame's mask is made whole (the decode's first frame-size step, then its arrays)."""

    def full(self: sparse_mask.FrameMask) -> np.ndarray:
        raise AssertionError(f"the whole {self.shape} mask was made")

    monkeypatch.setattr(sparse_mask.FrameMask, "full", full)


def _decode(packets: list[bytes], name: str) -> tuple[dict, dict]:
    gs = GroundStation()
    for p in packets:
        gs.receive(p)
    return gs.finish(write=False)["products"][name], gs.report()["stream"]


@pytest.mark.usefixtures("small_machine", "no_whole_mask")
def test_a_huge_frame_with_no_sample_received_is_not_received_not_refused_for_memory() -> None:
    assert limits.rebuild_bytes(16384, 16384, 1, "none", model_loaded=True) * limits.MEMORY_MARGIN > SMALL_MACHINE
    rep, stream = _decode([_huge_packet(1)], "frame_9")
    assert "error" not in rep and rep["not_received"] is True and rep["pixels_known"] == 0, rep
    assert "nothing to rebuild, no image written" in rep["image_note"]
    assert stream["products_failed"] == {} and stream["frames_not_received"] == 1


@pytest.mark.usefixtures("small_machine", "no_whole_mask")
def test_a_huge_frame_none_of_whose_pieces_fits_is_a_decode_failure_not_memory() -> None:
    rep, stream = _decode([_huge_packet(2048)], "frame_9")
    assert rep["error_reason"] == "decode", rep
    assert "none of the 1 pieces received fits the frame's sample mask" in rep["error"]
    assert stream["products_failed"] == {"decode": 1}


def test_a_frame_that_sampled_none_is_said_so_on_a_machine_with_no_room(
    monkeypatch: pytest.MonkeyPatch, no_whole_mask: None
) -> None:
    monkeypatch.setattr(limits, "available_memory", lambda: 1 << 10)
    mask = make_mask(5, (64, 40), 1e-9, "uniform")
    assert not mask.any()
    frame = SparseFrame(4, 64, 40, 1, 8, 1e-9, "uniform", 5, 1, np.zeros((0, 1), np.uint8))
    rep, stream = _decode(packetise(frame, config=WireConfig(256, band_rows=16)), "frame_4")
    assert "error" not in rep and rep["pixels_sent"] == 0 and "not_received" not in rep, rep
    assert "its sample mask keeps no pixel" in rep["image_note"] and stream["products_failed"] == {}


def test_a_frame_with_samples_is_still_refused_for_memory_before_its_arrays_are_made(
    monkeypatch: pytest.MonkeyPatch, no_whole_mask: None
) -> None:
    monkeypatch.setattr(limits, "available_memory", lambda: 1 << 10)
    mask = make_mask(11, (96, 50), 0.3, "uniform")
    img = (np.arange(96 * 50).reshape(96, 50, 1) % 251).astype(np.uint8)
    frame = SparseFrame(4, 96, 50, 1, 8, 0.3, "uniform", 11, 1, img[mask])
    rep, stream = _decode(packetise(frame, config=WireConfig(256, band_rows=16)), "frame_4")
    assert rep["error_reason"] == "memory" and "sparse frame 4: 96x50x1 needs about" in rep["error"], rep
    assert stream["products_failed"] == {"memory": 1}


def test_a_frame_built_only_for_its_patch_is_checked_for_memory(
    monkeypatch: pytest.MonkeyPatch, no_whole_mask: None
) -> None:
    """No sample arrived but an anomaly patch that can be pasted did: the frame would be built, so it is checked."""
    monkeypatch.setattr(limits, "available_memory", lambda: 1 << 10)
    h, w, keep, seed = 64, 300, 0.001, 3
    mask = make_mask(seed, (h, w), keep, "uniform")
    img = (np.arange(h * w).reshape(h, w, 1) % 251).astype(np.uint8)
    ctr = SequenceCounters()
    frame = SparseFrame(4, h, w, 1, 8, keep, "uniform", seed, 1, img[mask])
    sent = packetise(frame, config=WireConfig(256, band_rows=4), counters=ctr)
    empty = [p for p in sent if parse_packet(p).samples.shape[0] == 0]
    patch = packetise(AnomalyPatch(4, 8, 8, 16, 3.5, img[8:24, 8:24]), config=WireConfig(256), counters=ctr)
    rep, stream = _decode(empty[:1] + patch, "frame_4")
    assert rep["error_reason"] == "memory", rep
    assert stream["products_failed"] == {"memory": 1}

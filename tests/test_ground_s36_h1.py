"""Session 36 (h1, review r1 #1-2): a sparse frame that may be built (a received piece carries a sample, or an
anomaly patch of it can be pasted) is checked for memory before any of its mask is hashed. Since 1ecdcb6 the
pieces' checks ran first: a frame whose pieces claim every row had its whole mask generated (256 MiB and 1.5 s for a
16384 x 16384 frame) before it was refused as ``memory``. The fixture here fails a test as soon as any mask row is
hashed (the f4 tests watched only ``FrameMask.full``, which the pieces' checks do not call)."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from edgeae.ground import limits, sparse_mask
from edgeae.ground.station import GroundStation
from edgeae.masks import make_mask
from edgeae.wire.layout import SPARSE_V2, WireConfig
from edgeae.wire.packets import build_packet, packetise
from edgeae.wire.parse import parse_packet
from edgeae.wire.products import SparseFrame

# layout 2, 16384 x 16384 grey, keep 1e-7, seed 5 (tests/test_ground_s35.py, _s36_f4.py): product header, packet id
AUDIT_PACKET = bytes.fromhex(
    "0100c000003f02000000000900000001000040000000400001083e7ad7f29abcaf48010000000000000005010000000000004000000000"
    "000001000100000001000000002e01"
)
SMALL_MACHINE = 1 << 30  # 1 GiB available; a 16384 x 16384 grey frame needs ~9 GiB to rebuild with any fill


def no_mask_hashed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if any row of a frame's mask is generated (every strip goes through ``make_mask_rows``)."""

    def rows(seed: int, shape: tuple[int, int], *args: object, **kw: object) -> np.ndarray:
        raise AssertionError(f"the mask of a {shape} frame was hashed")

    monkeypatch.setattr(sparse_mask, "make_mask_rows", rows)


def no_room(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "available_memory", lambda: 1 << 10)


@pytest.fixture(name="no_mask_hashed")
def _no_mask_hashed(monkeypatch: pytest.MonkeyPatch) -> None:
    no_mask_hashed(monkeypatch)


@pytest.fixture(name="no_room")
def _no_room(monkeypatch: pytest.MonkeyPatch) -> None:
    no_room(monkeypatch)


def _decode(packets: list[bytes], name: str) -> tuple[dict, dict]:
    gs = GroundStation()
    for p in packets:
        gs.receive(p)
    return gs.finish(write=False)["products"][name], gs.report()["stream"]


def _frame() -> SparseFrame:
    """A 96 x 50 grey frame at keep 0.3, seed 11."""
    mask = make_mask(11, (96, 50), 0.3, "uniform")
    img = (np.arange(96 * 50).reshape(96, 50, 1) % 251).astype(np.uint8)
    return SparseFrame(4, 96, 50, 1, 8, 0.3, "uniform", 11, 1, img[mask])


def _with_seed(packet: bytes, seed: int) -> bytes:
    """A layout-2 sparse packet with its header's mask seed replaced (its CRC made anew)."""
    at = 10 + struct.calcsize(">IIBBdB")  # in the body: the product header, then height ... pattern, then the seed
    apid, count = int.from_bytes(packet[:2], "big") & 0x7FF, int.from_bytes(packet[2:4], "big") & 0x3FFF
    body = packet[6:-2]
    return build_packet(apid, count, body[:at] + seed.to_bytes(8, "big") + body[at + 8 :])


@pytest.mark.usefixtures("no_room", "no_mask_hashed")
@pytest.mark.parametrize("cfg", [WireConfig(256, band_rows=16), WireConfig(256, layout=1)], ids=["layout2", "layout1"])
def test_a_whole_frame_is_refused_for_memory_before_any_of_its_mask_is_hashed(cfg: WireConfig) -> None:
    rep, stream = _decode(packetise(_frame(), config=cfg), "frame_4")
    assert rep["error_reason"] == "memory" and "sparse frame 4: 96x50x1 needs about" in rep["error"], rep
    assert stream["products_failed"] == {"memory": 1}


@pytest.mark.usefixtures("no_mask_hashed")
def test_a_huge_frame_whose_piece_claims_every_row_is_refused_for_memory_unhashed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Review r1's case, in one packet: a band of all 16,384 rows of frame 9 (keep 1e-7) with its 27 samples, a
    claim its rows can hold; checking it hashed the whole 2^28-pixel mask before the memory refusal."""
    monkeypatch.setattr(limits, "available_memory", lambda: SMALL_MACHINE)
    body = AUDIT_PACKET[6:-2]
    # height, width, channels, bits, keep, pattern, seed, prng, row0, row1, n_band, seg, parts, index, step, n
    fields = (16384, 16384, 1, 8, 1e-7, 1, 5, 1, 0, 16384, 27, 1, 1, 0, 1, 27)
    apid = ((AUDIT_PACKET[0] << 8) | AUDIT_PACKET[1]) & 0x7FF
    packet = build_packet(apid, 0, body[:10] + SPARSE_V2.pack(*fields) + bytes(range(27)))
    rep, stream = _decode([packet], "frame_9")
    assert rep["error_reason"] == "memory" and "sparse frame 9: 16384x16384x1 needs about" in rep["error"], rep
    assert stream["products_failed"] == {"memory": 1}


def test_a_frame_whose_sample_pieces_do_not_fit_is_refused_for_memory_unhashed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The documented trade-off: whether pieces carrying samples fit the mask is known only by hashing it, so on a
    machine without room for the frame it is refused as ``memory`` (as before session 36); with room, ``decode``."""
    sent = [_with_seed(p, 12) for p in packetise(_frame(), config=WireConfig(256, band_rows=16))]
    assert parse_packet(sent[0]).header["seed"] == 12
    no_room(monkeypatch)
    no_mask_hashed(monkeypatch)
    rep, stream = _decode(sent, "frame_4")
    assert rep["error_reason"] == "memory", rep
    assert stream["products_failed"] == {"memory": 1}
    monkeypatch.undo()
    rep, stream = _decode(sent, "frame_4")
    assert rep["error_reason"] == "decode" and "fits the frame's sample mask" in rep["error"], rep


def test_with_room_the_frame_is_rebuilt_from_every_sample() -> None:
    rep, stream = _decode(packetise(_frame(), config=WireConfig(256, band_rows=16)), "frame_4")
    assert "error" not in rep and rep["pixels_received"] == rep["pixels_sent"] == len(_frame().values), rep
    assert stream["products_failed"] == {}

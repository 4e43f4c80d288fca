"""Ground fixes of session 35: a sparse piece that cannot fit its mask is refused before the rest of the frame's mask
and its float image are made (audit a3 #5), and ``products not rebuilt`` prints its counts as words (a3 #6)."""

from __future__ import annotations

import numpy as np
import pytest

import edgeae.masks as masks_mod
from edgeae.ground import decode, sparse_mask
from edgeae.ground.decode import DecodeError, decode_sparse
from edgeae.ground.reassembly import Receiver
from edgeae.ground.station import GroundStation
from edgeae.masks import make_mask
from edgeae.wire.layout import WireConfig
from edgeae.wire.packets import packetise
from edgeae.wire.products import SparseFrame

# audit a3 #5: layout 2, 16384 x 16384 grey (max_frame_pixels), keep 1e-7, seed 5, one band of every row claiming no
# kept pixel, its one packet carrying none; the mask keeps its first pixel in row 1,663
AUDIT_PACKET = bytes.fromhex(
    "0100c000003f02000000000900000001000040000000400001083e7ad7f29abcaf48010000000000000005010000000000004000000000"
    "000001000100000001000000002e01"
)


@pytest.fixture
def rows_hashed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Rows of the uniform mask generated, one entry per call (however the decode reaches the generator)."""
    seen: list[int] = []
    real = masks_mod._uniform_rows

    def spy(key: int, w: int, keep: float, row0: int, row1: int, out: np.ndarray | None = None) -> np.ndarray:
        seen.append(row1 - row0)
        return real(key, w, keep, row0, row1, out)

    monkeypatch.setattr(masks_mod, "_uniform_rows", spy)
    return seen


def test_the_audit_packet_is_refused_before_its_mask_and_image_are_made(
    rows_hashed: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """It cost 20 s and 1.3 GB: the whole mask (268 M pixels) and the frame's float image were made first."""

    def no_image(self: decode.SparseResult) -> np.ndarray:
        raise AssertionError("the float image of a frame with nothing to rebuild was made")

    monkeypatch.setattr(decode.SparseResult, "as_float", no_image)
    gs = GroundStation()
    gs.receive(AUDIT_PACKET)
    rep = gs.decode()["frame_9"]
    assert rep["error_reason"] == "decode", rep
    assert "none of the 1 pieces received fits the frame's sample mask" in rep["error"]
    assert 0 < sum(rows_hashed) <= 2048  # the strips down to the first kept pixel, not 16,384 rows


def _frame(h: int = 96, w: int = 50, keep: float = 0.3, seed: int = 11) -> tuple[SparseFrame, np.ndarray, np.ndarray]:
    mask = make_mask(seed, (h, w), keep, "uniform")
    img = (np.arange(h * w).reshape(h, w, 1) % 251).astype(np.uint8)
    return SparseFrame(4, h, w, 1, 8, keep, "uniform", seed, 1, img[mask]), mask, img


def _assembly(frame: SparseFrame, cfg: WireConfig):
    rx = Receiver()
    for p in packetise(frame, config=cfg):
        rx.receive(p)
    (asm,) = rx.products.values()
    return asm


@pytest.mark.parametrize(
    "cfg", [WireConfig(256, band_rows=16), WireConfig(256, band_rows=0), WireConfig(256, layout=1)]
)
def test_a_good_frame_hashes_each_row_once_and_decodes_as_before(
    cfg: WireConfig, rows_hashed: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sparse_mask, "STRIP_PIXELS", 50 * 7)  # 7-row strips: bands and rectangles cross them
    frame, mask, img = _frame()
    asm = _assembly(frame, cfg)
    rows_hashed.clear()  # the sender's own
    res = decode_sparse(asm)
    assert sum(rows_hashed) == frame.height and res.pieces_bad == 0
    assert np.array_equal(res.mask, mask) and np.array_equal(res.known, mask)
    assert np.array_equal(res.samples[mask], img[mask])


def test_a_frame_no_piece_of_which_fits_is_refused_by_the_decode_itself(rows_hashed: list[int]) -> None:
    """Every band claims the count of another keep's mask: at most the frame's rows are hashed, once, and the
    DecodeError comes from decode_sparse (before it, budget_downlink and rebuild got a black frame's arrays)."""
    frame, _, _ = _frame()
    asm = _assembly(frame, WireConfig(256, band_rows=16))
    for group in asm.groups.values():
        for pkt in group.values():
            pkt.header["keep"] = 0.9  # every band's mask now keeps about three times the pixels its pieces claim
    rows_hashed.clear()  # the sender's own
    with pytest.raises(DecodeError, match=r"frame 4: none of the \d+ pieces received fits the frame's sample mask"):
        decode_sparse(asm)
    assert sum(rows_hashed) <= frame.height


def test_a_band_that_fits_is_placed_beside_one_that_does_not(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sparse_mask, "STRIP_PIXELS", 50 * 5)
    frame, mask, img = _frame()
    asm = _assembly(frame, WireConfig(256, band_rows=32))
    bad = [pkt for group in asm.groups.values() for pkt in group.values() if pkt.header["row0"] == 32]
    for pkt in bad:
        pkt.header["n_band"] += 1  # the band from row 32 now claims one kept pixel more than its rows hold
    res = decode_sparse(asm.snapshot())
    assert res.pieces_bad == len(bad) > 0
    assert np.array_equal(res.mask, mask)
    assert not res.known[32:64].any() and not res.covered[32:64].any()
    keep_rows = np.r_[0:32, 64:96]
    assert np.array_equal(res.known[keep_rows], mask[keep_rows])
    assert np.array_equal(res.samples[keep_rows][mask[keep_rows]], img[keep_rows][mask[keep_rows]])


def test_frame_mask_counts_stop_past_their_limit_and_match_the_full_mask(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sparse_mask, "STRIP_PIXELS", 40 * 3)
    for pattern in ("uniform", "jittered"):
        full = make_mask(7, (50, 40), 0.2, pattern)
        fm = sparse_mask.FrameMask(7, (50, 40), 0.2, pattern)
        want = int(full[5:31, 4:33].sum())
        assert fm.count(5, 31, 4, 33, want) == want
        assert want < fm.count(0, 50, 0, 40, want - 1) <= int(full.sum())  # stopped once past the limit
        assert np.array_equal(fm.full(), full), pattern


def test_products_not_rebuilt_prints_its_counts_as_words(capsys: pytest.CaptureFixture[str]) -> None:
    from edgeae.cli.ground_output import print_report

    stream = {
        "packets_received": 4, "packets_accepted": 4, "duplicates": 0, "rejected": {}, "sequence": {},
        "products_failed": {"decode": 1, "no_decoder": 2},
    }  # fmt: skip
    print_report({"stream": stream, "products": {}})
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("products not rebuilt")]
    assert lines == ["products not rebuilt: decode 1, no_decoder 2"]

"""Ground fixes of session 35: a sparse piece that cannot fit its mask is refused before the rest of the frame's mask
and its float image are made (audit a3 #5), and ``products not rebuilt`` prints its counts as words (a3 #6)."""

from __future__ import annotations

import numpy as np
import pytest

import edgeae.masks as masks_mod
from edgeae.ground import decode, sparse_mask
from edgeae.ground.decode import DecodeError, NothingReceived, decode_sparse
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


# ------------------------------------------------------------------ review r1 of 51a78ec (session 35, g1)
def _sparse_v2_packet(fields: tuple, samples: bytes) -> bytes:
    """A layout-2 sparse packet of frame 9 (the audit packet's product header) with these SPARSE_V2 ``fields``."""
    from edgeae.wire.layout import SPARSE_V2
    from edgeae.wire.packets import build_packet

    body = AUDIT_PACKET[6:-2]
    return build_packet(
        ((AUDIT_PACKET[0] << 8) | AUDIT_PACKET[1]) & 0x7FF, 0, body[:10] + SPARSE_V2.pack(*fields) + samples
    )


def test_a_packet_whose_empty_band_fits_is_reported_not_received_before_its_mask_and_image_are_made(
    rows_hashed: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The audit packet with its band cut to row 0, which keeps no pixel (so it fits, carrying no sample), was a
    product of 0 pixels known rebuilt at 16384 x 16384 (12 s, 1.3 GB); then (2770946) a decode failure found by
    hashing the mask down to its first kept pixel; now a frame not received, found from row 0's strip alone."""

    def no_full(self: sparse_mask.FrameMask) -> np.ndarray:
        raise AssertionError("the whole mask of a frame with nothing to rebuild was made")

    monkeypatch.setattr(sparse_mask.FrameMask, "full", no_full)
    # height, width, channels, bits, keep, pattern, seed, prng, row0, row1, n_band, seg, parts, index, step, n
    pkt = _sparse_v2_packet((16384, 16384, 1, 8, 1e-7, 1, 5, 1, 0, 1, 0, 1, 1, 0, 1, 0), b"")
    gs = GroundStation()
    gs.receive(pkt)
    rep = gs.decode()["frame_9"]
    assert "error" not in rep and rep["not_received"] is True and rep["pixels_known"] == 0, rep
    assert rep["image_note"] == (
        "frame 9: none of the 1 pieces received carries a sample (its samples, if it sampled any, were in pieces "
        "not received): nothing to rebuild, no image written"
    )
    assert 0 < sum(rows_hashed) <= 256  # row 0's strip (256 rows of 16,384), not down to the first kept pixel
    assert gs.report()["stream"]["products_failed"] == {} and gs.report()["stream"]["frames_not_received"] == 1


def test_received_pieces_that_fit_but_carry_no_sample_are_not_received_in_layout_1_too() -> None:
    """One rectangle received, of a pixel the mask does not keep (it fits, n = 0), the rest lost: not a black frame
    rebuilt of 0 pixels known but a frame not received (:class:`NothingReceived`)."""
    import dataclasses

    frame, mask, _ = _frame()
    asm = _assembly(frame, WireConfig(128, layout=1))
    (k, pkt), *_ = asm.pieces.items()
    ys, xs = np.nonzero(~mask)
    r, col = int(ys[0]), int(xs[0])
    header = {**pkt.header, "row0": r, "row1": r + 1, "col0": col, "col1": col + 1, "n": 0}
    asm.pieces.clear()
    asm.pieces[k] = dataclasses.replace(pkt, header=header, samples=pkt.samples[:0])
    with pytest.raises(NothingReceived, match=r"frame 4: none of the 1 pieces received carries a sample") as got:
        decode_sparse(asm)
    assert not got.value.sampled_none


def test_a_frame_whose_whole_mask_keeps_no_pixel_sampled_none_and_is_rebuilt_only_for_its_patches() -> None:
    frame, mask, _ = _frame(h=5, w=4, keep=0.001)
    assert not mask.any()
    with pytest.raises(NothingReceived, match="its sample mask keeps no pixel") as got:
        decode_sparse(_assembly(frame, WireConfig(256)))
    assert got.value.sampled_none
    res = decode_sparse(_assembly(frame, WireConfig(256)), rebuild_empty=True)
    assert res.pieces_bad == 0 and not res.mask.any() and res.samples.shape == (5, 4, 1)


@pytest.mark.parametrize(
    ("pattern", "keep", "n_band"),
    [("uniform", 1e-3, 6_000), ("uniform", 1e-3, 2_500), ("jittered", 1e-3, 4_300), ("jittered", 1e-3, 4_000)],
)
def test_a_claim_the_rows_cannot_plausibly_hold_is_refused_unhashed(
    pattern: str, keep: float, n_band: int, rows_hashed: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A band of every row of a 2048 x 2048 frame (uniform: ~4,194 kept, σ 65; jittered: 65 x 65 cells, one each)
    claiming what it cannot hold: before, every strip was hashed to find the count short or long."""
    seen: list[int] = []
    real = masks_mod._jittered_points

    def spy(key: int, h: int, w: int, keep: float, row0: int, row1: int):  # type: ignore[no-untyped-def]
        seen.append(row1 - row0)
        return real(key, h, w, keep, row0, row1)

    monkeypatch.setattr(masks_mod, "_jittered_points", spy)
    code = {"uniform": 1, "jittered": 2}[pattern]
    gs = GroundStation()
    gs.receive(_sparse_v2_packet((2048, 2048, 1, 8, keep, code, 5, 1, 0, 2048, n_band, 1, n_band, 0, 1, 1), b"\x07"))
    rep = gs.decode()["frame_9"]
    assert rep["error_reason"] == "decode" and "none of the 1 pieces received fits" in rep["error"], rep
    assert rows_hashed == [] and seen == []


def test_claim_bounds_hold_every_true_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """Random rectangles of random masks: the true count lies in the bounds; a jittered frame's are exact."""
    rng = np.random.default_rng(35)
    for trial in range(150):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        keep = float(rng.choice([1.0, 0.5, 0.05, 0.9, 1e-3, max(1e-6, rng.random())]))
        for pattern in ("uniform", "jittered"):
            full = make_mask(trial, (h, w), keep, pattern)
            fm = sparse_mask.FrameMask(trial, (h, w), keep, pattern)
            for _ in range(6):
                r0 = int(rng.integers(0, h))
                r1 = int(rng.integers(r0 + 1, h + 1))
                c0 = int(rng.integers(0, w))
                c1 = int(rng.integers(c0 + 1, w + 1))
                lo, hi = fm.claim_bounds(r0, r1, c0, c1)
                assert lo <= int(full[r0:r1, c0:c1].sum()) <= hi, (pattern, h, w, keep, r0, r1, c0, c1)
            if pattern == "jittered":
                assert fm.claim_bounds(0, h, 0, w) == (int(full.sum()),) * 2


@pytest.mark.parametrize("cfg", [WireConfig(256, band_rows=16), WireConfig(256, layout=1)])
def test_a_good_jittered_frame_decodes_whole(cfg: WireConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sparse_mask, "STRIP_PIXELS", 50 * 7)
    h, w, keep = 96, 50, 0.3
    mask = make_mask(11, (h, w), keep, "jittered")
    img = (np.arange(h * w).reshape(h, w, 1) % 251).astype(np.uint8)
    res = decode_sparse(_assembly(SparseFrame(4, h, w, 1, 8, keep, "jittered", 11, 1, img[mask]), cfg))
    assert res.pieces_bad == 0 and np.array_equal(res.known, mask)
    assert np.array_equal(res.samples[mask], img[mask])


def test_budget_receive_takes_a_refused_sparse_frame_as_not_received() -> None:
    """A corrupted sparse packet that passes the CRC (a link file's ber) ended the whole science sweep (DecodeError
    out of receive): the frame is now lost, and counted."""
    from edgeae.ground.budget_downlink import Downlink, receive
    from edgeae.ground.feature_sets import LabelledFrame
    from edgeae.ground.link import LinkConfig

    frame = LabelledFrame("f", "s", np.zeros((8, 8, 1), np.uint8), 4, np.zeros((0, 2), int), "test")
    # a band of every row claiming 40 kept pixels (plausible at keep 0.5), carrying them; the mask keeps 30
    assert int(make_mask(5, (8, 8), 0.5, "uniform").sum()) != 40
    pkt = _sparse_v2_packet((8, 8, 1, 8, 0.5, 1, 5, 1, 0, 8, 40, 1, 1, 0, 1, 40), bytes(range(40)))
    got = receive(frame, Downlink("uniform", [pkt]), LinkConfig(), None)
    assert got.lost and got.sparse_refused == 1


def test_science_metrics_count_a_refused_sparse_frame() -> None:
    """The science table's per-frame metrics say when the decoder refused the frame's sparse samples."""
    from edgeae.ground.budget_downlink import Downlink, receive
    from edgeae.ground.feature_sets import LabelledFrame
    from edgeae.ground.link import LinkConfig
    from edgeae.ground.science import metrics

    frame = LabelledFrame("f", "s", np.zeros((8, 8, 1), np.uint8), 4, np.zeros((0, 2), int), "test")
    pkt = _sparse_v2_packet((8, 8, 1, 8, 0.5, 1, 5, 1, 0, 8, 40, 1, 1, 0, 1, 40), bytes(range(40)))
    got = receive(frame, Downlink("uniform", [pkt]), LinkConfig(), None)
    assert metrics(frame, got)["sparse_refused"] == 1


# ------------------------------------------------------------------ review r5 of 2770946 (session 35, g2)
def _lossy_pass(patch_channels: int = 1) -> tuple[list[bytes], list[bytes], np.ndarray]:
    """A 64 x 300 grey frame at keep 0.001 in 4-row bands (most keep no pixel: sent with no sample) and one 16 x 16
    anomaly patch at (8, 8): (the frame's packets that carry no sample, the patch's packets, the image)."""
    from edgeae.wire.packets import SequenceCounters
    from edgeae.wire.parse import parse_packet
    from edgeae.wire.products import AnomalyPatch

    h, w, keep, seed = 64, 300, 0.001, 3
    mask = make_mask(seed, (h, w), keep, "uniform")
    img = (np.arange(h * w).reshape(h, w, 1) % 251).astype(np.uint8)
    ctr = SequenceCounters()
    frame = packetise(
        SparseFrame(4, h, w, 1, 8, keep, "uniform", seed, 1, img[mask]),
        config=WireConfig(256, band_rows=4),
        counters=ctr,
    )
    pixels = np.repeat(img[8:24, 8:24], patch_channels, axis=2)
    patch = packetise(AnomalyPatch(4, 8, 8, 16, 3.5, pixels), config=WireConfig(256), counters=ctr)
    empty = [p for p in frame if parse_packet(p).samples.shape[0] == 0]
    assert 0 < len(empty) < len(frame) and mask.any()
    return empty, patch, img


def test_a_frame_whose_sample_packets_were_lost_is_rebuilt_from_its_patches(tmp_path, capsys) -> None:
    """The link lost every packet of the frame that carried a sample; one that carried none and its anomaly patch
    arrived. At 2770946 the frame failed (decode: the patch pixels were not written, exit status 1); before, and now,
    it is rebuilt with the patch pasted in."""
    import json

    from edgeae.cli import main
    from edgeae.wire.stream import write_packet_file

    empty, patch, img = _lossy_pass()
    rx = tmp_path / "rx.bin"
    write_packet_file(rx, [(float(i), p) for i, p in enumerate(empty[:1] + patch)])
    assert main(["ground", "decode", str(rx), "--out", str(tmp_path / "g")]) == 0
    rep = json.loads((tmp_path / "g" / "frame_4.json").read_text())
    assert "error" not in rep and "not_received" not in rep, rep
    assert rep["pixels_received"] == 0 and rep["patch_pixels_used"] == 256 and rep["pixels_known"] == 256
    stream = json.loads((tmp_path / "g" / "stream.json").read_text())["stream"]
    assert stream["products_failed"] == {} and "frames_not_received" not in stream
    from edgeae.imagedecode import decode_file

    out, _ = decode_file(tmp_path / "g" / "frame_4.png")
    assert np.array_equal(out.reshape(64, 300, -1)[8:24, 8:24, 0], img[8:24, 8:24, 0])
    assert "products not rebuilt" not in capsys.readouterr().out


def test_a_frame_with_no_sample_and_no_usable_patch_is_not_received_not_failed(tmp_path, capsys) -> None:
    """No sample and no patch (or only one that cannot be pasted: 3 channels into a grey frame): reported as not
    received, without an image or a frame-size array, not as a decode failure; exit status 0 (link losses)."""
    import json

    from edgeae.cli import main
    from edgeae.wire.stream import write_packet_file

    empty, patch, _ = _lossy_pass(patch_channels=3)
    for name, pkts in (("alone", empty[:2]), ("rgb_patch", empty[:1] + patch)):
        rx = tmp_path / f"{name}.bin"
        write_packet_file(rx, [(float(i), p) for i, p in enumerate(pkts)])
        out = tmp_path / name
        assert main(["ground", "decode", str(rx), "--out", str(out)]) == 0, name
        rep = json.loads((out / "frame_4.json").read_text())
        assert "error" not in rep and rep["not_received"] is True, rep
        assert rep["pixels_received"] == rep["pixels_known"] == 0
        assert rep["pixels_sent"] == int(make_mask(3, (64, 300), 0.001, "uniform").sum())  # one strip: mask known
        assert rep["pixel_fraction_received"] == 0.0 and "nothing to rebuild, no image written" in rep["image_note"]
        assert not list(out.glob("frame_4*.png"))
        stream = json.loads((out / "stream.json").read_text())["stream"]
        assert stream["products_failed"] == {} and stream["frames_not_received"] == 1
        if name == "rgb_patch":
            assert rep["patches_not_used"] == [{"patch": 0, "reason": "3 channel(s), the frame has 1"}]
        text = capsys.readouterr().out
        assert "nothing to rebuild, no image written" in text and "products not rebuilt" not in text
        assert "1 frame(s) not received: none of their packets that arrived carried a sample" in text


def test_a_patch_that_gives_no_pixel_after_all_leaves_the_frame_not_received() -> None:
    """A patch whose header allows pasting but whose pixels cannot be taken (over max_patch_elements): the frame
    was built for it, and is then reported as not received, the patch listed with its reason."""
    from edgeae.ground.limits import GroundLimits

    empty, patch, _ = _lossy_pass()
    gs = GroundStation(limits=GroundLimits(max_patch_elements=100))
    for p in empty[:1] + patch:
        gs.receive(p)
    rep = gs.finish()["products"]["frame_4"]
    assert "error" not in rep and rep["not_received"] is True and 4 not in gs.images, rep
    assert rep["pixels_sent"] == 20  # the mask was generated whole for the patch: its count is known
    assert rep["patches_not_used"][0]["patch"] == 0 and "max_patch_elements" in rep["patches_not_used"][0]["reason"]
    assert gs.report()["stream"]["products_failed"] == {"limit": 1}  # the patch itself, not the frame


@pytest.mark.parametrize("keep", [1e-7, 1e-12])
def test_an_empty_band_claim_costs_its_own_rows_whatever_the_keep(
    keep: float, rows_hashed: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review r5 #2: the empty band of row 0 with keep 1e-12 (the whole mask keeps nothing) made the decode hash
    the whole frame to prove it empty, then rebuild it at full size as "sampled none" (8192^2: 4.8 s, 364 MB): now
    only row 0's strip is hashed, and no frame-size array is made."""

    def no_image(self: decode.SparseResult) -> np.ndarray:
        raise AssertionError("the float image of a frame with nothing to rebuild was made")

    monkeypatch.setattr(decode.SparseResult, "as_float", no_image)
    pkt = _sparse_v2_packet((8192, 8192, 1, 8, keep, 1, 5, 1, 0, 1, 0, 1, 1, 0, 1, 0), b"")
    gs = GroundStation()
    gs.receive(pkt)
    rep = gs.decode()["frame_9"]
    assert "error" not in rep and rep["not_received"] is True, rep
    assert sum(rows_hashed) == 512  # row 0's strip of 512 rows, of 8,192


def test_a_frame_that_sampled_none_is_reported_without_frame_size_arrays(
    rows_hashed: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every piece received, all fitting with no sample, and the mask their checks generated keeps nothing: the
    frame sampled none (pixels_sent 0, no fraction), said from those strips, with no image made or written."""

    def no_image(self: decode.SparseResult) -> np.ndarray:
        raise AssertionError("the float image of a frame that sampled none was made")

    monkeypatch.setattr(decode.SparseResult, "as_float", no_image)
    monkeypatch.setattr(sparse_mask, "STRIP_PIXELS", 40 * 4)
    frame, mask, _ = _frame(h=64, w=40, keep=1e-9)
    assert not mask.any()
    gs = GroundStation()
    for p in packetise(frame, config=WireConfig(256, band_rows=16)):
        gs.receive(p)
    rows_hashed.clear()  # the sender's own
    rep = gs.finish()["products"]["frame_4"]
    assert rep["pixels_sent"] == 0 and rep["pixel_fraction_received"] is None and "not_received" not in rep, rep
    assert "its sample mask keeps no pixel" in rep["image_note"] and "error" not in rep
    assert sum(rows_hashed) == 64  # each row once, by the bands' own checks
    assert "frames_not_received" not in gs.report()["stream"] and gs.report()["stream"]["products_failed"] == {}


def test_budget_receive_takes_a_frame_with_no_sample_as_not_received_not_refused() -> None:
    """The science sweep: a frame whose sample packets were lost is link loss, not a refused (corrupted) frame; its
    patch still arrives."""
    from edgeae.ground.budget_downlink import Downlink, receive
    from edgeae.ground.feature_sets import LabelledFrame
    from edgeae.ground.link import LinkConfig

    empty, patch, img = _lossy_pass()
    frame = LabelledFrame("f", "s", img, 8, np.zeros((0, 2), int), "test")
    got = receive(frame, Downlink("uniform", empty[:1] + patch), LinkConfig(), None)
    assert got.sparse_refused == 0 and not got.lost and got.exact[8:24, 8:24].all()


# ------------------------------------------------------------------ review r8 of 9ea6a64 (session 35, g3)
def _sampled_none_seed(h: int, w: int, keep: float) -> int:
    """The first seed whose uniform (h, w) mask at ``keep`` keeps no pixel."""
    return next(s for s in range(200) if not make_mask(s, (h, w), keep, "uniform").any())


def test_downlink_frame_gives_a_frame_with_nothing_to_rebuild_as_mid_grey_with_its_psnr() -> None:
    """Review r8 #1: a frame that sampled no pixel (keep 1/1024 of 32 x 32), or whose sample packets the link all
    lost, was returned with no psnr (rebuilt False, no error), and benchmarks/link_comparison.py stopped on it
    ("not rebuilt: no error recorded"); now, like a lost frame, a mid-grey frame and its PSNR."""
    from edgeae.ground.link import LinkConfig
    from edgeae.ground.pipeline import downlink_frame
    from edgeae.metrics import psnr

    img = (np.arange(32 * 32).reshape(32, 32, 1) % 251).astype(np.uint8)
    grey = float(psnr(img.astype(np.float32) / 255, np.full(img.shape, 0.5, np.float32)))
    none = downlink_frame(img, 8, keep=1 / 1024, seed=_sampled_none_seed(32, 32, 1 / 1024))
    rep = none.report
    assert rep["psnr"] == pytest.approx(grey) and np.all(none.recon == 0.5) and not none.known.any(), rep
    assert rep["rebuilt"] is False and rep["frame_lost"] is False and "error" not in rep and "psnr_error" not in rep
    assert rep["pixels_sent"] == 0 and rep["pixel_fraction_received"] is None and "not_received" not in rep
    # 64 x 300 at keep 0.001 in 4-row bands: link seed 54 loses every packet that carried a sample, 4 others arrive
    img = (np.arange(64 * 300).reshape(64, 300, 1) % 251).astype(np.uint8)
    gone = downlink_frame(img, 8, keep=0.001, seed=3, wire=WireConfig(256, band_rows=4), link=LinkConfig(54, loss=0.6))
    rep = gone.report
    grey = float(psnr(img.astype(np.float32) / 255, np.full(img.shape, 0.5, np.float32)))
    assert rep["not_received"] is True and rep["packets_received"] == 4 and rep["frame_lost"] is False, rep
    assert rep["psnr"] == pytest.approx(grey) and rep["rebuilt"] is False and np.all(gone.recon == 0.5)
    # the link benchmark counts it among the lost frames (review r12: its mid-grey PSNR was averaged in, uncounted)
    import benchmarks.link_comparison as lc

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(lc, "downlink_frame", lambda *a, **k: gone)
        assert lc.sparse_over_link(img, 0, 0.001, LinkConfig(), WireConfig(256), None, "none")["lost"] is True


def test_budget_receive_fills_a_frame_that_sampled_none_around_its_patches() -> None:
    """Review r8 #2: a sparse frame whose whole mask keeps no pixel was taken as not received, so the rest of the
    frame became its patch's mean (0.504); it is a sparse frame of no sample, filled around the patch (no fill:
    zero) as the ground station and the sweep before 9ea6a64 did. A frame whose samples were lost is unchanged."""
    from edgeae.ground.budget_downlink import Downlink, receive
    from edgeae.ground.feature_sets import LabelledFrame
    from edgeae.ground.link import LinkConfig
    from edgeae.wire.packets import SequenceCounters
    from edgeae.wire.products import AnomalyPatch

    h = w = 32
    keep = 1 / 1024
    img = (np.arange(h * w).reshape(h, w, 1) % 251).astype(np.uint8)
    ctr = SequenceCounters()
    seed = _sampled_none_seed(h, w, keep)
    empty = np.zeros((0, 1), np.uint8)
    pkts = packetise(SparseFrame(0, h, w, 1, 8, keep, "uniform", seed, 1, empty), config=WireConfig(256), counters=ctr)
    pkts += packetise(AnomalyPatch(0, 8, 8, 8, 3.5, img[8:16, 8:16]), config=WireConfig(256), counters=ctr)
    frame = LabelledFrame("f", "s", img, 8, np.zeros((0, 2), int), "test")
    got = receive(frame, Downlink("prioritised", pkts), LinkConfig(), None)
    assert not got.lost and got.sparse_refused == 0 and got.exact[8:16, 8:16].all()
    assert np.all(got.image[~got.exact] == 0.0)  # no fill: the unknown pixels stay 0, not the patch's mean
    assert np.array_equal(got.image[8:16, 8:16], img[8:16, 8:16].astype(np.float32) / 255)
    empty_pkts, patch, img = _lossy_pass()  # samples lost on the link: still the patches' mean
    frame = LabelledFrame("f", "s", img, 8, np.zeros((0, 2), int), "test")
    lost = receive(frame, Downlink("p", empty_pkts[:1] + patch), LinkConfig(), None)
    assert np.allclose(lost.image[~lost.exact], img[8:24, 8:24].mean() / 255)


def test_not_received_reports_pixels_sent_when_the_mask_was_generated_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """Review r8 #3: a frame within one strip (any frame up to ~4 M pixels) has its whole mask generated by checking
    one piece, but pixels_sent was null; it is the mask's count now, and null only when strips were left unhashed."""
    empty, _, _ = _lossy_pass()
    want = int(make_mask(3, (64, 300), 0.001, "uniform").sum())
    gs = GroundStation()
    gs.receive(empty[0])
    rep = gs.finish()["products"]["frame_4"]
    assert rep["not_received"] is True and rep["pixels_sent"] == want and rep["pixel_fraction_received"] == 0.0, rep
    monkeypatch.setattr(sparse_mask, "STRIP_PIXELS", 300 * 8)  # 8-row strips: one 4-row band leaves 7 unhashed
    with pytest.raises(NothingReceived) as got:
        decode_sparse(_assembly_of(empty[:1]))
    assert got.value.sent is None and not got.value.sampled_none
    gs = GroundStation()
    gs.receive(empty[0])
    assert gs.finish()["products"]["frame_4"]["pixels_sent"] is None


def _assembly_of(pkts: list[bytes]):
    rx = Receiver()
    for p in pkts:
        rx.receive(p)
    (asm,) = rx.products.values()
    return asm


def test_psnr_error_of_a_frame_that_sampled_none_says_so() -> None:
    """Review r8 #4: a frame that sampled no pixel said "nothing received to rebuild it from"; it received all
    there was."""
    frame, mask, img = _frame(h=5, w=4, keep=0.001)
    assert not mask.any()
    gs = GroundStation(originals={4: img.astype(np.float32) / 255})
    for p in packetise(frame, config=WireConfig(256)):
        gs.receive(p)
    rep = gs.finish()["products"]["frame_4"]
    assert rep["pixels_sent"] == 0 and "not_received" not in rep, rep
    assert (
        rep["psnr_error"] == "no image was rebuilt (the frame sampled no pixel: no sample was sent to rebuild it from)"
    )

"""Session 39 (h1, audit s38 a2 #4): the link benchmark compared sparse pixels only with JPEG 2000 coded as ONE
codestream, which a lost packet wrecks; it now also sends independently tiled JPEG 2000 (each tile its own
codestream in its own packets, lost tiles concealed from their neighbours) within the same wire bytes."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("imagecodecs")
pytest.importorskip("cv2")

from benchmarks import tiled_j2k as tj
from edgeae.ground.baselines import at_bytes, file_budget, over_link
from edgeae.ground.link import LinkConfig
from edgeae.metrics import psnr


def _scene(h: int = 128, w: int = 128, seed: int = 0) -> np.ndarray:
    """A smooth RGB frame with some texture (uint8 (h, w, 3)): what concealment from neighbours can guess."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    rng = np.random.default_rng(seed)
    base = np.stack([0.3 + 0.1 * c + 0.3 * (x + y) / (h + w) + 0.05 * np.sin(x / 9 + y / 7) for c in range(3)], -1)
    return np.clip((base + 0.03 * rng.standard_normal(base.shape)) * 255, 0, 255).astype(np.uint8)


def _db(a: np.ndarray, b: np.ndarray) -> float:
    return float(psnr(a.astype(np.float32) / 255, b.astype(np.float32) / 255))


def test_a_lost_packet_loses_one_tile_not_the_frame() -> None:
    """Whole-frame JPEG 2000 whose first packet is lost is a lost frame; the tiled file at the same wire bytes
    with one packet lost loses exactly that packet's tile, decodes the others bit for bit as sent, and conceals
    the lost one from its neighbours (well above the mid-grey a lost frame scores)."""
    img = _scene(192, 192)
    wire = 9 * 1000  # a share of 1,000 wire bytes a tile: one packet each
    streams, q, wb = tj.at_wire_bytes(img, 64, wire, 1024)
    pkts = tj.tile_packets(streams, 1024)
    assert len(streams) == 9 and len(pkts) == 9 and wb == sum(map(len, pkts)) <= wire and 10 < q < 80
    full, lost = tj.rebuild(pkts, img.shape, 64)
    assert not lost.any() and _db(img, full) > 30
    at = tj.send_order(9).index(4)  # the packet of the centre tile
    got, lost = tj.rebuild(pkts[:at] + pkts[at + 1 :], img.shape, 64)
    assert lost.tolist() == [k == 4 for k in range(9)]
    hole = np.zeros(img.shape[:2], bool)
    hole[64:128, 64:128] = True
    assert np.array_equal(got[~hole], full[~hole])
    grey = np.full_like(img, 128)
    assert _db(img[hole], got[hole]) > _db(img[hole], grey[hole]) + 4  # 24.6 vs 19.5 dB
    # the whole frame as one codestream within the same wire bytes: losing its first packet loses the frame
    data, _ = at_bytes(img, "jpeg2000", file_budget(wire, 1024))
    seed = next(s for s in range(200) if _first_lost(s, 0.3))
    r = over_link(data, "jpeg2000", img.shape, LinkConfig(seed, loss=0.3), 1024, original=img)
    assert r.lost and r.how in ("undecodable", "nothing")


def _first_lost(seed: int, loss: float) -> bool:
    from edgeae.ground.link import simulate

    out, _ = simulate([b"a", b"b", b"c"], LinkConfig(seed, loss=loss))
    return all(p != b"a" for _, p in out)


def test_every_tile_and_packet_header_is_counted_in_the_budget() -> None:
    """Wire bytes are the packets' lengths (CCSDS, common and kind headers, CRC, each codestream's own main and
    tile-part headers), within the budget; codestreams are raw J2K without OpenJPEG's COM text; too small a
    budget is refused with a line that names the tile and its share."""
    img = _scene(96, 160)
    streams, _, wb = tj.at_wire_bytes(img, 64, 9000, 512)
    boxes = tj.tile_boxes(96, 160, 64)
    assert [b[2:] for b in boxes] == [(64, 64), (64, 64), (64, 32), (32, 64), (32, 64), (32, 32)]
    pkts = tj.tile_packets(streams, 512)
    assert wb == sum(map(len, pkts)) <= 9000 and all(len(p) <= 512 for p in pkts)
    assert sum(map(len, pkts)) > sum(map(len, streams))  # headers are paid for, not hidden
    for s in streams:
        assert s[:2] == b"\xff\x4f" and b"Created by" not in s
    with pytest.raises(ValueError, match=r"a 64x64 JPEG 2000 tile needs \d+ bytes .* over its \d+-byte share"):
        tj.at_wire_bytes(img, 64, 6 * 100, 512)


def test_strip_comments_drops_com_only() -> None:
    import imagecodecs

    tile = _scene(64, 64)
    cs = bytes(imagecodecs.jpeg2k_encode(tile, level=35.0, codecformat=imagecodecs.JPEG2K.CODEC.J2K))
    out = tj.strip_comments(cs)
    assert b"Created by" in cs and b"Created by" not in out and len(out) < len(cs)
    assert np.array_equal(imagecodecs.jpeg2k_decode(out), imagecodecs.jpeg2k_decode(cs))
    with pytest.raises(ValueError, match="not a raw J2K codestream"):
        tj.strip_comments(b"\x00\x00\x00\x0cjP  ")


def test_send_order_spreads_neighbours_apart() -> None:
    """Tiles sent back to back (what a burst hits) are not neighbours in the frame."""
    order = tj.send_order(64)
    assert sorted(order) == list(range(64))
    for a, b in itertools.pairwise(order):
        (ya, xa), (yb, xb) = divmod(a, 8), divmod(b, 8)
        assert max(abs(ya - yb), abs(xa - xb)) > 1


def test_link_benchmark_has_a_tiled_row_counting_lost_tiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    import benchmarks.link_comparison as lc

    img = tmp_path / "rover.png"
    Image.fromarray(_scene(72, 72)).save(img)
    monkeypatch.setattr(lc, "split_files", lambda *a: [img])
    monkeypatch.setattr(lc, "LINKS", {"perfect": LinkConfig(), "loss 20%": LinkConfig(loss=0.2)})
    monkeypatch.setattr("benchmarks.machine._gpu", lambda: None)
    out = tmp_path / "link"
    argv = ["--out", str(out), "--limit", "1", "--seeds", "2", "--methods", "linear", "--crop", "64",
            "--j2k-tile", "32", "--max-packet", "256"]  # fmt: skip
    assert lc.main(argv) == 0
    got = json.loads((out / "results.json").read_text())
    rows = [r for r in got["rows"] if r["method"] == "jpeg2000 32-px tiles + telea conceal"]
    assert [r["link"] for r in rows] == ["perfect", "loss 20%", "loss 20%"]
    assert all(r["tiles"] == 4 and 0 <= r["tiles_lost"] <= 4 for r in rows) and rows[0]["tiles_lost"] == 0
    size = got["sizes"][0]
    assert size[lc.TILED]["wire_bytes"] <= size["sparse_wire_bytes"] and size[lc.TILED]["tiles"] == 4
    assert all(r["wire_bytes"] == size[lc.TILED]["wire_bytes"] for r in rows)
    md = (out / "results.md").read_text()
    assert "| jpeg2000 32-px tiles + telea conceal |" in md and "Tiles lost" in md
    lost = sum(r["tiles_lost"] for r in rows)
    assert f"| {lost - rows[0]['tiles_lost']}/8 (" in md  # the loss column: lost of sent over both seeds
    assert got["meta"]["j2k_tile"] == 32 and got["meta"]["tile_fill"] == "telea"


@pytest.mark.parametrize(
    ("argv", "said"),
    [(["--j2k-tile", "8"], "--j2k-tile must be packet (a tile per packet, the default), 0 (no tiled JPEG 2000 row) or "
      "at least 16 px, got 8"),
     (["--j2k-tile", "big"], "--j2k-tile: expected packet or a tile side in px, got 'big'"),
     (["--tile-fill", "bogus"], "--tile-fill: unknown classical fill 'bogus'")],
)  # fmt: skip
def test_link_benchmark_refuses_bad_tile_option(argv: list[str], said: str, capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks.link_comparison import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and said in capsys.readouterr().err

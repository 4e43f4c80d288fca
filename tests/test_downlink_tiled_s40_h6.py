"""Session 40 (h6): tiled JPEG 2000 gave every tile an equal share of the wire bytes, a full share to an edge sliver
and the same bytes to a flat tile as to a busy one; ``benchmarks/tiled_j2k_choice.py`` now tries area-proportional
shares and one target PSNR for every tile (``-area``, ``-eq``, ``-eq2`` rules) over two more losses (30%, 40%) and
reports each rule's gain against the seed-to-seed spread."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("imagecodecs")

from benchmarks import tiled_j2k_choice as tc
from benchmarks.link_comparison import LINKS
from edgeae.ground.tiled_j2k import at_wire_bytes, tile_boxes, tile_packets


def _scene(h: int, w: int) -> np.ndarray:
    """A frame whose left half is flat and right half busy (noise), RGB uint8."""
    rng = np.random.default_rng(3)
    a = np.full((h, w, 3), 120, np.int32)
    a[:, w // 2 :] += rng.integers(-60, 60, (h, w - w // 2, 3))
    return a.clip(0, 255).astype(np.uint8)


def test_rules_parse_every_split_and_refuse_others() -> None:
    assert tc.parse_rule("packet") == (0, True, "equal")
    assert tc.parse_rule("packet-area") == (0, True, "area")
    assert tc.parse_rule("64-eq2") == (64, True, "eq2")
    assert tc.parse_rule("64-spill") == (64, False, "equal")
    assert tc.parse_rule("fit-eq") == (-1, True, "eq")
    for bad in ("8", "64-fair", "tile-area", "packet-"):
        with pytest.raises(ValueError, match="is not N, packet or fit"):
            tc.parse_rule(bad)


def test_links_add_30_and_40_percent() -> None:
    # the link stage's (30 % and 40 % since session 43), in the order its tables show them
    assert list(LINKS) == ["perfect", "loss 5%", "loss 9%", "loss 20%", "burst (GE, ~9%)", "loss 30%", "loss 40%"]
    assert tc.CHOICE_LINKS["loss 30%"].loss == 0.30 and tc.CHOICE_LINKS["loss 40%"].loss == 0.40
    assert tc.parse_links("perfect,burst (GE, ~9%),loss 40%") == ["perfect", "burst (GE, ~9%)", "loss 40%"]
    assert tc.parse_links("all") == list(tc.CHOICE_LINKS)
    with pytest.raises(ValueError, match="'loss 50%' is not one of"):
        tc.parse_links("perfect,loss 50%")


def test_equal_shares_overpay_slivers_area_shares_do_not() -> None:
    img = _scene(80, 80)  # 64-px tiles: one full, two 64x16 slivers, one 16x16 corner
    wire = 4 * 900
    eq, _, _ = at_wire_bytes(img, 64, wire, 1024)
    area = tc.split_streams(img, 64, wire, 1024, "area")
    assert [b[2] * b[3] for b in tile_boxes(80, 80, 64)] == [4096, 1024, 1024, 256]
    assert len(area[0]) > len(eq[0]) + 150  # the full tile gets the slivers' unneeded bytes
    assert len(area[3]) < len(eq[3])
    assert sum(map(len, tile_packets(area, 1024))) <= wire


def test_equal_quality_moves_bytes_from_flat_to_busy_tiles_within_the_budget() -> None:
    img = _scene(64, 128)  # two 64-px tiles: flat, busy
    wire = 2 * 1024
    eq, _, _ = at_wire_bytes(img, 64, wire, 1024)
    assert len(eq[0]) < 200 and 850 < len(eq[1]) <= 994  # the flat tile needs ~130 bytes of its share, the busy all
    held = tc.split_streams(img, 64, wire, 1024, "eq")  # held to its one packet, the busy tile cannot gain
    assert [len(s) for s in held] == [len(s) for s in eq]
    same_q = tc.split_streams(img, 64, wire, 1024, "eq2")  # up to two packets a tile
    assert len(same_q[0]) <= len(eq[0]) and len(same_q[1]) > len(eq[1]) + 500
    assert sum(map(len, tile_packets(same_q, 1024))) <= wire
    with pytest.raises(ValueError, match="at the lowest quality are over 300 wire bytes"):
        tc.split_streams(img, 64, 300, 1024, "eq")


def test_spread_reports_gain_per_seed_and_the_first_rules_range() -> None:
    rows = [{"keep": 0.1, "rule": rule, "fill": "telea", "link": "loss 20%", "s": s, "image": im, "psnr": p + d}
            for rule, d in (("packet", 0.0), ("packet-area", 0.5)) for s, p in ((0, 30.0), (1, 31.0), (2, 30.4))
            for im in ("a", "b")]  # fmt: skip
    md = tc.spread(rows, ["loss 20%"])
    assert "| 0.1 | packet-area | telea | +0.50 [+0.50, +0.50] |" in md
    assert "| 0.1 | packet: spread | telea | 1.00 |" in md
    rows.append({"keep": 0.1, "rule": "packet-area", "image": "c", "error": "a tile needs 118 bytes"})
    assert "packet-area" not in tc.spread(rows, ["loss 20%"])  # its means would cover fewer crops than the first rule's

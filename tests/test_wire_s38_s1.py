"""Session 38, fixer s1: the layout-2 planner's first packet count is one public function
(``sparse_plan.first_packet_count``) that the planner and the keep search's size estimates both call; until then
``keep_frames.planned_packets`` held a copy of ``_fit_band``'s first choice."""

from __future__ import annotations

import numpy as np

from edgeae.ground import keep_frames
from edgeae.ground.sources import sparse_from_samples
from edgeae.wire import sparse_plan
from edgeae.wire.packets import WireConfig
from edgeae.wire.sparse import row_counts


def test_planner_and_estimate_share_the_first_count() -> None:
    assert keep_frames.first_packet_count is sparse_plan.first_packet_count


def test_planned_bands_start_at_the_first_count() -> None:
    """Where the first count fits every packet (noise coded with CCSDS 121), each band is planned at it, below the
    raw count; a band of no pixel is one packet."""
    rng = np.random.default_rng(1)
    s = rng.normal(128, 8, (192, 160, 1)).clip(0, 255).astype(np.uint8)
    wire = WireConfig(512, "ccsds121", band_rows=64)
    fr = sparse_from_samples(s, 8, 0.4, 2)
    counts = row_counts(fr)
    plan = sparse_plan.plan_sparse(fr, counts, wire)
    cum = np.concatenate([[0], np.cumsum(counts)])
    for band in plan:
        n, v0 = int(cum[band.row1] - cum[band.row0]), int(cum[band.row0])
        seg, raw, first = sparse_plan.first_packet_count(
            fr.values.__getitem__, v0, n, band.row1 - band.row0, 1, wire, 8
        )
        assert (seg, first) == (band.seg, band.parts)
        assert first < raw
    assert keep_frames.planned_packets(fr.values.__getitem__, counts, wire, 8, 1) == sum(b.parts for b in plan)
    empty = sparse_plan.first_packet_count(fr.values.__getitem__, 0, 0, 64, 1, wire, 8)
    assert empty[1:] == (1, 1)

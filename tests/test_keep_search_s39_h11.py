"""Session-39 fixer h11: review r5's findings 2 and 3 on d31b05c (``keep_for_bytes`` near the 65,535-packet limit).

2. At ordinary budgets a frame whose whole frame is over the packet limit took 2-4 more packings (+15-80 %): a frame
   over the limit counted only its packets scaled to the budget, barely over it, so the first secant from keep 1
   aimed near keep 1 instead of near the budget's keep.
3. The search read a refused frame's packet count from ``TooManyPackets``' message ("needs N packets"): reworded,
   it fell back to 65,536 and crawled again (18-44 packings instead of 5-7) without a word. The exception now
   carries the count (``packets``) from every place that raises it.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable

import numpy as np
import pytest
from _helpers_keep_search import count_packings

LARGEST = 65_535 * 102  # 272x272x16 16-bit in 128-byte packets: one pixel (102 B) a packet, the most one product holds


def _noise(shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(3).integers(0, 65535, shape, dtype=np.uint16)


# ------------------------------------------------------------------------------ 2. ordinary budgets
@pytest.mark.parametrize(("pattern", "frame"), [("uniform", (2_999_922, 29_411)), ("jittered", (2_982_582, 29_241))])
def test_an_ordinary_budget_of_a_frame_over_the_packet_limit_takes_few_packings(
    monkeypatch: pytest.MonkeyPatch, pattern: str, frame: tuple[int, int]
) -> None:
    """3 MB of 272x272 pixels of 16 bands, whose whole frame needs 73,984 128-byte packets (7.5 MB): 5 packings
    before d31b05c, 7 (uniform mask) and 9 (jittered) after it: the whole frame counted 1.13 x the budget, so the
    first step aimed near keep 0.88. The same frame all along (and the uniform mask's keep; 1040x1040 grey at 3 MB,
    67,600 packets whole: 5, 7, now 6)."""
    from edgeae.ground.keep_search import _packed, keep_for_bytes
    from edgeae.ground.sources import sparse_from_samples
    from edgeae.wire.layout import WireConfig

    samples, wire = _noise((272, 272, 16)), WireConfig(128)
    packed = count_packings(monkeypatch)
    keep = keep_for_bytes(samples, 16, 3_000_000, wire, seed=5, pattern=pattern)
    assert len(packed) <= 5, len(packed)
    assert _packed(sparse_from_samples(samples, 16, keep, 5, pattern=pattern), wire) == frame, keep
    assert pattern != "uniform" or keep == 0.40027042354085074, keep


# ------------------------------------------------------------------------------ 3. the count, not the words
def _reworded(monkeypatch: pytest.MonkeyPatch) -> None:
    """too_many_packets without the words "needs N packets" (the count is still in the text), wherever it is used."""
    from edgeae.wire import packets, sparse_plan
    from firmware_sim import sparse_stream

    def words(kind: str, frame_id: int, n: int) -> str:
        return f"{kind} product {frame_id}: {n:,} packets are needed, over the 65,535 a product can have"

    for module in (sparse_plan, packets, sparse_stream):
        monkeypatch.setattr(module, "too_many_packets", words)


def test_a_reworded_refusal_does_not_slow_the_search(monkeypatch: pytest.MonkeyPatch) -> None:
    """272x272x16 jittered at the most one product carries: the frame of 65,025 packets (6,632,550 B) in 5 packings;
    18 with the message reworded, when the count came from its words."""
    from edgeae.ground.keep_search import _packed, keep_for_bytes
    from edgeae.ground.sources import sparse_from_samples
    from edgeae.wire.layout import WireConfig

    _reworded(monkeypatch)
    samples, wire = _noise((272, 272, 16)), WireConfig(128)
    packed = count_packings(monkeypatch)
    keep = keep_for_bytes(samples, 16, LARGEST, wire, seed=5, pattern="jittered")
    assert len(packed) <= 6, len(packed)
    assert _packed(sparse_from_samples(samples, 16, keep, 5, pattern="jittered"), wire) == (6_632_550, 65_025), keep


def _plan(frame: object, wire: object) -> object:
    from edgeae.wire.sparse import row_counts
    from edgeae.wire.sparse_plan import plan_sparse

    return plan_sparse(frame, row_counts(frame), wire)  # type: ignore[arg-type]


def _stream(frame: object, wire: object) -> object:
    from edgeae.wire.sparse import row_counts
    from firmware_sim.sparse_stream import sparse_packets

    return list(sparse_packets(frame, row_counts(frame), wire))  # type: ignore[arg-type]


def _packetise(frame: object, wire: object) -> object:
    from edgeae.wire.packets import packetise

    return packetise(frame, config=wire)  # type: ignore[arg-type]


def _search_packed(frame: object, wire: object) -> object:
    from edgeae.ground.keep_search import _packed

    return _packed(frame, wire)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("pack", "layout"),
    [(_plan, 2), (_packetise, 1), (_search_packed, 1), (_stream, 1)],
    ids=["planner", "packetise", "search", "flight"],
)
def test_too_many_packets_carries_its_count(
    monkeypatch: pytest.MonkeyPatch, pack: Callable[[object, object], object], layout: int
) -> None:
    """Every place that refuses a product of too many packets (the layout-2 planner, packetise, the search's packing,
    the flight's packet stream) says how many it needs in ``packets``, whatever the words, and a pickled copy (a Ray
    worker's) keeps it: 272x272 pixels of 16 bands, one a 128-byte packet."""
    from edgeae.ground.sources import sparse_from_samples
    from edgeae.wire.layout import WireConfig
    from edgeae.wire.sparse_plan import TooManyPackets

    _reworded(monkeypatch)
    frame = sparse_from_samples(_noise((272, 272, 16)), 16, 1.0, 5)
    with pytest.raises(TooManyPackets) as got:
        pack(frame, WireConfig(128, layout=layout))
    assert got.value.packets == 272 * 272 and "73,984 packets are needed" in str(got.value), got.value
    again = pickle.loads(pickle.dumps(got.value))
    assert (again.packets, str(again)) == (got.value.packets, str(got.value))

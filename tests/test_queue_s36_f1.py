"""Session-36 fixer f1: the flight queue's index grows by a frame's ledger entry, not by its products (finished
items compacted into totals per kind, with each finished frame's outcome kept in its ledger entry), and its growth
is measured by a script the docs cite."""

from __future__ import annotations

import contextlib
import io
import json
import runpy
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from edgeae.firmware_sim.queue import EVICTED, PENDING, DownlinkQueue
from edgeae.firmware_sim.queue_ledger import tallies

from edgeae.wire.packets import WireConfig, packetise
from edgeae.wire.products import AnomalyPatch, TelemetryRecord

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "firmware_sim.md"
SCRIPT = ROOT / "scripts" / "queue_index_growth.py"
WIRE = WireConfig(max_packet_size=256)


def _growth(*argv: str) -> dict[str, Any]:
    out = io.StringIO()
    main = runpy.run_path(str(SCRIPT))["main"]
    with contextlib.redirect_stdout(out):
        assert main(list(argv)) == 0
    return json.loads(out.getvalue())


# ------------------------------------------------------------ item 5: the growth figure, measured
def test_the_index_growth_the_docs_quote_is_measured_by_a_script() -> None:
    """docs/firmware_sim.md said "about 180 B per product and 80 B per frame" with no command that measures it."""
    m = _growth("--frames", "300")
    assert 150 <= m["bytes_per_waiting_product"] <= 190 and 90 <= m["ledger_bytes_per_frame"] <= 110, m
    text = " ".join(DOCS.read_text().split())
    assert "scripts/queue_index_growth.py" in text and "about 170 B per product while it waits" in text


# ------------------------------------------------------------ item 3: finished products leave the index
def test_sent_products_leave_the_index_and_a_frame_costs_its_ledger_entry() -> None:
    """Every sent or evicted item stayed in the index for good (~170 B a product): 600 B a frame of three products
    once all were sent, forever; now a finished frame keeps its ledger entry and its outcome, its items are totals."""
    m = _growth("--frames", "300")
    assert m["items_in_index_all_sent"] == 0 and m["bytes_per_frame_all_sent"] <= m["ledger_bytes_per_frame"] + 40, m


def _products(fid: int) -> list[tuple[str, list[bytes]]]:
    px = np.random.default_rng(fid).integers(0, 255, (24, 24, 1), dtype=np.uint8)
    patch = packetise(AnomalyPatch(fid, 0, 0, 24, 1.0, px), config=WIRE)
    tm = packetise(TelemetryRecord(fid, b"t" * 60), config=WIRE)
    sparse = packetise(TelemetryRecord(fid, bytes(1500)), config=WIRE)  # a stand-in: only its size matters
    return [("patch", patch), ("telemetry", tm), ("sparse", sparse)]


def _mission(root: Path, frames: int) -> tuple[DownlinkQueue, dict[int, Any]]:
    """A mission whose storage is too small: products evicted for room and refused, a frame dropped every tenth
    (its products withdrawn), one interrupted and taken again; a pass every third frame."""
    q = DownlinkQueue(root / "queue", 6000)
    every: dict[int, Any] = {}
    for fid in range(frames):
        ledger = q.state["frames"]
        ledger[str(fid)] = {"source": f"/data/f{fid}.npy", "status": "in_progress", "reason": ""}
        for kind, packets in _products(fid):
            it, _ = q.put(kind, fid, packets)
            every[it.id] = it
        if fid % 10 == 7:
            for it in q.frame_items(fid):
                if it.status == PENDING:
                    q.withdraw(it, "frame_dropped")
            ledger[str(fid)] = {"source": ledger[str(fid)]["source"], "status": "dropped",
                                "reason": "frame_error: boom", "code": "frame_error"}  # fmt: skip
        elif fid == 12:  # interrupted, then taken again
            for it in q.frame_items(fid):
                if it.status == PENDING:
                    q.withdraw(it, "frame_interrupted")
            for kind, packets in _products(fid):
                it, _ = q.put(kind, fid, packets)
                every[it.id] = it
            ledger[str(fid)]["status"] = "processed"
        else:
            ledger[str(fid)]["status"] = "processed"
        q.save()
        if fid % 3 == 2:
            q.downlink_pass(2500, root / "downlink")
    q.save()
    return q, every


def _reference(q: DownlinkQueue, every: dict[int, Any]) -> SimpleNamespace:
    """The queue as it was before any compaction: every item, the ledger without stored outcomes."""
    frames = {k: {x: v for x, v in e.items() if x != "outcome"} for k, e in q.state["frames"].items()}
    state = {k: v for k, v in q.state.items() if k != "compacted"}
    ref = SimpleNamespace(items=every, state={**state, "frames": frames}, stored_bytes=q.stored_bytes)
    ref.tallies = lambda: tallies((vars(i) for i in every.values()), None)
    return ref


def test_compacted_items_keep_the_summary_outcomes_and_report_as_they_were(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgeae.firmware_sim.report import _queue

    monkeypatch.setattr("os.fsync", lambda fd: None)  # accounting, not durability: 450 items and 150 saves, fast
    from edgeae.firmware_sim.telemetry import WITHDRAWN, frame_outcomes, storage_damage, summarise

    q, every = _mission(tmp_path / "out", 150)
    evicted = sum(it.status == EVICTED for it in every.values())
    assert evicted > 150 and len(every) == 453, evicted  # more than the report's evicted table shows
    index = json.loads((tmp_path / "out" / "queue" / "index.json").read_text())
    assert len(index["items"]) < 130, len(index["items"])  # the last 100 evicted, the pending, the last pass's
    ref = _reference(q, every)
    extra = {"mission": "m", "budgets": {}}
    want = summarise(ref, [], extra)  # type: ignore[arg-type]
    items = list(every.values())  # the queue counts as summarise made them before session 36
    assert want["queue"] == {
        "pending_items": sum(i.status == PENDING for i in items),
        "pending_bytes": q.stored_bytes,
        "sent_bytes": sum(i.sent_bytes for i in items),
        "evicted_items": sum(i.status == EVICTED for i in items),
        "withdrawn_items": sum(i.status == EVICTED and i.reason in WITHDRAWN for i in items),
        "corrupted_items": sum(i.status == EVICTED and storage_damage(i.reason) for i in items),
        "passes": q.state["passes"],
    }
    for queue in (q, DownlinkQueue(tmp_path / "out" / "queue", 6000)):  # in memory, and reloaded from disk
        assert frame_outcomes(queue) == frame_outcomes(ref)  # type: ignore[arg-type]
        got = summarise(queue, [], extra)
        assert got["queue"] == want["queue"] and got["frames"] == want["frames"] and got["ledger"] == want["ledger"]
    # the report's queue tables from the compacted index, and from one holding every item
    (tmp_path / "ref" / "queue").mkdir(parents=True)
    doc = {**index, "state": ref.state, "items": [vars(it) for it in every.values()]}
    (tmp_path / "ref" / "queue" / "index.json").write_text(json.dumps(doc))
    assert _queue(tmp_path / "out", [], {}) == _queue(tmp_path / "ref", [], {})


def test_a_finished_item_stays_one_save_after_it_finished(tmp_path: Path) -> None:
    """The loop reads an item right after the pass or the put that finished it (its ``evicted`` event): it is
    compacted only at the save after the one that recorded it finished."""
    q = DownlinkQueue(tmp_path / "queue", 1 << 20)
    q.state["frames"]["0"] = {"source": "f0", "status": "processed", "reason": ""}
    it, _ = q.put("patch", 0, _products(0)[0][1])
    q.save()
    assert q.downlink_pass(1 << 20, tmp_path / "dl").items_completed == 1  # saves: recorded sent
    assert q.items[it.id].status == "sent"
    q.save()
    assert it.id not in q.items and q.state["frames"]["0"]["outcome"] == ["downlinked", "", ""]
    assert q.state["compacted"]["patch"]["sent"] == 1


@pytest.mark.parametrize(
    ("change", "what"),
    [
        (lambda d: d["state"].update(compacted=[]), "state 'compacted' is [], not an object"),
        (lambda d: d["state"].update(compacted={"patch": {"items": -1}}), "state 'compacted' of patch"),
        (lambda d: d["state"]["frames"]["0"].update(outcome="sent"), "frame 0 of the ledger has the outcome 'sent'"),
    ],
)
def test_a_damaged_compaction_record_is_one_line_naming_the_index(tmp_path: Path, change: Any, what: str) -> None:
    q = DownlinkQueue(tmp_path / "queue", 1 << 20)
    q.state["frames"]["0"] = {"source": "f0", "status": "processed", "reason": ""}
    q.save()
    index = tmp_path / "queue" / "index.json"
    doc = json.loads(index.read_text())
    change(doc)
    index.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="queue index unreadable") as err:
        DownlinkQueue(tmp_path / "queue", 1 << 20)
    assert what in str(err.value)

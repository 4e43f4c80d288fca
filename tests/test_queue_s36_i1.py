"""Session-36 fixer i1, the flight queue (review s36 r5 #4, #5): a product lost at boot is an ``evicted`` event
unless an earlier boot already wrote that same recovery event (an id alone matched an eviction of another product
that reused the id after a failed index save), and the compacted totals must add up."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from edgeae.firmware_sim.boot import queue_recovery_events
from edgeae.firmware_sim.queue import DownlinkQueue

from edgeae.wire.packets import WireConfig, packetise
from edgeae.wire.products import AnomalyPatch, TelemetryRecord

DOCS = Path(__file__).resolve().parents[1] / "docs" / "firmware_sim.md"
WIRE = WireConfig(max_packet_size=256)


def _packets(fid: int, kind: str) -> list[bytes]:
    if kind == "patch":
        px = np.random.default_rng(fid).integers(0, 255, (24, 24, 1), dtype=np.uint8)
        return packetise(AnomalyPatch(fid, 0, 0, 24, 1.0, px), config=WIRE)
    return packetise(TelemetryRecord(fid, b"t" * 60), config=WIRE)


class _Telemetry:
    """What queue_recovery_events uses of the telemetry writer: its file and write()."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, type_: str, **fields: Any) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps({"type": type_, "t": 1.0, **fields}) + "\n")

    def events(self) -> list[dict[str, Any]]:
        return [x for x in map(json.loads, self.path.read_text().splitlines()) if x.get("type") == "event"]


def _lost_at_boot(tmp_path: Path, earlier: list[dict[str, Any]]) -> tuple[_Telemetry, int]:
    """A queue whose pending telemetry item of frame 1 lost its file, loaded at boot after ``earlier`` events
    (``{item}`` in them is that item's id); returns the telemetry and the id."""
    q = DownlinkQueue(tmp_path / "queue", 1 << 20)
    for fid in (0, 1):
        q.state["frames"][str(fid)] = {"source": f"f{fid}", "status": "processed", "reason": ""}
    q.put("patch", 0, _packets(0, "patch"))
    it, _ = q.put("telemetry", 1, _packets(1, "telemetry"))
    q.save()
    (tmp_path / "queue" / "items" / it.file).unlink()
    tm = _Telemetry(tmp_path / "telemetry.jsonl")
    tm.write("start", resumed=True)
    for e in earlier:
        tm.write("event", **{**e, "item": it.id})
    q = DownlinkQueue(tmp_path / "queue", 1 << 20)
    assert q.lost_on_recovery == [it.id]
    queue_recovery_events(SimpleNamespace(queue=q, tm=tm))  # type: ignore[arg-type]
    return tm, it.id


def test_an_id_evicted_for_room_by_a_boot_whose_index_was_never_saved_still_gets_its_recovery_event(
    tmp_path: Path,
) -> None:
    """A boot whose index saves failed gave ids past the saved ``next_id`` to its products and wrote their
    events; after a power cut the next boot gave those ids to other products. The recovery loss of such an id
    got no event: the 'already told' check matched the id alone, so the only event for the product named
    another product, frame and reason."""
    other = {"kind": "evicted", "product": "sparse", "frame_id": 77, "bytes": 10,
             "reason": "evicted for higher-priority item 3"}  # fmt: skip
    tm, iid = _lost_at_boot(tmp_path, [other])
    mine = [e for e in tm.events() if e.get("item") == iid and e.get("product") == "telemetry"]
    assert len(mine) == 1 and mine[0]["frame_id"] == 1 and mine[0]["reason"] == "item file missing after reboot"


def test_the_same_recovery_event_of_an_earlier_boot_is_not_written_again(tmp_path: Path) -> None:
    """An earlier boot that found the same file gone but could not save its index wrote the event: not again
    (session 36, f1), also when that boot found it damaged and this one missing."""
    told = {"kind": "evicted", "product": "telemetry", "frame_id": 1, "bytes": 200,
            "reason": "item file damaged (10 B, 200 B were queued) after reboot"}  # fmt: skip
    tm, iid = _lost_at_boot(tmp_path, [told])
    assert [e["reason"] for e in tm.events() if e.get("item") == iid] == [told["reason"]]


def test_the_docs_say_which_earlier_event_counts_as_told() -> None:
    text = " ".join(DOCS.read_text().split())
    assert "an earlier storage-damage event (a pass's or a boot's) for the same item, product and frame" in text


# ------------------------------------------------------------ r5 #5: the compacted totals add up
def _compacted_queue(tmp_path: Path) -> Path:
    q = DownlinkQueue(tmp_path / "queue", 1 << 20)
    q.state["frames"]["0"] = {"source": "f0", "status": "processed", "reason": ""}
    q.put("patch", 0, _packets(0, "patch"))
    q.save()
    q.downlink_pass(1 << 20, tmp_path / "dl")
    q.save()
    assert q.state["compacted"]["patch"]["sent"] == 1
    return tmp_path / "queue" / "index.json"


@pytest.mark.parametrize(
    ("change", "what"),
    [
        ({"pending": 7}, "pending 7, not 0 (a compacted item is never pending)"),
        ({"evicted": 1000}, "sent 1 + evicted 1000 is not its items 1"),
        ({"items": 2}, "sent 1 + evicted 0 is not its items 2"),
        ({"withdrawn": 1, "corrupted": 1, "evicted": 1, "sent": 0}, "withdrawn 1 + corrupted 1 is over its evicted 1"),
    ],
)
def test_compacted_totals_that_do_not_add_up_are_one_line_naming_the_index(
    tmp_path: Path, change: dict[str, int], what: str
) -> None:
    """``compacted.patch.pending`` changed to 7 and ``evicted`` to 1000 loaded without complaint: one damaged digit
    changed the summary, the console and the report."""
    index = _compacted_queue(tmp_path)
    doc = json.loads(index.read_text())
    doc["state"]["compacted"]["patch"].update(change)
    index.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="queue index unreadable") as err:
        DownlinkQueue(tmp_path / "queue", 1 << 20)
    assert f"state 'compacted' of patch: {what}" in str(err.value)


def test_consistent_compacted_totals_load(tmp_path: Path) -> None:
    index = _compacted_queue(tmp_path)
    assert (
        DownlinkQueue(tmp_path / "queue", 1 << 20).state["compacted"]
        == json.loads(index.read_text())["state"]["compacted"]
    )

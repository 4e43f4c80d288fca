"""Session-36 fixer i3, the flight queue (review s36 r10 #1, #4): an item file that grew in storage sent packets
that were never queued, and its compacted totals (sent_bytes over wire_bytes) then refused every later boot; a
pass-found damage event was written again by the next boot after a failed index save."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("spacepackets")
from edgeae.firmware_sim.boot import queue_recovery_events
from edgeae.firmware_sim.queue import DownlinkQueue
from edgeae.firmware_sim.queue_files import item_packets
from edgeae.firmware_sim.queue_items import SENT
from edgeae.firmware_sim.queue_ledger import Outcome, check_compacted, processed_outcome

from edgeae.wire.packets import WireConfig, packetise
from edgeae.wire.products import AnomalyPatch

WIRE = WireConfig(max_packet_size=256)
DOCS = Path(__file__).resolve().parents[1] / "docs" / "firmware_sim.md"


def _patch(fid: int) -> list[bytes]:
    px = np.random.default_rng(fid).integers(0, 255, (24, 24, 1), dtype=np.uint8)
    return packetise(AnomalyPatch(fid, 0, 0, 24, 1.0, px), config=WIRE)


def _grown_queue(tmp_path: Path) -> tuple[DownlinkQueue, int, list[bytes]]:
    q = DownlinkQueue(tmp_path / "queue", 1 << 20)
    q.state["frames"]["0"] = {"source": "f0", "status": "processed", "reason": ""}
    pk = _patch(0)
    it, _ = q.put("patch", 0, pk)
    q.save()
    f = tmp_path / "queue" / "items" / it.file
    f.write_bytes(f.read_bytes() + pk[0])  # a valid packet more on flash (a duplicated block)
    return q, it.id, pk


# ------------------------------------------------------------ r10 #1: a grown item file
def test_a_grown_item_file_sends_only_the_packets_that_were_queued(tmp_path: Path) -> None:
    """The pass sent 4 packets (976 B) of an item of 3 (720 B): the packet past them was never queued."""
    q, iid, pk = _grown_queue(tmp_path)
    rep = q.downlink_pass(1 << 20, tmp_path / "dl")
    it = q.items[iid]
    assert rep.packets_sent == len(pk) == 3 and rep.bytes_sent == sum(map(len, pk))
    assert (it.sent_packets, it.sent_bytes) == (it.n_packets, it.wire_bytes)
    # the growth is storage damage past the product: sent whole, the damage in its reason (review s36 r16 #3)
    assert it.status == SENT and it.reason.startswith("storage corruption: item file ")
    assert "never queued" in it.reason and rep.grown == (iid,) and rep.damaged == ()
    assert processed_outcome([it]) == Outcome("downlinked", "", "")


def test_the_walk_stops_at_the_queued_packet_count_and_bytes() -> None:
    pk = _patch(1)
    data = b"".join(pk)
    out, why = item_packets(data + pk[0], wire_bytes=len(data), n_packets=len(pk), crc32=None, sent_packets=0)
    assert out == pk and f"the {len(pk[0]):,} B from byte {len(data):,} on were never queued" in why
    # a packet that runs past the queued bytes (a header that claims more) is not sent either
    out, why = item_packets(data, wire_bytes=len(data) - 1, n_packets=len(pk), crc32=None, sent_packets=0)
    assert out == pk[:-1] and "past the" in why


def test_an_index_after_a_grown_item_is_compacted_loads(tmp_path: Path) -> None:
    """Once the grown item was compacted (100 later evictions), the next boot was refused: sent_bytes 976 is over
    its wire_bytes 720; the only way out was --fresh."""
    q, _, _ = _grown_queue(tmp_path)
    q.downlink_pass(1 << 20, tmp_path / "dl")
    q.state["frames"]["1"] = {"source": "f1", "status": "processed", "reason": ""}
    for _ in range(101):
        q.put("sparse", 1, [b"x" * 2000] * 1000)  # refused: over capacity
    q.save()
    q.save()
    t = q.state["compacted"]["patch"]
    assert (t["corrupted"], t["sent"]) == (0, 1) and t["sent_bytes"] == t["wire_bytes"]  # sent whole (r16 #3)
    assert DownlinkQueue(tmp_path / "queue", 1 << 20).state["compacted"]["patch"] == t


def test_compacted_totals_of_an_index_an_earlier_version_wrote_load() -> None:
    """Indexes written before the fix may hold more sent bytes than queued for a kind: not refused (the other
    rules still are)."""
    t = dict(items=1, wire_bytes=720, sent_bytes=976, pending=0, sent=0, evicted=1, withdrawn=0, corrupted=1)
    assert check_compacted({"frames": {}, "compacted": {"patch": t}}) == ""
    assert "pending 1" in check_compacted({"frames": {}, "compacted": {"patch": {**t, "pending": 1}}})


# ------------------------------------------------------------ r10 #4: a pass-found damage told once
def test_a_pass_found_damage_is_not_told_again_by_the_next_boot(tmp_path: Path) -> None:
    """A pass found the file gone and wrote its ``evicted`` event, but the index save failed; the next boot
    found the same file gone and wrote a second event for the same item, product and frame."""
    q = DownlinkQueue(tmp_path / "queue", 1 << 20)
    q.state["frames"]["0"] = {"source": "f0", "status": "processed", "reason": ""}
    it, _ = q.put("patch", 0, _patch(0))
    q.save()
    (tmp_path / "queue" / "items" / it.file).unlink()
    tm_path = tmp_path / "telemetry.jsonl"
    earlier = {"type": "event", "kind": "evicted", "item": it.id, "product": "patch", "frame_id": 0,
               "reason": f"storage corruption: item file {tmp_path}/queue/items/{it.file} is missing"}  # fmt: skip
    other = {**earlier, "item": it.id, "product": "sparse", "reason": "storage corruption: item file x is missing"}
    tm_path.write_text("".join(json.dumps(x) + "\n" for x in ({"type": "start"}, earlier, other)))
    written: list[dict[str, object]] = []
    tm = SimpleNamespace(path=tm_path, write=lambda type_, **f: written.append({"type": type_, **f}))
    q = DownlinkQueue(tmp_path / "queue", 1 << 20)
    assert q.lost_on_recovery == [it.id]
    queue_recovery_events(SimpleNamespace(queue=q, tm=tm))  # type: ignore[arg-type]
    assert [w for w in written if w.get("kind") == "evicted"] == []


def test_the_docs_say_a_grown_file_sends_only_what_was_queued() -> None:
    text = " ".join(DOCS.read_text().split())
    assert "packets past those queued were never queued and are not sent" in text

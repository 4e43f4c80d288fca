"""A frame's outcome: its products put in the downlink queue (or withdrawn when the frame fails after some
were queued, so the ledger, the queue and the downlink agree) and its one ``frame`` line of telemetry.

Functions over the :class:`~.loop.FlightRuntime` whose frame they finish (as :mod:`.frame_work` does).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from edgeae.wire.packets import packetise
from edgeae.wire.products import AnomalyPatch, TelemetryRecord

from .queue import PENDING, Item
from .sparse_stream import sparse_packets

if TYPE_CHECKING:
    from .loop import FlightRuntime


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1e3


def queue_products(rt: FlightRuntime, work: Any, rec: dict[str, Any]) -> dict[str, int]:
    queued: dict[str, int] = {"patch": 0, "sparse": 0, "telemetry": 0, "latent": 0}
    evicted: list[int] = []
    bits = rt.m.camera.bit_depth
    for i, c in enumerate(work.topk.ranked()):
        ap = AnomalyPatch(work.fid, c.x, c.y, rt.m.anomaly.patch, float(c.score), c.pixels, bits, i)
        item, ev = rt.queue.put("patch", work.fid, packetise(ap, config=rt.wire))
        queued["patch"] += item.wire_bytes if item.status == "pending" else 0
        evicted += [e.id for e in ev]
    sf, counts = work.sparse_frame()
    if rt.wire.layout == 2 or rt.wire.codec == "none":  # from the row counts: bounded memory
        packets = sparse_packets(sf, counts, rt.wire)
    else:  # layout 1 with a codec: packetise regenerates the whole mask to cut rows
        packets = iter(packetise(sf, config=rt.wire))
    item, ev = rt.queue.put("sparse", work.fid, packets)
    queued["sparse"] += item.wire_bytes if item.status == "pending" else 0
    evicted += [e.id for e in ev]
    work.close()
    if work.latents is not None:
        item, ev = rt.queue.put("latent", work.fid, packetise(work.latents, config=rt.wire))
        queued["latent"] += item.wire_bytes if item.status == "pending" else 0
        evicted += [e.id for e in ev]
    tr = TelemetryRecord(work.fid, _json_bytes(telemetry_summary(rec)))
    item, ev = rt.queue.put("telemetry", work.fid, packetise(tr, config=rt.wire))
    queued["telemetry"] += item.wire_bytes if item.status == "pending" else 0
    evicted += [e.id for e in ev]
    refused = [
        it for it in rt.queue.items.values() if it.frame_id == work.fid and it.reason == "queue_full"
    ]  # this frame's products no eviction made room for
    for it in refused:
        rt.tm.write("event", kind="queue_refused", item=it.id, product=it.kind, frame_id=it.frame_id,
                    bytes=it.wire_bytes, reason=it.reason)  # fmt: skip
    for iid in evicted:
        it = rt.queue.items[iid]
        rt.tm.write("event", kind="evicted", item=it.id, product=it.kind, frame_id=it.frame_id,
                    bytes=it.wire_bytes - it.sent_bytes, reason=it.reason)  # fmt: skip
    if evicted:
        rec["evicted_items"] = evicted
    if refused:
        rec["refused_items"] = [it.id for it in refused]
    return queued


def telemetry_summary(rec: dict[str, Any]) -> dict[str, Any]:
    """The frame's downlinked telemetry record (docs/wire-format.md "Telemetry payload"): its id, level, flags
    and every anomaly patch sent, entry i patch index i, so the ground can name each one lost. At most
    ``[anomaly] top_k`` <= 65,535 entries of at most 65 bytes (10-digit x and y, a 24-character score): under
    4.3 MB, inside the ground's ``max_telemetry_bytes`` (16 MiB) and the 65,535 packets of a product even at
    128-byte packets."""
    summary: dict[str, Any] = {k: rec[k] for k in ("frame_id", "level", "flags") if k in rec}
    summary["anomaly"] = rec.get("anomaly", {}).get("patches", [])  # until session 34 the first 16 only
    cam = rec.get("camera") or {}
    if cam.get("demosaiced") and cam.get("bayer"):  # the ground demosaics a raw --original the same way (s46)
        summary["demosaiced"] = cam["bayer"]
    return summary


def withdraw(rt: FlightRuntime, fid: int, rec: dict[str, Any], reason: str = "frame_dropped") -> None:
    """A frame that fails after some of its products were queued is dropped whole: those products are
    withdrawn (evicted, reason ``frame_dropped``, each an ``evicted`` event), so the ledger, the queue and
    the downlink agree."""
    withdrawn = take_back(rt, fid, reason)
    if withdrawn:
        rec["evicted_items"] = [it.id for it in withdrawn]
        log_withdrawn(rt, withdrawn)
        rt.queue.save()


def take_back(rt: FlightRuntime, fid: int, reason: str) -> list[Item]:
    """The frame's pending products taken off the queue (their files removed, the index not saved), all of them
    before any is logged (:func:`log_withdrawn`): on a full disk the room comes back before telemetry is tried."""
    withdrawn = [it for it in rt.queue.frame_items(fid) if it.status == PENDING]
    for it in withdrawn:
        rt.queue.withdraw(it, reason)
    return withdrawn


def log_withdrawn(rt: FlightRuntime, items: list[Item]) -> None:
    """An ``evicted`` event for each product :func:`take_back` withdrew."""
    for it in items:
        rt.tm.write("event", kind="evicted", item=it.id, product=it.kind, frame_id=it.frame_id,
                    bytes=it.wire_bytes - it.sent_bytes, reason=it.reason)  # fmt: skip


def complete_record(rt: FlightRuntime, rec: dict[str, Any], t0: float) -> None:
    """The frame's total time, CPU time and memory, into its record."""
    rec.setdefault("timing_ms", {})["total"] = rec.get("timing_ms", {}).get("total", _ms(t0))
    rec["cpu_ms"] = (time.process_time() - rt._cpu0) * 1e3  # all threads: independent of machine load
    mem = rt.meter.sample()
    budget = rt.m.budget.memory_bytes
    growth = max(0, int(mem["rss_frame_peak"]) - rt.rss_boot)  # what the process really held
    rec["memory"] = {
        **mem,
        "rss_boot": rt.rss_boot,
        "rss_growth_peak": growth,
        "budget": budget,
        "over_budget": growth > budget,
        "traced_over_budget": None if mem["traced_peak"] is None else mem["traced_peak"] > budget,
    }
    if rec["memory"]["over_budget"]:
        rec["flags"].append("memory_over_budget")


def write_record(rt: FlightRuntime, rec: dict[str, Any]) -> None:
    """The frame's one ``frame`` line (``queue_pending_bytes``: what waits in the queue, before any pass)."""
    rec["queue_pending_bytes"] = rt.queue.stored_bytes
    if not rt.records or rt.records[-1] is not rec:  # a stop path writes a refused line again: one record
        rt.records.append(rec)
    rt.tm.write("frame", **rec)
    rt._unwritten = None
    rt._current = None


def write_unwritten(rt: FlightRuntime) -> int | None:
    """The record of a frame the ledger already holds as done (processed or dropped) but that was stopped
    before its ``frame`` line (Ctrl-C in the probe, an error): written now, as no rerun takes that frame
    again; its frame id, or None when there was none."""
    pending, rt._unwritten = rt._unwritten, None
    if pending is None:
        return None
    rec, t0 = pending
    entry = rt.queue.state["frames"].get(str(rec["frame_id"]))
    if entry is None or entry["status"] in ("in_progress", "interrupted"):
        return None
    rec.setdefault("status", entry["status"])
    if "memory" not in rec:
        complete_record(rt, rec, t0)
    write_record(rt, rec)
    return int(rec["frame_id"])


def _json_bytes(obj: Any) -> bytes:
    from .telemetry import dumps

    return dumps(obj).encode()

"""What follows a frame and what ends a run of :class:`~.loop.FlightRuntime`.

A frame's finish (its record completed and its ``frame`` line written, then the downlink pass when one is due), a
downlink pass opportunity (a pass sent, or a ``pass_skipped`` event when nothing is queued, its mark kept in the
state), and the run's finish (``summary.json`` of every boot on the state, from ``telemetry.jsonl``, then the
``end`` line and the runtime closed). Functions over the runtime; its methods (``_finish``, ``downlink_pass``,
``finish``) call them, so a test that patches a method on the class still stops a run there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .frame_outcome import complete_record, write_record, write_unwritten
from .run_summary import summary_sections
from .state import mark_pass
from .stops import downlink_pass, quietly
from .telemetry import read_history, summarise, write_summary

if TYPE_CHECKING:
    from .loop import FlightRuntime


def finish_frame(rt: FlightRuntime, rec: dict[str, Any], t0: float) -> dict[str, Any]:
    """``rec`` completed and its ``frame`` line written, then :meth:`~.loop.FlightRuntime.downlink_pass` when the
    pass schedule says one is due; returns ``rec``."""
    complete_record(rt, rec, t0)
    # the frame line before the pass: Ctrl-C or a crash in the pass cannot lose a finished frame's record
    # (the ledger says processed, so no later run takes the frame again to write it)
    write_record(rt, rec)
    rt.since_pass += 1
    # downlink_bytes_per_pass = 0: no passes at all (no empty pass files)
    if rt.m.budget.downlink_bytes_per_pass > 0 and rt.since_pass >= rt.m.budget.pass_every_frames:
        rt.downlink_pass()
    return rec


def pass_opportunity(rt: FlightRuntime) -> None:
    """One downlink pass opportunity (:meth:`~.loop.FlightRuntime.downlink_pass` says what it records)."""
    mark_pass(rt.queue.state)
    passes = rt.queue.state["passes"]
    if not rt.queue.pending():
        rt.since_pass = 0
        rt.tm.write("event", kind="pass_skipped", reason="nothing queued to send", passes=passes)
    else:
        downlink_pass(rt)  # a pass sent saves the index itself (or says it could not)
    if rt.queue.state["passes"] == passes:
        quietly({}, rt.queue.save)  # a failure is kept in queue.unsaved


def finish_run(rt: FlightRuntime) -> dict[str, Any]:
    """``summary.json`` of every boot on ``rt``'s state, then ``rt`` closed; returns the summary
    (:meth:`~.loop.FlightRuntime.finish` says what a file that cannot be written does)."""
    failed = rt.not_written
    try:
        # a frame the ledger holds as done whose line an error stopped (run's except)
        quietly(failed, lambda: write_unwritten(rt), rt.tm.path)
        if rt.queue.unsaved:  # the index on disk is behind memory (a save failed): one more try
            quietly(failed, rt.queue.save, rt.queue.root / "index.json")
        history = read_history(rt.out / "telemetry.jsonl")  # written per line: this boot's lines are there
        ledger = rt.queue.state["frames"]
        records = {k: r for k, r in history.frames.items() if str(k) in ledger}
        for r in rt.records:  # lines telemetry could not take: this boot's records from memory
            records.setdefault(r["frame_id"], r)
        frames = [records[k] for k in sorted(records)]
        summary = summarise(rt.queue, frames, summary_sections(rt, history, frames))
        if history.refused_boots:  # boots that flew nothing: not in "boots" (read with the rest of the file)
            summary["boots_refused"] = history.refused_boots
        path = rt.out / "summary.json"
        if failed:
            summary["not_written"] = dict(failed)
        if not quietly(failed, lambda: write_summary(path, summary), path):  # the caller says so (a WARNING)
            error = failed[str(path)]
            event = {"kind": "output_not_written", "file": str(path), "error": error}
            quietly(failed, lambda: rt.tm.write("event", **event), rt.tm.path)
        else:  # "end": this boot wrote its summary (without it a report is rebuilt from telemetry and the index)
            quietly(failed, lambda: rt.tm.write("end", summary=summary["frames"]), rt.tm.path)
        if failed:
            summary["not_written"] = dict(failed)
    finally:
        rt.close()
    return summary

"""How one readable frame runs: its patch grid, the ladder level its time and memory allow, the strip stream
(:class:`~.frame_work.FrameWork`), its products queued, then its deadline and the cost model's update.

A function over the runtime (:class:`~.loop.FlightRuntime` sequences acquisition, this, and the frame's end).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from edgeae.tiling import axis_starts

from .budget import LADDER, Level
from .frame_intake import drop
from .frames import FrameError, FrameMemoryError, FrameReader
from .memory_room import is_out_of_memory

if TYPE_CHECKING:
    from .loop import FlightRuntime

LADDER_INDEX = {lv.name: lv.index for lv in LADDER}


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1e3


def patch_rows(height: int, an: Any, streamed: bool) -> list[int]:
    """The first rows of the frame's scored patches (``an``: the mission's ``[anomaly]`` section)."""
    if height < an.patch:
        return []
    if streamed:  # patches never cross strips: the grid stops at the last whole patch row
        return list(range(0, height - an.patch + 1, an.patch))
    return axis_starts(height, an.patch, an.stride)


def run_frame(
    rt: FlightRuntime,
    reader: FrameReader,
    rec: dict[str, Any],
    fid: int,
    lateness: float,
    t0: float,
    floor: Level | None = None,
) -> dict[str, Any]:
    """Run a frame whose reader opened and whose buffers fit (``floor``: the lowest level they fit at) and
    return its record, completed (or the record of its drop)."""
    from .frame_work import FrameWork  # imported when a frame first runs, as before the split

    m, hdr = rt.m, reader.header
    streamed = m.camera.source == "strips"
    strip_rows = m.camera.strip_rows if m.camera.source == "strips" else hdr.height
    ys = patch_rows(hdr.height, m.anomaly, streamed)
    xs = axis_starts(hdr.width, m.anomaly.patch, m.anomaly.stride) if hdr.width >= m.anomaly.patch else []
    n_patches = len(ys) * len(xs) if rt.scorer is not None else 0
    available = m.budget.frame_ms - lateness
    mpix = hdr.height * hdr.width / 1e6
    recon = rt.recon is not None
    level = rt.cost.choose(available, mpix, n_patches, recon, m.sampling.keep, m.budget.safety)
    if floor is not None and floor.index > level.index:  # its buffers fit the memory budget only from there
        rec["flags"].append("memory_degraded")
        rec["memory_level"] = {"index": floor.index, "name": floor.name, "time_level": level.name}
        level = floor
    rec["level"] = {"index": level.index, "name": level.name}
    rec["predicted_ms"] = rt.cost.predict(level, mpix, n_patches, recon, m.sampling.keep)
    if level.score_every == 0 and n_patches:  # why nothing is scored: what scoring every patch would cost
        rec["predicted_nominal_ms"] = rt.cost.predict(LADDER[0], mpix, n_patches, recon, m.sampling.keep)
    rec["available_ms"] = available
    keep = max(m.sampling.min_keep, m.sampling.keep * level.keep_factor)
    work = FrameWork(rt, reader, fid, keep, level, ys, xs, t0, available, streamed)
    try:
        try:  # before any product is queued: nothing to withdraw
            streamed_whole = work.stream(strip_rows)
            report = work.report() if streamed_whole else None
        except Exception as exc:  # out of memory anywhere in the frame's work, not only in the decoder: a thread
            # that cannot start (the strip prefetch), an allocation of the report (until review r9 of session 36
            # these were frame_error, against the docs); a damaged file (FrameError, the decoder decided) is the
            # loop's unreadable, any other error its frame_error (until review r13 a damaged file whose message
            # or path held "out of memory" was memory_unavailable, retaken by every rerun)
            if isinstance(exc, FrameMemoryError):
                return out_of_memory(rt, rec, exc)
            if isinstance(exc, FrameError) or not is_out_of_memory(exc):
                raise
            return out_of_memory(rt, rec, exc)
        if report is None:
            return drop(rt, rec, work.drop_reason, work.drop_detail)
        rec["flags"] += report.pop("flags_add")
        rec.update(report)
        t_prod = time.perf_counter()
        products = rt._queue_products(work, rec)
        rec["timing_ms"]["products"] = _ms(t_prod)
    finally:
        work.close()  # the sparse spool, also when something failed
    rec["status"] = "processed"
    rt.queue.state["frames"][str(fid)] = {
        "source": rec["source"],
        "status": "processed",
        "reason": "",
        "boot": rt.boot_no,
    }
    rt.queue.save()
    rec["queued_bytes"] = products
    total = _ms(t0)
    rec["timing_ms"]["total"] = total
    rec["deadline_missed"] = total > available
    # a frame that overran is "late" whatever level it ran at; never reported as that level alone
    rec["deadline"] = {
        "status": "late" if total > available else "met",
        "available_ms": available,
        "overrun_ms": max(0.0, total - available),
        "predicted_ms": rec["predicted_ms"],
        "prediction_error_ms": total - rec["predicted_ms"],
    }
    if work.in_flight:
        deepest = max(work.in_flight, key=lambda d: LADDER_INDEX.get(d["level"], 0))
        rec["level_planned"] = dict(rec["level"])
        rec["level"] = {"index": LADDER_INDEX.get(deepest["level"], 0), "name": deepest["level"]}
    tm = rec["timing_ms"]
    scoring = tm["score"] + tm.get("nodata", 0.0)  # the no-data mask is made only when scoring: a scoring cost
    base = total - scoring - tm.get("recon", 0.0) - tm["products"]
    rt.cost.update(
        mpix=mpix,
        base_ms=base,
        kept_mpix=work.kept / 1e6,
        products_ms=tm["products"],
        patches=work.topk.scored,
        score_ms=scoring,
        recon_ms=tm.get("recon"),
    )
    rec["probe"] = rt._probe(level, available - total)
    return rec


def out_of_memory(rt: FlightRuntime, rec: dict[str, Any], exc: BaseException) -> dict[str, Any]:
    """A frame whose reading or work ran out of memory (its decoder's allocation failed; a MemoryError): dropped
    ``memory_unavailable`` with what the process could still get, an ``out_of_memory`` event saying so (until
    session 36 an intact PNG was dropped ``unreadable``, "the PNG decoder refused the file", and a MemoryError
    ``frame_error``). Its tracebacks are released first and the heap's free memory returned."""
    from .loop import release_traceback
    from .memory_meter import trim_heap
    from .memory_room import _what, room_now

    detail = str(exc) or type(exc).__name__
    if not isinstance(exc, FrameMemoryError):
        detail = f"out of memory ({_what(exc)})"
    release_traceback(exc)
    del exc
    trim_heap()
    room = room_now()
    if room is not None and "MiB left (" not in detail:
        detail += f"; this process can get {room.text} more now"
    rt.tm.write("event", kind="out_of_memory", frame_id=rec["frame_id"], detail=detail)
    return drop(rt, rec, "memory_unavailable", detail)

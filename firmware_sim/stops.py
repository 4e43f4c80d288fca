"""How a run stops or stalls without losing a frame: Ctrl-C/SIGTERM (:class:`RunInterrupted`, the frame in
progress marked ``interrupted`` for a rerun), a write the loop cannot go on without (:class:`StorageFailed`), and a
downlink pass whose file cannot be written (an event; its products stay queued).

Functions over the :class:`~.loop.FlightRuntime` (as :mod:`.frame_outcome` and :mod:`.frame_run`).
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .frame_outcome import log_withdrawn, take_back, write_unwritten
from .state import boot_of
from .telemetry import INTERRUPTED
from .telemetry import retake_unsaved as telemetry_retake_unsaved

if TYPE_CHECKING:
    from .loop import FlightRuntime
    from .queue import Item


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped :meth:`FlightRuntime.run`: the frame in progress was marked ``interrupted`` (a rerun on
    the same folder takes it again) and the summary of the frames so far was written (``summary``)."""

    def __init__(self, summary: dict[str, Any], frames_done: int) -> None:
        super().__init__(f"interrupted after {frames_done} frame(s)")
        self.summary, self.frames_done = summary, frames_done


class StorageFailed(OSError):
    """A write the loop cannot go on without failed (the queue index or telemetry on a full or read-only disk:
    the error names the file): :meth:`FlightRuntime.run` stopped after writing the summary of the frames so far
    where it could (``summary``; the files it could not write in its ``not_written``). The state on disk is what
    the last write left; a rerun goes on from it."""

    def __init__(self, exc: OSError, summary: dict[str, Any], frames_done: int) -> None:
        super().__init__(exc.errno, exc.strerror or str(exc), exc.filename)
        self.summary, self.frames_done = summary, frames_done


def quietly(failed: dict[str, str], write: Callable[[], object], file: object = None) -> bool:
    """Run ``write``; an ``OSError`` (a full or read-only disk) goes into ``failed`` as ``{file: error}`` (the
    first per file; ``file``, else the one the error names) instead of stopping what is left. Whether it succeeded."""
    try:
        write()
    except OSError as exc:
        failed.setdefault(str(file or getattr(exc, "path", None) or exc.filename or "?"), str(exc))
        return False
    return True


def interrupted(rt: FlightRuntime, error: str | None = None) -> dict[str, str]:
    """Ctrl-C (or ``error``, a storage failure that stops the loop): the frame in progress is marked
    ``interrupted`` (a rerun retries it), what it had queued is withdrawn, and the state saved. When the queue
    index on disk is behind memory (its last save failed) it still holds the frame as taken in, so the frame is
    interrupted whatever memory says it became (processed, dropped), and its ``interrupted`` event, written before
    the save is tried again, is what tells a rerun to take it again (:func:`.telemetry.retake_unsaved`). Returns the
    files that could not be written (``{file: error}``): every write is tried."""
    why = {"error": error} if error else {}
    failed: dict[str, str] = {}
    fid, rt._current = rt._current, None
    frames = rt.queue.state["frames"]
    if fid is None:  # stopped in acquire, between its ledger entry and its save
        fid = next((int(k) for k, e in frames.items() if e["status"] == "in_progress" and k not in rt._stale), None)
    entry = frames.get(str(fid)) if fid is not None else None
    if fid is not None and entry is not None and (entry["status"] == "in_progress" or rt.queue.unsaved):
        rt._unwritten = None  # no frame line: a rerun takes the frame again
        frames[str(fid)] = {**boot_of(entry), "source": entry["source"], "status": "interrupted", "reason": INTERRUPTED}
        withdrawn: list[Item] = []  # taken back first: on a full disk their files make room for what follows
        quietly(failed, lambda: withdrawn.extend(take_back(rt, fid, "frame_interrupted")))
        event = {"frame_id": fid, "source": entry["source"], **why}
        quietly(failed, lambda: rt.tm.write("event", kind="interrupted", **event), rt.tm.path)
        quietly(failed, lambda: log_withdrawn(rt, withdrawn), rt.tm.path)
    else:  # between frames, or after the ledger closed the frame: its record is written if it was not
        quietly(failed, lambda: write_unwritten(rt), rt.tm.path)
        quietly(failed, lambda: rt.tm.write("event", kind="interrupted", frame_id=None, **why), rt.tm.path)
    quietly(failed, rt.queue.save, rt.queue.root / "index.json")
    return failed


def retake_unsaved(rt: FlightRuntime) -> list[int]:
    """At boot: the frames the last boot was stopped in while the queue index could not be saved are marked
    interrupted (:func:`.telemetry.retake_unsaved`) and the index saved if it can be (else the ``recovery`` line
    carries them to the next boot)."""
    retaken = telemetry_retake_unsaved(rt.queue, rt.out / "telemetry.jsonl")
    if retaken:
        quietly({}, rt.queue.save)
    return retaken


def downlink_pass(rt: FlightRuntime) -> None:
    """One downlink pass. A pass file that cannot be written (a full or read-only disk) is a ``downlink_failed``
    event naming the file and the error: its products stay queued for the next pass, and the loop goes on. A pass
    that could send nothing (the first item waiting has a packet larger than the pass) is a ``pass_skipped`` event
    saying so: no file, no pass number. An item the pass found damaged in storage (cut short, a bit flipped, gone)
    is evicted, an ``evicted`` event with its reason (``storage corruption: ...``), and the pass goes on (until
    session 35 one such item stopped every later pass and the run, exit 2)."""
    rt.since_pass = 0  # this pass opportunity is spent, whether or not its file could be written
    folder = rt.out / "downlink"
    index = int(rt.queue.state["passes"]) + 1
    try:
        rep = rt.queue.downlink_pass(rt.m.budget.downlink_bytes_per_pass, folder)
    except OSError as exc:
        rt.tm.write(
            "event",
            kind="downlink_failed",
            index=index,
            file=str(folder / f"pass_{index:05d}.bin"),
            errno=errno.errorcode.get(exc.errno, exc.errno) if exc.errno is not None else None,
            error=str(exc),
            pending_bytes=rt.queue.stored_bytes,  # still queued: the next pass sends it
        )
        return
    for iid in rep.damaged:  # evicted: what of it was sent stays sent, the rest is lost (the reason says where)
        it = rt.queue.items[iid]
        rt.tm.write("event", kind="evicted", item=it.id, product=it.kind, frame_id=it.frame_id,
                    bytes=it.wire_bytes - it.sent_bytes, reason=it.reason)  # fmt: skip
    for iid in rep.grown:  # sent whole; its file held bytes past its queued packets (damage, never sent)
        it = rt.queue.items[iid]
        rt.tm.write("event", kind="storage_grown", item=it.id, product=it.kind, frame_id=it.frame_id,
                    reason=it.reason)  # fmt: skip
    if rep.skipped:  # nothing could be sent (the first item waiting is larger than a pass): no file, no number
        rt.tm.write(
            "event", kind="pass_skipped", reason=rep.skipped, passes=rep.index, pending_bytes=rt.queue.stored_bytes
        )
        if rep.index_error:  # the damaged items' eviction is in memory only until the next save
            rt.tm.write("event", kind="queue_index_not_saved", index=rep.index, file="", error=rep.index_error)
        return
    if rep.index_error:  # the pass is on disk but the queue index could not record it (yet)
        rt.tm.write("event", kind="queue_index_not_saved", index=rep.index, file=rep.path, error=rep.index_error)
    rt.tm.write(
        "pass",
        index=rep.index,
        bytes=rep.bytes_sent,
        packets=rep.packets_sent,
        completed=rep.items_completed,
        partial=rep.items_partial,
        file=rep.path,
        pending_bytes=rt.queue.stored_bytes,
    )

"""How a run stops or stalls without losing a frame: Ctrl-C/SIGTERM (:class:`RunInterrupted`, the frame in
progress marked ``interrupted`` for a rerun), a write the loop cannot go on without (:class:`StorageFailed`), and a
downlink pass whose file cannot be written (an event; its products stay queued).

Functions over the :class:`~.loop.FlightRuntime` (as :mod:`.frame_outcome` and :mod:`.frame_run`).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any

from .frame_outcome import withdraw, write_unwritten
from .telemetry import INTERRUPTED

if TYPE_CHECKING:
    from .loop import FlightRuntime


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped :meth:`FlightRuntime.run`: the frame in progress was marked ``interrupted`` (a rerun on
    the same folder takes it again) and the summary of the frames so far was written (``summary``)."""

    def __init__(self, summary: dict[str, Any], frames_done: int) -> None:
        super().__init__(f"interrupted after {frames_done} frame(s)")
        self.summary, self.frames_done = summary, frames_done


class StorageFailed(OSError):
    """A write the loop cannot go on without failed (the queue index or telemetry on a full or read-only disk:
    the error names the file): :meth:`FlightRuntime.run` stopped after writing the summary of the frames so far
    where it could (``summary``). The state on disk is what the last write left; a rerun goes on from it."""

    def __init__(self, exc: OSError, summary: dict[str, Any], frames_done: int) -> None:
        super().__init__(exc.errno, exc.strerror or str(exc), exc.filename)
        self.summary, self.frames_done = summary, frames_done


def interrupted(rt: FlightRuntime, error: str | None = None) -> None:
    """Ctrl-C (or ``error``, a storage failure that stops the loop): the frame in progress is marked
    ``interrupted`` (a rerun retries it), what it had queued is withdrawn, and the state saved."""
    why = {"error": error} if error else {}
    fid, rt._current = rt._current, None
    if fid is None:  # stopped in acquire, between its ledger entry and its save
        frames = rt.queue.state["frames"].items()
        fid = next((int(k) for k, e in frames if e["status"] == "in_progress" and k not in rt._stale), None)
    entry = rt.queue.state["frames"].get(str(fid)) if fid is not None else None
    if fid is not None and entry is not None and entry["status"] == "in_progress":
        rt._unwritten = None  # no frame line: a rerun takes the frame again
        entry.update(status="interrupted", reason=INTERRUPTED)
        withdraw(rt, fid, {}, reason="frame_interrupted")
        rt.tm.write("event", kind="interrupted", frame_id=fid, source=entry["source"], **why)
    else:  # between frames, or after the ledger closed the frame: its record is written if it was not
        write_unwritten(rt)
        rt.tm.write("event", kind="interrupted", frame_id=None, **why)
    rt.queue.save()


def downlink_pass(rt: FlightRuntime) -> None:
    """One downlink pass. A pass file that cannot be written (a full or read-only disk) is a ``downlink_failed``
    event naming the file and the error: its products stay queued for the next pass, and the loop goes on."""
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

"""The frame loop: acquire → validate → sample → score patches → reconstruct/encode → queue → telemetry.

:class:`FlightRuntime` owns the models (behind :class:`~.guard.ModelGuard`), the downlink queue, the
telemetry and the budgets. Each frame is streamed in strips of ``[camera] strip_rows`` rows (file frames
are one strip), so memory depends on the frame width, not its height. Every acquired frame is entered in the
ledger before it is processed and ends downlinked, queued, or dropped with a reason.

How a frame is taken in (ledger entry, faults, reader, memory check) is in :mod:`.frame_intake`, how a
readable frame runs (level, strip stream, deadline, cost update) in :mod:`.frame_run`, how a run stops (Ctrl-C,
SIGTERM, a failed write) and a downlink pass that cannot be written in :mod:`.stops`, how it ends
(products queued or withdrawn, its ``frame`` line) in :mod:`.frame_outcome`, what follows a frame's
end (its line, then the downlink pass when one is due) and what ends a run (``summary.json``) in
:mod:`.run_finish`, and the summary's sections beyond the frame accounting in :mod:`.run_summary`: functions over
the runtime, which this module sequences.
What a boot sets up before the first frame (codec check, faults, heap, telemetry, queue, models and their
calibration, memory baselines) is in :mod:`.boot`.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeae.folder_lock import hold
from edgeae.wire.packets import WireConfig
from edgeae.wire.sparse import TooManyPackets

from .boot import boot, refuse_boot, take_back_telemetry, telemetry_size
from .boot import check_codec as check_codec
from .boot import padded_batch as padded_batch
from .budget import CostModel, Level
from .faults import FaultPlan, SimulatedReboot
from .frame_intake import (
    acquire,
    drop,
    late_fault,
    memory_fit,
    open_reader,
    packet_advice,
    packet_refusal,
)
from .frame_intake import sparse_packet_estimate as sparse_packet_estimate
from .frame_outcome import queue_products, withdraw
from .frame_run import run_frame
from .frames import FrameError, FrameReader
from .guard import ModelGuard
from .memory_meter import MemoryMeter
from .mission import Mission
from .onboard import Loader, OnboardModels
from .queue import DownlinkQueue, IndexNotSaved
from .run_finish import finish_frame, finish_run, pass_opportunity
from .score import PatchScorer, ScoreEngine
from .state import (
    check_mission_state,
    discard_state,
    frames_to_take,
    holds_state,
    retake_candidates,
    state_present,
    write_mission_state,
)
from .stops import RunInterrupted as RunInterrupted
from .stops import StorageFailed as StorageFailed
from .stops import interrupted
from .telemetry import TelemetryWriter


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1e3


PROBE_PATCHES_MAX = 16
"""Patches one cost probe times on a model with a dynamic batch (enough for a per-patch time, little memory)."""


class FlightRuntime:
    """One boot of the flight software on a mission; ``out_dir`` holds everything that survives a reboot."""

    # set up by the boot (:func:`.boot.boot`)
    loader: Loader
    progress: bool
    wire: WireConfig
    faults: FaultPlan
    heap: dict[str, Any]
    meter: MemoryMeter
    rss_boot: int  # bytes
    tm: TelemetryWriter
    queue: DownlinkQueue
    cost: CostModel
    records: list[dict[str, Any]]
    frame_no: int
    since_pass: int
    skipped_already_acquired: int
    inputs: dict[str, list[str]]
    not_written: dict[str, str]
    models: OnboardModels
    rss_loaded: int  # bytes
    boot_warnings: list[str]
    machine: dict[str, Any]  # the CPU, cores, load at boot and versions (bench_machine.machine_record)
    _cpu0: float
    _current: int | None
    boot_no: int  # this boot's number on the state (state.next_boot), in each ledger entry it writes
    retakes: dict[str, list[int]]  # the frames dropped memory_unavailable a new frame of their source takes again
    _stale: set[str]
    _unwritten: tuple[dict[str, Any], float] | None

    def __init__(
        self,
        mission: Mission,
        out_dir: str | os.PathLike[str],
        *,
        loader: Loader | None = None,
        inject: Sequence[str] = (),
        wire: WireConfig | None = None,
        progress: bool = False,
        parallel: str = "interpreters",
        keep_held: bool = False,
        frame_types: Collection[str] | None = None,
        fresh: bool = False,
        frame_bytes: Mapping[str, int] | None = None,
        reader_bytes: int | None = None,
    ) -> None:
        self.m = mission
        self.out = Path(out_dir)
        # the folder held for this boot (edgeae.folder_lock), released by close, or with ``keep_held`` (a caller that
        # writes more into the folder after the run: the CLI's report) only by release
        self._lock = contextlib.ExitStack()
        self.keep_held = keep_held
        self.frame_types = frame_types  # the frame file suffixes run will read, when known: only their decoders load
        # the largest file of each frame type decoded whole (PNG, JPEG, PNM) among them, when known: the boot plans
        # its decode with those bytes (boot_memory.whole_decode_at_boot; else a stated bound)
        self.frame_bytes = dict(frame_bytes) if frame_bytes is not None else None
        # what the run's TIFF frames' readers state they hold (boot_memory.tiff_reader_bytes), when known: the boot
        # plans a TIFF's reader with it (else 2.5 bands, 1.5 tiled)
        self.reader_bytes = reader_bytes
        existed = self.out.exists()
        self.out.mkdir(parents=True, exist_ok=True)
        try:  # before any state is read: another run writing this folder refuses this one (FolderBusy), untouched
            self.held = self._lock.enter_context(hold(self.out, "flight run")) is not None  # False: cannot lock
        except BaseException:
            if not existed:
                with contextlib.suppress(OSError):
                    self.out.rmdir()
            raise
        if fresh:  # --fresh: the state removed under this boot's own hold (no other run can take the folder between)
            try:
                discard_state(self.out)
            except BaseException:
                self.release()
                raise
        first_boot = not holds_state(self.out)
        before = state_present(self.out)  # a user's own summary.json, downlink/... in an existing --out
        lines = telemetry_size(self.out)  # what the earlier boots wrote: a refused boot's lines are taken back
        try:  # before any state is opened: another mission's state is refused with its folder untouched (its
            self.settings_changed = check_mission_state(self.out, mission)  # telemetry is no record of this run)
        except BaseException:
            self.release()
            raise
        try:
            self._boot(loader, inject, wire, progress, parallel)
        except BaseException as exc:  # a refused boot: nothing flew, so a first boot removes what it created, only
            try:  # that; its files closed first, removed while the folder is still held (no other run takes it)
                try:
                    self._stop()
                finally:
                    if first_boot:
                        discard_state(self.out, keep=before)
                    elif isinstance(exc, KeyboardInterrupt):  # Ctrl-C, SIGTERM: stopped, not refused; its lines
                        take_back_telemetry(self.out, lines)  # taken back (the earlier boots' as they left them)
                    else:  # the earlier boots' telemetry as they left it, and one line saying this boot was refused
                        refuse_boot(self.out, lines, mission, exc)
            finally:
                self.release()  # the caller gets no runtime to release it with
            if first_boot and not existed:
                with contextlib.suppress(OSError):  # something else was put there meanwhile: leave it
                    self.out.rmdir()
            raise
        try:
            write_mission_state(self.out, mission)
        except BaseException:  # the state folder is kept (a rerun goes on from it); what the boot opened is closed
            try:
                self._stop()
            finally:
                self.release()
            raise

    def _boot(
        self, loader: Loader | None, inject: Sequence[str], wire: WireConfig | None, progress: bool, parallel: str
    ) -> None:
        boot(self, loader, inject, wire, progress, parallel)  # what the boot sets up: .boot

    def _probe(self, level: Any, slack_ms: float) -> dict[str, float] | None:
        """Re-measure costs the frame's level did not exercise, when the frame left time to spare, so a
        noisy estimate cannot keep the ladder at the bottom for ever."""
        out: dict[str, float] = {}
        if level.score_every == 0 and self.models.scorer is not None:
            q = max(1, self.cost.batch)  # a model's static batch: n patches cost ceil(n / q) * q
            # at most one static batch of the model (or PROBE_PATCHES_MAX for a dynamic one): a probe after a
            # sparse_only frame must not allocate a mission-sized batch's temporaries (batch = 1000: +32 MiB)
            cap = min(self.models.scorer.batch, q if q > 1 else PROBE_PATCHES_MAX)
            n = min(cap, int(0.5 * slack_ms / self.cost.ms_per_patch) // q * q)
            if n >= 1:
                out["ms_per_patch"] = self.models.time_batch(n) * n / (math.ceil(n / q) * q)  # per slot run
                self.cost.ms_per_patch = self.cost._ema(self.cost.ms_per_patch, out["ms_per_patch"])
            else:  # not one patch fits in the slack: forget part of the estimate so a later frame probes
                self.cost.ms_per_patch *= 0.5
        return out or None

    # ------------------------------------------------------------------------------------------ frames
    def process(self, frame: str | os.PathLike[str] | np.ndarray, frame_id: int | None = None) -> dict[str, Any]:
        """Run one frame through the loop and return its telemetry record (``frame_id``: retry that frame of
        the ledger, which an interrupted run did not finish)."""
        t0 = time.perf_counter()
        self._cpu0 = time.process_time()
        rec = acquire(self, frame, frame_id)
        self._unwritten = (rec, t0)  # until its frame line is written
        fid, fno = rec["frame_id"], rec["frame_no"]
        self.meter.reset()
        rec["events"] = self.models.scrub(fno, fault_frame=fid)
        if self.models.suspect:
            rec["flags"].append("weights_unverified:" + ",".join(sorted(self.models.suspect)))
        lateness = late_fault(self, rec)
        reader = open_reader(self, frame, rec)
        if reader is None:
            return self._finish(rec, t0)
        too_many = packet_refusal(self.m, reader.header.width, reader.header.height)
        if too_many is not None:  # before sampling: the wire format could not carry the frame's pixels
            return self._finish(drop(self, rec, "too_many_packets", f"the frame's {too_many}"), t0)
        refusal, floor = memory_fit(self, reader, rec)
        if refusal is not None:
            return self._finish(drop(self, rec, *refusal), t0)  # memory_budget, or memory_unavailable (the room)
        rec["acquire_ms"] = _ms(t0)
        try:
            rec = self._run_frame(reader, rec, fid, fno, lateness, t0, floor)
        except IndexNotSaved:  # not the frame's failure: the loop stops and the frame is retried (run, stops.py)
            raise
        except FrameError as exc:  # the pixels could not be decoded (damaged file, decoder error)
            release_traceback(exc)
            self.tm.write("event", kind="frame_error", frame_id=fid, error=str(exc))
            withdraw(self, fid, rec)
            rec = drop(self, rec, "unreadable", str(exc))
        except TooManyPackets as exc:  # its pixels compressed too little for the wire format (packetised last)
            release_traceback(exc)
            advice = packet_advice(self.m, exc)
            self.tm.write("event", kind="too_many_packets", frame_id=fid, detail=advice)
            withdraw(self, fid, rec)
            rec = drop(self, rec, "too_many_packets", advice)
        except Exception as exc:  # never let one frame stop the loop (cv2.error, MemoryError, a full disk, ...)
            release_traceback(exc)
            self.tm.write("event", kind="frame_error", frame_id=fid, error=f"{type(exc).__name__}: {exc}")
            withdraw(self, fid, rec)
            rec = drop(self, rec, "frame_error", f"{type(exc).__name__}: {exc}")
        # outside the frame's try: what follows its end (its line, the downlink pass) is not the frame's failure,
        # so it never withdraws or drops a frame that was processed (a pass that fails is a downlink event)
        return self._finish(rec, t0)

    def _model_bytes(self) -> int:
        return self.models.nbytes

    # the models, for callers that inspect them (tests, frame_work)
    @property
    def anomaly(self) -> ModelGuard | None:
        return self.models.anomaly

    @property
    def recon(self) -> ModelGuard | None:
        return self.models.recon

    @property
    def scorer(self) -> PatchScorer | None:
        return self.models.scorer

    @property
    def engine(self) -> ScoreEngine | None:
        return self.models.engine

    @property
    def threshold(self) -> float | None:
        return self.models.threshold

    def _run_frame(
        self,
        reader: FrameReader,
        rec: dict[str, Any],
        fid: int,
        fno: int,
        lateness: float,
        t0: float,
        floor: Level | None = None,
    ) -> dict[str, Any]:
        return run_frame(self, reader, rec, fid, lateness, t0, floor)

    def _queue_products(self, work: Any, rec: dict[str, Any]) -> dict[str, int]:
        return queue_products(self, work, rec)  # a method: tests stop a run here (monkeypatch on the class)

    def _finish(self, rec: dict[str, Any], t0: float) -> dict[str, Any]:
        return finish_frame(self, rec, t0)  # its line, then the downlink pass when one is due: .run_finish

    # ---------------------------------------------------------------------------------------- downlink
    def downlink_pass(self) -> None:
        """One downlink pass (:func:`.stops.downlink_pass`: a pass file that cannot be written is an event), its
        opportunity recorded in the state (the schedule holds across boots). With nothing queued no pass file is
        written (it would be empty): a ``pass_skipped`` event says so, and the pass number is not used. A pass that
        recorded no pass (skipped, or its file not written) saves the index for its mark all the same (until session
        34 the mark of a run's last, skipped, pass was lost and the next boot passed early); a save that fails is
        tried again by the next frame or :meth:`finish`."""
        pass_opportunity(self)  # .run_finish

    def run(
        self, frames: Sequence[str | os.PathLike[str]], inputs: dict[str, list[str]] | None = None
    ) -> dict[str, Any]:
        """Process frames (after a reboot or an interrupted run, skipping as many of each source as the ledger
        holds, retrying the one that was interrupted); summarise (``inputs``: notes on the frame arguments, kept
        in the summary). Ctrl-C raises :class:`RunInterrupted` after the summary is written, a write the loop
        cannot go on without (the queue index) :class:`StorageFailed`."""
        self.inputs = inputs or {}
        try:
            self.retakes = retake_candidates(self.queue.state["frames"])  # before any frame of this run
            for f, frame_id in frames_to_take(self.queue.state["frames"], frames, self._skip):
                self.process(f, frame_id)
        except SimulatedReboot:
            raise  # the state on disk is what a reboot leaves; the next boot writes the summary
        except KeyboardInterrupt:
            self.not_written.update(self._interrupted())
            raise RunInterrupted(self.finish(), self._frames_done()) from None
        except OSError as exc:  # a frame's own errors drop that frame; this one stops the loop (state unsaved)
            self.not_written.update(self._interrupted(error=str(exc)))  # the frame in progress as after Ctrl-C
            raise StorageFailed(exc, self.finish(), self._frames_done()) from exc
        except BaseException:  # an unexpected error: the frames so far still get their summary
            self.finish()
            raise
        return self.finish()

    def _frames_done(self) -> int:
        """Frames this boot finished (a record written again by a stop path counts once)."""
        return len({r.get("frame_id") for r in self.records})

    def _skip(self, source: str) -> None:
        self.skipped_already_acquired += 1
        self.tm.write("event", kind="skip_already_acquired", source=source)

    def _interrupted(self, error: str | None = None) -> dict[str, str]:
        return interrupted(self, error)  # a method: tests stop a run here

    def close(self) -> None:
        """Stop telemetry, models and memory tracing without a summary; release the folder (with ``keep_held``,
        :meth:`release` does)."""
        try:
            self._stop()
        finally:
            if not getattr(self, "keep_held", False):
                self.release()

    def _stop(self) -> None:
        for part in ("models", "tm", "meter"):
            obj = getattr(self, part, None)  # a boot refused early has not made them all
            if obj is not None:
                obj.close() if part != "meter" else obj.stop()

    def release(self) -> None:
        """Let the folder go: another run may take it from now on (idempotent)."""
        lock = getattr(self, "_lock", None)
        if lock is not None:
            lock.close()  # a second close releases nothing more

    def finish(self) -> dict[str, Any]:
        """Write ``summary.json`` of every boot on this state (from ``telemetry.jsonl``) and close; return the
        summary. A file that cannot be written (``summary.json``, a telemetry line, the queue index at a stop) is in
        the returned summary's ``not_written`` (``{path: error}``), not an error (``summary.json``'s also an
        ``output_not_written`` event): the frames are in ``telemetry.jsonl`` and the queue index, or in memory."""
        return finish_run(self)  # .run_finish


def release_traceback(exc: BaseException) -> None:
    """Drop the tracebacks of a frame's error and of the errors it chains. Raised through the prefetch thread's
    generators, a traceback holds their frames (strip buffers, the frame's work, a reader's TiffFile) in a
    reference cycle that only the garbage collector frees: until then the next frame's memory would count them
    (after truncated 8,192-row NAC strips, up to 11 MiB more: docs/firmware_sim.md). The record keeps the message."""
    todo: list[BaseException | None] = [exc]
    seen: set[int] = set()
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        e.__traceback__ = None
        todo += [e.__cause__, e.__context__]

"""The frame loop: acquire → validate → sample → score patches → reconstruct/encode → queue → telemetry.

:class:`FlightRuntime` owns the models (behind :class:`~.guard.ModelGuard`), the downlink queue, the
telemetry and the budgets. Each frame is streamed in strips of ``[camera] strip_rows`` rows (file frames
are one strip), so memory depends on the frame width, not its height. Every acquired frame is entered in the
ledger before it is processed and ends downlinked, queued, or dropped with a reason.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeae.tiling import axis_starts
from edgeae.wire.codec import resolve_sample_codec
from edgeae.wire.packets import WireConfig, overhead, packetise
from edgeae.wire.products import AnomalyPatch, TelemetryRecord

from .budget import LADDER, CostModel, MemoryMeter, plan_memory, rss_bytes
from .faults import FaultPlan, SimulatedReboot, parse_faults
from .frames import ArrayFrame, FrameError, FrameReader, open_frame
from .guard import ModelGuard
from .heap import apply_heap_policy
from .mission import Mission, MissionError
from .onboard import Loader, OnboardModels, default_loader
from .queue import PENDING, DownlinkQueue
from .reader_wrappers import Corrupted, Demosaiced
from .score import PatchScorer, ScoreEngine
from .sparse_stream import sparse_packets
from .state import (
    check_mission_state,
    discard_state,
    frames_to_take,
    holds_state,
    state_present,
    write_mission_state,
)
from .telemetry import INTERRUPTED, History, TelemetryWriter, read_history, summarise, write_summary
from .validate import check_header


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1e3


LADDER_INDEX = {lv.name: lv.index for lv in LADDER}
NO_ANOMALY_MODEL = (
    "the mission names no [anomaly] model: no patch is scored and no anomaly is sent, only sparse pixels "
    "(give one with --anomaly-model or [anomaly] model)"
)


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped :meth:`FlightRuntime.run`: the frame in progress was marked ``interrupted`` (a rerun on
    the same folder takes it again) and the summary of the frames so far was written (``summary``)."""

    def __init__(self, summary: dict[str, Any], frames_done: int) -> None:
        super().__init__(f"interrupted after {frames_done} frame(s)")
        self.summary, self.frames_done = summary, frames_done


class FlightRuntime:
    """One boot of the flight software on a mission; ``out_dir`` holds everything that survives a reboot."""

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
    ) -> None:
        self.m = mission
        self.out = Path(out_dir)
        first_boot, existed = not holds_state(self.out), self.out.exists()
        before = state_present(self.out)  # a user's own summary.json, downlink/... in an existing --out
        self.settings_changed = check_mission_state(self.out, mission)  # before any state is opened
        self.out.mkdir(parents=True, exist_ok=True)
        try:
            self._boot(loader, inject, wire, progress, parallel)
        except BaseException:  # a refused boot: nothing flew, so a first boot removes what it created, only that
            self.close()
            if first_boot:
                discard_state(self.out, keep=before)
                if not existed:
                    with contextlib.suppress(OSError):  # something else was put there meanwhile: leave it
                        self.out.rmdir()
            raise
        write_mission_state(self.out, mission)

    def _boot(
        self, loader: Loader | None, inject: Sequence[str], wire: WireConfig | None, progress: bool, parallel: str
    ) -> None:
        mission = self.m
        self.loader = loader or default_loader
        self.progress = progress  # a tqdm bar per streamed frame (tqdm comes with the ground extra)
        dl = mission.downlink
        self.wire = wire or WireConfig(dl.max_packet_bytes, resolve_sample_codec(dl.codec), band_rows=dl.band_rows)
        self._cpu0 = time.process_time()
        self.faults = FaultPlan(parse_faults([*mission.runtime.inject, *inject]), seed=mission.sampling.seed)
        self.heap = apply_heap_policy(mission.runtime.heap)  # before any thread allocates
        self.meter = MemoryMeter(mission.runtime.measure_memory and mission.runtime.trace_allocations)
        self.meter.start()
        gc.collect()  # garbage pending at boot would inflate the baseline and hide later growth
        self.rss_boot = rss_bytes()  # before models and buffers: the Python + numpy baseline
        self.tm = TelemetryWriter(self.out / "telemetry.jsonl")
        self.queue = DownlinkQueue(self.out / "queue", mission.budget.queue_capacity_bytes)
        self.cost = CostModel()
        self.records: list[dict[str, Any]] = []  # this boot's frame records
        self.frame_no = 0  # frames acquired in this boot
        self.since_pass = 0
        self.skipped_already_acquired = 0
        self.inputs: dict[str, list[str]] = {}  # notes on the frame arguments (FrameList.notes), for the summary
        self._current: int | None = None  # the frame id being processed
        self._unwritten: tuple[dict[str, Any], float] | None = None  # its record and start, until written
        self.tm.write(
            "start",
            mission=mission.name,
            mission_file=mission.source_path,
            pid=os.getpid(),
            heap=self.heap,
            resumed=self.queue.recovered,  # false: a fresh state, earlier lines belong to another
        )
        if self.settings_changed:
            self.tm.write("event", kind="mission_settings_changed", changes=self.settings_changed)
        if self.queue.recovered:
            self.tm.write(
                "recovery",
                items=len(self.queue.items),
                pending=len(self.queue.pending()),
                lost=self.queue.lost_on_recovery,
                next_frame_id=self.queue.state["next_frame_id"],
            )
        if not mission.anomaly.model:
            self.tm.write("event", kind="no_anomaly_model", detail=NO_ANOMALY_MODEL)
        self.models = OnboardModels(mission, self.out, self.loader, self.faults, self.tm, parallel)
        if self.models.scorer is not None:
            self.cost.ms_per_patch = self.models.calibrate()
            eng = self.models.engine  # a part batch costs a whole one: learn per patch from full batches
            self.cost.min_patches = eng.batch if eng is not None else self.models.scorer.batch
            self.cost.batch = padded_batch(self.models.scorer.predictor)
        self.rss_loaded = rss_bytes()  # + interpreter libraries, sessions and model images
        self._check_fixed_camera()

    def _check_fixed_camera(self) -> None:
        """A fixed camera: refuse to fly what cannot fit (buffers over the memory budget, a frame the wire
        format cannot carry)."""
        mission, cam = self.m, self.m.camera
        if not (cam.width and (cam.height or cam.source == "strips")):
            return
        plan = plan_memory(mission, cam.width, cam.height, self._model_bytes(), cam.channels)
        self.tm.write("event", kind="memory_plan", plan=plan.as_dict(), budget=mission.budget.memory_bytes)
        n_packets = sparse_packet_estimate(mission, cam.width, cam.height)
        if n_packets >= 2**16:
            raise MissionError(
                f"{mission.source_path}: a full frame's sparse pixels need about {n_packets:,} packets, more "
                "than the wire format's 65,535 per product: raise [downlink] max_packet_bytes or lower keep"
            )
        if plan.total > mission.budget.memory_bytes:
            raise MissionError(
                f"{mission.source_path}: the buffers need {plan.total:,} B but [budget] memory_bytes is "
                f"{mission.budget.memory_bytes:,} B ({plan.as_dict()})"
            )

    def _probe(self, level: Any, slack_ms: float) -> dict[str, float] | None:
        """Re-measure costs the frame's level did not exercise, when the frame left time to spare, so a
        noisy estimate cannot keep the ladder at the bottom for ever."""
        out: dict[str, float] = {}
        if level.score_every == 0 and self.models.scorer is not None:
            q = max(1, self.cost.batch)  # a model's static batch: n patches cost ceil(n / q) * q
            n = min(self.models.scorer.batch, int(0.5 * slack_ms / self.cost.ms_per_patch) // q * q)
            if n >= 1:
                out["ms_per_patch"] = self.models.time_batch(n) * n / (math.ceil(n / q) * q)  # per slot run
                self.cost.ms_per_patch = self.cost._ema(self.cost.ms_per_patch, out["ms_per_patch"])
            else:  # not one patch fits in the slack: forget part of the estimate so a later frame probes
                self.cost.ms_per_patch *= 0.5
        return out or None

    # ------------------------------------------------------------------------------------------ frames
    def _drop(self, rec: dict[str, Any], reason: str, detail: str = "") -> dict[str, Any]:
        rec.update(status="dropped", reason=reason, detail=detail)
        self.queue.state["frames"][str(rec["frame_id"])] = {
            "source": rec["source"],
            "status": "dropped",
            "reason": f"{reason}: {detail}" if detail else reason,
            "code": reason,  # what the summary counts drops by; the detail stays in the ledger
        }
        self.queue.save()
        return rec

    def _reboot_if_due(self, fid: int) -> None:
        """The ``reboot`` fault placed before frame ``fid``: it fires once per output folder, so the same command
        run again recovers instead of rebooting again before the same frame."""
        reboot = self.faults.at(fid, "reboot")
        fired: list[str] = self.queue.state.setdefault("faults_fired", [])
        if reboot is None or str(reboot) in fired:
            return
        fired.append(str(reboot))
        self.queue.save()
        self.tm.write("event", kind="fault_injected", fault=str(reboot))
        self.faults.mark(reboot)
        self.tm.close()
        self.meter.stop()
        self.models.close()
        raise SimulatedReboot(f"reboot before frame {fid}")

    def _acquire(self, frame: str | os.PathLike[str] | np.ndarray, frame_id: int | None) -> dict[str, Any]:
        """Enter the frame in the ledger (``in_progress``) under the next frame id, or under ``frame_id`` when
        it retries a frame an interrupted run did not finish; its record so far."""
        fno = self.frame_no
        self.frame_no += 1
        # faults are placed by frame id (counted across reboots)
        fid = int(self.queue.state["next_frame_id"]) if frame_id is None else frame_id
        if frame_id is None:
            self._reboot_if_due(fid)
            self.queue.state["next_frame_id"] = fid + 1
        source = "array" if isinstance(frame, np.ndarray) else str(frame)
        self.queue.state["frames"][str(fid)] = {"source": source, "status": "in_progress", "reason": ""}
        self.queue.save()
        self._current = fid
        rec: dict[str, Any] = {"frame_id": fid, "frame_no": fno, "source": source, "flags": [], "events": []}
        if frame_id is not None:
            rec["flags"].append("retried_after_interrupt")
        return rec

    def _late(self, rec: dict[str, Any]) -> float:
        """The lateness (ms) of a ``late`` fault placed on this frame, else 0."""
        late = self.faults.at(rec["frame_id"], "late")
        lateness = float(late.arg) if late and late.arg else (0.6 * self.m.budget.frame_ms if late else 0.0)
        if late:
            self.tm.write("event", kind="fault_injected", fault=str(late), lateness_ms=lateness)
            self.faults.mark(late)
            rec["flags"].append("late")
        rec["lateness_ms"] = lateness
        return lateness

    def _open(self, frame: str | os.PathLike[str] | np.ndarray, rec: dict[str, Any]) -> FrameReader | None:
        """The frame's reader, damaged by a ``bad-frame`` fault, its header checked, demosaiced when the camera
        has a colour filter; None (the frame dropped with its reason) when it cannot be flown."""
        fid = rec["frame_id"]
        try:
            reader: FrameReader = ArrayFrame(frame, "array") if isinstance(frame, np.ndarray) else open_frame(frame)
        except (FrameError, OSError) as exc:
            self._drop(rec, "unreadable", str(exc))
            return None
        except Exception as exc:  # any reader failure drops this frame only, with its reason
            self._drop(rec, "unreadable", f"{type(exc).__name__}: {exc}")
            return None
        bad = self.faults.at(fid, "bad-frame")
        if bad is not None:
            self.tm.write("event", kind="fault_injected", fault=str(bad))
            self.faults.mark(bad)
            reader = Corrupted(reader, bad.arg or "nan")
        verdict = check_header(reader.header, self.m.camera)  # the frame as stored (before any demosaicing)
        if not verdict.ok:
            self._drop(rec, f"invalid_{verdict.reason}", verdict.detail)
            return None
        return self._colour_filter(reader, rec)

    def _memory_refusal(self, reader: FrameReader, rec: dict[str, Any]) -> str | None:
        """Why the frame's buffers cannot fit the memory budget now, or None."""
        h, w = reader.header.height, reader.header.width
        plan = plan_memory(self.m, w, h, self._model_bytes(), self.m.camera.channels)
        rec["memory_plan"] = plan.total
        held = max(0, rss_bytes() - self.rss_boot)  # what the process already holds beyond the boot baseline
        rec["memory_predicted"] = held + plan.total
        budget = self.m.budget.memory_bytes
        if plan.total > budget:
            return f"needs {plan.total} B > {budget} B"
        if held + plan.total > budget:
            return (
                f"the process holds {held} B over its boot baseline; with this frame's {plan.total} B of buffers "
                f"that exceeds {budget} B"
            )
        return None

    def process(self, frame: str | os.PathLike[str] | np.ndarray, frame_id: int | None = None) -> dict[str, Any]:
        """Run one frame through the loop and return its telemetry record (``frame_id``: retry that frame of
        the ledger, which an interrupted run did not finish)."""
        t0 = time.perf_counter()
        self._cpu0 = time.process_time()
        rec = self._acquire(frame, frame_id)
        self._unwritten = (rec, t0)  # until its frame line is written
        fid, fno = rec["frame_id"], rec["frame_no"]
        self.meter.reset()
        rec["events"] = self.models.scrub(fno, fault_frame=fid)
        if self.models.suspect:
            rec["flags"].append("weights_unverified:" + ",".join(sorted(self.models.suspect)))
        lateness = self._late(rec)
        reader = self._open(frame, rec)
        if reader is None:
            return self._finish(rec, t0)
        refusal = self._memory_refusal(reader, rec)
        if refusal is not None:
            return self._finish(self._drop(rec, "memory_budget", refusal), t0)
        rec["acquire_ms"] = _ms(t0)
        try:
            return self._finish(self._run_frame(reader, rec, fid, fno, lateness, t0), t0)
        except FrameError as exc:  # the pixels could not be decoded (damaged file, decoder error)
            self.tm.write("event", kind="frame_error", frame_id=fid, error=str(exc))
            self._withdraw(fid, rec)
            return self._finish(self._drop(rec, "unreadable", str(exc)), t0)
        except Exception as exc:  # never let one frame stop the loop (cv2.error, MemoryError, ...)
            self.tm.write("event", kind="frame_error", frame_id=fid, error=f"{type(exc).__name__}: {exc}")
            self._withdraw(fid, rec)
            return self._finish(self._drop(rec, "frame_error", f"{type(exc).__name__}: {exc}"), t0)

    def _withdraw(self, fid: int, rec: dict[str, Any], reason: str = "frame_dropped") -> None:
        """A frame that fails after some of its products were queued is dropped whole: those products are
        withdrawn (evicted, reason ``frame_dropped``, each an ``evicted`` event), so the ledger, the queue and
        the downlink agree."""
        withdrawn = []
        for it in self.queue.frame_items(fid):
            if it.status == PENDING:
                self.queue.withdraw(it, reason)
                self.tm.write("event", kind="evicted", item=it.id, product=it.kind, frame_id=fid,
                              bytes=it.wire_bytes - it.sent_bytes, reason=it.reason)  # fmt: skip
                withdrawn.append(it.id)
        if withdrawn:
            rec["evicted_items"] = withdrawn
            self.queue.save()

    def _colour_filter(self, reader: FrameReader, rec: dict[str, Any]) -> FrameReader:
        """Demosaic a declared colour-filter mosaic (``[camera] bayer``) before anything reads the pixels;
        flag an undeclared frame that looks like one (2×2 repeating values)."""
        from edgeae.bayer import looks_like_mosaic

        pattern = self.m.camera.bayer
        if pattern:
            wrapped = Demosaiced(reader, pattern)  # the stored channels were checked (1 or 3)
            rec["camera"] = wrapped.info  # updated while streaming: demosaiced turns true when it is
            return wrapped
        if isinstance(reader, ArrayFrame) and looks_like_mosaic(reader.array):
            rec["flags"].append("looks_like_bayer_mosaic")
            rec["camera"] = {"bayer": None, "demosaiced": False, "looks_like_mosaic": True}
            self.tm.write("event", kind="looks_like_bayer_mosaic", source=rec["source"],
                          hint='set [camera] bayer = "RGGB" (or the sensor\'s pattern) to demosaic it')  # fmt: skip
        return reader

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
        self, reader: FrameReader, rec: dict[str, Any], fid: int, fno: int, lateness: float, t0: float
    ) -> dict[str, Any]:
        from .frame_work import FrameWork

        m, hdr = self.m, reader.header
        streamed = m.camera.source == "strips"
        strip_rows = m.camera.strip_rows if m.camera.source == "strips" else hdr.height
        ys = _patch_rows(hdr.height, m.anomaly, streamed)
        xs = axis_starts(hdr.width, m.anomaly.patch, m.anomaly.stride) if hdr.width >= m.anomaly.patch else []
        n_patches = len(ys) * len(xs) if self.scorer is not None else 0
        available = m.budget.frame_ms - lateness
        mpix = hdr.height * hdr.width / 1e6
        recon = self.recon is not None
        level = self.cost.choose(available, mpix, n_patches, recon, m.sampling.keep, m.budget.safety)
        rec["level"] = {"index": level.index, "name": level.name}
        rec["predicted_ms"] = self.cost.predict(level, mpix, n_patches, recon, m.sampling.keep)
        rec["available_ms"] = available
        keep = max(m.sampling.min_keep, m.sampling.keep * level.keep_factor)
        work = FrameWork(self, reader, fid, keep, level, ys, xs, t0, available, streamed)
        try:
            if not work.stream(strip_rows):
                return self._drop(rec, work.drop_reason, work.drop_detail)
            report = work.report()
            rec["flags"] += report.pop("flags_add")
            rec.update(report)
            t_prod = time.perf_counter()
            products = self._queue_products(work, rec)
            rec["timing_ms"]["products"] = _ms(t_prod)
        finally:
            work.close()  # the sparse spool, also when something failed
        rec["status"] = "processed"
        self.queue.state["frames"][str(fid)] = {"source": rec["source"], "status": "processed", "reason": ""}
        self.queue.save()
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
        base = total - tm["score"] - tm.get("recon", 0.0) - tm["products"]
        self.cost.update(
            mpix=mpix,
            base_ms=base,
            kept_mpix=work.kept / 1e6,
            products_ms=tm["products"],
            patches=work.topk.scored,
            score_ms=tm["score"],
            recon_ms=tm.get("recon"),
        )
        rec["probe"] = self._probe(level, available - total)
        return rec

    def _queue_products(self, work: Any, rec: dict[str, Any]) -> dict[str, int]:
        queued: dict[str, int] = {"patch": 0, "sparse": 0, "telemetry": 0, "latent": 0}
        evicted: list[int] = []
        bits = self.m.camera.bit_depth
        for i, c in enumerate(work.topk.ranked()):
            ap = AnomalyPatch(work.fid, c.x, c.y, self.m.anomaly.patch, float(c.score), c.pixels, bits, i)
            item, ev = self.queue.put("patch", work.fid, packetise(ap, config=self.wire))
            queued["patch"] += item.wire_bytes if item.status == "pending" else 0
            evicted += [e.id for e in ev]
        sf, counts = work.sparse_frame()
        if self.wire.layout == 2 or self.wire.codec == "none":  # from the row counts: bounded memory
            packets = sparse_packets(sf, counts, self.wire)
        else:  # layout 1 with a codec: packetise regenerates the whole mask to cut rows
            packets = iter(packetise(sf, config=self.wire))
        item, ev = self.queue.put("sparse", work.fid, packets)
        queued["sparse"] += item.wire_bytes if item.status == "pending" else 0
        evicted += [e.id for e in ev]
        work.close()
        if work.latents is not None:
            item, ev = self.queue.put("latent", work.fid, packetise(work.latents, config=self.wire))
            queued["latent"] += item.wire_bytes if item.status == "pending" else 0
            evicted += [e.id for e in ev]
        summary: dict[str, Any] = {k: rec[k] for k in ("frame_id", "level", "flags") if k in rec}
        summary["anomaly"] = rec.get("anomaly", {}).get("patches", [])[:16]
        tr = TelemetryRecord(work.fid, _json_bytes(summary))
        item, ev = self.queue.put("telemetry", work.fid, packetise(tr, config=self.wire))
        queued["telemetry"] += item.wire_bytes if item.status == "pending" else 0
        evicted += [e.id for e in ev]
        refused = [
            it for it in self.queue.items.values() if it.frame_id == work.fid and it.reason == "queue_full"
        ]  # this frame's products no eviction made room for
        for it in refused:
            self.tm.write("event", kind="queue_refused", item=it.id, product=it.kind, frame_id=it.frame_id,
                          bytes=it.wire_bytes, reason=it.reason)  # fmt: skip
        for iid in evicted:
            it = self.queue.items[iid]
            self.tm.write("event", kind="evicted", item=it.id, product=it.kind, frame_id=it.frame_id,
                          bytes=it.wire_bytes - it.sent_bytes, reason=it.reason)  # fmt: skip
        if evicted:
            rec["evicted_items"] = evicted
        if refused:
            rec["refused_items"] = [it.id for it in refused]
        return queued

    def _finish(self, rec: dict[str, Any], t0: float) -> dict[str, Any]:
        self._complete(rec, t0)
        # the frame line before the pass: Ctrl-C or a crash in the pass cannot lose a finished frame's record
        # (the ledger says processed, so no later run takes the frame again to write it)
        self._write_record(rec)
        self.since_pass += 1
        # downlink_bytes_per_pass = 0: no passes at all (no empty pass files)
        if self.m.budget.downlink_bytes_per_pass > 0 and self.since_pass >= self.m.budget.pass_every_frames:
            self.downlink_pass()
        return rec

    def _complete(self, rec: dict[str, Any], t0: float) -> None:
        """The frame's total time, CPU time and memory, into its record."""
        rec.setdefault("timing_ms", {})["total"] = rec.get("timing_ms", {}).get("total", _ms(t0))
        rec["cpu_ms"] = (time.process_time() - self._cpu0) * 1e3  # all threads: independent of machine load
        mem = self.meter.sample()
        budget = self.m.budget.memory_bytes
        growth = max(0, int(mem["rss_frame_peak"]) - self.rss_boot)  # what the process really held
        rec["memory"] = {
            **mem,
            "rss_boot": self.rss_boot,
            "rss_growth_peak": growth,
            "budget": budget,
            "over_budget": growth > budget,
            "traced_over_budget": None if mem["traced_peak"] is None else mem["traced_peak"] > budget,
        }
        if rec["memory"]["over_budget"]:
            rec["flags"].append("memory_over_budget")

    def _write_record(self, rec: dict[str, Any]) -> None:
        """The frame's one ``frame`` line (``queue_pending_bytes``: what waits in the queue, before any pass)."""
        rec["queue_pending_bytes"] = self.queue.stored_bytes
        self.records.append(rec)
        self.tm.write("frame", **rec)
        self._unwritten = None
        self._current = None

    def _write_unwritten(self) -> int | None:
        """The record of a frame the ledger already holds as done (processed or dropped) but that was stopped
        before its ``frame`` line (Ctrl-C in the probe, an error): written now, as no rerun takes that frame
        again; its frame id, or None when there was none."""
        pending, self._unwritten = self._unwritten, None
        if pending is None:
            return None
        rec, t0 = pending
        entry = self.queue.state["frames"].get(str(rec["frame_id"]))
        if entry is None or entry["status"] in ("in_progress", "interrupted"):
            return None
        rec.setdefault("status", entry["status"])
        if "memory" not in rec:
            self._complete(rec, t0)
        self._write_record(rec)
        return int(rec["frame_id"])

    # ---------------------------------------------------------------------------------------- downlink
    def downlink_pass(self) -> None:
        rep = self.queue.downlink_pass(self.m.budget.downlink_bytes_per_pass, self.out / "downlink")
        self.since_pass = 0
        self.tm.write(
            "pass",
            index=rep.index,
            bytes=rep.bytes_sent,
            packets=rep.packets_sent,
            completed=rep.items_completed,
            partial=rep.items_partial,
            file=rep.path,
            pending_bytes=self.queue.stored_bytes,
        )

    def run(
        self, frames: Sequence[str | os.PathLike[str]], inputs: dict[str, list[str]] | None = None
    ) -> dict[str, Any]:
        """Process frames (after a reboot or an interrupted run, skipping as many of each source as the ledger
        holds, retrying the one that was interrupted); summarise (``inputs``: notes on the frame arguments, kept
        in the summary). Ctrl-C raises :class:`RunInterrupted` after the summary is written."""
        self.inputs = inputs or {}
        try:
            for f, frame_id in frames_to_take(self.queue.state["frames"], frames, self._skip):
                self.process(f, frame_id)
        except SimulatedReboot:
            raise  # the state on disk is what a reboot leaves; the next boot writes the summary
        except KeyboardInterrupt:
            self._interrupted()
            raise RunInterrupted(self.finish(), len(self.records)) from None
        except BaseException:  # an unexpected error: the frames so far still get their summary
            self.finish()
            raise
        return self.finish()

    def _skip(self, source: str) -> None:
        self.skipped_already_acquired += 1
        self.tm.write("event", kind="skip_already_acquired", source=source)

    def _interrupted(self) -> None:
        """Ctrl-C: the frame in progress is marked ``interrupted`` (a rerun retries it), what it had queued is
        withdrawn, and the state saved."""
        fid, self._current = self._current, None
        entry = self.queue.state["frames"].get(str(fid)) if fid is not None else None
        if fid is not None and entry is not None and entry["status"] == "in_progress":
            self._unwritten = None  # no frame line: a rerun takes the frame again
            entry.update(status="interrupted", reason=INTERRUPTED)
            self._withdraw(fid, {}, reason="frame_interrupted")
            self.tm.write("event", kind="interrupted", frame_id=fid, source=entry["source"])
        else:  # between frames, or after the ledger closed the frame: its record is written if it was not
            self._write_unwritten()
            self.tm.write("event", kind="interrupted", frame_id=None)
        self.queue.save()

    def close(self) -> None:
        """Stop telemetry, models and memory tracing without a summary (a refused boot)."""
        for part in ("models", "tm", "meter"):
            obj = getattr(self, part, None)  # a boot refused early has not made them all
            if obj is not None:
                obj.close() if part != "meter" else obj.stop()

    def finish(self) -> dict[str, Any]:
        """Write ``summary.json`` of every boot on this state (from ``telemetry.jsonl``) and close."""
        self._write_unwritten()  # a frame the ledger holds as done whose line an error stopped (run's except)
        history = read_history(self.out / "telemetry.jsonl")  # flushed per line: this boot's lines are there
        ledger = self.queue.state["frames"]
        records = [history.frames[k] for k in sorted(history.frames) if str(k) in ledger]
        if not records and self.records:  # telemetry lost: this boot's records are all there is
            records = self.records
        summary = summarise(self.queue, records, self._extra(history, records))
        write_summary(self.out / "summary.json", summary)
        self.tm.write("end", summary=summary["frames"])
        self.close()
        return summary

    def _extra(self, history: History, records: list[dict[str, Any]]) -> dict[str, Any]:
        """The summary's sections beyond the frame accounting (every boot unless they say ``this_boot``)."""
        processed = [r for r in records if r.get("status") == "processed"]
        fired = history.faults_fired() | set(self.faults.fired) | set(self.queue.state.get("faults_fired", []))
        return {
            "mission": self.m.name,
            "warnings": [NO_ANOMALY_MODEL] if not self.m.anomaly.model else [],
            "colour_filter": {
                "bayer": self.m.camera.bayer or None,
                "frames_demosaiced": sum(bool(r.get("camera", {}).get("demosaiced")) for r in processed),
                "frames_looking_like_mosaic": sum("looks_like_bayer_mosaic" in r["flags"] for r in records),
            },
            "budgets": {
                "memory_bytes": self.m.budget.memory_bytes,
                "frame_ms": self.m.budget.frame_ms,
                "downlink_bytes_per_pass": self.m.budget.downlink_bytes_per_pass,
            },
            "memory": self._memory_summary(records),
            "models": {
                r: (str(g.path) if g else None) for r, g in (("anomaly", self.anomaly), ("reconstruction", self.recon))
            },
            # a model the mission names that could not be loaded at boot: the run goes on without it (a flight
            # loop never stops for it), and the summary and console say so
            "models_refused": list(self.models.refused),
            # a rerun into the same folder continues the mission: frames already in its ledger are not taken again
            "skipped_already_acquired": self.skipped_already_acquired,
            "mission_settings_changed": self.settings_changed,
            "scrub_reloads": history.count("seu_detected"),
            "faults": [str(f) for f in self.faults.faults],
            # asked for but never injected in any boot (a frame id never reached, a model the fault needs not
            # loaded)
            "faults_not_fired": [str(f) for f in self.faults.faults if str(f) not in fired],
            "recovered_from_reboot": self.queue.recovered,
            "boots": max(1, history.boots),
            "this_boot": {
                "frames": len(self.records),
                "processed": sum(r.get("status") == "processed" for r in self.records),
                "skipped_already_acquired": self.skipped_already_acquired,
                "scrub_reloads": self.models.reloads,
                "faults_fired": sorted(set(self.faults.fired)),
            },
            "patches_per_s": _rate(records),
            "inputs": self.inputs,
        }

    def _memory_summary(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """Frame peaks over every boot's frames; the process's own figures (``rss_boot``, ``rss_peak``,
        ``rss_after_load``, ``rss_growth*``) of this boot."""
        # this process's own peak: the per-frame high-water marks and the boot; not getrusage's ru_maxrss,
        # which on Linux keeps the peak of the process image that exec'd us (a parent that held 500 MB)
        rss_peak = max(self.meter.rss_run_peak, self.rss_loaded, self.rss_boot, rss_bytes())
        mems = [r["memory"] for r in records if isinstance(r.get("memory"), dict)]
        growth = max([max(0, self.meter.rss_run_peak - self.rss_boot), *(int(m.get("rss_growth_peak") or 0)
                                                                          for m in mems)])  # fmt: skip
        traced = [int(m["traced_peak"]) for m in mems if isinstance(m.get("traced_peak"), int)]
        if self.meter.enabled:
            traced.append(self.meter.run_peak)
        budget = self.m.budget.memory_bytes
        return {
            # the budget is enforced on RSS growth over the boot baseline; the traced peak (only with
            # [runtime] trace_allocations) is shown beside it
            "enforced_on": "rss_growth_over_boot",
            "rss_frame_peak_bytes": max([self.meter.rss_run_peak, *(int(m.get("rss_frame_peak") or 0) for m in mems)]),
            "rss_growth_peak_bytes": growth,
            "traced_peak_bytes": max(traced) if traced else None,
            "within_budget": growth <= budget,
            "traced_within_budget": (max(traced) <= budget) if traced else None,
            "heap": self.heap,
            "rss_boot_bytes": self.rss_boot,
            "rss_peak_bytes": rss_peak,
            # interpreter arenas and code pages are outside tracemalloc: RSS growth over the boot baseline
            "rss_growth_bytes": rss_peak - self.rss_boot,
            "rss_after_load_bytes": self.rss_loaded,
            "rss_growth_in_frames_bytes": max(0, rss_peak - self.rss_loaded),
            "scope": "frame peaks and within_budget: every boot's frames; rss_boot, rss_peak, rss_after_load, "
            "rss_growth, rss_growth_in_frames: this boot's process",
        }


def sparse_packet_estimate(mission: Mission, width: int, height: int) -> int:
    """Packets a frame's sparse pixels need at the nominal keep fraction (raw samples, whole rows)."""
    item = 1 if mission.camera.bit_depth <= 8 else 2
    per_packet = max(1, (mission.downlink.max_packet_bytes - overhead("sparse")) // (mission.camera.channels * item))
    kept = int(height * width * mission.sampling.keep)
    return -(-kept // per_packet) + height // 8  # row boundaries waste a little of each packet


def padded_batch(predictor: Any) -> int:
    """The batch a model runs every call at (a LiteRT file converted with a static batch pads a part batch to
    it, so a part batch costs a whole one); 1 for a model with a dynamic batch (a call runs its patches)."""
    static = getattr(getattr(predictor, "_runner", None), "static_batch", None)
    return int(static) if isinstance(static, int) and static > 0 else 1


def _rate(records: list[dict[str, Any]]) -> float | None:
    scored = sum(r.get("patches", {}).get("scored", 0) for r in records)
    secs = sum(r["timing_ms"]["total"] for r in records if r.get("status") == "processed") / 1e3
    return scored / secs if secs > 0 and scored else None


def _patch_rows(height: int, an: Any, streamed: bool) -> list[int]:
    if height < an.patch:
        return []
    if streamed:  # patches never cross strips: the grid stops at the last whole patch row
        return list(range(0, height - an.patch + 1, an.patch))
    return axis_starts(height, an.patch, an.stride)


def _json_bytes(obj: Any) -> bytes:
    from .telemetry import dumps

    return dumps(obj).encode()

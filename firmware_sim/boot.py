"""One boot of the flight software: what :class:`~.loop.FlightRuntime` sets up before its first frame.

The sample codec checked against this install, the fault plan, the heap policy, the memory meter and its boot
baseline, telemetry and the downlink queue (recovered after a reboot), the models and the cost model's first
calibration, then the memory the loaded models hold and what the board still gives the process
(:mod:`.memory_room`: a boot that runs out of memory loading the models is refused in one line). A function over
the runtime, which keeps what it opens.
"""

from __future__ import annotations

import contextlib
import gc
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeae.wire.codec import PIP_AEC, aec_available, resolve_sample_codec
from edgeae.wire.packets import WireConfig

from .bench_machine import machine_record
from .budget import CostModel, patch_grid, scoring_batch, scoring_plan
from .faults import FaultPlan, FaultSpecError, parse_faults
from .frame_decoders import check_decoders, preload_frame_path, reopen_decoder_drops
from .frame_intake import check_fixed_camera, check_loaded_memory
from .heap import apply_heap_policy
from .memory_meter import MemoryMeter, rss_bytes
from .memory_room import boot_out_of_memory, check_room, is_out_of_memory
from .mission import Mission, MissionError
from .onboard import Loader, OnboardModels, default_loader, resolve_model_file
from .queue import DownlinkQueue
from .queue_ledger import storage_damage
from .run_summary import NO_ANOMALY_MODEL
from .state import frames_since_pass, next_boot
from .stops import quietly, retake_unsaved
from .telemetry import TelemetryWriter, read_history

if TYPE_CHECKING:
    from .loop import FlightRuntime


def boot(
    rt: FlightRuntime,
    loader: Loader | None,
    inject: Sequence[str],
    wire: WireConfig | None,
    progress: bool,
    parallel: str,
) -> None:
    """Set up ``rt`` for its frames (models, telemetry, queue, budgets, memory baselines); raises what refuses the
    boot (:class:`~.mission.MissionError`, :class:`~.faults.FaultSpecError`, a model that cannot load)."""
    mission = rt.m
    rt.loader = loader or default_loader
    rt.progress = progress  # a tqdm bar per streamed frame (tqdm comes with the ground extra)
    dl = mission.downlink
    rt.wire = wire or WireConfig(dl.max_packet_bytes, resolve_sample_codec(dl.codec), band_rows=dl.band_rows)
    check_codec(mission, rt.wire.codec)
    too_big = scoring_buffers_refusal(mission)  # before anything is allocated (batch = 4096 held 10 GB, then refused)
    if too_big is not None:
        raise MissionError(f"{mission.source_path}: {too_big}")
    rt._cpu0 = time.process_time()
    try:
        planned = parse_faults(list(mission.runtime.inject))
    except FaultSpecError as exc:
        raise FaultSpecError(f"{mission.source_path} [runtime] inject: {exc}") from None
    rt.faults = FaultPlan((*planned, *parse_faults(list(inject))), seed=mission.sampling.seed)
    rt.heap = apply_heap_policy(mission.runtime.heap)  # before any thread allocates
    rt.meter = MemoryMeter(mission.runtime.measure_memory and mission.runtime.trace_allocations)
    rt.meter.start()
    gc.collect()  # garbage pending at boot would inflate the baseline and hide later growth
    rt.rss_boot = rss_bytes()  # before models and buffers: the Python + numpy baseline
    # the frame types' decoders imported (counted over the baseline, as the preload's), before anything is written:
    decoder_warnings = check_decoders(mission, rt.frame_types)  # a run's frames that cannot be decoded are refused
    rt.tm = TelemetryWriter(rt.out / "telemetry.jsonl")
    rt.queue = DownlinkQueue(rt.out / "queue", mission.budget.queue_capacity_bytes)
    rt.queue.sweep_stale_temps(rt.out / "downlink", held=rt.held)  # a power loss's half files
    rt.boot_no = next_boot(rt.queue.state)  # recorded in each ledger entry this boot writes (saved with it)
    rt.cost = CostModel()
    rt.records = []  # this boot's frame records
    rt.frame_no = 0  # frames acquired in this boot
    rt.since_pass = frames_since_pass(rt.queue.state)  # the pass schedule goes on across boots
    rt.skipped_already_acquired = 0
    rt.inputs = {}  # notes on the frame arguments (FrameList.notes), for the summary
    rt._current = None  # the frame id being processed
    rt.retakes = {}  # set by run (state.retake_candidates): a frame given to process alone takes none again
    rt.not_written = {}  # files a stop could not write ({path: error}), for the summary
    retaken = retake_unsaved(rt)  # frames the last boot stopped in and could not mark interrupted in the index
    # frames a reboot stopped in an earlier boot (reboot_during_processing): never this boot's frame in progress
    rt._stale = {k for k, e in rt.queue.state["frames"].items() if e["status"] == "in_progress"}
    rt._unwritten = None  # its record and start, until written
    power_lost = power_loss_frames(rt._stale, rt.tm.path)  # before this boot's lines
    rt.machine = machine_record()  # in the start line and summary.json (until session 36 the start line only)
    rt.tm.write(
        "start",
        mission=mission.name,
        mission_file=mission.source_path,
        pid=os.getpid(),
        heap=rt.heap,
        resumed=rt.queue.recovered,  # false: a fresh state, earlier lines belong to another
        utc=rt.tm.utc0,  # the wall-clock time (UTC) at which this boot's ``t`` is 0
        # the CPU, its cores, the load at the start and the package versions: what a frame time is judged by
        machine=rt.machine,
    )
    if rt.settings_changed:
        rt.tm.write("event", kind="mission_settings_changed", changes=rt.settings_changed)
    if rt.queue.recovered:
        rt.tm.write(
            "recovery",
            items=sum(t["items"] for t in rt.queue.tallies().values()),  # those compacted into totals too
            pending=len(rt.queue.pending()),
            lost=rt.queue.lost_on_recovery,
            next_frame_id=rt.queue.state["next_frame_id"],
            # frames the last boot was processing when the power went (kill -9): dropped reboot_during_processing
            reboot_during_processing=power_lost,
            **({"interrupted_unsaved": retaken} if retaken and rt.queue.unsaved else {}),  # for the next boot
            # files of items sent or evicted that a power loss kept from being removed (DownlinkQueue.leftover_files)
            **({"leftover_item_files": len(rt.queue.leftover_files)} if rt.queue.leftover_files else {}),
        )
        queue_recovery_events(rt)
        reopen_decoder_drops(rt)  # frames dropped for want of a decoder installed since: a run takes them again
    if not mission.anomaly.model:
        rt.tm.write("event", kind="no_anomaly_model", detail=NO_ANOMALY_MODEL)
    refusal: MissionError | None = None
    try:
        load_models(rt, parallel)
    except MissionError:
        raise
    except Exception as exc:  # an allocation that failed: one line naming what the board gives, not a traceback
        if not is_out_of_memory(exc):
            raise
        refusal = boot_out_of_memory(mission, "loading, calibrating and starting the models", exc)
    if refusal is not None:  # raised outside the handler: the failed allocation's frames are let go
        raise refusal
    rt.rss_loaded = rss_bytes()  # + interpreter libraries, sessions, arenas and model images
    check_fixed_camera(rt)
    over = [f"{rt.queue.root}: {rt.queue.over_capacity}"] if rt.queue.over_capacity else []
    for w in decoder_warnings:  # told no frame types (check, the Python API): a decoder of the camera's missing
        rt.tm.write("event", kind="boot_warning", detail=w)
    rt.boot_warnings = [*rt.models.notes, *check_loaded_memory(rt), *check_room(rt), *over, *decoder_warnings]
    if rt.queue.lost_on_recovery:  # what the recovery found is saved now, whether or not this boot takes a frame
        quietly({}, rt.queue.save)  # (until session 36 a boot that took none left those items pending on disk, and
        # every later boot found them again); a failure is kept in queue.unsaved and tried again at the end of the run


def load_models(rt: FlightRuntime, parallel: str) -> None:
    """Load the models behind their guards, calibrate the scorer (its engine's threads start), warm the
    reconstruction model and import what a first frame imports: what the boot's memory checks then measure."""
    rt.models = OnboardModels(rt.m, rt.out, rt.loader, rt.faults, rt.tm, parallel)
    if rt.models.scorer is not None:
        rt.cost.ms_per_patch = rt.models.calibrate()
        eng = rt.models.engine  # a part batch costs a whole one: learn per patch from full batches
        rt.cost.min_patches = eng.batch if eng is not None else rt.models.scorer.batch
        rt.cost.batch = padded_batch(rt.models.scorer.predictor)
    rt.models.warm_recon()  # its interpreter's arena grows on the first run: in the boot's count, not frame 0's
    preload_frame_path(rt.m, rt.frame_types)  # what the first frame would import: in the boot's count too


def queue_recovery_events(rt: FlightRuntime) -> None:
    """What the recovered queue found at load, in telemetry: an ``evicted`` event for each item lost (its file
    missing or not the size it was queued at: until review r6 of session 35 only the ids, in the ``recovery``
    line's ``lost``) and a ``storage_over_capacity`` event when what is stored exceeds a capacity lowered since
    (until then said to no one; the boot's warnings on the console say it too). An item an earlier boot on this
    state already wrote an ``evicted`` event for gets none again: that boot found it lost but could not save its
    index (a full disk), or saved none (it took no frame), so this one loaded the same index and found the same
    file gone (until session 36 each such boot wrote the event again: one product lost, counted at every boot). Told
    means an earlier storage-damage event (:func:`.queue_ledger.storage_damage`: a pass's ``storage corruption:
    ...``, or a boot's ``item file ... after reboot``; until review r10 of session 36 a boot's only, so a pass that
    found the file gone but whose index save failed was told again by the next boot) for the same item, product and
    frame: ids are reused after a failed index save (a boot whose saves failed gave ids past the saved ``next_id``
    and wrote events for them, an eviction for room say; the next boot loads the older ``next_id``), and until
    review r5 of session 36 an id alone matched such an event, so the product lost got none. A boot that loads
    such items saves the index once it has booted (:func:`boot`), frame or no frame."""
    q = rt.queue
    told: set[Any] = set()
    if q.lost_on_recovery:  # telemetry read only then, and of it only the lines that may say so
        events = read_history(rt.tm.path, (b'"start"', b'"evicted"')).events
        told = {
            (e.get("item"), e.get("product"), e.get("frame_id"))
            for e in events
            if e.get("kind") == "evicted" and storage_damage(str(e.get("reason") or ""))
        }
    for iid in q.lost_on_recovery:
        it = q.items[iid]
        if (it.id, it.kind, it.frame_id) in told:
            continue
        rt.tm.write("event", kind="evicted", item=it.id, product=it.kind, frame_id=it.frame_id,
                    bytes=it.wire_bytes - it.sent_bytes, reason=it.reason)  # fmt: skip
    if q.over_capacity:
        rt.tm.write("event", kind="storage_over_capacity", stored_bytes=q.stored_bytes, capacity_bytes=q.capacity_bytes,
                    detail=q.over_capacity)  # fmt: skip


def power_loss_frames(stale: set[str], telemetry: Path) -> list[int]:
    """The frames of ``stale`` (held ``in_progress`` at boot: the last boot stopped in them without marking them
    interrupted, a power loss or ``kill -9``) that no earlier boot's ``recovery`` line named: those this boot
    found. Telemetry is read only when a frame is in progress, and of it only the ``start`` and ``recovery`` lines
    are parsed (until review r6 of session 35 the whole file, at every boot after a power loss: 44 MB, 3.65 s)."""
    if not stale:
        return []
    named = read_history(telemetry, (b'"start"', b'"recovery"')).power_loss_named()
    return sorted(int(k) for k in stale if int(k) not in named)


def check_codec(mission: Mission, codec: str) -> None:
    """Refuse at boot a sample codec this install cannot code (``ccsds121`` without libaec): otherwise every frame
    would be sampled and scored, then dropped when its packets are coded."""
    if codec == "ccsds121" and not aec_available():
        raise MissionError(
            f'{mission.source_path}: [downlink] codec = "ccsds121" needs libaec, which is not installed: run  '
            f'{PIP_AEC}, or set codec = "auto" (ccsds121 when libaec is installed, else delta-deflate)'
        )


def padded_batch(predictor: Any) -> int:
    """The batch a model runs every call at (a LiteRT file converted with a static batch pads a part batch to
    it, so a part batch costs a whole one); 1 for a model with a dynamic batch (a call runs its patches)."""
    static = getattr(getattr(predictor, "_runner", None), "static_batch", None)
    return int(static) if isinstance(static, int) and static > 0 else 1


def scoring_buffers_refusal(mission: Mission) -> str | None:
    """Why the scoring buffers alone (:func:`.budget.scoring_plan` at :func:`.budget.scoring_batch`: the
    PatchScorer's input, truth and weight buffers, held from boot, and one batch's temporaries, which the boot's
    calibration allocates) cannot fit ``[budget] memory_bytes``, before any of them or a model is allocated; None
    when they may fit (the loaded models are measured later, :func:`.frame_intake.check_loaded_memory`)."""
    an, cam, budget = mission.anomaly, mission.camera, mission.budget.memory_bytes
    if not an.model:
        return None
    batch = scoring_batch(mission)
    frame, boot = scoring_plan(mission, cam.channels, patch_grid(mission, cam.width, cam.height))
    planned = frame + (0 if an.method == "vae" else boot)  # the fast VAE path never fills the PatchScorer's
    if planned <= budget:
        return None
    files = model_file_bytes(mission)
    one = -(-planned // batch)  # the plan grows with the batch: bytes per patch of it
    fits = (budget - files) // one
    need = (
        f"lower [anomaly] batch to at most {fits} (the loaded models need room too: their files alone are {files:,} B)"
        if fits >= 1
        else f"raise [budget] memory_bytes to at least {one + files:,} B: one patch's scoring buffers ({one:,} B) "
        f"and the model files ({files:,} B), and the loaded models need more"
    )
    capped = f" (capped to the {batch} patches of a frame)" if batch < an.batch else ""
    return (
        f"[anomaly] batch = {an.batch}{capped} plans {planned:,} B of scoring buffers ({batch} patches of "
        f"{cam.channels} x {an.patch} x {an.patch} samples as float32, {an.method!r} scoring on [runtime] threads = "
        f"{mission.runtime.threads}) before the models are loaded: over [budget] memory_bytes = {budget:,} B; {need}"
    )


def model_file_bytes(mission: Mission) -> int:
    """The bytes of the model files the mission names (one that cannot be found now counts 0): a floor under what
    the loaded models hold, known before any is loaded. Until session 36 the scoring-buffer refusal left them out
    and advised 'lower [anomaly] batch to at most 1' where no batch could fit beside them."""
    specs = [(mission.anomaly.model, mission.anomaly.prefer)]
    if mission.reconstruction.mode != "off":
        specs.append((mission.reconstruction.model, mission.reconstruction.prefer))
    total = 0
    for spec, prefer in specs:
        if not spec:
            continue
        try:
            total += resolve_model_file(spec, prefer).stat().st_size
        except (OSError, MissionError):
            continue
    return total


def telemetry_size(out: Path) -> int | None:
    """The size of ``out``'s ``telemetry.jsonl`` before a boot (None: there is none)."""
    try:
        return (out / "telemetry.jsonl").stat().st_size
    except OSError:
        return None


def take_back_telemetry(out: Path, size: int | None, quiet: bool = True) -> None:
    """``out``'s ``telemetry.jsonl`` cut back to its ``size`` before a boot that did not fly (None: removed), so its
    ``start``, model and memory lines do not count it as a boot; an interrupted boot (Ctrl-C, SIGTERM) leaves no
    other line. ``quiet``: a file that cannot be written is left as it is (OSError otherwise)."""
    path = out / "telemetry.jsonl"
    try:
        if size is None:
            path.unlink(missing_ok=True)
        else:
            os.truncate(path, size)
    except OSError:
        if not quiet:
            raise


def refuse_boot(out: Path, size: int | None, mission: Mission, exc: BaseException) -> None:
    """After a refused boot on an existing state: ``telemetry.jsonl`` cut back to its ``size`` before the boot (its
    ``start``, model and memory lines would count it as a boot that flew), then one ``boot_refused`` line with the
    reason. Best effort: a file that cannot be written leaves the refusal to the error the caller raises."""
    path = out / "telemetry.jsonl"
    with contextlib.suppress(OSError):
        take_back_telemetry(out, size, quiet=False)
        tm = TelemetryWriter(path)
        try:
            reason = str(exc) or type(exc).__name__
            tm.write("boot_refused", mission=mission.name, mission_file=mission.source_path, pid=os.getpid(),
                     error=type(exc).__name__, reason=reason)  # fmt: skip
        finally:
            tm.close()

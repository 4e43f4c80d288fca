"""A frame's way into the loop, before its pixels are processed: its ledger entry (``in_progress``, or
``dropped`` with its reason), the faults placed on it (``reboot``, ``late``, ``bad-frame``), its reader with the
header checked and any colour filter applied, whether the wire format can carry its sparse pixels and whether its
buffers fit the memory budget now (at its level, or lower on the ladder); at boot, whether a fixed camera's frames
can fit at all (buffers, packets per product) and whether the loaded models leave room for a frame.

Functions over the :class:`~.loop.FlightRuntime` whose frame they take in (as :mod:`.frame_work` does).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeae._optional import MissingDependencyError

from .boot_memory import HELD_RISE as HELD_RISE
from .boot_memory import boot_plan, every_type, largest_type, least_plan, scoring_need
from .budget import LADDER, Level
from .cli_advice import fewer_threads
from .faults import SimulatedReboot
from .frame_decoders import CODE as DECODER_UNAVAILABLE
from .frame_decoders import FRAME_PATH_MODULES as FRAME_PATH_MODULES
from .frame_decoders import REOPENED, drop_detail, tiff_codec_missing
from .frame_decoders import preload_frame_path as preload_frame_path
from .frames import ArrayFrame, FrameError, FrameReader, TiffFrame, open_frame
from .memory_meter import rss_bytes
from .memory_meter import trim_heap as trim_heap
from .memory_plan import MemoryPlan, plan_memory, reader_held, tiled_reader, whole_decode
from .memory_room import address_margin, describe, room_cap, room_detail
from .mission import Mission, MissionError
from .packet_check import packet_advice as packet_advice
from .packet_check import packet_refusal as packet_refusal
from .packet_check import sparse_packet_estimate as sparse_packet_estimate
from .reader_wrappers import Corrupted, Demosaiced
from .state import take_retake
from .validate import check_header

if TYPE_CHECKING:
    from .loop import FlightRuntime


def drop(rt: FlightRuntime, rec: dict[str, Any], reason: str, detail: str = "") -> dict[str, Any]:
    """Drop the frame of ``rec`` with its reason code and detail, in the record and the ledger (saved)."""
    rec.update(status="dropped", reason=reason, detail=detail)
    rt.queue.state["frames"][str(rec["frame_id"])] = {
        "source": rec["source"],
        "status": "dropped",
        "reason": f"{reason}: {detail}" if detail else reason,
        "code": reason,  # what the summary counts drops by; the detail stays in the ledger
        "boot": rt.boot_no,  # the boot that took it in (state.retake_candidates)
    }
    rt.queue.save()
    return rec


def reboot_if_due(rt: FlightRuntime, fid: int) -> None:
    """The ``reboot`` fault placed before frame ``fid``: it fires once per output folder, so the same command
    run again recovers instead of rebooting again before the same frame."""
    reboot = rt.faults.at(fid, "reboot")
    fired: list[str] = rt.queue.state.setdefault("faults_fired", [])
    if reboot is None or str(reboot) in fired:
        return
    fired.append(str(reboot))
    rt.queue.save()
    rt.tm.write("event", kind="fault_injected", fault=str(reboot))
    rt.faults.mark(reboot)
    rt.close()  # telemetry, memory tracing, models, and the folder unless the caller keeps it held (keep_held)
    raise SimulatedReboot(f"reboot before frame {fid}")


def acquire(rt: FlightRuntime, frame: str | os.PathLike[str] | np.ndarray, frame_id: int | None) -> dict[str, Any]:
    """Enter the frame in the ledger (``in_progress``) under the next frame id, or under ``frame_id`` when
    it retries a frame an interrupted run did not finish; its record so far. A new frame that takes again a frame
    an earlier run dropped ``memory_unavailable`` (:func:`.state.take_retake`) marks that entry ``retaken_as`` its
    id, saved with its own, and writes a ``frame_retaken`` event (until review r10 of session 36 every attempt
    stayed counted: two frames retaken twice were 6 acquired, 4 dropped)."""
    fno = rt.frame_no
    rt.frame_no += 1
    # faults are placed by frame id (counted across reboots)
    fid = int(rt.queue.state["next_frame_id"]) if frame_id is None else frame_id
    if frame_id is None:
        reboot_if_due(rt, fid)
        rt.queue.state["next_frame_id"] = fid + 1
    source = "array" if isinstance(frame, np.ndarray) else str(frame)
    ledger = rt.queue.state["frames"]
    old = take_retake(rt.retakes, source) if frame_id is None and source != "array" else None
    if old is not None:  # its earlier drop (memory_unavailable) is superseded: counted once, as this frame
        ledger[str(old)]["retaken_as"] = fid
    reopened = frame_id is not None and ledger.get(str(fid), {}).get(REOPENED) is not None  # .frame_decoders
    ledger[str(fid)] = {"source": source, "status": "in_progress", "reason": "", "boot": rt.boot_no}
    rt.queue.save()
    if old is not None:  # the history stays in telemetry: the earlier frame's line, and this event
        rt.tm.write("event", kind="frame_retaken", frame_id=fid, retakes=old, code="memory_unavailable")
    rt._current = fid
    rec: dict[str, Any] = {"frame_id": fid, "frame_no": fno, "source": source, "flags": [], "events": []}
    if frame_id is not None:  # a drop for want of a decoder reopened once it was installed, or an interrupted frame
        rec["flags"].append("retried_after_missing_decoder" if reopened else "retried_after_interrupt")
    return rec


def late_fault(rt: FlightRuntime, rec: dict[str, Any]) -> float:
    """The lateness (ms) of a ``late`` fault placed on this frame, else 0."""
    late = rt.faults.at(rec["frame_id"], "late")
    lateness = float(late.arg) if late and late.arg else (0.6 * rt.m.budget.frame_ms if late else 0.0)
    if late:
        rt.tm.write("event", kind="fault_injected", fault=str(late), lateness_ms=lateness)
        rt.faults.mark(late)
        rec["flags"].append("late")
    rec["lateness_ms"] = lateness
    return lateness


def open_reader(
    rt: FlightRuntime, frame: str | os.PathLike[str] | np.ndarray, rec: dict[str, Any]
) -> FrameReader | None:
    """The frame's reader, damaged by a ``bad-frame`` fault, its header checked, demosaiced when the camera
    has a colour filter; None (the frame dropped with its reason) when it cannot be flown."""
    fid = rec["frame_id"]
    try:
        reader: FrameReader = ArrayFrame(frame, "array") if isinstance(frame, np.ndarray) else open_frame(frame)
        if isinstance(reader, TiffFrame) and (needs := tiff_codec_missing(reader.path)) is not None:
            raise needs  # its compression needs imagecodecs: found from its tags, before any pixel is read
    except MissingDependencyError as exc:  # its decoder is not installed: not the file's fault (.frame_decoders)
        drop(rt, rec, DECODER_UNAVAILABLE, drop_detail(exc))
        return None
    except (FrameError, OSError) as exc:
        drop(rt, rec, "unreadable", str(exc))
        return None
    except Exception as exc:  # any reader failure drops this frame only, with its reason
        drop(rt, rec, "unreadable", f"{type(exc).__name__}: {exc}")
        return None
    bad = rt.faults.at(fid, "bad-frame")
    if bad is not None:
        rt.tm.write("event", kind="fault_injected", fault=str(bad))
        rt.faults.mark(bad)
        reader = Corrupted(reader, bad.arg or "nan")
    verdict = check_header(reader.header, rt.m.camera)  # the frame as stored (before any demosaicing)
    if not verdict.ok:
        drop(rt, rec, f"invalid_{verdict.reason}", verdict.detail)
        return None
    return colour_filter(rt, reader, rec)


def level_plan(plan: MemoryPlan, level: Level) -> MemoryPlan:
    """The buffers of ``plan`` a frame run at ``level`` still needs: no reconstruction tiles when it skips the
    reconstruction, no patch batch, top-k store or no-data mask (nor its temporaries) when it scores nothing, fewer
    sparse values (and a jittered mask's temporaries) at a lower keep."""

    items = []
    for name, size in plan.items:
        if name == "recon_tiles_f32" and not level.reconstruct:
            continue
        if name in UNSCORED and level.score_every == 0:
            continue
        items.append((name, int(size * level.keep_factor) + 1 if name in KEEP_SCALED else size))
    # a file decoded whole is decoded at every level
    return MemoryPlan(tuple(items), decode=plan.decode, steps=tuple(n for n in plan.steps if n in dict(items)))


UNSCORED = ("patch_batch_f32", "top_k_patches", "nodata_mask", "nodata_temporaries")  # a frame scoring nothing
KEEP_SCALED = ("sparse_values_strip", "mask_temporaries")  # by the kept pixels: fewer at a lower keep


def stored_layout(reader: Any) -> tuple[int, np.dtype[Any]]:
    """The channels and sample type of a frame as its file stores them (under any reader wrappers): what the
    reader's strips hold before demosaicing and conversion to the wire's samples."""
    while hasattr(reader, "inner"):
        reader = reader.inner
    return reader.header.channels, np.dtype(reader.header.dtype)


def sized_by(mission: Mission, name: str) -> str:
    """The mission setting that sizes the plan item ``name``."""
    frame = "[camera] strip_rows and width" if mission.camera.source == "strips" else "the frame's size"
    return {
        "sparse_values_strip": f"{frame}, [sampling] keep",
        "patch_batch_f32": "[anomaly] batch, [runtime] threads",
        "top_k_patches": "[anomaly] top_k",
        "recon_tiles_f32": "[reconstruction] check_tiles, tile",
        "nodata_temporaries": f"{frame}; only when scoring",
        "frame_decoded": "[camera] height and width: a PNG, JPEG or PNM frame is decoded whole",
    }.get(name, frame)


def biggest_buffers(mission: Mission, plan: MemoryPlan, n: int = 3) -> str:
    """``name N B (sized by KEYS), ...``: the ``n`` largest items of a plan (of its steps, live one at a time, the
    largest only) and the settings that size them."""
    peak = max((kv for kv in plan.items if kv[0] in plan.steps), key=lambda kv: kv[1], default=None)
    counted = [kv for kv in plan.items if kv[0] not in plan.steps or kv == peak]
    top = sorted(counted, key=lambda kv: -kv[1])[:n]
    whole = [f"decoding a file whole {plan.decode:,} B (its bytes and the image)"] * (plan.decode > plan.buffers)
    return ", ".join(whole + [f"{name} {size:,} B ({sized_by(mission, name)})" for name, size in top]) or "none"


def plan_text(plan: MemoryPlan) -> str:
    """``name N B, ...``: a plan's items (its steps, live one at a time, last: the largest counts) and the peak of a
    file decoded whole, for the messages that refuse it."""
    held = ", ".join(f"{name} {size:,} B" for name, size in plan.items if name not in plan.steps)
    steps = ", ".join(f"{name} {size:,} B" for name, size in plan.items if name in plan.steps and size)
    one = f"; one at a time, the largest counted: {steps}" if steps else ""
    whole = f"; decoding its file whole peaks at {plan.decode:,} B" if plan.decode else ""
    return held + one + whole


def memory_fit(
    rt: FlightRuntime, reader: FrameReader, rec: dict[str, Any]
) -> tuple[tuple[str, str] | None, Level | None]:
    """Whether the frame's buffers fit now, the memory budget and what the board gives this process (the room,
    :func:`.memory_room.room_cap`, the smaller of the two: ``memory_room`` in the record when the room set it):
    ``(None, None)`` at any level; ``(None, level)`` only from that ladder level down (a frame that does not fit at
    its level goes down the ladder rather than being dropped: ``sparse_only`` needs no scoring buffers);
    ``((code, why), None)`` when not even at ``sparse_only``: ``memory_unavailable`` when the board's memory, not
    the budget, refused it (raising ``[budget] memory_bytes`` would not help), else ``memory_budget``. A level fits
    with the loop overlapping the engine or else waiting for it (:func:`.frame_work.needs_wait`)."""
    plan = reader_plan(rt.m, reader, rt._model_bytes())
    lap = reader_plan(rt.m, reader, rt._model_bytes(), overlap=True) if fast_path(rt) else plan
    rec["memory_plan"] = min(plan.total, lap.total)
    held = max(0, rss_bytes() - rt.rss_boot)  # what the process already holds beyond the boot baseline
    budget = rt.m.budget.memory_bytes
    capped = room_cap(rt.m, held)
    if held + max(plan.total, lap.total) > (budget if capped is None else min(budget, capped[0])):  # memory freed
        trim_heap()  # by the last frame may still be resident: return it first
        held = max(0, rss_bytes() - rt.rss_boot)
        capped = room_cap(rt.m, held)
    limit = budget if capped is None else min(budget, capped[0])
    if capped is not None and capped[0] < budget:
        describe(rec, capped[1], capped[0])
    rec["memory_predicted"] = held + rec["memory_plan"]
    for level in LADDER:  # the plan without the loop waiting for the engine (faster) where it fits, else with it
        need = level_plan(lap, level).total
        need = need if held + need <= limit else level_plan(plan, level).total
        if held + need <= limit:
            nominal = {"memory_plan_nominal": rec["memory_plan"]} if level.index else {}
            rec.update(memory_plan=need, memory_predicted=held + need, **nominal)
            return None, (level if level.index else None)
    least = level_plan(plan, LADDER[-1])
    if capped is not None and held + least.total <= budget:  # the board's memory refused it, not the budget
        describe(rec, capped[1], capped[0], refused=True)
        return ("memory_unavailable", room_detail(capped[1], held, least.total, address_margin(rt.m, capped[1]))), None
    return (
        "memory_budget",
        f"the process holds {held:,} B over its boot baseline and this frame's buffers need {plan.total:,} B "
        f"({plan_text(plan)}), {least.total:,} B even at sparse_only: {held + least.total:,} B > [budget] "
        f"memory_bytes = {budget:,} B (raise it to at least {mib_up(held + least.total)} MiB)",
    ), None


def reader_plan(mission: Mission, reader: FrameReader, model_bytes: int, overlap: bool = False) -> MemoryPlan:
    """The memory plan of the frame ``reader`` reads: at its file's sample type, by its reader's bands, or decoded whole
    (a PNG, JPEG or PNM file, on a strip camera too: until session 39 planned by its strips, :mod:`.memory_plan`),
    with the engine's batches held beside the loop's work when ``overlap`` (the loop does not wait for them)."""
    h, w, whole = reader.header.height, reader.header.width, whole_decode(reader)
    layout, bands, tiled = stored_layout(reader), band_rows(reader), tiled_reader(reader)
    return plan_memory(
        mission, w, h, model_bytes, mission.camera.channels, layout, bands, whole, overlap, tiled, reader_held(reader)
    )


def fast_path(rt: FlightRuntime) -> bool:  # scored on the ScoreEngine (a VAE with an engine): the loop may wait
    return getattr(rt, "engine", None) is not None and rt.m.anomaly.method == "vae"  # getattr: a runtime stand-in


def band_rows(reader: Any) -> int | None:
    """The rows a streamed reader decodes at a time (a TIFF's tile or strip height; under any wrappers), None
    where it reads no bands."""
    while hasattr(reader, "inner"):
        reader = reader.inner
    rows = getattr(reader, "band_rows", None)
    return rows if isinstance(rows, int) and rows > 0 else None


def mib_up(n: int) -> int:
    """``n`` bytes in whole MiB, rounded up."""
    return -(-int(n) // 2**20)


def colour_filter(rt: FlightRuntime, reader: FrameReader, rec: dict[str, Any]) -> FrameReader:
    """Demosaic a declared colour-filter mosaic (``[camera] bayer``) before anything reads the pixels;
    flag an undeclared frame that looks like one (2×2 repeating values)."""
    from edgeae.bayer import looks_like_mosaic

    pattern = rt.m.camera.bayer
    if pattern:
        wrapped = Demosaiced(reader, pattern)  # the stored channels were checked (1 or 3)
        rec["camera"] = wrapped.info  # updated while streaming: demosaiced turns true when it is
        return wrapped
    mosaic = isinstance(reader, ArrayFrame) and looks_like_mosaic(mosaic_crop(reader))
    if mosaic:
        rec["flags"].append("looks_like_bayer_mosaic")
        rec["camera"] = {"bayer": None, "demosaiced": False, "looks_like_mosaic": True}
        rt.tm.write("event", kind="looks_like_bayer_mosaic", source=rec["source"],
                    hint='set [camera] bayer = "RGGB" (or the sensor\'s pattern) to demosaic it')  # fmt: skip
    return reader


def mosaic_crop(reader: ArrayFrame) -> np.ndarray:
    """The central crop :func:`edgeae.bayer.looks_like_mosaic` tests, read on its own (a mapped ``.npy``'s from its
    file: through the map it left 4-6 MiB resident, in no plan, review r3 #1 of session 40)."""
    from edgeae.bayer import MOSAIC_SIDE

    h, w = reader.header.height, reader.header.width
    y0, x0 = max(0, (h - MOSAIC_SIDE) // 2) & ~1, max(0, (w - MOSAIC_SIDE) // 2) & ~1
    return reader.crop(y0, y0 + MOSAIC_SIDE, x0, x0 + MOSAIC_SIDE)


def check_fixed_camera(rt: FlightRuntime) -> None:
    """A fixed camera: record its frames' memory plan; refuse to fly a frame the wire format cannot carry."""
    mission, cam = rt.m, rt.m.camera
    if not (cam.width and (cam.height or cam.source == "strips")):
        return
    plan = boot_plan(rt, cam.width, cam.height)[0]
    rt.tm.write("event", kind="memory_plan", plan=plan.as_dict(), budget=mission.budget.memory_bytes)
    if not cam.height:  # a strip camera of any height (0): a frame's packets are counted once its height is known
        return  # (until session 39 the boot counted a 0-row frame's and stopped: "range() arg 3 must not be zero")
    too_many = packet_refusal(mission, cam.width, cam.height, worst_case=True)
    if too_many is not None:
        raise MissionError(f"{mission.source_path}: a full frame's {too_many} (planned on raw samples)")
    # the buffers are checked against the budget once the models are loaded (check_loaded_memory), at the lowest
    # level as for every frame: buffers that fit only lower on the ladder send frames down it, not the boot back


def check_loaded_memory(rt: FlightRuntime) -> list[str]:
    """After the models loaded (and ran once): refuse a boot whose interpreters and one frame's buffers cannot
    fit the memory budget even at ``sparse_only`` (every frame would be dropped), with the numbers and the keys
    that change them; the warnings to print (``[runtime] threads`` over this machine's cores)."""
    m, cam = rt.m, rt.m.camera
    held = max(0, rt.rss_loaded - rt.rss_boot)  # interpreter libraries, sessions, arenas, weight images
    fixed = bool(cam.width and (cam.height or cam.source == "strips"))
    width, height = (cam.width, cam.height) if fixed else (0, 0)  # any size: the size-independent buffers
    plan, whole = boot_plan(rt, width, height)
    least = level_plan(plan, LADDER[-1])  # the run's largest frames' (boot_plan); refused by its smallest's
    floor = least_plan(rt, width, height)
    budget = m.budget.memory_bytes
    rt.tm.write("event", kind="memory_loaded", held=held, sparse_only_plan=least.as_dict(), budget=budget)
    if held + floor.total > budget:
        scored = plan if whole is None or whole[1].total <= plan.total else whole[1]  # every type's frames scored
        frame = (
            f"a {cam.height or 'any'} x {cam.width} px (height x width) frame's" if fixed else "the size-independent"
        )
        raise MissionError(
            f"{m.source_path}: after the models loaded the process holds {held:,} B over its boot baseline "
            f"(interpreters on [runtime] threads = {m.runtime.threads}, their arenas and weight images) and "
            f"{frame} buffers need {floor.total:,} B even at sparse_only ({biggest_buffers(m, floor)}): "
            f"{held + floor.total:,} B > [budget] memory_bytes = {budget:,} B; raise [budget] memory_bytes to "
            f"at least {mib_up(held + HELD_RISE + floor.total)} MiB{every_type(rt, held, floor, width, height)}"
            f"{scoring_need(held, scored, floor, fixed)}{fewer_threads(m.runtime.threads)}"
        )
    warnings = []
    whole_least = level_plan(whole[1], LADDER[-1]).total if whole is not None else 0
    if whole is not None and held + HELD_RISE + whole_least > budget:
        warnings.append(
            f"the {whole[0]} frames are decoded whole (a TIFF is read in strips): {whole_least:,} B even at "
            f"sparse_only beside the {held:,} B the models hold, over [budget] memory_bytes = {budget:,} B once the "
            f"loop's heap has grown over the first frames: they will be dropped memory_budget (raise it to at least "
            f"{mib_up(held + HELD_RISE + whole_least)} MiB)"
        )
    elif held + least.total > budget:  # types decoded whole: the largest type's frames cannot fit, even the first
        warnings.append(
            f"the {largest_type(rt, width, height)} frames (decoded whole, the run's largest): {least.total:,} B even "
            f"at sparse_only beside the {held:,} B the models hold, over [budget] memory_bytes = {budget:,} B: they "
            f"will be dropped memory_budget (raise it to at least {mib_up(held + HELD_RISE + least.total)} MiB)"
        )
    elif held + HELD_RISE + least.total > budget:  # the first frame fits, the heap's rise then drops the next
        warnings.append(
            f"held + buffers at sparse_only: {(held + least.total) / 2**20:.1f} MiB of the {budget / 2**20:,.0f} MiB "
            f"budget, {HELD_RISE / 2**20:.1f} MiB more once the loop's heap has grown over the first frames: frames "
            f"after the first may be dropped memory_budget (raise [budget] memory_bytes to at least "
            f"{mib_up(held + HELD_RISE + least.total)} MiB)"
        )
    cores = usable_cores()
    if cores and m.runtime.threads > cores:
        warnings.append(
            f"[runtime] threads = {m.runtime.threads} but this machine gives the process {cores} core(s): the "
            "extra interpreters cost memory and time without scoring faster"
        )
    for w in warnings:
        rt.tm.write("event", kind="boot_warning", detail=w)
    return warnings


def usable_cores() -> int | None:
    """The cores this process may run on (its CPU affinity where the OS says; None where unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()

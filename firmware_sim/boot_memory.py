"""The frame plans the boot and ``firmware-sim check`` judge a fixed camera's frames by, by frame type (those
decoded whole, PNG, JPEG and PNM, and those read in strips), and what the held RSS still grows by over the first
frames (:data:`HELD_RISE`), which every budget the boot and ``check`` advise adds. Split out of
:mod:`.frame_intake` in session 40 (which re-exports it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .memory_plan import WHOLE_FILE_COPIES, MemoryPlan, camera_decode, plan_memory

if TYPE_CHECKING:
    from .loop import FlightRuntime

HELD_RISE = 2 * 2**20
"""What the RSS the loop holds between frames grows by over the first frames beyond the boot's (Python's heap: each
frame's records and ledger entry, the allocator's free chunks, a reader thread's arena), which every budget the boot
and ``check`` advise adds (the ``sparse_only`` floor too since session 40, fixer h1). With the sample codec started
at boot (:func:`.packet_check.preload_sample_codec`), after the heap is trimmed as the frame check trims it: scored
frames of the orbital mission in onnxruntime 0.6-0.7 MiB after the first frame, 0.9 after fifteen (session 39); its
TIFF strip at ``sparse_only`` (five copies, two runs) 1.0-1.1 MiB after the first frame, 1.7 from the third on
(session 40). Until session 39 no figure had it and at the one for scoring only the first frame was scored (review r3
#1); until session 40 it was 1 MiB and the ``sparse_only`` floor left it out: at that floor (66 MiB) two frames ran
``sparse_only`` and the next three were dropped ``memory_budget``."""

WHOLE_TYPES = "PNG, JPEG or PNM"  # the frame types decoded whole (memory_plan.WHOLE_FILE_COPIES)


def boot_plan(rt: FlightRuntime, width: int, height: int) -> tuple[MemoryPlan, tuple[str, MemoryPlan] | None]:
    """The plan a ``height`` x ``width`` frame is checked by at boot, and where the run's frame types (``frame_types``)
    mix types decoded whole (PNG, JPEG, PNM: :func:`.memory_plan.camera_decode`) with types read in strips, those
    types and their plan: the boot plans on the strips (its refusal is for a mission no frame can fly) and warns of
    them. Every type decoded whole: the plan of the one that takes least (its file's bytes are not known yet)."""
    m = rt.m
    args = (m, width, height, rt._model_bytes(), m.camera.channels)
    types = sorted(getattr(rt, "frame_types", None) or ())
    decodes = {s: d for s in types if (d := camera_decode(m, s)) is not None}
    if not decodes:
        return plan_memory(*args), None
    whole = plan_memory(*args, whole=min(decodes.values(), key=lambda d: d.peak))
    return (whole, None) if len(decodes) == len(types) else (plan_memory(*args), (", ".join(decodes), whole))


def frame_plans(rt: FlightRuntime, width: int, height: int) -> list[tuple[str, MemoryPlan]]:
    """The plans ``check`` gives a verdict for, each with the frame types it is for ("" where it is every type the
    run reads): :func:`boot_plan`'s; where the frame types are not known (``check``) on a strip camera of fixed size,
    the strips' and, beside it, a frame decoded whole (PNG, JPEG, PNM: until session 40 ``check`` gave the strips'
    verdict alone, "fits at nominal" for a JPEG the run sent down the ladder)."""
    plan, mixed = boot_plan(rt, width, height)
    if mixed is not None:
        return [("", plan), (f"the {mixed[0]} frames (decoded whole)", mixed[1])]
    cam = rt.m.camera
    if getattr(rt, "frame_types", None) or cam.source != "strips" or not (width and height):
        return [("", plan)]
    whole = camera_decode(rt.m, next(iter(WHOLE_FILE_COPIES)))
    args = (rt.m, width, height, rt._model_bytes(), cam.channels)
    return [("", plan), (f"{WHOLE_TYPES} frames (decoded whole)", plan_memory(*args, whole=whole))]


def scoring_need(held: int, plan: MemoryPlan, least: MemoryPlan, fixed: bool) -> str:
    """What the boot's memory refusal adds to its sparse_only figure for a fixed camera: that figure is the floor for
    a frame with no patch scored; scoring every patch needs the nominal plan beside what the models hold (``held`` was
    measured after the interpreters ran, so it holds their working memory: docs/firmware_sim.md, "What the boot
    predicts") and what the loop's heap grows by over the first frames (:data:`HELD_RISE`, in both figures since
    session 40). Until session 39 only the sparse_only figure was given: 66 MiB for onnxruntime on the orbital
    mission, whose frames need 79 MiB to be scored; then the figure named for scoring (79 MiB) scored the first frame
    only (review r3 #1)."""
    from .frame_intake import mib_up

    if not fixed or plan.total <= least.total:
        return ""
    need = mib_up(held + HELD_RISE + plan.total)
    return (
        f" for frames with no patch scored (sparse_only), {need} MiB to score every patch "
        f"({plan.total:,} B of buffers at nominal)"
    )

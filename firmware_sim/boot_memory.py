"""The frame plans the boot and ``firmware-sim check`` judge a fixed camera's frames by, by frame type (those
decoded whole, PNG, JPEG and PNM, and those read in strips), and what the held RSS still grows by over the first
frames (:data:`HELD_RISE`), which every budget the boot and ``check`` advise adds. Split out of
:mod:`.frame_intake` in session 40 (which re-exports it)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from .memory_plan import WHOLE_FILE_COPIES, MemoryPlan, WholeDecode, camera_decode, plan_memory

if TYPE_CHECKING:
    from .loop import FlightRuntime

HELD_RISE = 7 * 2**19  # 3.5 MiB
"""What the RSS the loop holds between frames grows by over the first frames beyond the boot's (Python's heap: each
frame's records and ledger entry, the allocator's free chunks, a reader thread's arena), which every budget the boot
and ``check`` advise adds (the ``sparse_only`` floor too since session 40, fixer h1). With the sample codec started
at boot (:func:`.packet_check.preload_sample_codec`), after the heap is trimmed as the frame check trims it: scored
frames of the orbital mission in onnxruntime 0.6-0.7 MiB after the first frame, 0.9 after fifteen (session 39); its
TIFF strip at ``sparse_only`` (five copies, two runs) 1.0-1.1 MiB after the first frame, 1.7 from the third on
(session 40). Until session 39 no figure had it and at the one for scoring only the first frame was scored (review r3
#1); until session 40 it was 1 MiB and the ``sparse_only`` floor left it out: at that floor (66 MiB) two frames ran
``sparse_only`` and the next three were dropped ``memory_budget``; until session 40, fixer h7, 2 MiB, under a JPEG
run's rise (review r1 #1). Re-measured then on the orbital mission in onnxruntime, eight copies of a frame at the
boot's advised ``sparse_only`` floor (the held RSS before each frame's check, after its trim, over the boot's): the
HiRISE browse JPEG ESP_073496_0985 (65 MiB) 0.6-0.7 MiB after the first frame, 2.0 after the second, 2.64-2.69 from
the fourth on (its first frame ran nominal), at 63 MiB (``sparse_only`` only) 2.30-2.32; its PNG (72 MiB, nominal)
up to 2.81; its TIFF in 256-row strips (60 MiB) 2.72-2.80 from the second frame. No frame was dropped at any of
those floors (two runs each)."""

WHOLE_TYPES = "PNG, JPEG or PNM"  # the frame types decoded whole (memory_plan.WHOLE_FILE_COPIES)


def assumed_file_bytes(decoded: int) -> int:
    """The file bytes a frame decoded whole is planned with where its file is not known (``check`` without
    ``--frame-bytes``, a runtime not told its frames' sizes): its decoded image's bytes plus 1/64 and 64 KiB, which
    bounds a PNG stored with no compression at all (a filter byte per row of 64 px or more, zlib's 5 B per 64 KiB
    block, the chunks' headers), a PNM (its header) and a JPEG of fewer bytes than its samples (any at quality 95 or
    less; a JPEG of noise at quality 100 can exceed it: give ``--frame-bytes``). Measured: the orbital HiRISE browse
    JPEG 3.6 MB of 9.3 MB decoded, its PNG 5.9 MB."""
    return decoded + decoded // 64 + 2**16


def largest_files(paths: Iterable[str | os.PathLike[str]]) -> dict[str, int]:
    """The bytes of the largest file of each frame type decoded whole (its suffix, lower case) among ``paths``
    (``stat`` only: no file is read; one that cannot be stat'ed is left out, its frame dropped when it is reached):
    what ``run`` tells the boot (``FlightRuntime(frame_bytes=...)``), as it tells it the frame types."""
    largest: dict[str, int] = {}
    for p in paths:
        suffix = os.path.splitext(os.fspath(p))[1].lower()
        if suffix in WHOLE_FILE_COPIES:
            with contextlib.suppress(OSError):
                largest[suffix] = max(largest.get(suffix, 0), os.stat(p).st_size)
    return largest


def tiff_reader_bytes(paths: Iterable[str | os.PathLike[str]], most: int = 16) -> int | None:
    """The most that the readers of the run's TIFF frames state they hold (:attr:`.frame_tiff.TiffFrame.reader_bytes`,
    from each file's header: its compression, byte order, predictor and segment sizes), over its ``most`` largest TIFF
    files (a camera's frames share a layout); None when the run has none, or none opens (its frames are dropped when
    they are reached). What ``run`` tells the boot (``FlightRuntime(reader_bytes=...)``): until session 40 the boot
    planned a TIFF's reader at 2.5 bands (1.5 tiled), under what a big-endian LZW strip's holds (3.4)."""
    from .frame_tiff import TiffFrame
    from .frame_types import FrameError

    sized = []
    for p in paths:
        if os.path.splitext(os.fspath(p))[1].lower() in (".tif", ".tiff"):
            with contextlib.suppress(OSError):
                sized.append((os.stat(p).st_size, os.fspath(p)))
    held = []
    for _, p in sorted(sized, reverse=True)[:most]:
        with contextlib.suppress(FrameError, OSError, ImportError):
            held.append(TiffFrame(Path(p)).reader_bytes)
    return max(held) if held else None


def told_file_bytes(given: int | None, types: set[str] | None) -> dict[str, int] | None:
    """``check --frame-bytes N``: the largest PNG, JPEG or PNM frame file's bytes, for each such type (of
    ``--frame-type`` where given); None when not given (:func:`assumed_file_bytes` is planned)."""
    from edgeae.imagedecode import ImageLimits

    from .mission import MissionError

    if given is None:
        return None
    if given <= 0:
        raise MissionError(f"--frame-bytes {given}: a frame file's bytes, at least 1")
    most = 2 * ImageLimits.from_env().max_bytes  # a frame file's samples decode within max_bytes (imagedecode)
    if given > most:
        raise MissionError(
            f"--frame-bytes {given:,}: over {most:,} B, twice the most a frame decodes to (EDGEAE_MAX_IMAGE_BYTES)"
        )
    sizes = {s: given for s in (types if types is not None else WHOLE_FILE_COPIES) if s in WHOLE_FILE_COPIES}
    if not sizes:  # (review r3 #5 of session 40: it was silently ignored)
        raise MissionError(
            f"--frame-bytes: only PNG, JPEG and PNM frames are decoded whole; the --frame-type "
            f"{', '.join(sorted(types or ()))} frames are read in strips"
        )
    return sizes


def whole_decode_at_boot(rt: FlightRuntime, suffix: str) -> tuple[WholeDecode, str] | None:
    """What a frame of ``suffix`` decoded whole takes on the mission's camera (:func:`.memory_plan.camera_decode`)
    with its file's bytes: the largest of the run's files of that type (``rt.frame_bytes``, from ``run``'s
    --frames or ``check --frame-bytes``), else :func:`assumed_file_bytes`; and where those bytes come from, for
    ``check`` to print. None for a type read in strips or a camera of any size. Until session 40 (fixer h7) the
    file's bytes were 0 here while the frame check counts them (a PNG's twice): at the boot's advised floor every
    PNG frame of the orbital mission was dropped ``memory_budget`` (review r1 #1)."""
    d = camera_decode(rt.m, suffix)
    if d is None:
        return None
    known = (getattr(rt, "frame_bytes", None) or {}).get(suffix.lower())
    if known is not None:
        return dataclasses.replace(d, file=int(known)), f"its file's bytes {int(known):,} B (the largest {suffix})"
    n = assumed_file_bytes(d.decoded)
    return dataclasses.replace(d, file=n), (
        f"its file's bytes assumed at most {n:,} B (the decoded image's + 1/64 + 64 KiB; --frame-bytes gives the "
        "largest file's)"
    )


def _whole_plans(rt: FlightRuntime, width: int, height: int) -> dict[str, MemoryPlan]:
    """The plan of each of the run's frame types decoded whole, by type (:func:`whole_decode_at_boot`)."""
    m = rt.m
    args = (m, width, height, rt._model_bytes(), m.camera.channels)
    out = {}
    for s in sorted(getattr(rt, "frame_types", None) or ()):
        if (d := whole_decode_at_boot(rt, s)) is not None:
            out[s] = plan_memory(*args, whole=d[0])
    return out


def boot_plan(rt: FlightRuntime, width: int, height: int) -> tuple[MemoryPlan, tuple[str, MemoryPlan] | None]:
    """The plan a ``height`` x ``width`` frame is checked by at boot, and where the run's frame types (``frame_types``)
    mix types decoded whole (PNG, JPEG, PNM: :func:`whole_decode_at_boot`, their files' bytes counted) with types
    read in strips, those types and their plan: the boot plans on the strips (its refusal is for a mission no frame
    can fly) and warns of them. Every type decoded whole: the plan of the one that takes most (its refusal takes the
    least, :func:`least_plan`; until session 40, fixer h7, the least: a run of PNG and JPEG frames was advised the
    JPEG's figures, review r1 #4)."""
    m = rt.m
    args = (m, width, height, rt._model_bytes(), m.camera.channels)
    types = sorted(getattr(rt, "frame_types", None) or ())
    plans = _whole_plans(rt, width, height)
    held = getattr(rt, "reader_bytes", None)  # the run's TIFF readers' own figure (run: --frames)
    if not plans:
        return plan_memory(*args, reader_bytes=held), None
    if len(plans) == len(types):
        return max(plans.values(), key=lambda p: p.total), None
    worst = max(plans, key=lambda s: plans[s].total)
    return plan_memory(*args, reader_bytes=held), (", ".join(plans), plans[worst])


def least_plan(rt: FlightRuntime, width: int, height: int) -> MemoryPlan:
    """The ``sparse_only`` plan of the run's frame type that takes least: what the boot's refusal (no frame could
    fly) and the room check judge by."""
    from .budget import LADDER
    from .frame_intake import level_plan

    plan, mixed = boot_plan(rt, width, height)
    plans = [plan, *([] if mixed is None else [mixed[1]]), *_whole_plans(rt, width, height).values()]
    return min((level_plan(p, LADDER[-1]) for p in plans), key=lambda p: p.total)


def frame_plans(rt: FlightRuntime, width: int, height: int) -> list[tuple[str, MemoryPlan, str]]:
    """The plans ``check`` gives a verdict for, each with the frame types it is for ("" where it is every type the
    run reads) and, for a frame decoded whole, where its file's bytes come from (:func:`whole_decode_at_boot`):
    :func:`boot_plan`'s; where the frame types are not known (``check``) on a strip camera of fixed size, the strips'
    and, beside it, a frame decoded whole, planned as a PNG (its file's bytes twice at the decode's peak: the most of
    the three; until session 40 ``check`` gave the strips' verdict alone, "fits at nominal" for a JPEG the run sent
    down the ladder)."""
    plan, mixed = boot_plan(rt, width, height)
    types = sorted(getattr(rt, "frame_types", None) or ())
    whole_types = [s for s in types if s in WHOLE_FILE_COPIES]
    note = ""
    if whole_types:  # the type planned: the one whose plan is the largest (boot_plan)
        plans = _whole_plans(rt, width, height)
        worst = max(plans, key=lambda s: plans[s].total) if plans else whole_types[0]
        d = whole_decode_at_boot(rt, worst)
        note = "" if d is None else d[1]
    if mixed is not None:
        return [("", plan, ""), (f"the {mixed[0]} frames (decoded whole)", mixed[1], note)]
    cam = rt.m.camera
    if types or cam.source != "strips" or not (width and height):
        return [("", plan, note if plan.decode else "")]
    whole = whole_decode_at_boot(rt, ".png")
    if whole is None:
        return [("", plan, "")]
    args = (rt.m, width, height, rt._model_bytes(), cam.channels)
    return [("", plan, ""), (f"{WHOLE_TYPES} frames (decoded whole)", plan_memory(*args, whole=whole[0]), whole[1])]


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


def largest_type(rt: FlightRuntime, width: int, height: int) -> str:
    """The run's frame type decoded whole whose plan is the largest (``.png`` of a PNG and JPEG run)."""
    plans = _whole_plans(rt, width, height)
    return max(plans, key=lambda s: plans[s].total) if plans else "largest"


def every_type(rt: FlightRuntime, held: int, floor: MemoryPlan, width: int, height: int) -> str:
    """The boot refusal's figure for every frame type of the run to fly at ``sparse_only``, where its floor is the
    smallest type's (review r3 #2 of session 40: a PNG and JPEG run advised the JPEG's floor, where the PNG frames
    are all dropped)."""
    from .budget import LADDER
    from .frame_intake import level_plan, mib_up

    plan, mixed = boot_plan(rt, width, height)
    most = max(level_plan(p, LADDER[-1]).total for p in [plan, *([] if mixed is None else [mixed[1]])])
    if mib_up(held + HELD_RISE + most) <= mib_up(held + HELD_RISE + floor.total):
        return ""
    return f" ({mib_up(held + HELD_RISE + most)} MiB for every frame type of the run)"

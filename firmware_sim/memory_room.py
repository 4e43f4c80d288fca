"""The memory the board gives this process, against what the mission plans.

``[budget] memory_bytes`` is what the mission may use; the *room* (:func:`room_now`, from the neutral
:mod:`edgeae.memory_probe`, standard library only: the smallest of the system's MemAvailable, the room under the
process's memory cgroup and the address space left under RLIMIT_AS) is what the process can still get. At boot, once
the models are loaded, :func:`check_room` refuses in one line a mission whose frames cannot fit the room even at
``sparse_only`` and warns when they fit only lower on the ladder; before each frame :func:`room_cap` lowers the
ladder's limit to the room; an allocation that fails while the boot loads and starts the models (a MemoryError, a
thread that cannot start, an interpreter's arena, a library that cannot be mapped) is the boot's one-line refusal
naming the limit (:func:`boot_out_of_memory`), and a frame that runs out is dropped ``memory_unavailable``
(:mod:`.frame_run`). Until session 36 (audit a3) none of this was compared: under ``ulimit -v`` ``check`` said
"fits", ``run`` dropped every frame with MemoryError, and lower limits crashed the boot with tracebacks.
"""

from __future__ import annotations

import errno
import os
import re
import sys
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edgeae.memory_probe import SOURCE_NAMES, tightest

from .budget import MemoryPlan
from .cli_advice import fewer_threads
from .mission import Mission, MissionError

if TYPE_CHECKING:
    from .loop import FlightRuntime

MIB = 2**20
DEFAULT_STACK = 8 * MIB  # glibc's thread stack where RLIMIT_STACK is unlimited or unknown

# A failed allocation that is not a MemoryError, told by its type and the library's own text, never by a message
# that may embed a path: CPython's thread start (the whole message), onnxruntime's status codes an allocation takes
# with its arena's / C++'s words, the dynamic loader's reason (after the library's path), zlib's Z_MEM_ERROR.
THREAD_START = "can't start new thread"
_ORT = re.compile(r"\[ONNXRuntimeError\] : \d+ : (?:FAIL|RUNTIME_EXCEPTION|EP_FAIL) : ")
_ORT_CLASSES = ("Fail", "RuntimeException", "EPFail")  # onnxruntime_pybind11_state's classes of those codes
_ORT_WORDS = re.compile(
    r"Failed to allocate memory for requested buffer|std::bad_alloc|is smaller than requested bytes"
)
_ORT_PATHS = re.compile(r"Load model from .* failed:")  # the one message of those codes that names a file
_LOADER_WORDS = ("failed to map segment from shared object", "cannot map zero-fill pages", "cannot allocate memory")
# onnxruntime starting its threads (an ORT_ENFORCE from its own source tree, not a user path): ENOMEM
_ORT_THREAD = re.compile(r"^/onnxruntime_src/\S+:\d+ .*pthread_create failed, error code: 12\b", re.S)


@dataclass(frozen=True)
class Room:
    """What the process can still get (``bytes``) and the bound that sets it (``source``, a key of
    :data:`edgeae.memory_probe.SOURCE_NAMES`)."""

    bytes: int
    source: str

    @property
    def text(self) -> str:
        return f"{self.bytes / MIB:,.1f} MiB ({SOURCE_NAMES.get(self.source, self.source)})"


def room_now() -> Room | None:
    """The room this process has now; None where no bound is known (not Linux)."""
    found = tightest()
    return None if found is None else Room(*found)


def stack_bytes() -> int:
    """The address space one new thread's stack reserves: RLIMIT_STACK's soft limit, as glibc sizes them."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_STACK)[0]
    except (ImportError, OSError, ValueError):
        return DEFAULT_STACK
    return DEFAULT_STACK if soft == resource.RLIM_INFINITY or soft <= 0 else int(soft)


def frame_threads(mission: Mission) -> int:
    """Threads a frame starts: a streamed frame's prefetch thread and tifffile's decoders (two for uncompressed
    tiles, up to half the CPUs for compressed ones); a whole file's none (its decoder runs in the loop's thread)."""
    return 1 + max(2, (os.cpu_count() or 1) // 2) if mission.camera.source == "strips" else 0


def address_margin(mission: Mission, room: Room) -> int:
    """Address space a frame reserves beyond its planned buffers, which only RLIMIT_AS counts: the stacks of the
    threads it starts (the NAC strip at ``sparse_only``: 43 MiB of address space for a 19 MiB plan, three 8 MiB
    stacks; measured in session 36). 0 for the other bounds, which count memory touched."""
    return stack_bytes() * frame_threads(mission) if room.source == "RLIMIT_AS" else 0


def room_cap(mission: Mission, held: int) -> tuple[int, Room] | None:
    """``(cap, room)``: the most bytes over the boot baseline that the process holding ``held`` now can reach
    with a frame (the room less the address space its threads reserve); None where the room is unknown, or where
    ``[budget] board_memory = "budget-only"`` turns this per-frame cap off (the budget alone sets the ladder, so
    the levels do not depend on the host's memory at each frame; review r9 of session 36)."""
    if mission.budget.board_memory == "budget-only":
        return None
    room = room_now()
    if room is None:
        return None
    return held + max(0, room.bytes - address_margin(mission, room)), room


def _plans(rt: FlightRuntime) -> tuple[MemoryPlan, MemoryPlan]:
    """The frame plan at nominal and at ``sparse_only`` (a camera of any size: its size-independent buffers), of the
    run's frame types where known (:func:`.boot_memory.boot_plan`: a PNG, JPEG or PNM frame decoded whole; where
    they mix, the largest nominal plan and the smallest ``sparse_only`` one, :func:`.boot_memory.least_plan`).
    Until session 40 the strips' alone: the boot of a run of JPEG strips compared 10.5 MiB at nominal with the
    room, its frames needing 16.9 MiB."""
    from .boot_memory import boot_plan, least_plan

    cam = rt.m.camera
    fixed = bool(cam.width and (cam.height or cam.source == "strips"))
    size = (cam.width, cam.height) if fixed else (0, 0)
    plan, mixed = boot_plan(rt, *size)
    plans = [plan] if mixed is None else [plan, mixed[1]]
    return max(plans, key=lambda p: p.total), least_plan(rt, *size)


def check_room(rt: FlightRuntime) -> list[str]:
    """After the models loaded: refuse a boot whose frames cannot fit what this process can still get even at
    ``sparse_only``; the warnings to print when only a lower level fits, or when ``[budget] memory_bytes`` is more
    than the board gives (the budget is then not the limit). A ``memory_room`` event records the numbers."""
    room = room_now()
    if room is None:
        return []
    m = rt.m
    plan, least = _plans(rt)
    margin = address_margin(m, room)
    held = max(0, rt.rss_loaded - rt.rss_boot)
    budget = m.budget.memory_bytes
    rt.tm.write("event", kind="memory_room", bytes=room.bytes, source=room.source, address_margin=margin,
                nominal_need=plan.total, sparse_only_need=least.total, held=held, budget=budget)  # fmt: skip
    stacks = f" and {margin / MIB:,.0f} MiB of thread stacks" if margin else ""
    if least.total + margin > room.bytes:
        raise MissionError(
            f"{m.source_path}: this process can get only {room.text} more after the models loaded, and a frame "
            f"needs {least.total / MIB:,.1f} MiB of buffers{stacks} even at sparse_only: give the process more memory"
            f"{fewer_threads(m.runtime.threads)} or lower the camera size"
        )
    out = []
    if plan.total + margin > room.bytes:
        out.append(
            f"this process can get only {room.text} more after the models loaded; a frame's buffers need "
            f"{plan.total / MIB:,.1f} MiB{stacks} at nominal: frames run lower on the ladder (memory_degraded)"
        )
    elif budget > held + room.bytes:
        out.append(
            f"[budget] memory_bytes = {budget / MIB:,.0f} MiB is more than this process can get: it holds "
            f"{held / MIB:,.1f} MiB over its boot baseline and can get only {room.text} more"
        )
    for w in out:
        rt.tm.write("event", kind="boot_warning", detail=w)
    return out


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` (or an error it chains) is an allocation that failed, told by its type and the library's own
    words, never by text that may hold a path: a MemoryError, the decoders' :class:`~edgeae.imagedecode.
    ImageMemoryError` / :class:`~.frames.FrameMemoryError`, errno ENOMEM, a thread that cannot start, onnxruntime's
    arena or ``std::bad_alloc``, a library the loader cannot map, zlib's Z_MEM_ERROR. A damaged file (``FrameError``,
    ``ImageReadError``) is never, whatever it chains: its decoder already decided. Until review r13 of session 36
    any message holding "out of memory" counted, so a damaged TIFF in a folder of that name was dropped
    ``memory_unavailable`` and retaken by every rerun."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        decided = _decided(e)
        if decided is not None:
            return decided
        e = e.__cause__ or e.__context__
    return False


def _decided(e: BaseException) -> bool | None:
    """True / False where ``e`` alone says whether memory failed; None: look at what it chains."""
    if isinstance(e, MemoryError) or getattr(e, "errno", None) == errno.ENOMEM:
        return True
    frames, images = sys.modules.get(f"{__package__}.frames"), sys.modules.get("edgeae.imagedecode")
    if frames is not None and isinstance(e, frames.FrameError):  # imported by then: no import at error time
        return isinstance(e, frames.FrameMemoryError)
    if images is not None and isinstance(e, images.ImageReadError):
        return isinstance(e, images.ImageMemoryError)
    text = str(e)
    if isinstance(e, RuntimeError) and (text.strip() == THREAD_START or _ORT_THREAD.match(text)):
        return True
    ort = type(e).__module__.startswith("onnxruntime") and type(e).__name__ in _ORT_CLASSES
    if ort or (isinstance(e, RuntimeError) and _ORT.match(text)):
        return bool(_ORT_WORDS.search(_ORT_PATHS.sub("", text))) or None
    if isinstance(e, (ImportError, OSError)):  # dlerror: "PATH: reason"; only the reason is the loader's
        reason = text.rsplit(": ", 1)[-1].strip()
        if isinstance(e, ImportError) and reason == "std::bad_alloc":  # onnxruntime's import: "Exception caught: ..."
            return True
        return reason.lower() in _LOADER_WORDS or None
    if isinstance(e, zlib.error) and text.startswith("Error -4 "):  # Z_MEM_ERROR
        return True
    return None


def boot_out_of_memory(mission: Mission, stage: str, exc: BaseException) -> MissionError:
    """The boot's one-line refusal when ``stage`` (loading the models, ...) ran out of memory."""
    room = room_now()
    have = f"; this process can get {room.text} more now" if room is not None else ""
    return MissionError(
        f"{mission.source_path}: out of memory while {stage} ({_what(exc)}){have}: give the process more memory "
        f"(ulimit -v, the cgroup's memory.max){fewer_threads(mission.runtime.threads)}"
    )


def _what(exc: BaseException, most: int = 200) -> str:
    """``Type: first line`` of ``exc``, the line cut at a word with "..." past ``most`` characters, ``Type`` alone
    when it has no text or only its type's name (until review r9 of session 36 "MemoryError: MemoryError", and a
    long line cut mid-word)."""
    name = type(exc).__name__
    lines = str(exc).strip().splitlines()
    text = lines[0].strip() if lines else ""
    if not text or text == name:
        return name
    if len(text) > most:
        text = text[:most].rsplit(" ", 1)[0].rstrip(" ,;:") + "..."
    return f"{name}: {text}"


def room_detail(room: Room, held: int, least: int, margin: int) -> str:
    """Why a frame cannot fit the room even at ``sparse_only`` (the detail of its drop)."""
    stacks = f" and {margin / MIB:,.0f} MiB of thread stacks" if margin else ""
    return (
        f"this process can get only {room.text} more (it holds {held:,} B over its boot baseline) and this frame's "
        f"buffers need {least:,} B{stacks} even at sparse_only: the board's memory, not [budget] memory_bytes, is "
        "the limit"
    )


def describe(rec: dict[str, Any], room: Room, cap: int, refused: bool = False) -> None:
    """Record in a frame's record that the room, not the budget, set its memory limit (``cap``, bytes over the boot
    baseline); ``refused``: not even ``sparse_only`` fit it (:func:`.frame_intake.memory_fit` codes the drop
    ``memory_unavailable``)."""
    rec["memory_room"] = {"bytes": room.bytes, "source": room.source, "cap": cap}
    if refused:
        rec["memory_room"]["refused"] = True

"""What a frame costs in memory, measured: the process RSS (Linux ``/proc``, else ``getrusage``), the kernel's
high-water mark reset per frame, and :class:`MemoryMeter`, which the loop samples at every strip (the plan
before flight is :func:`.budget.plan_memory`)."""

from __future__ import annotations

import os
import resource
import sys
import tracemalloc
from typing import Any


def rss_bytes() -> int:
    """Current resident set size (Linux /proc; falls back to the peak from getrusage)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return peak_rss_bytes()


def peak_rss_bytes() -> int:
    """Peak resident set size of the process so far (ru_maxrss is KiB on Linux, bytes on macOS)."""
    v = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(v if sys.platform == "darwin" else v * 1024)


def reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark (VmHWM) of this process; False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def trim_heap() -> bool:
    """Collect Python's garbage and return the heap's free memory to the system (glibc ``malloc_trim``);
    False where there is no such call."""
    import ctypes
    import gc

    gc.collect()
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    trim(0)
    return True


def hwm_rss_bytes() -> int | None:
    """The kernel's RSS high-water mark since the last reset (VmHWM, Linux), or None."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class MemoryMeter:
    """What a frame really costs in memory: the process RSS (its peak per frame from the kernel's
    high-water mark, reset before each frame, else sampled at every strip), and with ``enabled`` the
    Python/numpy allocations tracemalloc sees beside it (they miss interpreter arenas, libraries and native
    buffers, and tracing them costs time and memory of its own: off unless asked for).

    The budget is enforced on RSS growth over the boot baseline (``rss_boot``: Python + numpy, before models
    and buffers); the traced peak is reported beside it (None when not traced).
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.started_here = False
        self.run_peak = 0
        self.rss_run_peak = 0
        self.rss_frame_peak = 0
        self.hwm_resettable = False

    def rss(self) -> int:
        """Current RSS, also folded into this frame's peak."""
        now = rss_bytes()
        self.rss_frame_peak = max(self.rss_frame_peak, now)
        return now

    def start(self) -> None:
        if self.enabled and not tracemalloc.is_tracing():
            tracemalloc.start()
            self.started_here = True

    def stop(self) -> None:
        if self.started_here:
            tracemalloc.stop()
            self.started_here = False

    def reset(self) -> None:
        if self.enabled and tracemalloc.is_tracing():
            tracemalloc.reset_peak()
        self.hwm_resettable = reset_peak_rss()
        self.rss_frame_peak = rss_bytes()

    def sample(self) -> dict[str, Any]:
        traced: tuple[int | None, int | None] = (None, None)
        if self.enabled and tracemalloc.is_tracing():
            traced = tracemalloc.get_traced_memory()
            self.run_peak = max(self.run_peak, traced[1] or 0)
        now = self.rss()
        hwm = hwm_rss_bytes() if self.hwm_resettable else None
        frame_peak = max(self.rss_frame_peak, hwm or 0)
        self.rss_run_peak = max(self.rss_run_peak, frame_peak)
        return {
            "traced_now": traced[0],
            "traced_peak": traced[1],
            "rss": now,
            "rss_frame_peak": frame_peak,
            "rss_frame_peak_source": "VmHWM" if hwm is not None else "sampled per strip",
            "rss_peak": self.rss_run_peak,  # the frames' high-water marks so far (not ru_maxrss: see loop.finish)
        }

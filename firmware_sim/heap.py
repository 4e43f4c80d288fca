"""The flight process's heap policy: a compact glibc malloc, set once at boot before any thread starts.

Flight software owns its allocator. Left to its defaults, glibc's malloc gives every thread that allocates
its own arena (the prefetch thread and each scoring interpreter) and keeps freed memory in each of them, and
it raises its mmap threshold after the first large buffer is freed, so later strip-sized buffers (1.3 MB for
a NAC strip) come from the heap and stay resident after they are freed. On a NAC-size strip that was 4-5 MiB
of RSS the frame did not use (docs/firmware_sim.md, "Fitting a NAC-size strip in 64 MiB", has the
measurements).

``compact`` (the default) sets, through ``mallopt``:

- ``M_ARENA_MAX = 1``: one arena for every thread (the scoring threads spend their time inside the
  interpreter, not in malloc: no CPU time was lost on the NAC strip);
- ``M_MMAP_THRESHOLD = 1 MiB`` (fixed: setting it turns off the dynamic threshold): strip-sized buffers are
  mapped and unmapped, so a freed strip returns to the system at once (a 128 KiB threshold saved 3 MiB more
  but cost ~15 % more CPU time in page faults);
- ``M_TRIM_THRESHOLD = 1 MiB``: free memory at the top of the heap beyond that is returned.

``system`` leaves malloc as the platform set it. On a C library without glibc's ``mallopt`` (musl, macOS,
Windows) ``compact`` changes nothing and says so.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

HEAP_POLICIES = ("compact", "system")

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8  # glibc <malloc.h>
COMPACT = {"M_ARENA_MAX": (M_ARENA_MAX, 1), "M_MMAP_THRESHOLD": (M_MMAP_THRESHOLD, 1 << 20),
           "M_TRIM_THRESHOLD": (M_TRIM_THRESHOLD, 1 << 20)}  # fmt: skip


def glibc_version() -> str | None:
    """The running glibc's version ("2.36"), None on another C library."""
    try:
        text = os.confstr("CS_GNU_LIBC_VERSION")
    except (AttributeError, ValueError, OSError):
        return None
    if not text or not text.startswith("glibc"):
        return None
    return text.split()[-1]


def apply_heap_policy(policy: str) -> dict[str, Any]:
    """Apply ``policy`` to this process's malloc; returns what was done, for the boot telemetry.

    Call it before any thread allocates (the arena limit binds threads that have not yet made an arena).
    """
    if policy not in HEAP_POLICIES:
        raise ValueError(f"heap policy must be one of {HEAP_POLICIES}, got {policy!r}")
    if policy == "system":
        return {"policy": "system"}
    version = glibc_version()
    if version is None:
        return {"policy": "system", "requested": policy, "reason": "not glibc: malloc left as the platform set it"}
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError) as exc:
        return {"policy": "system", "requested": policy, "reason": f"mallopt unavailable ({exc})"}
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    failed = [name for name, (param, value) in COMPACT.items() if mallopt(param, value) != 1]
    out: dict[str, Any] = {"policy": policy, "glibc": version, **{k: v for k, (_, v) in COMPACT.items()}}
    if failed:
        out["failed"] = failed
    return out

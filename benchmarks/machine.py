"""What every benchmark JSON records: machine, versions, threads and commit.

``threads`` is the thread count the script itself used (None where it set none); ``thread_settings`` is what sets
the count for the libraries underneath (the OMP/MKL/OpenBLAS variables as given, the CPU count and the CPUs this
process may run on). ``python -m benchmarks`` computes the commit once, before it writes anything, and passes it to
its stages in ``$EDGEAE_BENCHMARK_COMMIT``. The commit's ``+dirty`` mark says that the code or docs differ from it:
the benchmarks' own results (benchmarks/results/, benchmarks/RESULTS.md) are left out of that check.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

COMMIT_ENV = "EDGEAE_BENCHMARK_COMMIT"
"""Set by ``python -m benchmarks`` for its stages: the commit it recorded before writing anything."""
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")

PACKAGES = (
    "edgeae",
    "numpy",
    "torch",
    "onnx",
    "onnxruntime",
    "ai-edge-litert",
    "litert-torch",
    "opencv-python-headless",
    "imagecodecs",
    "scikit-image",
    "spacepackets",
    "ray",
    "pyarrow",
)


def _cpu_model() -> str:
    from edgeae.firmware_sim.cpu import cpu_model

    return cpu_model() or platform.processor() or "unknown"


def _cpu_flags() -> list[str]:
    from edgeae.firmware_sim.cpu import cpu_flags

    return sorted(f for f in cpu_flags() if f.startswith(("avx", "amx", "fma")) or f == "avx512_vnni")


RESULT_PATHS = ("benchmarks/results", "benchmarks/RESULTS.md")
"""What the benchmarks themselves write in the repository: left out of the ``+dirty`` check (a stage run after
another on a clean checkout was marked dirty by the first one's results until session 38)."""


def _commit(root: Path | None = None) -> str:
    """The checkout's short commit, ``+dirty`` when a file other than the benchmarks' own results
    (:data:`RESULT_PATHS`) differs from it or is untracked; ``$EDGEAE_BENCHMARK_COMMIT`` when set."""
    given = os.environ.get(COMMIT_ENV)
    if given:
        return given
    repo = str(root or Path(__file__).resolve().parent.parent)
    try:
        out = subprocess.run(
            ["git", "-C", repo, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        # pathspecs relative to the repository's top (":/"), whichever folder it is run from
        pathspec = [":/", *(f":(top,exclude){p}" for p in RESULT_PATHS)]
        dirty = subprocess.run(
            ["git", "-C", repo, "status", "--porcelain", "--", *pathspec], capture_output=True, text=True, check=True
        ).stdout.strip()
        return out + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _gpu() -> str | None:
    try:
        import torch

        if torch.cuda.is_available():
            return str(torch.cuda.get_device_name(0))
    except ImportError:
        pass
    return None


def machine_info(threads: int | None = None) -> dict[str, Any]:
    """A JSON-able record of where and with what a benchmark ran."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    try:
        import psutil

        mem_gb = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        mem_gb = None
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": _commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "logical_cores": os.cpu_count(),
        "memory_gb": mem_gb,
        "gpu": _gpu(),
        "threads": threads,
        "thread_settings": thread_settings(),
        "versions": versions,
    }


def thread_settings() -> dict[str, Any]:
    """What sets the libraries' thread counts: each of :data:`THREAD_VARS` as given (None: unset), the logical CPU
    count and how many of them this process may run on (its affinity; None where the OS cannot say)."""
    try:
        affinity: int | None = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on every OS
        affinity = None
    return {"env": {k: os.environ.get(k) for k in THREAD_VARS}, "cpu_count": os.cpu_count(), "affinity": affinity}


def wait_for_quiet(max_load: float = 0.5, timeout_s: float = 180.0, poll_s: float = 5.0) -> dict[str, Any]:
    """Wait until the 1-minute load average is at most ``max_load`` (at most ``timeout_s``), so a wall-clock run
    does not start on the tail of the previous one (the average decays with a one-minute time constant: after a
    15-s run on both cores it stays above 0.5 for about a minute). Returns what it saw, for the results."""
    t0 = time.monotonic()
    first = os.getloadavg()[0]
    while os.getloadavg()[0] > max_load and time.monotonic() - t0 < timeout_s:
        time.sleep(poll_s)
    # write back every dirty page now: the flight loop and the scan fsync their queue and results, and on this
    # machine's ext4 disk an fsync waits for everything other processes left dirty (seconds after a pip install)
    ts = time.monotonic()
    os.sync()
    sync_s = round(time.monotonic() - ts, 2)
    now = os.getloadavg()[0]
    waited = round(time.monotonic() - t0, 1)
    quiet = now <= max_load
    return {"load_at_call": round(first, 2), "waited_s": waited, "load_at_start": round(now, 2), "quiet": quiet,
            "sync_s": sync_s, "io_pressure_avg10": io_pressure()}  # fmt: skip


def io_pressure() -> float | None:
    """The kernel's "some" I/O pressure over the last 10 s (% of time a task waited on I/O); None without PSI."""
    try:
        first = Path("/proc/pressure/io").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    return float(dict(kv.split("=") for kv in first.split()[1:])["avg10"])

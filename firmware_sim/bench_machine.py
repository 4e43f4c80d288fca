"""The machine record a board bench (and the board check, :mod:`edgeae.export.board`) writes beside its timings,
for comparing boards: the CPU and its SIMD flags, the package versions, the 1-minute load and whether the machine was
busy, and thread counts above the cores this process may use."""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Sequence
from typing import Any

import numpy as np

SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni",
              "avx512_bf16", "amx_int8", "asimd", "asimddp", "sve", "neon")  # fmt: skip


def cpu_record() -> dict[str, Any]:
    """What decides an artifact's speed on this CPU, for comparing boards: machine, model, the SIMD flags that
    pick onnxruntime's and XNNPACK's kernels, VNNI, whether full-range int8 ONNX weights saturate here."""
    from .cpu import VNNI_FLAGS, cpu_flags, cpu_model, int8_saturates

    flags = cpu_flags()
    return {
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "simd": [f for f in SIMD_FLAGS if f in flags] if flags else None,
        "vnni": bool(flags & VNNI_FLAGS) if flags else None,
        "int8_saturates": int8_saturates(),
    }


def load_1min() -> float | None:
    """The 1-minute load average (None where the OS has none)."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def busy_note(loads: Sequence[float | None], cpus: int | None) -> str | None:
    """A warning when any of ``loads`` (1-minute load averages) is at or above the CPU count: the timings are
    then of a busy machine (others' work shares the cores)."""
    top = max((x for x in loads if isinstance(x, int | float)), default=None)
    if top is None or not cpus or top < cpus:
        return None
    return (
        f"1-minute load {top:.2f} at or above the {cpus} CPUs: the timings are of a busy machine; compare runs made "
        "at a low load, or the CPU figures"
    )


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version(), "numpy": np.__version__}
    for dist in ("onnxruntime", "ai-edge-litert", "edgeae"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out


def machine_record() -> dict[str, Any]:
    """The machine a flight run ran on, for its ``start`` line: the CPU (:func:`cpu_record`), its CPUs and the cores
    this process may use, the 1-minute load at the start, and the package versions: without them a frame time cannot
    be judged afterwards (the same rover frame took 0.46-3.4 s on one host, by its load)."""
    from .frame_intake import usable_cores

    return {
        "cpu": cpu_record(),
        "cpus": os.cpu_count(),
        "usable_cores": usable_cores(),
        "loadavg_1min": load_1min(),
        "versions": _versions(),
    }


def machine_line(result: dict[str, Any]) -> str:
    """``machine: CPU MODEL (x86_64, 2 CPUs), python 3.11.7, numpy 2.4.6, edgeae 0.1.0``: the bench table's line
    for the machine and versions (until session 36 only in ``--json``)."""
    machine, versions = result.get("machine") or {}, result.get("versions") or {}
    cpu = machine.get("cpu") or {}
    model = cpu.get("cpu_model") or machine.get("processor") or "unknown CPU"
    arch = cpu.get("machine") or ""
    cpus = machine.get("cpus")
    where = ", ".join(x for x in (arch, f"{cpus} CPUs" if cpus else "") if x)
    vnni = {True: ", VNNI", False: ", no VNNI"}.get(bool(cpu["vnni"]), "") if cpu.get("vnni") is not None else ""
    soft = ", ".join(f"{k} {versions[k]}" for k in ("python", "numpy", "edgeae") if versions.get(k))
    return f"machine: {model}" + (f" ({where}{vnni})" if where or vnni else "") + (f", {soft}" if soft else "")


def thread_warning(threads: Sequence[int]) -> str | None:
    """What ``firmware-sim run`` warns about a mission's ``[runtime] threads``, for bench's thread counts: more
    threads than the cores this process may use cost time without scoring faster."""
    from .frame_intake import usable_cores

    cores = usable_cores()
    over = sorted({int(t) for t in threads if cores and int(t) > cores})
    if not over:
        return None
    return (
        f"--threads {','.join(map(str, over))}: more than the {cores} core(s) this machine gives the process; "
        "those runs measure contention, not a faster board"
    )

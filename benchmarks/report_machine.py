"""Where a section of RESULTS.md says its numbers were measured: the machine, commit, versions and thread settings a
stage recorded, and the SIMD level its CPU flags give (float results move with it). Used by benchmarks/report.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def simd_level(flags: list[str] | tuple[str, ...]) -> str:
    """The instruction-set level that changes float results: AVX-512 / AVX2 / AVX / SSE, + VNNI, + AMX."""
    fl = set(flags)
    top = "AVX-512" if "avx512f" in fl else "AVX2" if "avx2" in fl else "AVX" if "avx" in fl else "SSE"
    if "avx512_vnni" in fl or "avx_vnni" in fl:
        top += " + VNNI"
    if "amx_tile" in fl:
        top += " + AMX"
    return top


def _x86(flags: list[str] | tuple[str, ...]) -> bool:
    """Whether ``flags`` are an x86 CPU's as recorded (an empty list, or an ARM CPU's: no level to name)."""
    return any(f.startswith(("sse", "avx", "fma")) for f in flags)


def _json_machine(path: Path) -> tuple[list[str], str | None] | None:
    """The CPU flags a stage's JSON recorded (``machine.cpu_flags``; pytest-benchmark's ``machine_info.cpu``) and
    the commit it recorded, or None."""
    if path.stat().st_size > 5_000_000:
        return None
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(d, dict):
        return None
    m = d.get("machine")
    if isinstance(m, dict) and isinstance(m.get("cpu_flags"), list):
        return [str(f) for f in m["cpu_flags"]], m.get("commit")
    info = d.get("machine_info")
    cpu = info.get("cpu") if isinstance(info, dict) else None
    if isinstance(cpu, dict) and isinstance(cpu.get("flags"), list):
        return [str(f) for f in cpu["flags"]], (d.get("commit_info") or {}).get("id", "")[:7] or None
    return None


def simd_note(where: dict[str, Any] | None, folder: Path, jsons: list[Path]) -> str:
    """' SIMD: ...' from the stage record's cpu flags, else from those its JSON files recorded (with the JSON's
    commit where it is not the record's); ' SIMD level not recorded.' if none did."""
    if where and isinstance(where.get("cpu_flags"), list) and _x86(where["cpu_flags"]):
        return f" SIMD: {simd_level(where['cpu_flags'])}."
    base = str((where or {}).get("commit") or "").split("+")[0]
    levels: dict[str, list[str]] = {}
    for j in jsons:
        got = _json_machine(j)
        if got is not None and _x86(got[0]):
            flags, commit = got
            other = commit and base and str(commit).split("+")[0] != base
            levels.setdefault(simd_level(flags), []).append(
                j.relative_to(folder).as_posix() + (f" at commit {commit}" if other else "")
            )
    if not levels:
        return " SIMD level not recorded."
    per = "; ".join(f"{lvl} ({', '.join(files)})" for lvl, files in sorted(levels.items()))
    return f" SIMD, from the CPU flags its JSON recorded: {per}."


def _machine_md(m: dict[str, Any]) -> str:
    v = m.get("versions", {})
    vers = ", ".join(f"{k} {val}" for k, val in v.items() if val)
    return (
        f"- commit `{m.get('commit')}`, {m.get('date')}\n- CPU: {m.get('cpu')} ({m.get('logical_cores')} logical "
        f"cores; {' '.join(m.get('cpu_flags', []))}), {m.get('memory_gb')} GB RAM, GPU: {m.get('gpu') or 'none'}\n"
        f"- Python {m.get('python')} on {m.get('platform')}\n- {vers}\n"
        + (f"- Threads: {threads_note(m['thread_settings'])}\n" if isinstance(m.get("thread_settings"), dict) else "")
    )


def threads_note(ts: dict[str, Any]) -> str:
    """What set the thread counts (machine.thread_settings), e.g. 'OMP_NUM_THREADS unset, ...; 2 CPUs, affinity 2'."""
    env = ", ".join(f"{k}={v}" if v is not None else f"{k} unset" for k, v in (ts.get("env") or {}).items())
    return f"{env}; {ts.get('cpu_count')} CPUs, affinity {ts.get('affinity')}"


def _where_note(where: dict[str, Any] | None) -> str:
    if not where:
        return " Run before stages recorded their machine: see this section's own text and the git history."
    return (
        f" Run {where.get('date')} at commit `{where.get('commit')}` on {where.get('cpu')} "
        f"({where.get('logical_cores')} logical cores, AMX {'yes' if where.get('amx') else 'no'}, "
        + (f"VNNI {'yes' if where['vnni'] else 'no'}, " if "vnni" in where else "")
        + f"GPU {where.get('gpu') or 'none'})."
        + (
            " Versions: " + ", ".join(f"{k} {v}" for k, v in where["versions"].items() if v) + "."
            if where.get("versions")
            else ""
        )
        + (f" Threads: {threads_note(where['threads'])}." if isinstance(where.get("threads"), dict) else "")
    )

"""Where a section of RESULTS.md says its numbers were measured: the machine, commit, versions and thread settings a
stage recorded, and the SIMD level its CPU flags give (float results move with it). Used by benchmarks/report.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
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


def _small_json(path: Path) -> dict[str, Any] | None:
    """A stage's JSON file as a dict, or None when it is over 5 MB (a results table, not a record), unreadable or
    not an object."""
    try:
        if path.stat().st_size > 5_000_000:
            return None
        d = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) else None


def _json_machine(path: Path) -> tuple[list[str], str | None] | None:
    """The CPU flags a stage's JSON recorded (``machine.cpu_flags``; pytest-benchmark's ``machine_info.cpu``) and
    the commit it recorded, or None."""
    d = _small_json(path)
    if d is None:
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


VERSIONS_SINCE = "commit a8be202 of 2026-12-05"
"""When stage records began to keep key versions (``machine.versions``; benchmarks/__main__.py)."""
THREADS_SINCE = "commit 0e595ac of 2026-12-06"
"""When stage records began to keep the thread settings (``machine.threads``) and ``machine.json`` its
``thread_settings``."""


def unrecorded_note(where: dict[str, Any] | None) -> str:
    """' Threads/versions not recorded (run before ...).' for a stage record with a machine but without them; ''
    otherwise (a record without any machine says so in :func:`_where_note`)."""
    if not where:
        return ""
    missing = [(what, since) for what, since in (("threads", THREADS_SINCE), ("versions", VERSIONS_SINCE))
             if not where.get(what)]  # fmt: skip
    if not missing:
        return ""
    if len(missing) == 1:
        what, since = missing[0]
        return f" {what.capitalize()} not recorded (run before {since} added them to stage records)."
    return (
        f" Threads/versions not recorded (run before {VERSIONS_SINCE} added versions to stage records and "
        f"{THREADS_SINCE} added threads)."
    )


def _when(text: Any) -> datetime | None:
    """An ISO date as recorded (UTC where it names no zone), or None."""
    try:
        got = datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return got if got.tzinfo else got.replace(tzinfo=UTC)


def _load(d: dict[str, Any]) -> float | None:
    """The 1-minute load a benchmark JSON recorded at its start, in any of the ways the scripts write it."""
    for path in (("load_1min_at_start",), ("wait_for_quiet", "load_at_start"), ("quiet_wait", "load_at_start"),
                 ("load_before",), ("load_1min", "before"), ("load_before_after", 0),
                 ("load_average_at_start", 0)):  # fmt: skip
        v: Any = d
        for key in path:
            if isinstance(v, dict) and isinstance(key, str):
                v = v.get(key)
            elif isinstance(v, list) and isinstance(key, int) and len(v) > key:
                v = v[key]
            else:
                v = None
        if isinstance(v, int | float) and not isinstance(v, bool):
            return round(float(v), 2)
    return None


def file_record(path: Path) -> dict[str, Any] | None:
    """What a stage's JSON file recorded of its own run: commit, date, CPU, CPU flags, load at its start, wall time
    (each None where it did not), or None when it recorded no commit and no date (or cannot be read)."""
    d = _small_json(path)
    if d is None:
        return None
    m = d.get("machine")
    info = d.get("machine_info")
    meta = d.get("meta")
    took = next((d[k] for k in ("seconds", "wall_seconds") if isinstance(d.get(k), int | float)), None)
    got: dict[str, Any] = {"commit": None, "date": None, "cpu": None, "flags": None, "load": _load(d), "seconds": took}
    if isinstance(m, dict):
        got.update(commit=m.get("commit"), date=m.get("date"), cpu=m.get("cpu"))
        got["flags"] = [str(f) for f in m["cpu_flags"]] if isinstance(m.get("cpu_flags"), list) else None
    elif isinstance(info, dict):  # pytest-benchmark
        ci: dict[str, Any] = d["commit_info"] if isinstance(d.get("commit_info"), dict) else {}
        cpu: dict[str, Any] = info["cpu"] if isinstance(info.get("cpu"), dict) else {}
        commit = str(ci.get("id") or "")[:7] or None
        # its CPU name is spelt by another library than the stage record's: compared by SIMD level only
        got.update(commit=commit and commit + ("+dirty" if ci.get("dirty") else ""), date=d.get("datetime"))
        got["flags"] = [str(f) for f in cpu["flags"]] if isinstance(cpu.get("flags"), list) else None
    elif isinstance(meta, dict):
        got["commit"] = meta.get("commit")
    if not got["commit"] and not got["date"]:
        return None
    return got


def _base(commit: Any) -> str:
    return str(commit or "").split("+")[0]


def _differs(where: dict[str, Any], rec: dict[str, Any]) -> list[str]:
    """How a file's own record differs from its stage record's run (commits compared without ``+dirty``: before
    ``$EDGEAE_BENCHMARK_COMMIT`` a stage's own outputs made its scripts see a dirty tree)."""
    why = []
    mine, theirs = (_base(str(c)) if c else "" for c in (rec["commit"], where.get("commit")))
    if mine and theirs and not (mine.startswith(theirs) or theirs.startswith(mine)):  # short hashes: 7, 8 or 40
        why.append("another commit")
    start, made = _when(where.get("date")), _when(rec["date"])
    if start and made and made < start:
        why.append("dated before this run started")
    if rec["cpu"] and where.get("cpu") and str(rec["cpu"]) != str(where["cpu"]):
        why.append("another CPU")
    flags = rec["flags"]
    if flags is not None and _x86(flags):
        if isinstance(where.get("cpu_flags"), list) and _x86(where["cpu_flags"]):
            if simd_level(flags) != simd_level(where["cpu_flags"]):
                why.append("another SIMD level")
        elif "vnni" in where and ("avx512_vnni" in flags or "avx_vnni" in flags) != bool(where["vnni"]):
            ran, says = ("no", "yes") if where["vnni"] else ("yes", "no")
            why.append(f"VNNI {ran} where this run's record says {says}")
    return why


def _file_label(rel: str, rec: dict[str, Any], why: list[str] | None = None) -> str:
    """'`rel` (commit, date, SIMD, load, seconds[: why])' from a file's own record."""
    bits = [f"commit {rec['commit']}" if rec["commit"] else "no commit", str(rec["date"] or "no date")]
    if rec["flags"] is not None and _x86(rec["flags"]):
        bits.append(simd_level(rec["flags"]))
    if rec["load"] is not None:
        bits.append(f"load {rec['load']}")
    if rec["seconds"] is not None:
        bits.append(f"{rec['seconds']} s")
    return f"`{rel}` ({', '.join(bits)}" + (f": {', '.join(why)})" if why else ")")


def provenance_note(where: dict[str, Any] | None, load: list[Any] | None, folder: Path, jsons: list[Path]) -> str:
    """The line at the top of a section whose files' own records (commit, date, CPU/SIMD) say they are not all from
    the run its stage record names; '' when they agree (or record nothing). Without a machine in the stage record:
    what its files recorded, if anything."""
    recs = [(j.relative_to(folder).as_posix(), r) for j in jsons if (r := file_record(j)) is not None]
    if not where:
        if not recs:
            return ""
        return "Its files' own records: " + "; ".join(_file_label(rel, r) for rel, r in recs) + "."
    odd = [(rel, r, why) for rel, r in recs if (why := _differs(where, r))]
    if not odd:
        return ""
    at = f", 1-minute load {load[0][0]} at its start" if load else ""
    return (
        f"**Parts from other runs or commits:** the record of this section's run says commit `{where.get('commit')}`, "
        f"{where.get('date')}{at}; its files' own records: "
        + "; ".join(_file_label(rel, r, why) for rel, r, why in odd)
        + "."
    )

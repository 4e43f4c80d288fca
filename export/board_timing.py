"""How fast each artifact runs on this board, for ``python -m edgeae.export.board check --time``: one artifact
timed on the bundle's inputs (:func:`time_artifact`, the ``time`` command), each in fresh processes and in
windows interleaved round-robin with the other files' (:func:`time_interleaved`), the windows merged into one
record (:func:`merge_windows`), and the verdict: the fastest that passed per model kind, or a tie when the gap
is within the windows' spread (:func:`timing_verdict`). The check itself is :mod:`.board`."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .board_bundle import BundleError, _unpack_pixels
from .board_console import TIME_DEFAULTS, TIME_LIMITS


def time_artifact(
    summary: dict[str, Any], data: Any, artifact: str | os.PathLike[str], threads: int = 1, batch: int = 64,
    seconds: float = 2.0, workers: int = 1,
) -> dict[str, Any]:  # fmt: skip
    """Throughput and memory of one artifact on this machine: items per second over at least ``seconds`` of
    calls on ``batch`` of the bundle's inputs (after two warm-up calls), by ``workers`` interpreters of ``threads``
    threads each, called from as many Python threads at once (the flight loop's scoring workers), the process CPU
    time those calls took (all threads: not slowed by other processes' load as wall time is), the 1-minute load
    before and after, and how much this process's RSS grew from before the interpreters were loaded (peak, Linux
    only; and after loading). Run it in a fresh process per artifact (``check --time`` does, in interleaved
    windows: :func:`time_interleaved`) so that one interpreter's memory is not counted against the next."""
    import concurrent.futures as cf
    import gc
    import time

    from edgeae.firmware_sim.bench import check_threads, load_1min, load_model
    from edgeae.firmware_sim.memory_meter import hwm_rss_bytes, reset_peak_rss, rss_bytes

    check_threads([threads])
    (b_lo, b_hi), (w_lo, w_hi) = TIME_LIMITS["batch"], TIME_LIMITS["workers"]
    if not (b_lo <= batch <= b_hi and w_lo <= workers <= w_hi and 0 < seconds <= 600):
        raise ValueError(
            f"batch must be {b_lo}-{b_hi}, workers {w_lo}-{w_hi} and seconds in (0, 600], got {batch}, {workers}, "
            f"{seconds}"
        )
    inputs = {k: _unpack_pixels(data, f"{k}/input") for k in summary["kinds"]}  # before the baseline RSS
    gc.collect()
    rss0 = rss_bytes()
    peak_ok = reset_peak_rss()
    preds = [load_model(artifact, threads) for _ in range(workers)]
    kind = preds[0].metadata.kind
    if kind not in inputs:
        raise BundleError(f"{artifact}: a {kind!r} artifact; the bundle holds {summary['kinds']} of {summary['model']}")
    rss_loaded = rss_bytes()
    x = inputs[kind]
    x = np.ascontiguousarray(np.concatenate([x] * -(-batch // len(x)))[:batch])

    def loop(pred: Any, t0: float) -> int:
        calls = 0
        while True:
            pred(x)
            calls += 1
            if time.perf_counter() - t0 >= seconds and calls >= 3:
                return calls

    for pred in preds:
        for _ in range(2):
            pred(x)
    load0 = load_1min()
    with cf.ThreadPoolExecutor(workers) as pool:
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        calls = sum(pool.map(lambda p: loop(p, t0), preds))
        elapsed = time.perf_counter() - t0
        cpu_s = time.process_time() - cpu0
    peak = hwm_rss_bytes() if peak_ok else None
    mib = 2.0**20
    return {
        "artifact": str(artifact),
        "kind": kind,
        "precision": preds[0].metadata.precision,
        "threads": threads,
        "workers": workers,
        "batch": batch,
        "calls": calls,
        "items_per_s": round(calls * batch / elapsed, 1),
        "ms_per_item": round(1e3 * elapsed / (calls * batch), 4),
        "wall_s": round(elapsed, 4),
        "cpu_s": round(cpu_s, 4),
        "cpu_ms_per_item": round(1e3 * cpu_s / (calls * batch), 4),
        "load_1min_before": load0,
        "load_1min_after": load_1min(),
        "rss_after_load_mib": round((rss_loaded - rss0) / mib, 1),
        "rss_growth_peak_mib": None if peak is None else round((peak - rss0) / mib, 1),
    }


def _time_in_subprocess(
    bundle: str, artifact: str, threads: int, batch: int, seconds: float, workers: int = 1
) -> dict[str, Any]:
    """:func:`time_artifact` in a fresh interpreter process (its memory is its own); errors come back as text."""
    import subprocess

    cmd = [sys.executable, "-m", "edgeae.export.board", "time", bundle, artifact, "--threads", str(threads),
           "--batch", str(batch), "--seconds", str(seconds), "--workers", str(workers)]  # fmt: skip
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds * 20 + 120, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {seconds * 20 + 120:.0f} s"}
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]}
    try:
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))
    except (ValueError, IndexError):
        return {"error": f"no result in the output: {done.stdout[-200:]!r}"}


TIME_ROUNDS = int(TIME_DEFAULTS["rounds"])  # timing windows per artifact (check --rounds), round-robin over the
# artifacts: a load change hits each alike


def time_interleaved(
    bundle: str, artifacts: Sequence[str], threads: int, batch: int, seconds: float, workers: int = 1,
    rounds: int = TIME_ROUNDS,
) -> list[dict[str, Any]]:  # fmt: skip
    """Time each artifact in ``rounds`` windows of ``seconds / rounds``, each in a fresh process
    (:func:`_time_in_subprocess`), round-robin (round k starts at artifact k), so that a change of load
    during the check falls on every artifact rather than on whichever ran then; one merged record per artifact
    (:func:`merge_windows`). An artifact whose window fails is not timed again: its record is that error."""
    lo, hi = TIME_LIMITS["rounds"]
    if not lo <= rounds <= hi:
        raise ValueError(f"rounds must be {lo}-{hi} timing windows per artifact, got {rounds}")
    windows: list[list[dict[str, Any]]] = [[] for _ in artifacts]
    n = len(artifacts)
    for k in range(rounds):
        for i in [(k + j) % n for j in range(n)]:
            if windows[i] and "error" in windows[i][-1]:
                continue
            windows[i].append(_time_in_subprocess(bundle, artifacts[i], threads, batch, seconds / rounds, workers))
    return [merge_windows(w) for w in windows]


def merge_windows(windows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One artifact's timing windows as one record: the median items/s and the range over the windows (the
    spread ``fastest_passing`` compares against), their calls and CPU seconds summed, CPU-ms per item, the largest
    RSS growth, the load before the first window and after the last."""
    failed = next((w for w in windows if "error" in w), None)
    if failed is not None or not windows:
        return dict(failed or {"error": "not timed"})
    rates = [float(w["items_per_s"]) for w in windows]
    out = dict(windows[0])
    calls = sum(int(w["calls"]) for w in windows)
    items = calls * int(out["batch"])
    cpu = [w.get("cpu_s") for w in windows]
    wall = sum(float(w.get("wall_s") or 0.0) for w in windows)

    def most(key: str) -> Any:
        vals = [w[key] for w in windows if w.get(key) is not None]
        return max(vals) if vals else None

    out.update(
        items_per_s=round(float(np.median(rates)), 1),
        items_per_s_windows=rates,
        items_per_s_range=[min(rates), max(rates)],
        windows=len(windows),
        calls=calls,
        ms_per_item=round(1e3 * wall / items, 4) if wall else out.get("ms_per_item"),
        wall_s=round(wall, 4),
        rss_after_load_mib=most("rss_after_load_mib"),
        rss_growth_peak_mib=most("rss_growth_peak_mib"),
        load_1min_before=windows[0].get("load_1min_before"),
        load_1min_after=windows[-1].get("load_1min_after"),
    )
    if all(c is not None for c in cpu):
        out["cpu_s"] = round(sum(float(c) for c in cpu if c is not None), 4)
        out["cpu_ms_per_item"] = round(1e3 * out["cpu_s"] / items, 4)
    return out


def timing_verdict(recs: Sequence[dict[str, Any]]) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Per model kind, among the artifacts that passed every budget and are not refused by the flight guard:
    the fastest (most items per second, median of its windows) when its slowest window beats the runner-up's
    fastest, else the artifacts whose ranges overlap the leader's, a tie within the measured noise."""
    by_kind: dict[str, list[tuple[float, float, float, str]]] = {}
    for r in recs:
        sp = r.get("speed") or {}
        rate = sp.get("items_per_s")
        if r.get("passed") and not r.get("refused_by_flight_guard") and rate:
            lo, hi = sp.get("items_per_s_range") or (rate, rate)
            by_kind.setdefault(r["kind"], []).append((float(rate), float(lo), float(hi), str(r["artifact"])))
    fastest: dict[str, str] = {}
    ties: dict[str, list[str]] = {}
    for kind, cands in by_kind.items():
        cands.sort(key=lambda c: -c[0])
        lead_lo = cands[0][1]
        close = [c[3] for c in cands[1:] if c[2] >= lead_lo]
        if close:
            ties[kind] = [cands[0][3], *close]
        else:
            fastest[kind] = cands[0][3]
    return fastest, ties


def fastest_passing(recs: Sequence[dict[str, Any]]) -> dict[str, str]:
    """Per model kind, the artifact with the most items per second among those that passed every budget (and the
    flight guard), where it is faster beyond the measured noise (:func:`timing_verdict`; a tie names none)."""
    return timing_verdict(recs)[0]


def _tie_text(recs: Sequence[dict[str, Any]], paths: Sequence[str]) -> str:
    """The tied artifacts' median items/s and window ranges, for the verdict line."""
    parts = []
    for r in sorted(recs, key=lambda r: paths.index(r["artifact"]) if r.get("artifact") in paths else -1):
        sp = r.get("speed") or {}
        if r.get("artifact") in paths and "items_per_s" in sp:
            lo, hi = sp.get("items_per_s_range") or (sp["items_per_s"], sp["items_per_s"])
            parts.append(f"{Path(r['artifact']).name} {sp['items_per_s']:,.0f} [{lo:,.0f}-{hi:,.0f}]")
    return " vs ".join(parts) + " items/s, median [range] of the interleaved windows"

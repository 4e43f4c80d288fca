"""What ``python -m edgeae.export.board check`` checks before any work (its options, the ``--json`` file) and
what it prints for each artifact (its line, the budgets it missed); the check itself is :mod:`.board`."""

from __future__ import annotations

import argparse
from typing import Any

# items per call, interpreters at once, timing windows per artifact: check --time
TIME_LIMITS = {"batch": (1, 4096), "workers": (1, 64), "rounds": (1, 20)}
TIME_DEFAULTS = {"batch": 64, "seconds": 2.0, "workers": 1, "rounds": 3}


def _check_usage(args: argparse.Namespace) -> str | None:
    """What is wrong with ``check``'s options (None: nothing), before the bundle is read: timing options without
    ``--time`` or out of range (filling in their defaults), a thread count below 1, a ``--json`` file that could
    not be written."""
    given = [f"--{k}" for k in TIME_DEFAULTS if getattr(args, k) is not None]
    if given and not args.time:
        return f"{', '.join(given)} only apply with --time"
    for k, v in TIME_DEFAULTS.items():
        setattr(args, k, v if getattr(args, k) is None else getattr(args, k))
    for k, (lo, hi) in TIME_LIMITS.items():
        if not lo <= getattr(args, k) <= hi:
            return f"--{k} must be {lo}-{hi}, got {getattr(args, k)}"
    if not 0 < args.seconds <= 600:
        return f"--seconds must be in (0, 600], got {args.seconds}"
    if args.threads < 1:
        return f"--threads must be at least 1, got {args.threads}"
    from edgeae.firmware_sim.bench import check_threads

    try:
        check_threads([args.threads])
    except ValueError as e:
        return str(e)
    return _check_writable(args.json, "--json") if args.json else None


def _check_writable(path: str, flag: str) -> str | None:
    """Why ``path`` could not be written (None: it can): a folder, a missing folder, a folder we may not write
    (a probe file; the same check as ``firmware-sim bench --json``)."""
    from edgeae.firmware_sim.bench import check_writable

    return check_writable(path, flag)


def _time_warning(args: argparse.Namespace) -> str | None:
    """``check --time`` with more threads at once (``--workers`` x ``--threads``) than the cores this process may
    use: those timings measure contention, not the board (as ``firmware-sim bench`` warns)."""
    from edgeae.firmware_sim.frame_intake import usable_cores

    cores = usable_cores()
    total = args.threads * (args.workers if args.time else 1)
    if not cores or total <= cores:
        return None
    what = f"--workers {args.workers} x --threads {args.threads}" if args.time else f"--threads {args.threads}"
    return f"{what}: {total} threads at once, more than the {cores} core(s) this machine gives the process; " + (
        "the timings measure contention, not a faster board" if args.time else "the check is slower, not different"
    )


def _result_line(r: dict[str, Any]) -> str:
    """One artifact's line: ok/FAIL/error, its parity and tail numbers, the checks it failed, its timing."""
    if "error" in r:
        return f"error {r['error']}"
    t, tm = r.get("tail", {}), r.get("tail_terms_max", {})
    line = f"{'ok  ' if r['passed'] else 'FAIL'} {r['artifact']}: {r['kind']} {r['precision']}"
    line += f" ({r['int8_weights']} weights)" if r["int8_weights"] else ""
    line += f" psnr {r['psnr_db']:.1f} dB"
    if r.get("spearman") is not None:
        line += f", score Spearman {r['spearman']:.4f}"
    if t:
        line += f", tail Spearman {t['tail_spearman']:.4f}, top-16 {t['overlap_16']:.3f}"
        line += f", top-64 {t['overlap_64']:.3f}"
        line += f", ties {t['ties']:.0f}, extremes rank shift {t['extreme_rank_shift']:.0f}"
    if tm:
        line += f"; terms-max tail Spearman {tm['tail_spearman']:.4f}, top-16 {tm['overlap_16']:.3f}"
        line += f", top-64 {tm['overlap_64']:.3f}, ties {tm['ties']:.0f}"
    if not r["passed"]:
        line += f"; failed: {', '.join(_failures(r)) or 'see the JSON'}"
    sp = r.get("speed")
    if sp and "error" in sp:
        line += f"; timing failed: {sp['error']}"
    elif sp:
        line += f"; {sp['items_per_s']:,.0f} items/s ({sp['workers']} x {sp['threads']} threads, batch {sp['batch']})"
        if sp.get("items_per_s_range"):
            lo, hi = sp["items_per_s_range"]
            line += f" median of {sp.get('windows', '?')} interleaved windows [{lo:,.0f}-{hi:,.0f}]"
        if sp.get("cpu_ms_per_item") is not None:
            line += f", {sp['cpu_ms_per_item']:.4f} CPU-ms/item"
        if sp.get("rss_growth_peak_mib") is not None:
            line += f", RSS +{sp['rss_growth_peak_mib']} MiB"
        if sp.get("load_1min_before") is not None:
            line += f", 1-min load {sp['load_1min_before']:.2f} -> {sp.get('load_1min_after') or 0:.2f}"
    return line


def _failures(r: dict[str, Any]) -> list[str]:
    """The budgets a checked artifact missed, named with their values: parity, then the tails'."""
    budget = r["budget"]
    out = [f"refused by the flight guard ({r['refused_by_flight_guard']})"] if r.get("refused_by_flight_guard") else []
    if not r["psnr_db"] >= budget["psnr_db"]:  # NaN fails too
        out.append(f"psnr {r['psnr_db']:.1f} dB (budget ≥ {budget['psnr_db']:g})")
    if r.get("spearman") is not None and not r["spearman"] >= budget["spearman"]:
        out.append(f"score Spearman {r['spearman']:.4f} (budget ≥ {budget['spearman']:g})")
    out += [f"tail {f}" for f in r.get("tail", {}).get("fails", [])]
    out += [f"terms-max tail {f}" for f in r.get("tail_terms_max", {}).get("fails", [])]
    return out

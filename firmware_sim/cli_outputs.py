"""What ``firmware-sim run`` leaves for the user: report.html and the summary printed on the console (frames
downlinked, queued and dropped, frame times, memory, downlink, anomalous patches)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _write_outputs(summary: dict[str, Any], out: str) -> None:
    """report.html and the console summary of a run."""
    from .report import write_report

    report = write_report(out, summary)
    _print_summary(summary, out)
    print(f"  report: {report}")


def _reasons(f: dict[str, Any]) -> str:
    return "; ".join(f"{k} x{v}" for k, v in (f.get("drop_reasons") or {}).items()) or "no reason recorded"


def _ms(v: Any) -> str:
    return "n/a" if v is None else f"{float(v):.0f} ms"


def _print_summary(s: dict[str, Any], out: str) -> None:
    f, q, t = s["frames"], s["queue"], s.get("timing_ms", {})
    for r in s.get("models_refused") or []:
        print(f"WARNING: the {r['role']} model was refused at boot, so {r['consequence']}: {r['detail']}")
    for w in s.get("warnings") or []:
        print(f"WARNING: {w}")
    skipped = (s.get("inputs") or {}).get("skipped_in_folders") or []
    if skipped:
        names = ", ".join(Path(x.removesuffix("/ (a folder)")).name for x in skipped[:3])
        more = ", ..." if len(skipped) > 3 else ""
        print(f"  {len(skipped)} entries of --frames folders are not frame files, skipped ({names}{more}; all in "
              "summary.json inputs)")  # fmt: skip
    if s.get("skipped_already_acquired"):
        print(
            f"resumed the mission state in {out}: {s['skipped_already_acquired']} frame(s) already acquired there "
            "were not taken again (--fresh starts over)"
        )
    if s.get("mission_settings_changed"):
        print(
            f"  settings changed since that state began (new frames only): {'; '.join(s['mission_settings_changed'])}"
        )
    dropped = f" ({_reasons(f)})" if f["dropped"] else ""
    partial = f", {f['partial']} downlinked in part (products evicted for room)" if f.get("partial") else ""
    boots = f" (over {s['boots']} boots)" if int(s.get("boots") or 1) > 1 else ""
    print(
        f"mission {s['mission']}: {f['acquired']} frames acquired{boots}: {f['downlinked']} downlinked{partial}, "
        f"{f['queued']} queued, {f['dropped']} dropped{dropped}"
    )
    full = int(q.get("evicted_items") or 0) - int(q.get("withdrawn_items") or 0)  # not those of a dropped frame
    if full:
        print(
            f"  queue full: {full} products evicted or refused (each an 'evicted' or 'queue_refused' "
            "event in telemetry.jsonl; raise budget.queue_capacity_bytes or the pass budget)"
        )
    if t.get("p50") is not None:
        levels = ", ".join(f"{k} x{v}" for k, v in (s.get("degradations") or {}).items()) or "none"
        print(
            f"  frame time p50 {_ms(t['p50'])}, max {_ms(t.get('max'))}, deadlines missed "
            f"{t.get('deadline_missed', 0)}; degradation levels: {levels}"
        )
    else:
        print("  no frame was processed: no frame times")
    mem = s.get("memory", {})
    rate = s.get("patches_per_s")
    rate_text = f"; {rate:.1f} patches/s" if isinstance(rate, int | float) else ""
    mib = 2**20
    traced = mem.get("traced_peak_bytes")
    traced_text = f", traced Python peak {traced / mib:.1f} MiB" if isinstance(traced, int) else ""
    within = "within it" if mem.get("within_budget", True) else "OVER it"
    print(
        f"  memory: peak RSS growth over boot {mem.get('rss_growth_peak_bytes', 0) / mib:.1f} MiB of the "
        f"{s['budgets']['memory_bytes'] / mib:.0f} MiB budget ({within}), RSS peak "
        f"{mem.get('rss_peak_bytes', 0) / mib:.0f} MiB{' (this boot)' if boots else ''}{traced_text}{rate_text}"
    )
    print(f"  downlink: {q['sent_bytes']:,} B sent in {q['passes']} passes, {q['pending_bytes']:,} B pending")
    if s.get("faults_not_fired"):
        print(f"  faults asked for but never injected: {', '.join(s['faults_not_fired'])}")
    for a in s["anomalies"][:5]:
        top = ", ".join(f"({p['x']},{p['y']}) {p['score']:.4g}" for p in a["patches"][:4])
        print(f"  frame {a['frame_id']}: anomalous patches (x,y) score: {top}")
    if len(s["anomalies"]) > 5:
        print(f"  ... anomalous patches in {len(s['anomalies']) - 5} more frames (report.html, summary.json)")
    passes = ", downlink/pass_*.bin" if q.get("passes") else ""
    print(f"  wrote {out}/summary.json, telemetry.jsonl{passes}")

"""What ``firmware-sim run`` leaves for the user: report.html and the summary printed on the console (frames
downlinked, queued and dropped, frame times, memory, downlink, anomalous patches)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _write_outputs(summary: dict[str, Any], out: str, advice: Sequence[str] = ()) -> dict[str, str]:
    """report.html and the console summary of a run (``advice``: lines from :func:`advice_lines`). A file the run
    could not write at its end (report.html here, summary.json in the summary's ``not_written``) is a WARNING
    naming it, after the console summary: the run happened, its results are in telemetry.jsonl. Returns
    those files and their errors."""
    from .report import write_report

    not_written = dict(summary.get("not_written") or {})
    report = None
    try:
        report = write_report(out, summary)
    except OSError as exc:  # a full or read-only disk: written atomically, so no partial report.html is left
        not_written[str(Path(out) / "report.html")] = str(exc)
    _print_summary(summary, out)
    print_lines(advice)
    if report is not None:
        print(f"  report: {report}")
    for path, error in not_written.items():
        print(f"WARNING: {path} was not written: {error}; {_not_written_means(Path(path), Path(out))}", file=sys.stderr)
    return not_written


def print_lines(lines: Sequence[str]) -> None:
    """Console lines in order: a ``WARNING:`` line on stderr (every firmware-sim warning is there, so ``2> log``
    keeps them all and a script's stdout holds none), the rest on stdout."""
    for line in lines:
        print(line, file=sys.stderr if line.startswith("WARNING:") else sys.stdout)


def _not_written_means(path: Path, out: Path) -> str:
    """What a file the run could not write means for the user, and what writes it again."""
    telemetry, index = out / "telemetry.jsonl", out / "queue" / "index.json"
    if path == telemetry:
        return (
            "lines of this run (frame records, events) are missing from it; the summary above is from memory and "
            f"the frames' outcomes are in {index}"
        )
    if path == index:
        return (
            "the queue and frame ledger on disk are those of its last save; once there is room, the same command "
            f"goes on from there (the frame in progress is taken again when {telemetry} recorded it interrupted, "
            "else it is dropped as reboot_during_processing)"
        )
    again = (
        f"firmware-sim report {out} writes it again"
        if path.name == "report.html"
        else "the same command run again writes it (no frame is taken twice)"
    )
    return f"the run's frames, events and passes are in {telemetry} and {out / 'queue'} (once there is room, {again})"


def _reasons(f: dict[str, Any]) -> str:
    return "; ".join(f"{k} x{v}" for k, v in (f.get("drop_reasons") or {}).items()) or "no reason recorded"


# what to change for frames dropped with a reason code (the detail of each frame, in the ledger, gives the numbers)
DROP_HINTS = {
    "invalid_shape": "for frames of another size: --set camera.height=H --set camera.width=W, or 0 for any size",
    "memory_budget": "raise [budget] memory_bytes (the detail names the bytes held and needed), or lower "
    "[runtime] threads",
    "too_many_packets": "raise [downlink] max_packet_bytes or lower [sampling] keep",
    "invalid_margin": "make [camera] margin smaller than the frame",
}


def _first_drops(s: dict[str, Any]) -> list[str]:
    """One console line per drop reason code: how many, and the first such frame's full reason (the numbers)."""
    first: dict[str, tuple[Any, str]] = {}
    for entry in s.get("ledger") or []:
        code = entry.get("code")
        if entry.get("outcome") == "dropped" and code and code not in first:
            first[code] = (entry.get("frame_id"), str(entry.get("reason") or code))
    counts = (s.get("frames") or {}).get("drop_reasons") or {}
    return [
        f"  dropped {code} x{counts.get(code, 1)}, e.g. frame {fid}: {reason.removeprefix(code + ': ')}"
        for code, (fid, reason) in first.items()
    ]


def _count(n: int, noun: str, plural: str = "") -> str:
    """``1 frame``, ``2 frames``: ``n`` with its noun (``plural``, else ``noun`` + s)."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


def _ms(v: Any) -> str:
    return "n/a" if v is None else f"{float(v):.0f} ms"


def _print_summary(s: dict[str, Any], out: str) -> None:
    f, q, t = s["frames"], s["queue"], s.get("timing_ms", {})
    for r in s.get("models_refused") or []:
        print(
            f"WARNING: the {r['role']} model was refused at boot, so {r['consequence']}: {r['detail']}", file=sys.stderr
        )
    for w in s.get("warnings") or []:
        print(f"WARNING: {w}", file=sys.stderr)
    skipped = (s.get("inputs") or {}).get("skipped_in_folders") or []
    if skipped:
        names = ", ".join(Path(x.removesuffix("/ (a folder)")).name for x in skipped[:3])
        more = ", ..." if len(skipped) > 3 else ""
        print(f"  {len(skipped)} entries of --frames folders are not frame files, skipped ({names}{more}; all in "
              "summary.json inputs)")  # fmt: skip
    lost = (s.get("this_boot") or {}).get("reboot_during_processing") or []
    if lost:
        ids = ", ".join(str(x) for x in lost)
        print(
            f"WARNING: this boot recovered from a power loss (or kill -9) during frame{'s' if len(lost) > 1 else ''} "
            f"{ids}: dropped, reboot_during_processing (the ledger keeps {'them' if len(lost) > 1 else 'it'}; "
            "not taken again)",
            file=sys.stderr,
        )
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
    n_boots, refused = int(s.get("boots") or 1), int(s.get("boots_refused") or 0)
    also = f", {refused} refused" if refused else ""
    boots = f" (over {n_boots} boot{'s' if n_boots != 1 else ''}{also})" if n_boots > 1 or refused else ""
    print(
        f"mission {s['mission']}: {_count(f['acquired'], 'frame')} acquired{boots}: {f['downlinked']} downlinked"
        f"{partial}, "
        f"{f['queued']} queued, {f['dropped']} dropped{dropped}"
    )
    for line in _first_drops(s):
        print(line)
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
        f"{s['budgets']['memory_bytes'] / mib:,.0f} MiB budget ({within}), RSS peak "
        f"{mem.get('rss_peak_bytes', 0) / mib:.0f} MiB{' (this boot)' if boots else ''}{traced_text}{rate_text}"
    )
    codec = s.get("sample_codec") or {}
    coded = f"; samples coded {codec['used']}" if codec.get("used") else ""
    if codec.get("configured") == "auto" and codec.get("used") != "ccsds121":
        coded += " (codec auto: libaec is not installed, so not ccsds121)"
    passes = _count(int(q.get("passes") or 0), "pass", "passes")
    print(f"  downlink: {q['sent_bytes']:,} B sent in {passes}, {q['pending_bytes']:,} B pending{coded}")
    failed = int(s.get("downlink_passes_failed") or 0)
    if failed:
        print(
            f"WARNING: {failed} downlink pass(es) could not be written (a full or read-only disk: each a "
            "'downlink_failed' event in telemetry.jsonl with the file and the error); their products stay queued "
            "for the next pass",
            file=sys.stderr,
        )
    if s.get("faults_not_fired"):
        print(f"  faults asked for but never injected: {', '.join(s['faults_not_fired'])}")
    for line in _anomaly_lines(s):
        print(line)
    pass_files = ", downlink/pass_*.bin" if q.get("passes") else ""
    summary_json = "" if any(Path(p).name == "summary.json" for p in s.get("not_written") or {}) else "summary.json, "
    print(f"  wrote {out}/{summary_json}telemetry.jsonl{pass_files}")


def _anomaly_lines(s: dict[str, Any], n: int = 5) -> list[str]:
    """The first ``n`` frames of this boot with anomalous patches (``this_boot.anomalous_frames``) or, when this boot
    had none, the last ``n`` of the earlier boots, saying so; then how many frames with anomalous patches are left
    out (until session 35 always the mission's first ``n``: at boot 32 those of boot 1)."""
    anomalies = list(s.get("anomalies") or [])
    if not anomalies:
        return []
    this_boot = s.get("this_boot") or {}
    known = isinstance(this_boot, dict) and "anomalous_frames" in this_boot  # a summary rebuilt by report: not
    ids = set(this_boot["anomalous_frames"]) if known else {a.get("frame_id") for a in anomalies}
    mine = [a for a in anomalies if a.get("frame_id") in ids]
    out = []
    if mine:
        shown = mine[:n]
        here, before = len(mine) - len(shown), len(anomalies) - len(mine)
    else:
        shown = anomalies[-n:]
        here, before = 0, len(anomalies) - len(shown)
        out.append(
            f"  no anomalous patch in this boot's frames; the last {_count(len(shown), 'frame')} of earlier boots:"
        )
    for a in shown:
        top = ", ".join(f"({p['x']},{p['y']}) {p['score']:.4g}" for p in a["patches"][:4])
        out.append(f"  frame {a['frame_id']}: anomalous patches (x,y) score: {top}")
    left = [f"{here} more frame{'s' if here != 1 else ''}" + (" of this boot" if before else "")] if here else []
    if before:
        left.append(
            f"{_count(before, 'frame')} of earlier boots"
            if mine
            else f"{before} earlier frame{'s' if before != 1 else ''}"
        )
    if left:
        out.append(f"  ... anomalous patches in {' and '.join(left)} (report.html, summary.json)")
    return out


def advice_lines(
    summary: dict[str, Any], records: Sequence[dict[str, Any]], mission: Any, held_at_boot: int | None = None
) -> list[str]:
    """What to change when frames went over the memory budget, missed their deadline or scored nothing for time,
    from this boot's frame records: the measured peaks and times against the mission's budgets (``held_at_boot``:
    what the loaded models held over the boot baseline); first, the frames this boot took again because their file
    did not exist when first acquired."""
    out = retaken_lines(summary, records)
    # processed frames only: a dropped frame's peak (one read whole, then found invalid) is no frame to size for
    over = [r for r in records if (r.get("memory") or {}).get("over_budget") and r.get("status") == "processed"]
    if over:
        r = max(over, key=lambda r: int(r["memory"]["rss_growth_peak"]))
        peak, mib = int(r["memory"]["rss_growth_peak"]), 2**20
        boot = f"{held_at_boot / mib:.1f} MiB held by the loaded models, " if held_at_boot is not None else ""
        planned = f"{int(r['memory_plan']) / mib:.1f} MiB of planned frame buffers" if "memory_plan" in r else ""
        out.append(
            f"  {len(over)} frame(s) over the memory budget; frame {r['frame_id']} peaked at {peak / mib:.1f} MiB over "
            f"boot ({boot}{planned or 'no frame buffers'}, the rest the interpreters' working memory and "
            f"temporaries): raise [budget] memory_bytes to at least {-(-peak // mib)} MiB or lower [runtime] threads"
        )
    budget, safety = mission.budget.frame_ms, mission.budget.safety
    done = [r for r in records if r.get("status") == "processed"]
    late = [r for r in done if (r.get("deadline") or {}).get("status") == "late"]
    if late:
        slowest = max(float(r["timing_ms"]["total"]) for r in late)
        want = _round_up(slowest / safety)
        out.append(
            f"  {len(late)} frame(s) missed the {budget:.0f} ms deadline (the slowest took {slowest:.0f} ms): raise "
            f"[budget] frame_ms to about {want} ms (--frame-ms {want}), or lower the work per frame"
        )
    starved = [r for r in done if "predicted_nominal_ms" in r and "memory_degraded" not in r["flags"]]
    if starved:
        r = max(starved, key=lambda r: float(r["predicted_nominal_ms"]))
        pred, grid, avail = float(r["predicted_nominal_ms"]), int(r["patches"]["grid"]), float(r["available_ms"])
        out.append(
            f"  {len(starved)} frame(s) ran sparse_only, no patch scored: scoring frame {r['frame_id']}'s {grid:,} "
            f"patches ([anomaly] stride = {mission.anomaly.stride}) was predicted to take {pred:,.0f} ms of the "
            f"{avail:,.0f} ms available: raise [budget] frame_ms to about {_round_up(pred / safety)} ms"
            + (f" or [anomaly] stride (up to patch = {mission.anomaly.patch})" if grid and mission.anomaly.stride
               < mission.anomaly.patch else "")
        )  # fmt: skip
    return out


def retaken_lines(summary: dict[str, Any], records: Sequence[dict[str, Any]]) -> list[str]:
    """One line per frame of this boot (``records``) that took again a file the ledger holds dropped because it did
    not exist when first acquired (:func:`.state.frames_to_take`): both are in the ledger and the accounting."""
    from .state import missing_when_acquired

    this_boot = {r.get("frame_id") for r in records}
    missing: dict[Any, list[Any]] = {}  # source -> the frame ids dropped while it did not exist, oldest first
    out = []
    for e in sorted(summary.get("ledger") or [], key=lambda e: int(e.get("frame_id") or 0)):
        if missing_when_acquired(e):
            missing.setdefault(e.get("source"), []).append(e.get("frame_id"))
        elif e.get("frame_id") in this_boot and missing.get(e.get("source")):
            first = missing[e.get("source")].pop(0)
            out.append(
                f"  frame {e['frame_id']} taken again: it did not exist when first acquired (frame {first}, dropped "
                f"unreadable): {e.get('source')}"
            )
    return out


def passes_skipped_lines(reasons: Sequence[str]) -> list[str]:
    """A WARNING for this boot's downlink passes that sent nothing while items waited (``reasons``:
    :attr:`.queue.DownlinkQueue.passes_skipped`, the first said in full; each a ``pass_skipped`` event)."""
    if not reasons:
        return []
    n = _count(len(reasons), "downlink pass", "downlink passes")
    return [f"WARNING: {n} sent nothing (no pass file written): {reasons[0]}"]


def _round_up(ms: float) -> int:
    """``ms`` rounded up to 2 significant digits (advice, not a measurement)."""
    if ms <= 0:
        return 0
    step = 10 ** max(0, len(str(int(ms))) - 2)
    return int(-(-ms // step) * step)


def check_lines(rt: Any) -> list[str]:
    """What ``firmware-sim check`` prints of a booted runtime: models, memory at boot, the frame plan."""
    from .budget import plan_memory
    from .frame_intake import sparse_packet_estimate

    m, cam, mib = rt.m, rt.m.camera, 2**20
    roles = [r["role"] for r in rt.models.refused]
    refused = f"{' and '.join(roles)} model{'s' if len(roles) > 1 else ''}"
    state = f"boots degraded, without its {refused} (exit status 1)" if roles else "boots"
    out = [f"mission {m.name} ({m.source_path}): {state}"]
    for role, guard in (("anomaly", rt.anomaly), ("reconstruction", rt.recon)):
        if guard is not None:
            out.append(f"  {role} model: {guard.path} ({guard.nbytes:,} B, SHA-256 from {guard.hash_source})")
    if not m.anomaly.model:
        out.append("  no [anomaly] model: sparse pixels only")
    for r in rt.models.refused:
        out.append(f"WARNING: the {r['role']} model would be refused at boot, so {r['consequence']}: {r['detail']}")
    for w in rt.boot_warnings:
        out.append(f"WARNING: {w}")
    held = max(0, rt.rss_loaded - rt.rss_boot)
    out.append(
        f"  memory: the loaded models hold {held / mib:.1f} MiB (RSS growth over the boot baseline) of the "
        f"{m.budget.memory_bytes / mib:,.0f} MiB budget ([runtime] threads = {m.runtime.threads})"
    )
    if cam.width and (cam.height or cam.source == "strips"):
        plan = plan_memory(m, cam.width, cam.height, rt._model_bytes(), cam.channels)
        items = ", ".join(f"{k} {v:,}" for k, v in plan.items)
        size = f"{cam.height or 'any'} x {cam.width} px (height x width)"
        out.append(f"  a {size} frame's buffers: {plan.total:,} B ({items})")
        out += _memory_level_lines(rt, plan, held)
        if cam.height:
            n = sparse_packet_estimate(m, cam.width, cam.height)
            out.append(f"  sparse pixels of a full frame: about {n:,} packets of the 65,535 a product can have")
        else:
            out.append("  any frame height: each frame's packets are checked when it arrives")
    else:
        out.append("  any frame size: each frame's buffers and packets are checked when it arrives")
    scoring = f"; scoring measured at boot: {rt.cost.ms_per_patch:.3g} ms per patch" if rt.scorer is not None else ""
    out.append(f"  frame deadline {m.budget.frame_ms:,.0f} ms{scoring}")
    if cam.width and cam.height:
        out += _time_lines(rt)
    return out


def _memory_level_lines(rt: Any, plan: Any, held: int) -> list[str]:
    """The ladder level a camera-size frame's buffers fit at (what the loaded models hold + its plan at that
    level, as the frame check computes it), or a WARNING that every such frame would be dropped."""
    from .budget import LADDER
    from .frame_intake import biggest_buffers, level_plan, mib_up

    budget, mib = rt.m.budget.memory_bytes, 2**20
    for level in LADDER:
        need = held + level_plan(plan, level).total
        if need <= budget:
            if level.index == 0:
                return [f"  held + buffers: {need / mib:.1f} MiB: fits at nominal"]
            nominal = held + plan.total
            return [
                f"  held + buffers: {nominal / mib:.1f} MiB: does not fit at nominal; frames of this size run at "
                f"{level.name} ({need / mib:.1f} MiB) for memory: raise [budget] memory_bytes to at least "
                f"{mib_up(nominal)} MiB for nominal, or shrink the biggest buffers: {biggest_buffers(rt.m, plan, 2)}"
            ]
    least = held + level_plan(plan, LADDER[-1]).total
    return [
        f"WARNING: held + buffers: {least / mib:.1f} MiB even at sparse_only, over the {budget / mib:.0f} MiB "
        f"budget: every frame of this size would be dropped (memory_budget); raise [budget] memory_bytes to at "
        f"least {mib_up(least)} MiB"
    ]


def _time_lines(rt: Any) -> list[str]:
    """The predicted time of a camera-size frame at each ladder level against the deadline, and the level that
    meets it (a warning, not a failure: the per-pixel costs are defaults until frames are measured, timings vary)."""
    from .budget import LADDER, patch_grid

    m, cam = rt.m, rt.m.camera
    mpix = cam.height * cam.width / 1e6
    grid = (patch_grid(m, cam.width, cam.height) or 0) if rt.scorer is not None else 0
    recon = rt.recon is not None
    target = m.budget.safety * m.budget.frame_ms
    times = [(lv, rt.cost.predict(lv, mpix, grid, recon, m.sampling.keep)) for lv in LADDER]
    listed = ", ".join(f"{lv.name} {ms:,.0f}" for lv, ms in times)
    out = [
        f"  predicted ms of a full frame ({grid:,} patches) per level: {listed} (per-patch cost measured at boot, "
        f"per-pixel costs defaults until frames are measured), against safety x deadline = {target:,.0f} ms"
    ]
    meets = next((lv for lv, ms in times if ms <= target), None)
    if meets is None:
        out.append(
            f"WARNING: no level is predicted to meet the {m.budget.frame_ms:,.0f} ms deadline: frames run "
            f"sparse_only and late; raise [budget] frame_ms to about {_round_up(times[-1][1] / m.budget.safety)} ms"
        )
    elif meets.index == 0:
        out.append("  time: frames of this size are predicted to run at nominal")
    elif meets.score_every == 0 and grid:
        out.append(
            f"WARNING: only sparse_only is predicted to meet the deadline: no patch of a full frame would be scored; "
            f"raise [budget] frame_ms to about {_round_up(times[0][1] / m.budget.safety)} ms for nominal"
        )
    else:
        out.append(
            f"  time: frames of this size are predicted to run at {meets.name} (nominal needs about "
            f"{_round_up(times[0][1] / m.budget.safety)} ms)"
        )
    return out

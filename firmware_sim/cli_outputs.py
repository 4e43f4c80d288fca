"""What ``firmware-sim run`` leaves for the user: report.html and the summary printed on the console (frames
downlinked, queued and dropped, frame times, memory, downlink, the patches chosen for it). The advice against the
mission's budgets (:func:`advice_lines`, and what ``check`` prints, :func:`check_lines`) is in :mod:`.cli_advice`;
its names are importable from here as well."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgeae.printable import printable

from .cli_advice import advice_lines as advice_lines
from .cli_advice import check_lines as check_lines
from .cli_advice import retaken_lines as retaken_lines
from .cli_console import console_keeps_going, err_line, signals_held


def _write_outputs(
    summary: dict[str, Any],
    out: str,
    advice: Sequence[str] = (),
    *,
    prune: bool = True,
    stopped: str | None = None,
    held: list[str] | None = None,
) -> dict[str, str]:
    """report.html and the console summary of a run (``advice``: lines from :func:`advice_lines`). A file the run
    could not write at its end (report.html here, summary.json in the summary's ``not_written``) is a WARNING
    naming it, after the console summary: the run happened, its results are in telemetry.jsonl. ``prune``: the run
    holds the folder (its ``held``: false on a file system that cannot lock, where the report then removes nothing
    of ``report_img/``; until review r16 of session 36 it pruned there too). ``stopped``: a signal came before the
    page (:func:`interrupted_by`), which is then not written. The console lines are printed whole: SIGINT and SIGTERM
    are held meanwhile (their names in ``held``, for the caller to act on), and a stdout that fails there stops
    none of the lines on stderr (its one line and the status follow, :mod:`.cli_dispatch`). Returns the files not
    written and their errors."""
    from .report import write_report

    not_written = dict(summary.get("not_written") or {})
    report = None
    if stopped is not None:
        not_written[str(Path(out) / "report.html")] = stopped
    else:
        try:
            report = write_report(out, summary, prune=prune)  # a run holds the folder until its report is written
        except (OSError, ValueError) as exc:  # a full or read-only disk, or text the page could not hold (until
            # session 36 a UnicodeEncodeError, a frame name that is not UTF-8, ended the run with exit 2 and no console
            # summary): written atomically, so no partial report.html is left
            not_written[str(Path(out) / "report.html")] = str(exc)
        except KeyboardInterrupt as stop:  # Ctrl-C or SIGTERM: the page is written all or nothing, so the summary
            # and the WARNING naming what writes it still follow (until session 37 neither did)
            not_written[str(Path(out) / "report.html")] = interrupted_by(stop)
    with signals_held([] if held is None else held), console_keeps_going():
        _print_summary(summary, out)
        print_lines(advice)
        if report is not None:
            say(f"  report: {report}")
        for path, error in not_written.items():
            means = _not_written_means(Path(path), Path(out), error.startswith(INTERRUPTED))
            say(f"WARNING: {path} was not written: {error}; {means}", err=True)
    return not_written


INTERRUPTED = "interrupted"  # the error of report.html in _write_outputs' result when a signal stopped its writing


def interrupted_by(stop: KeyboardInterrupt) -> str:
    """``interrupted`` (Ctrl-C) or ``interrupted by SIGTERM`` (firmware-sim's SIGTERM handler puts its name in the
    ``KeyboardInterrupt`` it raises)."""
    return INTERRUPTED + (f" by {stop}" if str(stop) else "")


def report_interrupted(not_written: dict[str, str]) -> str | None:
    """``interrupted`` / ``interrupted by SIGTERM`` when a signal stopped the writing of report.html in
    :func:`_write_outputs` (its result ``not_written``), else None."""
    for path, error in not_written.items():
        if Path(path).name == "report.html" and error.startswith(INTERRUPTED):
            return error
    return None


def say(text: str, err: bool = False) -> None:
    """Print one console line (on stderr when ``err``), with a name's bytes that are not UTF-8 as ``\\xff``
    (:func:`edgeae.printable.printable`): a console that is strict UTF-8 cannot print them as they are."""
    if err:
        err_line(printable(text))  # a stderr that cannot take it changes nothing else (cli_console.err_line)
    else:
        print(printable(text))


def print_lines(lines: Sequence[str]) -> None:
    """Console lines in order: a ``WARNING:`` line on stderr (every firmware-sim warning is there, so ``2> log``
    keeps them all and a script's stdout holds none), the rest on stdout."""
    for line in lines:
        say(line, err=line.startswith("WARNING:"))


def _not_written_means(path: Path, out: Path, stopped: bool = False) -> str:
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
    when = "" if stopped else "once there is room, "
    return f"the run's frames, events and passes are in {telemetry} and {out / 'queue'} ({when}{again})"


def _reasons(f: dict[str, Any]) -> str:
    return "; ".join(f"{k} x{v}" for k, v in (f.get("drop_reasons") or {}).items()) or "no reason recorded"


# what to change for frames dropped with a reason code (the detail of each frame, in the ledger, gives the numbers)
DROP_HINTS = {
    "invalid_shape": "for frames of another size: --set camera.height=H --set camera.width=W, or 0 for any size",
    "memory_budget": "raise [budget] memory_bytes (the detail names the bytes held and needed), or lower "
    "[runtime] threads where it is above 1",
    # the board's memory, not the budget: the same command run again takes these frames again (state.frames_to_take)
    "memory_unavailable": "give the process more memory (ulimit -v, the cgroup's memory.max, other processes) and "
    "run the same command again: these frames are taken again",
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
        say(f"WARNING: the {r['role']} model was refused at boot, so {r['consequence']}: {r['detail']}", err=True)
    for w in s.get("warnings") or []:
        say(f"WARNING: {w}", err=True)
    skipped = (s.get("inputs") or {}).get("skipped_in_folders") or []
    if skipped:
        names = ", ".join(Path(x.removesuffix("/ (a folder)")).name for x in skipped[:3])
        more = ", ..." if len(skipped) > 3 else ""
        say(f"  {len(skipped)} entries of --frames folders are not frame files, skipped ({names}{more}; all in "
              "summary.json inputs)")  # fmt: skip
    lost = (s.get("this_boot") or {}).get("reboot_during_processing") or []
    if lost:
        ids = ", ".join(str(x) for x in lost)
        say(
            f"WARNING: this boot recovered from a power loss (or kill -9) during frame{'s' if len(lost) > 1 else ''} "
            f"{ids}: dropped, reboot_during_processing (the ledger keeps {'them' if len(lost) > 1 else 'it'}; "
            "not taken again)",
            err=True,
        )
    if s.get("skipped_already_acquired"):
        say(
            f"resumed the mission state in {out}: {s['skipped_already_acquired']} frame(s) already acquired there "
            "were not taken again (--fresh starts over)"
        )
    if s.get("mission_settings_changed"):
        say(f"  settings changed since that state began (new frames only): {'; '.join(s['mission_settings_changed'])}")
    dropped = f" ({_reasons(f)})" if f["dropped"] else ""
    lost_how = "evicted for room" + (" or damaged in storage" if q.get("corrupted_items") else "")
    partial = f", {f['partial']} downlinked in part (products {lost_how})" if f.get("partial") else ""
    n_boots, refused = int(s.get("boots") or 1), int(s.get("boots_refused") or 0)
    also = f", {refused} refused" if refused else ""
    boots = f" (over {n_boots} boot{'s' if n_boots != 1 else ''}{also})" if n_boots > 1 or refused else ""
    say(
        f"mission {s['mission']}: {_count(f['acquired'], 'frame')} acquired{boots}: {f['downlinked']} downlinked"
        f"{partial}, "
        f"{f['queued']} queued, {f['dropped']} dropped{dropped}"
        + (
            f" ({_count(f['retaken'], 'earlier attempt')} dropped memory_unavailable, taken again)"
            if f.get("retaken")
            else ""
        )
    )
    for line in _first_drops(s):
        say(line)
    # not those of a dropped frame, nor those whose file was damaged (until review r6 of session 35 these were
    # "queue full", with advice to raise the capacity)
    corrupted = int(q.get("corrupted_items") or 0)
    full = int(q.get("evicted_items") or 0) - int(q.get("withdrawn_items") or 0) - corrupted
    if corrupted:
        say(
            f"WARNING: {_count(corrupted, 'product')} lost to storage corruption (an item file damaged or missing in "
            f"{out}/queue/items: each an 'evicted' event in telemetry.jsonl with its reason; packets sent before the "
            "damage stay sent)",
            err=True,
        )
    grown = int(s.get("storage_grown_items") or 0)
    if grown:  # until review r16 of session 36 "1 product lost to storage corruption", though all of it was sent
        files = "its item file" if grown == 1 else "their item files"
        say(
            f"WARNING: {_count(grown, 'product')} sent whole, but {files} in {out}/queue/items then held bytes past "
            "the queued packets (storage damage, never queued nor sent: nothing lost): each a 'storage_grown' event "
            "in telemetry.jsonl",
            err=True,
        )
    unreadable = int(s.get("telemetry_lines_unreadable") or 0)
    if unreadable:  # their frames and events are missing from every total above (review a5 of session 35)
        say(
            f"WARNING: {_count(unreadable, 'line')} of {out}/telemetry.jsonl could not be read (cut short, not UTF-8 "
            "or not JSON) and were skipped: the frames and events they held are missing from these totals",
            err=True,
        )
    if full:
        say(
            f"  queue full: {full} products evicted or refused (each an 'evicted' or 'queue_refused' "
            "event in telemetry.jsonl; raise budget.queue_capacity_bytes or the pass budget)"
        )
    if t.get("p50") is not None:
        levels = ", ".join(f"{k} x{v}" for k, v in (s.get("degradations") or {}).items()) or "none"
        say(
            f"  frame time p50 {_ms(t['p50'])}, max {_ms(t.get('max'))}, deadlines missed "
            f"{t.get('deadline_missed', 0)}; degradation levels: {levels}"
        )
    else:
        say("  no frame was processed: no frame times")
    mem = s.get("memory", {})
    rate = s.get("patches_per_s")
    rate_text = f"; {rate:.1f} patches/s" if isinstance(rate, int | float) else ""
    mib = 2**20
    traced = mem.get("traced_peak_bytes")
    traced_text = f", traced Python peak {traced / mib:.1f} MiB" if isinstance(traced, int) else ""
    within = "within it" if mem.get("within_budget", True) else "OVER it"
    say(
        f"  memory: peak RSS growth over boot {mem.get('rss_growth_peak_bytes', 0) / mib:.1f} MiB of the "
        f"{s['budgets']['memory_bytes'] / mib:,.0f} MiB budget ({within}), RSS peak "
        f"{mem.get('rss_peak_bytes', 0) / mib:.0f} MiB{' (this boot)' if boots else ''}{traced_text}{rate_text}"
    )
    codec = s.get("sample_codec") or {}
    coded = f"; samples coded {codec['used']}" if codec.get("used") else ""
    if codec.get("configured") == "auto" and codec.get("used") != "ccsds121":
        coded += " (codec auto: libaec is not installed, so not ccsds121)"
    passes = _count(int(q.get("passes") or 0), "pass", "passes")
    say(f"  downlink: {q['sent_bytes']:,} B sent in {passes}, {q['pending_bytes']:,} B pending{coded}")
    failed = int(s.get("downlink_passes_failed") or 0)
    if failed:
        say(
            f"WARNING: {failed} downlink pass(es) could not be written (a full or read-only disk: each a "
            "'downlink_failed' event in telemetry.jsonl with the file and the error); their products stay queued "
            "for the next pass",
            err=True,
        )
    if s.get("faults_not_fired"):
        say(f"  faults asked for but never injected: {', '.join(s['faults_not_fired'])}")
    for line in _anomaly_lines(s):
        say(line)
    pass_files = ", downlink/pass_*.bin" if q.get("passes") else ""
    summary_json = "" if any(Path(p).name == "summary.json" for p in s.get("not_written") or {}) else "summary.json, "
    say(f"  wrote {out}/{summary_json}telemetry.jsonl{pass_files}")


def _chosen(a: dict[str, Any]) -> str:
    """What a frame's patches in the summary's ``anomalies`` are: anomalous when a threshold chose them, else the
    frame's highest-scoring by rank (no threshold: none is judged anomalous)."""
    t = a.get("threshold")
    return "anomalous patches" if isinstance(t, int | float) else "highest-scoring patches"


def _what(entries: Sequence[dict[str, Any]]) -> str:
    """What the patches of these frames are, together (:func:`_chosen`; "patches sent" when they differ)."""
    kinds = {_chosen(a) for a in entries}
    return kinds.pop() if len(kinds) == 1 else "patches sent"


def _anomaly_lines(s: dict[str, Any], n: int = 5) -> list[str]:
    """The first ``n`` frames of this boot whose patches were chosen for the downlink (``this_boot.top_patch_frames``;
    ``anomalous_frames`` in a summary before session 36) or, when this boot had none, the last ``n`` of the earlier
    boots, saying so; then how many such frames are left out (until session 35 always the mission's first ``n``: at
    boot 32 those of boot 1). A frame's patches are called anomalous only when a threshold chose them (until session
    36 every frame's top patches were "anomalous patches", with no threshold set too)."""
    anomalies = list(s.get("anomalies") or [])
    if not anomalies:
        return []
    this_boot = s.get("this_boot")
    this_boot = this_boot if isinstance(this_boot, dict) else {}
    key = "top_patch_frames" if "top_patch_frames" in this_boot else "anomalous_frames"
    known = key in this_boot  # a summary rebuilt by report: not
    ids = set(this_boot[key]) if known else {a.get("frame_id") for a in anomalies}
    mine = [a for a in anomalies if a.get("frame_id") in ids]
    out = []
    if mine:
        shown = mine[:n]
        rest = mine[n:] + [a for a in anomalies if a.get("frame_id") not in ids]
        here, before = len(mine) - len(shown), len(anomalies) - len(mine)
    else:
        shown = anomalies[-n:]
        rest = anomalies[:-n]
        here, before = 0, len(anomalies) - len(shown)
        out.append(
            "  no patch was chosen for the downlink in this boot's frames; the last "
            f"{_count(len(shown), 'frame')} of earlier boots:"
        )
    for a in shown:
        top = ", ".join(f"({p['x']},{p['y']}) {p['score']:.4g}" for p in a["patches"][:4])
        t = a.get("threshold")
        why = f"scores over {t:.4g}" if isinstance(t, int | float) else "no threshold set"
        out.append(f"  frame {a['frame_id']}: {_chosen(a)} ({why}) (x,y) score: {top}")
    left = [f"{here} more frame{'s' if here != 1 else ''}" + (" of this boot" if before else "")] if here else []
    if before:
        left.append(
            f"{_count(before, 'frame')} of earlier boots"
            if mine
            else f"{before} earlier frame{'s' if before != 1 else ''}"
        )
    if left:
        out.append(f"  ... {_what(rest)} in {' and '.join(left)} (report.html, summary.json)")
    return out


def passes_skipped_lines(reasons: Sequence[str]) -> list[str]:
    """A WARNING for this boot's downlink passes that sent nothing while items waited (``reasons``:
    :attr:`.queue.DownlinkQueue.passes_skipped`, the first said in full; each a ``pass_skipped`` event)."""
    if not reasons:
        return []
    n = _count(len(reasons), "downlink pass", "downlink passes")
    return [f"WARNING: {n} sent nothing (no pass file written): {reasons[0]}"]

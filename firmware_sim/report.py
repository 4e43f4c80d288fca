"""``report.html`` of a flight run: what a mission engineer reads after ``firmware-sim run``.

Built from what the run leaves in its output folder (``summary.json``, ``telemetry.jsonl``,
``queue/index.json`` and the ``downlink/pass_*.bin`` packet files), so it can be rebuilt at any time with
``firmware-sim report DIR``. Sections: the outcome in one line, the per-frame timeline (stage times against
the deadline, with the degradation level), memory against the budget, the ledger (downlinked / queued /
dropped and why), the downlink queue by priority, the anomaly gallery (patches decoded from the downlink
packets, exactly as the ground receives them) and the events (boots, recoveries, faults, model loads, scrubs).

numpy and the standard library only (charts are inline SVG, gallery images PNG written with zlib), like the
rest of the flight runtime. Keys that a newer runtime adds to ``summary.json`` are shown in the last section.
This module lays out the page and its sections; the run's outputs are read in :mod:`.report_inputs`, the
anomaly gallery built in :mod:`.report_gallery`, the timeline and memory charts drawn in :mod:`.report_charts`,
the events listed in :mod:`.report_events`, and the HTML building blocks and the PNG writer are in
:mod:`.report_html`.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

from edgeae.atomic import write_text
from edgeae.printable import printable

from .queue import PRIORITY as _QUEUE_PRIORITY
from .queue_ledger import KEEP_EVICTED, tallies
from .report_charts import STAGE_COLOURS as STAGE_COLOURS
from .report_charts import STAGES as STAGES
from .report_charts import _memory, _timeline
from .report_events import EVENTS_FIRST as EVENTS_FIRST
from .report_events import EVENTS_LAST as EVENTS_LAST
from .report_events import _events as _events
from .report_gallery import SCORE_MEANING as SCORE_MEANING
from .report_gallery import _gallery, console_lines, remove_unshown
from .report_gallery import _scoring_note as _scoring_note
from .report_html import (
    _CSS,
    _e,
    _left_out,
    _num,
    _percent,
    _short_source,
    _table,
    png_bytes,
    select,
)
from .report_inputs import _any_summary, _read_json, decode_patches, load_summary, read_patches, read_telemetry
from .telemetry import history_of, read_records

OUTCOME_COLOURS = {
    "downlinked": "#1b9e77", "partial": "#e6ab02", "queued": "#d95f02", "dropped": "#c0392b", "retaken": "#7f8c8d",
}  # fmt: skip
PRIORITY = tuple(sorted(_QUEUE_PRIORITY, key=_QUEUE_PRIORITY.__getitem__))  # the queue's order, from the queue
ROWS_LAST = 100  # a long run's ledger shows its last frames,
ROWS_FLAGGED = 50  # and this many of the earlier ones not downlinked (the latest)
PASSES_LAST = 100  # a long run's pass table: the last ones
EVICTED_LAST = KEEP_EVICTED  # its eviction table: the last ones, as many as the queue index keeps whole
_log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------ sections
def _verdict(s: dict[str, Any]) -> str:
    f = s.get("frames", {})
    n, down, queued, dropped = (int(f.get(k) or 0) for k in ("acquired", "downlinked", "queued", "dropped"))
    t = s.get("timing_ms", {})
    mem = s.get("memory", {})
    part = int(f.get("partial") or 0)
    how = "evicted for room" + (" or damaged in storage" if (s.get("queue") or {}).get("corrupted_items") else "")
    some = f", {part} downlinked in part (products {how})" if part else ""
    retaken = int(f.get("retaken") or 0)  # attempts taken again by a later frame: not among the acquired
    again = f" ({retaken} earlier attempt(s) dropped memory_unavailable, taken again)" if retaken else ""
    parts = [f"{n} frame(s) acquired{again}: {down} downlinked{some}, {queued} queued, {dropped} dropped."]
    bad = n == 0 or dropped == n
    if dropped:
        reasons = "; ".join(f"{k} (×{v})" for k, v in (f.get("drop_reasons") or {}).items())
        parts.append(f"Dropped because: {reasons}.")
    missed = int(t.get("deadline_missed") or 0)
    if t.get("p50") is not None:
        parts.append(f"Frame time p50 {t['p50']:.0f} ms, max {t.get('max') or 0:.0f} ms; {missed} deadline(s) missed.")
    if mem.get("within_budget") is False:
        parts.append("Memory went OVER its budget.")
        bad = True
    unknown = int(f.get("unknown") or 0)
    if unknown:
        parts.append(f"{unknown} processed frame(s) of unknown outcome (no queue index).")
    faults = [str(x) for x in s.get("faults") or []]
    every = [str(x) for x in s.get("faults_fired") or []]  # fired in any boot on this state (older summaries: none)
    if faults or every:  # an injected fault is a test of the runtime, not a clean run: said in the first lines
        not_fired = [str(x) for x in s.get("faults_not_fired") or []]
        fired = every or [x for x in faults if x not in not_fired]
        parts.append(
            f"Faults injected (--inject): {', '.join(fired) or 'none fired'}"
            + (f"; asked for but never fired: {', '.join(not_fired)}" if not_fired else "")
            + " (see Events)."
        )
    reloads = int(s.get("scrub_reloads") or 0)
    if reloads:
        parts.append(f"{reloads} model reload(s) after a scrub found corrupted weights.")
    inc = s.get("incomplete")
    if isinstance(inc, dict):
        missing = inc.get("missing") or []
        parts.insert(0, "Run incomplete (rebooted or interrupted): this report is rebuilt from what the folder "
                     f"holds{'; missing: ' + ', '.join(missing) if missing else ''}.")  # fmt: skip
    # red: nothing came through or memory overran; amber: some frames dropped, in part or late, or incomplete
    warn = dropped or part or missed or unknown or inc or faults or reloads
    cls = "verdict bad" if bad else ("verdict warn" if warn else "verdict")
    return f"<p class='{cls}'>{_e(' '.join(parts))}</p>"


def _ledger(s: dict[str, Any]) -> str:
    ledger = s.get("ledger") or []
    counts = Counter(r.get("outcome", "?") for r in ledger)
    reasons = Counter(r.get("code") or r.get("reason") for r in ledger if r.get("outcome") == "dropped")
    parts = [
        "<p>"
        + ", ".join(f"<b style='color:{OUTCOME_COLOURS.get(k, '#222')}'>{v} {_e(k)}</b>" for k, v in counts.items())
        + "</p>"
    ]
    if reasons:
        parts.append(_table(["drop reason", "frames"], [[_e(k or "–"), str(v)] for k, v in reasons.most_common()]))
    # a retaken attempt is no loss: the earlier rows shown are those not downlinked (until review r16 of session 36
    # retaken rows took their places)
    shown, cut = select(ledger, ROWS_LAST, lambda r: r.get("outcome") not in ("downlinked", "retaken"), ROWS_FLAGGED)
    rows = [
        [
            _e(r.get("frame_id")),
            _coloured(str(r.get("outcome", ""))),
            _e(r.get("reason") or "–"),
            (_short_source(r.get("source"))),
        ]
        for r in shown
    ]
    parts.append(_table(["frame", "outcome", "why", "source"], rows, left=4))
    rule = f"the last {ROWS_LAST} and, of the earlier ones not downlinked, the latest {ROWS_FLAGGED} at most"
    parts.append(_left_out(cut, len(ledger), "frames", rule, "summary.json ('ledger')"))
    return "".join(parts)


def _lost_bytes(it: dict[str, Any]) -> str:
    """The bytes an evicted item lost: those not sent (an item a pass found damaged may have sent its first packets;
    until review r6 of session 35 its whole size was shown as lost)."""
    size, sent = int(it.get("wire_bytes") or 0), int(it.get("sent_bytes") or 0)
    if not sent:
        return _num(size)
    # more sent than queued: an index written before review r10 of session 36, when a pass sent the packets a file
    # grown in storage held past those queued (until review r16 a negative loss, "-256 (of 720; ...)")
    over = f", {_num(sent - size)} B more sent than queued" if sent > size else ""
    return (
        f"{_num(max(0, size - sent))} (of {_num(size)}; {_e(it.get('sent_packets'))} of {_e(it.get('n_packets'))} "
        f"packets sent{over})"
    )


def _coloured(outcome: str) -> str:
    return f"<span style='color:{OUTCOME_COLOURS.get(outcome, '#222')}'>{_e(outcome)}</span>"


def _queue(out: Path, pass_lines: list[dict[str, Any]], s: dict[str, Any]) -> str:
    index = _read_json(out / "queue" / "index.json")
    index = index if isinstance(index, dict) else {}
    items = [it for it in index.get("items") or [] if isinstance(it, dict)]
    state = index.get("state")
    # the finished items compacted into totals (queue_ledger) are counted too
    by = tallies(items, state.get("compacted") if isinstance(state, dict) else None)
    kinds = [k for k in PRIORITY if k in by] + sorted(set(by) - set(PRIORITY))
    rows = [
        [
            f"{PRIORITY.index(k) if k in PRIORITY else '–'}: {_e(k)}",
            _num(by[k]["items"]),
            _num(by[k]["wire_bytes"]),
            _num(by[k]["sent_bytes"]),
            _num(by[k]["pending"]),
            _num(by[k]["evicted"]),
        ]
        for k in kinds
    ]
    parts = [
        "<p class='note'>Products are queued by priority (0 first: anomaly patches, then telemetry, sparse pixels, "
        "latents) and sent in that order until each pass's byte budget is spent; when onboard storage is full "
        "the lowest-priority, oldest items are evicted.</p>"
    ]
    if rows:
        parts.append(_table(["priority: product", "items", "bytes queued", "bytes sent", "pending", "evicted"], rows))
    listed = [it for it in items if it.get("status") == "evicted"]
    evicted, cut = select(listed, EVICTED_LAST)
    cut += sum(t["evicted"] for t in by.values()) - len(listed)  # and those compacted: in telemetry only
    if evicted:
        parts.append(
            _table(
                ["evicted item", "kind", "frame", "bytes lost", "why"],
                [
                    [
                        _e(it.get("id")),
                        _e(it.get("kind")),
                        _e(it.get("frame_id")),
                        _lost_bytes(it),
                        _e(it.get("reason") or "–"),
                    ]
                    for it in evicted
                ],
                left=3,
            )
        )
        parts.append(
            _left_out(
                cut, len(evicted) + cut, "evicted items", "the last ones",
                "telemetry.jsonl (an 'evicted' or 'queue_refused' event each)",
            )
        )  # fmt: skip
    passes, cut = select(pass_lines, PASSES_LAST)
    if passes:
        budget = s.get("budgets", {}).get("downlink_bytes_per_pass")
        parts.append(
            _table(
                [
                    "pass",
                    "bytes sent",
                    "of budget",
                    "packets",
                    "products completed",
                    "sent in part",
                    "bytes pending after",
                ],
                [
                    [
                        _e(p.get("index")),
                        _num(p.get("bytes")),
                        _percent(p.get("bytes") or 0, budget) if budget else "–",
                        _num(p.get("packets")),
                        _num(p.get("completed")),
                        _num(p.get("partial")),
                        _num(p.get("pending_bytes")),
                    ]
                    for p in passes
                ],
            )
        )
        parts.append(_left_out(cut, len(passes) + cut, "passes", "the last ones", "telemetry.jsonl ('pass' records)"))
    q = s.get("queue") or {}
    if q:
        parts.append(
            "<p>"
            + _e(", ".join(f"{k.replace('_', ' ')} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in q.items()))
            + "</p>"
        )
    return "".join(parts)


def _sources(out: Path, s: dict[str, Any]) -> str:
    """What the page is built from: the run's summary.json, or, when the last boot wrote none (rebooted,
    interrupted, killed), a summary rebuilt from telemetry and the queue, the summary.json there (an earlier boot's,
    until session 36 named as the source of the page) said to be not used."""
    inc = s.get("incomplete")
    if not isinstance(inc, dict):
        return "summary.json, telemetry.jsonl, queue/index.json and the downlink packet files"
    raw = inc.get("missing")
    missing: list[Any] = raw if isinstance(raw, list) else []
    had = [n for n in ("telemetry.jsonl", "queue/index.json", "mission.json") if n not in missing]  # until review r7
    # of session 36 all three were named, also when missing
    named = ", ".join(had[:-1]) + (" and " if len(had) > 1 else "") + had[-1] if had else "nothing the run wrote"
    text = f"rebuilt from {named} (the last boot wrote no summary), and the downlink packet files"
    old = _read_json(out / "summary.json")
    if isinstance(old, dict):
        n = (old.get("frames") or {}).get("acquired") if isinstance(old.get("frames"), dict) else None
        frames = f", {n:,} frames acquired" if isinstance(n, int) else ""
        text += f"; the summary.json there is of an earlier boot ({old.get('boots', '?')} boot(s){frames}): not used"
    return text


_SHOWN = {"frames", "queue", "timing_ms", "degradations", "ledger", "anomalies", "mission", "budgets", "memory"}


LIST_MOST, LIST_ENDS = 12, 5  # a longer list of the last section: its count, its first and last items


def _bounded(v: Any, cut: list[int]) -> Any:
    """``v`` with every list longer than :data:`LIST_MOST` cut to its first and last :data:`LIST_ENDS` items (a
    list of numbers or strings to one line, ``300 items: 0, 1, 2, 3, 4 … 295, …``), counting the lists cut in
    ``cut``: until session 36 ``this_boot.top_patch_frames`` was printed one id per line, 300 lines for 300 frames."""
    if isinstance(v, dict):
        return {k: _bounded(x, cut) for k, x in v.items()}
    if not isinstance(v, list):
        return v
    if len(v) <= LIST_MOST:
        return [_bounded(x, cut) for x in v]
    cut.append(len(v))
    head, tail = v[:LIST_ENDS], v[-LIST_ENDS:]
    if all(isinstance(x, int | float | str) for x in v):
        return f"{len(v):,} items: {', '.join(map(str, head))} … {', '.join(map(str, tail))}"
    more = f"… {len(v) - 2 * LIST_ENDS:,} more …"
    return [*(_bounded(x, cut) for x in head), more, *(_bounded(x, cut) for x in tail)]


def _other(s: dict[str, Any]) -> str:
    rest = {k: v for k, v in s.items() if k not in _SHOWN}
    if not rest:
        return ""
    cut: list[int] = []
    text = json.dumps(_bounded(rest, cut), indent=2, ensure_ascii=False)
    note = (
        f"<p class='note'>{len(cut)} list(s) of more than {LIST_MOST} items cut to their first and last "
        f"{LIST_ENDS}; summary.json holds them whole.</p>"
        if cut
        else ""
    )
    return f"{note}<pre>{_e(text)}</pre>"


def write_report(out_dir: str | Path, summary: dict[str, Any] | None = None, *, prune: bool = False) -> Path:
    """Write ``out_dir/report.html`` (and ``out_dir/report_img/``) from a run's outputs; return its path. Each file
    is written atomically: an ``OSError`` (a full or read-only disk) leaves no partial file. ``prune``: the caller
    holds the folder (:mod:`edgeae.folder_lock`: the run's end of boot, ``firmware-sim report``), so once the page
    is written the images it no longer shows and every temporary file of ``report_img/`` are removed; without it
    nothing is removed (until review r7 of session 36 every report pruned, and a report written beside a run deleted
    images the run's page, written last, showed)."""
    out = Path(out_dir)
    s = summary if summary is not None else _any_summary(out)
    # every boot on this state: the last record of each frame, the passes, the events; the file read once (until
    # session 36 twice, at every boot)
    history = history_of(*read_records(out / "telemetry.jsonl"))
    frames = [history.frames[k] for k in sorted(history.frames)]
    processed = (s.get("frames") or {}).get("processed") or 0
    no_timeline = not (out / "telemetry.jsonl").is_file() and processed
    title = f"firmware-sim run: mission {s.get('mission', '?')}"
    levels = s.get("degradations") or {}
    gallery, unread = _gallery(out, s)
    for line in console_lines(unread):  # damaged or refused packets: on the console too, one line per pass file
        _log.warning("%s: %s", out, line)
    sections = [
        (
            "Outcome",
            _verdict(s)
            + (
                f"<p>Degradation levels used: {_e(', '.join(f'{k} ×{v}' for k, v in levels.items()))}.</p>"
                if levels
                else ""
            ),
        ),
        (
            "Frame timeline: stage times against the deadline",
            _timeline(frames, s)
            if not no_timeline
            else "<p>telemetry.jsonl is missing, so there is no per-frame timeline (the summary counts "
            f"{_e(processed)} processed frames).</p>",
        ),
        ("Memory against the budget", _memory(frames, s)),
        (
            "Ledger: every frame downlinked, queued or dropped"
            + (", and the attempts taken again" if (s.get("frames") or {}).get("retaken") else ""),
            _ledger(s),
        ),
        ("Downlink queue by priority", _queue(out, history.passes, s)),
        ("Anomaly gallery", gallery),
        ("Events: boots, recoveries, model loads, faults", _events(history.log)),
    ]
    other = _other(s)
    if other:
        sections.append(("Everything else in summary.json", other))
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f"<p class='note'>From {_e(out.resolve())}: {_e(_sources(out, s))}.</p>",
    ]
    for name, body in sections:
        parts.append(f"<section><h2>{_e(name)}</h2>{body}</section>")
    parts.append("</body></html>\n")
    path = out / "report.html"
    # atomically: a full disk leaves the old report or none, never half a page; every name's bytes that are not
    # UTF-8 escaped (_e does it for each; printable again for the whole page, so no text can stop the write)
    page = printable("\n".join(parts))
    write_text(path, page)
    if prune:  # the images of patches no longer shown, once the page that dropped them is written
        remove_unshown(out, page)
    return path


__all__ = ["decode_patches", "load_summary", "png_bytes", "read_patches", "read_telemetry", "write_report"]

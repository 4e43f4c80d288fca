"""``report.html`` of a flight run: what a mission engineer reads after ``firmware-sim run``.

Built from what the run leaves in its output folder (``summary.json``, ``telemetry.jsonl``,
``queue/index.json`` and the ``downlink/pass_*.bin`` packet files), so it can be rebuilt at any time with
``firmware-sim report DIR``. Sections: the outcome in one line, the per-frame timeline (stage times against
the deadline, with the degradation level), memory against the budget, the ledger (downlinked / queued /
dropped and why), the downlink queue by priority, the anomaly gallery (patches decoded from the downlink
packets, exactly as the ground receives them) and the events (faults, model loads, scrubs).

numpy and the standard library only (charts are inline SVG, gallery images PNG written with zlib), like the
rest of the flight runtime. Keys that a newer runtime adds to ``summary.json`` are shown in the last section.
This module lays out the page and its sections; the run's outputs are read in :mod:`.report_inputs`, the
timeline and memory charts drawn in :mod:`.report_charts`, and the HTML building blocks and the PNG writer
are in :mod:`.report_html`.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from edgeae.atomic import write_bytes, write_text

from .queue import PRIORITY as _QUEUE_PRIORITY
from .report_charts import STAGE_COLOURS as STAGE_COLOURS
from .report_charts import STAGES as STAGES
from .report_charts import _memory, _timeline
from .report_html import _CSS, _e, _num, _short_source, _table, png_bytes
from .report_inputs import _any_summary, _read_json, decode_patches, load_summary, read_telemetry
from .telemetry import read_history

OUTCOME_COLOURS = {"downlinked": "#1b9e77", "partial": "#e6ab02", "queued": "#d95f02", "dropped": "#c0392b"}
PRIORITY = tuple(sorted(_QUEUE_PRIORITY, key=_QUEUE_PRIORITY.__getitem__))  # the queue's order, from the queue
GALLERY_MAX = 48


# ------------------------------------------------------------------------------------------------ sections
def _verdict(s: dict[str, Any]) -> str:
    f = s.get("frames", {})
    n, down, queued, dropped = (int(f.get(k) or 0) for k in ("acquired", "downlinked", "queued", "dropped"))
    t = s.get("timing_ms", {})
    mem = s.get("memory", {})
    part = int(f.get("partial") or 0)
    some = f", {part} downlinked in part (products evicted for room)" if part else ""
    parts = [f"{n} frame(s) acquired: {down} downlinked{some}, {queued} queued, {dropped} dropped."]
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
    inc = s.get("incomplete")
    if isinstance(inc, dict):
        missing = inc.get("missing") or []
        parts.insert(0, "Run incomplete (rebooted or interrupted): this report is rebuilt from what the folder "
                     f"holds{'; missing: ' + ', '.join(missing) if missing else ''}.")  # fmt: skip
    # red: nothing came through or memory overran; amber: some frames dropped, in part or late, or incomplete
    warn = dropped or part or missed or unknown or inc
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
    rows = [
        [
            _e(r.get("frame_id")),
            _coloured(str(r.get("outcome", ""))),
            _e(r.get("reason") or "–"),
            (_short_source(r.get("source"))),
        ]
        for r in ledger
    ]
    parts.append(_table(["frame", "outcome", "why", "source"], rows, left=4))
    return "".join(parts)


def _coloured(outcome: str) -> str:
    return f"<span style='color:{OUTCOME_COLOURS.get(outcome, '#222')}'>{_e(outcome)}</span>"


def _queue(out: Path, tm: list[dict[str, Any]], s: dict[str, Any]) -> str:
    index = _read_json(out / "queue" / "index.json") or {}
    items = index.get("items") or []
    by: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for it in items:
        k = it.get("kind", "?")
        by[k]["items"] += 1
        by[k]["wire_bytes"] += int(it.get("wire_bytes") or 0)
        by[k]["sent_bytes"] += int(it.get("sent_bytes") or 0)
        by[k][f"n_{it.get('status', '?')}"] += 1
    kinds = [k for k in PRIORITY if k in by] + sorted(set(by) - set(PRIORITY))
    rows = [
        [
            f"{PRIORITY.index(k) if k in PRIORITY else '–'}: {_e(k)}",
            _num(by[k]["items"]),
            _num(by[k]["wire_bytes"]),
            _num(by[k]["sent_bytes"]),
            _num(by[k]["n_pending"]),
            _num(by[k]["n_evicted"]),
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
    evicted = [it for it in items if it.get("status") == "evicted"]
    if evicted:
        parts.append(
            _table(
                ["evicted item", "kind", "frame", "bytes", "why"],
                [
                    [
                        _e(it.get("id")),
                        _e(it.get("kind")),
                        _e(it.get("frame_id")),
                        _num(it.get("wire_bytes")),
                        _e(it.get("reason") or "–"),
                    ]
                    for it in evicted
                ],
                left=3,
            )
        )
    passes = [r for r in tm if r.get("type") == "pass"]
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
                        f"{100 * (p.get('bytes') or 0) / budget:.0f}%" if budget else "–",
                        _num(p.get("packets")),
                        _num(p.get("completed")),
                        _num(p.get("partial")),
                        _num(p.get("pending_bytes")),
                    ]
                    for p in passes
                ],
            )
        )
    q = s.get("queue") or {}
    if q:
        parts.append(
            "<p>"
            + _e(", ".join(f"{k.replace('_', ' ')} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in q.items()))
            + "</p>"
        )
    return "".join(parts)


SCORE_MEANING = {
    "cae-masked": "the mean squared error of the CAE's rebuild of a patch from a sample of its pixels, over the "
    "patch's valid pixels (samples scaled to [0, 1])",
    "vae": "the β-VAE's a(x) = ||x - x_hat||^2 + λ||μ||^2 summed over the patch (or terms-max: each term over its "
    "median in the frame, the larger)",
}


def _scoring_note(out: Path) -> str:
    """How the patches were chosen, from the run's mission settings (mission.json): score, model, patch size,
    stride and whether a threshold or only the top-k rank selected them."""
    m = (_read_json(out / "mission.json") or {}).get("settings") or {}
    if not m:
        return ""
    method = str(m.get("anomaly.method", ""))
    score = SCORE_MEANING.get(method, method)
    if method == "vae" and m.get("anomaly.score"):
        score += f"; this run ranks by {m['anomaly.score']}"
    threshold = m.get("anomaly.threshold")
    chosen = (
        f"patches scoring above {threshold}, at most {m.get('anomaly.top_k')} a frame"
        if threshold is not None
        else f"no threshold: the top {m.get('anomaly.top_k')} of each frame by rank"
    )
    return (
        f"Score: {score}. Model {m.get('anomaly.model')}, {m.get('anomaly.patch')}-px patches every "
        f"{m.get('anomaly.stride')} px; sent: {chosen}."
    )


def _gallery(out: Path, s: dict[str, Any]) -> str:
    patches = decode_patches(out / "downlink")
    if patches:
        img_dir = out / "report_img"
        img_dir.mkdir(exist_ok=True)
        figs = []
        for p in patches[:GALLERY_MAX]:
            name = f"anomaly_f{p['frame_id']}_x{p['x']}_y{p['y']}.png"
            write_bytes(img_dir / name, png_bytes(p["pixels"], p["bit_depth"]), durable=False)  # whole or none
            part = "" if p["complete"] else " (partly sent)"
            figs.append(
                f"<figure><img src='report_img/{name}' alt='frame {p['frame_id']} patch at {p['x']},{p['y']}'>"
                f"<figcaption>frame {p['frame_id']} ({p['x']}, {p['y']})<br>score {p['score']:.4g}{part}"
                "</figcaption></figure>"
            )
        more = f"<p class='note'>{len(patches) - GALLERY_MAX} more not shown.</p>" if len(patches) > GALLERY_MAX else ""
        return (
            "<p class='note'>The highest-scoring patches as the ground receives them: decoded from the downlink "
            "packet files, full resolution, highest score first within each frame. (x, y) is the top-left pixel. "
            f"{_e(_scoring_note(out))}</p>"
            f"<div class='gallery'>{''.join(figs)}</div>{more}"
        )
    rows = [
        [
            _e(a.get("frame_id")),
            (_short_source(a.get("source"))),
            _e(", ".join(f"({p['x']}, {p['y']}) {p['score']:.4g}" for p in a.get("patches", []))),
        ]
        for a in s.get("anomalies") or []
    ]
    if not rows:
        return "<p>No patch was chosen for the downlink (none above the threshold, or no anomaly model).</p>"
    return "<p class='note'>No patch packet was downlinked yet; the patches chosen for it are:</p>" + _table(
        ["frame", "source", "patches (x, y) score"], rows, left=3
    )


def _events(tm: list[dict[str, Any]]) -> str:
    ev = [r for r in tm if r.get("type") == "event"]
    if not ev:
        return "<p>No event.</p>"
    rows = []
    for r in ev:
        detail = {k: v for k, v in r.items() if k not in ("type", "t", "kind")}
        text = ", ".join(f"{k} {Path(str(v)).name if k == 'path' else v}" for k, v in detail.items() if k != "sha256")
        rows.append([_num(r.get("t"), 2), _e(r.get("kind", "")), _e(text)])
    return _table(["t (s)", "event", "detail"], rows, left=3)


_SHOWN = {"frames", "queue", "timing_ms", "degradations", "ledger", "anomalies", "mission", "budgets", "memory"}


def _other(s: dict[str, Any]) -> str:
    rest = {k: v for k, v in s.items() if k not in _SHOWN}
    if not rest:
        return ""
    return f"<pre>{_e(json.dumps(rest, indent=2))}</pre>"


def write_report(out_dir: str | Path, summary: dict[str, Any] | None = None) -> Path:
    """Write ``out_dir/report.html`` (and ``out_dir/report_img/``) from a run's outputs; return its path. Each file
    is written atomically: an ``OSError`` (a full or read-only disk) leaves no partial file."""
    out = Path(out_dir)
    s = summary if summary is not None else _any_summary(out)
    tm = read_telemetry(out / "telemetry.jsonl")
    history = read_history(out / "telemetry.jsonl")  # every boot on this state, the last record of each frame
    frames = [history.frames[k] for k in sorted(history.frames)]
    processed = (s.get("frames") or {}).get("processed") or 0
    no_timeline = not (out / "telemetry.jsonl").is_file() and processed
    title = f"firmware-sim run: mission {s.get('mission', '?')}"
    levels = s.get("degradations") or {}
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
        ("Ledger: every frame downlinked, queued or dropped", _ledger(s)),
        ("Downlink queue by priority", _queue(out, tm, s)),
        ("Anomaly gallery", _gallery(out, s)),
        ("Events: model loads, faults, recoveries", _events(history.events)),
    ]
    other = _other(s)
    if other:
        sections.append(("Everything else in summary.json", other))
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f"<p class='note'>From {_e(out.resolve())}: summary.json, telemetry.jsonl, queue/index.json and the "
        "downlink packet files.</p>",
    ]
    for name, body in sections:
        parts.append(f"<section><h2>{_e(name)}</h2>{body}</section>")
    parts.append("</body></html>\n")
    path = out / "report.html"
    write_text(path, "\n".join(parts))  # atomically: a full disk leaves the old report or none, never half a page
    return path


__all__ = ["decode_patches", "load_summary", "png_bytes", "read_telemetry", "write_report"]

"""The two charts of ``report.html``: the per-frame timeline (stage times against the deadline, with the
degradation level and a table of every frame) and each frame's memory against the budget (with the whole
run's memory figures). Inline SVG, no plotting library.
"""

from __future__ import annotations

from typing import Any

from .report_html import _e, _left_out, _legend, _mib, _num, _policy, _short_source, _svg_open, _table, select

STAGES = ("read", "validate", "sample", "nodata", "score", "recon", "products")  # nodata: the no-data mask (26b0dc6)
STAGE_COLOURS = {
    "read": "#b3b3b3",
    "validate": "#8da0cb",
    "sample": "#66c2a5",
    "nodata": "#e5c494",
    "score": "#fc8d62",
    "recon": "#e78ac3",
    "products": "#a6d854",
    "other": "#cccccc",
}
FRAMES_LAST = 100  # a long run's charts and frame tables show its last frames,
FRAMES_FLAGGED = 50  # and this many of the earlier ones that were dropped, late or over the memory budget
# (5,000 frames drawn whole made a 7.5 MB page with a timeline 110,040 px tall)


def _flagged(f: dict[str, Any]) -> bool:
    return (
        f.get("status") != "processed"
        or bool(f.get("deadline_missed"))
        or bool((f.get("memory") or {}).get("over_budget"))
    )


def shown_frames(frames: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """The frames a chart shows (:func:`.report_html.select`: all of a short run; of a long one the last
    ``FRAMES_LAST`` and up to ``FRAMES_FLAGGED`` earlier ones not processed, late or over the memory budget) and
    the note saying how many are left out and where they are."""
    shown, n = select(frames, FRAMES_LAST, _flagged, FRAMES_FLAGGED)
    rule = (
        f"the last {FRAMES_LAST} and, of the earlier ones not processed, late or over the memory budget, the "
        f"latest {FRAMES_FLAGGED} at most"
    )
    return shown, _left_out(n, len(frames), "frames", rule, "telemetry.jsonl (a 'frame' record each)")


def _timeline(frames: list[dict[str, Any]], s: dict[str, Any]) -> str:
    budget = float(s.get("budgets", {}).get("frame_ms") or 0.0)
    timed = [f for f in frames if isinstance(f.get("timing_ms"), dict)]
    if not timed:
        return "<p>No frame was processed, so there is no timeline.</p>"
    timed = shown_frames(timed)[0]  # the chart: of a long run the last frames and the earlier ones worth a look
    frames, cut = shown_frames(frames)  # the table, and the note on both
    totals = [float(f["timing_ms"].get("total") or 0.0) for f in timed]
    longest = max([*totals, 1.0])
    off_scale = budget > 4 * longest  # a long deadline would squeeze every bar to a few pixels: scale to the frames
    scale_max = longest if off_scale else max(longest, budget)
    row_h, left, width = 22, 190, 880
    plot_w = width - left - 110  # room right of the longest bar for its label
    h = row_h * len(timed) + 40

    def x(ms: float) -> float:
        return left + plot_w * ms / scale_max

    svg = [_svg_open(width, h)]
    for i, f in enumerate(timed):
        y = 10 + i * row_h
        tms = f["timing_ms"]
        level = (f.get("level") or {}).get("name", "?")
        if f.get("status") == "dropped":  # its stages ran, but nothing of it is downlinked
            svg.append(f"<text x='4' y='{y + 14}' fill='#c0392b'>frame {f.get('frame_id')} · dropped</text>")
        else:
            svg.append(f"<text x='4' y='{y + 14}'>frame {f.get('frame_id')} · {_e(level)}</text>")
        cursor, known = 0.0, 0.0
        for st in STAGES:
            v = float(tms.get(st) or 0.0)
            if v <= 0:
                continue
            svg.append(
                f"<rect x='{x(cursor):.1f}' y='{y + 3}' width='{max(0.5, x(cursor + v) - x(cursor)):.1f}' "
                f"height='{row_h - 6}' fill='{STAGE_COLOURS[st]}'><title>{st}: {v:.1f} ms</title></rect>"
            )
            cursor += v
            known += v
        rest = float(tms.get("total") or 0.0) - known
        if rest > 0.5:
            svg.append(
                f"<rect x='{x(cursor):.1f}' y='{y + 3}' width='{x(cursor + rest) - x(cursor):.1f}' "
                f"height='{row_h - 6}' "
                f"fill='{STAGE_COLOURS['other']}'><title>other (I/O, queue): {rest:.1f} ms</title></rect>"
            )
        avail = f.get("available_ms")
        if isinstance(avail, int | float) and budget and 0 <= avail < budget:
            svg.append(
                f"<line x1='{x(avail):.1f}' x2='{x(avail):.1f}' y1='{y + 1}' y2='{y + row_h - 1}' stroke='#d95f02' "
                f"stroke-width='2'><title>time left after {f.get('lateness_ms', 0):.0f} ms lateness: {avail:.0f} ms"
                "</title></line>"
            )
        mark = " ✗ missed" if f.get("deadline_missed") else ""
        total = float(tms.get("total") or 0)
        svg.append(f"<text x='{x(total) + 4:.1f}' y='{y + 14}'>{total:.0f} ms{mark}</text>")
    if budget and off_scale:
        svg.append(
            f"<text x='{width - 4}' y='{h - 12}' text-anchor='end' fill='#c0392b'>deadline {budget:.0f} ms: off "
            f"this scale ({budget / longest:.0f}× the longest frame) →</text>"
        )
    elif budget:
        svg.append(
            f"<line x1='{x(budget):.1f}' x2='{x(budget):.1f}' y1='4' y2='{h - 26}' stroke='#c0392b' "
            "stroke-dasharray='4 3'/>"
            f"<text x='{x(budget) - 4:.1f}' y='{h - 12}' text-anchor='end' fill='#c0392b'>"
            f"deadline {budget:.0f} ms</text>"
        )
    svg.append(f"<text x='{left}' y='{h - 12}'>0 ms</text></svg>")
    legend = _legend({**{k: STAGE_COLOURS[k] for k in STAGES}, "other": STAGE_COLOURS["other"]})
    rows = []
    for f in frames:
        tms = f.get("timing_ms") or {}
        p = f.get("patches") or {}
        processed = f.get("status") == "processed"
        rows.append(
            [
                _e(f.get("frame_id")),
                (_short_source(f.get("source"))),
                _e(f.get("status", "")),
                _e((f.get("level") or {}).get("name", "–")) if processed else "–",  # a dropped frame ran at none
                _num(tms.get("total")),
                _num(f.get("available_ms")),
                ("yes" if f.get("deadline_missed") else "no") if processed else "–",
                _num(f.get("keep"), 4),
                f"{p.get('scored', '–')} / {p.get('grid', '–')}" + _not_scored(p),
                _e(", ".join(f.get("flags") or []) or "–"),
            ]
        )
    table = _table(
        ["frame", "source", "status", "degradation level", "total ms", "time available ms", "missed",
         "keep", "patches scored", "flags"],
        rows,
        left=4,
    )  # fmt: skip
    note = (
        "<p class='note'>Each bar is one frame, split into its stages; the dashed red line is the per-frame "
        "deadline of the mission's budget, an orange tick the time that was left when the frame arrived late. "
        "When a frame would miss its deadline the runtime degrades in a fixed order (skip reconstruction, "
        "score half, a quarter of the patches, halve the keep fraction, sparse only); the level is named on "
        "the left.</p>"
    )
    return note + cut + "\n".join(svg) + legend + table


def _not_scored(p: dict[str, Any]) -> str:
    """Why patches of the grid were not scored, after "scored / grid" (the audit: "110 / 130" said nothing of the
    20 margin patches): no-data, cut by the deadline, not selected at the degradation level."""
    why = [
        f"{n} {what}"
        for n, what in (
            (p.get("nodata_skipped"), "no-data"),
            (p.get("cut_by_deadline"), "cut by the deadline"),
            ((p.get("grid") or 0) - (p.get("selected") or 0) if p.get("selected") is not None else 0, "not selected"),
        )
        if isinstance(n, int) and n > 0
    ]
    return f" ({', '.join(why)})" if why else ""


MEMORY_LABELS = {
    "enforced_on": "budget enforced on",
    "within_budget": "within budget (RSS growth over boot)",
    "rss_frame_peak_bytes": "rss frame peak (whole process: boot baseline included, not the budgeted figure)",
    "rss_peak_bytes": "rss peak (whole process, boot baseline included)",
    "rss_growth_peak_bytes": "rss growth peak over boot (what the budget counts)",
}
"""The memory table's names for the summary's keys whose plain names read as contradicting the verdict (session 46's
audit: "rss peak 128.9 MiB" above a 128 MiB budget, "within budget: yes", the budget counting growth over boot)."""


def _memory(frames: list[dict[str, Any]], s: dict[str, Any]) -> str:
    budget = s.get("budgets", {}).get("memory_bytes")
    shown, cut = shown_frames([f for f in frames if f.get("memory")])
    pts = [(f.get("frame_id"), (f.get("memory") or {})) for f in shown]
    out = []
    if pts and budget:
        peak_max = max([budget, *[int(m.get("rss_growth_peak") or 0) for _, m in pts]])
        width, left, bar_h = 880, 120, 18
        plot_w = width - left - 120
        h = bar_h * len(pts) + 30
        svg = [_svg_open(width, h)]
        for i, (fid, m) in enumerate(pts):
            y = 6 + i * bar_h
            peak = int(m.get("rss_growth_peak") or 0)
            traced = m.get("traced_peak")
            traced_text = f", traced Python peak {traced:,} B" if isinstance(traced, int) else ""
            colour = "#c0392b" if m.get("over_budget") else "#4c78a8"
            svg.append(f"<text x='4' y='{y + 12}'>frame {fid}</text>")
            svg.append(
                f"<rect x='{left}' y='{y + 2}' width='{plot_w * peak / peak_max:.1f}' height='{bar_h - 5}' "
                f"fill='{colour}'>"
                f"<title>RSS growth over boot {peak:,} B{traced_text}</title></rect>"
            )
            svg.append(f"<text x='{left + plot_w * peak / peak_max + 4:.1f}' y='{y + 12}'>{_mib(peak)}</text>")
        bx = left + plot_w * budget / peak_max
        svg.append(
            f"<line x1='{bx:.1f}' x2='{bx:.1f}' y1='2' y2='{h - 20}' stroke='#c0392b' stroke-dasharray='4 3'/>"
            f"<text x='{bx - 4:.1f}' y='{h - 6}' text-anchor='end' fill='#c0392b'>budget {_mib(budget)}</text></svg>"
        )
        out.append(
            "<p class='note'>Each frame's peak RSS growth over the boot baseline (the kernel's high-water mark: "
            "everything the process held, interpreters and native buffers included) against the mission's memory "
            "budget; red: over it.</p>"
        )
        out.append(cut + "".join(svg))
    mem = s.get("memory", {})
    if mem:
        rows = [
            [
                _e(MEMORY_LABELS.get(k, k.removesuffix("_bytes").replace("_", " "))),  # the value is shown in MiB
                _mib(v) if k.endswith("bytes") else _e(_policy(v)) if k == "heap" else _num(v),
            ]
            for k, v in mem.items()
        ]
        out.append(_table(["whole run", "value"], rows))
    return "".join(out) or "<p>No memory was recorded.</p>"

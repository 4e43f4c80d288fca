"""``report.html`` of a flight run: what a mission engineer reads after ``firmware-sim run``.

Built from what the run leaves in its output folder (``summary.json``, ``telemetry.jsonl``,
``queue/index.json`` and the ``downlink/pass_*.bin`` packet files), so it can be rebuilt at any time with
``firmware-sim report DIR``. Sections: the outcome in one line, the per-frame timeline (stage times against
the deadline, with the degradation level), memory against the budget, the ledger (downlinked / queued /
dropped and why), the downlink queue by priority, the anomaly gallery (patches decoded from the downlink
packets, exactly as the ground receives them) and the events (faults, model loads, scrubs).

numpy and the standard library only (charts are inline SVG, gallery images PNG written with zlib), like the
rest of the flight runtime. Keys that a newer runtime adds to ``summary.json`` are shown in the last section.
"""

from __future__ import annotations

import html
import json
import struct
import zlib
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from .telemetry import read_history, read_lines, rebuild_summary, run_finished

STAGES = ("read", "validate", "sample", "score", "recon", "products")
STAGE_COLOURS = {
    "read": "#b3b3b3",
    "validate": "#8da0cb",
    "sample": "#66c2a5",
    "score": "#fc8d62",
    "recon": "#e78ac3",
    "products": "#a6d854",
    "other": "#cccccc",
}
OUTCOME_COLOURS = {"downlinked": "#1b9e77", "partial": "#e6ab02", "queued": "#d95f02", "dropped": "#c0392b"}
PRIORITY = ("patch", "telemetry", "sparse", "latent")  # the queue's order (queue.PRIORITY)
GALLERY_MAX = 48

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1150px;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.8em 0;font-size:.92em}td,th{border:1px solid #ccc;padding:.25em .6em;
text-align:right}th{background:#f4f4f4}td.l,th.l{text-align:left}
.verdict{font-size:1.1em;padding:.6em .9em;border-radius:4px;background:#eef7ee;border:1px solid #9c9}
.scroll{overflow-x:auto}.verdict.bad{background:#fbeeee;border-color:#d99}.verdict.warn{background:#fdf6e3;border-color:#d9b55a}.note{color:#555;font-size:.9em}
.gallery{display:flex;flex-wrap:wrap;gap:.8em}.gallery figure{margin:0;width:132px}
.gallery img{width:128px;height:128px;image-rendering:pixelated;border:1px solid #999}
figcaption{font-size:.8em;color:#444}.legend span{display:inline-block;margin-right:1em;font-size:.85em}
.legend i{display:inline-block;width:.9em;height:.9em;margin-right:.3em;vertical-align:-.1em}
pre{background:#f6f6f6;padding:.6em;overflow-x:auto;font-size:.85em}
"""


# ------------------------------------------------------------------------------------------------ inputs
def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_telemetry(path: Path) -> list[dict[str, Any]]:
    """The records of ``telemetry.jsonl`` (a torn last line after a crash is skipped)."""
    return read_lines(path)


def load_summary(out: Path) -> tuple[dict[str, Any], list[str]]:
    """The summary a report is built from, and notes on it: ``summary.json`` when the last boot wrote it;
    else (a run rebooted, interrupted or killed) one rebuilt from ``telemetry.jsonl`` and ``queue/index.json``
    (:func:`.telemetry.rebuild_summary`), the notes naming what was missing. Raises ``MissionError`` when the
    folder holds none of them or a damaged summary of a finished run."""
    from .mission import MissionError

    lines = read_lines(out / "telemetry.jsonl")
    have = [n for n in ("summary.json", "telemetry.jsonl", "queue/index.json") if (out / n).is_file()]
    if not have:
        raise MissionError(
            f"{out} holds no summary.json, telemetry.jsonl or queue/index.json: is it the --out folder of "
            "firmware-sim run?"
        )
    if "summary.json" in have and (not lines or run_finished(lines)):
        path = out / "summary.json"
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:  # a damaged summary would make a report of "mission ?" with 0 frames
            raise MissionError(f"{path} is not readable JSON ({exc}); run the mission again to rewrite it") from None
        if not isinstance(doc, dict) or "frames" not in doc:
            raise MissionError(f"{path} is not a firmware-sim run summary (no 'frames' record)")
        return doc, []
    summary, missing = rebuild_summary(out)
    notes = ["run incomplete (rebooted or interrupted): rebuilt from " + ", ".join(
        n for n in ("telemetry.jsonl", "queue/index.json", "mission.json") if n not in missing)]  # fmt: skip
    if missing:
        notes.append("missing: " + ", ".join(missing))
    return summary, notes


def decode_patches(downlink_dir: Path) -> list[dict[str, Any]]:
    """Anomaly patches rebuilt from the downlink packet files: frame_id, x, y, size, score, pixels (H, W, C)."""
    try:
        from edgeae.wire.parse import WireError, parse_packet
    except ImportError:  # spacepackets missing: the gallery falls back to the summary's list
        return []
    from .queue import split_packets

    pieces: dict[tuple[int, int], dict[str, Any]] = {}
    for f in sorted(downlink_dir.glob("pass_*.bin")):
        try:
            packets = split_packets(f.read_bytes())  # a pass file: CCSDS packets back to back
        except (OSError, ValueError):
            continue
        for data in packets:
            try:
                pkt = parse_packet(data)
            except WireError:
                continue
            if pkt.kind != "patch":
                continue
            h = pkt.header
            key = (pkt.frame_id, int(h["index"]))
            size, ch = int(h["size"]), int(h["channels"])
            entry = pieces.setdefault(
                key,
                {
                    "frame_id": pkt.frame_id,
                    "x": int(h["x"]),
                    "y": int(h["y"]),
                    "size": size,
                    "score": float(h["score"]),
                    "bit_depth": int(h["bit_depth"]),
                    "flat": np.zeros(size * size * ch, pkt.samples.dtype),
                    "got": 0,
                    "channels": ch,
                },
            )
            e0, n = int(h["e0"]), int(h["n"])
            entry["flat"][e0 : e0 + n] = pkt.samples[:n]
            entry["got"] += n
    out = []
    for e in pieces.values():
        e["complete"] = e["got"] >= e["flat"].size
        e["pixels"] = e.pop("flat").reshape(e["size"], e["size"], e["channels"])
        out.append(e)
    return sorted(out, key=lambda e: (e["frame_id"], -e["score"]))


# ------------------------------------------------------------------------------------------------ PNG
def png_bytes(pixels: np.ndarray, bit_depth: int = 8) -> bytes:
    """An 8-bit grey or RGB PNG of ``pixels`` (H, W[, C]); wider samples are scaled down from ``bit_depth``."""
    a = np.asarray(pixels)
    if a.ndim == 2:
        a = a[..., None]
    if a.dtype != np.uint8:
        a = np.clip(np.round(a.astype(np.float64) * 255.0 / max(1, 2**bit_depth - 1)), 0, 255).astype(np.uint8)
    h, w, c = a.shape
    if c not in (1, 3):
        a, c = a[..., :1], 1
    colour = 0 if c == 1 else 2
    raw = b"".join(b"\x00" + a[y].tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    head = struct.pack(">IIBBBBB", w, h, 8, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", head) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


# ------------------------------------------------------------------------------------------------ helpers
def _e(v: Any) -> str:
    return html.escape(str(v))


def _num(v: Any, digits: int = 1) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return _e(v)


def _policy(h: Any) -> str:
    """The heap policy dict of the summary as one line ("compact: M_ARENA_MAX 1, ...")."""
    if not isinstance(h, dict):
        return str(h)
    rest = ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in h.items() if k != "policy")
    return f"{h.get('policy', '?')}" + (f": {rest}" if rest else "")


def _mib(b: Any) -> str:
    return "–" if not isinstance(b, int | float) else f"{b / 2**20:.1f} MiB"


def _table(head: list[str], rows: list[list[str]], left: int = 1) -> str:
    th = "".join(f"<th class='l'>{_e(h)}</th>" if i < left else f"<th>{_e(h)}</th>" for i, h in enumerate(head))
    body = "".join(
        "<tr>" + "".join(f"<td class='l'>{c}</td>" if i < left else f"<td>{c}</td>" for i, c in enumerate(r)) + "</tr>"
        for r in rows
    )
    return f"<div class='scroll'><table><tr>{th}</tr>{body}</table></div>"  # a narrow window scrolls the table


def _legend(items: dict[str, str]) -> str:
    return (
        "<div class='legend'>"
        + "".join(f"<span><i style='background:{c}'></i>{_e(k)}</span>" for k, c in items.items())
        + "</div>"
    )


def _short_source(src: Any, width: int = 36) -> str:
    """The file name of a frame source, cut in the middle to ``width`` characters (full path on hover)."""
    if not src:
        return "–"
    name = Path(str(src)).name
    if len(name) > width:
        name = name[: width // 2 - 1] + "…" + name[-(width // 2) :]
    return f"<span title='{_e(src)}'>{_e(name)}</span>"


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


def _svg_open(width: int, height: int) -> str:
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {width} {height}' width='100%' "
        f"style='max-width:{width}px' font-size='11' font-family='sans-serif'>"  # scales down in a narrow window
    )


def _timeline(frames: list[dict[str, Any]], s: dict[str, Any]) -> str:
    budget = float(s.get("budgets", {}).get("frame_ms") or 0.0)
    timed = [f for f in frames if isinstance(f.get("timing_ms"), dict)]
    if not timed:
        return "<p>No frame was processed, so there is no timeline.</p>"
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
                f"{p.get('scored', '–')} / {p.get('grid', '–')}",
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
    return note + "\n".join(svg) + legend + table


def _memory(frames: list[dict[str, Any]], s: dict[str, Any]) -> str:
    budget = s.get("budgets", {}).get("memory_bytes") or s.get("memory", {}).get("budget_bytes")
    pts = [(f.get("frame_id"), (f.get("memory") or {})) for f in frames if f.get("memory")]
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
        out.append("".join(svg))
    mem = s.get("memory", {})
    if mem:
        rows = [
            [
                _e(k.removesuffix("_bytes").replace("_", " ")),  # the value is shown in MiB
                _mib(v) if k.endswith("bytes") else _e(_policy(v)) if k == "heap" else _num(v),
            ]
            for k, v in mem.items()
        ]
        out.append(_table(["whole run", "value"], rows))
    return "".join(out) or "<p>No memory was recorded.</p>"


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
            (img_dir / name).write_bytes(png_bytes(p["pixels"], p["bit_depth"]))
            part = "" if p["complete"] else " (partly received)"
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
        return "<p>No anomalous patch was flagged (or no anomaly model was loaded).</p>"
    return "<p class='note'>No patch packet was downlinked yet; the flagged patches are:</p>" + _table(
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


def _any_summary(out: Path) -> dict[str, Any]:
    """:func:`load_summary`, or whatever ``summary.json`` holds when that refuses the folder (a report is
    still written)."""
    from .mission import MissionError

    try:
        return load_summary(out)[0]
    except MissionError:
        doc = _read_json(out / "summary.json")
        return doc if isinstance(doc, dict) else {}


def write_report(out_dir: str | Path, summary: dict[str, Any] | None = None) -> Path:
    """Write ``out_dir/report.html`` (and ``out_dir/report_img/``) from a run's outputs; return its path."""
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
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


__all__ = ["decode_patches", "load_summary", "png_bytes", "read_telemetry", "write_report"]

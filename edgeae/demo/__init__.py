"""The end-to-end demo: a real frame sampled at 10%, rebuilt by the zoo CAE and classical baselines.

The demo is a list of stages (:data:`SECTIONS`); each takes the shared :class:`DemoContext`, does its work
and returns a report :class:`~edgeae.report.Section` (or None). Stages, in order: the input frame and its
mask; the reconstructions (each next to its error map); a standard codec given the same bytes as the sparse
payload (JPEG 2000); the metrics table; the downlink over every link preset; the anomaly map of the frame
with the zoo scorer; and a conclusion computed from those numbers. Each stage reports one line through
``ctx.say`` and shows a progress bar when ``ctx.progress`` is set (the command line does both).

This module holds the order of the stages, the conclusion and :func:`run_demo`; the config and the shared
context are in :mod:`edgeae.demo.context`, the stages in :mod:`edgeae.demo.rebuild` (input, reconstructions,
metrics), :mod:`edgeae.demo.downlink` (same-bytes codec, downlink) and :mod:`edgeae.demo.anomaly`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeae.demo.anomaly import ANOMALY_MIN_VALID as ANOMALY_MIN_VALID
from edgeae.demo.anomaly import ANOMALY_PATCH as ANOMALY_PATCH
from edgeae.demo.anomaly import ANOMALY_STRIDE as ANOMALY_STRIDE
from edgeae.demo.anomaly import SCORERS as SCORERS
from edgeae.demo.anomaly import TOP_PATCHES as TOP_PATCHES
from edgeae.demo.anomaly import stage_anomaly as stage_anomaly
from edgeae.demo.anomaly import stage_top_patches as stage_top_patches
from edgeae.demo.context import ADAPTED as ADAPTED
from edgeae.demo.context import CROSS as CROSS
from edgeae.demo.context import LEARNED as LEARNED
from edgeae.demo.context import SOURCES as SOURCES
from edgeae.demo.context import DemoConfig as DemoConfig
from edgeae.demo.context import DemoContext as DemoContext
from edgeae.demo.context import _label
from edgeae.demo.context import load_frame as load_frame
from edgeae.demo.downlink import LINK_ORDER as LINK_ORDER
from edgeae.demo.downlink import jpeg2000_at as jpeg2000_at
from edgeae.demo.downlink import sparse_payload as sparse_payload
from edgeae.demo.downlink import stage_codec as stage_codec
from edgeae.demo.downlink import stage_downlink as stage_downlink
from edgeae.demo.rebuild import metrics_rows as metrics_rows
from edgeae.demo.rebuild import stage_frame as stage_frame
from edgeae.demo.rebuild import stage_metrics as stage_metrics
from edgeae.demo.rebuild import stage_reconstruct as stage_reconstruct
from edgeae.masks import PATTERNS as PATTERNS
from edgeae.metadata import run_provenance
from edgeae.report import Section, write_report

log = logging.getLogger(__name__)


def keep_percent(keep: float) -> str:
    """The kept fraction as the title and conclusion say it: 10%, 0.4%, 10.5% (not rounded to 0% or 10%; the
    extremes as <0.01% and >99.99%, never 100% of a frame that lost pixels)."""
    pct = keep * 100
    if 0 < pct < 0.01:
        return "<0.01%"
    if 99.99 < pct < 100:
        return ">99.99%"
    return f"{pct:.4f}".rstrip("0").rstrip(".") + "%"


def conclusion_lines(ctx: DemoContext) -> list[str]:
    """The verdict, computed from the measured numbers (nothing here is written in advance)."""
    lines = []
    recon = [r for r in ctx.results if r.method != "jpeg2000" and math.isfinite(r.metrics["psnr"])]
    if recon:
        ranked = sorted(recon, key=lambda r: -r.metrics["psnr"])
        best, second = ranked[0], (ranked[1] if len(ranked) > 1 else None)
        margin = (
            f", {best.metrics['psnr'] - second.metrics['psnr']:.2f} dB ahead of {_label(ctx, second.method)}"
            if second
            else ""
        )
        lines.append(
            f"From {keep_percent(ctx.config.keep)} of the pixels, the best rebuild is {_label(ctx, best.method)} at "
            f"{best.metrics['psnr']:.2f} dB PSNR{margin}."
        )
        cae = next((r for r in recon if r.method == "cae"), None)
        classical = [r for r in recon if r.method not in LEARNED]
        if cae and classical:
            top = max(classical, key=lambda r: r.metrics["psnr"])
            d = cae.metrics["psnr"] - top.metrics["psnr"]
            where, ahead = [], []  # the other measures compared: where the CAE is behind, where it is ahead
            for key, sign, label in (
                ("ssim", 1.0, "SSIM"),
                ("mae", -1.0, "MAE"),
                ("mae_destroyed", -1.0, "MAE on the pixels not sent"),
            ):
                vals = [r for r in classical if key in r.metrics and math.isfinite(r.metrics[key])]
                if not vals or not math.isfinite(cae.metrics.get(key, math.nan)):
                    continue
                b = max(vals, key=lambda r: sign * r.metrics[key])
                if sign * b.metrics[key] > sign * cae.metrics[key]:
                    where.append(f"{label} ({_label(ctx, b.method)} {b.metrics[key]:.4f} vs {cae.metrics[key]:.4f})")
                elif sign * b.metrics[key] < sign * cae.metrics[key]:
                    ahead.append(
                        f"{label} ({cae.metrics[key]:.4f} vs {b.metrics[key]:.4f} for {_label(ctx, b.method)})"
                    )
            # time: against the method it is measured against above, not the fastest
            timing = f"time ({cae.seconds:.2f} s vs {top.seconds:.2f} s for {_label(ctx, top.method)})"
            if cae.seconds > top.seconds:
                where.append(timing)
            elif cae.seconds < top.seconds:
                ahead.append(timing)
            verb = "beats" if d > 0 else "loses to"
            parts = [f"it loses on {', '.join(where)}"] if where else []
            if ahead:
                parts.append(f"it {'is ahead' if where or d <= 0 else 'also wins'} on {', '.join(ahead)}")
            lines.append(
                f"The CAE {verb} the best classical method ({_label(ctx, top.method)}, {top.metrics['psnr']:.2f} dB) "
                f"by {abs(d):.2f} dB PSNR" + (f"; {'; '.join(parts)}." if parts else ".")
            )
        adapted = next((r for r in recon if r.method == ADAPTED), None)
        if adapted and cae and classical:
            top = max(classical, key=lambda r: r.metrics["psnr"])
            gain = adapted.metrics["psnr"] - cae.metrics["psnr"]
            d = adapted.metrics["psnr"] - top.metrics["psnr"]
            chosen = ctx.extra.get("adapt_report", {}).get("chosen_step", ctx.config.adapt)
            how = (
                f"{ctx.config.adapt} steps, the state after step {chosen} chosen on held-out samples"
                if chosen
                else f"{ctx.config.adapt} steps did not help the held-out samples, so the model as shipped is used"
            )
            lines.append(
                f"Adapted to this frame's own samples first ({how}; {adapted.seconds:.0f} s in "
                f"all), the CAE reaches {adapted.metrics['psnr']:.2f} dB: {gain:+.2f} dB over the CAE as shipped, "
                f"{d:+.2f} dB over the best classical method."
            )
        crossed = next((r for r in recon if r.method == CROSS), None)
        report = ctx.extra.get("cross_check_report") or {}
        if crossed and cae and classical and report:
            top = max(classical, key=lambda r: r.metrics["psnr"])
            gain = crossed.metrics["psnr"] - cae.metrics["psnr"]
            d = crossed.metrics["psnr"] - top.metrics["psnr"]
            lines.append(
                f"Mixed with {ctx.config.cross_check} region by region, each region weighted by how well the two "
                f"predict received samples set aside ({crossed.seconds:.0f} s; mean CAE weight "
                f"{report['alpha_mean']:.2f}, at least half on {report['cae_share']:.0%} of the frame), the CAE "
                f"reaches {crossed.metrics['psnr']:.2f} dB: "
                f"{gain:+.2f} dB over the CAE alone, {d:+.2f} dB over the best classical method."
            )
    codec = ctx.extra.get("codec")
    # JPEG 2000 is set against the best sparse rebuild on the page, whichever method made it
    sparse = max(recon, key=lambda r: r.metrics["psnr"]) if recon else None
    sparse_text = (
        "sparse pixels + CAE"
        if sparse is None or sparse.method == "cae"
        else f"sparse pixels + {_label(ctx, sparse.method)}"
    )
    if codec and sparse:
        d = codec["metrics"]["psnr"] - sparse.metrics["psnr"]
        lines.append(
            f"At the same {codec['budget']:,} bytes on a clean link, JPEG 2000 of the whole frame reaches "
            f"{codec['metrics']['psnr']:.2f} dB: {abs(d):.2f} dB {'better' if d > 0 else 'worse'} than "
            f"{sparse_text} ({sparse.metrics['psnr']:.2f} dB)."
        )
    dl = ctx.extra.get("downlink") or {}
    lost = [k for k, v in dl.items() if v.get("lost", not v["pixels_received"])]
    valid = {k: v for k, v in dl.items() if v["psnr"] is not None and k not in lost}
    gone = f"the frame was lost entirely on {', '.join(lost)}" if lost else ""
    cost = 0.0
    if valid:
        ref_name = "perfect" if "perfect" in valid else max(valid, key=lambda k: valid[k]["psnr"])
        ref = valid[ref_name]
        ref_text = "the perfect link" if ref_name == "perfect" else f"the best link given ({ref_name})"
        worst_name, worst = min(valid.items(), key=lambda kv: kv[1]["psnr"])
        cost = max(0.0, ref["psnr"] - worst["psnr"])
        tail = f"; {gone}." if lost else "."
        if len(valid) == 1:
            lines.append(
                f"Over the one link {'that delivered the frame' if lost else 'given'} ({ref_name}), "
                f"{ref['pixels_received']:.1%} of the "
                f"sampled pixels arrive and the ground rebuild is {ref['psnr']:.2f} dB{tail}"
            )
        elif worst["psnr"] >= ref["psnr"]:
            over = f"the {len(valid)} links that delivered the frame" if lost else f"the {len(valid)} links"
            lines.append(f"Over {over}, no packet loss changed the ground rebuild{tail}")
        else:
            lines.append(
                f"Over the links, the worst case is {worst_name}: {worst['pixels_received']:.1%} of the sampled "
                f"pixels arrive and the ground rebuild is {cost:.2f} dB below {ref_text} "
                f"({worst['psnr']:.2f} vs {ref['psnr']:.2f} dB)"
                + (f"; {gone}." if lost else "; the frame arrived on every link.")
            )
    elif lost:
        lines.append(f"{gone[0].upper()}{gone[1:]}: no link delivered it, so there is no ground rebuild to score.")
    an = ctx.extra.get("anomaly")
    if an and an["top"]:
        t = an["top"][0]
        lines.append(
            f"The anomaly scorer {an['model']} puts its highest score at ({t['x']}, {t['y']}), "
            f"{t['score'] / max(an['median'], 1e-12):.1f}× the median patch"
            + (f"; {an['flagged']} patches exceed its alarm threshold." if an["flagged"] is not None else ".")
        )
    if codec and sparse and dl:
        d = codec["metrics"]["psnr"] - sparse.metrics["psnr"]
        links = []
        if len(valid) > 1:
            links.append(
                f"the worst link that delivered the frame cost the sparse rebuild {cost:.2f} dB"
                if cost >= 0.005
                else "no link that delivered the frame cost the sparse rebuild a measurable amount"
            )
        if lost:
            links.append(f"{gone} (no rebuild at all)")
        codec_loss = "a codec stream that loses a packet cannot be decoded past it"
        if d > 0:
            lines.append(
                f"Should you fly it? On a clean link, no: JPEG 2000 at the same bytes is {d:.2f} dB better than "
                f"{sparse_text}. Sparse pixels only pay where packets are lost without retransmission"
                + (f": here {' and '.join(links)}, while {codec_loss}" if links else f", where {codec_loss}")
                + " (benchmarks/RESULTS.md measures JPEG 2000 over the same links)."
            )
        else:
            lines.append(
                f"Should you fly it? On these numbers, yes: {sparse_text} beat JPEG 2000 at equal bytes by "
                f"{-d:.2f} dB" + (f"; {' and '.join(links)}." if links else ".")
            )
    return lines


def stage_conclusion(ctx: DemoContext) -> Section | None:
    """Which method won and by how much, and where the CAE loses: computed from the numbers above."""
    lines = conclusion_lines(ctx)
    if not lines:
        return None
    for line in lines:
        ctx.say(f"conclusion: {line}")
    ctx.extra["conclusion"] = lines
    items = "".join(f"<li>{_escape(x)}</li>" for x in lines)
    return Section("Conclusion", html_before=f"<div class='conclusion'><ul>{items}</ul></div>")


def _escape(text: str) -> str:
    import html

    return html.escape(text)


Stage = Callable[[DemoContext], "Section | None"]
# The demo, in order: sample, rebuild, same-bytes codec, compare, downlink, anomaly scores, conclusion.
SECTIONS: list[Stage] = [
    stage_frame,
    stage_reconstruct,
    stage_codec,
    stage_metrics,
    stage_downlink,
    stage_anomaly,
    stage_top_patches,
    stage_conclusion,
]


@dataclass
class DemoResult:
    html: Path
    context: DemoContext
    seconds: float


def _json_default(value: Any) -> Any:
    """numpy scalars and arrays in the demo's records as plain JSON."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist() if value.size <= 4096 else f"<array {value.shape}>"
    return str(value)


# how the report's intro names each stage's section ("" = not named: it belongs to the stage before)
_INTRO = {
    "stage_frame": "input",
    "stage_reconstruct": "reconstructions with their error maps",
    "stage_codec": "JPEG 2000 at the same bytes",
    "stage_metrics": "metrics",
    "stage_downlink": "downlink over {links}",
    "stage_anomaly": "anomaly scores",
    "stage_top_patches": "",
    "stage_conclusion": "conclusion",
}


def _links_phrase(ctx: DemoContext) -> str:
    n = len(ctx.extra.get("downlink") or ())
    return "every link preset" if ctx.config.links is None else f"{n} link{'s' if n != 1 else ''}"


def run_demo(
    config: DemoConfig,
    stages: list[Stage] | None = None,
    say: Callable[[str], None] | None = None,
    progress: bool = False,
) -> DemoResult:
    """Run every stage, write ``config.out/index.html`` (+ ``img/``, ``metrics.json``), return its path.

    ``say`` receives one line per finished step (default: the log); ``progress`` shows a bar per long step. Into
    a folder holding an earlier demo report: its images that this run does not show are removed once the new page
    is written (only the demo's own image names), and a line says what was replaced.
    """
    t0 = time.perf_counter()
    emit = say or log.info
    earlier = [n for n in ("index.html", "metrics.json") if (config.out / n).is_file()]
    earlier_images = _demo_images(config.out)
    if progress and say is not None:
        from edgeae._optional import require

        tqdm = require("tqdm").tqdm

        def emit(line: str) -> None:  # a result line above the live progress bar, not glued to it
            with tqdm.external_write_mode(file=sys.stdout):
                say(line)

    ctx = DemoContext(config, say=emit, progress=progress)
    sections, shown = [], []
    for stage in SECTIONS if stages is None else stages:
        t = time.perf_counter()
        s = stage(ctx)
        ctx.timings[f"{stage.__name__}_s"] = time.perf_counter() - t
        if s is not None:
            sections.append(s)
            phrase = _INTRO.get(stage.__name__, s.title.lower())
            if phrase and not s.title.endswith("not run"):
                shown.append(phrase.replace("{links}", _links_phrase(ctx)))
    ctx.timings["total_s"] = time.perf_counter() - t0
    if "metrics_record" in ctx.extra:  # every number the page shows, in one file beside it
        record = dict(ctx.extra["metrics_record"])
        for key in ("downlink", "anomaly", "cross_check_report", "adapt_report", "conclusion"):
            if key in ctx.extra:
                record[key] = ctx.extra[key]
        record["timings_s"] = {k: round(v, 3) for k, v in ctx.timings.items()}
        predictor = ctx.extra.get("predictor")
        record["provenance"] = {  # what else made these numbers (the timings: this machine, these threads)
            **run_provenance(getattr(predictor, "source", None), config.threads),
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
        }
        (config.out / "metrics.json").write_text(json.dumps(record, indent=2, default=_json_default) + "\n")
    html = write_report(
        config.out,
        "edgeae demo: a real frame rebuilt from 10% of its pixels"
        if config.keep == 0.1
        else f"edgeae demo: a real frame rebuilt from {keep_percent(config.keep)} of its pixels",
        sections,
        intro=f"Generated by the command edgeae demo in {ctx.timings['total_s']:.1f} s on {os.cpu_count()} CPU "
        f"cores. Sections: {', '.join(shown)}.",
    )
    replaced = _replace_earlier(config.out, html, earlier, earlier_images)
    if replaced:
        emit(replaced)
    return DemoResult(html, ctx, time.perf_counter() - t0)


# the image files the demo's report writes under img/ (edgeae.report.write_report names a figure NN-SLUG.png, NN its
# section; -x when a name repeats): a rerun removes only these, never another file a user put there
_DEMO_IMAGE = re.compile(
    r"(\d{2}-(original|masked|(recon|error|rx|ground)-[a-z0-9-]+|anomaly-(frame|map|top\d+))(-x)*"
    r"|colourbar-(error|score))\.png"
)


def _demo_images(out: Path) -> set[str]:
    """Names of the demo's own image files in ``out/img`` (:data:`_DEMO_IMAGE`)."""
    folder = out / "img"
    if not folder.is_dir():
        return set()
    return {f.name for f in folder.iterdir() if _DEMO_IMAGE.fullmatch(f.name) and f.is_file()}


def _replace_earlier(out: Path, html: Path, earlier: list[str], images: set[str]) -> str:
    """After the new report is written: remove the earlier run's images that the new index.html does not show (a
    rerun with --no-anomaly leaves no anomaly map behind) and say what the run replaced ("" when nothing)."""
    shown = set(re.findall(r"img/([^'\"/]+)", html.read_text(encoding="utf-8")))
    stale = sorted(images - shown)
    kept = []
    for name in stale:
        try:
            (out / "img" / name).unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            kept.append(f"{name} ({exc.strerror or exc})")
    overwritten = len(images & shown)
    if not earlier and not images:
        return ""
    what = [*earlier, *([f"{overwritten} image(s) in img/"] if overwritten else [])]
    text = f"replaced the earlier demo report in {out}: {', '.join(what) or 'its images'}"
    gone = [n for n in stale if not any(k.startswith(n + " ") for k in kept)]
    if gone:
        more = ", ..." if len(gone) > 4 else ""
        text += f"; removed {len(gone)} earlier image(s) this run does not show ({', '.join(gone[:4])}{more})"
    if kept:
        text += f"; could not remove {len(kept)} earlier image(s) it does not show: {', '.join(kept)}"
    return text


__all__ = ["PATTERNS", "SECTIONS", "DemoConfig", "DemoContext", "DemoResult", "run_demo"]

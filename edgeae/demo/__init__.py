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
from edgeae.demo.conclusion import conclusion_lines as conclusion_lines
from edgeae.demo.conclusion import keep_percent as keep_percent
from edgeae.demo.conclusion import stage_conclusion as stage_conclusion
from edgeae.demo.conclusion import verdict_html as verdict_html
from edgeae.demo.context import ADAPTED as ADAPTED
from edgeae.demo.context import CROSS as CROSS
from edgeae.demo.context import LEARNED as LEARNED
from edgeae.demo.context import SOURCES as SOURCES
from edgeae.demo.context import DemoConfig as DemoConfig
from edgeae.demo.context import DemoContext as DemoContext
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
from edgeae.report import Section, printable, render_report
from edgeae.report_files import missing_folders, remove_empty, replace_together, staging, sweep_leftovers

log = logging.getLogger(__name__)


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

    ``say`` receives one line per finished step (default: the log); ``progress`` shows a bar per long step. The run
    holds ``config.out`` (:func:`edgeae.folder_lock.hold`): a second run into the same folder, from this process or
    another, is refused at once with :class:`~edgeae.folder_lock.FolderBusy`. Into a folder holding an earlier demo
    report: its images that this run does not show are removed once the new page is written (only the demo's own
    image names), and a line says what was replaced. index.html, metrics.json and the images are replaced all or
    nothing at the end (:mod:`edgeae.report_files`: every new file written and fsynced first, then the renames with
    Ctrl-C held off until they, the folder fsyncs and that clean-up are done; a rename that fails puts the earlier
    files back): a run that fails leaves the earlier report as it was, its images included (a Ctrl-C: the earlier
    report, or, once the renames have begun, the new one whole). A failed run removes the folders it made that are
    still empty; staging folders and temporary files that runs killed outright left in ``config.out`` are removed.
    A name's bytes that are not UTF-8 (the frame's, the model's, the folder's) show as ``\\xff`` on the page and the
    console; metrics.json records the name exactly, as JSON's ``\\udcff`` escape
    (``os.fsencode(json.load(f)["image"])`` is the file name's bytes).
    """
    from edgeae.folder_lock import hold

    made = missing_folders(config.out)
    try:
        config.out.mkdir(parents=True, exist_ok=True)
        with hold(config.out, "demo run"):
            return _run_and_write(config, stages, say, progress)
    except BaseException:
        remove_empty(made)
        raise


def _run_and_write(
    config: DemoConfig, stages: list[Stage] | None, say: Callable[[str], None] | None, progress: bool
) -> DemoResult:
    """:func:`run_demo` once its folder is there and held."""
    t0 = time.perf_counter()
    emit = say or log.info
    sweep_leftovers(config.out, this_process=True)  # what runs killed outright left (the folder is held: ours too)
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
    metrics = None
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
        metrics = json.dumps(record, indent=2, default=_json_default) + "\n"
    with staging(config.out) as staged:  # the new images wait here until the page is whole (review s36 r3 #1)
        page = render_report(
            config.out,
            "edgeae demo: a real frame rebuilt from 10% of its pixels"
            if config.keep == 0.1
            else f"edgeae demo: a real frame rebuilt from {keep_percent(config.keep)} of its pixels",
            sections,
            intro=f"Generated by the command edgeae demo in {ctx.timings['total_s']:.1f} s on {os.cpu_count()} CPU "
            f"cores. Sections: {', '.join(shown)}.",
            img_dir=staged,
            lead=verdict_html(ctx.extra.get("conclusion") or []),
        )
        texts = {"index.html": page} if metrics is None else {"index.html": page, "metrics.json": metrics}
        html = config.out / "index.html"

        def prune() -> None:  # with Ctrl-C still held: an interrupted run leaves no image its page does not show
            replaced = _replace_earlier(config.out, html, earlier, earlier_images)
            if replaced:
                emit(replaced)

        # the images, then the page, then metrics.json (review s36 r8 #1), then prune (review s36 r14 #1)
        replace_together(config.out, staged, texts, then=prune)
    return DemoResult(html, ctx, time.perf_counter() - t0)


# the image files the demo's report writes under img/ (edgeae.report.render_report names a figure NN-SLUG.png, NN its
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
    text = f"replaced the earlier demo report in {printable(str(out))}: {', '.join(what) or 'its images'}"
    gone = [n for n in stale if not any(k.startswith(n + " ") for k in kept)]
    if gone:
        more = ", ..." if len(gone) > 4 else ""
        text += f"; removed {len(gone)} earlier image(s) this run does not show ({', '.join(gone[:4])}{more})"
    if kept:
        text += f"; could not remove {len(kept)} earlier image(s) it does not show: {', '.join(kept)}"
    return text


__all__ = ["PATTERNS", "SECTIONS", "DemoConfig", "DemoContext", "DemoResult", "run_demo"]

"""The demo's first stages: the frame and its mask, its reconstructions (each next to its error map), the metrics.

:func:`stage_frame` loads and samples the frame, :func:`stage_reconstruct` rebuilds it with every method (and
the adapted and cross-checked CAE), :func:`stage_metrics` tabulates the numbers and records them for ``metrics.json``.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import numpy as np

from edgeae.demo.context import ADAPTED, CROSS, DemoContext, _label, load_frame
from edgeae.masks import PRNG_VERSION, MaskSpec, apply_mask
from edgeae.reconstruct import DEFAULT_MODELS, Reconstruction, run_method
from edgeae.report import ERROR_MAP_MAX, Figure, Section, colour_bar, error_map


def stage_frame(ctx: DemoContext) -> Section:
    """Load the frame and sample it with the seeded mask."""
    cfg = ctx.config
    t0 = time.perf_counter()
    ctx.original, ctx.name, ctx.description, ctx.extra["valid"] = load_frame(cfg)
    ctx.known = MaskSpec(cfg.seed, cfg.keep, cfg.pattern).make(ctx.original.shape[:2])
    ctx.timings["load_and_sample_s"] = time.perf_counter() - t0
    h, w, c = ctx.original.shape
    kept = int(ctx.known.sum())
    ctx.say(
        f"frame: {ctx.name}, {w}×{h} {'RGB' if c == 3 else 'grey'}; keeping {kept:,} of {h * w:,} pixels "
        f"({kept / (h * w):.1%}, {cfg.pattern}, seed {cfg.seed})"
    )
    return Section(
        "Input",
        paragraphs=[
            ctx.description,
            f"{w}×{h} pixels, {c} channel(s). Mask: pattern {cfg.pattern}, seed {cfg.seed}, keep {cfg.keep} "
            f"(PRNG version {PRNG_VERSION}): {kept} of {h * w} pixels kept ({kept / (h * w):.2%}); the "
            "ground regenerates the same mask from the seed alone.",
        ],
        figures=[
            Figure("original", ctx.original, "original"),
            Figure(
                f"masked input ({kept / (h * w):.1%} of pixels; black = not sent)",
                apply_mask(ctx.original, ctx.known),
                "masked",
            ),
        ],
        columns=2,
    )


def _error_bar(name: str) -> tuple[str, np.ndarray]:
    return colour_bar(
        name,
        0.0,
        ERROR_MAP_MAX,
        f"Error maps: mean absolute error over the channels, as a fraction of full scale; magma colour map from "
        f"black (0) through purple and orange to pale yellow ({ERROR_MAP_MAX} and above).",
    )


def stage_reconstruct(ctx: DemoContext) -> Section:
    """Rebuild the frame with each method; each reconstruction next to its error map."""
    cfg = ctx.config
    predictor = None
    steps: list[str] = (["load model"] if "cae" in cfg.methods else []) + list(cfg.methods)
    if cfg.adapt and "cae" in cfg.methods:
        steps.insert(steps.index("cae") + 1, ADAPTED)
    if cfg.cross_check and "cae" in cfg.methods:
        steps.insert(steps.index(ADAPTED if ADAPTED in steps else "cae") + 1, CROSS)
    figures = []
    for step in ctx.bar(steps, "reconstruct", total=len(steps), unit="method"):
        if step == "load model":
            from edgeae.predictor import load_predictor

            ctx.model = cfg.model or DEFAULT_MODELS[ctx.original.shape[2]]
            predictor = load_predictor(ctx.model, threads=cfg.threads)
            ctx.extra["predictor"] = predictor
            continue
        if step == ADAPTED:
            from edgeae.adapt import AdaptConfig, adapt_predictor

            t0 = time.perf_counter()
            cfg_a = AdaptConfig(steps=cfg.adapt, seed=cfg.seed)
            report: dict[str, Any] = {}
            ctx.extra["adapt_report"] = report
            adapted = adapt_predictor(predictor, ctx.original, ctx.known, cfg_a, progress=ctx.progress, report=report)
            spent = time.perf_counter() - t0
            res = run_method(ctx.original, ctx.known, "cae", adapted)
            res = dataclasses.replace(res, method=ADAPTED, seconds=res.seconds + spent)
        elif step == CROSS:
            from edgeae.crosscheck import CrossCheckConfig, cross_checked_fill
            from edgeae.metrics import compare

            t0 = time.perf_counter()
            xreport: dict[str, Any] = {}
            ctx.extra["cross_check_report"] = xreport
            xcfg = CrossCheckConfig(method=cfg.cross_check or "linear", seed=cfg.seed)
            filled = cross_checked_fill(ctx.original, ctx.known, predictor, xcfg, report=xreport, progress=False)
            res = Reconstruction(CROSS, filled, time.perf_counter() - t0, compare(ctx.original, filled, ctx.known))
        else:
            res = run_method(ctx.original, ctx.known, step, predictor if step == "cae" else None)
        ctx.results.append(res)
        m = res.metrics
        ctx.say(
            f"  {_label(ctx, step):28s} PSNR {m['psnr']:6.2f} dB  SSIM {m['ssim']:.3f}  MAE {m['mae']:.4f}  "
            f"{res.seconds:5.1f} s"
        )
        label = _label(ctx, step)
        figures.append(Figure(f"{label}: PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.3f}", res.image, f"recon-{step}"))
        figures.append(
            Figure(f"{label}: error map (MAE {m['mae']:.4f})", error_map(ctx.original, res.image), f"error-{step}")
        )
    bar_html, bar = _error_bar("colourbar-error")
    return Section(
        "Reconstructions",
        paragraphs=[
            "Each method rebuilds the pixels that were not sent from the ones that were; sent pixels are "
            "returned unchanged. Each row: the reconstruction on the left, its error map on the right."
        ],
        html_before=bar_html,
        images={"colourbar-error": bar},
        figures=figures,
        columns=2,
    )


def metrics_rows(ctx: DemoContext) -> list[dict[str, Any]]:
    codec = ctx.extra.get("codec")
    rows = []
    for r in ctx.results:
        method = _label(ctx, r.method)
        if r.method == "jpeg2000" and codec:
            method = f"jpeg2000 (whole frame in {codec['bytes']:,} bytes)"
        rows.append(
            {
                "method": method,
                "PSNR (dB)": r.metrics["psnr"],
                "SSIM": r.metrics["ssim"],
                "MAE": r.metrics["mae"],
                "error variance": r.metrics["error_variance"],
                "MAE (pixels not sent)": r.metrics.get("mae_destroyed", float("nan")),
                "time (s)": r.seconds,
            }
        )
    return rows


def stage_metrics(ctx: DemoContext) -> Section:
    """The metrics table (whole image; MAE also over the pixels not sent) and the record of metrics.json."""
    out = ctx.config.out
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "image": ctx.name,
        "shape": list(ctx.original.shape),
        "keep": ctx.config.keep,
        "seed": ctx.config.seed,
        "pattern": ctx.config.pattern,
        "prng_version": PRNG_VERSION,
        "model": ctx.model,
        "results": {
            r.method: {
                **{k: (v if np.isfinite(v) else None) for k, v in r.metrics.items()},
                "seconds": r.seconds,
            }
            for r in ctx.results
        },
    }
    if "codec" in ctx.extra:
        record["same_bytes_codec"] = {k: v for k, v in ctx.extra["codec"].items() if k != "metrics"}
    ctx.extra["metrics_record"] = record  # written to metrics.json by run_demo with the report, at the end: a
    # run that fails half-way leaves the earlier metrics.json beside the earlier index.html, not a new one
    return Section(
        "Metrics",
        paragraphs=[
            f"Against the original frame, data range 1. Times are wall-clock on this machine ({os.cpu_count()} "
            "CPU cores visible). Also in metrics.json."
        ],
        tables=[metrics_rows(ctx)],
    )

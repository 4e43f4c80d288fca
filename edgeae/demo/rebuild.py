"""The demo's first stages: the frame and its mask, its reconstructions (each next to its error map), the metrics.

:func:`stage_frame` loads and samples the frame, :func:`stage_reconstruct` rebuilds it with every method (and
the adapted and cross-checked CAE), :func:`stage_metrics` tabulates the numbers and records them for ``metrics.json``.
A frame with no-data (a product's, NaN/inf samples, transparent pixels) is rebuilt and scored by the rule of ``edgeae
reconstruct``: its no-data samples are not received (:mod:`edgeae.received`) and every metric covers the pixels with
data (:func:`psnr_valid`, :mod:`edgeae.ground.validity`), so both commands give one rebuild the same figures.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import numpy as np

from edgeae.demo.context import ADAPTED, CROSS, DemoContext, _label, frame_with_data
from edgeae.masks import PRNG_VERSION, MaskSpec, apply_mask
from edgeae.printable import printable
from edgeae.reconstruct import DEFAULT_MODELS, Reconstruction
from edgeae.report import ERROR_MAP_MAX, Figure, Section, colour_bar, error_map

NOT_MEASURED = "no pixel with data: metrics not computed"  # in the words of edgeae reconstruct


def measured(ctx: DemoContext) -> bool:
    """Whether the metrics have a pixel to cover. Not on a frame none of whose pixels holds data by the no-data margin
    rule though the file declares some (all black or all saturated, a lens cap: every pixel a guessed margin), which
    is rebuilt from its samples and shown, as ``edgeae reconstruct`` rebuilds it, but not measured."""
    valid: np.ndarray | None = ctx.extra.get("valid")
    return valid is None or bool(valid.any())


def psnr_valid(ctx: DemoContext) -> np.ndarray | None:
    """The pixels every metric of the demo covers: the frame's ``valid`` pixels (:mod:`edgeae.ground.validity`,
    the PSNR rule of ``edgeae reconstruct``), None when that is every pixel (the metrics of the whole frame)."""
    valid: np.ndarray | None = ctx.extra.get("valid")
    return None if valid is None or valid.all() else valid


def psnr_scope(ctx: DemoContext) -> str:
    """The metrics' scope as ``edgeae reconstruct`` says it (``" over the 69.9% of the pixels with data"``); an
    empty string for the whole frame."""
    valid = psnr_valid(ctx)
    return "" if valid is None else f" over the {np.count_nonzero(valid) / valid.size:.1%} of the pixels with data"


def measure(ctx: DemoContext, image: np.ndarray) -> dict[str, float]:
    """:func:`edgeae.metrics.compare` of the rebuild ``image`` with the frame, over :func:`psnr_valid` (``*_destroyed``:
    over the pixels not received, ``ctx.known``)."""
    from edgeae.metrics import compare

    return compare(ctx.original, image, ctx.known, valid=psnr_valid(ctx))


def _fill(ctx: DemoContext, method: str, predictor: Any, seconds: float = 0.0) -> Reconstruction:
    """The frame rebuilt from ``ctx.known`` by ``method``, timed (plus ``seconds`` spent before), measured
    (:func:`measure`): :func:`edgeae.reconstruct.run_method` over the pixels with data."""
    from edgeae.reconstruct import reconstruct  # looked up at each call, as run_method does

    t0 = time.perf_counter()
    out = reconstruct(ctx.original, ctx.known, method, predictor=predictor)
    return Reconstruction(method, out, time.perf_counter() - t0 + seconds, measure(ctx, out))


def _shown(ctx: DemoContext, res: Reconstruction) -> Reconstruction:
    """``res`` with the frame's declared no-data at 0, as ``edgeae reconstruct`` writes it (not measured)."""
    has_data = ctx.extra.get("has_data")
    if has_data is None or has_data.all():
        return res
    return dataclasses.replace(res, image=np.where(has_data[..., None], res.image, np.float32(0.0)))


def _no_data_text(ctx: DemoContext) -> str:
    """What the frame line adds for a frame with no-data: the samples not used and the pixels measured (none: why)."""
    valid = psnr_valid(ctx)
    unused = int(ctx.extra.get("sampled_no_data", 0))
    parts = [f"{unused:,} sampled pixels hold no data: not used"] if unused else []
    if not measured(ctx):
        parts.append(f"{NOT_MEASURED} ({ctx.extra['left_out']})")
    elif valid is not None:
        parts.append(f"metrics{psnr_scope(ctx)}")
    return "".join(f"; {p}" for p in parts)


def _input_text(ctx: DemoContext) -> str:
    """What the Input paragraph adds for a frame with no-data: the sampled pixels not used (when there are some)
    and which pixels the metrics cover (none: the rebuilds are not measured, and why)."""
    from edgeae.ground.validity import coverage

    valid = psnr_valid(ctx)
    unused = int(ctx.extra.get("sampled_no_data", 0))
    parts = [f"{unused:,} of the sampled pixels hold no data and are not used (black in the masked input)"]
    parts = parts if unused else []
    if not measured(ctx):
        parts.append(
            f"no pixel holds data ({ctx.extra['left_out']}): the rebuilds below are shown but not measured "
            f"({NOT_MEASURED}, as edgeae reconstruct says)"
        )
    elif valid is not None:
        parts.append(f"every metric below is over {coverage(valid)}")
    text = "; ".join(parts)
    return f" {text[:1].upper()}{text[1:]}." if text else ""


def stage_frame(ctx: DemoContext) -> Section:
    """Load the frame and sample it with the seeded mask. A sampled pixel that the frame declares missing is not
    received (:func:`edgeae.received.received_pixels`, as in ``edgeae reconstruct``); a frame with no pixel of
    data (:class:`edgeae.received.NoData`), or whose mask received none, is refused (ValueError, one line). A frame
    whose every pixel only the margin rule reads as no-data (a lens cap) is taken, and not measured (:func:`measured`).
    """
    from edgeae.received import left_out, received_pixels

    cfg = ctx.config
    t0 = time.perf_counter()
    ctx.original, ctx.name, ctx.description, valid, has_data = frame_with_data(cfg)
    ctx.extra["valid"], ctx.extra["has_data"] = valid, has_data
    sampled = MaskSpec(cfg.seed, cfg.keep, cfg.pattern).make(ctx.original.shape[:2])
    where = printable(str(cfg.image if cfg.image is not None else ctx.name))
    ctx.known = received_pixels(sampled, has_data, where, cfg.keep, cfg.seed)
    if valid is not None and not valid.all():
        ctx.extra["left_out"] = left_out(valid, valid if has_data is None else has_data)
    kept, received = int(np.count_nonzero(sampled)), int(np.count_nonzero(ctx.known))
    ctx.extra.update(sampled=kept, received=received, sampled_no_data=kept - received)
    ctx.timings["load_and_sample_s"] = time.perf_counter() - t0
    h, w, c = ctx.original.shape
    ctx.say(
        f"frame: {ctx.name}, {w}×{h} {'RGB' if c == 3 else 'grey'}; keeping {kept:,} of {h * w:,} pixels "
        f"({kept / (h * w):.1%}, {cfg.pattern}, seed {cfg.seed}){_no_data_text(ctx)}"
    )
    return Section(
        "Input",
        paragraphs=[
            ctx.description,
            f"{w}×{h} pixels, {c} channel(s). Mask: pattern {cfg.pattern}, seed {cfg.seed}, keep {cfg.keep} "
            f"(PRNG version {PRNG_VERSION}): {kept} of {h * w} pixels kept ({kept / (h * w):.2%}); the "
            f"ground regenerates the same mask from the seed alone.{_input_text(ctx)}",
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
            res = dataclasses.replace(_fill(ctx, "cae", adapted, time.perf_counter() - t0), method=ADAPTED)
        elif step == CROSS:
            from edgeae.crosscheck import CrossCheckConfig, cross_checked_fill

            t0 = time.perf_counter()
            xreport: dict[str, Any] = {}
            ctx.extra["cross_check_report"] = xreport
            xcfg = CrossCheckConfig(method=cfg.cross_check or "linear", seed=cfg.seed)
            filled = cross_checked_fill(ctx.original, ctx.known, predictor, xcfg, report=xreport, progress=False)
            res = Reconstruction(CROSS, filled, time.perf_counter() - t0, measure(ctx, filled))
        else:
            res = _fill(ctx, step, predictor if step == "cae" else None)
        res = _shown(ctx, res)
        ctx.results.append(res)
        m, label = res.metrics, _label(ctx, step)
        scores = (
            f"PSNR {m['psnr']:6.2f} dB  SSIM {m['ssim']:.3f}  MAE {m['mae']:.4f}" if measured(ctx) else NOT_MEASURED
        )
        ctx.say(f"  {label:28s} {scores}  {res.seconds:5.1f} s")
        shown = f"PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.3f}" if measured(ctx) else "not measured"
        figures.append(Figure(f"{label}: {shown}", res.image, f"recon-{step}"))
        mae = f"MAE {m['mae']:.4f}" if measured(ctx) else "not measured"
        figures.append(Figure(f"{label}: error map ({mae})", error_map(ctx.original, res.image), f"error-{step}"))
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


def _psnr_over(ctx: DemoContext) -> str:
    """Which pixels the metrics cover, in the ground reports' words (:func:`edgeae.ground.validity.coverage`)."""
    from edgeae.ground.validity import coverage

    valid = psnr_valid(ctx)
    return f"all {ctx.original.shape[0] * ctx.original.shape[1]:,} pixels" if valid is None else coverage(valid)


def stage_metrics(ctx: DemoContext) -> Section:
    """The metrics table (over the pixels with data, :func:`psnr_valid`; MAE also over the pixels not received)
    and the record of metrics.json."""
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
        "psnr_over": _psnr_over(ctx),
        **{k: int(ctx.extra.get(k, 0)) for k in ("sampled", "received", "sampled_no_data")},
        "results": {
            r.method: {
                **{k: (v if np.isfinite(v) else None) for k, v in r.metrics.items()},
                "seconds": r.seconds,
            }
            for r in ctx.results
        },
    }
    if not measured(ctx):  # as edgeae reconstruct's --metrics-json: every metric null, and why
        record["metrics_note"] = NOT_MEASURED
    if "codec" in ctx.extra:
        record["same_bytes_codec"] = {k: v for k, v in ctx.extra["codec"].items() if k != "metrics"}
    ctx.extra["metrics_record"] = record  # written to metrics.json by run_demo with the report, at the end: a
    # run that fails half-way leaves the earlier metrics.json beside the earlier index.html, not a new one
    return Section(
        "Metrics",
        paragraphs=[
            (
                f"Against the original frame, data range 1{psnr_scope(ctx)}."
                if measured(ctx)
                else f"Not measured: {NOT_MEASURED} ({ctx.extra['left_out']}), as edgeae reconstruct says (–)."
            )
            + f" Times are wall-clock on this machine ({os.cpu_count()} CPU cores visible). Also in metrics.json."
        ],
        tables=[metrics_rows(ctx)],
    )

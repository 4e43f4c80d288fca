"""The end-to-end demo: a real frame sampled at 10%, rebuilt by the zoo CAE and classical baselines.

The demo is a list of stages (:data:`SECTIONS`); each takes the shared :class:`DemoContext`, does its work
and returns a report :class:`~edgeae.report.Section` (or None). Stages, in order: the input frame and its
mask; the reconstructions (each next to its error map); a standard codec given the same bytes as the sparse
payload (JPEG 2000); the metrics table; the downlink over every link preset; the anomaly map of the frame
with the zoo scorer; and a conclusion computed from those numbers. Each stage reports one line through
``ctx.say`` and shows a progress bar when ``ctx.progress`` is set (the command line does both).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from edgeae.masks import PATTERNS, PRNG_VERSION, MaskSpec, apply_mask
from edgeae.reconstruct import DEFAULT_MODELS, METHODS, Reconstruction, run_method
from edgeae.report import ERROR_MAP_MAX, Figure, Section, colour_bar, colourise, error_map, write_report

log = logging.getLogger(__name__)
SOURCES = ("auto", "rover", "moon")
# the link presets in the order the report shows them (any other preset follows, by name)
LINK_ORDER = ("perfect", "loss5", "loss20", "burst", "mars_relay")
# zoo scorer for the anomaly section, by channel count (the flight artifact when an interpreter is installed)
SCORERS = {3: "rover-rgb-gtcae", 1: "orbital-gray-vae"}
ANOMALY_PATCH, ANOMALY_STRIDE, TOP_PATCHES = 64, 32, 8
T = TypeVar("T")


@dataclass(frozen=True)
class DemoConfig:
    """What the demo runs on. ``image`` overrides ``source``; ``model`` overrides the zoo default.

    ``links``: link presets for the downlink section (None: every preset); ``anomaly`` and ``codec`` turn
    those sections off.
    """

    out: Path = Path("edgeae-demo")
    image: Path | None = None
    source: str = "auto"
    keep: float = 0.1
    seed: int = 0
    pattern: str = "uniform"
    model: str | None = None
    methods: tuple[str, ...] = METHODS
    threads: int | None = None
    data_root: Path | None = None
    links: tuple[str, ...] | None = None
    anomaly: bool = True
    codec: bool = True
    adapt: int = 0  # > 0: also the CAE adapted to the frame's own samples for this many steps (edgeae.adapt)
    # also the CAE mixed with this classical fill by the held-out cross-check (edgeae.crosscheck); None = off
    cross_check: str | None = "linear"

    def __post_init__(self) -> None:
        MaskSpec(self.seed, self.keep, self.pattern)  # validates seed, keep and pattern
        if self.adapt:
            from edgeae.adapt import AdaptConfig

            AdaptConfig(steps=self.adapt)  # validates the step count
        if self.cross_check is not None:
            from edgeae.crosscheck import CrossCheckConfig

            CrossCheckConfig(method=self.cross_check)  # validates the method
        if self.source not in SOURCES:
            raise ValueError(f"unknown demo source {self.source!r}; expected one of {SOURCES}")
        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods:
            raise ValueError(f"unknown methods {bad}; expected some of {METHODS}")


@dataclass
class DemoContext:
    """State shared by the stages: the frame, its mask, the results, and free-form ``extra`` for later ones.

    ``say`` receives one line per finished step; ``progress`` turns on a progress bar per long step.
    """

    config: DemoConfig
    name: str = ""
    description: str = ""
    original: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 1), np.float32))
    known: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), bool))
    model: str | None = None
    results: list[Reconstruction] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    say: Callable[[str], None] = log.info
    progress: bool = False

    def bar(self, items: Iterable[T], desc: str, total: int | None = None, unit: str = "step") -> Iterator[T]:
        """``items`` behind one progress bar (stderr, removed when done) when ``progress`` is on."""
        if not self.progress:
            yield from items
            return
        from edgeae._optional import require

        tqdm = require("tqdm").tqdm
        with tqdm(items, desc=desc, total=total, unit=unit, leave=False, dynamic_ncols=True) as it:
            yield from it


def load_frame(config: DemoConfig) -> tuple[np.ndarray, str, str, np.ndarray | None]:
    """(pixels float32 (H, W, C), short name, description, valid-pixel mask or None) of the demo frame."""
    from edgeae.imageio import read_image

    if config.image is not None:
        data = read_image(config.image)
        return data.pixels, config.image.name, f"{config.image} ({data.bit_depth}-bit)", data.valid
    if config.source in ("auto", "rover"):
        from edgeae.data import find_data_root
        from edgeae.datasets import DEMO_FRAME

        root = find_data_root(config.data_root)
        path = root / DEMO_FRAME if root is not None else None
        if path is not None and path.is_file():
            data = read_image(path)
            return (
                data.pixels,
                path.name,
                f"Perseverance Mastcam-Z calibrated colour frame {path.name} from {root}; never trained on "
                "(rover_rgb test split)",
                data.valid,
            )
        if config.source == "rover":
            raise FileNotFoundError(f"demo rover frame {DEMO_FRAME} not found: set $EDGEAE_DATA or use --source moon")
        log.info("shared data not found; using skimage.data.moon()")
    from edgeae._optional import require

    moon = np.asarray(require("skimage.data").moon(), dtype=np.float32) / 255.0
    moon_text = "skimage.data.moon(): 512×512 8-bit lunar surface (bundled with scikit-image)"
    return moon[..., None], "moon", moon_text, None


ANOMALY_MIN_VALID = 0.9  # as edgeae scan and the flight missions: a patch of mostly margin is not scored
ADAPTED = "cae-adapted"  # the demo's name for the CAE adapted to the frame (DemoConfig.adapt)
CROSS = "cae-xcheck"  # the demo's name for the CAE mixed with a classical fill (DemoConfig.cross_check)
LEARNED = ("cae", ADAPTED, CROSS)


def _label(ctx: DemoContext, method: str) -> str:
    if method == ADAPTED:
        return f"cae ({ctx.model}) adapted to the frame, {ctx.config.adapt} steps"
    if method == CROSS:
        return f"cae ({ctx.model}) cross-checked with {ctx.config.cross_check}"
    return f"cae ({ctx.model})" if method == "cae" else method


def _samples(ctx: DemoContext) -> np.ndarray:
    """The frame as 8-bit samples: what the camera would hand the flight software."""
    return np.round(np.clip(ctx.original, 0.0, 1.0) * 255.0).astype(np.uint8)


# ------------------------------------------------------------------------------------------------ stages
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


def sparse_payload(ctx: DemoContext) -> tuple[int, int]:
    """(packets, bytes on the wire) of the frame's sparse sample, packetised as the flight runtime does."""
    if "sparse_payload" not in ctx.extra:
        from edgeae.ground.sources import sparse_from_samples
        from edgeae.wire.codec import DEFAULT_SAMPLE_CODEC, resolve_sample_codec
        from edgeae.wire.packets import SequenceCounters, WireConfig, packetise

        cfg = ctx.config
        frame = sparse_from_samples(_samples(ctx), 8, cfg.keep, cfg.seed, cfg.pattern, 0)
        # coded as the downlink section and the flight runtime send it (CCSDS 121 where libaec is installed):
        # uncoded samples gave JPEG 2000 ~40 % more bytes than the sparse frame really takes
        wire = WireConfig(codec=resolve_sample_codec(DEFAULT_SAMPLE_CODEC))
        pkts = packetise(frame, config=wire, counters=SequenceCounters())
        ctx.extra["sparse_payload"] = (len(pkts), sum(map(len, pkts)))
    out: tuple[int, int] = ctx.extra["sparse_payload"]
    return out


def jpeg2000_at(
    samples: np.ndarray, budget: int, steps: int = 12, bar: Callable[[range], Iterable[int]] = iter
) -> tuple[bytes, np.ndarray, float]:
    """JPEG 2000 (imagecodecs, OpenJPEG) of uint8 ``samples`` (H, W, C) in at most ``budget`` bytes.

    The encoder takes a target PSNR per quality layer; a bisection finds the highest target whose stream
    fits. Returns (stream, decoded float32 (H, W, C) in [0, 1], target dB); an empty stream when even the
    coarsest setting does not fit.
    """
    from edgeae._optional import require

    codecs = require("imagecodecs")
    src = samples[..., 0] if samples.shape[2] == 1 else samples
    lo, hi = 5.0, 80.0
    best: tuple[bytes, float] = (b"", 0.0)
    for _ in bar(range(steps)):
        mid = (lo + hi) / 2
        data = bytes(codecs.jpeg2k_encode(src, level=mid))
        if len(data) <= budget:
            best, lo = (data, mid), mid
        else:
            hi = mid
    if not best[0]:
        return b"", np.full(samples.shape, 0.5, np.float32), 0.0
    dec = np.asarray(codecs.jpeg2k_decode(best[0]))
    dec = dec.reshape(*dec.shape[:2], -1)[..., : samples.shape[2]]
    return best[0], dec.astype(np.float32) / 255.0, best[1]


def stage_codec(ctx: DemoContext) -> Section | None:
    """JPEG 2000 of the whole frame in the bytes that the sparse sample takes on the wire."""
    if not ctx.config.codec:
        return None
    from edgeae.metrics import compare

    packets, wire = sparse_payload(ctx)
    t0 = time.perf_counter()
    data, decoded, target = jpeg2000_at(
        _samples(ctx), wire, bar=lambda r: ctx.bar(r, "JPEG 2000 at the same bytes", total=len(r), unit="try")
    )
    seconds = time.perf_counter() - t0
    if not data:
        ctx.say(f"same bytes: JPEG 2000 cannot fit the frame in {wire:,} bytes")
        return None
    metrics = compare(ctx.original, decoded)
    ctx.extra["codec"] = {
        "name": "jpeg2000",
        "bytes": len(data),
        "budget": wire,
        "metrics": metrics,
        "seconds": seconds,
    }
    cae = next((r for r in ctx.results if r.method == "cae"), None)
    vs = f" (CAE: {cae.metrics['psnr']:.2f} dB)" if cae else ""
    ctx.say(f"same bytes: JPEG 2000 in {len(data):,} of {wire:,} bytes: PSNR {metrics['psnr']:.2f} dB{vs}")
    ctx.results.append(Reconstruction("jpeg2000", decoded, seconds, metrics))
    raw = ctx.original.size
    return Section(
        "Same bytes, standard codec: JPEG 2000",
        paragraphs=[
            f"The sparse sample takes {wire:,} bytes on the wire ({packets} CCSDS packets with headers and "
            f"CRCs; the raw 8-bit frame is {raw:,} bytes). Given the same budget, JPEG 2000 (OpenJPEG through "
            f"imagecodecs, one quality layer, target {target:.1f} dB) codes the whole frame in {len(data):,} "
            "bytes. Its row in the metrics table below is marked jpeg2000. Unlike the sparse sample, a "
            "JPEG 2000 stream that loses a packet cannot be decoded past it: see the downlink section."
        ],
        figures=[
            Figure(f"JPEG 2000, {len(data):,} bytes: PSNR {metrics['psnr']:.2f} dB", decoded, "recon-jpeg2000"),
            Figure(
                f"JPEG 2000: error map (MAE {metrics['mae']:.4f})", error_map(ctx.original, decoded), "error-jpeg2000"
            ),
        ],
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
    """The metrics table (whole image; MAE also over the pixels not sent) and metrics.json."""
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
    ctx.extra["metrics_record"] = record
    (out / "metrics.json").write_text(json.dumps(record, indent=2) + "\n")
    return Section(
        "Metrics",
        paragraphs=[
            f"Against the original frame, data range 1. Times are wall-clock on this machine ({os.cpu_count()} "
            "CPU cores visible). Also in metrics.json."
        ],
        tables=[metrics_rows(ctx)],
    )


def _link_names(ctx: DemoContext) -> list[str]:
    from edgeae.resolve import LINKS_DIR, presets

    names = list(ctx.config.links) if ctx.config.links is not None else list(presets(LINKS_DIR))
    return sorted(names, key=lambda n: (LINK_ORDER.index(n) if n in LINK_ORDER else len(LINK_ORDER), n))


def stage_downlink(ctx: DemoContext) -> Section | None:
    """The sampled frame as CCSDS packets over every link preset, rebuilt by the ground station."""
    from edgeae.ground.link import load_link
    from edgeae.ground.pipeline import downlink_frame
    from edgeae.reconstruct import reconstruct
    from edgeae.resolve import link_path, preset_summary

    predictor = ctx.extra.get("predictor")
    if predictor is None:
        return None
    samples = _samples(ctx)
    cfg = ctx.config
    rows, figures, results = [], [], {}
    names = _link_names(ctx)
    for name in ctx.bar(names, "downlink", total=len(names), unit="link"):
        res = downlink_frame(
            samples,
            8,
            keep=cfg.keep,
            seed=cfg.seed,
            pattern=cfg.pattern,
            link=load_link(name),
            fill=lambda img, known, notes=None: reconstruct(img, known, "cae", predictor),
            fill_name=_label(ctx, "cae"),
        )
        rep = res.report
        received = float(rep.get("pixel_fraction_received", 0.0))
        psnr = rep.get("psnr")
        results[name] = {"psnr": psnr, "pixels_received": received, "packets": res.packets, "report": rep}
        what = preset_summary(link_path(name)).split(". ")[0].split(":")[0].rstrip(".")
        rows.append(
            {
                "link": name,
                "what it is": what,
                "packets sent": res.packets,
                "packets received": rep.get("packets_received"),
                "lost": rep.get("packets_lost"),
                "corrupt": rep.get("packets_corrupt"),
                "pixels received": f"{received:.1%}",
                "PSNR (dB)": f"{psnr:.2f}" if psnr is not None else "–",  # as on the console, not 4 decimals
            }
        )
        ctx.say(
            f"  {name:12s} {rep.get('packets_received', 0):4d}/{res.packets} packets, {received:6.1%} of the "
            f"sampled pixels received, ground rebuild PSNR {psnr if psnr is not None else float('nan'):6.2f} dB"
        )
        figures.append(
            Figure(f"{name}: pixels received ({received:.1%})", apply_mask(ctx.original, res.known), f"rx-{name}")
        )
        figures.append(Figure(f"{name}: ground rebuild, PSNR {psnr or 0:.2f} dB", res.recon, f"ground-{name}"))
    ctx.extra["downlink"] = results
    raw = ctx.original.size
    return Section(
        "Downlink: CCSDS packets over every link preset, rebuilt on the ground",
        paragraphs=[
            f"The kept pixels travel as CCSDS space packets (docs/wire-format.md) through each seeded link "
            f"preset (edgeae links lists them; edgeae/ground/links/*.toml); raw frame: {raw:,} bytes. Each "
            "packet carries samples spread over its band of rows (interleaved, wire layout 2), so a lost packet "
            "thins the samples there instead of leaving a hole: the ground regenerates the mask from the seed "
            f"and rebuilds everything it did not receive with {_label(ctx, 'cae')}. Each pair: the pixels "
            "that arrived (black = not received or never sent), then the ground's rebuild."
        ],
        figures=figures,
        columns=4,
        tables=[rows],
    )


def _top_patches(xs: np.ndarray, ys: np.ndarray, scores: np.ndarray, patch: int, k: int) -> list[int]:
    """Indices of the ``k`` highest scores whose patches do not overlap one another."""
    chosen: list[int] = []
    for i in np.argsort(-scores):
        if all(abs(int(xs[i]) - int(xs[j])) >= patch or abs(int(ys[i]) - int(ys[j])) >= patch for j in chosen):
            chosen.append(int(i))
        if len(chosen) == k:
            break
    return chosen


def _outline(image: np.ndarray, boxes: list[tuple[int, int, int]], colour: tuple[float, float, float]) -> np.ndarray:
    """An RGB copy of ``image`` with square outlines (x, y, size), 2 px wide."""
    img = np.asarray(image, dtype=np.float32)
    out = np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img.copy()
    h, w = out.shape[:2]
    c = np.asarray(colour, np.float32)
    for x, y, s in boxes:
        x1, y1 = min(w, x + s), min(h, y + s)
        out[y : y + 2, x:x1] = c
        out[max(y, y1 - 2) : y1, x:x1] = c
        out[y:y1, x : x + 2] = c
        out[y:y1, max(x, x1 - 2) : x1] = c
    return out


def stage_anomaly(ctx: DemoContext) -> Section | None:
    """The frame's anomaly score map and its top patches, scored by the zoo scorer for its channel count."""
    if not ctx.config.anomaly:
        return None
    from edgeae.anomaly.score import make_scorer, score_array, score_map
    from edgeae.predictor import load_predictor
    from edgeae.resolve import NameNotFound, model_path

    c = ctx.original.shape[2]
    name = SCORERS[c]
    try:
        path = model_path(name, "artifact")  # the int8 flight artifact: what the spacecraft would run
    except NameNotFound:
        path = model_path(name)
    predictor = load_predictor(path, threads=ctx.config.threads)
    scorer = make_scorer(predictor, cae_keep=0.5)
    h, w = ctx.original.shape[:2]
    from edgeae.tiling import tile_positions

    positions = tile_positions(h, w, ANOMALY_PATCH, ANOMALY_STRIDE)
    valid = ctx.extra.get("valid")
    scores = score_array(  # patches of mostly no-data (a product's margin) are not scored, as in edgeae scan
        ctx.original, scorer, ANOMALY_PATCH, ANOMALY_STRIDE, valid=valid, min_valid=ANOMALY_MIN_VALID, batch=32,
        file="anomaly scores", progress=ctx.progress,
    )  # fmt: skip
    if len(scores) == 0:
        return None
    meta = predictor.metadata
    threshold = meta.score.get("threshold") if meta.kind == "vae" else None
    heat = score_map(scores, "max")
    finite = heat[np.isfinite(heat)]
    lo, hi = (float(v) for v in np.percentile(finite, [1, 99.5]))
    top = _top_patches(scores.x, scores.y, scores.score, ANOMALY_PATCH, TOP_PATCHES)
    boxes = [(int(scores.x[i]), int(scores.y[i]), ANOMALY_PATCH) for i in top]
    how = (
        "β-VAE score a(x) = ||x − x̂||² + λ||μ||² (Lesnikowski et al. 2024)"
        if meta.kind == "vae"
        else "masked-reconstruction error: the CAE sees half of each patch's pixels, a high score means it "
        "could not predict the rest"
    )
    flagged = int(np.sum(scores.score > threshold)) if threshold is not None else None
    ctx.extra["anomaly"] = {
        "model": name,
        "file": path.name,
        "patches": len(scores),
        "top": [{"x": int(scores.x[i]), "y": int(scores.y[i]), "score": float(scores.score[i])} for i in top],
        "threshold": threshold,
        "flagged": flagged,
        "median": float(np.median(scores.score)),
    }
    best = scores.score[top[0]]
    ctx.say(
        f"anomaly: {len(scores)} patches scored with {name} ({path.suffix[1:]}); top score {best:.4g} at "
        f"({int(scores.x[top[0]])}, {int(scores.y[top[0]])}), {best / max(float(np.median(scores.score)), 1e-12):.1f}× "
        "the median"
    )
    caption = (
        "Anomaly score map: each pixel shows the highest score of the patches covering it; inferno colour map "
        "from black (low) to pale yellow (high), scaled from the 1st to the 99.5th percentile of the scores."
    )
    bar_html, bar = colour_bar("colourbar-score", lo, hi, caption, "inferno")
    figures = [
        Figure(
            f"frame with the top {len(top)} patches outlined",
            _outline(ctx.original, boxes, (0.0, 1.0, 1.0)),
            "anomaly-frame",
        ),
        Figure("anomaly score map", colourise(heat, lo, hi, "inferno"), "anomaly-map"),
    ]
    for rank, i in enumerate(top, 1):
        x, y = int(scores.x[i]), int(scores.y[i])
        crop = ctx.original[y : y + ANOMALY_PATCH, x : x + ANOMALY_PATCH]
        figures.append(Figure(f"#{rank} ({x}, {y}) score {scores.score[i]:.4g}", crop, f"anomaly-top{rank}"))
    thr = (
        f" The model's alarm threshold is {threshold:.4g}: {flagged} of {len(scores)} patches exceed it."
        if threshold is not None
        else " This scorer has no calibrated threshold; the flight runtime sends the top-k patches."
    )
    n_out = len(positions) - len(scores)
    skipped = f"; {n_out} with under {ANOMALY_MIN_VALID:.0%} valid pixels, a no-data margin, left out" if n_out else ""
    pair = Section(
        f"Anomaly scores: {name}",
        paragraphs=[
            f"Every {ANOMALY_PATCH}×{ANOMALY_PATCH} patch on a {ANOMALY_STRIDE}-pixel grid ({len(positions)} "
            f"patches{skipped}) scored by the zoo model {name} ({path.name}, the flight artifact): {how}.{thr} The top "
            f"{len(top)} non-overlapping patches are outlined on the frame and shown below at full resolution; "
            "(x, y) is the top-left pixel."
        ],
        html_before=bar_html,
        images={"colourbar-score": bar},
        figures=figures[:2],
        columns=2,
    )
    tops = Section("Top patches", figures=figures[2:], columns=8)
    ctx.extra["anomaly_sections"] = [tops]
    return pair


def stage_top_patches(ctx: DemoContext) -> Section | None:
    """The top patches of the anomaly stage, in their own row of small figures."""
    sections = ctx.extra.get("anomaly_sections") or []
    return sections[0] if sections else None


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
            f"From {ctx.config.keep:.0%} of the pixels, the best rebuild is {_label(ctx, best.method)} at "
            f"{best.metrics['psnr']:.2f} dB PSNR{margin}."
        )
        cae = next((r for r in recon if r.method == "cae"), None)
        classical = [r for r in recon if r.method not in LEARNED]
        if cae and classical:
            top = max(classical, key=lambda r: r.metrics["psnr"])
            d = cae.metrics["psnr"] - top.metrics["psnr"]
            where = []
            for key, sign, label in (
                ("ssim", 1.0, "SSIM"),
                ("mae", -1.0, "MAE"),
                ("mae_destroyed", -1.0, "MAE on the pixels not sent"),
            ):
                vals = [r for r in classical if key in r.metrics]
                if not vals or key not in cae.metrics:
                    continue
                b = max(vals, key=lambda r: sign * r.metrics[key])
                if sign * b.metrics[key] > sign * cae.metrics[key]:
                    where.append(f"{label} ({_label(ctx, b.method)} {b.metrics[key]:.4f} vs {cae.metrics[key]:.4f})")
            if cae.seconds > top.seconds:  # against the method it is measured against above, not the fastest
                where.append(f"time ({cae.seconds:.1f} s vs {top.seconds:.2f} s for {_label(ctx, top.method)})")
            verb = "beats" if d > 0 else "loses to"
            lines.append(
                f"The CAE {verb} the best classical method ({_label(ctx, top.method)}, {top.metrics['psnr']:.2f} dB) "
                f"by {abs(d):.2f} dB PSNR"
                + (f"; it loses on {', '.join(where)}." if where else ", and on every other measure here.")
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
    cae = next((r for r in ctx.results if r.method == "cae"), None)
    if codec and cae:
        d = codec["metrics"]["psnr"] - cae.metrics["psnr"]
        lines.append(
            f"At the same {codec['budget']:,} bytes on a clean link, JPEG 2000 of the whole frame reaches "
            f"{codec['metrics']['psnr']:.2f} dB: {abs(d):.2f} dB {'better' if d > 0 else 'worse'} than sparse "
            "pixels + CAE."
        )
    dl = ctx.extra.get("downlink") or {}
    valid = {k: v for k, v in dl.items() if v["psnr"] is not None}
    if valid:
        ref_name = "perfect" if "perfect" in valid else max(valid, key=lambda k: valid[k]["psnr"])
        ref = valid[ref_name]
        ref_text = "the perfect link" if ref_name == "perfect" else f"the best link given ({ref_name})"
        worst_name, worst = min(valid.items(), key=lambda kv: kv[1]["psnr"])
        lost = [k for k, v in dl.items() if not v["pixels_received"]]
        fate = f"the frame was lost entirely on {', '.join(lost)}" if lost else "the frame arrived on every link"
        if worst["psnr"] >= ref["psnr"]:
            lines.append(f"Over the {len(valid)} links no packet loss changed the ground rebuild; {fate}.")
        else:
            lines.append(
                f"Over the links, the worst case is {worst_name}: {worst['pixels_received']:.1%} of the sampled "
                f"pixels arrive and the ground rebuild is {ref['psnr'] - worst['psnr']:.2f} dB below {ref_text} "
                f"({worst['psnr']:.2f} vs {ref['psnr']:.2f} dB); {fate}."
            )
    an = ctx.extra.get("anomaly")
    if an and an["top"]:
        t = an["top"][0]
        lines.append(
            f"The anomaly scorer {an['model']} puts its highest score at ({t['x']}, {t['y']}), "
            f"{t['score'] / max(an['median'], 1e-12):.1f}× the median patch"
            + (f"; {an['flagged']} patches exceed its alarm threshold." if an["flagged"] is not None else ".")
        )
    if codec and cae and valid:
        d = codec["metrics"]["psnr"] - cae.metrics["psnr"]
        ref = valid.get("perfect") or max(valid.values(), key=lambda v: v["psnr"])
        cost = ref["psnr"] - min(v["psnr"] for v in valid.values())
        if d > 0:
            lines.append(
                f"Should you fly it? On a clean link, no: JPEG 2000 at the same bytes is {d:.2f} dB better. Sparse "
                "pixels + CAE only pay where packets are lost without retransmission: here the worst link cost "
                f"the sparse rebuild {cost:.2f} dB, while a codec stream that loses a packet cannot be decoded past "
                "it (benchmarks/RESULTS.md measures JPEG 2000 over the same links)."
            )
        else:
            lines.append(
                f"Should you fly it? On these numbers, yes: sparse pixels + CAE beat JPEG 2000 at equal bytes by "
                f"{-d:.2f} dB, and the worst link cost the sparse rebuild only {cost:.2f} dB."
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


def run_demo(
    config: DemoConfig,
    stages: list[Stage] | None = None,
    say: Callable[[str], None] | None = None,
    progress: bool = False,
) -> DemoResult:
    """Run every stage, write ``config.out/index.html`` (+ ``img/``, ``metrics.json``), return its path.

    ``say`` receives one line per finished step (default: the log); ``progress`` shows a bar per long step.
    """
    t0 = time.perf_counter()
    emit = say or log.info
    if progress and say is not None:
        from edgeae._optional import require

        tqdm = require("tqdm").tqdm

        def emit(line: str) -> None:  # a result line above the live progress bar, not glued to it
            with tqdm.external_write_mode(file=sys.stdout):
                say(line)

    ctx = DemoContext(config, say=emit, progress=progress)
    sections = []
    for stage in SECTIONS if stages is None else stages:
        t = time.perf_counter()
        s = stage(ctx)
        ctx.timings[f"{stage.__name__}_s"] = time.perf_counter() - t
        if s is not None:
            sections.append(s)
    ctx.timings["total_s"] = time.perf_counter() - t0
    if "metrics_record" in ctx.extra:  # every number the page shows, in one file beside it
        record = dict(ctx.extra["metrics_record"])
        for key in ("downlink", "anomaly", "cross_check_report", "adapt_report", "conclusion"):
            if key in ctx.extra:
                record[key] = ctx.extra[key]
        record["timings_s"] = {k: round(v, 3) for k, v in ctx.timings.items()}
        (config.out / "metrics.json").write_text(json.dumps(record, indent=2, default=_json_default) + "\n")
    html = write_report(
        config.out,
        "edgeae demo: a real frame rebuilt from 10% of its pixels"
        if config.keep == 0.1
        else f"edgeae demo: a real frame rebuilt from {config.keep:.0%} of its pixels",
        sections,
        intro=f"Generated by the command edgeae demo in {ctx.timings['total_s']:.1f} s on {os.cpu_count()} CPU "
        "cores. Sections: input, reconstructions with their error maps, JPEG 2000 at the same bytes, metrics, "
        "downlink over every link preset, anomaly scores, conclusion.",
    )
    return DemoResult(html, ctx, time.perf_counter() - t0)


__all__ = ["PATTERNS", "SECTIONS", "DemoConfig", "DemoContext", "DemoResult", "run_demo"]

"""The demo's anomaly stages: the frame's anomaly score map from the zoo scorer, and its top patches.

:func:`stage_anomaly` scores every patch on a grid, outlines the top non-overlapping patches on the frame
and keeps them for :func:`stage_top_patches`, which shows them in their own row.
"""

from __future__ import annotations

import numpy as np

from edgeae.demo.context import DemoContext
from edgeae.report import Figure, Section, colour_bar, colourise

# zoo scorer for the anomaly section, by channel count (the flight artifact when an interpreter is installed)
SCORERS = {3: "rover-rgb-gtcae", 1: "orbital-gray-vae"}
ANOMALY_PATCH, ANOMALY_STRIDE, TOP_PATCHES = 64, 32, 8
ANOMALY_MIN_VALID = 0.9  # as edgeae scan and the flight missions: a patch of mostly margin is not scored


def score_text(v: float) -> str:
    """A score for a caption, four figures each (52.60 beside 59.91, not 52.6; 0.01549; 28,272 not 2.827e+04)."""
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:#.4g}"


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
    h, w = ctx.original.shape[:2]
    if h < ANOMALY_PATCH or w < ANOMALY_PATCH:  # not one patch fits: say so instead of failing after the rest
        why = f"the {w}×{h} frame is smaller than the {ANOMALY_PATCH}×{ANOMALY_PATCH} patch the scorer reads"
        ctx.say(f"anomaly: not run ({why})")
        return Section("Anomaly scores: not run", paragraphs=[f"Not run: {why}."])
    from edgeae.anomaly.score import make_scorer, score_array, score_map
    from edgeae.metadata import sha256_file
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
    from edgeae.tiling import tile_positions

    positions = tile_positions(h, w, ANOMALY_PATCH, ANOMALY_STRIDE)
    valid = ctx.extra.get("valid")
    scores = score_array(  # patches of mostly no-data (a product's margin) are not scored, as in edgeae scan
        ctx.original, scorer, ANOMALY_PATCH, ANOMALY_STRIDE, valid=valid, min_valid=ANOMALY_MIN_VALID, batch=32,
        file="anomaly scores", progress=ctx.progress,
    )  # fmt: skip
    if len(scores) == 0:  # every patch is mostly no-data (e.g. an alpha channel that hides most of the frame)
        why = (
            f"no {ANOMALY_PATCH}×{ANOMALY_PATCH} patch of the frame has at least {ANOMALY_MIN_VALID:.0%} valid "
            f"pixels ({len(positions)} on the grid, all mostly no-data)"
        )
        ctx.say(f"anomaly: not run ({why})")
        return Section("Anomaly scores: not run", paragraphs=[f"Not run: {why}."])
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
        "could not predict the rest (the sum of squared errors over the pixels it did not see, samples in [0, 1]; "
        "the flight runtime's report gives the mean instead, so its scores are smaller by the pixel count). Scores "
        "compare within one model only; the rover mission flies this CAE as its scorer, which found 23 of 24 planted "
        "hardware crops in the flight benchmark, ahead of the rover β-VAE that edgeae score uses by default for "
        "colour frames"
    )
    flagged = int(np.sum(scores.score > threshold)) if threshold is not None else None
    ctx.extra["anomaly"] = {
        "model": name,
        "file": path.name,
        "file_sha256": sha256_file(path),  # zoo names are retrained between releases: which file scored
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
        figures.append(Figure(f"#{rank} ({x}, {y}) score {score_text(scores.score[i])}", crop, f"anomaly-top{rank}"))
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

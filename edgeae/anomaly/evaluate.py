"""The paper's evaluation on real labelled data: patch scores -> labels -> AP vs random, KS test, baselines.

Datasets:

- ``lroc_nac_craters``: the 10 LRO NAC mosaics not used for λ (:data:`edgeae.train.vae.LAMBDA_FILES`), 64×64
  patches at stride 32. A patch is positive for a size bin when it holds the centre of a crater of that
  diameter; every other patch is negative.
- ``hirise_landmarks``: 227×227 crops of the products the VAE never trained on
  (:func:`edgeae.anomaly.labels.hirise_training_products`). 25 patches per crop (stride 41); a crop's score
  is the **maximum** of its patch scores, for every method. Negatives are class 0; classes 1-4 are positives
  each and together; class 6 (image edge / no data) is reported separately.

Every method ranks the same patches: the VAE score a(x), its two terms (reconstruction error, ||μ||²),
local contrast (patch std) and an isolation forest on μ. Plots are in :mod:`edgeae.anomaly.plots`.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeae._optional import require
from edgeae.anomaly import baselines
from edgeae.anomaly.labels import (
    CRATER_BINS,
    HIRISE_CLASSES,
    bin_name,
    crater_file_for,
    hirise_product,
    hirise_training_products,
    patch_labels,
    read_craters,
    read_hirise_labels,
)
from edgeae.anomaly.metrics import ranking_summary
from edgeae.anomaly.score import PatchScorer, PatchScores, score_array

log = logging.getLogger(__name__)

DATASETS = ("lroc_nac_craters", "hirise_landmarks")
LROC_DIR = "orbital_gray/lroc_nac_craters"
LROC_STRIDE = 32
HIRISE_STRIDE = 41  # 25 patches per 227×227 crop, the last row/column flush with the edge
PLOT_FEATURE_MIN = 32.0  # crater diameter (px) of the feature drawn in galleries, maps and t-SNE


@dataclass
class Scored:
    """All scored units of one dataset: a score per method, labels per feature, and what plots need."""

    methods: dict[str, np.ndarray]
    features: dict[str, tuple[np.ndarray, np.ndarray]]  # name -> (positive mask, evaluated mask)
    primary: str
    images: list[np.ndarray] = field(default_factory=list)
    unit_image: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    unit_xy: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64))
    latents: np.ndarray | None = None
    patch_results: list[PatchScores] = field(default_factory=list)
    points: list[np.ndarray] = field(default_factory=list)
    plot_feature: str = ""
    info: dict[str, Any] = field(default_factory=dict)


def lroc_files(root: Path) -> list[Path]:
    """The LROC NAC mosaics that are evaluated (all but the λ-validation ones), sorted."""
    from edgeae.train.vae import LAMBDA_FILES

    held = {Path(f).name for f in LAMBDA_FILES}
    files = sorted(p for p in (root / LROC_DIR).glob("*.png") if p.name not in held)
    if not files:
        raise FileNotFoundError(f"no LROC NAC mosaics under {root / LROC_DIR}")
    return files


def _methods(scorer: PatchScorer, results: list[PatchScores], stds: np.ndarray, seed: int) -> dict[str, Any]:
    cat = {k: np.concatenate([r.extras[k] for r in results]) for k in results[0].extras}
    score = np.concatenate([r.score for r in results])
    if scorer.kind != "vae":
        return {"cae masked error": score, "patch std": stds}
    return {
        "vae a(x)": score,
        "reconstruction error": cat["rec"],
        "||mu||^2": cat["mu2"],
        "patch std": stds,
        "isolation forest (mu)": baselines.isolation_forest(cat["mu"], seed=seed),
    }


def _read(path: Path, channels: int) -> tuple[np.ndarray, np.ndarray]:
    from edgeae.imageio import read_image

    img = read_image(path, channels=channels)
    return img.pixels, img.valid


def _stds(image: np.ndarray, r: PatchScores) -> np.ndarray:
    return np.array([image[y : y + r.patch, x : x + r.patch].std() for x, y in zip(r.x, r.y, strict=True)])


def score_lroc(
    root: Path,
    scorer: PatchScorer,
    patch: int = 64,
    batch: int = 256,
    limit: int | None = None,
    seed: int = 0,
    progress: Callable[[Any], Any] = iter,
) -> Scored:
    """Score every patch of the evaluated LROC mosaics; features = crater size bins and all craters."""
    files = lroc_files(root)[:limit]
    results, images, points, craters_all, stds = [], [], [], [], []
    for f in progress(files):
        pix, valid = _read(f, scorer.channels)
        r = score_array(pix, scorer, patch, LROC_STRIDE, valid=valid, min_valid=0.0, batch=batch, file=f.name)
        results.append(r)
        images.append(pix)
        craters = read_craters(crater_file_for(f))
        craters_all.append((r, craters))
        points.append(craters[craters[:, 2] >= PLOT_FEATURE_MIN, :2])
        stds.append(_stds(pix, r))
    methods = _methods(scorer, results, np.concatenate(stds), seed)
    n = sum(len(r) for r in results)
    everything = np.ones(n, dtype=bool)
    features: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for lo, hi in ((0.0, math.inf), *CRATER_BINS):
        name = "any crater" if lo == 0.0 and math.isinf(hi) else bin_name(lo, hi)
        pos = np.concatenate([patch_labels(r.xy, patch, c, lo, hi) for r, c in craters_all])
        features[name] = (pos, everything)
    plot_feature = bin_name(PLOT_FEATURE_MIN, math.inf)
    features[plot_feature] = (
        np.concatenate([patch_labels(r.xy, patch, c, PLOT_FEATURE_MIN) for r, c in craters_all]),
        everything,
    )
    return Scored(
        methods=methods,
        features=features,
        primary=next(iter(methods)),
        images=images,
        unit_image=np.concatenate([np.full(len(r), i) for i, r in enumerate(results)]),
        unit_xy=np.concatenate([r.xy for r in results]),
        latents=np.concatenate([r.extras["mu"] for r in results]) if scorer.kind == "vae" else None,
        patch_results=results,
        points=points,
        plot_feature=plot_feature,
        info={
            "files": [f.name for f in files],
            "patch": patch,
            "stride": LROC_STRIDE,
            "patches_with_nodata": int(sum(int((r.valid_frac < 1).sum()) for r in results)),
        },
    )


def _centre_index(r: PatchScores) -> int:
    """Index of the patch whose centre is nearest the image centre."""
    cy, cx = (r.shape[0] - r.patch) / 2.0, (r.shape[1] - r.patch) / 2.0
    return int(np.argmin((r.x - cx) ** 2 + (r.y - cy) ** 2))


def score_hirise(
    root: Path,
    scorer: PatchScorer,
    patch: int = 64,
    batch: int = 256,
    limit: int | None = None,
    seed: int = 0,
    progress: Callable[[Any], Any] = iter,
) -> Scored:
    """Score the landmark crops of the evaluation products; a crop's score is the max over its patches."""
    labels = read_hirise_labels(root / "hirise_landmarks" / "labels.txt")
    train = hirise_training_products(labels)
    crops = [(f, c) for f, c in labels if hirise_product(f) not in train and c in HIRISE_CLASSES]
    if limit:
        rng = np.random.default_rng(seed)
        crops = [crops[i] for i in sorted(rng.choice(len(crops), size=min(limit, len(crops)), replace=False))]
    results, images, stds = [], [], []
    for f, _ in progress(crops):
        pix, valid = _read(root / "hirise_landmarks" / "images" / f, scorer.channels)
        r = score_array(pix, scorer, patch, HIRISE_STRIDE, valid=valid, min_valid=0.0, batch=batch, file=f)
        results.append(r)
        images.append(pix)
        stds.append(_stds(pix, r))
    per_patch = _methods(scorer, results, np.concatenate(stds), seed)
    bounds = np.cumsum([0] + [len(r) for r in results])
    methods = {k: np.maximum.reduceat(v, bounds[:-1]) for k, v in per_patch.items()}
    primary = next(iter(methods))
    # the landmark sits at the crop centre: also rank crops by the patch nearest the centre
    centre = [_centre_index(r) for r in results]
    methods[f"{primary}, centre patch"] = per_patch[primary][bounds[:-1] + np.array(centre)]
    best = [int(np.argmax(per_patch[primary][a:b])) for a, b in itertools.pairwise(bounds)]
    cls = np.array([c for _, c in crops])
    neg = cls == 0
    features: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for k in (1, 2, 3, 4):
        features[f"class {k} {HIRISE_CLASSES[k]}"] = (cls == k, neg | (cls == k))
    together = np.isin(cls, (1, 2, 3, 4))
    features["classes 1-4 together"] = (together, neg | together)
    features[f"class 6 {HIRISE_CLASSES[6]}"] = (cls == 6, neg | (cls == 6))
    latents = None
    if scorer.kind == "vae":
        mu = np.concatenate([r.extras["mu"] for r in results])
        latents = mu[bounds[:-1] + np.array(best)]
    return Scored(
        methods=methods,
        features=features,
        primary=primary,
        images=images,
        unit_image=np.arange(len(crops)),
        unit_xy=np.array([[r.x[i], r.y[i]] for r, i in zip(results, best, strict=True)]).reshape(-1, 2),
        latents=latents,
        plot_feature="classes 1-4 together",
        info={
            "crops": len(crops),
            "classes": {str(k): int((cls == k).sum()) for k in HIRISE_CLASSES},
            "patch": patch,
            "stride": HIRISE_STRIDE,
            "crop_score": "max over 25 patches (and the centre patch alone)",
            "training_products_excluded": len(train),
        },
    )


def table_rows(scored: Scored) -> list[dict[str, Any]]:
    """One row per (feature, method): the paper's columns plus ROC AUC."""
    rows = []
    for feat, (pos, sel) in scored.features.items():
        for method, s in scored.methods.items():
            rows.append({"feature": feat, "method": method, **ranking_summary(s[sel], pos[sel])})
    return rows


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e4):
            return f"{v:.2e}"
        return f"{v:.{digits}f}"
    return str(v)


def markdown_tables(rows: list[dict[str, Any]], primary: str, title: str) -> str:
    """The paper's table for the primary method, then AP of every method per feature."""
    out = [
        f"### {title}: {primary}",
        "",
        "| feature | positives | negatives | AP | random AP | improvement | ROC AUC | KS statistic | KS p-value |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["method"] == primary:
            out.append(
                f"| {r['feature']} | {r['positives']} | {r['negatives']} | {_fmt(r['ap'])} | "
                f"{_fmt(r['random_ap'])} | {_fmt(r['improvement'], 2)} | {_fmt(r['auc'])} | "
                f"{_fmt(r['ks'])} | {_fmt(r['ks_p'])} |"
            )
    methods = list(dict.fromkeys(r["method"] for r in rows))
    out += [
        "",
        f"### {title}: AP of every method (improvement over random in brackets; best in bold)",
        "",
        "| feature | random AP | " + " | ".join(methods) + " |",
        "|---|---:|" + "---:|" * len(methods),
    ]
    for feat in dict.fromkeys(r["feature"] for r in rows):
        rs = {r["method"]: r for r in rows if r["feature"] == feat}
        aps = [rs[m]["ap"] for m in methods if rs[m]["ap"] is not None]
        best = max(aps) if aps else None
        cells = []
        for m in methods:
            ap, imp = rs[m]["ap"], rs[m]["improvement"]
            cell = "n/a" if ap is None else f"{ap:.3f} ({imp:.2f}x)"
            cells.append(f"**{cell}**" if ap is not None and ap == best else cell)
        out.append(f"| {feat} | {_fmt(rs[methods[0]]['random_ap'])} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def make_plots(scored: Scored, out: Path, dataset: str, seed: int = 0, tsne_k: int = 512) -> list[Path]:
    """PR curves and KDE per feature, top-16 vs random-16 gallery, anomaly maps (LROC), t-SNE."""
    from edgeae.anomaly import plots
    from edgeae.anomaly.metrics import average_precision, precision_recall_curve

    paths = []
    s = scored.methods[scored.primary]
    for feat, (pos, sel) in scored.features.items():
        if not pos[sel].any() or pos[sel].all():
            continue
        slug = feat.replace(" ", "_").replace(">=", "ge").replace("<", "lt").replace("/", "")
        curves = {}
        for m, v in scored.methods.items():
            p, r, _ = precision_recall_curve(v[sel], pos[sel])
            curves[m] = (p, r, average_precision(v[sel], pos[sel]))
        paths.append(plots.pr_curves(out / f"pr_{slug}.png", curves, float(pos[sel].mean()), f"{dataset}: {feat}"))
        paths.append(plots.kde_rug(out / f"kde_{slug}.png", s[sel], pos[sel], f"{dataset}: {feat} ({scored.primary})"))
    pos, sel = scored.features[scored.plot_feature]
    idx = np.flatnonzero(sel)
    top = idx[np.argsort(-s[idx], kind="stable")[:16]]
    rnd = np.random.default_rng(seed).choice(idx, size=min(16, len(idx)), replace=False)
    patch = scored.patch_results[0].patch if scored.patch_results else 64

    def items(ix: np.ndarray) -> list[tuple[np.ndarray, int, int, float, bool]]:
        return [
            (
                scored.images[scored.unit_image[i]],
                int(scored.unit_xy[i, 0]),
                int(scored.unit_xy[i, 1]),
                float(s[i]),
                bool(pos[i]),
            )
            for i in ix
        ]

    paths.append(
        plots.gallery(
            out / "gallery_top16_vs_random16.png",
            [("top 16", items(top)), ("random 16", items(rnd))],
            patch=patch,
        )
    )
    for res, img, pts in list(zip(scored.patch_results, scored.images, scored.points, strict=False))[:3]:
        paths.append(
            plots.save_score_map(
                out / f"map_{Path(res.file).stem}.png",
                res,
                image=img,
                points=pts,
                title=f"{res.file}: {scored.primary} (circles: {scored.plot_feature})",
            )
        )
    if scored.latents is not None and len(idx) > 10:
        k = min(tsne_k, len(idx))
        top_k = idx[np.argsort(-s[idx], kind="stable")[:k]]
        thumbs = np.stack(
            [
                scored.images[scored.unit_image[i]][
                    scored.unit_xy[i, 1] : scored.unit_xy[i, 1] + patch,
                    scored.unit_xy[i, 0] : scored.unit_xy[i, 0] + patch,
                ].mean(axis=-1)
                for i in top_k
            ]
        )
        paths.append(
            plots.tsne_thumbnails(
                out / "tsne_top.png",
                scored.latents[top_k],
                thumbs,
                pos[top_k],
                seed=seed,
                title=f"{dataset}: t-SNE of the top {k} patches (red: {scored.plot_feature})",
            )
        )
    return paths


def evaluate(
    dataset: str,
    scorer: PatchScorer,
    root: Path,
    out: Path | None = None,
    *,
    batch: int = 256,
    limit: int | None = None,
    seed: int = 0,
    plots: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Score, label, rank and (optionally) plot one dataset; write ``table.md`` and ``results.json``."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown evaluation dataset {dataset!r}; choose from {DATASETS}")
    bar: Callable[[Any], Any] = iter
    if progress:
        tqdm = require("tqdm").tqdm

        def bar(it: Any) -> Any:
            return tqdm(it, desc=dataset, unit="image" if dataset.startswith("lroc") else "crop")

    fn = score_lroc if dataset == "lroc_nac_craters" else score_hirise
    scored = fn(root, scorer, batch=batch, limit=limit, seed=seed, progress=bar)
    rows = table_rows(scored)
    result = {"dataset": dataset, "primary": scored.primary, "rows": rows, "info": scored.info}
    if out is not None:
        import json

        out.mkdir(parents=True, exist_ok=True)
        (out / "table.md").write_text(markdown_tables(rows, scored.primary, dataset))
        (out / "results.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
        if plots:
            result["plots"] = [str(p) for p in make_plots(scored, out, dataset, seed=seed)]
    return result

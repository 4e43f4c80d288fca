"""The paper's evaluation on real labelled data: patch scores -> labels -> AP vs random, KS test, baselines.

Datasets:

- ``lroc_nac_craters``: the 10 LRO NAC mosaics not used for λ (:data:`edgeae.train.vae.LAMBDA_FILES`), 64×64
  patches at stride 32. A patch is positive for a size bin when it holds the centre of a crater of that
  diameter; every other patch is negative. Four of the ten are the ``orbital_gray`` **test** split; the
  ``... (test-split mosaics)`` rows rank those alone.
- ``hirise_landmarks``: 227×227 crops of the products the VAE never trained on (the development split,
  :func:`edgeae.anomaly.labels.hirise_training_products`). 25 patches per crop (stride 41); a crop's score
  is the **maximum** of its patch scores, for every method. Negatives are class 0; classes 1-4 are positives
  each and together; class 6 (image edge / no data) is reported separately.
- ``msl_surface``: the MSL surface images of the **val sols** (:mod:`edgeae.anomaly.msl`), ranked by their
  highest 64×64 patch (stride 32): hardware and calibration targets vs ground. A **validation** benchmark
  (``train_extra/`` is never test data), scored with an RGB model trained on ground images of the train sols.

Every method ranks the same patches:

- **the default scorer** (:data:`DEFAULT_SCORER`, :mod:`edgeae.anomaly.multiscale`): the model's score of
  32 and 64 px windows centred on each patch (128 px was tried and lowered validation AP), each normalised
  within its frame (robust z of the log
  score; for MSL browse images over all images, see :data:`NORMALISATION`) and averaged;
- the model's single-window score a(x) and its two terms (reconstruction error, ||μ||²); the orbital
  mission's flight score ``terms-max`` (:mod:`edgeae.anomaly.terms`: each term over its frame median, the
  larger) and the same maximum of robust z of the log terms;
- baselines (:mod:`edgeae.anomaly.baselines`): local contrast (patch std), the Reed-Xiaoli detector on patch
  features (RX), an isolation forest on μ and a kNN distance on μ;
- three candidate ground rankings with their own target rows: ``frame-z kNN (mu)``
  (:func:`edgeae.anomaly.baselines.frame_z_knn`), ``local z (mu, rec)``
  (:func:`edgeae.anomaly.context.local_novelty`: each patch's μ and reconstruction error against the patches
  around it on its own frame) and ``two-context kNN (mu)`` (:func:`edgeae.anomaly.baselines.context_knn`: the
  frame-z kNN plus the kNN of μ scaled over the frame's parent product, HiRISE, or over all frames; with a
  scorer of ``views`` > 1, each patch's rotations and flips averaged);
- ablations: the single 64 px window with the per-frame normalisation, each window size alone, and patch std
  with the same normalisation (how much comes from normalisation alone).

``summary.md`` checks the targets of issue 12 (:func:`acceptance`). Plots are in :mod:`edgeae.anomaly.plots`.

This module runs one dataset's evaluation (:func:`evaluate`), draws its plots and clears its output folder;
the methods are in :mod:`edgeae.anomaly.eval_methods`, the datasets' scoring and labels in
:mod:`edgeae.anomaly.eval_datasets`, the tables and targets in :mod:`edgeae.anomaly.eval_report`, and all their
names are importable from here.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgeae._optional import require
from edgeae.anomaly.eval_datasets import (
    CHANNELS,
    DATASETS,
    DEFAULT_MODELS,
    HIRISE_STRIDE,
    LROC_DIR,
    LROC_STRIDE,
    MSL_GROUPS,
    MSL_STRIDE,
    PLOT_FEATURE_MIN,
    VALIDATION_ONLY,
    Scored,
    lroc_files,
    score_hirise,
    score_lroc,
    score_msl,
)
from edgeae.anomaly.eval_methods import (
    BASELINES,
    CONTEXT_KNN,
    DEFAULT,
    DEFAULT_SCORER,
    FRAME_Z_KNN,
    LOCAL_Z,
    NORMALISATION,
    SCORERS,
    TERMS_MAX,
    Frame,
    default_scorer,
    score_frame,
)
from edgeae.anomaly.eval_report import (
    ACCEPTANCE,
    MIN_COUNT,
    acceptance,
    acceptance_markdown,
    data_note,
    markdown_tables,
    run_settings,
    settings_note,
    table_rows,
    verdict,
)
from edgeae.anomaly.labels import HIRISE_CLASSES as HIRISE_CLASSES  # benchmarks import it from here
from edgeae.anomaly.multiscale import MultiScale
from edgeae.anomaly.score import PatchScorer

# the evaluation's names, split over eval_methods, eval_datasets and eval_report, importable from here as before
__all__ = [
    "ACCEPTANCE",
    "BASELINES",
    "CHANNELS",
    "CONTEXT_KNN",
    "DATASETS",
    "DEFAULT",
    "DEFAULT_MODELS",
    "DEFAULT_SCORER",
    "FIXED_OUTPUTS",
    "FRAME_Z_KNN",
    "HIRISE_STRIDE",
    "LOCAL_Z",
    "LROC_DIR",
    "LROC_STRIDE",
    "MIN_COUNT",
    "MSL_GROUPS",
    "MSL_STRIDE",
    "NORMALISATION",
    "OUTPUTS",
    "PLOT_FEATURE_MIN",
    "SCORERS",
    "TERMS_MAX",
    "VALIDATION_ONLY",
    "Frame",
    "Scored",
    "acceptance",
    "acceptance_markdown",
    "clear_outputs",
    "data_note",
    "default_scorer",
    "evaluate",
    "lroc_files",
    "make_plots",
    "markdown_tables",
    "run_settings",
    "score_frame",
    "score_hirise",
    "score_lroc",
    "score_msl",
    "settings_note",
    "table_rows",
    "verdict",
]

log = logging.getLogger(__name__)


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
            caption=f"{dataset}, {scored.primary}: red outline = {scored.plot_feature}, yellow = not one; number = "
            "the score (top 16: the highest; random 16: seeded by --seed)",
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
                score_label=scored.primary,
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


# what evaluate() writes in a dataset's folder under names of its own: a new run removes the previous run's
# (clear_outputs) before writing its own; results.json lists them ("outputs", with the plots of that run)
OUTPUTS = ("table.md", "results.json", "pr_*.png", "kde_*.png", "gallery_top16_vs_random16.png", "map_*.png",
           "tsne_top.png")  # fmt: skip
FIXED_OUTPUTS = ("table.md", "results.json", "gallery_top16_vs_random16.png", "tsne_top.png")  # the same every run


def clear_outputs(out: Path) -> list[Path]:
    """Remove what an earlier :func:`evaluate` wrote in ``out``: :data:`FIXED_OUTPUTS` and the files its
    ``results.json`` lists (``outputs``; a ``results.json`` written before they were listed: the PR and KDE plots
    of its features and the maps of its first three files, as :func:`make_plots` names them). Nothing else: a
    ``map_*.png`` that ``edgeae score --map OUT/DATASET/map.png`` wrote there stays. Returns what was removed."""
    names = set(FIXED_OUTPUTS) | _earlier_outputs(out / "results.json")
    gone = sorted(out / n for n in names if (out / n).is_file())
    for p in gone:
        p.unlink()
    return gone


def _earlier_outputs(results: Path) -> set[str]:
    """The file names an earlier run's ``results.json`` says it wrote beside it; only plain names of
    :data:`OUTPUTS`' patterns count (a damaged or edited file names nothing outside the folder)."""
    import fnmatch
    import json

    try:
        data = json.loads(results.read_text())
    except (OSError, ValueError):
        return set()
    if not isinstance(data, dict):
        return set()
    listed = data.get("outputs")
    if listed is None:  # written before outputs were listed: the names its plots would have had
        rows, info = data.get("rows"), data.get("info")
        feats = {r.get("feature") for r in rows if isinstance(r, dict)} if isinstance(rows, list) else set()
        slugs = [f.replace(" ", "_").replace(">=", "ge").replace("<", "lt").replace("/", "") for f in feats
                 if isinstance(f, str)]  # fmt: skip
        files = info.get("files") if isinstance(info, dict) else None
        files = [f for f in files if isinstance(f, str)][:3] if isinstance(files, list) else []
        listed = [f"pr_{s}.png" for s in slugs] + [f"kde_{s}.png" for s in slugs]
        listed += [f"map_{Path(f).stem}.png" for f in files]
    if not isinstance(listed, list):
        return set()
    return {
        n for n in listed
        if isinstance(n, str) and n == Path(n).name and n not in ("", ".", "..")
        and any(fnmatch.fnmatchcase(n, pattern) for pattern in OUTPUTS)
    }  # fmt: skip


def progress_bar(dataset: str, progress: bool = True) -> Callable[[Any], Any]:
    """What wraps the dataset's files: a tqdm bar when ``progress`` and stderr is a terminal (a redirected log gets
    no bars, as in ``edgeae reconstruct``), else plain iteration."""
    try:
        tty = sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stderr
        tty = False
    if not (progress and tty):
        return iter
    tqdm = require("tqdm").tqdm
    unit = {"lroc_nac_craters": "image", "hirise_landmarks": "crop", "msl_surface": "image"}[dataset]

    def bar(it: Any) -> Any:
        return tqdm(it, desc=dataset, unit=unit)

    return bar


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
    ms: MultiScale | None = None,
    model: str | None = None,
    fill: bool = False,
) -> dict[str, Any]:
    """Score, label, rank and (optionally) plot one dataset; write ``table.md`` and ``results.json`` (with the run
    settings, :func:`run_settings`; ``model``: the model's name as given) to ``out``; ``progress``: a bar per dataset
    when stderr is a terminal (:func:`progress_bar`), replacing the outputs of an
    earlier run there (:func:`clear_outputs`). ``fill``: partial patches' no-data filled with their valid mean
    first, as ``edgeae score`` does (:func:`score_frame`)."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown evaluation dataset {dataset!r}; choose from {DATASETS}")
    if scorer.channels != CHANNELS[dataset]:
        raise ValueError(f"{dataset} needs a {CHANNELS[dataset]}-channel model, this one has {scorer.channels}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1 (or None for every file), got {limit}")
    ms = ms or default_scorer(dataset)
    bar = progress_bar(dataset, progress)
    fn = {"lroc_nac_craters": score_lroc, "hirise_landmarks": score_hirise, "msl_surface": score_msl}[dataset]
    scored = fn(root, scorer, batch=batch, limit=limit, seed=seed, progress=bar, ms=ms, fill=fill)
    scored.info["settings"] = run_settings(scorer, ms, model, limit, seed, fill)
    rows = table_rows(scored)
    sampled = bool(scored.info.get("sampled", limit is not None))
    checks = [c for name in SCORERS for c in acceptance(dataset, rows, name, sampled=sampled)]
    title = dataset + (f" ({VALIDATION_ONLY[dataset]})" if dataset in VALIDATION_ONLY else "")
    result = {"dataset": dataset, "primary": scored.primary, "rows": rows, "info": scored.info, "acceptance": checks}
    if out is not None:
        import json

        out.mkdir(parents=True, exist_ok=True)
        clear_outputs(out)
        note = f"Default scorer: {scored.info.get('default_scorer', scored.primary)}.\n\n"
        note += f"Run settings: {json.dumps(scored.info['settings'])}.\n"
        (out / "table.md").write_text(markdown_tables(rows, scored.primary, title) + "\n" + note)
        written = ["table.md", "results.json"]  # what the next run into out removes (clear_outputs)
        result["outputs"] = written
        (out / "results.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
        if plots:
            made = make_plots(scored, out, dataset, seed=seed)
            written += [Path(p).name for p in made]
            result["plots"] = [str(p) for p in made]  # before the rewrite, so results.json lists them too
            (out / "results.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    return result

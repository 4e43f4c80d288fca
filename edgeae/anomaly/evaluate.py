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
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgeae._optional import require
from edgeae.anomaly import baselines
from edgeae.anomaly.context import frames_local_novelty
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
from edgeae.anomaly.multiscale import MultiScale, frame_normalise, multiscale_scores, score_windows
from edgeae.anomaly.score import PatchScorer, PatchScores, score_array
from edgeae.anomaly.terms import frame_terms_max

log = logging.getLogger(__name__)

DATASETS = ("lroc_nac_craters", "hirise_landmarks", "msl_surface")
VALIDATION_ONLY = {"msl_surface": "validation benchmark: train_extra/ MSL images of the val sols, never test data"}
CHANNELS = {"lroc_nac_craters": 1, "hirise_landmarks": 1, "msl_surface": 3}
DEFAULT_MODELS = {"lroc_nac_craters": "orbital-gray-vae", "hirise_landmarks": "orbital-gray-vae",
                  "msl_surface": "rover-rgb-vae"}  # fmt: skip
LROC_DIR = "orbital_gray/lroc_nac_craters"
LROC_STRIDE = 32
HIRISE_STRIDE = 41  # 25 patches per 227×227 crop, the last row/column flush with the edge
MSL_STRIDE = 32
PLOT_FEATURE_MIN = 32.0  # crater diameter (px) of the feature drawn in galleries, maps and t-SNE

DEFAULT = "default (multi-scale z)"
TERMS_MAX = "terms-max (flight)"
# How the default score normalises, per dataset: survey frames (orbital products) by themselves; rover
# browse views, where a whole frame can be hardware, over all views together.
NORMALISATION = {"lroc_nac_craters": "robust_z", "hirise_landmarks": "robust_z", "msl_surface": "pooled"}
# Windows chosen on validation (the two λ mosaics, craters >= 32 px, zoo orbital-gray-vae, AP over random):
# 32+64 px 2.23x, 64 px alone 2.17x, 32+64+128 px 2.09x, 128 px alone 1.53x (mean of z; max: 2.12x, 1.91x).
DEFAULT_SCORER = MultiScale(windows=(32, 64))
BASELINES = ("patch std", "RX (patch features)", "isolation forest (mu)", "kNN (mu)")
FRAME_Z_KNN = "frame-z kNN (mu)"  # the candidate scorer of baselines.frame_z_knn: its own acceptance rows
LOCAL_Z = "local z (mu, rec)"  # the candidate of edgeae.anomaly.context.local_novelty (spatial context)
CONTEXT_KNN = "two-context kNN (mu)"  # the candidate of baselines.context_knn (frame and product contexts)
SCORERS = (DEFAULT, FRAME_Z_KNN, LOCAL_Z, CONTEXT_KNN)  # the scorers whose issue-12 targets are checked
MSL_GROUPS: dict[str, frozenset[int]] = {
    "calibration targets": frozenset({1, 2, 12, 14}),
    "drill and drill holes": frozenset({4, 5}),
    "wheel": frozenset({24}),
}


def default_scorer(dataset: str) -> MultiScale:
    """The default multi-scale scorer with the normalisation of ``dataset``."""
    return replace(DEFAULT_SCORER, normalise=NORMALISATION.get(dataset, DEFAULT_SCORER.normalise))


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


@dataclass
class Frame:
    """One scored frame: the base-window scores, the per-window raw scores, and baseline features."""

    name: str
    result: PatchScores
    windows: dict[int, np.ndarray]
    std: np.ndarray
    rx_features: np.ndarray


def lroc_files(root: Path) -> list[Path]:
    """The LROC NAC mosaics that are evaluated (all but the λ-validation ones), sorted."""
    from edgeae.train.vae import LAMBDA_FILES

    held = {Path(f).name for f in LAMBDA_FILES}
    files = sorted(p for p in (root / LROC_DIR).glob("*.png") if p.name not in held)
    if not files:
        raise FileNotFoundError(f"no LROC NAC mosaics under {root / LROC_DIR}")
    return files


def _read(path: Path, channels: int) -> tuple[np.ndarray, np.ndarray]:
    from edgeae.imageio import read_image

    img = read_image(path, channels=channels)
    return img.pixels, img.valid


def score_frame(
    pixels: np.ndarray,
    valid: np.ndarray,
    scorer: PatchScorer,
    ms: MultiScale,
    patch: int,
    stride: int,
    *,
    min_valid: float = 0.0,
    batch: int = 256,
    name: str = "<array>",
    fill: bool = False,
) -> Frame:
    """Score one frame at every window size of ``ms`` and collect the baselines' patch features. ``fill``
    (``edgeae evaluate --fill-nodata``): the patches' no-data filled with each patch's valid mean, as
    ``edgeae score`` does, for the patch scores and the baselines' tiles (not the other window sizes of ``ms``);
    off by default: the published evaluation scores no-data as read."""
    r = score_array(pixels, scorer, patch, stride, valid=valid, min_valid=min_valid, batch=batch, file=name, fill=fill)
    if len(r) == 0 and min_valid > 0:
        r = score_array(pixels, scorer, patch, stride, valid=valid, min_valid=0.0, batch=batch, file=name, fill=fill)
    one_view = replace(scorer, views=1) if scorer.views > 1 else scorer  # the views' latents: of the patches only
    per = score_windows(pixels, one_view, r, ms, patch, batch)
    tiles = np.stack([pixels[y : y + patch, x : x + patch] for x, y in zip(r.x, r.y, strict=True)])
    tiles = tiles.transpose(0, 3, 1, 2)  # (N, C, P, P)
    if fill:
        from edgeae.strips import fill_patches

        masks = np.stack([valid[y : y + patch, x : x + patch] for x, y in zip(r.x, r.y, strict=True)])
        part = np.flatnonzero((masks.mean(axis=(1, 2)) < 1.0) & masks.any(axis=(1, 2)))
        if part.size:
            tiles = np.ascontiguousarray(tiles)
            tiles[part] = fill_patches(tiles[part], masks[part])
    return Frame(
        name=name,
        result=r,
        windows={w: np.asarray(per[w]["score"], dtype=np.float64) for w in ms.windows},
        std=baselines.patch_std(tiles),
        rx_features=baselines.rx_features(tiles),
    )


def _methods(
    scorer: PatchScorer, frames: list[Frame], ms: MultiScale, seed: int, groups: list[str] | None = None
) -> dict[str, np.ndarray]:
    """Every method's score of every patch of ``frames`` (concatenated in frame order); ``groups``: each frame's
    parent product (the second context of ``two-context kNN``; None: all frames are one)."""
    results = [f.result for f in frames]
    # every extra over all frames, but the views' latents (8x μ) only where a method needs them pooled
    cat = {k: np.concatenate([r.extras[k] for r in results]) for k in results[0].extras if k != "mu_views"}
    single = np.concatenate([r.score for r in results])
    methods: dict[str, np.ndarray] = {DEFAULT: np.concatenate(multiscale_scores([f.windows for f in frames], ms))}
    if scorer.kind == "vae":
        methods |= {"vae a(x)": single, "reconstruction error": cat["rec"], "||mu||^2": cat["mu2"]}
    else:
        methods["cae masked error"] = single
    std = np.concatenate([f.std for f in frames])
    methods["patch std"] = std
    methods["RX (patch features)"] = np.concatenate(baselines.rx([f.rx_features for f in frames]))
    pooled = ms.normalise == "pooled"
    if scorer.kind == "vae":
        methods["isolation forest (mu)"] = baselines.isolation_forest(cat["mu"], seed=seed)
        methods["kNN (mu)"] = baselines.knn_distance(baselines.robust_z(cat["mu"]))
        methods[FRAME_Z_KNN] = np.concatenate(
            baselines.frame_z_knn([r.extras["mu"] for r in results], pooled=pooled, floor=baselines.LATENT_MAD_FLOOR)
        )
        # a candidate (issue 12): each patch's μ and error against those of the patches around it on its frame
        methods[LOCAL_Z] = np.concatenate(
            frames_local_novelty(
                [r.extras["mu"] for r in results], [r.extras["rec"] for r in results], [r.xy for r in results]
            )
        )
        # a candidate (issue 12): the latents scaled within the frame and within its product, two kNN scores summed
        # (pooled datasets: one context, the whole set); views > 1: each view scaled on its own, then averaged
        key = "mu_views" if "mu_views" in results[0].extras else "mu"
        per = [np.concatenate([r.extras[key] for r in results])] if pooled else [r.extras[key] for r in results]
        methods[CONTEXT_KNN] = np.concatenate(baselines.context_knn(per, None if pooled else groups))
        # a candidate (issue 12): each term normalised on its own, then the larger: a patch is unusual when its
        # reconstruction error *or* its latent norm is, so texture is not drowned by the brightness term
        parts = [(cat["rec"], cat["mu2"])] if pooled else [(r.extras["rec"], r.extras["mu2"]) for r in results]
        methods["max z (rec, ||mu||^2)"] = np.concatenate(
            [np.maximum(frame_normalise(a, "robust_z", True), frame_normalise(b, "robust_z", True)) for a, b in parts]
        )
        # the orbital mission's flight score (edgeae.anomaly.terms): each term over its frame median, the larger
        methods[TERMS_MAX] = np.concatenate([frame_terms_max(a, b) for a, b in parts])
    # ablations: what the normalisation and each window size give on their own
    for w in ms.windows:
        one = replace(ms, windows=(w,))
        methods[f"window {w} only, z"] = np.concatenate(multiscale_scores([f.windows for f in frames], one))
    stds = [np.concatenate([f.std for f in frames])] if pooled else [f.std for f in frames]
    methods["patch std, z"] = np.concatenate([frame_normalise(s, "robust_z", ms.log) for s in stds])
    return methods


def score_lroc(
    root: Path,
    scorer: PatchScorer,
    patch: int = 64,
    batch: int = 256,
    limit: int | None = None,
    seed: int = 0,
    progress: Callable[[Any], Any] = iter,
    fill: bool = False,
    ms: MultiScale | None = None,
    files: list[Path] | None = None,
) -> Scored:
    """Score every patch of the evaluated LROC mosaics (or of ``files``: e.g. the λ mosaics, for validation
    studies); features = crater size bins and all craters."""
    from edgeae.datasets import SPLITS

    ms = ms or default_scorer("lroc_nac_craters")
    every = lroc_files(root) if files is None else list(files)
    files = every[:limit]
    test_names = {Path(p).name for p in SPLITS["orbital_gray"]["test"]}
    frames, images, points, craters_all = [], [], [], []
    for f in progress(files):
        pix, valid = _read(f, scorer.channels)
        fr = score_frame(pix, valid, scorer, ms, patch, LROC_STRIDE, batch=batch, name=f.name, fill=fill)
        frames.append(fr)
        images.append(pix)
        craters = read_craters(crater_file_for(f))
        craters_all.append((fr.result, craters))
        points.append(craters[craters[:, 2] >= PLOT_FEATURE_MIN, :2])
    methods = _methods(scorer, frames, ms, seed)
    results = [fr.result for fr in frames]
    n = sum(len(r) for r in results)
    everything = np.ones(n, dtype=bool)
    in_test = np.concatenate([np.full(len(r), r.file in test_names) for r in results])
    features: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for lo, hi in ((0.0, math.inf), *CRATER_BINS):
        name = "any crater" if lo == 0.0 and math.isinf(hi) else bin_name(lo, hi)
        pos = np.concatenate([patch_labels(r.xy, patch, c, lo, hi) for r, c in craters_all])
        features[name] = (pos, everything)
    plot_feature = bin_name(PLOT_FEATURE_MIN, math.inf)
    large = np.concatenate([patch_labels(r.xy, patch, c, PLOT_FEATURE_MIN) for r, c in craters_all])
    features[plot_feature] = (large, everything)
    if in_test.any() and not in_test.all():
        features[f"{plot_feature} (test-split mosaics)"] = (large, in_test)
    primary = next(iter(methods))
    for r, s in zip(results, _split(methods[primary], results), strict=True):
        r.score = s  # maps and galleries show the default score
    return Scored(
        methods=methods,
        features=features,
        primary=primary,
        images=images,
        unit_image=np.concatenate([np.full(len(r), i) for i, r in enumerate(results)]),
        unit_xy=np.concatenate([r.xy for r in results]),
        latents=np.concatenate([r.extras["mu"] for r in results]) if scorer.kind == "vae" else None,
        patch_results=results,
        points=points,
        plot_feature=plot_feature,
        info={
            "sampled": len(files) < len(every),
            "files": [f.name for f in files],
            "test_split_files": sorted(test_names & {f.name for f in files}),
            "patch": patch,
            "stride": LROC_STRIDE,
            "default_scorer": ms.describe(),
            "patches_with_nodata": int(sum(int((r.valid_frac < 1).sum()) for r in results)),
        },
    )


def _split(values: np.ndarray, results: list[PatchScores]) -> list[np.ndarray]:
    bounds = np.cumsum([0] + [len(r) for r in results])
    return [values[a:b] for a, b in itertools.pairwise(bounds)]


def _centre_index(r: PatchScores) -> int:
    """Index of the patch whose centre is nearest the image centre."""
    cy, cx = (r.shape[0] - r.patch) / 2.0, (r.shape[1] - r.patch) / 2.0
    return int(np.argmin((r.x - cx) ** 2 + (r.y - cy) ** 2))


def _per_unit(per_patch: dict[str, np.ndarray], results: list[PatchScores]) -> tuple[dict[str, np.ndarray], list[int]]:
    """Each unit (crop, image) scored by its highest patch, for every method; index of the primary's best."""
    bounds = np.cumsum([0] + [len(r) for r in results])
    methods = {k: np.maximum.reduceat(v, bounds[:-1]) for k, v in per_patch.items()}
    primary = next(iter(per_patch))
    best = [int(np.argmax(per_patch[primary][a:b])) for a, b in itertools.pairwise(bounds)]
    return methods, best


def score_hirise(
    root: Path,
    scorer: PatchScorer,
    patch: int = 64,
    batch: int = 256,
    limit: int | None = None,
    seed: int = 0,
    progress: Callable[[Any], Any] = iter,
    fill: bool = False,
    ms: MultiScale | None = None,
) -> Scored:
    """Score the landmark crops of the evaluation products; a crop's score is the max over its patches."""
    ms = ms or default_scorer("hirise_landmarks")
    labels = read_hirise_labels(root / "hirise_landmarks" / "labels.txt")
    train = hirise_training_products(labels)
    crops = [(f, c) for f, c in labels if hirise_product(f) not in train and c in HIRISE_CLASSES]
    sampled = limit is not None and 0 < limit < len(crops)
    if limit:
        rng = np.random.default_rng(seed)
        crops = [crops[i] for i in sorted(rng.choice(len(crops), size=min(limit, len(crops)), replace=False))]
    frames, images = [], []
    for f, _ in progress(crops):
        pix, valid = _read(root / "hirise_landmarks" / "images" / f, scorer.channels)
        frames.append(score_frame(pix, valid, scorer, ms, patch, HIRISE_STRIDE, batch=batch, name=f, fill=fill))
        images.append(pix)
    results = [fr.result for fr in frames]
    per_patch = _methods(scorer, frames, ms, seed, groups=[hirise_product(f) for f, _ in crops])
    methods, best = _per_unit(per_patch, results)
    primary = next(iter(methods))
    bounds = np.cumsum([0] + [len(r) for r in results])
    # the landmark sits at the crop centre: also rank crops by the patch nearest the centre
    centre = [_centre_index(r) for r in results]
    methods[f"{primary}, centre patch"] = per_patch[primary][bounds[:-1] + np.array(centre)]
    for r, s in zip(results, _split(per_patch[primary], results), strict=True):
        r.score = s
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
        patch_results=results,
        plot_feature="classes 1-4 together",
        info={
            "sampled": sampled,
            "crops": len(crops),
            "classes": {str(k): int((cls == k).sum()) for k in HIRISE_CLASSES},
            "patch": patch,
            "stride": HIRISE_STRIDE,
            "crop_score": "max over 25 patches (and the centre patch alone)",
            "default_scorer": ms.describe() + " (frame = crop)",
            "training_products_excluded": len(train),
        },
    )


def score_msl(
    root: Path,
    scorer: PatchScorer,
    patch: int = 64,
    batch: int = 256,
    limit: int | None = None,
    seed: int = 0,
    progress: Callable[[Any], Any] = iter,
    fill: bool = False,
    ms: MultiScale | None = None,
    split: str = "val",
) -> Scored:
    """Score the MSL surface images of the ``split`` sols (hardware and targets vs ground; validation data)."""
    from edgeae.anomaly.msl import MIN_VALID
    from edgeae.datasets import MSL_GROUND_CLASS, MSL_HARDWARE_CLASSES, msl_surface_items

    ms = ms or default_scorer("msl_surface")
    items = [it for it in msl_surface_items(split, root) if it[1] == MSL_GROUND_CLASS or it[1] in MSL_HARDWARE_CLASSES]
    sampled = limit is not None and 0 < limit < len(items)
    if limit:
        rng = np.random.default_rng(seed)
        items = [items[i] for i in sorted(rng.choice(len(items), size=min(limit, len(items)), replace=False))]
    frames, images = [], []
    for path, _, _ in progress(items):
        pix, valid = _read(path, scorer.channels)
        frames.append(
            score_frame(
                pix, valid, scorer, ms, patch, MSL_STRIDE, min_valid=MIN_VALID, batch=batch, name=path.name, fill=fill
            )
        )
        images.append(pix)
    results = [fr.result for fr in frames]
    per_patch = _methods(scorer, frames, ms, seed)
    methods, best = _per_unit(per_patch, results)
    for r, s in zip(results, _split(per_patch[next(iter(per_patch))], results), strict=True):
        r.score = s
    cls = np.array([c for _, c, _ in items])
    neg = cls == MSL_GROUND_CLASS
    hw = np.isin(cls, sorted(MSL_HARDWARE_CLASSES))
    features: dict[str, tuple[np.ndarray, np.ndarray]] = {"hardware and targets": (hw, neg | hw)}
    for name, group in MSL_GROUPS.items():
        pos = np.isin(cls, sorted(group))
        features[name] = (pos, neg | pos)
    rest = hw & ~np.isin(cls, sorted(set().union(*MSL_GROUPS.values())))
    features["rover deck, arm and instruments"] = (rest, neg | rest)
    latents = None
    if scorer.kind == "vae":
        bounds = np.cumsum([0] + [len(r) for r in results])
        latents = np.concatenate([r.extras["mu"] for r in results])[bounds[:-1] + np.array(best)]
    return Scored(
        methods=methods,
        features=features,
        primary=next(iter(methods)),
        images=images,
        unit_image=np.arange(len(items)),
        unit_xy=np.array([[r.x[i], r.y[i]] for r, i in zip(results, best, strict=True)]).reshape(-1, 2),
        latents=latents,
        patch_results=results,
        plot_feature="hardware and targets",
        info={
            "sampled": sampled,
            "split": f"MSL surface images of the {split} sols (validation benchmark, never test data)",
            "images": len(items),
            "sols": sorted({s for _, _, s in items}),
            "ground": int(neg.sum()),
            "hardware_and_targets": int(hw.sum()),
            "patch": patch,
            "stride": MSL_STRIDE,
            "image_score": f"max over patches with >= {MIN_VALID:.0%} valid pixels",
            "default_scorer": ms.describe(),
        },
    )


ACCEPTANCE: dict[str, dict[str, Any]] = {
    "lroc_nac_craters": {"feature": bin_name(32.0, math.inf), "ap_gain": 1.2},
    "hirise_landmarks": {"feature": f"class 1 {HIRISE_CLASSES[1]}", "ap_gain": 1.2, "auc": 0.80},
    "msl_surface": {"feature": "hardware and targets", "auc": 0.85},
}


MIN_COUNT = 10  # fewer positives (or negatives) of a target's feature: its checks are indicative, not met/missed


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def acceptance(
    dataset: str, rows: list[dict[str, Any]], primary: str = DEFAULT, sampled: bool = False
) -> list[dict[str, Any]]:
    """The targets of issue 12 for one dataset: the default scorer's AP at least ``ap_gain`` × every
    baseline's, and its ROC AUC at least ``auc``. One dict per check: what, value, target, passed, the feature's
    positives and negatives, and ``indicative``: measured on a sample (``sampled``: a ``--limit`` left items out)
    or on fewer than :data:`MIN_COUNT` positives or negatives, so not a verdict on the target. A check that
    cannot be computed (no positive or no negative) is kept with ``value`` and ``passed`` None."""
    spec = ACCEPTANCE.get(dataset)
    if not spec:
        return []
    feat = spec["feature"]
    rs = {r["method"]: r for r in rows if r["feature"] == feat}
    if primary not in rs:  # this model has no such scorer (a CAE has no latents)
        return []
    me = rs[primary]
    pos, neg = me.get("positives"), me.get("negatives")
    few = pos is not None and neg is not None and min(pos, neg) < MIN_COUNT
    base = {"dataset": dataset, "scorer": primary, "feature": feat, "positives": pos, "negatives": neg,
            "indicative": bool(sampled or few)}  # fmt: skip
    checks: list[tuple[str, str | None]] = [(f"AP vs {b}", b) for b in BASELINES if b in rs if "ap_gain" in spec]
    checks += [("ROC AUC", None)] if "auc" in spec else []
    if me["ap"] is None:  # 0 positives or 0 negatives: nothing to rank, one row says so for all the checks
        none = "0 positives" if not pos else "0 negatives"
        why = f"not evaluated: {none}" + (" in this sample" if sampled else "")
        what = ", ".join(dict.fromkeys("AP vs each baseline" if b else c for c, b in checks))
        target = ", ".join(dict.fromkeys(_target(spec, b) for _, b in checks))
        return [{**base, "check": what, "value": None, "detail": why, "target": target, "passed": None}]
    out = []
    for check, b in checks:
        if b is None:
            value, detail = me["auc"], f"{me['auc']:.3f}"
        else:
            value = me["ap"] / rs[b]["ap"] if rs[b]["ap"] > 0 else math.inf
            detail = (f"{me['ap']:.3f} vs {rs[b]['ap']:.3f} "
                      f"({me['improvement']:.2f}x vs {rs[b]['improvement']:.2f}x random)")  # fmt: skip
        goal = spec["auc"] if b is None else spec["ap_gain"]
        out.append({**base, "check": check, "value": value, "detail": detail, "target": _target(spec, b),
                    "passed": bool(value >= goal)})  # fmt: skip
    return out


def _target(spec: dict[str, Any], baseline: str | None) -> str:
    return f">= {spec['auc']:.2f}" if baseline is None else f">= {spec['ap_gain']:.2f}x"


def verdict(check: dict[str, Any]) -> str:
    """The ``met`` cell of a check: yes, **MISSED**, not evaluated, or indicative (n=...) on a sample or on fewer
    than :data:`MIN_COUNT` positives or negatives (whatever the value, it says nothing about the target)."""
    if check["passed"] is None:
        return "not evaluated"
    if check.get("indicative"):
        pos, neg = check.get("positives"), check.get("negatives")
        if pos is None or neg is None:
            return "indicative (a sample)"
        return f"indicative (n={_plural(pos, 'positive')} / {_plural(neg, 'negative')})"
    return "yes" if check["passed"] else "**MISSED**"


def acceptance_markdown(
    checks: list[dict[str, Any]],
    models: dict[str, str] | None = None,
    data: dict[str, str] | None = None,
    run: str = "",
) -> str:
    """``summary.md``: one row per target check, MISSED where a target is not met (indicative on a sample or too
    few positives, "not evaluated" where it cannot be computed); ``models``: per dataset, the model, ``run``:
    the settings shared by every dataset (views, seed, CAE keep); ``data``: per dataset, what was evaluated
    (sample sizes, a ``--limit``, the default scorer's settings)."""
    out = [
        "### Targets of issue 12 (each scorer vs the baselines)",
        "",
        "| dataset | scorer | feature | check | scorer vs baseline | ratio / value | target | met |",
        "|---|---|---|---|---|---:|---|---|",
    ]
    for c in checks:
        ds = c["dataset"] + (" (validation)" if c["dataset"] in VALIDATION_ONLY else "")
        value = "n/a" if c["value"] is None else f"{c['value']:.2f}"
        out.append(
            f"| {ds} | {c.get('scorer', DEFAULT)} | {c['feature']} | {c['check']} | {c['detail']} | "
            f"{value} | {c['target']} | {verdict(c)} |"
        )
    if not checks:
        out.append("| (no target checked) | | | | | | | |")
    if any(verdict(c).startswith("indicative") for c in checks):
        out += ["", f"indicative: measured on a sample (--limit) or on fewer than {MIN_COUNT} positives or "
                "negatives; the targets are stated for the whole split."]  # fmt: skip
    if models:
        out += ["", "Models: " + "; ".join(f"{d}: `{m}`" for d, m in models.items()) + (f" ({run})" if run else "")
                + "."]  # fmt: skip
    if data:
        out += ["", "Data: " + "; ".join(f"{d}: {v}" for d, v in data.items()) + "."]
    return "\n".join(out) + "\n"


def run_settings(
    scorer: PatchScorer, ms: MultiScale, model: str | None, limit: int | None, seed: int, fill: bool = False
) -> dict[str, Any]:
    """What a run's numbers depend on beyond the data: model, views, seed, limit, the default scorer's windows,
    normalisation and combination, the CAE's kept fraction (``results.json["info"]["settings"]``)."""
    return {
        "model": model, "model_kind": scorer.kind, "views": scorer.views, "seed": seed, "limit": limit,
        "windows": list(ms.windows), "normalise": ms.normalise, "combine": ms.combine,
        "cae_keep": scorer.cae_keep if scorer.kind == "cae" else None, "fill_nodata": fill,
    }  # fmt: skip


def settings_note(settings: dict[str, Any]) -> str:
    """The per-dataset settings of :func:`run_settings` as summary text (the shared ones go on the Models line)."""
    sizes = "/".join(str(w) for w in settings["windows"])
    filled = ", partial patches' no-data filled (--fill-nodata)" if settings.get("fill_nodata") else ""
    return f"windows {sizes} px, normalise {settings['normalise']}, combine {settings['combine']}{filled}"


def data_note(
    dataset: str,
    rows: list[dict[str, Any]],
    checks: list[dict[str, Any]],
    limit: int | None,
    sampled: bool = True,
    settings: dict[str, Any] | None = None,
) -> str:
    """What a dataset's checks were measured on: positives and negatives of each checked feature, and whether
    ``limit`` made it a sample (``sampled``: it left items out; the targets are stated for the whole split);
    ``settings`` (:func:`run_settings`): the default scorer's settings."""
    feats = dict.fromkeys(c["feature"] for c in checks if c["dataset"] == dataset)
    counts = {r["feature"]: (r["positives"], r["negatives"]) for r in rows if r["feature"] in feats}
    text = ", ".join(f"{f} {_plural(p, 'positive')} / {_plural(n, 'negative')}" for f, (p, n) in counts.items())
    text = text or "no target checked"
    if limit is not None and sampled:
        text += f" (a sample: --limit {limit}; the targets are stated for the whole split)"
    elif limit is not None:
        text += f" (--limit {limit}: every item)"
    if settings:
        text += f", {settings_note(settings)}"
    return text


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
    settings, :func:`run_settings`; ``model``: the model's name as given) to ``out``, replacing the outputs of an
    earlier run there (:func:`clear_outputs`). ``fill``: partial patches' no-data filled with their valid mean
    first, as ``edgeae score`` does (:func:`score_frame`)."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown evaluation dataset {dataset!r}; choose from {DATASETS}")
    if scorer.channels != CHANNELS[dataset]:
        raise ValueError(f"{dataset} needs a {CHANNELS[dataset]}-channel model, this one has {scorer.channels}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1 (or None for every file), got {limit}")
    ms = ms or default_scorer(dataset)
    bar: Callable[[Any], Any] = iter
    if progress:
        tqdm = require("tqdm").tqdm

        def bar(it: Any) -> Any:
            unit = {"lroc_nac_craters": "image", "hirise_landmarks": "crop", "msl_surface": "image"}[dataset]
            return tqdm(it, desc=dataset, unit=unit)

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
            (out / "results.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
            result["plots"] = [str(p) for p in made]
    return result

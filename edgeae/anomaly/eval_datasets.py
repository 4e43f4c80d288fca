"""The evaluation's labelled datasets (LRO NAC craters, HiRISE landmarks, MSL surface), each scored into units
(patches, crops, images) with a score per method and labels per feature (see :mod:`edgeae.anomaly.evaluate`)."""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeae.anomaly.eval_methods import _methods, default_scorer, score_frame
from edgeae.anomaly.labels import (
    CRATER_BINS,
    HIRISE_CLASSES,
    bin_name,
    crater_file_for,
    craters_outside,
    hirise_product,
    hirise_training_products,
    patch_labels,
    read_craters,
    read_hirise_labels,
)
from edgeae.anomaly.multiscale import MultiScale
from edgeae.anomaly.score import PatchScorer, PatchScores

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
MSL_GROUPS: dict[str, frozenset[int]] = {
    "calibration targets": frozenset({1, 2, 12, 14}),
    "drill and drill holes": frozenset({4, 5}),
    "wheel": frozenset({24}),
}

log = logging.getLogger(__name__)


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


def _check_images(paths: list[Path], listing: Path) -> None:
    """Every image to be scored exists, checked before the first is scored (not after hours of scoring)."""
    missing = [p for p in paths if not p.is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more of the {len(paths)} to score)" if len(missing) > 1 else ""
        raise FileNotFoundError(f"{missing[0]}, listed in {listing}, does not exist{more}")


def _read(path: Path, channels: int) -> tuple[np.ndarray, np.ndarray]:
    from edgeae.imageio import read_image

    img = read_image(path, channels=channels)
    return img.pixels, img.valid


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
    if not files:
        raise ValueError(f"no evaluable images in {root / LROC_DIR} (no mosaic given)")
    test_names = {Path(p).name for p in SPLITS["orbital_gray"]["test"]}
    labels = [read_craters(crater_file_for(f)) for f in files]  # every label file read before any scoring
    frames, images, points, craters_all, outside = [], [], [], [], {}
    for f, craters in zip(progress(files), labels, strict=True):
        pix, valid = _read(f, scorer.channels)
        fr = score_frame(pix, valid, scorer, ms, patch, LROC_STRIDE, batch=batch, name=f.name, fill=fill)
        frames.append(fr)
        images.append(pix)
        craters_all.append((fr.result, craters))
        points.append(craters[craters[:, 2] >= PLOT_FEATURE_MIN, :3])  # x, y and diameter: circles drawn to size
        if n_out := craters_outside(craters, pix.shape):
            outside[f.name] = n_out
            log.warning(
                "%s: %d of %d crater centres lie outside the %dx%d px image and label no patch",
                crater_file_for(f), n_out, len(craters), pix.shape[1], pix.shape[0],
            )  # fmt: skip
    _phase(progress, "lroc_nac_craters", frames, ms)
    methods = _methods(scorer, frames, ms, seed, dataset="lroc_nac_craters")
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
            "craters": int(sum(len(c) for c in labels)),
            "craters_outside_image": outside,  # per file: centres outside the image, in no patch's label
        },
    )


def _phase(progress: Callable[[Any], Any], dataset: str, frames: list[Any], ms: MultiScale) -> None:
    """After the scoring: one warning when a window of ``ms`` is larger than frames (their windows are mostly
    reflection), and one stderr line, where a progress bar was drawn, for what runs after its last item (without
    it the screen shows a finished bar while the methods and plots run)."""
    big = max(ms.windows)
    over = sum(1 for fr in frames if big > min(fr.result.shape[:2]))
    if over:
        log.warning("%s: the %d px window is larger than %d of the %d frames (mostly reflection there; --windows)",
                    dataset, big, over, len(frames))  # fmt: skip
    if progress is not iter:
        import sys

        print(
            f"{dataset}: {len(frames)} scored; ranking every method, then the tables and any plots",
            file=sys.stderr,
            flush=True,
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
    listing = root / "hirise_landmarks" / "labels.txt"
    labels = read_hirise_labels(listing)
    train = hirise_training_products(labels)
    held = [(f, c) for f, c in labels if hirise_product(f) not in train]
    crops = [(f, c) for f, c in held if c in HIRISE_CLASSES]
    unknown: dict[str, int] = {}
    for _, c in held:
        if c not in HIRISE_CLASSES:
            unknown[str(c)] = unknown.get(str(c), 0) + 1
    if unknown:
        log.warning(
            "%s: %d crops of classes %s (not one of %s) are not evaluated",
            listing, sum(unknown.values()), ", ".join(sorted(unknown)), ", ".join(str(k) for k in HIRISE_CLASSES),
        )  # fmt: skip
    if not crops:
        raise ValueError(f"no evaluable crops in {listing} (classes {sorted(HIRISE_CLASSES)} of the products not "
                         "trained on)")  # fmt: skip
    sampled = limit is not None and 0 < limit < len(crops)
    if limit:
        rng = np.random.default_rng(seed)
        crops = [crops[i] for i in sorted(rng.choice(len(crops), size=min(limit, len(crops)), replace=False))]
    _check_images([root / "hirise_landmarks" / "images" / f for f, _ in crops], listing)
    frames, images = [], []
    for f, _ in progress(crops):
        pix, valid = _read(root / "hirise_landmarks" / "images" / f, scorer.channels)
        frames.append(score_frame(pix, valid, scorer, ms, patch, HIRISE_STRIDE, batch=batch, name=f, fill=fill))
        images.append(pix)
    _phase(progress, "hirise_landmarks", frames, ms)
    results = [fr.result for fr in frames]
    per_patch = _methods(
        scorer, frames, ms, seed, groups=[hirise_product(f) for f, _ in crops], dataset="hirise_landmarks"
    )
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
            "classes_not_evaluated": unknown,  # crops of the products not trained on, of no known class
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
    from edgeae.datasets import MSL_GROUND_CLASS, MSL_HARDWARE_CLASSES, MSL_SURFACE_DIR, msl_surface_items

    ms = ms or default_scorer("msl_surface")
    listing = root / MSL_SURFACE_DIR / "train-calibrated-shuffled.txt"
    items = [it for it in msl_surface_items(split, root) if it[1] == MSL_GROUND_CLASS or it[1] in MSL_HARDWARE_CLASSES]
    if not items:
        raise ValueError(f"no evaluable images in {listing} (ground or hardware classes of the {split} sols)")
    sampled = limit is not None and 0 < limit < len(items)
    if limit:
        rng = np.random.default_rng(seed)
        items = [items[i] for i in sorted(rng.choice(len(items), size=min(limit, len(items)), replace=False))]
    _check_images([path for path, _, _ in items], listing)
    frames, images = [], []
    for path, _, _ in progress(items):
        pix, valid = _read(path, scorer.channels)
        frames.append(
            score_frame(
                pix, valid, scorer, ms, patch, MSL_STRIDE, min_valid=MIN_VALID, batch=batch, name=path.name, fill=fill
            )
        )
        images.append(pix)
    _phase(progress, "msl_surface", frames, ms)
    results = [fr.result for fr in frames]
    per_patch = _methods(scorer, frames, ms, seed, dataset="msl_surface")
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

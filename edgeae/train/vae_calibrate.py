"""Calibration of a trained VAE (:func:`calibrate`), on validation data only: λ, the weight of the latent term of
the anomaly score, then the alarm threshold.

- grey: λ on two LROC NAC crater mosaics kept apart from every reported figure (:data:`LAMBDA_FILES`), AP of
  "patch holds a crater centre ≥ 32 px", among the λ for which planted textured blocks rank in the top 2% of the
  orbital_gray val frames (:func:`edgeae.anomaly.planted.select_lambda`); threshold: the 99th percentile of
  the val split's patch scores;
- RGB: λ on MSL images of the *train* sols (hardware and targets vs ground, an image scored by its highest
  patch; the training used only their ``ground`` images), threshold on the rover val split;
- a folder of images (:func:`calibrate_folder`): no labels, so λ is not tuned: the caller's (``--lambda``), else
  median(rec) / median(μ²) of the val files' patches (both terms weigh alike in a typical patch); threshold as
  above, on the folder's val files.

The AP reported beside λ (``lambda_ap``) is in-sample: λ is chosen to maximise it on the same images
(``lambda_ap_in_sample``), so it flatters the model; ``baseline_patch_std_ap`` is the AP of a trivial score, the
patches' standard deviation, on the same patches and labels, the figure to read it against.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeae.train.vae_config import DATASETS

if TYPE_CHECKING:
    from edgeae.anomaly.score import PatchScores

# LROC NAC mosaics used only to choose λ (never reported); the other 10 are the evaluation set.
LAMBDA_FILES: tuple[str, ...] = (
    "orbital_gray/lroc_nac_craters/M1266003170_mosaic_train_small.png",
    "orbital_gray/lroc_nac_craters/M1275410097_mosaic_train_small.png",
)
LAMBDA_CRATER_MIN = 32.0  # px: the "large crater" feature λ is tuned for
MSL_CALIBRATION_IMAGES = 100  # per class (ground, hardware) of the train sols, for λ of the RGB model
MSL_CALIBRATION_STRIDE = 64
THRESHOLD_MAX_PATCHES = 2000  # the threshold uses the val files in order until this many patches


class _WithPatchStd:
    """A patch scorer that also returns each patch's standard deviation (``patch_std``): the trivial baseline
    the in-sample λ-tuning AP is reported against."""

    def __init__(self, scorer: Any) -> None:
        self.scorer = scorer
        self.channels = scorer.channels

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        out = dict(self.scorer(x))
        out["patch_std"] = np.asarray(x, np.float64).reshape(len(x), -1).std(axis=1)
        return out


def _planted_frames(scorer: Any, root: Path, patch: int, batch: int) -> list[tuple[Any, ...]]:
    """(rec, mu2 of the grid patches; rec, mu2 of each planted block) of every orbital_gray val frame."""
    from edgeae.anomaly.planted import BLOCKS, block, grid
    from edgeae.datasets import split_files
    from edgeae.imageio import read_image

    blocks = np.stack([block(k, patch)[None] for k in BLOCKS]).astype(np.float32)
    b = scorer(blocks)
    frames = []
    for f in split_files("orbital_gray", "val", root):
        img = read_image(f, channels=1)
        h, w = img.valid.shape[:2]
        pos = [(y, x) for y, x in grid(h, w, patch) if img.valid[y : y + patch, x : x + patch].mean() >= 0.9]
        tiles = np.stack([img.pixels[y : y + patch, x : x + patch].transpose(2, 0, 1) for y, x in pos])
        rec, mu2 = [], []
        for i in range(0, len(tiles), batch):
            o = scorer(tiles[i : i + batch])
            rec.append(o["rec"])
            mu2.append(o["mu2"])
        frames.append((np.concatenate(rec), np.concatenate(mu2), b["rec"], b["mu2"]))
    return frames


def _calibrate_grey(scorer: Any, root: Path, patch: int, batch: int) -> dict[str, Any]:
    from edgeae.anomaly.calibrate import RELATIVE_GRID
    from edgeae.anomaly.labels import crater_file_for, patch_labels, read_craters
    from edgeae.anomaly.metrics import average_precision
    from edgeae.anomaly.planted import select_lambda
    from edgeae.anomaly.score import score_array
    from edgeae.imageio import read_image

    rec, mu2, std, labels = [], [], [], []
    with_std = _WithPatchStd(scorer)
    for rel in LAMBDA_FILES:
        img = read_image(root / rel, channels=1)
        r = score_array(img.pixels, with_std, patch, patch // 2, valid=img.valid, batch=batch, file=rel)
        rec.append(r.extras["rec"])
        mu2.append(r.extras["mu2"])
        std.append(r.extras["patch_std"])
        labels.append(patch_labels(r.xy, patch, read_craters(crater_file_for(root / rel)), LAMBDA_CRATER_MIN))
    rec_a, mu2_a, lab = np.concatenate(rec), np.concatenate(mu2), np.concatenate(labels)
    scale = float(np.median(rec_a) / max(float(np.median(mu2_a)), 1e-12))
    chosen = select_lambda(
        rec_a, mu2_a, lab, _planted_frames(scorer, root, patch, batch), [r * scale for r in RELATIVE_GRID]
    )
    return {
        "lambda": float(chosen["lambda"]),  # type: ignore[arg-type]
        "lambda_ap": float(chosen["ap"]),  # type: ignore[arg-type]
        "lambda_ap_in_sample": True,  # λ was chosen on these same patches
        "baseline_patch_std_ap": float(average_precision(np.concatenate(std), lab)),
        "lambda_grid": chosen["grid"],
        "lambda_planted_constraint_met": chosen["constraint_met"],
        "lambda_files": [Path(r).name for r in LAMBDA_FILES],
        "lambda_feature": f"craters >= {LAMBDA_CRATER_MIN:g} px (planted checker/noise blocks in the top 2%)",
    }


def _calibrate_rgb(scorer: Any, root: Path, patch: int, batch: int, seed: int) -> dict[str, Any]:
    from edgeae.anomaly.calibrate import RELATIVE_GRID
    from edgeae.anomaly.metrics import average_precision
    from edgeae.anomaly.msl import score_msl_images
    from edgeae.datasets import MSL_GROUND_CLASS, MSL_HARDWARE_CLASSES, msl_surface_items

    items = msl_surface_items("train", root)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x315]))
    chosen: list[tuple[Path, int, int]] = []
    for want in (lambda c: c == MSL_GROUND_CLASS, lambda c: c in MSL_HARDWARE_CLASSES):
        pool = [it for it in items if want(it[1])]
        pick = rng.choice(len(pool), size=min(MSL_CALIBRATION_IMAGES, len(pool)), replace=False)
        chosen += [pool[i] for i in sorted(pick)]
    paths = [p for p, _, _ in chosen]
    per_image = score_msl_images(paths, _WithPatchStd(scorer), patch=patch, stride=MSL_CALIBRATION_STRIDE, batch=batch)
    y = np.array([c in MSL_HARDWARE_CLASSES for _, c, _ in chosen])
    rec = np.concatenate([r.extras["rec"] for r in per_image])
    mu2 = np.concatenate([r.extras["mu2"] for r in per_image])
    std = np.concatenate([r.extras["patch_std"] for r in per_image])
    bounds = np.cumsum([0] + [len(r) for r in per_image])
    return {
        **_rgb_lambda(rec, mu2, std, bounds, y, RELATIVE_GRID, average_precision),
        "lambda_files": f"{len(chosen)} MSL images of the train sols ({MSL_CALIBRATION_IMAGES} ground, "
        f"{MSL_CALIBRATION_IMAGES} hardware/targets), seed {seed}, patches at stride {MSL_CALIBRATION_STRIDE}",
        "lambda_feature": "MSL hardware and targets vs ground (image score = highest patch)",
    }


def _rgb_lambda(
    rec: np.ndarray,
    mu2: np.ndarray,
    std: np.ndarray,
    bounds: np.ndarray,
    y: np.ndarray,
    relative_grid: Any,
    average_precision: Any,
) -> dict[str, Any]:
    """λ of the RGB model: of ``relative_grid`` × median(rec)/median(μ²), the one whose image scores (highest patch
    of rec + λ·μ², images delimited by ``bounds``) give the best AP for the labels ``y``; that AP is in-sample.
    ``baseline_patch_std_ap``: the AP of the highest patch standard deviation ``std`` on the same images."""
    scale = float(np.median(rec) / max(float(np.median(mu2)), 1e-12))
    grid, best = [], (0.0, -1.0)
    for rel in relative_grid:
        lam = rel * scale
        s = np.maximum.reduceat(rec + lam * mu2, bounds[:-1])
        ap = average_precision(s, y)
        grid.append((float(lam), float(ap)))
        if ap > best[1] + 1e-12:
            best = (float(lam), float(ap))
    return {
        "lambda": best[0],
        "lambda_ap": best[1],
        "lambda_ap_in_sample": True,  # λ was chosen for this AP on these same images
        "baseline_patch_std_ap": float(average_precision(np.maximum.reduceat(std, bounds[:-1]), y)),
        "lambda_grid": grid,
    }


def calibrate(
    model: Any,
    metadata: Any,
    root: Path,
    patch: int,
    quantile: float,
    batch: int = 256,
    data: str = "orbital_gray",
    seed: int = 0,
) -> dict[str, Any]:
    """Tune λ on validation data (sets it in the model), then the threshold on the val split of ``data``."""
    from edgeae.anomaly.calibrate import threshold
    from edgeae.anomaly.score import make_scorer
    from edgeae.datasets import split_files
    from edgeae.predictor import TorchPredictor

    model.eval()
    scorer = make_scorer(TorchPredictor(model, metadata, "training"))
    if DATASETS[data] == 1:
        tuned = _calibrate_grey(scorer, root, patch, batch)
    else:
        tuned = _calibrate_rgb(scorer, root, patch, batch, seed)
    model.set_lambda(tuned["lambda"])
    scores = np.concatenate([r.score for r in _val_patches(scorer, split_files(data, "val", root), DATASETS[data],
                                                            patch, batch)])  # fmt: skip
    return {**tuned, "threshold": threshold(scores, quantile), "threshold_quantile": quantile,
            "threshold_patches": int(scores.size)}  # fmt: skip


def _val_patches(scorer: Any, files: list[Path], channels: int, patch: int, batch: int) -> list[PatchScores]:
    """The scored patches (non-overlapping, no-data skipped) of ``files`` in order, one result per file read,
    until :data:`THRESHOLD_MAX_PATCHES` patches."""
    from edgeae.anomaly.score import score_array
    from edgeae.imageio import read_image

    out: list[PatchScores] = []
    for f in files:
        if sum(len(r.score) for r in out) >= THRESHOLD_MAX_PATCHES:
            break
        img = read_image(f, channels=channels)
        out.append(score_array(img.pixels, scorer, patch, patch, valid=img.valid, batch=batch, file=str(f)))
    return out


def calibrate_folder(
    model: Any,
    metadata: Any,
    val_files: list[Path],
    patch: int,
    quantile: float,
    lam: float | None = None,
    batch: int = 256,
) -> dict[str, Any]:
    """λ and the threshold of a model trained on a folder of images (no labels: λ is not tuned).

    λ is ``lam`` (``--lambda``), else median(rec) / median(μ²) of the patches of ``val_files``; it is set in the
    model, then the threshold is the ``quantile`` of the val patches' scores, as for named data."""
    from edgeae.anomaly.calibrate import threshold
    from edgeae.anomaly.score import make_scorer
    from edgeae.predictor import TorchPredictor

    model.eval()
    scorer = make_scorer(TorchPredictor(model, metadata, "training"))
    channels = int(metadata.channels)
    if lam is None:
        first = _val_patches(scorer, val_files, channels, patch, batch)
        rec = np.concatenate([r.extras["rec"] for r in first])
        mu2 = np.concatenate([r.extras["mu2"] for r in first])
        lam = float(np.median(rec) / max(float(np.median(mu2)), 1e-12))
        source = "default: median(rec) / median(mu2) of the val patches"
    else:
        source = "--lambda"
    model.set_lambda(float(lam))
    results = _val_patches(scorer, val_files, channels, patch, batch)
    scores = np.concatenate([r.score for r in results])
    return {
        "lambda": float(lam),
        "lambda_source": source,
        "lambda_ap": None,  # nothing to measure it against
        "lambda_feature": "none: a folder has no labels to tune λ on",
        "threshold": threshold(scores, quantile),
        "threshold_quantile": quantile,
        "threshold_patches": int(scores.size),
        "threshold_files": [Path(r.file).name for r in results],
    }

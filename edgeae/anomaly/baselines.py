"""Non-deep and partial baselines scored on the same patches as the learned scorer.

- ``patch_std``: local contrast, the standard deviation of a patch's pixels (no model at all);
- ``rx``: the classical Reed-Xiaoli detector (Reed & Yu 1990) on **patch features**: each patch becomes the
  vector of its 8×8 block means per channel (64·C values: the patch's coarse appearance), and its score is the
  squared Mahalanobis distance to the background mean under the background covariance (global RX). The
  background is every patch of the same frame when the frame has at least :data:`RX_MIN_BACKGROUND` × D
  patches, else every evaluated patch together (small frames: HiRISE landmark crops, MSL browse images);
  the covariance is shrunk towards a scaled identity (Ledoit-Wolf), so it is invertible with few patches.
  Nothing is learned from labels or other data: like the isolation forest it is unsupervised and transductive;
- ``isolation_forest``: an isolation forest (scikit-learn) on the VAE latents μ, fitted on the evaluated
  patches themselves without their labels (unsupervised, transductive), seed fixed;
- ``knn_distance``: the mean Euclidean distance of each patch's VAE latent μ (each dimension robust-z scaled over
  the evaluated patches) to its ``k`` nearest other patches: the classical nearest-neighbour novelty score on the
  same features as the isolation forest (unsupervised, transductive);
- the two terms of a(x), reconstruction error and ||μ||², come from :class:`edgeae.anomaly.score.PatchScorer`.

And one learned-feature candidate built from them (issue 12), :func:`frame_z_knn`: each latent dimension is
robust-z scaled within its own frame first (so a product's overall brightness and texture, which move every
patch's μ together, cancel), then the kNN distance over every evaluated patch: a patch is unusual when it is
unlike its own frame *and* unlike the rest of the archive.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Sequence

import numpy as np

from edgeae._optional import require

RX_GRID = 8  # block means per side: a patch becomes an 8×8×C vector
RX_MIN_BACKGROUND = 4  # a frame is its own RX background when it has at least 4 × D patches
KNN_K = 20  # neighbours of the kNN scores (chosen on the HiRISE dev sample: k = 5 and 20 ranked alike)
KNN_MAX = 500_000  # patches a kNN score accepts (memory of the neighbour search is bounded by this)
# context_knn on a larger set measures each patch against a uniform sample of this many of the set's patches (its
# reference bank) instead of against all of them: O(N * bank) instead of O(N^2). Every evaluated set is smaller
# (HiRISE dev split: 50,425 patches), so its figures are exact; on that split a bank of 6,000 still gave ROC AUC
# 0.795-0.803 (seeds 0-2) against 0.805 exact (docs/anomaly.md, `python -m benchmarks.context_bank`).
CONTEXT_BANK = 100_000


def patch_std(patches: np.ndarray) -> np.ndarray:
    """(N, ...) patches -> (N,) standard deviation of each patch's values (float64)."""
    p = np.asarray(patches, dtype=np.float64)
    return p.reshape(len(p), -1).std(axis=1)


def rx_features(patches: np.ndarray, grid: int = RX_GRID) -> np.ndarray:
    """(N, C, P, P) or (N, P, P) patches -> (N, grid·grid·C) block means (P must be a multiple of ``grid``;
    otherwise the patch is cropped to the largest multiple)."""
    p = np.asarray(patches, dtype=np.float64)
    if p.ndim == 3:
        p = p[:, None]
    if p.ndim != 4:
        raise ValueError(f"expected (N, C, P, P) or (N, P, P) patches, got shape {p.shape}")
    n, c, h, w = p.shape
    bh, bw = h // grid, w // grid
    if bh == 0 or bw == 0:
        raise ValueError(f"a {h}×{w} patch is smaller than the {grid}×{grid} RX grid")
    p = p[:, :, : bh * grid, : bw * grid].reshape(n, c, grid, bh, grid, bw)
    return p.mean(axis=(3, 5)).reshape(n, -1)


def _shrunk_inverse(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and inverse Ledoit-Wolf covariance of (N, D) samples."""
    covariance = require("sklearn.covariance")
    lw = covariance.LedoitWolf(assume_centered=False).fit(z)
    cov = np.asarray(lw.covariance_, dtype=np.float64)
    # a tiny ridge keeps constant features (flat synthetic frames) invertible
    cov = cov + np.eye(len(cov)) * max(1e-12, 1e-9 * float(np.trace(cov)) / len(cov))
    return np.asarray(lw.location_, dtype=np.float64), np.linalg.inv(cov)


def rx_scores(features: np.ndarray, background: np.ndarray | None = None) -> np.ndarray:
    """Global RX: squared Mahalanobis distance of each (N, D) feature row to the background (default: the
    rows themselves) mean, under the background's shrunk covariance."""
    z = np.asarray(features, dtype=np.float64)
    if z.ndim != 2 or len(z) < 2:
        raise ValueError(f"RX needs (N >= 2, D) features, got shape {z.shape}")
    bg = z if background is None else np.asarray(background, dtype=np.float64)
    mean, inv = _shrunk_inverse(bg)
    d = z - mean
    return np.einsum("nd,de,ne->n", d, inv, d)


def rx(frames: Sequence[np.ndarray], min_background: int = RX_MIN_BACKGROUND) -> list[np.ndarray]:
    """RX scores of the patch features of several frames (a list of (N_i, D) arrays from :func:`rx_features`).

    Each frame with at least ``min_background`` × D patches is its own background; the others share one
    background made of every patch of every frame given."""
    frames = [np.asarray(f, dtype=np.float64) for f in frames]
    if not frames:
        return []
    dim = frames[0].shape[1]
    pooled = np.concatenate(frames)
    pooled_fit: tuple[np.ndarray, np.ndarray] | None = None
    out = []
    for f in frames:
        if len(f) >= min_background * dim:
            out.append(rx_scores(f))
            continue
        if pooled_fit is None:
            pooled_fit = _shrunk_inverse(pooled)
        mean, inv = pooled_fit
        d = f - mean
        out.append(np.einsum("nd,de,ne->n", d, inv, d))
    return out


def isolation_forest(latents: np.ndarray, seed: int = 0, n_estimators: int = 200) -> np.ndarray:
    """(N, D) -> (N,) anomaly scores (higher = more anomalous) of an isolation forest fitted on them."""
    ensemble = require("sklearn.ensemble")
    z = np.asarray(latents, dtype=np.float64)
    if z.ndim != 2 or len(z) < 2:
        raise ValueError(f"isolation forest needs (N >= 2, D) latents, got shape {z.shape}")
    forest = ensemble.IsolationForest(n_estimators=n_estimators, max_samples=min(256, len(z)), random_state=seed)
    forest.fit(z)
    return np.asarray(-forest.score_samples(z), dtype=np.float64)


def robust_scale(values: np.ndarray, floor: float | np.ndarray = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) -> per column (median, 1.4826 MAD), the MAD replaced by 1 where it is 0 (a constant column) and raised
    to ``floor`` where it is smaller (a column that varies by float noise only would otherwise blow that noise up)."""
    a = np.asarray(values, dtype=np.float64)
    if a.ndim != 2 or len(a) == 0:
        raise ValueError(f"robust z needs (N >= 1, D) values, got shape {a.shape}")
    med = np.median(a, axis=0)
    mad = 1.4826 * np.median(np.abs(a - med), axis=0)
    return med, np.where(mad > 1e-12, np.maximum(mad, floor), 1.0)


def robust_z(values: np.ndarray, floor: float | np.ndarray = 0.0) -> np.ndarray:
    """(N, D) -> each column minus its median over its scaled MAD (:func:`robust_scale`; a constant column gives 0)."""
    med, scale = robust_scale(values, floor)
    return (np.asarray(values, dtype=np.float64) - med) / scale


def knn_distance(features: np.ndarray, k: int = KNN_K, queries: np.ndarray | None = None) -> np.ndarray:
    """(N, D) -> (N,) mean Euclidean distance of each row to its ``k`` nearest other rows (fewer rows: all).

    With ``queries`` (M, D): the mean distance of each query to its ``k`` nearest rows (the same k as the rows
    get), for scoring something that is not one of the rows against them."""
    neighbors = require("sklearn.neighbors")
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"kNN needs (N >= 2, D) features, got shape {f.shape}")
    if len(f) > KNN_MAX:
        raise ValueError(f"kNN on {len(f):,} patches is more than the {KNN_MAX:,} it accepts: score fewer at once")
    q = None if queries is None else np.asarray(queries, dtype=np.float64)
    if q is not None and (q.ndim != 2 or q.shape[1] != f.shape[1]):
        raise ValueError(f"kNN queries must be (M, {f.shape[1]}), got shape {q.shape}")
    if not np.isfinite(f).all() or (q is not None and not np.isfinite(q).all()):
        raise ValueError("kNN features hold NaN or infinity")
    k = max(1, min(int(k), len(f) - 1))
    if q is not None:
        dist, _ = neighbors.NearestNeighbors(n_neighbors=k).fit(f).kneighbors(q)
        return np.asarray(dist.mean(axis=1), dtype=np.float64)
    dist, _ = neighbors.NearestNeighbors(n_neighbors=k + 1).fit(f).kneighbors(f)
    return np.asarray(dist[:, 1:].mean(axis=1), dtype=np.float64)  # column 0 is the row itself


def bank_knn_distance(features: np.ndarray, bank: np.ndarray, k: int = KNN_K) -> np.ndarray:
    """(N, D) features and sorted row indices ``bank`` -> (N,) mean Euclidean distance of each row to its ``k``
    nearest bank rows, itself left out (a row in the bank is not its own neighbour)."""
    neighbors = require("sklearn.neighbors")
    f = np.asarray(features, dtype=np.float64)
    idx = np.asarray(bank, dtype=np.int64)
    if f.ndim != 2 or len(idx) < 2 or idx.ndim != 1:
        raise ValueError(f"bank kNN needs (N, D) features and >= 2 bank rows, got {f.shape} and {idx.shape}")
    if len(idx) > KNN_MAX:
        raise ValueError(f"a kNN bank of {len(idx):,} patches is more than the {KNN_MAX:,} it accepts")
    if (np.diff(idx) <= 0).any() or idx[0] < 0 or idx[-1] >= len(f):
        raise ValueError("bank rows must be sorted, distinct and within the features")
    if not np.isfinite(f).all():
        raise ValueError("kNN features hold NaN or infinity")
    k = max(1, min(int(k), len(idx) - 1))
    dist, _ = neighbors.NearestNeighbors(n_neighbors=k + 1).fit(f[idx]).kneighbors(f)
    in_bank = np.zeros(len(f), bool)
    in_bank[idx] = True
    # a bank row's nearest is itself (distance 0; an exact duplicate ties with it at 0, so either may be dropped)
    return np.where(in_bank, dist[:, 1:].mean(axis=1), dist[:, :k].mean(axis=1))


def frame_z_knn(
    latents: Sequence[np.ndarray], k: int = KNN_K, pooled: bool = False, floor: float = 0.0
) -> list[np.ndarray]:
    """Per frame (N_i, D) latents -> per frame (N_i,) scores: robust z per dimension within each frame (over all
    frames together when ``pooled``), each MAD at least ``floor`` (the evaluation and ``edgeae score`` pass
    :data:`LATENT_MAD_FLOOR` for VAE latents; 0 for features on another scale), then :func:`knn_distance` over
    every patch of every frame."""
    frames = [np.asarray(z, dtype=np.float64) for z in latents]
    if any(z.ndim != 2 for z in frames):
        raise ValueError(f"frame-z kNN needs (N_i, D) latents per frame, got shapes {[z.shape for z in frames]}")
    # scaled over all frames together when pooled, else each by itself (a frame with no patch contributes nothing)
    if pooled:
        cat = robust_z(np.concatenate(frames), floor)
    else:
        cat = np.concatenate([robust_z(z, floor) if len(z) else z for z in frames])
    scores = knn_distance(cat, k)
    bounds = np.cumsum([0] + [len(z) for z in frames])
    return [scores[a:b] for a, b in itertools.pairwise(bounds)]


CONTEXT_WEIGHTS = (0.5, 0.5)  # frame context, group context: equal, chosen without labels (docs/anomaly.md)
# Floors of the latent scalings (context_knn; frame_z_knn as the evaluation and `edgeae score` call it). A VAE
# latent is on the scale of its N(0, 1) prior: a dimension whose MAD in a context is below 1e-3 (float noise on a
# flat frame) is scaled by 1e-3, not by its noise; and context_knn's kNN distances of a context whose patches are
# nearly all alike are scaled by at least 1e-3 of their mean. Neither floor moves any figure of the evaluation
# (its rows are identical with and without them); two MarsScapes colour label maps (flat colours: over half their
# patches alike) scored up to 4.9e11 under context-knn without them, 6.3e3 with them.
LATENT_MAD_FLOOR = 1e-3
CONTEXT_DISTANCE_FLOOR = 1e-3


def _views_z(frames: Sequence[np.ndarray], members: Sequence[int]) -> np.ndarray:
    """Robust z of the given frames' (N_i, V, D) latents pooled, each view scaled on its own, the mean over views
    (one view's (N, D) slice in float64 at a time: the latents themselves are not copied whole)."""
    views = frames[members[0]].shape[1]
    out = robust_z(np.concatenate([frames[i][:, 0] for i in members]), LATENT_MAD_FLOOR)
    for v in range(1, views):
        out += robust_z(np.concatenate([frames[i][:, v] for i in members]), LATENT_MAD_FLOOR)
    return out / views


def grouped_latent_z(frames: Sequence[np.ndarray], labels: Sequence[object]) -> np.ndarray:
    """Per frame (N_i, V, D) latents and one label per frame -> (sum N_i, D) float64: each patch's latents robust-z
    scaled over every patch of the frames sharing its frame's label (each view on its own, the views averaged;
    :func:`_views_z`), in frame order. Labels ``range(len(frames))``: each frame its own context."""
    bounds = np.cumsum([0] + [len(z) for z in frames])
    out = np.zeros((int(bounds[-1]), frames[0].shape[2]))
    members: dict[object, list[int]] = {}
    for i, lab in enumerate(labels):
        if len(frames[i]):
            members.setdefault(lab, []).append(i)
    for m in members.values():
        out[np.concatenate([np.arange(bounds[i], bounds[i + 1]) for i in m])] = _views_z(frames, m)
    return out


def frame_latent_z(latents: np.ndarray) -> np.ndarray:
    """One frame's (N, D) or (N, V, D) latents -> (N, D) float64: each dimension robust-z scaled within the frame
    (MAD floored at :data:`LATENT_MAD_FLOOR`), each view on its own, the views averaged: the frame context of
    :func:`context_knn` before its kNN."""
    z = np.asarray(latents)
    if z.ndim not in (2, 3) or len(z) == 0:
        raise ValueError(f"frame latent z needs (N >= 1, D) or (N, V, D) latents, got shape {z.shape}")
    return _views_z([z[:, None] if z.ndim == 2 else z], [0])


def _distance_z(d: np.ndarray) -> np.ndarray:
    """kNN distances robust-z scaled, the scale at least :data:`CONTEXT_DISTANCE_FLOOR` of their mean."""
    return robust_z(d[:, None], CONTEXT_DISTANCE_FLOOR * float(d.mean()))[:, 0]


def context_knn(
    latents: Sequence[np.ndarray],
    groups: Sequence[object] | None = None,
    k: int = KNN_K,
    weights: tuple[float, float] = CONTEXT_WEIGHTS,
    bank: int = CONTEXT_BANK,
    seed: int = 0,
) -> list[np.ndarray]:
    """The ``two-context kNN (mu)`` candidate: per frame (N_i, D) or (N_i, V, D) latents (V views of each patch,
    :mod:`edgeae.anomaly.views`) -> per frame (N_i,) scores.

    Two contexts scale the latents before the kNN distance over every patch of every frame: the patch's own frame
    (as :func:`frame_z_knn`: a product's illumination cancels, but so does a feature that fills the frame) and the
    frame's group (``groups``: one label per frame, e.g. the parent product of a set of crops; ``None``: all frames
    are one group), where a frame-filling feature still stands out. Each context's kNN scores are robust-z scaled
    over all patches and summed with ``weights``. With views, each view is scaled on its own and the views' z
    averaged before the kNN. A set of more than ``bank`` patches is measured against a uniform sample of ``bank``
    of them (``seed``: which; the same patches in both contexts) instead of against every patch
    (:func:`bank_knn_distance`)."""
    frames = [np.asarray(z) for z in latents]  # float32 latents stay float32 (scaled one view at a time)
    if not frames or any(z.ndim not in (2, 3) for z in frames) or len({z.shape[1:] for z in frames}) != 1:
        shapes = [z.shape for z in frames]
        raise ValueError(f"context kNN needs (N_i, D) or (N_i, V, D) latents per frame, alike; got {shapes}")
    frames = [z[:, None] if z.ndim == 2 else z for z in frames]
    labels = [0] * len(frames) if groups is None else list(groups)
    if len(labels) != len(frames):
        raise ValueError(f"context kNN: {len(labels)} group labels for {len(frames)} frames")
    if len(weights) != 2 or not all(np.isfinite(w) and w >= 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"context kNN weights must be two non-negative numbers, not both 0; got {weights}")
    if int(bank) < 2:
        raise ValueError(f"context kNN bank must hold at least 2 patches, got {bank}")
    bounds = np.cumsum([0] + [len(z) for z in frames])
    n = int(bounds[-1])
    rows = None if n <= bank else np.sort(np.random.default_rng(seed).choice(n, size=int(bank), replace=False))

    def distances(z: np.ndarray) -> np.ndarray:
        return knn_distance(z, k) if rows is None else bank_knn_distance(z, rows, k)

    frame_part = _distance_z(distances(grouped_latent_z(frames, range(len(frames)))))
    sizes = collections.Counter(lab for lab, z in zip(labels, frames, strict=True) if len(z))
    if all(c <= 1 for c in sizes.values()):  # every group one frame: the two contexts are the same
        group_part = frame_part
    else:
        group_part = _distance_z(distances(grouped_latent_z(frames, labels)))
    scores = weights[0] * frame_part + weights[1] * group_part
    return [scores[a:b] for a, b in itertools.pairwise(bounds)]

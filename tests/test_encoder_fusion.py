"""The encoder-fusion study (benchmarks/encoder_fusion.py): its weights' end points are the two scorers alone,
fusing two scorers with independent errors ranks better than either, and the VAE's two contexts (the crop, the
parent product) see different features."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from benchmarks.encoder_fusion import EQUAL, SIMPLEX, WEIGHTS, context_fusion_scores, fusion_scores, vae_frame_z
from edgeae.anomaly.baselines import knn_distance, robust_z


def _features(seed: int, n: int = 150, k: int = 9) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two feature sets of n crops × k patches; in the positive crops one patch stands out in *both* sets (moved 3
    units in a random direction, so positives do not cluster), each seen through its own independent noise."""
    rng = np.random.default_rng(seed)
    pos = np.zeros(n, bool)
    pos[rng.choice(n, n // 5, replace=False)] = True
    a, b = rng.normal(size=(n, k, 6)), rng.normal(size=(n, k, 8))
    for x in (a, b):
        d = rng.normal(size=(int(pos.sum()), x.shape[-1]))
        x[pos, 0] += 3.0 * d / np.linalg.norm(d, axis=1, keepdims=True)
    return a, b, pos


def test_the_end_weights_are_each_scorer_alone() -> None:
    a, unit, _ = _features(0)
    out = fusion_scores(a, unit, k_nn=5)
    n, k, _ = a.shape
    crop_a = knn_distance(a.reshape(n * k, -1), 5).reshape(n, k).max(1)
    crop_b = knn_distance(unit.reshape(n * k, -1), 5).reshape(n, k).max(1)
    assert set(out) == {"crop rank mean", "patch z sum", "joint kNN"}
    assert all(set(v) == set(WEIGHTS) for v in out.values())
    for name in out:  # w = 1: the VAE alone; w = 0: the contrastive encoder alone (same order of crops)
        assert spearmanr(out[name][1.0], crop_a)[0] > 0.999
        assert spearmanr(out[name][0.0], crop_b)[0] > 0.999


def test_fusing_independent_errors_beats_either_scorer() -> None:
    a, unit, pos = _features(2)
    out = fusion_scores(a, unit, k_nn=5)
    alone = max(roc_auc_score(pos, out["crop rank mean"][w]) for w in (0.0, 1.0))
    assert roc_auc_score(pos, out["crop rank mean"][0.5]) > alone
    assert roc_auc_score(pos, out["patch z sum"][0.5]) > alone


def test_grouped_scaling_is_per_crop_by_default_and_pools_a_group() -> None:
    rng = np.random.default_rng(3)
    mu = rng.normal(size=(6, 1, 4, 3)) * rng.uniform(0.5, 3, size=(6, 1, 1, 1))
    pos = [(0, 0), (0, 1), (1, 0), (1, 1)]
    per_crop = vae_frame_z(mu, pos, 2)
    np.testing.assert_allclose(per_crop, vae_frame_z(mu, pos, 2, np.arange(6)))
    for c in range(6):
        np.testing.assert_allclose(per_crop[c], robust_z(mu[c, 0]))
    pooled = vae_frame_z(mu, pos, 2, np.array([0, 0, 0, 1, 1, 1]))
    np.testing.assert_allclose(pooled[:3].reshape(-1, 3), robust_z(mu[:3, 0].reshape(-1, 3)))
    with pytest.raises(ValueError, match="one label per crop"):
        vae_frame_z(mu, pos, 2, np.zeros(5))


def test_the_product_context_finds_what_fills_a_crop_and_the_crop_context_finds_spots() -> None:
    """Every crop has its own offset (terrain and light differ across a product): scaling within the crop removes it,
    the product context mistakes it for anomalies. A feature that fills its whole crop is scaled away within the
    crop but stands out against the product; a single odd patch stands out best within its crop. So the two
    contexts see different positives (what the study fuses)."""
    rng = np.random.default_rng(5)
    n, k, d = 240, 9, 5
    products = np.repeat(np.arange(8), n // 8)
    z = rng.normal(size=(n, k, d)) + rng.normal(scale=3.0, size=(n, 1, d))
    fills = np.zeros(n, bool)
    fills[rng.choice(n, 24, replace=False)] = True
    spot = np.zeros(n, bool)
    spot[rng.choice(np.flatnonzero(~fills), 24, replace=False)] = True
    for c in np.flatnonzero(fills):
        z[c] += 14.0 * rng.normal(size=d) / np.sqrt(d)  # the whole crop moves
    for c in np.flatnonzero(spot):
        z[c, 0] += 8.0 * rng.normal(size=d) / np.sqrt(d)  # one patch stands out
    pos = [(0, i) for i in range(k)]
    crop, prod = vae_frame_z(z[:, None], pos, 1), vae_frame_z(z[:, None], pos, 1, products)
    out = context_fusion_scores(crop, prod, rng.normal(size=(n, k, 3)), k_nn=10)
    assert len(SIMPLEX) == 66 and all(abs(sum(w) - 1) < 1e-9 for w in SIMPLEX) and EQUAL in out
    crop_only, prod_only = out[(1.0, 0.0, 0.0)], out[(0.0, 0.0, 1.0)]
    assert spearmanr(crop_only, knn_distance(crop.reshape(n * k, d), 10).reshape(n, k).max(1))[0] > 0.999
    assert roc_auc_score(fills, crop_only) < 0.6 < 0.8 < roc_auc_score(fills, prod_only)
    assert roc_auc_score(spot, crop_only) > roc_auc_score(spot, prod_only) + 0.05

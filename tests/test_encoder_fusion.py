"""The encoder-fusion study (benchmarks/encoder_fusion.py): its weights' end points are the two scorers alone, and
fusing two scorers with independent errors ranks better than either."""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from benchmarks.encoder_fusion import WEIGHTS, fusion_scores
from edgeae.anomaly.baselines import knn_distance


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

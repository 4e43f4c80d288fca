"""Ranking metrics: tie-safe AP and ROC AUC checked against hand-computed values and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest

from edgeae.anomaly.calibrate import threshold, tune_lambda
from edgeae.anomaly.metrics import average_precision, precision_recall_curve, ranking_summary, roc_auc


def test_ap_with_ties_hand_computed() -> None:
    # thresholds 3 -> P=1, R=1/2; 2 (tie of a positive and a negative) -> P=2/3, R=1
    s = np.array([3.0, 2.0, 2.0, 1.0])
    y = np.array([1, 0, 1, 0])
    assert average_precision(s, y) == pytest.approx(0.5 * 1.0 + 0.5 * 2.0 / 3.0)
    # the order of tied entries does not matter
    assert average_precision(s[[0, 2, 1, 3]], y[[0, 2, 1, 3]]) == pytest.approx(5.0 / 6.0)
    p, r, t = precision_recall_curve(s, y)
    np.testing.assert_allclose(p, [1.0, 2.0 / 3.0, 0.5])
    np.testing.assert_allclose(r, [0.5, 1.0, 1.0])
    np.testing.assert_allclose(t, [3.0, 2.0, 1.0])


def test_all_tied_scores_give_random_ap() -> None:
    s = np.zeros(8)
    y = np.array([1, 0, 0, 0, 1, 0, 0, 0])
    assert average_precision(s, y) == pytest.approx(0.25)  # exactly the positive fraction, no labels dropped
    assert roc_auc(s, y) == pytest.approx(0.5)


def test_auc_with_ties_hand_computed() -> None:
    # pairs (pos, neg): (3,2) 1, (3,1) 1, (2,2) 1/2, (2,1) 1 -> 3.5 / 4
    assert roc_auc(np.array([3.0, 2.0, 2.0, 1.0]), np.array([1, 0, 1, 0])) == pytest.approx(0.875)


def test_matches_sklearn_on_random_tied_data() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    s = rng.integers(0, 6, size=300).astype(float)  # many ties
    y = rng.random(300) < 0.2 + 0.1 * s / 5
    assert average_precision(s, y) == pytest.approx(metrics.average_precision_score(y, s), abs=1e-12)
    assert roc_auc(s, y) == pytest.approx(metrics.roc_auc_score(y, s), abs=1e-12)


def test_summary_row_and_errors() -> None:
    s = np.array([0.9, 0.8, 0.1, 0.2, 0.3])
    y = np.array([1, 1, 0, 0, 0])
    row = ranking_summary(s, y)
    assert row["positives"] == 2 and row["negatives"] == 3
    assert row["ap"] == pytest.approx(1.0) and row["random_ap"] == pytest.approx(0.4)
    assert row["improvement"] == pytest.approx(2.5)
    assert row["auc"] == pytest.approx(1.0)
    assert row["ks"] == pytest.approx(0.6)  # max |F_pos − F_all| at 0.3: 0 vs 3/5
    assert ranking_summary(s, np.zeros(5))["ap"] is None
    with pytest.raises(ValueError):
        average_precision(s, np.zeros(5))
    with pytest.raises(ValueError):
        average_precision(np.array([np.nan, 1.0]), np.array([1, 0]))
    with pytest.raises(ValueError):
        average_precision(s, y[:3])


def test_tune_lambda_picks_the_term_that_separates() -> None:
    rng = np.random.default_rng(1)
    y = np.r_[np.ones(20, bool), np.zeros(200, bool)]
    rec = rng.normal(100, 10, y.size)  # uninformative
    mu2 = rng.normal(10, 1, y.size) + 5 * y  # informative
    res = tune_lambda(rec, mu2, y)
    assert res["lambda"] >= 10 * res["scale"]
    assert res["ap"] > 0.8
    assert threshold(np.arange(101.0), 0.99) == pytest.approx(99.0)
    with pytest.raises(ValueError):
        tune_lambda(rec, mu2, np.zeros(y.size, bool))

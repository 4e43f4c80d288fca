"""Ranking metrics for anomaly scores, safe with tied scores (numpy; scipy only for the KS p-value).

Tied scores form one threshold: all patches with the same score enter the ranking together, so ties neither
drop labels nor depend on input order (the convention of ``sklearn.metrics.average_precision_score``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeae._optional import require


def _check(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    if s.shape != y.shape:
        raise ValueError(f"scores ({s.size}) and labels ({y.size}) differ in length")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or infinity")
    return s, y


def precision_recall_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision and recall at every distinct score threshold, highest threshold first.

    Returns ``(precision, recall, thresholds)``; point k counts every patch with score >= thresholds[k].
    """
    s, y = _check(scores, labels)
    if not y.any():
        raise ValueError("no positive labels: precision-recall is undefined")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s) != 0), s.size - 1]  # last index of each tie group
    tp = np.cumsum(y)[last].astype(np.float64)
    n = (last + 1).astype(np.float64)
    return tp / n, tp / y.sum(), s[last]


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """AP = Σ_k (R_k − R_{k−1}) · P_k over distinct thresholds (no interpolation)."""
    precision, recall, _ = precision_recall_curve(scores, labels)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve = P(score_pos > score_neg) + ½ P(tie) (Mann-Whitney with mid-ranks)."""
    s, y = _check(scores, labels)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("ROC AUC needs both positive and negative labels")
    order = np.argsort(s, kind="stable")
    ranks = np.empty(s.size, dtype=np.float64)
    sorted_s = s[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_s) != 0) + 1]
    ends = np.r_[starts[1:], s.size]
    mid = (starts + ends + 1) / 2.0  # 1-based mid-rank of each tie group
    ranks[order] = np.repeat(mid, ends - starts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def ks_test(positive_scores: np.ndarray, all_scores: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov test of positive vs all scores (as in the paper): (statistic, p)."""
    stats = require("scipy.stats")
    pos = np.asarray(positive_scores, dtype=np.float64)
    if pos.size == 0:
        return float("nan"), float("nan")
    res = stats.ks_2samp(pos, np.asarray(all_scores, dtype=np.float64))
    return float(res.statistic), float(res.pvalue)


def ranking_summary(scores: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """The paper's table row: positives, negatives, AP, random AP, improvement, ROC AUC, KS statistic, p."""
    s, y = _check(scores, labels)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    out: dict[str, Any] = {"positives": n_pos, "negatives": n_neg}
    if n_pos == 0 or n_neg == 0:
        return {
            **out,
            "ap": None,
            "random_ap": None,
            "improvement": None,
            "auc": None,
            "ks": None,
            "ks_p": None,
        }
    ap = average_precision(s, y)
    rand = n_pos / (n_pos + n_neg)
    ks, p = ks_test(s[y], s)
    return {
        **out,
        "ap": ap,
        "random_ap": rand,
        "improvement": ap / rand,
        "auc": roc_auc(s, y),
        "ks": ks,
        "ks_p": p,
    }

"""Choose λ of the anomaly score on a labelled validation split, and the alarm threshold on normal patches.

a(x) = rec + λ·mu2 with rec = Σ (x − x̂)² and mu2 = Σ μ². λ is searched on a grid relative to the ratio of the
two terms' medians (so the grid is meaningful whatever the latent size), maximising average precision.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeae.anomaly.metrics import average_precision

RELATIVE_GRID: tuple[float, ...] = (0.0, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)


def tune_lambda(
    rec: np.ndarray,
    mu2: np.ndarray,
    labels: np.ndarray,
    relative_grid: tuple[float, ...] = RELATIVE_GRID,
) -> dict[str, Any]:
    """Return ``{"lambda", "ap", "grid": [(λ, AP), ...], "scale"}`` maximising AP of rec + λ·mu2.

    Ties in AP go to the smaller λ (the grid is scanned in increasing order).
    """
    rec = np.asarray(rec, dtype=np.float64)
    mu2 = np.asarray(mu2, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    if not (rec.shape == mu2.shape == y.shape):
        raise ValueError(f"rec {rec.shape}, mu2 {mu2.shape} and labels {y.shape} must have one shape")
    if not y.any() or y.all():
        raise ValueError("λ tuning needs both positive and negative validation patches")
    scale = float(np.median(rec) / max(float(np.median(mu2)), 1e-12))
    grid = []
    best_lam, best_ap = 0.0, -1.0
    for r in relative_grid:
        lam = float(r * scale)
        ap = average_precision(rec + lam * mu2, y)
        grid.append((lam, ap))
        if ap > best_ap + 1e-12:
            best_lam, best_ap = lam, ap
    return {"lambda": best_lam, "ap": best_ap, "grid": grid, "scale": scale}


def threshold(scores: np.ndarray, quantile: float = 0.99) -> float:
    """Alarm threshold: the ``quantile`` of scores of normal (validation) patches."""
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0:
        raise ValueError("no scores to set a threshold from")
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    return float(np.quantile(s, quantile))

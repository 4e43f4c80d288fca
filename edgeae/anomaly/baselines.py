"""Non-deep and partial baselines scored on the same patches as the β-VAE.

- ``patch_std``: local contrast, the standard deviation of a patch's pixels (no model at all);
- ``isolation_forest``: an isolation forest (scikit-learn) on the VAE latents μ, fitted on the evaluated
  patches themselves without their labels (unsupervised, transductive), seed fixed;
- the two terms of a(x), reconstruction error and ||μ||², come from :class:`edgeae.anomaly.score.PatchScorer`.
"""

from __future__ import annotations

import numpy as np

from edgeae._optional import require


def patch_std(patches: np.ndarray) -> np.ndarray:
    """(N, ...) patches -> (N,) standard deviation of each patch's values (float64)."""
    p = np.asarray(patches, dtype=np.float64)
    return p.reshape(len(p), -1).std(axis=1)


def isolation_forest(latents: np.ndarray, seed: int = 0, n_estimators: int = 200) -> np.ndarray:
    """(N, D) -> (N,) anomaly scores (higher = more anomalous) of an isolation forest fitted on them."""
    ensemble = require("sklearn.ensemble")
    z = np.asarray(latents, dtype=np.float64)
    if z.ndim != 2 or len(z) < 2:
        raise ValueError(f"isolation forest needs (N >= 2, D) latents, got shape {z.shape}")
    forest = ensemble.IsolationForest(n_estimators=n_estimators, max_samples=min(256, len(z)), random_state=seed)
    forest.fit(z)
    return np.asarray(-forest.score_samples(z), dtype=np.float64)

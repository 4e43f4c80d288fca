"""The 8 rotations and flips of a patch (the dihedral group), for latents averaged over views (issue 12).

Orbital crops have no preferred orientation: a crater is a crater turned by 90°. Encoding each patch in its
:data:`VIEWS` views and averaging what each view gives (after each view is scaled on its own, see
:func:`edgeae.anomaly.baselines.context_knn`) steadies the latents: on the HiRISE dev crops the ``frame-z kNN``
ROC AUC rose from 0.754 to 0.773 with 8 views (``benchmarks.hirise_views``). View 0 is the patch itself.
"""

from __future__ import annotations

import numpy as np

VIEWS = 8  # np.rot90 by 0, 1, 2, 3 quarter turns, then the same with a left-right flip


def dihedral(batch: np.ndarray, g: int) -> np.ndarray:
    """(N, C, P, P) patches in view ``g`` (0..7): ``g % 4`` quarter turns, then a left-right flip when g >= 4."""
    x = np.asarray(batch)
    if x.ndim != 4 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"views need (N, C, P, P) square patches, got shape {x.shape}")
    if not 0 <= g < VIEWS:
        raise ValueError(f"view index must be in 0..{VIEWS - 1}, got {g}")
    out = np.rot90(x, g % 4, axes=(2, 3))
    return np.ascontiguousarray(out[..., ::-1] if g >= 4 else out)

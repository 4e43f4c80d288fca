"""No-data detection: the black masked margins of NAC and HiRISE products as a validity mask.

A pixel is no-data when every channel is near zero (JPEG noise keeps margins from being exactly 0)
AND it belongs to a large dark region that runs along a good part of one image border side.
This is a heuristic: a saturated shadow cut by a long stretch of the frame edge cannot be told
from no-data by its pixels; use the product's own mask where it has one. Dark shadows inside the scene
are therefore kept valid, even when they reach 0. A 3×3 morphological opening cuts single-pixel
bridges between a margin and a shadow that happens to touch it.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from edgeae._optional import require

__all__ = ["DEFAULT_THRESHOLD", "EDGES", "nodata_mask"]

DEFAULT_THRESHOLD = 0.025  # of full scale: 6 of 255 (HiRISE browse margins reach 6 after JPEG)
EDGES = ("top", "bottom", "left", "right")


def _full_scale(raw: np.ndarray, bit_depth: int | None) -> float:
    if raw.dtype.kind == "f":
        return 1.0
    if bit_depth is None:
        bit_depth = 8 * raw.dtype.itemsize
    return float(2**bit_depth - 1)


def nodata_mask(
    raw: np.ndarray,
    *,
    bit_depth: int | None = None,
    threshold: float | None = None,
    min_area: int = 64,
    min_contact: int = 32,
    min_side_fraction: float = 0.3,
    margin: int = 1,
    edges: Iterable[str] = EDGES,
    seed: np.ndarray | None = None,
) -> np.ndarray:
    """Return ``valid`` bool (H, W): False on dark regions connected to the image border.

    raw: (H, W) or (H, W, C) stored samples (uint or float). threshold: darkness limit as a fraction
    of full scale (default :data:`DEFAULT_THRESHOLD`). min_area: smaller border-touching dark
    regions, and ones touching every border side along fewer than max(``min_contact``,
    ``min_side_fraction`` × side length) pixels (a crater shadow cut by the frame edge), stay
    valid. margin: pixels of JPEG ringing eroded from the valid side of each margin.
    edges: which sides are real image borders (a streaming reader passes only the real ones).
    seed: optional bool (H, W) of pixels already known to be no-data (e.g. from the strip above);
    dark regions touching them count as no-data too.
    """
    arr = np.asarray(raw)
    if arr.ndim == 3:
        arr = arr.max(axis=2)
    if arr.ndim != 2:
        raise ValueError(f"raw must be (H, W) or (H, W, C), got shape {np.shape(raw)}")
    h, w = arr.shape
    valid = np.ones((h, w), dtype=bool)
    if h == 0 or w == 0:
        return valid
    frac = DEFAULT_THRESHOLD if threshold is None else float(threshold)
    if not 0.0 <= frac < 1.0:
        raise ValueError(f"threshold is a fraction of full scale in [0, 1), got {threshold}")
    limit = frac * _full_scale(arr, bit_depth)
    dark = ~(arr > limit) if arr.dtype.kind == "f" else arr <= limit  # NaN counts as dark
    if not dark.any():
        return valid
    ndi = require("scipy.ndimage")
    se = np.ones((3, 3), dtype=bool)
    # closing fills JPEG specks inside margins, opening cuts thin links to interior shadows; the
    # border values keep the outside of the image from creating or eroding dark pixels at the edge
    dark = ndi.binary_erosion(ndi.binary_dilation(dark, se, border_value=0), se, border_value=1)
    dark = ndi.binary_dilation(ndi.binary_erosion(dark, se, border_value=1), se, border_value=0)
    labels, n = ndi.label(dark)
    if n == 0:
        return valid
    sides = set(edges)
    unknown = sides - set(EDGES)
    if unknown:
        raise ValueError(f"edges must be among {EDGES}, got {sorted(unknown)}")
    border = {"top": labels[0], "bottom": labels[-1], "left": labels[:, 0], "right": labels[:, -1]}
    touch = np.zeros(n + 1, dtype=bool)
    for side in sides:
        contact = np.bincount(border[side], minlength=n + 1)
        touch |= contact >= max(min_contact, min_side_fraction * border[side].size)
    touch &= np.bincount(labels.ravel(), minlength=n + 1) >= min_area
    if seed is not None:
        if seed.shape != (h, w):
            raise ValueError(f"seed must have shape {(h, w)}, got {seed.shape}")
        touch[labels[seed]] = True
    touch[0] = False
    invalid = touch[labels]
    if margin > 0 and invalid.any():
        invalid = ndi.binary_dilation(invalid, structure=se, iterations=int(margin))
    return ~invalid

"""The one centre crop every reconstruction benchmark cuts (the acceptance table's 512-px crops).

Light on purpose (numpy only), so a benchmark can take the acceptance's crop without importing the acceptance.
"""

from __future__ import annotations

import numpy as np


def centre_crop(img: np.ndarray, size: int) -> np.ndarray:
    """The ``size`` × ``size`` window at the centre of ``img`` (the whole side where it is smaller; ``size <= 0``:
    the whole image). A view, not a copy."""
    if size <= 0:
        return img
    h, w = img.shape[:2]
    y, x = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return img[y : y + size, x : x + size]

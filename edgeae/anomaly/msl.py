"""The rover validation benchmark: MSL surface images (``train_extra/msl_surface_v1_train``), split by sol.

A scorer is trained on ``ground`` images of the train sols only (:func:`edgeae.train.vae_data.msl_ground_files`);
the benchmark ranks the images of the **val sols** (:func:`edgeae.datasets.msl_split_of_sol`): rover hardware,
calibration targets and drill holes (:data:`edgeae.datasets.MSL_HARDWARE_CLASSES`) are positives, ``ground``
images negatives; horizon and sun images are left out. An image is scored by its highest patch (64×64 at
stride 32, patches with less than :data:`MIN_VALID` valid pixels left out: the dark vignetted corners of the
Mastcam browse frames). ``train_extra/`` is training and validation data only: these are **validation**
figures, never test results.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from edgeae.anomaly.score import PatchScores, score_array

STRIDE = 32
MIN_VALID = 0.9


def read_msl(path: str | os.PathLike[str], channels: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Pixels (H, W, C) float32 and valid mask of one MSL browse image."""
    from edgeae.imageio import read_image

    img = read_image(path, channels=channels)
    return img.pixels, img.valid


def score_msl_images(
    paths: Sequence[str | os.PathLike[str]],
    scorer: Callable[[np.ndarray], dict[str, np.ndarray]],
    patch: int = 64,
    stride: int = STRIDE,
    batch: int = 256,
    channels: int | None = None,
) -> list[PatchScores]:
    """Patch scores of each image (an image with no patch above :data:`MIN_VALID` keeps all its patches)."""
    ch = int(channels) if channels else int(getattr(scorer, "channels", 3))
    out = []
    for p in paths:
        pix, valid = read_msl(p, ch)
        r = score_array(pix, scorer, patch, stride, valid=valid, min_valid=MIN_VALID, batch=batch, file=Path(p).name)
        if len(r) == 0:
            r = score_array(pix, scorer, patch, stride, valid=valid, min_valid=0.0, batch=batch, file=Path(p).name)
        out.append(r)
    return out

"""The input convention of the CAEs (reconstruction and latent encoder), shared by ground and flight: numpy only.

Destroyed pixels are 0 (the paper's convention: the U-Nets infer the mask from the zeros) and kept pixels are
lifted to at least :data:`KNOWN_FLOOR`, 1/255 of full scale whatever the bit depth, so a black kept pixel is not
read as destroyed. A gt-CAE's encoder is given its input sampled as the model was trained
(:func:`encoder_input_mask`), never the whole frame.
"""

from __future__ import annotations

from typing import Any

import numpy as np

KNOWN_FLOOR = np.float32(1.0 / 255.0)
"""The least value a kept pixel is given in a CAE's input (a kept 0 would read as destroyed): one 8-bit step, the
smallest value an int8 artifact's [0, 1] input quantiser (scale 1/255) keeps non-zero."""
ENCODER_INPUT_KEEP = 0.5
"""The fraction of pixels a cae-encoder is shown when its metadata records no training range (the benchmarks'
choice)."""


def encoder_input_mask(metadata: Any, keep: float | None = None) -> tuple[float, str]:
    """(keep, pattern) of the mask a cae-encoder's input is sampled with, shared by the flight and the ground
    (:func:`edgeae.ground.pipeline.encode_latents`).

    A gt-CAE was trained on 50-99 % destroyed inputs: a complete frame is outside what it saw (about 9 dB lost on
    a Mastcam crop). ``keep`` given wins; else :data:`ENCODER_INPUT_KEEP` moved inside the training keep range
    that ``metadata.mask`` records (``destroy_range`` [lo, hi] -> keep in [1 - hi, 1 - lo]; a fixed-mode model's
    ``destroy`` -> 1 - destroy). The pattern is the training pattern (``uniform`` when none is recorded).
    """
    from edgeae.masks import PATTERNS

    mask = getattr(metadata, "mask", None) or {}
    pattern = mask.get("pattern") if mask.get("pattern") in PATTERNS else "uniform"
    destroy, lo_hi = mask.get("destroy"), mask.get("destroy_range")
    if keep is None:
        keep = ENCODER_INPUT_KEEP
        if mask.get("mode") == "fixed" and isinstance(destroy, int | float):
            keep = 1.0 - float(destroy)
        elif isinstance(lo_hi, list | tuple) and len(lo_hi) == 2 and all(isinstance(v, int | float) for v in lo_hi):
            keep = min(max(keep, 1.0 - float(lo_hi[1])), 1.0 - float(lo_hi[0]))
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"encoder input keep must be in (0, 1], got {keep}")
    return float(keep), str(pattern)


def mask_encoder_input(x: np.ndarray, known: np.ndarray) -> np.ndarray:
    """In place on float32 tiles ``x`` (N, C, t, t) in [0, 1], ``known`` bool (N, t, t): the CAE input convention
    of :func:`edgeae.reconstruct.reconstruct_cae` (destroyed pixels 0, kept pixels lifted to at least
    ``KNOWN_FLOOR`` = 1/255 of full scale whatever the bit depth, so a black kept pixel is not read as destroyed)."""
    np.maximum(x, KNOWN_FLOOR, out=x)
    x *= known[:, None]
    return x

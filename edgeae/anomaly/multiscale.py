"""Several window sizes per location and per-frame score normalisation (the lunar paper's next step).

For every location of the usual patch grid (``patch`` px windows at ``stride``), windows of each size in
``windows`` (default 32, 64 and 128 px) are cut **centred on the same point** (reflect-padded at the frame
border), resampled to the model's input size (area averaging down, bilinear up) and scored by the same model.
The scores of each window size are then normalised **per frame** and combined per location:

- ``robust_z`` (default): z = (log s − median) / (1.4826 · MAD) over the frame's scored locations, so a frame
  with brighter illumination, more contrast or a different texture scale does not outrank another frame as a
  whole; only what stands out *within its own frame* scores high;
- ``pooled``: the same robust z, but over every frame scored together (for small views such as rover browse
  images, where one frame can be all anomaly: a frame of hardware normalised by itself would look plain);
- ``none``: raw scores (then a combination only makes sense for one window size).

Combined score: the mean of the per-window z (``combine="mean"``) or their maximum (``"max"``).

Everything after the model is numpy: the model graph is unchanged, so the same exported artifact (ONNX, TFLite,
int8) serves in flight; a flight computer that wants this score runs the model on the three resampled windows
and applies :func:`frame_normalise` / :func:`combine_scales` to the frame's scores.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from edgeae._optional import require
from edgeae.anomaly.score import PatchScores

WINDOWS: tuple[int, ...] = (32, 64, 128)
# the largest window: each is cut from the frame reflect-padded by the window on every side, so a window of W px
# on an 800-px frame holds (800 + 2W)² pixels in memory (50,000 px: 38 GiB); 1024 px is 16 of the 64-px patches
MAX_WINDOW = 1024
NORMALISATIONS = ("robust_z", "pooled", "none")
COMBINE = ("mean", "max")


@dataclass(frozen=True)
class MultiScale:
    """How the default score is built: window sizes, per-frame normalisation and combination."""

    windows: tuple[int, ...] = WINDOWS
    normalise: str = "robust_z"
    combine: str = "mean"
    log: bool = True  # normalise log(score): a(x) is a sum of squares, heavy-tailed

    def __post_init__(self) -> None:
        if not self.windows or min(self.windows) < 4 or max(self.windows) > MAX_WINDOW:
            raise ValueError(f"windows must be window sizes of 4 to {MAX_WINDOW} px, got {self.windows}")
        if self.normalise not in NORMALISATIONS:
            raise ValueError(f"normalise must be one of {NORMALISATIONS}, got {self.normalise!r}")
        if self.combine not in COMBINE:
            raise ValueError(f"combine must be one of {COMBINE}, got {self.combine!r}")

    def describe(self) -> str:
        sizes = "/".join(str(w) for w in self.windows)
        what = "robust z of log score" if self.log else "robust z of score"
        norm = {"robust_z": f"per-frame {what}", "pooled": f"{what} over all frames", "none": "raw scores"}[
            self.normalise
        ]
        return f"windows {sizes} px, {norm}, {self.combine} over windows"


def frame_normalise(scores: np.ndarray, method: str = "robust_z", log: bool = True) -> np.ndarray:
    """Normalise one frame's scores: robust z (median, 1.4826·MAD; IQR/1.349 or std when the MAD is 0)."""
    s = np.asarray(scores, dtype=np.float64)
    if method == "none" or s.size == 0:
        return s.copy()
    if method not in ("robust_z", "pooled"):
        raise ValueError(f"unknown normalisation {method!r}; choose from {NORMALISATIONS}")
    if log:
        s = np.log(np.maximum(s, 0.0) + 1e-12)
    med = float(np.median(s))
    scale = 1.4826 * float(np.median(np.abs(s - med)))
    if not scale > 0:
        q1, q3 = np.percentile(s, [25, 75])
        scale = float(q3 - q1) / 1.349
    if not scale > 0:
        scale = float(s.std())
    return (s - med) / scale if scale > 0 else s - med


def combine_scales(per_window: Sequence[np.ndarray], how: str = "mean") -> np.ndarray:
    """Per-location combination of per-window (normalised) scores."""
    stack = np.stack([np.asarray(p, dtype=np.float64) for p in per_window])
    if how == "mean":
        return stack.mean(axis=0)
    if how == "max":
        return stack.max(axis=0)
    raise ValueError(f"combine must be one of {COMBINE}, got {how!r}")


def centred_windows(image: np.ndarray, centres: np.ndarray, window: int, size: int) -> np.ndarray:
    """(N, C, size, size) float32: ``window``×``window`` crops of (H, W, C) ``image`` centred on ``centres``
    (N, 2) as (x, y) of the window's centre pixel (window // 2 from its top-left), reflect-padded at the border,
    resampled to ``size`` (area averaging when shrinking, bilinear when enlarging)."""
    cv2 = require("cv2")
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 2:
        img = img[:, :, None]
    half = window // 2
    pad = window
    padded = np.pad(img, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    interp = cv2.INTER_AREA if window > size else cv2.INTER_LINEAR
    out = np.empty((len(centres), img.shape[2], size, size), dtype=np.float32)
    for i, (cx, cy) in enumerate(np.asarray(centres, dtype=np.int64)):
        y0, x0 = int(cy) - half + pad, int(cx) - half + pad
        crop = padded[y0 : y0 + window, x0 : x0 + window]
        if window != size:
            crop = cv2.resize(crop, (size, size), interpolation=interp)
            if crop.ndim == 2:
                crop = crop[:, :, None]
        out[i] = crop.transpose(2, 0, 1)
    return out


def score_windows(
    image: np.ndarray,
    scorer: Callable[[np.ndarray], dict[str, np.ndarray]],
    result: PatchScores,
    ms: MultiScale,
    size: int,
    batch: int = 256,
) -> dict[int, dict[str, np.ndarray]]:
    """Model outputs for each window size at the locations of ``result`` (a single-scale scoring of the same
    image with ``result.patch`` windows); the ``result.patch`` size reuses ``result`` itself."""
    centres = result.xy + result.patch // 2
    out: dict[int, dict[str, np.ndarray]] = {}
    for w in ms.windows:
        if w == result.patch and w == size:
            out[w] = {"score": result.score, **result.extras}
            continue
        parts: dict[str, list[np.ndarray]] = {}
        for i in range(0, len(centres), batch):
            o = scorer(centred_windows(image, centres[i : i + batch], w, size))
            for k, v in o.items():
                parts.setdefault(k, []).append(v)
        out[w] = {k: np.concatenate(v) for k, v in parts.items()} if parts else {"score": np.zeros(0)}
    return out


def multiscale_score(per_window: dict[int, np.ndarray], ms: MultiScale) -> np.ndarray:
    """The combined score of one frame (or, for ``pooled``, of all frames concatenated) from its per-window
    raw scores."""
    return combine_scales([frame_normalise(per_window[w], ms.normalise, ms.log) for w in ms.windows], ms.combine)


def multiscale_scores(frames: Sequence[dict[int, np.ndarray]], ms: MultiScale) -> list[np.ndarray]:
    """Combined scores of several frames: normalised per frame, or over all of them for ``pooled``."""
    if ms.normalise != "pooled" or not frames:
        return [multiscale_score(f, ms) for f in frames]
    sizes = np.cumsum([0] + [len(f[ms.windows[0]]) for f in frames])
    whole = multiscale_score({w: np.concatenate([f[w] for f in frames]) for w in ms.windows}, ms)
    return [whole[a:b] for a, b in itertools.pairwise(sizes)]

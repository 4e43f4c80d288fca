"""Mix the CAE with a classical fill region by region, weighted by how well each predicts held-out samples.

A learned fill is not better everywhere: on a smooth gradient (sky, haze, vignetting) linear interpolation is
nearly exact and a CAE's residual is noise. The ground station cannot see the truth, but it has the received
samples. :func:`cross_checked_fill` sets ``folds`` disjoint random sets of them aside (each a ``holdout`` share),
rebuilds each set from the other samples with both the CAE and a classical ``method``, and, around every pixel,
fits the weight α ∈ [0, 1] of the mix α·CAE + (1 − α)·classical that best predicts the set-aside samples (least
squares with Gaussian weights over ``sigma`` pixels and a Gaussian prior around α = 1, so a neighbourhood leaves
the CAE only as far as its evidence outweighs the noise: :func:`weight_map`). The frame is then rebuilt from *all*
samples with both methods and mixed with that weight map; the known pixels are kept bit for bit.

Cost: ``folds`` + 1 CAE passes and as many classical fills (4 of each by default). The weight map is computed
on 8×8-pixel cells (``CELL``) and interpolated back, so its cost does not grow with ``sigma``. The defaults
(linear, 3 folds of 10 %, sigma 64 px, tau 0.25) were chosen on validation crops only (docs/training.md). Seeds
are passed in; numpy, scipy and OpenCV only (the CAE is any predictor :func:`edgeae.reconstruct.reconstruct`
accepts).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeae import inpaint as _inpaint
from edgeae._optional import require

log = logging.getLogger(__name__)
CELL = 8  # pixels per side of a weight-map cell
MIN_HELD = 64  # held-out samples needed for a frame-wide weight; fewer -> the CAE alone
HELD_MAX = 0.5


class CrossCheckError(ValueError):
    """Invalid cross-check settings."""


@dataclass(frozen=True)
class CrossCheckConfig:
    """How :func:`cross_checked_fill` mixes.

    ``method``: the classical fill mixed with the CAE. ``holdout``: share of the received samples set aside per
    fold; ``folds`` disjoint sets, each rebuilt from the samples outside it (``folds`` times the evidence for
    ``folds`` more CAE passes). ``sigma``: radius (px) of the neighbourhood whose set-aside samples fit each
    weight. ``tau``: the prior spread of the weight around 1 (the CAE): a neighbourhood moves towards the
    classical fill only as far as its evidence outweighs that prior (0 = the CAE alone). ``seed``: which samples
    are set aside.
    """

    method: str = "linear"
    holdout: float = 0.1
    folds: int = 3
    sigma: float = 64.0
    tau: float = 0.25
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in _inpaint.METHODS:
            raise CrossCheckError(f"method must be one of {_inpaint.METHODS}, got {self.method!r}")
        if not 0.0 < self.holdout <= HELD_MAX:
            raise CrossCheckError(f"holdout must be in (0, {HELD_MAX}], got {self.holdout}")
        if not 1 <= int(self.folds) <= 10 or self.folds * self.holdout > 0.9:
            raise CrossCheckError(f"folds must be in [1, 10] with folds × holdout <= 0.9, got {self.folds}")
        if not (math.isfinite(self.sigma) and CELL <= self.sigma <= 4096):
            raise CrossCheckError(f"sigma must be in [{CELL}, 4096] px, got {self.sigma}")
        if not (math.isfinite(self.tau) and self.tau >= 0):
            raise CrossCheckError(f"tau must be >= 0, got {self.tau}")
        if not 0 <= int(self.seed) < 2**64:
            raise CrossCheckError(f"seed must be in [0, 2**64), got {self.seed}")


def _cell_sums(ys: np.ndarray, xs: np.ndarray, values: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Sum ``values`` at pixels (ys, xs) over CELL×CELL cells: a float64 (gh, gw) grid."""
    idx = (ys // CELL) * grid[1] + xs // CELL
    return np.bincount(idx, weights=values, minlength=grid[0] * grid[1]).reshape(grid)


def weight_map(
    shape: tuple[int, int],
    ys: np.ndarray,
    xs: np.ndarray,
    truth: np.ndarray,
    cae: np.ndarray,
    classical: np.ndarray,
    sigma: float,
    tau: float,
) -> tuple[np.ndarray, float]:
    """(H, W) float32 α ∈ [0, 1] and the frame-wide least-squares α, from set-aside samples at pixels (ys, xs).

    ``truth``, ``cae``, ``classical``: (N, C) values at those pixels (t, a, b). Around each pixel, with Gaussian
    weights w of ``sigma`` px, r = t − b and d = a − b: the least-squares weight is Σ w r·d / Σ w d², and with a
    Gaussian prior α ~ N(1, tau²) and the neighbourhood's residual variance s² of the fitted mix per sample,
    α = (Σ w r·d + s²/tau²) / (Σ w d² + s²/tau²), clipped to [0, 1]. Where the two fills differ by less than the
    noise the prior wins and the CAE stays; where they differ systematically (a gradient the CAE bends) the
    samples win.
    """
    ndimage = require("scipy.ndimage")
    cv2 = require("cv2")
    h, w = shape
    grid = (-(-h // CELL), -(-w // CELL))
    # a non-finite sample (a corrupt pixel, a model that returned NaN) says nothing about either fill: left out
    ok = np.isfinite(truth).all(axis=1) & np.isfinite(cae).all(axis=1) & np.isfinite(classical).all(axis=1)
    if not ok.all():
        log.warning("cross-check: %d of %d set-aside samples are not finite and are left out", (~ok).sum(), len(ok))
        ys, xs, truth, cae, classical = ys[ok], xs[ok], truth[ok], cae[ok], classical[ok]
    d = cae.astype(np.float64) - classical
    r = truth.astype(np.float64) - classical
    num_s, den_s, rr_s = (r * d).sum(axis=1), (d * d).sum(axis=1), (r * r).sum(axis=1)
    den_all = float(den_s.sum())
    alpha_g = 1.0 if den_all <= 0 else float(np.clip(num_s.sum() / den_all, 0.0, 1.0))
    if tau == 0:
        return np.ones(shape, dtype=np.float32), alpha_g
    opts = {"sigma": sigma / CELL, "mode": "constant", "truncate": 3.0}
    # Gaussian-weighted sums over each neighbourhood, as weighted sample counts: the normalised filter of the
    # cell sums times 2π s² (s = sigma / CELL in cells) is Σ w over samples with w = 1 at the centre
    mass = 2.0 * math.pi * (sigma / CELL) ** 2
    num, den, rr, cnt = (
        mass * ndimage.gaussian_filter(_cell_sums(ys, xs, v, grid), **opts)
        for v in (num_s, den_s, rr_s, np.ones(len(ys)))
    )
    fit = np.where(den > 0, num / np.maximum(den, 1e-30), 0.0)
    # residual variance per sample of the least-squares mix, floored at the frame's where few samples fall
    resid = float(rr_s.sum() - 2 * alpha_g * num_s.sum() + alpha_g**2 * den_all)
    frame_var = max(resid, 0.0) / max(len(ys), 1)
    local_var = np.maximum(rr - fit * num, 0.0) / np.maximum(cnt, 1e-12)
    var = np.where(cnt >= 8, local_var, frame_var)
    k = var / tau**2
    alpha = (num + k) / np.maximum(den + k, 1e-30)
    alpha = np.clip(alpha, 0.0, 1.0).astype(np.float32)
    full = cv2.resize(alpha, (grid[1] * CELL, grid[0] * CELL), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(full[:h, :w]), alpha_g


def held_out(known: np.ndarray, share: float, seed: int, folds: int = 1) -> np.ndarray:
    """uint8 (H, W): fold number 1..``folds`` for a random ``share`` of the known pixels per fold, 0 elsewhere.

    The folds are disjoint; at least one known pixel is never set aside.
    """
    ys, xs = np.nonzero(known)
    n = min(round(share * len(ys)), (len(ys) - 1) // max(folds, 1))
    held = np.zeros(known.shape, dtype=np.uint8)
    if n <= 0:
        return held
    pick = np.random.default_rng(seed).choice(len(ys), size=n * folds, replace=False)
    held[ys[pick], xs[pick]] = np.repeat(np.arange(1, folds + 1, dtype=np.uint8), n)
    return held


def _steps(total: int, show: bool | None, pixels: int) -> Callable[..., None]:
    """A step counter with a progress bar when ``show`` (None: frames over a megapixel) and stderr is a terminal;
    ``tick(close=True)``."""
    from edgeae.reconstruct import show_progress

    if not show_progress(show, pixels, 1_000_000):
        return lambda close=False: None
    bar = require("tqdm").tqdm(total=total, desc="cross-check", unit="fill", leave=False)

    def tick(close: bool = False) -> None:
        bar.update(1)
        if close:
            bar.close()

    return tick


def cross_checked_fill(
    image: np.ndarray,
    known: np.ndarray,
    predictor: Any,
    config: CrossCheckConfig | None = None,
    report: dict[str, Any] | None = None,
    **reconstruct_kwargs: Any,
) -> np.ndarray:
    """α·CAE + (1 − α)·``config.method`` of ``image`` sampled at ``known`` (see the module docstring).

    ``image`` (H, W) or (H, W, C) float32 in [0, 1] (checked as :func:`edgeae.reconstruct.reconstruct` does: a
    NaN/inf known sample counts as destroyed, with a warning), ``known`` bool (H, W). ``report`` (optional dict)
    receives ``alpha_mean``, ``alpha_frame`` (the frame-wide weight), ``held`` (samples set aside) and ``cae_share``
    (fraction of pixels with α ≥ 0.5). ``reconstruct_kwargs`` go to :func:`edgeae.reconstruct.reconstruct`.
    """
    from edgeae.reconstruct import reconstruct

    cfg = config or CrossCheckConfig()
    # as reconstruct() does: float [0, 1] only, a NaN/inf known sample is destroyed (it would spread through
    # every fill and weight), destroyed pixels zeroed; done once here, so every fill below gets clean input
    img, k, squeeze, bad = _inpaint.prepare(image, known)
    if bad:
        log.warning("%d known pixels hold NaN or inf samples: treated as destroyed", bad)
    held = held_out(k, cfg.holdout, cfg.seed, cfg.folds)
    n_held = int(np.count_nonzero(held))
    # one bar over the whole cross-check (its CAE passes and classical fills), not one bar per CAE pass
    show = reconstruct_kwargs.pop("progress", None)
    reconstruct_kwargs["progress"] = False
    tick = _steps(2 + 2 * cfg.folds, show, k.size)
    full_cae = reconstruct(img, k, "cae", predictor=predictor, **reconstruct_kwargs)
    tick()
    if n_held < MIN_HELD:
        log.warning(
            "cross-check: only %d received samples to set aside (need %d): the CAE alone is used", n_held, MIN_HELD
        )
        if report is not None:
            report.update(alpha_mean=1.0, alpha_frame=1.0, held=n_held, cae_share=1.0, skipped=True)
        tick(close=True)
        return full_cae[..., 0] if squeeze else full_cae
    ys, xs = np.nonzero(held)
    fold = held[ys, xs]
    part_cae = np.empty((len(ys), img.shape[2]), dtype=np.float32)
    part_cls = np.empty_like(part_cae)
    for f in range(1, cfg.folds + 1):  # each fold rebuilt from the samples not in it
        rest = k & (held != f)
        sel = fold == f
        part_cae[sel] = reconstruct(img, rest, "cae", predictor=predictor, **reconstruct_kwargs)[ys[sel], xs[sel]]
        tick()
        part_cls[sel] = _inpaint.fill_prepared(img * rest[..., None], rest, cfg.method)[ys[sel], xs[sel]]
        tick()
    alpha, alpha_g = weight_map(k.shape, ys, xs, img[ys, xs], part_cae, part_cls, cfg.sigma, cfg.tau)
    full_cls = _inpaint.fill_prepared(img, k, cfg.method)
    tick(close=True)
    out = full_cls + alpha[..., None] * (full_cae - full_cls)
    out = np.clip(out, 0.0, 1.0)
    out[k] = img[k]
    if report is not None:
        report.update(
            alpha_mean=float(alpha.mean()), alpha_frame=alpha_g, held=n_held, cae_share=float((alpha >= 0.5).mean())
        )
    return out[..., 0] if squeeze else out

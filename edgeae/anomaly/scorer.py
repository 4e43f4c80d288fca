"""The patch scorer: a model a predictor loaded (β-VAE, or the CAE by masked reconstruction) as a numpy callable
that turns an NCHW float32 batch in [0, 1] into per-patch scores. The flight runtime and the scan pipeline reuse
:class:`PatchScorer`; :mod:`edgeae.anomaly.score` runs it over whole images.

Scores:

- ``vae``: the model's own ``score`` output, a(x) = Σ (x − x̂)² + λ·Σ μ² (λ inside the graph). ``rec`` and
  ``mu2`` (the two terms) are returned too, for the baselines.
- ``cae``: a flight computer may carry only the reconstruction CAE. The patch is sampled with a fixed mask
  (:func:`edgeae.masks.make_mask`, ``keep`` fraction, ``seed``), reconstructed, and scored by the sum of
  squared errors over the pixels the model did not see. Unusual terrain is predicted worst. A CAE with a
  fixed larger input (128×128) gets the patch reflect-padded to its size; only the patch's pixels count.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SCORE_KINDS = ("vae", "cae")


@dataclass
class PatchScorer:
    """Callable: (N, C, P, P) float32 in [0, 1] -> dict with ``score`` (N,) and, for the VAE, ``rec``,
    ``mu2`` and (when ``keep_latents``) ``mu`` (N, D); with ``views`` > 1 also ``mu_views`` (N, views, D), the
    latents of each patch's first ``views`` rotations and flips (:mod:`edgeae.anomaly.views`; view 0 is the patch,
    the other outputs are view 0's), at ``views`` times the model calls (one per view)."""

    predictor: Callable[[np.ndarray], Any]
    kind: str
    channels: int
    cae_keep: float = 0.5
    cae_seed: int = 0
    cae_pattern: str = "uniform"
    cae_tile: int | None = None
    keep_latents: bool = False
    views: int = 1
    _mask: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in SCORE_KINDS:
            raise ValueError(f"cannot score patches with a {self.kind!r} model; use one of {SCORE_KINDS}")
        from edgeae.anomaly.views import VIEWS

        if not 1 <= self.views <= VIEWS:
            raise ValueError(f"views must be 1 to {VIEWS} (rotations and flips of a patch), got {self.views}")
        if self.views > 1 and not (self.kind == "vae" and self.keep_latents):
            raise ValueError("views > 1 average latents: they need a VAE scorer that keeps its latents")
        if self.kind == "cae" and not 0.0 < self.cae_keep <= 1.0:  # also refuses NaN; now, not at the first call
            raise ValueError(f"cae_keep must be a fraction in (0, 1]: the pixels the CAE sees, got {self.cae_keep}")

    def _cae_mask(self, size: int) -> np.ndarray:
        if self._mask is None or self._mask.shape != (size, size):
            from edgeae.masks import make_mask

            self._mask = make_mask(self.cae_seed, (size, size), self.cae_keep, self.cae_pattern)
        return self._mask

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise ValueError(f"expected an (N, {self.channels}, P, P) batch, got shape {x.shape}")
        if self.kind == "vae":
            if self.views > 1:
                from edgeae.anomaly.views import dihedral

                out = self.predictor(x)  # view 0; then one call per view, so no call is larger than the batch
                mus = [np.asarray(out["mu"], dtype=np.float32)]
                mus += [np.asarray(self.predictor(dihedral(x, g))["mu"], np.float32) for g in range(1, self.views)]
                views = np.stack(mus, axis=1)
            else:
                out = self.predictor(x)
            res = {
                "score": np.asarray(out["score"], dtype=np.float64).reshape(-1),
                "rec": ((x - out["x_hat"]).astype(np.float64) ** 2).reshape(len(x), -1).sum(axis=1),
                "mu2": (np.asarray(out["mu"], dtype=np.float64) ** 2).sum(axis=1),
            }
            if self.keep_latents:
                res["mu"] = np.asarray(out["mu"], dtype=np.float32)
            if self.views > 1:
                res["mu_views"] = np.ascontiguousarray(views)
            return res
        p = x.shape[-1]
        tile = max(p, self.cae_tile or p)
        # a CAE with a fixed, larger input: reflect-pad, score only the patch's own pixels
        pad = ((0, 0), (0, 0), (0, tile - p), (0, tile - p))
        x_in = np.pad(x, pad, mode="reflect") if tile > p else x
        known = self._cae_mask(tile)
        x_hat = np.asarray(self.predictor(x_in * known), dtype=np.float32)[..., :p, :p]
        err = ((x - x_hat).astype(np.float64) ** 2) * ~known[:p, :p]
        return {"score": err.reshape(len(x), -1).sum(axis=1)}


def make_scorer(
    predictor: Any, *, cae_keep: float = 0.5, cae_seed: int = 0, keep_latents: bool = False, views: int = 1
) -> PatchScorer:
    """A :class:`PatchScorer` for a loaded predictor (:func:`edgeae.load_predictor`); the kind and channels come from
    its metadata. Call it on an (N, C, P, P) float32 batch in [0, 1]; it returns ``{"score": (N,), ...}``.

    A VAE's score is a(x) = ||x − x̂||² + λ·||μ||² (sums over the patch's pixels and latent dimensions, λ from the
    model's metadata: on an LROC NAC tile about 1,300 to 29,000 with the zoo's grey VAE), extras ``rec`` and
    ``mu2``; a CAE's is its masked-reconstruction error, the summed squared error on the pixels it did not see when
    ``cae_keep`` of them (default half, mask seed ``cae_seed``) were kept (grows with the patch's area; the flight
    runtime's mean-squared form divides by it). ``keep_latents``: keep each patch's μ in the extras (the set-wide
    rankings of ``edgeae score --score frame-z-knn`` need them); ``views``: average μ over the patch's first N
    rotations and flips (1-8; N times the model calls). Scores compare within one model only."""
    meta = predictor.metadata
    side = int(meta.input_shape[2] if meta.layout == "NCHW" else meta.input_shape[1])
    return PatchScorer(
        predictor,
        kind=meta.kind,
        channels=int(meta.channels),
        cae_tile=side if side > 0 and meta.kind == "cae" else None,
        cae_keep=cae_keep,
        cae_seed=cae_seed,
        keep_latents=keep_latents,
        views=views,
    )

"""Patch anomaly scoring onboard: batches of patches through the exported model, and the top-k keeper.

Two methods, both computed in the artifact's own graph plus at most one numpy line here:

- ``vae``: the exported VAE returns a(x) = ||x − x̂||² + λ·||μ||² per patch (``score`` output);
- ``cae-masked``: the CAE reconstructs the patch from its sparse samples (destroyed pixels set to 0, as in
  training); the score is the mean squared error of the reconstruction over all pixels of the patch. A patch
  the CAE cannot predict from its samples is one it has not learned to expect.

Raw samples are normalised by the camera's bit depth (value / (2**bits − 1)) into preallocated buffers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .mission import Anomaly


class ScoringError(ValueError):
    """The model and the mission disagree (kind, channels, patch size)."""


def check_model(meta: Any, anomaly: Anomaly, channels: int, source: str) -> None:
    """Refuse a model whose kind, channels or input size does not fit the mission."""
    want = "vae" if anomaly.method == "vae" else "cae"
    if meta.kind != want:
        raise ScoringError(f"{source}: method {anomaly.method!r} needs a {want} model, artifact is {meta.kind!r}")
    if meta.channels != channels:
        raise ScoringError(f"{source}: model has {meta.channels} channels, camera has {channels}")
    shape = meta.input_shape
    hw = shape[2:] if meta.layout == "NCHW" else shape[1:3]
    for v in hw:
        if v > 0 and v != anomaly.patch:
            raise ScoringError(f"{source}: model input {shape} does not take {anomaly.patch}-px patches")


def resolve_threshold(anomaly: Anomaly, meta: Any, source: str) -> float | None:
    """The numeric threshold: the mission's, the artifact's (``"metadata"``), or None for top-k only."""
    t = anomaly.threshold
    if t is None:
        return None
    if t == "metadata":
        v = (meta.score or {}).get("threshold")
        if v is None:
            raise ScoringError(f'{source}: threshold = "metadata" but the artifact records no score threshold')
        return float(v)
    return float(t)


class PatchScorer:
    """Scores patches in batches through a predictor, reusing one preallocated input buffer."""

    def __init__(self, predictor: Any, method: str, patch: int, channels: int, batch: int, bit_depth: int) -> None:
        self.predictor = predictor
        self.method = method
        self.buf = np.zeros((batch, channels, patch, patch), np.float32)
        self.truth = np.zeros_like(self.buf) if method == "cae-masked" else self.buf
        self.scale = np.float32(1.0 / ((1 << bit_depth) - 1))

    @property
    def batch(self) -> int:
        return int(self.buf.shape[0])

    def load(self, k: int, samples: np.ndarray, keep_mask: np.ndarray | None = None) -> None:
        """Put one (P, P, C) raw patch into slot ``k`` of the batch (masked for the CAE method)."""
        np.multiply(samples.transpose(2, 0, 1), self.scale, out=self.truth[k], casting="unsafe")
        if self.method == "cae-masked":
            np.multiply(self.truth[k], keep_mask[None, :, :] if keep_mask is not None else 1.0, out=self.buf[k])

    def run(self, n: int) -> np.ndarray:
        """Anomaly scores (n,) of the first ``n`` slots, float64."""
        out = self.predictor(self.buf[:n])
        if self.method == "vae":
            return np.asarray(out["score"], np.float64).reshape(-1)[:n]
        err = np.asarray(out, np.float32) - self.truth[:n]
        return np.asarray(np.mean(err * err, axis=(1, 2, 3), dtype=np.float64))


@dataclass
class Candidate:
    score: float
    x: int
    y: int
    pixels: np.ndarray


class TopK:
    """The ``k`` highest-scoring patches of a frame (above ``threshold`` when one is set), bounded memory."""

    def __init__(self, k: int, threshold: float | None) -> None:
        self.k = max(1, k)
        self.threshold = threshold
        self.items: list[Candidate] = []
        self.flagged = 0
        self.scored = 0
        self.max_score = float("-inf")

    def offer(self, score: float, x: int, y: int, pixels: np.ndarray) -> None:
        self.scored += 1
        self.max_score = max(self.max_score, score)
        if self.threshold is not None and not score > self.threshold:
            return
        self.flagged += 1
        if len(self.items) < self.k:
            self.items.append(Candidate(score, x, y, pixels.copy()))
        else:
            low = min(range(len(self.items)), key=lambda i: self.items[i].score)
            if score > self.items[low].score:
                self.items[low] = Candidate(score, x, y, pixels.copy())

    def ranked(self) -> list[Candidate]:
        return sorted(self.items, key=lambda c: (-c.score, c.y, c.x))

"""Turn any model the user can name into a patch scorer: float32 (N, C, P, P) in [0, 1] -> scores (N,).

Scores come from :class:`edgeae.anomaly.score.PatchScorer`, so they are the numbers ``edgeae score`` gives:
VAE models the anomaly score a(x) = ||x - x̂||² + λ||μ||²; reconstruction models (CAE) the error of a
masked reconstruction over the pixels the model did not see.
Each worker process or Ray actor builds its own scorer from a :class:`ModelSpec`, which is small and
picklable, so the model itself never crosses a process boundary.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeae.metadata import ModelMetadata, sha256_file

Scorer = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ModelSpec:
    """What every worker needs to rebuild the same scorer: the model file, its id and its hash."""

    path: str
    model_id: str
    artifact_hash: str
    kind: str
    patch: int
    channels: int

    def __post_init__(self) -> None:
        if self.patch <= 0 or self.channels not in (1, 3):
            raise ValueError(f"{self.path}: model input must be (C in 1|3, P, P), got C={self.channels} P={self.patch}")


def _input_geometry(meta: ModelMetadata, source: str) -> tuple[int, int]:
    shape = meta.input_shape
    c, h, w = (shape[1], shape[2], shape[3]) if meta.layout == "NCHW" else (shape[3], shape[1], shape[2])
    if h <= 0 or w <= 0 or h != w:
        raise ValueError(f"{source}: scanning needs a fixed square patch input, model takes {meta.input_shape}")
    return int(c), int(h)


def resolve_model(spec: str | os.PathLike[str], predictor: Any | None = None) -> ModelSpec:
    """Resolve a zoo name or a model file into a :class:`ModelSpec` (loads the model once to read metadata)."""
    from edgeae.predictor import load_predictor, resolve_model_path

    path = resolve_model_path(spec)
    if predictor is None:
        predictor = load_predictor(path, threads=1)
    meta = predictor.metadata
    if meta.kind not in ("cae", "vae"):
        raise ValueError(f"{path}: a {meta.kind!r} model cannot score patches; use a vae (or cae) model")
    channels, patch = _input_geometry(meta, str(path))
    given = Path(os.fspath(spec))
    model_id = given.stem if given.suffix else str(spec)
    return ModelSpec(
        path=str(path.resolve()),
        model_id=model_id,
        artifact_hash=sha256_file(path),
        kind=meta.kind,
        patch=patch,
        channels=channels,
    )


def make_scorer(predictor: Any) -> Scorer:
    """Wrap a loaded predictor as a patch scorer with :class:`edgeae.anomaly.score.PatchScorer` (the same
    numbers as ``edgeae score``: VAE a(x), CAE masked-reconstruction error)."""
    from edgeae.anomaly.score import make_scorer as make_patch_scorer

    patch_scorer = make_patch_scorer(predictor)

    def score(batch: np.ndarray) -> np.ndarray:
        return np.asarray(patch_scorer(batch)["score"], dtype=np.float64).reshape(-1)

    return score


def load_scorer(spec: ModelSpec, threads: int | None = 1, device: str = "cpu") -> Scorer:
    """Build the scorer for ``spec`` in this process; refuses a file whose hash changed since the scan began."""
    from edgeae.predictor import load_predictor

    if sha256_file(spec.path) != spec.artifact_hash:
        raise ValueError(f"{spec.path}: model file changed since the scan started (hash mismatch)")
    if Path(spec.path).suffix == ".pt":
        return make_scorer(load_predictor(spec.path, threads=threads, device=device))
    return make_scorer(load_predictor(spec.path, threads=threads))

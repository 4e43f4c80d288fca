"""The tail gate: an artifact's anomaly score must keep PyTorch's ranking at the top of whole real frames.

:func:`tail_scores` is the flight score of each patch (the VAE's ``score`` output; the CAE's masked-reconstruction
error), :func:`tail_terms_max` the orbital mission's ``terms-max`` score per frame, and :class:`TailGate` applies
:func:`edgeae.export.parity.tail_metrics` and the budgets to one artifact (``edgeae export``; ``python -m
edgeae.export.tail`` and ``edgeae.export.board`` use the same scores).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .graphs import Graph, torch_outputs
from .parity import TAIL_BUDGETS, run_batched, tail_failures, tail_metrics

TAIL_KINDS = ("vae", "cae")
CAE_TAIL_KEEP = 0.05  # the flight "cae-masked" score: reconstruct from 5 % of the pixels (rover mission keep)


def tail_scores(predict: Any, kind: str, patches: np.ndarray) -> np.ndarray:
    """The flight anomaly score of each patch: the VAE's ``score`` output, or the CAE's masked-reconstruction
    mean squared error (as :mod:`edgeae.firmware_sim.score` computes it, in float from the dequantised x̂)."""
    if kind == "vae":
        return np.asarray(run_batched(predict, kind, patches)["score"], np.float64).reshape(-1)
    from edgeae.masks import make_mask

    keep = make_mask(0, patches.shape[-2:], CAE_TAIL_KEEP, "uniform")[None, None].astype(np.float32)
    x_hat = run_batched(predict, kind, np.ascontiguousarray(patches * keep))["x_hat"]
    err = np.asarray(x_hat, np.float32) - patches
    return np.asarray(np.mean(err * err, axis=(1, 2, 3), dtype=np.float64))


def tail_terms_max(predict: Any, frames: list[np.ndarray], lam: float) -> list[np.ndarray]:
    """Per frame, the ``terms-max`` flight score (:mod:`edgeae.anomaly.terms`) of every patch: the VAE's two
    terms from its ``score`` and ``mu`` outputs, each over its median in that frame, the larger."""
    from edgeae.anomaly.terms import frame_terms_max, terms_from_outputs

    out = []
    for patches in frames:
        o = run_batched(predict, "vae", patches)
        out.append(frame_terms_max(*terms_from_outputs(o["score"], o["mu"], lam)))
    return out


class TailGate:
    """The tail checks of the scoring artifacts (VAE, full CAE) on whole real frames: :func:`tail_metrics` of
    the artifact's flight score (and a VAE's ``terms-max`` score) against PyTorch's, computed once per kind."""

    def __init__(self, frames: list[tuple[str, np.ndarray]], channels: int, side: int) -> None:
        from .calibration import extreme_patches

        self.frames = [p for _, p in frames]
        self.extremes = extreme_patches(channels, side)
        self.ref: dict[str, tuple[list[np.ndarray], np.ndarray]] = {}
        self.ref_tm: dict[str, list[np.ndarray]] = {}

    def check(self, graph: Graph, predictor: Any, precision: str) -> tuple[dict[str, Any], list[str]]:
        """(entries for the record's ``parity``: ``tail`` and for a VAE with λ ``tail_terms_max``, failures)."""
        ref_fn = lambda b, g=graph: torch_outputs(g, b)  # noqa: E731
        if graph.kind not in self.ref:
            scores = [tail_scores(ref_fn, graph.kind, p) for p in self.frames]
            self.ref[graph.kind] = (scores, tail_scores(ref_fn, graph.kind, self.extremes))
        ref_scores, ref_ext = self.ref[graph.kind]
        got = [tail_scores(predictor, graph.kind, p) for p in self.frames]
        tail = tail_metrics(ref_scores, got, (ref_ext, tail_scores(predictor, graph.kind, self.extremes)))
        bad = tail_failures(tail, precision)
        out: dict[str, Any] = {"tail": {**tail, "budget": TAIL_BUDGETS[precision], "passed": not bad}}
        failures = [f"tail check: {', '.join(bad)}"] if bad else []
        lam = (graph.metadata.score or {}).get("lambda") if graph.kind == "vae" else None
        if lam is not None:  # the orbital mission's flight score ranks by the two terms: gate its tail too
            if graph.kind not in self.ref_tm:
                self.ref_tm[graph.kind] = tail_terms_max(ref_fn, self.frames, float(lam))
            tm = tail_metrics(self.ref_tm[graph.kind], tail_terms_max(predictor, self.frames, float(lam)))
            bad = tail_failures(tm, precision)
            out["tail_terms_max"] = {**tm, "budget": TAIL_BUDGETS[precision], "passed": not bad}
            failures += [f"terms-max tail check: {', '.join(bad)}"] if bad else []
        return out, failures

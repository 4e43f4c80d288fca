"""Patch anomaly scoring onboard: batches of patches through the exported model.

Two methods, both computed in the artifact's own graph plus at most one numpy line here:

- ``vae``: the exported VAE returns a(x) = ||x − x̂||² + λ·||μ||² per patch (``score`` output);
- ``cae-masked``: the CAE reconstructs the patch from its sparse samples (destroyed pixels set to 0, as in
  training); the score is the mean squared error of the reconstruction over the patch's *valid* pixels (a
  patch that overlaps a dark sensor margin or no-data by less than ``min_valid`` is scored on the rest, so the
  edge between margin and content cannot make it anomalous). A patch the CAE cannot predict from its samples
  is one it has not learned to expect.

A partial patch's no-data pixels reach the VAE filled with the mean of the patch's valid pixels, per channel
(:func:`fill_no_data`: ``edgeae.nodata.fill_patches``, the ground's own fill): read as black, the margin's edge inside
the patch was texture the VAE scored.

Raw samples are normalised by the camera's bit depth (value / (2**bits − 1)) into preallocated buffers.
The top-k keepers live in :mod:`.topk`, the scoring threads in :mod:`.score_engine` (both re-exported here).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from edgeae.nodata import fill_patches as fill_no_data

from .mission import Anomaly
from .score_engine import Fill as Fill
from .score_engine import Runner as Runner
from .score_engine import ScoreEngine as ScoreEngine
from .score_engine import background as background
from .topk import Candidate as Candidate
from .topk import TermsTopK as TermsTopK
from .topk import TopK as TopK


class ScoringError(ValueError):
    """The model and the mission disagree (kind, channels, patch size)."""


def check_model(meta: Any, anomaly: Anomaly, channels: int, source: str, mission_file: str = "") -> None:
    """Refuse a model whose kind, channels or input size does not fit the mission, naming the mission's key (and
    ``mission_file``, the file that sets it, when given) and the value that would fit."""
    where = f"{mission_file} " if mission_file else ""
    want = "vae" if anomaly.method == "vae" else "cae"
    if meta.kind != want:
        fits = next((m for m in ("vae", "cae-masked") if m.startswith(str(meta.kind))), "")
        hint = f" (method = {fits!r} scores with it)" if fits else ""
        raise ScoringError(
            f"{source}: {where}[anomaly] method = {anomaly.method!r} needs a {want} model, the artifact is a "
            f"{meta.kind!r} model{hint}"
        )
    if meta.channels != channels:
        raise ScoringError(
            f"{source}: the model takes {_count(meta.channels, 'channel')}, but {where}[camera] channels = {channels}"
        )
    shape = meta.input_shape
    hw = shape[2:] if meta.layout == "NCHW" else shape[1:3]
    for v in hw:
        if v > 0 and v != anomaly.patch:
            raise ScoringError(
                f"{source}: the model takes {v}-px patches (input {tuple(shape)}), but {where}[anomaly] patch = "
                f"{anomaly.patch}: set patch = {v}"
            )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


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

    def __init__(
        self,
        predictor: Any,
        method: str,
        patch: int,
        channels: int,
        batch: int,
        bit_depth: int,
        terms_lambda: float | None = None,
    ) -> None:
        self.predictor = predictor
        self.method = method
        self.terms_lambda = terms_lambda  # set: :meth:`run` returns the VAE's (rec, mu2) terms, (n, 2)
        self.buf = np.zeros((batch, channels, patch, patch), np.float32)
        self.truth = np.zeros_like(self.buf) if method == "cae-masked" else self.buf
        self.weight = np.ones((batch, 1, patch, patch), np.float32)  # 1 = valid pixel (cae-masked error only)
        self.scale = np.float32(1.0 / ((1 << bit_depth) - 1))

    @property
    def batch(self) -> int:
        return int(self.buf.shape[0])

    def load(
        self, k: int, samples: np.ndarray, keep_mask: np.ndarray | None = None, valid: np.ndarray | None = None
    ) -> None:
        """Put one (P, P, C) raw patch into slot ``k`` of the batch (masked for the CAE method); ``valid``
        (P, P) bool: the VAE gets a partial patch's no-data pixels filled (:func:`fill_no_data`), the CAE
        method's error counts the valid pixels only."""
        np.multiply(samples.transpose(2, 0, 1), self.scale, out=self.truth[k], casting="unsafe")
        if self.method == "vae" and valid is not None:  # the CAE method neither shows nor scores no-data
            fill_no_data(self.truth[k : k + 1], valid[None])
        if self.method == "cae-masked":
            keep = keep_mask if keep_mask is not None else np.ones(self.buf.shape[2:], bool)
            if valid is not None:  # a margin's pixels are neither shown to the CAE nor scored
                keep = keep & valid
            np.multiply(self.truth[k], keep[None, :, :], out=self.buf[k])
            if valid is None:
                self.weight[k] = 1.0
            else:
                self.weight[k, 0] = valid

    def run(self, n: int) -> np.ndarray:
        """Anomaly scores (n,) of the first ``n`` slots, float64 (the terms, (n, 2), with ``terms_lambda``)."""
        out = self.predictor(self.buf[:n])
        if self.method == "vae" and self.terms_lambda is not None:
            return _terms(np.asarray(out["score"]).reshape(-1)[:n], out["mu"][:n], self.terms_lambda)
        if self.method == "vae":
            return np.asarray(out["score"], np.float64).reshape(-1)[:n]
        err = np.asarray(out, np.float32) - self.truth[:n]
        w = self.weight[:n]
        sq = np.sum(err * err * w, axis=(1, 2, 3), dtype=np.float64)
        return np.asarray(sq / np.maximum(np.sum(w, axis=(1, 2, 3), dtype=np.float64) * err.shape[1], 1.0))


# ---------------------------------------------------------------------------------------------- fast path
# The scoring path shared by the flight loop, ``edgeae score`` and ``edgeae scan``: a runner turns one batch
# into VAE scores with nothing but the interpreter call (only the score output is read back), and a
# :class:`.score_engine.ScoreEngine` keeps both cores busy with one runner per thread while the caller
# prepares the next batch. Scores equal the :class:`PatchScorer` ones: the same float32 normalisation, the
# same quantisation.


def _raw_table(raw_max: int) -> np.ndarray:
    """float32 value of every raw sample 0..raw_max, computed exactly as :meth:`PatchScorer.load` does."""
    raw = np.arange(raw_max + 1, dtype=np.uint8 if raw_max <= 0xFF else np.uint16)
    return np.asarray(np.multiply(raw, np.float32(1.0 / raw_max)), np.float32)


def score_runner(predictor: Any, raw_max: int | None = None, terms: bool = False, latents: bool = False) -> Runner:
    """A function (N, C, P, P) batch -> VAE scores (N,) float64 for one loaded predictor (not thread-safe:
    one runner per thread). ``terms``: return the score's two terms instead, (N, 2) float64 columns rec and
    mu2 (:func:`edgeae.anomaly.terms.terms_from_outputs`: the ``mu`` output is read back too). ``latents``: return
    (N, 1 + D) float64, the reconstruction term rec then the latent mean μ (for spatial-context rankings,
    :mod:`edgeae.anomaly.context`).

    ``raw_max``: the batch holds raw integer samples in [0, raw_max] (a camera's ``2**bits - 1``), normalised
    here exactly as :class:`PatchScorer` does; None: the batch is float32 in [0, 1] already. An int8 LiteRT
    artifact gets its quantised input through a lookup table of the same arithmetic (bit-identical to the
    float route, without a float pass over the patch); onnxruntime computes only the ``score`` output.

    The runner takes an optional ``fill`` (:data:`Fill`: the batch's partial patches, by index, with their
    (k, P, P) valid masks): their no-data pixels are filled with the mean of their valid ones after
    normalisation (:func:`fill_no_data`), as :class:`PatchScorer` fills them; only those patches pay for it.
    """
    from .runtime import _OnnxRunner, _TFLiteRunner, _to_layout, dequantize, quantize

    meta = getattr(predictor, "metadata", None)
    inner = getattr(predictor, "_runner", None)
    layout = getattr(meta, "layout", "NCHW")
    table = _raw_table(raw_max) if raw_max else None

    def as_float(batch: np.ndarray, fill: Fill | None = None) -> np.ndarray:
        x = np.asarray(table[batch], np.float32) if table is not None else np.ascontiguousarray(batch, np.float32)
        if fill is not None:  # filled in place: never the caller's batch
            x = x if x is not batch else x.copy()
            x[fill[0]] = fill_no_data(x[fill[0]], fill[1])
        return x

    if getattr(meta, "kind", "") != "vae":
        raise ScoringError(f"the fast scoring path runs VAE models, not {getattr(meta, 'kind', '?')!r}")
    if terms and latents:
        raise ScoringError("a runner returns the two terms or the latents, not both")
    lam = model_lambda(meta) if terms or latents else 0.0
    pack = _latents if latents else _terms
    terms = terms or latents  # from here: whether the mu output is read back
    if isinstance(inner, _TFLiteRunner):
        interp = inner.interp
        d_in = inner._detail(inner.input_index)
        score_index = inner.output_indices[0]
        d_out = inner._detail(score_index)
        in_index = inner.input_index
        if inner.static_batch is None or (terms and len(inner.output_indices) < 3):
            return _generic_runner(predictor, as_float, terms, lam, pack)  # a dynamic batch: resized by the runner
        mu_index = inner.output_indices[2] if terms else -1
        d_mu = inner._detail(mu_index) if terms else {}
        q_in = d_in["dtype"] in (np.int8, np.uint8)
        in_scale, in_zero = d_in["quantization"]
        q_table = quantize(table, in_scale, in_zero, d_in["dtype"]) if q_in and table is not None else None
        q_out = d_out["dtype"] in (np.int8, np.uint8)
        inner.batch = inner.static_batch  # the runner's own resize bookkeeping stays valid
        size = inner.static_batch  # one interpreter call per `size` patches: the GIL is taken once per call

        def run_tflite(batch: np.ndarray, fill: Fill | None = None) -> np.ndarray:
            if q_table is not None:
                x = q_table[batch]
                if fill is not None:  # only the partial patches take the float route
                    at, part = fill[0], (np.arange(fill[0].size), fill[1])
                    x[at] = quantize(as_float(batch[at], part), in_scale, in_zero, d_in["dtype"])
            elif q_in:
                x = quantize(as_float(batch, fill), in_scale, in_zero, d_in["dtype"])
            else:
                x = as_float(batch, fill)
            x = _to_layout(x, layout)
            n = len(x)
            if n % size:  # pad the last call; padded patches are scored and dropped (patches are independent)
                x = np.concatenate([x, np.zeros((size - n % size, *x.shape[1:]), x.dtype)])
            out = np.empty(len(x), np.float64)
            mu = np.empty((len(x), int(np.prod(d_mu["shape"][1:]))), np.float32) if terms else None
            for k in range(0, len(x), size):
                interp.set_tensor(in_index, x[k : k + size])
                interp.invoke()
                y = interp.get_tensor(score_index).reshape(-1)
                out[k : k + size] = dequantize(y, *d_out["quantization"]) if q_out else y
                if mu is not None:
                    m = interp.get_tensor(mu_index).reshape(size, -1)
                    mu[k : k + size] = dequantize(m, *d_mu["quantization"]) if m.dtype != np.float32 else m
            if mu is not None:
                return pack(out[:n], mu[:n], lam)
            return out[:n]

        return run_tflite
    if isinstance(inner, _OnnxRunner):
        sess, name, out_name = inner.session, inner.input_name, inner.output_names[0]

        mu_name = inner.output_names[2] if terms else ""

        def run_onnx(batch: np.ndarray, fill: Fill | None = None) -> np.ndarray:
            x = _to_layout(as_float(batch, fill), layout)
            if terms:
                score, mu = sess.run([out_name, mu_name], {name: x})
                return pack(score, mu, lam)
            return np.asarray(sess.run([out_name], {name: x})[0], np.float64).reshape(-1)

        return run_onnx
    return _generic_runner(predictor, as_float, terms, lam, pack)


def model_lambda(meta: Any) -> float:
    """λ of a VAE artifact's a(x) = rec + λ·mu2, from its metadata (refused when it records none)."""
    lam = (getattr(meta, "score", None) or {}).get("lambda")
    if lam is None or not np.isfinite(float(lam)):
        raise ScoringError('the artifact records no score lambda: score = "terms-max" needs it to split a(x)')
    return float(lam)


def _terms(score: np.ndarray, mu: np.ndarray, lam: float) -> np.ndarray:
    from edgeae.anomaly.terms import terms_from_outputs

    return np.stack(terms_from_outputs(score, mu, lam), axis=1)


def _latents(score: np.ndarray, mu: np.ndarray, lam: float) -> np.ndarray:
    """(N, 1 + D) float64: the reconstruction term rec (as in :func:`_terms`), then μ."""
    from edgeae.anomaly.terms import terms_from_outputs

    rec, _ = terms_from_outputs(score, mu, lam)
    return np.concatenate([rec[:, None], np.asarray(mu, np.float64).reshape(len(rec), -1)], axis=1)


def _generic_runner(
    predictor: Any,
    as_float: Callable[[np.ndarray, Fill | None], np.ndarray],
    terms: bool,
    lam: float,
    pack: Callable[[np.ndarray, np.ndarray, float], np.ndarray] = _terms,
) -> Runner:
    """Through the predictor's own call (every output read back): scores (N,), or ``pack(score, mu, λ)`` when
    ``terms`` (the two terms (N, 2), or rec and μ (N, 1 + D))."""

    def run(batch: np.ndarray, fill: Fill | None = None) -> np.ndarray:
        out = predictor(as_float(batch, fill))
        if terms:
            return pack(out["score"], out["mu"], lam)
        return np.asarray(out["score"], np.float64).reshape(-1)

    return run

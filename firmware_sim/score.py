"""Patch anomaly scoring onboard: batches of patches through the exported model, and the top-k keeper.

Two methods, both computed in the artifact's own graph plus at most one numpy line here:

- ``vae``: the exported VAE returns a(x) = ||x − x̂||² + λ·||μ||² per patch (``score`` output);
- ``cae-masked``: the CAE reconstructs the patch from its sparse samples (destroyed pixels set to 0, as in
  training); the score is the mean squared error of the reconstruction over the patch's *valid* pixels (a
  patch that overlaps a dark sensor margin or no-data by less than ``min_valid`` is scored on the rest, so the
  edge between margin and content cannot make it anomalous). A patch the CAE cannot predict from its samples
  is one it has not learned to expect.

Raw samples are normalised by the camera's bit depth (value / (2**bits − 1)) into preallocated buffers.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterator
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
        (P, P) bool limits the CAE method's error to the patch's valid pixels."""
        np.multiply(samples.transpose(2, 0, 1), self.scale, out=self.truth[k], casting="unsafe")
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
        self.nonfinite = 0  # scores that were NaN or infinite (a model fault): counted, never flagged
        self.max_score = float("-inf")

    def offer(self, score: float, x: int, y: int, pixels: np.ndarray) -> None:
        score = float(score)
        self.scored += 1
        if not math.isfinite(score):
            self.nonfinite += 1
            return
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

    def offer_batch(self, scores: np.ndarray, xs: np.ndarray, ys: np.ndarray, raw: np.ndarray) -> None:
        """:meth:`offer` for a batch, in order, with the same outcome: a score at or below the lowest kept one
        (when ``k`` are kept) can never enter, so only the few that can are offered one by one. ``raw`` holds
        the patches as (N, C, P, P) raw samples."""
        s = np.asarray(scores, np.float64)
        if s.size == 0:
            return
        self.scored += int(s.size)
        finite = np.isfinite(s)
        self.nonfinite += int(s.size - finite.sum())
        if finite.any():
            self.max_score = max(self.max_score, float(s[finite].max()))
        passing = (s > self.threshold if self.threshold is not None else np.ones(s.size, bool)) & finite
        self.flagged += int(passing.sum())
        if len(self.items) >= self.k:
            passing &= s > min(c.score for c in self.items)
        for i in np.flatnonzero(passing):
            score = float(s[i])
            if len(self.items) < self.k:
                self.items.append(Candidate(score, int(xs[i]), int(ys[i]), raw[i].transpose(1, 2, 0).copy()))
                continue
            low = min(range(len(self.items)), key=lambda j: self.items[j].score)
            if score > self.items[low].score:
                self.items[low] = Candidate(score, int(xs[i]), int(ys[i]), raw[i].transpose(1, 2, 0).copy())

    def ranked(self) -> list[Candidate]:
        return sorted(self.items, key=lambda c: (-c.score, c.y, c.x))


class TermsTopK:
    """The ``k`` highest patches of a frame by the ``terms-max`` score (:mod:`edgeae.anomaly.terms`), which
    needs the whole frame's medians of both terms: exact and streaming, with bounded memory.

    A patch among the ``k`` highest by max(rec / a, mu2 / b) is among the ``k`` highest by rec or by mu2
    (whichever term attains its maximum: fewer than ``k`` patches can exceed it in that term), so two
    :class:`TopK` keep those candidates (with their pixels) while the frame streams, and every scored patch's
    two terms and position are kept (at most ``capacity``: the frame's patch grid; 24 bytes a patch) for the
    medians. :meth:`ranked` normalises and ranks the union at the end of the frame. Offered scores are (N, 2)
    arrays of (rec, mu2); ``threshold`` applies to the normalised score (multiples of the frame's medians).
    """

    def __init__(self, k: int, threshold: float | None, capacity: int) -> None:
        self.k = max(1, k)
        self.threshold = threshold
        self.by_term = (TopK(self.k, None), TopK(self.k, None))
        self.terms = np.empty((max(0, int(capacity)), 2), np.float64)
        self.xy = np.empty((len(self.terms), 2), np.int32)  # pixel positions: 2 x 4 bytes a patch
        self.scored = 0
        self._done: tuple[list[Candidate], np.ndarray] | None = None

    def _keep(self, t: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> None:
        n, i = len(t), self.scored
        if i + n > len(self.terms):
            raise ValueError(f"more patches scored ({i + n}) than the frame's grid holds ({len(self.terms)})")
        self.terms[i : i + n] = t
        self.xy[i : i + n, 0] = xs
        self.xy[i : i + n, 1] = ys
        self.scored += n
        self._done = None

    def offer(self, score: np.ndarray, x: int, y: int, pixels: np.ndarray) -> None:
        t = np.asarray(score, np.float64).reshape(1, 2)
        self._keep(t, np.array([x]), np.array([y]))
        for j, top in enumerate(self.by_term):
            top.offer(float(t[0, j]), x, y, pixels)

    def offer_batch(self, scores: np.ndarray, xs: np.ndarray, ys: np.ndarray, raw: np.ndarray) -> None:
        t = np.asarray(scores, np.float64).reshape(-1, 2)
        if t.size == 0:
            return
        self._keep(t, xs, ys)
        for j, top in enumerate(self.by_term):
            top.offer_batch(t[:, j], xs, ys, raw)

    def _finish(self) -> tuple[list[Candidate], np.ndarray]:
        if self._done is not None:
            return self._done
        from edgeae.anomaly.terms import frame_scales, terms_max

        t, xy = self.terms[: self.scored], self.xy[: self.scored]
        if not len(t):
            self._done = ([], np.empty(0))
            return self._done
        every = terms_max(t[:, 0], t[:, 1], frame_scales(t[:, 0], t[:, 1]))
        union = {(c.x, c.y): c for top in self.by_term for c in top.items}
        out = []
        for (x, y), c in union.items():
            row = int(np.flatnonzero((xy[:, 0] == x) & (xy[:, 1] == y))[0])
            s = float(every[row])
            if math.isfinite(s) and (self.threshold is None or s > self.threshold):
                out.append(Candidate(s, x, y, c.pixels))
        out.sort(key=lambda c: (-c.score, c.y, c.x))
        self._done = (out[: self.k], every)
        return self._done

    def ranked(self) -> list[Candidate]:
        return list(self._finish()[0])

    @property
    def items(self) -> list[Candidate]:
        return self.ranked()

    @property
    def flagged(self) -> int:
        every = self._finish()[1]
        every = every[np.isfinite(every)]
        return int(every.size if self.threshold is None else (every > self.threshold).sum())

    @property
    def nonfinite(self) -> int:
        every = self._finish()[1]
        return int(every.size - np.isfinite(every).sum())

    @property
    def max_score(self) -> float:
        every = self._finish()[1]
        every = every[np.isfinite(every)]
        return float(every.max()) if every.size else float("-inf")


# ---------------------------------------------------------------------------------------------- fast path
# The scoring path shared by the flight loop, ``edgeae score`` and ``edgeae scan``: a runner turns one batch
# into VAE scores with nothing but the interpreter call (only the score output is read back), and a
# :class:`ScoreEngine` keeps both cores busy with one runner per thread while the caller prepares the next
# batch. Scores equal the :class:`PatchScorer` ones: the same float32 normalisation, the same quantisation.

Runner = Callable[[np.ndarray], np.ndarray]


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
    """
    from .runtime import _OnnxRunner, _TFLiteRunner, _to_layout, dequantize, quantize

    meta = getattr(predictor, "metadata", None)
    inner = getattr(predictor, "_runner", None)
    layout = getattr(meta, "layout", "NCHW")
    table = _raw_table(raw_max) if raw_max else None

    def as_float(batch: np.ndarray) -> np.ndarray:
        if table is not None:
            return np.asarray(table[batch], np.float32)
        return np.ascontiguousarray(batch, np.float32)

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

        def run_tflite(batch: np.ndarray) -> np.ndarray:
            if q_table is not None:
                x = q_table[batch]
            elif q_in:
                x = quantize(as_float(batch), in_scale, in_zero, d_in["dtype"])
            else:
                x = as_float(batch)
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

        def run_onnx(batch: np.ndarray) -> np.ndarray:
            x = _to_layout(as_float(batch), layout)
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
    as_float: Callable[[np.ndarray], np.ndarray],
    terms: bool,
    lam: float,
    pack: Callable[[np.ndarray, np.ndarray, float], np.ndarray] = _terms,
) -> Runner:
    """Through the predictor's own call (every output read back): scores (N,), or ``pack(score, mu, λ)`` when
    ``terms`` (the two terms (N, 2), or rec and μ (N, 1 + D))."""

    def run(batch: np.ndarray) -> np.ndarray:
        out = predictor(as_float(batch))
        if terms:
            return pack(out["score"], out["mu"], lam)
        return np.asarray(out["score"], np.float64).reshape(-1)

    return run


class ScoreEngine:
    """Scores batches on ``workers`` background threads, each with its own runner (its own interpreter:
    ``make_runner`` is called once per thread), at most ``depth`` batches in flight; results come back in
    submission order, so everything downstream sees the order of the sequential path.

    Interpreters release the GIL while they run, so two runners keep two cores busy while the caller decodes
    and cuts the next batch. ``workers=1`` still overlaps the caller's work with inference.
    """

    def __init__(self, make_runner: Callable[[], Runner], workers: int = 1, depth: int = 0, batch: int = 64) -> None:
        import concurrent.futures as cf
        import threading

        self.make_runner = make_runner
        self.batch = max(1, int(batch))  # patches per submitted batch (callers fill batches of this size)
        self.workers = max(1, int(workers))
        self.depth = depth or 2 * self.workers
        self._local = threading.local()
        self._pool = cf.ThreadPoolExecutor(self.workers, thread_name_prefix="edgeae-score")
        self._inflight: deque[tuple[Any, cf.Future[np.ndarray]]] = deque()
        self._lock = threading.Lock()
        self.busy_s = 0.0
        self.done_items = 0

    def _run(self, batch: np.ndarray) -> np.ndarray:
        runner = getattr(self._local, "runner", None)
        if runner is None:
            runner = self._local.runner = self.make_runner()
        t = time.perf_counter()
        out = runner(batch)
        with self._lock:  # what the interpreters really cost, for the deadline projection
            self.busy_s += time.perf_counter() - t
            self.done_items += len(batch)
        return out

    def warm(self) -> None:
        """Build every worker's runner now (each thread loads its own interpreter), not during a frame."""
        import threading

        barrier = threading.Barrier(self.workers)

        def build() -> None:
            barrier.wait(timeout=60)  # one task per thread: no thread can take two of them
            if getattr(self._local, "runner", None) is None:
                self._local.runner = self.make_runner()

        for fut in [self._pool.submit(build) for _ in range(self.workers)]:
            fut.result()

    @property
    def ms_per_item(self) -> float | None:
        """Wall ms per item with every worker busy (interpreter time / items / workers), None before any."""
        with self._lock:
            return 1e3 * self.busy_s / self.done_items / self.workers if self.done_items else None

    def submit(self, batch: np.ndarray, tag: Any = None) -> list[tuple[Any, np.ndarray]]:
        """Queue one batch (the engine owns it from now on); returns the results already finished, in order
        (waiting for the oldest when ``depth`` batches are in flight)."""
        self._inflight.append((tag, self._pool.submit(self._run, batch)))
        return self.ready(wait_for=len(self._inflight) - self.depth)

    def ready(self, wait_for: int = 0) -> list[tuple[Any, np.ndarray]]:
        """Finished results in submission order; blocks until at least ``wait_for`` are available."""
        out: list[tuple[Any, np.ndarray]] = []
        while self._inflight and (len(out) < wait_for or self._inflight[0][1].done()):
            tag, fut = self._inflight.popleft()
            out.append((tag, fut.result()))
        return out

    def drain(self) -> list[tuple[Any, np.ndarray]]:
        """Wait for every batch in flight; their results in order."""
        return self.ready(wait_for=len(self._inflight))

    @property
    def pending(self) -> int:
        return len(self._inflight)

    def close(self) -> None:
        for _, fut in self._inflight:
            fut.cancel()
        self._inflight.clear()
        self._pool.shutdown(wait=True)

    def __enter__(self) -> ScoreEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def background(items: Iterator[Any], depth: int = 2, name: str = "edgeae-tiling") -> Iterator[Any]:
    """Iterate ``items`` produced by a background thread, at most ``depth`` ahead (decoding and tiling
    overlap with scoring); the producer's exceptions are raised here, and closing stops the thread and then
    closes ``items`` (a generator's ``finally`` blocks run, in the caller's thread)."""
    import queue
    import threading

    q: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()
    end = object()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(end)
        except BaseException as exc:
            put(_Raised(exc))

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is end:
                return
            if isinstance(item, _Raised):
                raise item.exc
            yield item
    finally:
        stop.set()
        thread.join()
        close = getattr(items, "close", None)
        if close is not None:
            close()


@dataclass
class _Raised:
    exc: BaseException

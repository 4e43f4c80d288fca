"""Scoring the patches of one strip of a :class:`~.frame_work.FrameWork` frame, in one of two ways:
through the mission's :class:`~.score.PatchScorer` (batches scored in the caller's thread), or, for a VAE
with a :class:`~.score_engine.ScoreEngine`, the fast path (patches cut from a window view of the strip into
batches of raw samples scored on the engine's threads). Either way a partial patch (some no-data pixels) is
scored with those pixels filled with the mean of its valid ones (:func:`.score.fill_no_data`, as the ground
scores it), the scores go to the frame's top-k keeper (with the pixels as read), and a frame past its
available time stops scoring (``cut``).
"""

from __future__ import annotations

import bisect
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from .budget import patch_selected
from .score_engine import Fill

if TYPE_CHECKING:
    from .frame_work import FrameWork


def score_strip(fw: FrameWork, r0: int, samples: np.ndarray, mask: np.ndarray, valid: np.ndarray | None = None) -> None:
    """Every selected patch of the strip through the mission's PatchScorer, a batch at a time."""
    scorer, p, every = fw.rt.scorer, fw.m.anomaly.patch, fw.every
    if scorer is None or every == 0:
        return
    t = time.perf_counter()
    r1 = r0 + samples.shape[0]
    for i, y in enumerate(fw.ys):
        if y < r0 or y + p > r1:
            continue
        for j, x in enumerate(fw.xs):
            if not patch_selected(i, j, every):
                continue
            fw.n["selected"] += 1
            if fw.cut:
                fw.n["cut_by_deadline"] += 1
                continue
            tile = samples[y - r0 : y - r0 + p, x : x + p]
            vtile = None if valid is None else valid[y - r0 : y - r0 + p, x : x + p]
            frac = 1.0 if vtile is None else float(vtile.mean())
            if frac < fw.m.anomaly.min_valid:  # never scored, so never flagged
                fw.n["nodata_skipped"] += 1
                continue
            # the error counts the valid pixels only: a margin's edge inside the patch is not an anomaly
            scorer.load(len(fw.pending), tile, mask[y - r0 : y - r0 + p, x : x + p], vtile)
            fw.pending.append((x, y, tile))
            if len(fw.pending) == scorer.batch:
                _flush(fw)
    _flush(fw)  # the strip buffer is reused for the next strip
    fw.t["score"] += _ms(t)


def score_strip_fast(fw: FrameWork, r0: int, samples: np.ndarray, valid: np.ndarray | None = None) -> None:
    """Every selected patch of the strip, cut from a zero-copy window view of the strip straight into the
    batch buffer (raw samples), checked for no-data per row of patches, and handed to the ScoreEngine; a
    partial patch's valid mask goes with it (the engine's runner fills it, :func:`.score.score_runner`)."""
    p, every, an = fw.m.anomaly.patch, fw.every, fw.m.anomaly
    if every == 0:
        return
    t = time.perf_counter()
    r1 = r0 + samples.shape[0]
    lo, hi = bisect.bisect_left(fw.ys, r0), bisect.bisect_right(fw.ys, r1 - p)  # ys increase
    rows = [(i, fw.ys[i]) for i in range(lo, hi)]
    if not rows or not fw.xs:
        fw.t["score"] += _ms(t)
        return
    xs = np.asarray(fw.xs, np.int64)
    cols = np.arange(len(xs))
    win = np.lib.stride_tricks.sliding_window_view(samples, (p, p), axis=(0, 1))  # (R', W', C, p, p), a view
    vwin = None if valid is None else np.lib.stride_tricks.sliding_window_view(valid, (p, p))  # (R', W', p, p)
    for i, y in rows:
        sel = _selected(i, cols, every)
        n_sel = int(sel.sum())
        fw.n["selected"] += n_sel
        if fw.cut:
            fw.n["cut_by_deadline"] += n_sel
            continue
        part = None  # selected patches with some no-data pixels: filled before scoring
        if valid is not None:
            colsum = np.concatenate([[0], np.cumsum(valid[y - r0 : y - r0 + p].sum(axis=0))])
            count = colsum[xs + p] - colsum[xs]  # valid pixels of each patch
            low = sel & (count / float(p * p) < an.min_valid)
            fw.n["nodata_skipped"] += int(low.sum())
            sel &= ~low
            part = sel & (count < p * p)
        js = np.flatnonzero(sel)
        while js.size:
            if fw.cut:  # the deadline passed while this row was being batched
                fw.n["cut_by_deadline"] += int(js.size)
                break
            take = js[: fw.rt.engine.batch - fw.batch_n] if fw.rt.engine else js
            fill = None
            if part is not None and vwin is not None and part[take].any():
                at = np.flatnonzero(part[take])
                fill = (at, vwin[y - r0, xs[take[at]]])  # fancy indexing copies: the strip's mask is not kept
            _batch_add(fw, win[y - r0, xs[take]], xs[take], np.full(take.size, y, np.int64), fill)
            js = js[take.size :]
    fw.t["score"] += _ms(t)


def _batch_add(
    fw: FrameWork,
    raw: np.ndarray,
    xs: np.ndarray,
    ys: np.ndarray,
    fill: Fill | None = None,
) -> None:
    """Append patches to the batch being filled; ``fill``: (indices among them, their (k, P, P) valid masks)
    of the partial ones."""
    eng = fw.rt.engine
    assert eng is not None
    if fw.batch_raw is None:
        fw.batch_raw = np.empty((eng.batch, *raw.shape[1:]), raw.dtype)
    fw.batch_raw[fw.batch_n : fw.batch_n + len(raw)] = raw
    fw.batch_xy.append((xs, ys))
    if fill is not None:
        fw.batch_fill.append((fw.batch_n + fill[0], fill[1]))
    fw.batch_n += len(raw)
    if fw.batch_n == eng.batch:
        score_flush(fw)


def score_flush(fw: FrameWork, final: bool = False) -> None:
    """Submit the batch being filled (the engine owns its buffer from now on) and take in what finished;
    ``final``: wait for everything still in flight."""
    eng = fw.rt.engine
    if eng is None:
        return
    t = time.perf_counter()
    done: list[tuple[Any, np.ndarray]] = []
    if fw.batch_n and fw.batch_raw is not None:
        raw = fw.batch_raw[: fw.batch_n]
        xs = np.concatenate([a for a, _ in fw.batch_xy])
        ys = np.concatenate([b for _, b in fw.batch_xy])
        fill = None  # the runner fills the partial patches' no-data; the top-k keeps the pixels as read
        if fw.batch_fill:
            fill = (np.concatenate([a for a, _ in fw.batch_fill]), np.concatenate([v for _, v in fw.batch_fill]))
        w = time.perf_counter()
        done += eng.submit(raw, (xs, ys, raw), fill)
        fw.t_wait += _ms(w)
        fw.submitted += fw.batch_n
        fw.batch_raw, fw.batch_xy, fw.batch_fill, fw.batch_n = None, [], [], 0
        if _ms(fw.t0) > fw.available:
            fw.cut = True
    if final:
        w = time.perf_counter()
        done += eng.drain()
        fw.t_wait += _ms(w)
    _take(fw, done)
    if final:  # otherwise called from score_strip_fast, which times itself
        fw.t["score"] += _ms(t)


def score_wait(fw: FrameWork) -> None:
    """Wait for the batches the engine is scoring (the strips before) and take in their scores; the batch being
    filled stays. Called before each strip's pixel check of a frame that needs it to fit the memory budget
    (``FrameWork.wait``, :func:`.frame_work.needs_wait`), so the engine's batches and the loop's temporaries (the
    pixel check's, the mask's, the no-data mask's) are never live at once: its plan counts them one at a time
    (:func:`.memory_plan.plan_memory`). Any other frame keeps the overlap (the engine scores a strip while the loop
    checks the next and makes its no-data mask) and the plan that sums both (``overlap``): the wait cost 4-25 % of a
    HiRISE strip's time (review r6 of session 39)."""
    eng = fw.rt.engine
    if eng is None or not eng.pending:
        return
    t = time.perf_counter()
    done = eng.drain()
    fw.t_wait += _ms(t)
    _take(fw, done)
    fw.t["score"] += _ms(t)


def _take(fw: FrameWork, done: list[tuple[Any, np.ndarray]]) -> None:
    """Offer finished batches' scores to the frame's top-k keeper (the pixels as read)."""
    for (xs, ys, raw), scores in done:
        fw.topk.offer_batch(scores, xs, ys, raw)
        fw.n["scored"] += len(scores)


def _flush(fw: FrameWork) -> None:
    if not fw.pending or fw.rt.scorer is None:
        return
    scores = fw.rt.scorer.run(len(fw.pending))
    for (x, y, tile), s in zip(fw.pending, scores, strict=True):
        fw.topk.offer(s, x, y, tile)
    fw.n["scored"] += len(fw.pending)
    fw.pending.clear()
    if _ms(fw.t0) > fw.available:
        fw.cut = True


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1e3


def _selected(i: int, j: np.ndarray, every: int) -> np.ndarray:
    """:func:`patch_selected` for a row of patches (grid row ``i``, columns ``j``)."""
    if every == 1:
        return np.ones(j.shape, bool)
    if every == 2:
        return (i + j) % 2 == 0
    if every == 4:
        return np.full(j.shape, i % 2 == 0) & (j % 2 == 0)
    return np.zeros(j.shape, bool)

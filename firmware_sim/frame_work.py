"""The work on one frame, strip by strip: validate, sample, score patches, check the reconstruction.

Kept apart from :mod:`.loop` (which decides *whether* and *how much* to do) so each stays readable. Nothing
is queued here: products are staged (top-k patches in memory, sparse samples in a spool file for streamed
frames) and handed to the loop only when the whole frame passed validation, so a bad frame leaves nothing.
Scoring a strip's patches (the PatchScorer path and the ScoreEngine fast path) is in :mod:`.strip_scoring`.
"""

from __future__ import annotations

import bisect
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from edgeae._optional import require
from edgeae.masks import PRNG_VERSION, mask_rows_and_indices
from edgeae.nodata import Margin, valid_mask
from edgeae.wire.products import LatentFrame, SparseFrame, sample_dtype

from .budget import LADDER, PREFETCH_STRIPS, Level, scoring_left_ms, selected_per_row
from .frame_intake import fast_path, level_plan, reader_plan
from .frames import FrameReader, strips_are_views
from .memory_meter import rss_bytes
from .memory_room import room_cap
from .onboard_recon import recon_check, recon_skipped
from .score_engine import background
from .strip_scoring import _ms, score_flush, score_strip, score_strip_fast, score_wait
from .topk import TermsTopK, TopK
from .validate import check_pixels, to_samples

REPLAN_AFTER_STRIPS = 8  # strips measured before the in-flight deadline projection may lower the level

if TYPE_CHECKING:
    from .loop import FlightRuntime


class FrameWork:
    """Stages one frame's products while it streams; see :meth:`stream`."""

    def __init__(
        self,
        rt: FlightRuntime,
        reader: FrameReader,
        fid: int,
        keep: float,
        level: Level,
        ys: list[int],
        xs: list[int],
        t0: float,
        available_ms: float,
        streamed: bool,
    ) -> None:
        m = rt.m
        self.rt, self.m, self.reader, self.fid, self.keep, self.level = rt, m, reader, fid, keep, level
        self.h, self.w, self.c = reader.header.height, reader.header.width, reader.header.channels
        self.seed = (m.sampling.seed + fid) % 2**64
        self.ys, self.xs, self.t0, self.available, self.streamed = ys, xs, t0, available_ms, streamed
        self.topk: TopK | TermsTopK = (
            TermsTopK(m.anomaly.top_k, rt.threshold, len(ys) * len(xs))
            if m.anomaly.score == "terms-max"
            else TopK(m.anomaly.top_k, rt.threshold)
        )
        self.dtype = sample_dtype(m.camera.bit_depth)
        # read: waiting for the reader; nodata: the no-data mask, made only when scoring (until session 36 in no stage:
        # 15-30 % of a rover frame, drawn as "other (I/O, queue)")
        self.t = {"read": 0.0, "validate": 0.0, "sample": 0.0, "nodata": 0.0, "score": 0.0}
        self.n = {
            "grid": len(ys) * len(xs),
            "selected": 0,
            "scored": 0,
            "nodata_skipped": 0,
            "cut_by_deadline": 0,
        }
        self.cut = False
        self.recon: dict[str, Any] = {}
        self.values: list[np.ndarray] = []
        self.kept = 0
        self.row_counts = np.zeros(self.h, np.int64)  # kept pixels per row: packets are cut by rows
        self.spool_path: Path | None = None
        self.spool: BinaryIO | None = None
        if streamed:
            self.spool_path = rt.out / "queue" / "spool" / f"{fid:010d}.raw"
            self.spool_path.parent.mkdir(parents=True, exist_ok=True)
            self.spool = self.spool_path.open("wb")
        self.drop_reason = self.drop_detail = ""
        self.pending: list[tuple[int, int, np.ndarray]] = []
        self.latents: LatentFrame | None = None
        self.mask_buf: np.ndarray | None = None  # one strip of mask rows, reused for every strip
        # the fast path (VAE scoring on the ScoreEngine): the batch being filled, raw samples (N, C, P, P)
        self.batch_raw: np.ndarray | None = None
        self.batch_xy: list[tuple[np.ndarray, np.ndarray]] = []
        self.batch_fill: list[tuple[np.ndarray, np.ndarray]] = []  # its partial patches (score_engine.Fill)
        self.batch_n = 0
        self.submitted = 0
        self.every = level.score_every  # lowered in flight when the frame would miss its deadline
        self.in_flight: list[dict[str, Any]] = []
        self.rss_peak = 0  # the highest RSS seen at a strip boundary
        self.strips_done = 0
        self.t_wait = 0.0  # ms the caller waited for the engine
        self.pace0: tuple[float, float, int] | None = None  # (elapsed ms, waited ms, rows) when pacing began
        self.strip_rows = 1  # set by :meth:`stream`
        # wait for the engine's batches before each strip's pixel check only when the frame needs it to fit the memory
        # budget (until review r6 of session 39 always on the fast path: 4-25 % more frame time)
        self.wait = needs_wait(rt, reader, level)

    # ---------------------------------------------------------------------------------------- stream
    def stream(self, strip_rows: int) -> bool:
        """Process every strip; False (with ``drop_reason``) when a strip fails validation."""
        self.strip_rows = strip_rows
        bar = None
        if self.rt.progress and self.streamed:
            bar = require("tqdm").tqdm(total=self.h, unit="row", desc=f"frame {self.fid}", leave=False)
        try:
            return self._stream(strip_rows, bar)
        finally:
            if bar is not None:
                bar.close()

    def _stream(self, strip_rows: int, bar: Any) -> bool:
        strips = self.reader.strips(strip_rows)
        if self.streamed:  # decode the next strip while this one is sampled and scored
            strips = prefetch(strips, PREFETCH_STRIPS, copy=not strips_are_views(self.reader))
        it = iter(strips)
        try:
            while True:
                t = time.perf_counter()
                item = next(it, None)  # the prefetch thread's next strip (its decode overlaps our work)
                self.t["read"] += _ms(t)
                if item is None:
                    break
                if not self._strip(item[0], item[1], bar):
                    return False
        finally:
            close = getattr(strips, "close", None)
            if close is not None:
                close()
        score_flush(self, final=True)
        return True

    def _strip(self, r0: int, strip: np.ndarray, bar: Any) -> bool:
        if bar is not None:
            bar.update(strip.shape[0])
        if self.wait:
            score_wait(self)  # the engine's batches are done before the loop's temporaries (the plan's steps)
        t = time.perf_counter()
        v = check_pixels(strip, self.m.camera)
        self.t["validate"] += _ms(t)
        if not v.ok:
            self.drop_reason = f"invalid_{v.reason}"
            self.drop_detail = f"rows {r0}-{r0 + strip.shape[0]}: {v.detail}"
            self.close()
            return False
        samples = to_samples(strip, self.m.camera.bit_depth)
        t = time.perf_counter()
        rows = strip.shape[0]
        mask, idx = self._mask(r0, r0 + rows)
        vals = np.take(samples.reshape(rows * self.w, -1), idx, axis=0)  # (kept, C) in mask order
        self.kept += vals.shape[0]
        self.row_counts[r0 : r0 + rows] = np.bincount(idx // self.w, minlength=rows)
        if self.spool is not None:
            self.spool.write(np.ascontiguousarray(vals).tobytes())
        else:
            self.values.append(vals)
        self.t["sample"] += _ms(t)
        t = time.perf_counter()
        valid = self._valid(r0, samples)
        self.t["nodata"] += _ms(t)
        if self.rt.engine is not None and self.m.anomaly.method == "vae":
            score_strip_fast(self, r0, samples, valid)
        else:
            score_strip(self, r0, samples, mask, valid)
        t = time.perf_counter()
        try:
            self._recon_check(r0, samples, mask)
        except Exception as exc:  # an optional product: the frame's sparse pixels and patches still fly
            self.recon = {"tiles": 0, "error": f"{type(exc).__name__}: {exc}"[:300], "ms": _ms(t)}
        self.rss_peak = max(self.rss_peak, self.rt.meter.rss())
        if self.streamed:
            self._replan(r0 + strip.shape[0])
        return True

    # ------------------------------------------------------------------------------ deadline in flight
    def _replan(self, rows_done: int) -> None:
        """Project the frame's finish from what this frame has cost so far and, when it would miss
        ``safety × available``, score fewer patches for the rest of the frame *now* (half, a quarter,
        none): the ladder's scoring rungs applied in flight. The keep fraction cannot change mid-frame (the
        ground regenerates one mask per frame)."""
        self.strips_done += 1
        elapsed = _ms(self.t0)
        if self.strips_done == 2:  # the first strips carry start-up costs: measure the pace from here on
            self.pace0 = (elapsed, self.t_wait, rows_done)
        if self.every == 0 or rows_done >= self.h or self.cut or self.pace0 is None:
            return
        n_strips = -(-self.h // max(1, rows_done // self.strips_done))
        if self.strips_done < 2 + min(REPLAN_AFTER_STRIPS, max(2, n_strips // 10)):
            return
        eng = self.rt.engine
        measured = eng.ms_per_item if eng is not None else None
        per_patch = measured if measured is not None else self.rt.cost.ms_per_patch
        # the caller's own work per row (read, validate, mask, cut patches): all but its waits on the engine
        e0, w0, r0 = self.pace0
        base_per_row = max(0.0, (elapsed - e0) - (self.t_wait - w0)) / max(1, rows_done - r0)
        rows_left = self.h - rows_done
        target = self.m.budget.safety * self.available
        products = self.rt.cost.products.predict(self.kept * self.h / rows_done / 1e6)  # queued after the last strip
        # the engine scores while the caller streams: the slower of the two sets the pace; when the caller waits for
        # the engine before each strip (self.wait) the two run one after the other (only the reconstruction overlaps)
        scoring = self._scoring_left(rows_done, per_patch)
        loop = rows_left * base_per_row
        projected = elapsed + (loop + scoring if self.wait else max(loop, scoring)) + products
        if projected > target:  # one rung per strip: the next strips re-measure before going further
            every = {1: 2, 2: 4, 4: 0}[self.every]
            name = next((lv.name for lv in LADDER if lv.score_every == every), "sparse_only")
            self.in_flight.append(
                {"row": rows_done, "score_every": every, "level": name, "elapsed_ms": elapsed,
                 "projected_ms": projected, "target_ms": target, "ms_per_row": base_per_row,
                 "ms_per_patch": per_patch}
            )  # fmt: skip
            self.every = every

    def _scoring_left(self, rows_done: int, per_patch: float) -> float:
        """Projected ms to score the selected patches from row ``rows_done`` on (and what the engine holds), in the
        whole batches they run in (:func:`.budget.scoring_left_ms`): the ScoreEngine's batches of the mission's
        ``batch`` run across strips; the PatchScorer flushes at each strip's end, in calls of the model's
        padded batch (1 for a dynamic batch), as :meth:`.budget.CostModel.predict` counts them."""
        first = bisect.bisect_left(self.ys, rows_done)
        per_row = selected_per_row(np.arange(first, len(self.ys)), len(self.xs), self.every)
        eng = self.rt.engine
        if eng is not None:
            return scoring_left_ms([self.batch_n + int(per_row.sum())], eng.batch, per_patch, eng.pending)
        strip = (np.asarray(self.ys[first:], np.int64) - rows_done) // max(1, self.strip_rows)
        per_strip = np.bincount(strip, weights=per_row, minlength=1).astype(np.int64)
        return scoring_left_ms(per_strip, self.rt.cost.batch, per_patch)

    def _mask(self, r0: int, r1: int) -> tuple[np.ndarray, np.ndarray]:
        """Mask rows [r0, r1) in one reused buffer and the flat indices of their kept pixels (the generator's
        temporaries are a few hundred KiB; a jittered mask is computed from its kept pixels only)."""
        if self.mask_buf is None or self.mask_buf.shape[0] < r1 - r0:
            self.mask_buf = np.empty((r1 - r0, self.w), bool)
        out = self.mask_buf[: r1 - r0]
        pattern = self.m.sampling.pattern
        return mask_rows_and_indices(self.seed, (self.h, self.w), self.keep, pattern, r0, r1, out=out)

    def _valid(self, r0: int, samples: np.ndarray) -> np.ndarray | None:
        """The strip's valid-pixel mask (:func:`edgeae.nodata.valid_mask`, numpy only, shared with the ground
        tools): no-data, dark or saturated margins and the mission's fixed margin. None when not scoring. Made
        at any ``min_valid`` (0 included): it also says which pixels of a partial patch are filled."""
        if self.rt.scorer is None or self.every == 0:
            return None
        r1 = r0 + samples.shape[0]
        edges = ("left", "right") + (("top",) if r0 == 0 else ()) + (("bottom",) if r1 >= self.h else ())
        cam = self.m.camera
        valid = valid_mask(
            samples,
            bit_depth=cam.bit_depth,
            edges=edges,
            margin=Margin.parse(cam.margin),
            row0=r0,
            frame_height=self.h,
            # a demosaiced margin keeps its dark measured sample in one channel
            reduce="min" if getattr(self.reader, "info", {}).get("demosaiced") else "max",
        )
        self.n["invalid_pixels"] = self.n.get("invalid_pixels", 0) + int(valid.size - np.count_nonzero(valid))
        return valid

    def _recon_check(self, r0: int, samples: np.ndarray, mask: np.ndarray) -> None:
        recon_check(self, r0, samples, mask)

    def recon_skipped(self) -> str | None:
        return recon_skipped(self)

    # ---------------------------------------------------------------------------------------- results
    def report(self) -> dict[str, Any]:
        flags = ["deadline_cut"] if self.cut else []
        if "error" in self.recon:
            flags.append("recon_failed")
        timing = dict(self.t)
        recon = dict(self.recon)  # a copy: the report can be asked for again
        if recon:
            timing["recon"] = recon.pop("ms")
        skipped = self.recon_skipped()
        if skipped is not None:
            recon = {"tiles": 0, "skipped": skipped}
        ranked = self.topk.ranked()
        return {
            "keep": self.keep,
            "seed": self.seed,
            "degraded_in_flight": self.in_flight,
            "timing_ms": timing,
            "score_wait": self.wait,  # the loop waited for the engine's batches before each strip (memory)
            "patches": self.n,
            "anomaly": {
                "score": self.m.anomaly.score if self.m.anomaly.method == "vae" else self.m.anomaly.method,
                "threshold": self.topk.threshold,
                "flagged": self.topk.flagged,
                "max_score": self.topk.max_score if self.topk.scored else None,
                **({"nonfinite_scores": self.topk.nonfinite} if self.topk.nonfinite else {}),
                "patches": [{"x": c.x, "y": c.y, "score": c.score} for c in ranked],
            },
            "sparse": {"kept": self.kept, "keep": self.keep, "pattern": self.m.sampling.pattern},
            "reconstruction": recon or None,
            "flags_add": flags,
        }

    def sparse_frame(self) -> tuple[SparseFrame, np.ndarray]:
        """The frame's sparse samples (memory-mapped from the spool when streamed) and per-row counts."""
        if self.spool is not None and self.spool_path is not None:
            self.spool.close()
            self.spool = None
            shape = (self.kept, self.c)
            vals = (
                np.memmap(self.spool_path, dtype=self.dtype, mode="r", shape=shape)
                if self.kept
                else np.zeros(shape, self.dtype)
            )
        else:
            vals = np.concatenate(self.values) if self.values else np.zeros((0, self.c), self.dtype)
        sf = SparseFrame(
            self.fid,
            self.h,
            self.w,
            self.c,
            self.m.camera.bit_depth,
            self.keep,
            self.m.sampling.pattern,
            self.seed,
            PRNG_VERSION,
            np.asarray(vals, self.dtype),
        )
        return sf, self.row_counts

    def close(self) -> None:
        if self.rt.engine is not None and self.rt.engine.pending:
            self.rt.engine.drain()  # a dropped frame: its batches finish and are discarded
        if self.spool is not None:
            self.spool.close()
            self.spool = None
        if self.spool_path is not None:
            self.spool_path.unlink(missing_ok=True)
        self.values = []


def needs_wait(rt: FlightRuntime, reader: FrameReader, level: Level) -> bool:
    """Whether a frame run at ``level`` must wait for the engine's batches before each strip's pixel check
    (:func:`.strip_scoring.score_wait`) to fit the memory budget and the board's room now: when its plan with the
    batches held beside the loop's work (``overlap``) does not, which :func:`.frame_intake.memory_fit` let through
    as the plan with them one step at a time does. False off the engine's fast path."""
    if not fast_path(rt):
        return False
    need = level_plan(reader_plan(rt.m, reader, rt._model_bytes(), overlap=True), level).total
    held = max(0, rss_bytes() - rt.rss_boot)
    capped = room_cap(rt.m, held)
    budget = rt.m.budget.memory_bytes
    return held + need > (budget if capped is None else min(budget, capped[0]))


def prefetch(strips: Any, depth: int = 1, copy: bool = True) -> Any:
    """Iterate ``(row0, strip)`` pairs decoded by a background thread (:func:`.score_engine.background`), at most
    ``depth`` ahead.

    Readers may reuse one output buffer for every strip, so each strip is copied into a ring of
    ``depth + 2`` buffers: the one the caller holds, ``depth`` queued, and the one being filled. ``copy`` False:
    the strips are views of an array held for the frame (:func:`.frames.strips_are_views`: a file decoded whole),
    handed over as they are (until session 40, fixer h2, copied: 1.5 MiB of a 2048-px frame's 256-row strips, 3.7
    of a 5064-px one's). Errors of the reader are raised in the caller; closing the generator stops the thread and
    closes the reader.
    """

    def copies() -> Any:
        ring: list[np.ndarray] = []
        k = 0
        try:
            for r0, strip in strips:
                if not ring:
                    ring = [np.empty_like(strip) for _ in range(depth + 2)]
                slot = ring[k % len(ring)]
                if slot.shape[1:] != strip.shape[1:] or slot.shape[0] < strip.shape[0] or slot.dtype != strip.dtype:
                    slot = ring[k % len(ring)] = np.empty_like(strip)
                slot = slot[: strip.shape[0]]
                np.copyto(slot, strip)
                k += 1
                yield r0, slot
        finally:
            close = getattr(strips, "close", None)
            if close is not None:
                close()

    return background(copies() if copy else iter(strips), depth, name="edgeae-prefetch")

"""The work on one frame, strip by strip: validate, sample, score patches, check the reconstruction.

Kept apart from :mod:`.loop` (which decides *whether* and *how much* to do) so each stays readable. Nothing
is queued here: products are staged (top-k patches in memory, sparse samples in a spool file for streamed
frames) and handed to the loop only when the whole frame passed validation, so a bad frame leaves nothing.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from edgeae._optional import require
from edgeae.masks import PRNG_VERSION, make_mask_rows
from edgeae.tiling import axis_starts

from .budget import Level, patch_selected
from .frames import FrameReader
from .score import TopK
from .validate import check_pixels, to_samples
from edgeae.wire.products import LatentFrame, SparseFrame, sample_dtype

MASK_CHUNK_PIXELS = 1 << 16

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
        self.topk = TopK(m.anomaly.top_k, rt.threshold)
        self.dtype = sample_dtype(m.camera.bit_depth)
        self.t = {"validate": 0.0, "sample": 0.0, "score": 0.0}
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

    # ---------------------------------------------------------------------------------------- stream
    def stream(self, strip_rows: int) -> bool:
        """Process every strip; False (with ``drop_reason``) when a strip fails validation."""
        bar = None
        if self.rt.progress and self.streamed:
            bar = require("tqdm").tqdm(total=self.h, unit="row", desc=f"frame {self.fid}", leave=False)
        try:
            return self._stream(strip_rows, bar)
        finally:
            if bar is not None:
                bar.close()

    def _stream(self, strip_rows: int, bar: Any) -> bool:
        for r0, strip in self.reader.strips(strip_rows):
            if bar is not None:
                bar.update(strip.shape[0])
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
            mask = self._mask(r0, r0 + strip.shape[0])
            vals = samples[mask]
            self.kept += vals.shape[0]
            self.row_counts[r0 : r0 + strip.shape[0]] = mask.sum(axis=1)
            if self.spool is not None:
                self.spool.write(np.ascontiguousarray(vals).tobytes())
            else:
                self.values.append(vals)
            self.t["sample"] += _ms(t)
            self._score_strip(r0, samples, mask)
            self._recon_check(r0, samples, mask)
        return True

    def _mask(self, r0: int, r1: int) -> np.ndarray:
        """Mask rows [r0, r1), generated a few rows at a time: the hash works on uint64 temporaries of 8 bytes
        per pixel, which for a whole 5,064-px-wide strip would dwarf the strip itself."""
        out = np.empty((r1 - r0, self.w), bool)
        step = max(1, MASK_CHUNK_PIXELS // self.w)
        for a in range(r0, r1, step):
            b = min(r1, a + step)
            out[a - r0 : b - r0] = make_mask_rows(self.seed, (self.h, self.w), self.keep, self.m.sampling.pattern, a, b)
        return out

    def _score_strip(self, r0: int, samples: np.ndarray, mask: np.ndarray) -> None:
        scorer, p, every = self.rt.scorer, self.m.anomaly.patch, self.level.score_every
        if scorer is None or every == 0:
            return
        t = time.perf_counter()
        r1 = r0 + samples.shape[0]
        for i, y in enumerate(self.ys):
            if y < r0 or y + p > r1:
                continue
            for j, x in enumerate(self.xs):
                if not patch_selected(i, j, every):
                    continue
                self.n["selected"] += 1
                if self.cut:
                    self.n["cut_by_deadline"] += 1
                    continue
                tile = samples[y - r0 : y - r0 + p, x : x + p]
                if self.m.anomaly.min_valid > 0 and float((tile > 0).any(axis=2).mean()) < self.m.anomaly.min_valid:
                    self.n["nodata_skipped"] += 1
                    continue
                scorer.load(len(self.pending), tile, mask[y - r0 : y - r0 + p, x : x + p])
                self.pending.append((x, y, tile))
                if len(self.pending) == scorer.batch:
                    self._flush()
        self._flush()  # the strip buffer is reused for the next strip
        self.t["score"] += _ms(t)

    def _flush(self) -> None:
        if not self.pending or self.rt.scorer is None:
            return
        scores = self.rt.scorer.run(len(self.pending))
        for (x, y, tile), s in zip(self.pending, scores, strict=True):
            self.topk.offer(float(s), x, y, tile)
        self.n["scored"] += len(self.pending)
        self.pending.clear()
        if _ms(self.t0) > self.available:
            self.cut = True

    def _recon_check(self, r0: int, samples: np.ndarray, mask: np.ndarray) -> None:
        guard, rc = self.rt.recon, self.m.reconstruction
        if rc.mode == "latent":
            self._encode_latents(samples)
            return
        if guard is None or not self.level.reconstruct or self.cut or self.recon or samples.shape[0] < rc.tile:
            return
        if self.w < rc.tile:
            return
        t = time.perf_counter()
        n = rc.check_tiles
        xs = np.linspace(0, self.w - rc.tile, n).astype(int)
        scale = np.float32(1.0 / ((1 << self.m.camera.bit_depth) - 1))
        truth = np.stack([samples[: rc.tile, x : x + rc.tile].transpose(2, 0, 1) for x in xs]).astype(np.float32)
        truth *= scale
        known = np.stack([mask[: rc.tile, x : x + rc.tile] for x in xs])[:, None]
        x_hat = np.asarray(guard.predictor(truth * known), np.float32)
        destroyed = np.broadcast_to(~known, truth.shape)
        err = np.abs(x_hat - truth)[destroyed]
        self.recon = {"tiles": int(n), "row": r0, "mae_destroyed": float(err.mean()) if err.size else 0.0}
        self.recon["ms"] = _ms(t)

    def _encode_latents(self, samples: np.ndarray) -> None:
        """Encode every tile of a whole frame (``tile_positions`` order) into float16 latents."""
        guard, rc = self.rt.recon, self.m.reconstruction
        if guard is None or not self.level.reconstruct or self.cut or samples.shape[0] != self.h:
            return
        t = time.perf_counter()
        ys, xs = axis_starts(self.h, rc.tile, rc.tile), axis_starts(self.w, rc.tile, rc.tile)
        scale = np.float32(1.0 / ((1 << self.m.camera.bit_depth) - 1))
        batch = np.empty((len(xs), self.c, rc.tile, rc.tile), np.float32)
        rows = []
        for y in ys:  # one row of tiles per call bounds the input buffer
            for j, x in enumerate(xs):
                np.multiply(samples[y : y + rc.tile, x : x + rc.tile].transpose(2, 0, 1), scale, out=batch[j])
            rows.append(np.asarray(guard.predictor(batch), np.float32).astype(np.float16))
        self.latents = LatentFrame(
            self.fid,
            guard.expected[:16],
            self.h,
            self.w,
            self.c,
            rc.tile,
            rc.tile,
            len(ys),
            len(xs),
            1.0,
            "fp16",
            np.concatenate(rows),
        )
        self.recon = {"latent_tiles": len(ys) * len(xs), "latent_shape": list(rows[0].shape[1:]), "ms": _ms(t)}

    # ---------------------------------------------------------------------------------------- results
    def report(self) -> dict[str, Any]:
        flags = ["deadline_cut"] if self.cut else []
        timing = dict(self.t)
        if self.recon:
            timing["recon"] = self.recon.pop("ms")
        ranked = self.topk.ranked()
        return {
            "keep": self.keep,
            "seed": self.seed,
            "timing_ms": timing,
            "patches": self.n,
            "anomaly": {
                "threshold": self.topk.threshold,
                "flagged": self.topk.flagged,
                "max_score": self.topk.max_score if self.topk.scored else None,
                "patches": [{"x": c.x, "y": c.y, "score": c.score} for c in ranked],
            },
            "sparse": {"kept": self.kept, "keep": self.keep, "pattern": self.m.sampling.pattern},
            "reconstruction": self.recon or None,
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
        if self.spool is not None:
            self.spool.close()
            self.spool = None
        if self.spool_path is not None:
            self.spool_path.unlink(missing_ok=True)
        self.values = []


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1e3

"""The per-image pipeline both engines share: tile an image in strips into chunks, score, collect.

An image is streamed with :func:`edgeae.strips.iter_patches` (memory independent of image size) and cut
into chunks of at most ``batch_size`` patches in raster order. Each chunk is scored as one batch, so the
local engine and the Ray engine feed the model exactly the same batches and produce the same numbers.
Patches with less than ``min_valid`` valid (not no-data) pixels are counted but not scored.

``score`` chooses the ranking (:data:`SCAN_SCORES`): ``"a"``, the model's own score per patch; ``"terms-max"``
(VAE only), the orbital mission's flight score, max(rec / median, ||μ||² / median) over the image's scored
patches. That one needs the whole image's medians, so each chunk keeps its best patches by each term and its
patches' two terms; the image's scores and best patches are made when its last chunk is in
(:meth:`ImageAccumulator.result`): exactly the ranking of the whole image, whatever the chunk order.
``"local-z"`` (VAE only; a ground ranking, :func:`edgeae.anomaly.context.local_novelty`) compares each patch's
latents and reconstruction error with those of its neighbours on the image: the chunks keep every patch's rec
and μ (float32, 4·(D + 1) bytes a patch: 65 k patches of a NAC strip with D = 256 hold 67 MB; bounded by
:data:`edgeae.anomaly.context.LOCAL_Z_MAX_BYTES`), the scores are made when the image is complete, and the best
patches' thumbnails are read back from only their rows (no chunk can know its best patches before the whole image
is scored).

The scan's settings are in :mod:`edgeae.scan.config`; joining the scored chunks into an image's result (the
rankings above) in :mod:`edgeae.scan.accumulator`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeae.anomaly.context import check_local_z_size, local_z_bytes
from edgeae.scan.accumulator import ImageAccumulator as ImageAccumulator
from edgeae.scan.accumulator import ImageResult as ImageResult
from edgeae.scan.accumulator import ScoredChunk as ScoredChunk
from edgeae.scan.accumulator import TopK as TopK
from edgeae.scan.accumulator import best_patches as best_patches
from edgeae.scan.accumulator import collect as collect
from edgeae.scan.accumulator import read_thumbs as read_thumbs
from edgeae.scan.config import PIXELS_REVISION as PIXELS_REVISION
from edgeae.scan.config import SCAN_SCORES as SCAN_SCORES
from edgeae.scan.config import ScanConfig as ScanConfig
from edgeae.scan.quality import QualityFilter as QualityFilter
from edgeae.scan.scoring import ModelSpec as ModelSpec
from edgeae.scan.scoring import Scorer

if TYPE_CHECKING:
    from edgeae.firmware_sim.score import ScoreEngine


@dataclass
class Chunk:
    """Up to ``batch_size`` patches of one image, in raster order."""

    xs: np.ndarray  # int32 (n,) left column of each patch
    ys: np.ndarray  # int32 (n,) top row
    valid: np.ndarray  # float32 (n,) valid-pixel fraction
    pixels: np.ndarray  # float32 (n, C, P, P) in [0, 1]
    n_skipped: int  # patches seen in this chunk's span but below min_valid
    valid_max: float = 0.0  # the largest valid fraction of the patches in its span, scored or skipped (0: none valid)


def _patch_source() -> Any:
    from edgeae.strips import iter_patches

    return iter_patches


def _to_chw(pixels: np.ndarray, channels: int) -> np.ndarray:
    a = np.asarray(pixels, dtype=np.float32)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.shape[-1] != channels:
        raise ValueError(f"patch has shape {a.shape}, the model wants {channels} channel(s)")
    return a.transpose(2, 0, 1)


def tile_image(path: str | os.PathLike[str], config: ScanConfig) -> Iterator[Chunk]:
    """Stream ``path`` as chunks of patches (raises the reader's error for unreadable files).

    Patches are cut from a zero-copy strided view of each decoded band straight into the chunk's buffer
    (:func:`edgeae.strips.iter_patch_blocks`); the chunks (positions, pixels, skipped counts) are exactly those
    of the per-patch iteration :func:`tile_image_reference` gives.
    """
    from edgeae.strips import iter_patch_blocks

    p, c, b = config.patch, config.model.channels, config.batch_size
    if config.latents and config.model.latent:  # refused before any scoring when the header tells the size
        n_latent = config.model.latent * config.views
        check_local_z_size(os.fspath(path), local_z_bytes(count_patches(path, config), n_latent))
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    pix = np.empty((b, c, p, p), np.float32)
    n = skipped = 0
    vmax = 0.0  # of the positions counted in the chunk being filled
    for blk in iter_patch_blocks(path, p, config.stride, channels=c, **config.read_options()):
        kept = np.flatnonzero(blk.valid_frac >= config.min_valid)
        pos = 0  # next position of this band not yet counted
        while kept.size:
            take = kept[: b - n]
            skipped += int(take[-1]) + 1 - pos - take.size  # skipped positions count in the chunk they fall in
            vmax = max(vmax, float(blk.valid_frac[pos : int(take[-1]) + 1].max()))
            pos = int(take[-1]) + 1
            blk.pixels(take, out=pix[n : n + take.size])
            parts.append((blk.xs[take], blk.ys[take], blk.valid_frac[take]))
            n += take.size
            kept = kept[take.size :]
            if n == b:
                yield _chunk_from(parts, pix, n, skipped, vmax)
                parts, pix, n, skipped, vmax = [], np.empty((b, c, p, p), np.float32), 0, 0, 0.0
        if pos < blk.ys.size:
            vmax = max(vmax, float(blk.valid_frac[pos:].max()))
        skipped += blk.ys.size - pos
    if n or skipped:
        yield _chunk_from(parts, pix, n, skipped, vmax)


def _chunk_from(
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]], pix: np.ndarray, n: int, skipped: int, vmax: float
) -> Chunk:
    def cat(i: int, dtype: Any) -> np.ndarray:
        return np.concatenate([q[i] for q in parts]).astype(dtype) if parts else np.zeros(0, dtype)

    return Chunk(xs=cat(0, np.int32), ys=cat(1, np.int32), valid=cat(2, np.float32), pixels=pix[:n],
                 n_skipped=skipped, valid_max=vmax)  # fmt: skip


def tile_image_reference(path: str | os.PathLike[str], config: ScanConfig) -> Iterator[Chunk]:
    """The per-patch tiling :func:`tile_image` replaced (one :class:`edgeae.strips.Patch` per patch): kept as
    the reference the fast path is tested against."""
    iter_patches = _patch_source()
    p, c, b = config.patch, config.model.channels, config.batch_size
    xs: list[int] = []
    ys: list[int] = []
    valid: list[float] = []
    pix = np.empty((b, c, p, p), np.float32)
    skipped, vmax = 0, 0.0
    for patch in iter_patches(path, p, config.stride, channels=c, **config.read_options()):
        vmax = max(vmax, float(patch.valid_frac))
        if patch.valid_frac < config.min_valid:
            skipped += 1
            continue
        pix[len(xs)] = _to_chw(patch.pixels, c)
        xs.append(patch.x)
        ys.append(patch.y)
        valid.append(patch.valid_frac)
        if len(xs) == b:
            yield _chunk(xs, ys, valid, pix, skipped, vmax)
            xs, ys, valid, skipped, vmax = [], [], [], 0, 0.0
    if xs or skipped:
        yield _chunk(xs, ys, valid, pix, skipped, vmax)


def _chunk(xs: list[int], ys: list[int], valid: list[float], pix: np.ndarray, skipped: int, vmax: float) -> Chunk:
    n = len(xs)
    return Chunk(
        xs=np.asarray(xs, np.int32),
        ys=np.asarray(ys, np.int32),
        valid=np.asarray(valid, np.float32),
        pixels=pix[:n].copy(),
        n_skipped=skipped,
        valid_max=vmax,
    )


def score_chunk(scorer: Scorer, chunk: Chunk, top_k: int, latents: bool = False) -> ScoredChunk:
    """Score one chunk as one batch and keep its ``top_k`` patches as uint8 thumbnails (``latents``: the scorer
    returns rec and μ, (n, 1 + D), and no thumbnails are cut; see :func:`scored_chunk`)."""
    dtype = np.float32 if latents else np.float64  # latents are held as float32: one conversion, not two
    scores = np.asarray(scorer(chunk.pixels), dtype=dtype) if len(chunk.xs) else None
    return scored_chunk(chunk, scores, top_k, latents)


def scored_chunk(chunk: Chunk, scores: np.ndarray | None, top_k: int, latents: bool = False) -> ScoredChunk:
    """A chunk with its scores (None for an empty chunk): checked, with its ``top_k`` patches as thumbnails.

    ``scores`` is (n,) one score a patch, or (n, 2) the VAE's two terms (``terms-max``): then the chunk keeps
    its ``top_k`` patches by each term. ``latents``: ``scores`` is (n, 1 + D), rec then μ (``local-z``), kept as
    float32 and with no thumbnails."""
    n = len(chunk.xs)
    c, p = chunk.pixels.shape[1], chunk.pixels.shape[-1]
    if latents:
        got = np.zeros((0, 2), np.float32) if n == 0 or scores is None else np.asarray(scores, np.float32)
        if n and (got.ndim != 2 or got.shape[0] != n or got.shape[1] < 2):
            raise ValueError(f"scorer returned {got.shape} for {n} patches; local-z wants (n, 1 + D) rec and latents")
        if not np.all(np.isfinite(got)):
            raise ValueError("scorer returned non-finite latents or errors")
        if n and (got[:, 0] < 0).any():
            raise ValueError("scorer returned a negative reconstruction error")
        return ScoredChunk(chunk.xs, chunk.ys, chunk.valid, got, (), chunk.n_skipped, chunk.valid_max)
    if n == 0 or scores is None:
        scores = np.zeros(0, np.float64)
    else:
        scores = np.asarray(scores, dtype=np.float64)
        scores = scores.reshape(n, 2) if scores.ndim == 2 and scores.size == 2 * n else scores.reshape(-1)
        if scores.shape[0] != n:
            raise ValueError(f"scorer returned {scores.shape[0]} scores for {n} patches")
        if not np.all(np.isfinite(scores)):
            raise ValueError("scorer returned non-finite scores")
    columns = [scores] if scores.ndim == 1 else [scores[:, 0], scores[:, 1]]
    tops = []
    for col in columns:
        order = np.lexsort((chunk.xs, chunk.ys, -col))[:top_k]
        thumbs = np.round(np.clip(chunk.pixels[order], 0.0, 1.0) * 255).astype(np.uint8)
        tops.append(TopK(col[order], chunk.xs[order], chunk.ys[order], thumbs.reshape(len(order), c, p, p)))
    return ScoredChunk(chunk.xs, chunk.ys, chunk.valid, scores, tuple(tops), chunk.n_skipped, chunk.valid_max)


def scan_image(
    path: str | os.PathLike[str],
    name: str,
    scorer: Scorer | ScoreEngine,
    config: ScanConfig,
    progress: Any = None,
) -> ImageResult:
    """Tile, score and collect one image in this process. ``progress(n)`` is called after each chunk.

    With a :class:`~edgeae.firmware_sim.score.ScoreEngine` the image is tiled in a background thread while
    the engine's interpreters score earlier chunks (the same chunks, the same numbers, in the same order).
    """
    import time

    from edgeae.firmware_sim.score import ScoreEngine, background

    t0 = time.perf_counter()
    acc = ImageAccumulator(name, config, path)
    if not isinstance(scorer, ScoreEngine):
        for i, chunk in enumerate(tile_image(path, config)):
            acc.add(i, score_chunk(scorer, chunk, config.top_k, config.latents))
            if progress is not None:
                progress(len(chunk.xs) + chunk.n_skipped)
        return acc.result(time.perf_counter() - t0)
    engine = scorer
    i = 0

    def take(done: list[tuple[Any, np.ndarray]]) -> None:
        for (index, chunk), scores in done:
            acc.add(index, scored_chunk(chunk, scores if len(chunk.xs) else None, config.top_k, config.latents))
            if progress is not None:
                progress(len(chunk.xs) + chunk.n_skipped)

    try:
        for i, chunk in enumerate(background(tile_image(path, config), depth=2 * engine.workers)):
            if len(chunk.xs):
                take(engine.submit(chunk.pixels, (i, chunk)))
            else:  # only skipped patches: nothing to score, kept in order behind the batches in flight
                take(engine.drain())
                take([((i, chunk), np.zeros(0))])
        take(engine.drain())
    except BaseException:
        if engine.pending:  # a failed image: let its batches finish before the engine scores the next one
            engine.drain()
        raise
    return acc.result(time.perf_counter() - t0)


def count_patches(path: str | os.PathLike[str], config: ScanConfig) -> int:
    """Patches an image will yield (from its header; 0 when the header cannot be read, and for a file the reader
    decodes whole, not a TIFF or a planetary product, whose header claims more than the reader's
    :class:`~edgeae.imagedecode.ImageLimits`, or for any image that declares more pixels than the streaming limit
    allows for its files, :func:`edgeae.archive.read_limits.check_stream_pixels`: it will fail as a decompression
    bomb, so it must not count; until session 37 a 4.9 MB bomb counted its declared 9.8 M patches, and with
    ``--score context-knn`` the whole set was refused naming it)."""
    try:
        from edgeae.tiling import axis_starts

        shape = _shape_within_limits(path)
        if shape is None:
            return 0
        h, w = shape
        return len(axis_starts(h, config.patch, config.stride)) * len(axis_starts(w, config.patch, config.stride))
    except Exception:
        return 0


def _shape_within_limits(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """(height, width) from the header, read once; None for a file the scan's row reader decodes whole (PNG, JPEG,
    PNM: not a TIFF, read by segments, nor a planetary product, read by windows) whose header claims more than the
    limits the reader applies, and for any image over the streaming limit (a compressed bomb): it will be recorded as
    failed with the reader's message."""
    from pathlib import Path
    from types import SimpleNamespace

    from edgeae import _headers
    from edgeae.archive.formats import is_archive_path
    from edgeae.archive.read_limits import check_stream_pixels
    from edgeae.imagedecode import ImageLimits, check_limits

    p = Path(os.fspath(path))
    try:
        if is_archive_path(p):
            from edgeae.archive.reader import ProductReader

            with ProductReader(p) as r:
                check_stream_pixels(r)  # the bytes of every file GDAL reads it with, as the streamed read counts them
                return r.height, r.width
        info = _headers.probe(p)
        if info.format != "tiff":
            check_limits(info, p, ImageLimits.from_env())
        check_stream_pixels(SimpleNamespace(path=p, height=info.height, width=info.width))  # the file's bytes
    except _headers.ImageReadError:
        return None
    return info.height, info.width

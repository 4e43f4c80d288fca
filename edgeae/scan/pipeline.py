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
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeae.anomaly.context import check_local_z_size, local_z_bytes
from edgeae.scan.quality import QualityFilter
from edgeae.scan.scoring import ModelSpec, Scorer

if TYPE_CHECKING:
    from edgeae.firmware_sim.score import ScoreEngine

SCAN_SCORES = ("a", "terms-max", "local-z", "context-knn")  # the rankings a scan can write (``edgeae scan --score``)


PIXELS_REVISION = 2  # see ScanConfig.pixels


@dataclass(frozen=True)
class ScanConfig:
    """How every image is cut and scored; stored next to the results and checked on resume."""

    model: ModelSpec
    stride: int
    batch_size: int = 64
    min_valid: float = 0.9  # 0.5 until session 26: half-margin patches topped scans of strips with borders
    top_k: int = 16
    quality: QualityFilter = field(default_factory=QualityFilter)  # label filters applied before scanning
    score: str = "a"  # the ranking: "a" (the model's score), "terms-max" (VAE; the orbital mission's) or "local-z"
    bayer: str | None = None  # the images are raw colour-filter mosaics of this pattern: demosaiced first
    margin: str | None = None  # a fixed margin counted as no-data: "N" or "TOP,BOTTOM,LEFT,RIGHT" pixels
    views: int = 1  # context-knn: latents of each patch's first N rotations and flips, averaged after scaling
    group: str | None = None  # context-knn: images whose names give the same match of this regex share a product
    # how patches are read: 2 (session 28) fills no-data inside a patch with its surroundings' mean and counts a
    # small image's reflected padding as missing; 1 (scans written before) read no-data as black, padding as data
    pixels: int = PIXELS_REVISION

    def __post_init__(self) -> None:
        from edgeae.bayer import PATTERNS
        from edgeae.nodata import Margin

        if self.bayer is not None and self.bayer not in PATTERNS:
            raise ValueError(f"bayer must be one of {PATTERNS}, got {self.bayer!r}")
        if self.margin is not None:
            Margin.parse(self.margin)  # raises with the accepted forms
        if self.score not in SCAN_SCORES:
            raise ValueError(f"score must be one of {SCAN_SCORES}, got {self.score!r}")
        if self.score == "terms-max" and self.model.kind != "vae":
            raise ValueError(f"score 'terms-max' ranks a VAE's two terms; {self.model.model_id} is a {self.model.kind}")
        if self.score in ("local-z", "context-knn") and self.model.kind != "vae":
            kind = self.model.kind
            raise ValueError(f"score {self.score!r} ranks a VAE's latents; {self.model.model_id} is a {kind}")
        from edgeae.anomaly.views import VIEWS

        if not 1 <= self.views <= VIEWS:
            raise ValueError(f"views must be 1 to {VIEWS} (rotations and flips of a patch), got {self.views}")
        if (self.views > 1 or self.group is not None) and self.score != "context-knn":
            what = f"views {self.views}" if self.views > 1 else f"group {self.group!r}"
            raise ValueError(f"{what} belongs to score 'context-knn', not {self.score!r}")
        if self.group is not None:
            import re

            try:
                re.compile(self.group)
            except re.error as exc:
                raise ValueError(f"group {self.group!r} is not a regular expression: {exc}") from None
        if self.stride <= 0:
            raise ValueError(f"stride must be positive, got {self.stride}")
        if self.batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        if not 0.0 <= self.min_valid <= 1.0:
            raise ValueError(f"min_valid must be in [0, 1], got {self.min_valid}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")

    @property
    def patch(self) -> int:
        return self.model.patch

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ScanConfig:
        d = {"pixels": 1, **d}  # a scan.json without it was written before session 28
        return cls(**{**d, "model": ModelSpec(**d["model"]), "quality": QualityFilter.from_dict(d.get("quality"))})

    def result_fingerprint(self) -> dict[str, Any]:
        """The fields that change the numbers in the results (not paths, not the engine)."""
        m = self.model
        return {
            "artifact_hash": m.artifact_hash,
            "patch": m.patch,
            "channels": m.channels,
            "stride": self.stride,
            "batch_size": self.batch_size,
            "min_valid": self.min_valid,
            "top_k": self.top_k,
            "quality": self.quality.to_dict(),
            "score": self.score,
            "bayer": self.bayer,
            "margin": self.margin,
            "pixels": self.pixels,
            # only where they apply, so scans made before these settings existed resume unchanged
            **({"views": self.views, "group": self.group} if self.score == "context-knn" else {}),
        }

    def read_options(self) -> dict[str, Any]:
        """How the images are read (:func:`edgeae.strips.iter_patch_blocks` keywords): demosaicing, fixed margin."""
        from edgeae.nodata import Margin

        return {"bayer": self.bayer, "margin": Margin.parse(self.margin) if self.margin else None}

    @property
    def terms(self) -> bool:
        """Whether the scorer returns the VAE's two terms (N, 2) instead of one score per patch."""
        return self.score == "terms-max"

    @property
    def latents(self) -> bool:
        """Whether the scorer returns rec and the VAE's latents, (N, 1 + views·D): scored per image (``local-z``)
        or over the whole set once every image is in (``context-knn``, :mod:`edgeae.scan.context`)."""
        return self.score in ("local-z", "context-knn")

    def product(self, name: str) -> str | None:
        """The product an image belongs to for ``context-knn``: the ``group`` regex's first match in its name in the
        archive (its path below the archive root, so a folder can be the product: ``^[^/]+``); None without a
        ``group`` (every image of the scan is one product); raises when the name gives no (or an empty) match."""
        if self.group is None:
            return None
        from edgeae.anomaly.labels import group_label

        return group_label(name, self.group)


@dataclass
class Chunk:
    """Up to ``batch_size`` patches of one image, in raster order."""

    xs: np.ndarray  # int32 (n,) left column of each patch
    ys: np.ndarray  # int32 (n,) top row
    valid: np.ndarray  # float32 (n,) valid-pixel fraction
    pixels: np.ndarray  # float32 (n, C, P, P) in [0, 1]
    n_skipped: int  # patches seen in this chunk's span but below min_valid


@dataclass
class TopK:
    """The highest-scoring patches seen so far, best first, ties broken by (y, x)."""

    scores: np.ndarray  # float64 (k,)
    xs: np.ndarray  # int32 (k,)
    ys: np.ndarray  # int32 (k,)
    thumbs: np.ndarray  # uint8 (k, C, P, P)

    @classmethod
    def empty(cls, channels: int, patch: int) -> TopK:
        z = np.zeros(0, np.int32)
        return cls(np.zeros(0, np.float64), z, z.copy(), np.zeros((0, channels, patch, patch), np.uint8))

    def merged(self, other: TopK, k: int) -> TopK:
        scores = np.concatenate([self.scores, other.scores])
        xs = np.concatenate([self.xs, other.xs])
        ys = np.concatenate([self.ys, other.ys])
        order = np.lexsort((xs, ys, -scores.astype(np.float64)))[:k]
        thumbs = np.concatenate([self.thumbs, other.thumbs])
        return TopK(scores[order], xs[order], ys[order], thumbs[order])


@dataclass
class ScoredChunk:
    """A chunk's scores, (n,) or, for ``terms-max``, (n, 2) columns rec and mu2, and its best patches by
    each column (one :class:`TopK` per column); for ``local-z``, (n, 1 + D) float32 rec and μ and no best
    patches (``tops`` empty: they are known only once the whole image is in)."""

    xs: np.ndarray
    ys: np.ndarray
    valid: np.ndarray
    scores: np.ndarray
    tops: tuple[TopK, ...]
    n_skipped: int


@dataclass
class ImageResult:
    """Everything the scan keeps for one image: per-patch scores and its best patches (and, for
    ``terms-max`` and ``local-z``, each patch's two terms, (n, 2) rec and mu2)."""

    name: str
    xs: np.ndarray
    ys: np.ndarray
    valid: np.ndarray
    scores: np.ndarray
    top: TopK
    n_skipped: int
    seconds: float = 0.0
    terms: np.ndarray | None = None
    latents: np.ndarray | None = None  # context-knn: float32 (n, views, D), ranked with the set's once all are in


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
    for blk in iter_patch_blocks(path, p, config.stride, channels=c, **config.read_options()):
        kept = np.flatnonzero(blk.valid_frac >= config.min_valid)
        pos = 0  # next position of this band not yet counted
        while kept.size:
            take = kept[: b - n]
            skipped += int(take[-1]) + 1 - pos - take.size  # skipped positions count in the chunk they fall in
            pos = int(take[-1]) + 1
            blk.pixels(take, out=pix[n : n + take.size])
            parts.append((blk.xs[take], blk.ys[take], blk.valid_frac[take]))
            n += take.size
            kept = kept[take.size :]
            if n == b:
                yield _chunk_from(parts, pix, n, skipped)
                parts, pix, n, skipped = [], np.empty((b, c, p, p), np.float32), 0, 0
        skipped += blk.ys.size - pos
    if n or skipped:
        yield _chunk_from(parts, pix, n, skipped)


def _chunk_from(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]], pix: np.ndarray, n: int, skipped: int) -> Chunk:
    def cat(i: int, dtype: Any) -> np.ndarray:
        return np.concatenate([q[i] for q in parts]).astype(dtype) if parts else np.zeros(0, dtype)

    return Chunk(xs=cat(0, np.int32), ys=cat(1, np.int32), valid=cat(2, np.float32), pixels=pix[:n],
                 n_skipped=skipped)  # fmt: skip


def tile_image_reference(path: str | os.PathLike[str], config: ScanConfig) -> Iterator[Chunk]:
    """The per-patch tiling :func:`tile_image` replaced (one :class:`edgeae.strips.Patch` per patch): kept as
    the reference the fast path is tested against."""
    iter_patches = _patch_source()
    p, c, b = config.patch, config.model.channels, config.batch_size
    xs: list[int] = []
    ys: list[int] = []
    valid: list[float] = []
    pix = np.empty((b, c, p, p), np.float32)
    skipped = 0
    for patch in iter_patches(path, p, config.stride, channels=c, **config.read_options()):
        if patch.valid_frac < config.min_valid:
            skipped += 1
            continue
        pix[len(xs)] = _to_chw(patch.pixels, c)
        xs.append(patch.x)
        ys.append(patch.y)
        valid.append(patch.valid_frac)
        if len(xs) == b:
            yield _chunk(xs, ys, valid, pix, skipped)
            xs, ys, valid, skipped = [], [], [], 0
    if xs or skipped:
        yield _chunk(xs, ys, valid, pix, skipped)


def _chunk(xs: list[int], ys: list[int], valid: list[float], pix: np.ndarray, skipped: int) -> Chunk:
    n = len(xs)
    return Chunk(
        xs=np.asarray(xs, np.int32),
        ys=np.asarray(ys, np.int32),
        valid=np.asarray(valid, np.float32),
        pixels=pix[:n].copy(),
        n_skipped=skipped,
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
        return ScoredChunk(chunk.xs, chunk.ys, chunk.valid, got, (), chunk.n_skipped)
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
    return ScoredChunk(chunk.xs, chunk.ys, chunk.valid, scores, tuple(tops), chunk.n_skipped)


class ImageAccumulator:
    """Joins one image's scored chunks, arriving in any order, into its :class:`ImageResult`.

    The best patches are merged as chunks arrive (the tie-break by position makes the merge order-free),
    so only the small per-patch arrays are held, never the thumbnails of every chunk. For ``terms-max`` the
    best patches by each term are merged, and ranked by the image's score when the last chunk is in: a patch
    among the ``k`` highest by max(rec / a, mu2 / b) is among the ``k`` highest by the term that attains it.
    For ``local-z`` every patch's rec and μ are held and the image's best patches are read back from ``path``
    (:func:`read_thumbs`) once it is scored.
    """

    def __init__(self, name: str, config: ScanConfig, path: str | os.PathLike[str] | None = None) -> None:
        self.name = name
        self.path = path
        self.config = config
        self.top_k = config.top_k
        self.terms = config.terms
        self.latents = config.latents
        n_tops = 0 if self.latents else 2 if self.terms else 1
        self.tops = [TopK.empty(config.model.channels, config.patch) for _ in range(n_tops)]
        self.parts: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
        self.n_skipped = 0
        self.held_bytes = 0

    def add(self, index: int, scored: ScoredChunk) -> None:
        if index in self.parts:
            raise ValueError(f"{self.name}: chunk {index} arrived twice")
        if self.latents:
            self.held_bytes += scored.scores.nbytes
            check_local_z_size(self.name, self.held_bytes)
        if len(scored.xs) and (scored.scores.ndim == 2) != (self.terms or self.latents):
            want = "(n, 2) terms" if self.terms else "(n, 1 + D) latents" if self.latents else "one score a patch"
            shape = scored.scores.shape
            raise ValueError(f"{self.name}: chunk {index} has scores of shape {shape}; this scan wants {want}")
        self.parts[index] = (scored.xs, scored.ys, scored.valid, scored.scores)
        if len(scored.xs):  # a chunk of skipped (no-data) patches only has nothing to rank
            self.tops = [a.merged(b, self.top_k) for a, b in zip(self.tops, scored.tops, strict=True)]
        self.n_skipped += scored.n_skipped

    def __len__(self) -> int:
        return len(self.parts)

    def result(self, seconds: float = 0.0) -> ImageResult:
        """The image's result, chunks in raster order (raises when a chunk is missing)."""
        order = sorted(self.parts)
        if order != list(range(len(order))):
            missing = sorted(set(range(max(order) + 1)) - set(order))
            raise ValueError(f"{self.name}: chunks {missing} are missing")

        def cat(i: int, dtype: Any) -> np.ndarray:
            return np.concatenate([self.parts[k][i] for k in order]).astype(dtype) if order else np.zeros(0, dtype)

        xs, ys, valid = cat(0, np.int32), cat(1, np.int32), cat(2, np.float32)
        latents = None
        if self.latents:
            parts = [self.parts[k][3] for k in order]
            if self.config.score == "context-knn":
                scores, top, terms, latents = self._context_ranking(xs, ys, parts)
            else:
                scores, top, terms = self._local_ranking(xs, ys, parts)
        elif not self.terms:
            scores, top, terms = cat(3, np.float64), self.tops[0], None
        else:
            parts = [self.parts[k][3].reshape(-1, 2) for k in order]
            terms = np.concatenate(parts) if parts else np.zeros((0, 2), np.float64)
            scores, top = self._terms_ranking(xs, ys, terms)
        return ImageResult(
            name=self.name, xs=xs, ys=ys, valid=valid, scores=scores, top=top, n_skipped=self.n_skipped,
            seconds=seconds, terms=terms, latents=latents,
        )  # fmt: skip

    def _local_ranking(
        self, xs: np.ndarray, ys: np.ndarray, parts: list[np.ndarray]
    ) -> tuple[np.ndarray, TopK, np.ndarray]:
        """Every patch's local-z score, the image's best patches (thumbnails read back) and its (rec, mu2)."""
        from edgeae.anomaly.context import local_novelty

        c, p = self.config.model.channels, self.config.patch
        parts = [q for q in parts if len(q)]
        if not parts:
            return np.zeros(0, np.float64), TopK.empty(c, p), np.zeros((0, 2), np.float64)
        dims = {q.shape[1] for q in parts}
        if len(dims) != 1:
            raise ValueError(f"{self.name}: chunks hold latents of different sizes {sorted(dims)}")
        held = np.concatenate(parts)
        rec = held[:, 0].astype(np.float64)
        mu = held[:, 1:]
        mu2 = np.einsum("nd,nd->n", mu, mu, dtype=np.float64)
        xy = np.stack([xs, ys], axis=1)
        scores = local_novelty(mu, rec, xy)
        del held, mu
        top = best_patches(self.name, self.path, self.config, xs, ys, scores)
        return scores, top, np.stack([rec, mu2], axis=1)

    def _context_ranking(
        self, xs: np.ndarray, ys: np.ndarray, parts: list[np.ndarray]
    ) -> tuple[np.ndarray, TopK, np.ndarray, np.ndarray]:
        """The image's interim ``context-knn`` scores (each patch's latents against its own image's: the scores the
        image keeps until the set is ranked, :func:`edgeae.scan.context.rank_set`, which also picks its best
        patches), (rec, mu2) and its latents (n, views, D) for the set's ranking."""
        from edgeae.anomaly.baselines import frame_latent_z

        c, p, views = self.config.model.channels, self.config.patch, self.config.views
        parts = [q for q in parts if len(q)]
        if not parts:
            return np.zeros(0, np.float64), TopK.empty(c, p), np.zeros((0, 2), np.float64), np.zeros((0, views, 0))
        dims = {q.shape[1] for q in parts}
        if len(dims) != 1:
            raise ValueError(f"{self.name}: chunks hold latents of different sizes {sorted(dims)}")
        held = np.concatenate(parts)
        if (held.shape[1] - 1) % views:
            raise ValueError(f"{self.name}: {held.shape[1] - 1} latents do not split into {views} views")
        rec = held[:, 0].astype(np.float64)
        latents = np.ascontiguousarray(held[:, 1:].reshape(len(held), views, -1))
        del held
        mu2 = np.einsum("nd,nd->n", latents[:, 0], latents[:, 0], dtype=np.float64)
        # until the set is ranked (which replaces it): how far each patch's latents lie from its image's median, in
        # the image's robust z; no kNN per image (on small crops that cost more than the VAE itself)
        scores = np.sqrt((frame_latent_z(latents) ** 2).mean(axis=1))
        # no thumbnails yet: the set's ranking picks the image's best patches and reads them back once
        return scores, TopK.empty(c, p), np.stack([rec, mu2], axis=1), latents

    def _terms_ranking(self, xs: np.ndarray, ys: np.ndarray, terms: np.ndarray) -> tuple[np.ndarray, TopK]:
        """Every patch's terms-max score and the image's best patches, from the two per-term candidate sets."""
        from edgeae.anomaly.terms import frame_scales, terms_max

        if not len(terms):
            return np.zeros(0, np.float64), self.tops[0]
        scores = terms_max(terms[:, 0], terms[:, 1], frame_scales(terms[:, 0], terms[:, 1]))
        cand = TopK(
            np.concatenate([t.scores for t in self.tops]),
            np.concatenate([t.xs for t in self.tops]),
            np.concatenate([t.ys for t in self.tops]),
            np.concatenate([t.thumbs for t in self.tops]),
        )
        keys = ys.astype(np.int64) << 32 | xs.astype(np.int64)
        sort = np.argsort(keys, kind="stable")
        ckeys = cand.ys.astype(np.int64) << 32 | cand.xs.astype(np.int64)
        _, first = np.unique(ckeys, return_index=True)  # a patch best by both terms is one candidate
        rows = sort[np.searchsorted(keys[sort], ckeys[first])]
        cand = TopK(scores[rows], cand.xs[first], cand.ys[first], cand.thumbs[first])
        return scores, TopK.empty(cand.thumbs.shape[1], cand.thumbs.shape[-1]).merged(cand, self.top_k)


def best_patches(
    name: str,
    path: str | os.PathLike[str] | None,
    config: ScanConfig,
    xs: np.ndarray,
    ys: np.ndarray,
    scores: np.ndarray,
) -> TopK:
    """An image's ``config.top_k`` best patches by ``scores`` (ties by y, x), thumbnails read back from ``path``
    (rankings known only once the whole image, or the whole set, is in: ``local-z``, ``context-knn``)."""
    c, p = config.model.channels, config.patch
    order = np.lexsort((xs, ys, -scores))[: config.top_k]
    if len(order) and path is None:
        raise ValueError(f"{name}: {config.score} thumbnails are read back from the image; no path was given")
    thumbs = read_thumbs(path, config, xs[order], ys[order]) if len(order) else np.zeros((0, c, p, p))
    return TopK(scores[order], xs[order], ys[order], thumbs.astype(np.uint8))


def read_thumbs(path: str | os.PathLike[str] | None, config: ScanConfig, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """uint8 (k, C, P, P) thumbnails of the patches at corners (``xs``, ``ys``), in the order given: the pixels
    :func:`tile_image` cut there, read back from only the rows they cover (:func:`edgeae.strips.read_patch_pixels`).
    Raises when a corner is not on the scan's patch grid."""
    from edgeae.strips import read_patch_pixels

    if path is None:
        raise ValueError("read_thumbs needs the image's path")
    pix = read_patch_pixels(
        path, config.patch, xs, ys, channels=config.model.channels, stride=config.stride, bayer=config.bayer
    )
    return np.round(np.clip(pix, 0.0, 1.0) * 255).astype(np.uint8)


def collect(
    name: str,
    scored: list[ScoredChunk],
    config: ScanConfig,
    seconds: float = 0.0,
    path: str | os.PathLike[str] | None = None,
) -> ImageResult:
    """Join an image's scored chunks (in chunk order) into its :class:`ImageResult` (``path``: the image, where
    ``local-z`` reads its best patches back)."""
    acc = ImageAccumulator(name, config, path)
    for i, s in enumerate(scored):
        acc.add(i, s)
    return acc.result(seconds)


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
    """Patches an image will yield (from its header; 0 when the header cannot be read)."""
    try:
        from edgeae.imageio import image_shape
        from edgeae.tiling import axis_starts

        h, w, _ = image_shape(path)
        return len(axis_starts(h, config.patch, config.stride)) * len(axis_starts(w, config.patch, config.stride))
    except Exception:
        return 0

"""Joining an image's scored chunks into its result: the best patches (:class:`TopK`), a chunk's scores
(:class:`ScoredChunk`), the image's :class:`ImageResult` and the :class:`ImageAccumulator` that makes it.

For ``terms-max`` and ``local-z`` the image's scores need the whole image (its medians, its neighbours), so they
are made when the last chunk is in; ``local-z`` and ``context-knn`` read their best patches' thumbnails back
from only their rows (:func:`read_thumbs`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeae.anomaly.context import check_local_z_size
from edgeae.scan.config import ScanConfig


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
    valid_max: float = 0.0  # the largest valid fraction in its span (:class:`edgeae.scan.pipeline.Chunk`)


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
    valid_max: float = -1.0  # the largest valid fraction of any patch (0: no valid pixel at all; -1: not known)


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
        self.valid_max = 0.0
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
        self.valid_max = max(self.valid_max, scored.valid_max)

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
            seconds=seconds, terms=terms, latents=latents, valid_max=self.valid_max,
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

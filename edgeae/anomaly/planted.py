"""Planted anomalies: put known blocks into real frames and ask where the score ranks them.

A score that finds what scientists look for must rank both an unusually bright patch and an unusually
textured one (boulders, hardware, tracks) near the top of a frame. The blocks here are the ones the
acceptance test of issue 12 plants: a bright flat block, a 4-px checkerboard (40/220) and uniform noise,
each the size of one patch and aligned with the patch grid, so exactly one patch holds the whole block.

Used by the tests (fp32 and int8, on test frames) and by :func:`select_lambda`, which chooses λ of
a(x) = rec + λ·mu2 on validation frames only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

BLOCKS = ("bright", "checker", "noise")
TOP_FRACTION = 0.02  # a planted block must rank in the top 2 % of its frame's patches


def block(kind: str, patch: int, seed: int = 0) -> np.ndarray:
    """A (patch, patch) float32 block in [0, 1]: ``bright`` (flat 250 of 255), ``checker`` (4-px squares of 40 and
    220 of 255) or ``noise`` (uniform, seeded)."""
    if kind == "bright":
        return np.full((patch, patch), 250 / 255, np.float32)
    if kind == "checker":
        yy, xx = np.indices((patch, patch))
        return (np.where((yy // 4 + xx // 4) % 2 == 0, 40, 220) / 255).astype(np.float32)
    if kind == "noise":
        return np.random.default_rng(seed).random((patch, patch), dtype=np.float32)
    raise ValueError(f"unknown block {kind!r}; choose from {BLOCKS}")


def grid(h: int, w: int, patch: int) -> list[tuple[int, int]]:
    """(y, x) of the non-overlapping patch grid of an (h, w) frame (incomplete edge patches left out)."""
    return [(y, x) for y in range(0, h - patch + 1, patch) for x in range(0, w - patch + 1, patch)]


@dataclass(frozen=True)
class PlantedRank:
    """Where one planted block ranks: ``above`` patches of its frame score higher; ``fraction`` = above / n."""

    kind: str
    y: int
    x: int
    above: int
    n: int
    score: float

    @property
    def fraction(self) -> float:
        return self.above / self.n

    @property
    def in_top(self) -> bool:
        return self.fraction < TOP_FRACTION


def planted_ranks(
    score: Callable[[np.ndarray], np.ndarray],
    image: np.ndarray,
    valid: np.ndarray | None = None,
    patch: int = 64,
    kinds: Sequence[str] = BLOCKS,
    position: tuple[int, int] | None = None,
    min_valid: float = 0.9,
    seed: int = 0,
    frame_score: Callable[[np.ndarray], np.ndarray] | None = None,
) -> list[PlantedRank]:
    """Plant each block (one at a time) into ``image`` (H, W, C) float [0, 1] and rank it among the frame's
    valid grid patches. ``score`` maps an (N, C, P, P) float32 batch to (N,) scores. ``position``: where to
    plant (default: the valid grid patch nearest the frame centre).

    ``frame_score``: a score normalised over the frame (:func:`edgeae.anomaly.terms.frame_terms_max`). Then
    ``score`` returns per-patch terms (N, K) and ``frame_score`` turns the whole frame's terms, the block's
    in place of the patch it covers, into (N,) scores."""
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 2:
        img = img[:, :, None]
    h, w = img.shape[:2]
    ok = np.ones((h, w), bool) if valid is None else np.asarray(valid, bool)
    pos = [(y, x) for y, x in grid(h, w, patch) if ok[y : y + patch, x : x + patch].mean() >= min_valid]
    if len(pos) < 2:
        raise ValueError(f"frame {h}x{w} has fewer than 2 valid {patch}-px patches")
    tiles = np.stack([img[y : y + patch, x : x + patch].transpose(2, 0, 1) for y, x in pos])
    base = np.asarray(score(tiles), np.float64)
    base = base if frame_score is not None else base.reshape(-1)
    if position is None:
        cy, cx = (h - patch) / 2, (w - patch) / 2
        position = min(pos, key=lambda p: (p[0] - cy) ** 2 + (p[1] - cx) ** 2)
    if position not in pos:
        raise ValueError(f"position {position} is not a valid grid patch")
    i = pos.index(position)
    out = []
    for kind in kinds:
        blk = block(kind, patch, seed)
        own = np.asarray(score(np.repeat(blk[None, None], img.shape[2], axis=1)), np.float64)
        if frame_score is None:
            s, others = float(own.reshape(-1)[0]), np.delete(base, i)
        else:
            frame = base.copy()
            frame[i] = own[0]
            every = np.asarray(frame_score(frame), np.float64).reshape(-1)
            s, others = float(every[i]), np.delete(every, i)
        out.append(PlantedRank(kind, position[0], position[1], int((others > s).sum()), len(base), s))
    return out


def select_lambda(
    rec: np.ndarray,
    mu2: np.ndarray,
    labels: np.ndarray,
    frames: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
    lambdas: Sequence[float],
    kinds: Sequence[str] = ("checker", "noise"),
) -> dict[str, object]:
    """λ of a(x) = rec + λ·mu2 with the best average precision on (``rec``, ``mu2``, ``labels``) among the λ
    for which every planted block of ``kinds`` ranks in the top :data:`TOP_FRACTION` of every frame.

    ``frames``: per validation frame (rec, mu2 of its grid patches; rec, mu2 of the planted blocks in
    :data:`BLOCKS` order). Returns ``{"lambda", "ap", "grid": [(λ, AP, all blocks in top), ...]}``; when no
    λ qualifies, the one ranking the blocks best (fewest patches above them in total) is taken.
    """
    from edgeae.anomaly.metrics import average_precision

    want = [BLOCKS.index(k) for k in kinds]
    rows = []
    for lam in lambdas:
        ap = average_precision(np.asarray(rec) + lam * np.asarray(mu2), np.asarray(labels, bool))
        above = 0
        ok = True
        for r, u, br, bu in frames:
            s = np.asarray(r) + lam * np.asarray(u)
            for k in want:
                n_above = int((s > br[k] + lam * bu[k]).sum())
                above += n_above
                ok &= n_above / len(s) < TOP_FRACTION
        rows.append((float(lam), float(ap), bool(ok), above))
    good = [r for r in rows if r[2]]
    best = max(good, key=lambda r: (r[1], -r[0])) if good else min(rows, key=lambda r: (r[3], r[0]))
    return {"lambda": best[0], "ap": best[1], "grid": [r[:3] for r in rows], "constraint_met": bool(good)}

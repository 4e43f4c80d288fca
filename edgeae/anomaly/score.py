"""Score image patches with any model a predictor can load (β-VAE, or the CAE by masked reconstruction).

The core is numpy: a :class:`PatchScorer` turns an NCHW float32 batch in [0, 1] into per-patch scores, and
:func:`score_array` / :func:`score_file` run it over an image in batches. ``score_file`` streams the image
through :func:`edgeae.strips.iter_patches`, so memory does not grow with the image size. The flight runtime
and the scan pipeline reuse :class:`PatchScorer` and :func:`score_batches`.

Scores:

- ``vae``: the model's own ``score`` output, a(x) = Σ (x − x̂)² + λ·Σ μ² (λ inside the graph). ``rec`` and
  ``mu2`` (the two terms) are returned too, for the baselines.
- ``cae``: a flight computer may carry only the reconstruction CAE. The patch is sampled with a fixed mask
  (:func:`edgeae.masks.make_mask`, ``keep`` fraction, ``seed``), reconstructed, and scored by the sum of
  squared errors over the pixels the model did not see. Unusual terrain is predicted worst. A CAE with a
  fixed larger input (128×128) gets the patch reflect-padded to its size; only the patch's pixels count.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeae._optional import require

SCORE_KINDS = ("vae", "cae")


@dataclass
class PatchScorer:
    """Callable: (N, C, P, P) float32 in [0, 1] -> dict with ``score`` (N,) and, for the VAE, ``rec``,
    ``mu2`` and (when ``keep_latents``) ``mu`` (N, D); with ``views`` > 1 also ``mu_views`` (N, views, D), the
    latents of each patch's first ``views`` rotations and flips (:mod:`edgeae.anomaly.views`; view 0 is the patch,
    the other outputs are view 0's), at ``views`` times the model calls (one per view)."""

    predictor: Callable[[np.ndarray], Any]
    kind: str
    channels: int
    cae_keep: float = 0.5
    cae_seed: int = 0
    cae_pattern: str = "uniform"
    cae_tile: int | None = None
    keep_latents: bool = False
    views: int = 1
    _mask: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in SCORE_KINDS:
            raise ValueError(f"cannot score patches with a {self.kind!r} model; use one of {SCORE_KINDS}")
        from edgeae.anomaly.views import VIEWS

        if not 1 <= self.views <= VIEWS:
            raise ValueError(f"views must be 1 to {VIEWS} (rotations and flips of a patch), got {self.views}")
        if self.views > 1 and not (self.kind == "vae" and self.keep_latents):
            raise ValueError("views > 1 average latents: they need a VAE scorer that keeps its latents")
        if self.kind == "cae" and not 0.0 < self.cae_keep <= 1.0:  # also refuses NaN; now, not at the first call
            raise ValueError(f"cae_keep must be a fraction in (0, 1]: the pixels the CAE sees, got {self.cae_keep}")

    def _cae_mask(self, size: int) -> np.ndarray:
        if self._mask is None or self._mask.shape != (size, size):
            from edgeae.masks import make_mask

            self._mask = make_mask(self.cae_seed, (size, size), self.cae_keep, self.cae_pattern)
        return self._mask

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise ValueError(f"expected an (N, {self.channels}, P, P) batch, got shape {x.shape}")
        if self.kind == "vae":
            if self.views > 1:
                from edgeae.anomaly.views import dihedral

                out = self.predictor(x)  # view 0; then one call per view, so no call is larger than the batch
                mus = [np.asarray(out["mu"], dtype=np.float32)]
                mus += [np.asarray(self.predictor(dihedral(x, g))["mu"], np.float32) for g in range(1, self.views)]
                views = np.stack(mus, axis=1)
            else:
                out = self.predictor(x)
            res = {
                "score": np.asarray(out["score"], dtype=np.float64).reshape(-1),
                "rec": ((x - out["x_hat"]).astype(np.float64) ** 2).reshape(len(x), -1).sum(axis=1),
                "mu2": (np.asarray(out["mu"], dtype=np.float64) ** 2).sum(axis=1),
            }
            if self.keep_latents:
                res["mu"] = np.asarray(out["mu"], dtype=np.float32)
            if self.views > 1:
                res["mu_views"] = np.ascontiguousarray(views)
            return res
        p = x.shape[-1]
        tile = max(p, self.cae_tile or p)
        # a CAE with a fixed, larger input: reflect-pad, score only the patch's own pixels
        pad = ((0, 0), (0, 0), (0, tile - p), (0, tile - p))
        x_in = np.pad(x, pad, mode="reflect") if tile > p else x
        known = self._cae_mask(tile)
        x_hat = np.asarray(self.predictor(x_in * known), dtype=np.float32)[..., :p, :p]
        err = ((x - x_hat).astype(np.float64) ** 2) * ~known[:p, :p]
        return {"score": err.reshape(len(x), -1).sum(axis=1)}


def make_scorer(
    predictor: Any, *, cae_keep: float = 0.5, cae_seed: int = 0, keep_latents: bool = False, views: int = 1
) -> PatchScorer:
    """A :class:`PatchScorer` for a loaded predictor; the kind and channels come from its metadata."""
    meta = predictor.metadata
    side = int(meta.input_shape[2] if meta.layout == "NCHW" else meta.input_shape[1])
    return PatchScorer(
        predictor,
        kind=meta.kind,
        channels=int(meta.channels),
        cae_tile=side if side > 0 and meta.kind == "cae" else None,
        cae_keep=cae_keep,
        cae_seed=cae_seed,
        keep_latents=keep_latents,
        views=views,
    )


@dataclass
class PatchScores:
    """Scores of the patches of one image: top-left ``x``, ``y`` (full-image pixels), ``score``, extras."""

    file: str
    x: np.ndarray
    y: np.ndarray
    score: np.ndarray
    valid_frac: np.ndarray
    patch: int
    shape: tuple[int, int]
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.score.size)

    @property
    def xy(self) -> np.ndarray:
        return np.stack([self.x, self.y], axis=1)


def score_batches(
    scorer: Callable[[np.ndarray], dict[str, np.ndarray]],
    patches: Iterable[np.ndarray],
    batch: int = 256,
) -> dict[str, np.ndarray]:
    """Score an iterable of (C, P, P) patches in batches of ``batch``; concatenated outputs."""
    parts: dict[str, list[np.ndarray]] = {}
    buf: list[np.ndarray] = []

    def flush() -> None:
        out = scorer(np.stack(buf))
        for k, v in out.items():
            parts.setdefault(k, []).append(v)
        buf.clear()

    for p in patches:
        buf.append(p)
        if len(buf) >= batch:
            flush()
    if buf:
        flush()
    return {k: np.concatenate(v) for k, v in parts.items()}


def _chw(pixels: np.ndarray) -> np.ndarray:
    a = np.asarray(pixels, dtype=np.float32)
    return a[None] if a.ndim == 2 else np.moveaxis(a, -1, 0)


def _collect(
    file: str,
    items: Iterator[tuple[int, int, np.ndarray, float]],
    scorer: Callable[[np.ndarray], dict[str, np.ndarray]],
    patch: int,
    shape: tuple[int, int],
    batch: int,
    min_valid: float,
) -> PatchScores:
    xs: list[int] = []
    ys: list[int] = []
    vf: list[float] = []

    def kept() -> Iterator[np.ndarray]:
        for x, y, pix, frac in items:
            if frac < min_valid:
                continue
            xs.append(x)
            ys.append(y)
            vf.append(frac)
            yield _chw(pix)

    out = score_batches(scorer, kept(), batch)
    score = out.pop("score", np.zeros(0))
    return PatchScores(
        file=file,
        x=np.asarray(xs, dtype=np.int64),
        y=np.asarray(ys, dtype=np.int64),
        score=score,
        valid_frac=np.asarray(vf, dtype=np.float64),
        patch=patch,
        shape=shape,
        extras=out,
    )


def score_array(
    image: np.ndarray,
    scorer: Callable[[np.ndarray], dict[str, np.ndarray]],
    patch: int = 64,
    stride: int = 64,
    *,
    valid: np.ndarray | None = None,
    min_valid: float = 1.0,
    batch: int = 256,
    file: str = "<array>",
    progress: bool = False,
    fill: bool = False,
) -> PatchScores:
    """Score every ``patch``×``patch`` window of an (H, W) or (H, W, C) image on a ``stride`` grid that covers
    the right and bottom edges. Windows with less than ``min_valid`` valid pixels are skipped. ``fill``: a
    partial window's no-data pixels take the mean of its valid ones first (:func:`edgeae.strips.fill_patches`,
    what ``edgeae score`` and ``edgeae scan`` do); off by default, as ``edgeae evaluate`` scores."""
    from edgeae.tiling import tile_positions

    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 2:
        img = img[..., None]
    h, w = img.shape[:2]
    if h < patch or w < patch:
        raise ValueError(f"{file}: image {h}×{w} is smaller than the {patch}×{patch} patch")
    if not 0.0 <= min_valid <= 1.0:  # above 1 no patch could ever qualify: an empty result with no word
        raise ValueError(f"min_valid must be a fraction in [0, 1], got {min_valid}")
    ok = np.ones((h, w), dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    positions = tile_positions(h, w, patch, stride)
    if progress:
        tqdm = require("tqdm").tqdm
        positions = tqdm(positions, desc=os.path.basename(file), unit="patch", leave=False)

    def items() -> Iterator[tuple[int, int, np.ndarray, float]]:
        from edgeae.strips import fill_patches

        for y, x in positions:
            m = ok[y : y + patch, x : x + patch]
            frac = float(m.mean())
            tile = img[y : y + patch, x : x + patch]
            if fill and 0.0 < frac < 1.0:  # (P, P, C) <-> (1, C, P, P)
                tile = fill_patches(tile.transpose(2, 0, 1)[None].copy(), m[None])[0].transpose(1, 2, 0)
            yield int(x), int(y), tile, frac

    return _collect(file, items(), scorer, patch, (h, w), batch, min_valid)


def score_file(
    path: str | os.PathLike[str],
    scorer: PatchScorer,
    patch: int = 64,
    stride: int = 64,
    *,
    min_valid: float = 1.0,
    batch: int = 256,
    progress: bool = False,
    bayer: str | None = None,
    margin: Any = None,
    leave: bool = True,
) -> PatchScores:
    """Score one image file of any size, streamed strip by strip (:func:`edgeae.strips.iter_patch_blocks`).

    ``bayer``: demosaic a raw colour-filter mosaic ("RGGB", ...) first; ``margin``: a fixed
    :class:`edgeae.nodata.Margin` (patches below ``min_valid`` are never scored); ``leave``: keep the finished
    progress bar on screen (``progress``: a bar on stderr, as ``score_array``'s, off by default in a library call)."""
    from edgeae.firmware_sim.score import background
    from edgeae.imageio import image_shape
    from edgeae.strips import iter_patch_blocks

    if not 0.0 <= min_valid <= 1.0:  # above 1 no patch could ever qualify: an empty result with no word
        raise ValueError(f"min_valid must be a fraction in [0, 1], got {min_valid}")

    h, w, _ = image_shape(path)
    bar = None
    if progress:
        from edgeae.tiling import tile_positions

        tqdm = require("tqdm").tqdm
        total = len(tile_positions(h, w, patch, stride))
        bar = tqdm(total=total, desc=os.path.basename(str(path)), unit="patch", leave=leave)
    # decoding and tiling run in a background thread; patches go from a zero-copy view of each band straight
    # into the batch buffer: the batches (and so the scores) of the per-patch iteration, without its copies
    blocks = iter_patch_blocks(path, patch, stride, channels=scorer.channels, bayer=bayer, margin=margin)
    buf = np.empty((batch, scorer.channels, patch, patch), np.float32)
    pos: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    parts: dict[str, list[np.ndarray]] = {}
    n = 0

    def flush() -> None:
        for k, v in scorer(buf[:n]).items():
            parts.setdefault(k, []).append(v)

    try:
        for blk in background(blocks, depth=2):
            kept = np.flatnonzero(blk.valid_frac >= min_valid)
            pos.append((blk.xs[kept], blk.ys[kept], blk.valid_frac[kept]))
            while kept.size:
                take = kept[: batch - n]
                blk.pixels(take, out=buf[n : n + take.size])
                n += take.size
                kept = kept[take.size :]
                if n == batch:
                    flush()
                    n = 0
            if bar is not None:
                bar.update(blk.ys.size)
        if n:
            flush()
    finally:
        if bar is not None:
            bar.close()
    out = {k: np.concatenate(v) for k, v in parts.items()}
    xs, ys, vf = (np.concatenate([q[i] for q in pos]) if pos else np.zeros(0) for i in range(3))
    return PatchScores(
        file=str(path),
        x=np.asarray(xs, dtype=np.int64),
        y=np.asarray(ys, dtype=np.int64),
        score=out.pop("score", np.zeros(0)),
        valid_frac=np.asarray(vf, dtype=np.float64),
        patch=patch,
        shape=(h, w),
        extras=out,
    )


def score_map(scores: PatchScores, reduce: str = "max", downsample: int = 1) -> np.ndarray:
    """Whole-image anomaly map (H/d, W/d): each pixel gets the max (or mean) score of the patches covering it;
    NaN where no scored patch covers it."""
    if reduce not in ("max", "mean"):
        raise ValueError(f"reduce must be 'max' or 'mean', got {reduce!r}")
    d = max(1, int(downsample))
    h, w = (scores.shape[0] + d - 1) // d, (scores.shape[1] + d - 1) // d
    acc = np.full((h, w), -np.inf) if reduce == "max" else np.zeros((h, w))
    cnt = np.zeros((h, w))
    for x, y, s in zip(scores.x, scores.y, scores.score, strict=True):
        sl = (slice(y // d, -(-(y + scores.patch) // d)), slice(x // d, -(-(x + scores.patch) // d)))
        if reduce == "max":
            np.maximum(acc[sl], s, out=acc[sl])
        else:
            acc[sl] += s
        cnt[sl] += 1
    out = acc if reduce == "max" else acc / np.maximum(cnt, 1)
    out[cnt == 0] = np.nan
    return out


def write_csv(path: str | os.PathLike[str], results: Iterable[PatchScores]) -> int:
    """Write ``file,x,y,score,valid_frac`` rows (CSV quoting: a file name with a comma or quote is quoted, so
    pandas and spreadsheets read it); returns the number of rows."""
    import csv

    n = 0
    with open(path, "w", encoding="utf-8", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(["file", "x", "y", "score", "valid_frac"])
        for r in results:
            for x, y, s, v in zip(r.x, r.y, r.score, r.valid_frac, strict=True):
                out.writerow([r.file, int(x), int(y), f"{s:.6g}", f"{v:.4f}"])
                n += 1
    return n


SETTINGS_SUFFIX = ".json"  # scores.csv -> scores.csv.json: what made the scores (the CSV stays plain rows)


def settings_path(csv_path: str | os.PathLike[str]) -> str:
    """Where :func:`write_settings` puts the settings of ``csv_path``: the CSV's name + ``.json``."""
    return os.fspath(csv_path) + SETTINGS_SUFFIX


def write_settings(csv_path: str | os.PathLike[str], settings: dict[str, Any]) -> str:
    """Write ``settings`` (model, score kind, patch, stride, ...: what the CSV's ``score`` column means) beside
    the CSV as :func:`settings_path`, with the edgeae version; returns its path."""
    import json

    from edgeae._version import __version__

    out = settings_path(csv_path)
    doc = {"csv": os.path.basename(os.fspath(csv_path)), **settings, "edgeae_version": __version__}
    with open(out, "w", encoding="utf-8") as f:
        f.write(json.dumps(doc, indent=2, default=str, ensure_ascii=False) + "\n")
    return out


def read_csv(path: str | os.PathLike[str]) -> list[tuple[str, int, int, float]]:
    """Read back ``file,x,y,score`` rows written by :func:`write_csv` (also the unquoted names of files written
    before it quoted them: a row with extra cells gives them back to the file name)."""
    import csv

    rows: list[tuple[str, int, int, float]] = []
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        if header[:4] != ["file", "x", "y", "score"]:
            raise ValueError(f"{path}: not a scores CSV (header {header})")
        for row in reader:
            extra = len(row) - len(header)
            file = ",".join(row[: extra + 1]) if extra > 0 else row[0]
            x, y, sc = row[max(extra, 0) + 1 : max(extra, 0) + 4]
            rows.append((file, int(x), int(y), float(sc)))
    return rows

"""Score images patch by patch with a :class:`edgeae.anomaly.scorer.PatchScorer` (any model a predictor can load).

:func:`score_array` / :func:`score_file` run a scorer over an image in batches and return its :class:`PatchScores`;
``score_file`` streams the image through :func:`edgeae.strips.iter_patches`, so memory does not grow with the
image size. :func:`score_map` turns the scores into a whole-image anomaly map. The scan pipeline reuses
:func:`score_batches`. The scorer itself (what the ``vae`` and ``cae`` scores are) is :mod:`edgeae.anomaly.scorer`;
the scores CSV and its settings file are :mod:`edgeae.anomaly.scores_csv`.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeae._optional import require
from edgeae.anomaly.scorer import SCORE_KINDS as SCORE_KINDS
from edgeae.anomaly.scorer import PatchScorer as PatchScorer
from edgeae.anomaly.scorer import make_scorer as make_scorer
from edgeae.anomaly.scores_csv import SETTINGS_SUFFIX as SETTINGS_SUFFIX
from edgeae.anomaly.scores_csv import read_csv as read_csv
from edgeae.anomaly.scores_csv import settings_path as settings_path
from edgeae.anomaly.scores_csv import write_csv as write_csv
from edgeae.anomaly.scores_csv import write_settings as write_settings
from edgeae.nodata import Margin

log = logging.getLogger(__name__)


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


def check_batch(batch: object) -> None:
    """``batch`` must be an int >= 1 (0 or a negative ran one patch at a time, or failed deep inside numpy)."""
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise ValueError(f"batch must be an int >= 1, got {batch!r}")


def score_batches(
    scorer: Callable[[np.ndarray], dict[str, np.ndarray]],
    patches: Iterable[np.ndarray],
    batch: int = 256,
) -> dict[str, np.ndarray]:
    """Score an iterable of (C, P, P) patches in batches of ``batch``; concatenated outputs."""
    check_batch(batch)
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


def _warn_nonfinite(file: str, score: np.ndarray) -> None:
    """Never hand back a NaN/inf score without a word: it ranks nowhere (argmax returns a NaN patch first)."""
    bad = int(score.size - np.count_nonzero(np.isfinite(score)))
    if bad:
        log.warning(
            "%s: %d of %d patch scores are NaN or inf (the model's output); rank with np.nanargmax or drop them",
            file,
            bad,
            score.size,
        )


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
    _warn_nonfinite(file, score)
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


# below 0, only a few int8 quantisation steps (1/127) and the undershoot of a resampled or demosaiced edge are
# tolerated: centred (img - 0.5) or standardised data is refused (with -0.5 it scored silently, max 59,230)
UNIT_RANGE_BELOW = 0.05


def check_unit_range(img: np.ndarray, valid: np.ndarray, file: str) -> None:
    """Refuse samples outside [0, 1] (0-255 data scored as they are gave scores ~1e9 with no word; above 1.5, or
    below -:data:`UNIT_RANGE_BELOW`): every model and score threshold is defined on [0, 1] pixels
    (:func:`edgeae.imageio.read_image` reads any image so)."""
    where = np.broadcast_to(valid[..., None], img.shape)  # no copy of the image (a NAC strip is 1 GB as float32)
    hi = float(np.max(img, where=where, initial=-np.inf))
    lo = float(np.min(img, where=where, initial=np.inf))
    if hi > 1.5 or lo < -UNIT_RANGE_BELOW:
        raise ValueError(
            f"{file}: pixels span [{lo:.4g}, {hi:.4g}], but scores are defined on [0, 1] samples: divide 8-bit data by "
            "255 (2**bits - 1 for other depths), undo a centring or standardisation, or read the image with "
            "edgeae.imageio.read_image"
        )


def _on_terminal() -> bool:
    """Whether stderr is a terminal: progress bars redraw their lines with carriage returns, which a log file keeps."""
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stderr
        return False


def as_scorer(scorer: Any) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """``scorer`` as :func:`score_array` calls it: :func:`edgeae.make_scorer`'s as it is, a loaded model
    (:func:`edgeae.load_predictor`: it has ``metadata``) or a zoo name / model path wrapped by ``make_scorer``
    (until session 46 a name failed with "'str' object is not callable" and a CAE passed unwrapped with a patch-size
    error); anything else is refused saying what to give."""
    from .scorer import PatchScorer, make_scorer

    if isinstance(scorer, PatchScorer):
        return scorer
    if isinstance(scorer, str | os.PathLike):
        from edgeae.predictor import load_predictor

        return make_scorer(load_predictor(scorer))
    if getattr(scorer, "metadata", None) is not None and hasattr(scorer.metadata, "kind"):
        return make_scorer(scorer)
    if callable(scorer):  # a batch -> {"score": ...} function of the caller's own
        return scorer
    raise TypeError(
        f"scorer must be edgeae.make_scorer(model), a model from edgeae.load_predictor, or a zoo name; got "
        f"{type(scorer).__name__}"
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
    what ``edgeae score`` and ``edgeae scan`` do); off by default, as ``edgeae evaluate`` scores.

    ``valid``: bool (H, W), True = data (:attr:`edgeae.imageio.ImageData.valid`). NaN/inf pixels are no-data
    too, whatever ``valid`` says: they are read as 0, as :func:`edgeae.imageio.read_image` reads them, and count
    against ``min_valid`` (and are filled with ``fill``) like any other no-data pixel.

    ``scorer``: :func:`edgeae.make_scorer`'s, or a loaded model or a zoo name (wrapped by it: :func:`as_scorer`).
    Returns :class:`PatchScores`: one entry per patch scored (``len``), its top-left ``x``, ``y``, ``score`` and
    valid fraction, with ``shape`` the image's (H, W) (not the patch count) for maps. The image must have the
    model's channel count (``score_file`` converts a file's channels, and logs it)."""
    from edgeae.nodata import across_channels
    from edgeae.tiling import tile_positions

    check_batch(batch)
    scorer = as_scorer(scorer)
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3:
        raise ValueError(f"{file}: image must be (H, W) or (H, W, C), got shape {np.shape(image)}")
    h, w = img.shape[:2]
    if h < patch or w < patch:
        raise ValueError(f"{file}: image {h}×{w} is smaller than the {patch}×{patch} patch")
    if not 0.0 <= min_valid <= 1.0:  # above 1 no patch could ever qualify: an empty result with no word
        raise ValueError(f"min_valid must be a fraction in [0, 1], got {min_valid}")
    ok: np.ndarray = np.ones((h, w), dtype=bool) if valid is None else np.asarray(valid)
    if ok.dtype != np.bool_ or ok.shape != (h, w):  # a float mask of 0.2 was True; another shape was cropped
        raise ValueError(
            f"{file}: valid must be a bool mask of the image's shape {(h, w)} (True = data), got {ok.dtype} {ok.shape}"
        )
    want = getattr(scorer, "channels", None)
    if isinstance(want, int) and img.shape[2] != want:
        raise ValueError(f"{file}: the image has {img.shape[2]} channel(s), the model takes {want}")
    finite = across_channels(img, np.logical_and, np.isfinite)
    if not finite.all():
        log.warning("%s: %d NaN/inf pixels are no-data (read as 0)", file, int(finite.size - finite.sum()))
        ok = ok & finite
        img = np.where(finite[..., None], img, np.float32(0.0))
    check_unit_range(img, ok, file)
    positions = tile_positions(h, w, patch, stride)
    if progress and _on_terminal():
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
    scorer: PatchScorer | Any,
    patch: int = 64,
    stride: int = 64,
    *,
    min_valid: float = 1.0,
    batch: int = 256,
    progress: bool = False,
    bayer: str | None = None,
    margin: Margin | str | int | tuple[int, ...] | None = None,
    leave: bool = True,
) -> PatchScores:
    """Score one image file of any size, streamed strip by strip (:func:`edgeae.strips.iter_patch_blocks`).

    ``bayer``: demosaic a raw colour-filter mosaic ("RGGB", ...) first; ``margin``: a fixed
    :class:`edgeae.nodata.Margin` (patches below ``min_valid`` are never scored); ``leave``: keep the finished
    progress bar on screen (``progress``: a bar on stderr when it is a terminal, as ``score_array``'s, off by default
    in a library call)."""
    from edgeae.firmware_sim.score import background
    from edgeae.imageio import image_shape
    from edgeae.strips import iter_patch_blocks

    if not 0.0 <= min_valid <= 1.0:  # above 1 no patch could ever qualify: an empty result with no word
        raise ValueError(f"min_valid must be a fraction in [0, 1], got {min_valid}")
    check_batch(batch)
    if margin is not None and not isinstance(margin, Margin):  # "3", "3,3,0,0", (3, 3, 0, 0)
        margin = Margin.parse(margin)
    wrapped: Any = as_scorer(scorer)  # a name or a loaded model too, as score_array takes
    if not isinstance(getattr(wrapped, "channels", None), int):  # the streamed read converts to the scorer's channels
        raise TypeError("score_file needs edgeae.make_scorer(model), a model from edgeae.load_predictor or a zoo name")
    scorer = wrapped

    h, w, stored = image_shape(path)
    if min(h, w) < patch:  # score_array refuses this; the CLI scores it padded (--min-valid): said, not silent
        log.warning(
            "%s: image %d×%d is smaller than the %d×%d patch: at most %.3g of its patch is image, the rest reflected "
            "padding counted as no-data, so it is scored only with min_valid <= %.3g (min_valid is %g)",
            path,
            h,
            w,
            patch,
            patch,
            min(h, patch) * min(w, patch) / patch**2,
            min(h, patch) * min(w, patch) / patch**2,
            min_valid,
        )
    colour = 3 if bayer else stored
    if colour != scorer.channels:
        log.info(
            "%s: %d channel(s) scored by a %d-channel model: %s",
            path,
            colour,
            scorer.channels,
            "RGB converted to BT.601 luminance" if scorer.channels == 1 else "grey copied to R, G, B",
        )
    bar = None
    if progress and _on_terminal():
        from edgeae.tiling import axis_count

        tqdm = require("tqdm").tqdm
        # counted, not listed: (h, w) is the header's, before any read (a 130-byte TIFF claiming 2**31 - 1 pixels a
        # side took all the memory here, on a terminal, until session 39; the read refuses it in one line)
        total = axis_count(h, patch, stride) * axis_count(w, patch, stride)
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
    score = out.pop("score", np.zeros(0))
    _warn_nonfinite(str(path), score)
    return PatchScores(
        file=str(path),
        x=np.asarray(xs, dtype=np.int64),
        y=np.asarray(ys, dtype=np.int64),
        score=score,
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

"""Rebuild a sparsely sampled image with the CAE (tiled, overlapped, blended) or a classical baseline.

``reconstruct(image, known, method)``: ``image`` float32 (H, W) or (H, W, C) in [0, 1] (destroyed pixels may
hold anything; they are zeroed before the model sees them, as in training), ``known`` bool (H, W), True =
sampled pixel. The result has the same shape and keeps the known pixels bit for bit.

For ``cae`` the masked image is cut into ``tile``×``tile`` tiles overlapping by ``overlap`` pixels (default
tile / 4; edges covered flush, small images reflect-padded: :mod:`edgeae.tiling`), run through the
predictor in batches (float32 NCHW, :func:`edgeae.predictor.load_predictor`), and blended with a Hann window.
The batch (default :data:`DEFAULT_BATCH`) is lowered to the tiles there are and to what the memory available
allows; the result is the same for every batch.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeae import inpaint as _inpaint
from edgeae import tiling
from edgeae.cae_input import KNOWN_FLOOR as KNOWN_FLOOR  # the CAE input convention (one place)

METHODS = ("cae", *_inpaint.METHODS)
# zoo model used when none is named: by image channel count
DEFAULT_MODELS = {3: "rover-rgb-unet2-ground", 1: "orbital-gray-unet2-ground"}  # best on validation (zoo)
log = logging.getLogger(__name__)
# CAE tiles per batch: 8 rebuilds the demo frame no slower than 32 and with half the peak memory (docs/ground.md:
# peak RSS 472 against 919 MiB); the result is the same (:func:`_batches`)
DEFAULT_BATCH = 8


class ChannelMismatchError(ValueError):
    """The image and the model have different channel counts and conversion was not asked for."""


def _model_geometry(predictor: Any, tile: int | None) -> tuple[int, int]:
    """(channels, tile) the predictor expects, from its metadata (tile falls back to the argument, else 128)."""
    if tile is not None and tile < 8:
        raise ValueError(f"tile must be at least 8 pixels, got {tile}")
    meta = getattr(predictor, "metadata", None)
    if meta is None:
        raise ValueError("the CAE predictor has no metadata; load it with edgeae.predictor.load_predictor")
    if meta.kind != "cae":
        raise ValueError(
            f"{getattr(predictor, 'source', 'model')} is a {meta.kind!r} model, not a 'cae': it cannot fill missing "
            "pixels; name a CAE (edgeae zoo lists them)"
        )
    if meta.layout == "NCHW":
        h, w = meta.input_shape[2], meta.input_shape[3]
    else:
        h, w = meta.input_shape[1], meta.input_shape[2]
    if h > 0 and w > 0:
        if h != w:
            raise ValueError(f"model input {meta.input_shape} is not square")
        if tile is not None and tile != int(h):  # the model's input size wins: say so rather than ignore it
            log.warning("tile %d ignored: %s takes %d-px tiles", tile, getattr(predictor, "source", "the model"), h)
        tile = int(h)
    return int(meta.channels), 128 if tile is None else tile


def show_progress(progress: bool | None, steps: int, more_than: int = 4) -> bool:
    """Whether to draw a progress bar: never when the caller says ``False``, and only when stderr is a terminal
    (a redirected log gets no bars); ``None``: for more than ``more_than`` steps."""
    if progress is False:
        return False
    try:
        tty = sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stderr
        tty = False
    return tty and (progress is True or steps > more_than)


def _batches(n: int, batch: int) -> list[tuple[int, int]]:
    """(start, stop) of the batches of ``n`` tiles. A tile is never run alone when there are others: the zoo
    U-Nets return a lone tile up to 2.4e-7 apart from the same tile in a batch of 2 or more (PyTorch's
    single-sample convolution path), so the result would depend on the batch; a last batch of one joins the
    batch before it (and ``batch`` 1 runs as 2)."""
    batch = max(batch, 2)
    out = [(i, min(i + batch, n)) for i in range(0, n, batch)]
    if len(out) >= 2 and out[-1][1] - out[-1][0] == 1:
        out[-2:] = [(out[-2][0], n)]
    return out


def _fitting_batch(batch: int, tiles: np.ndarray) -> int:
    """``batch`` lowered to the tiles there are and to what the memory available allows (the per-tile cost of
    :data:`edgeae.ground.limits.CAE_TILE_PIXEL_BYTES`, after the model outputs' array), with a note when the
    memory lowered it; at least 2 (:func:`_batches`)."""
    from edgeae.ground.limits import MEMORY_MARGIN, available_memory, cae_batch_bytes

    n, tile = len(tiles), int(tiles.shape[1])
    eff = min(batch, n)
    avail = available_memory()
    if avail is None or eff <= 2:
        return eff
    room = avail / MEMORY_MARGIN - tiles.nbytes  # the outputs' array is allocated next
    fits = max(2, int(room // cae_batch_bytes(1, tile)) - 1)  # - 1: a last lone tile joins its batch
    if fits < eff:
        log.info(
            "cae batch %d lowered to %d: %.2f GiB of memory available, about %.0f MiB a %d-px tile",
            batch, fits, avail / 2**30, cae_batch_bytes(1, tile) / 2**20, tile,
        )  # fmt: skip
        return fits
    return eff


def _predict_tiles(predictor: Any, tiles: np.ndarray, batch: int, progress: bool | None) -> np.ndarray:
    """(N, p, p, C) float32 -> model output (N, p, p, C) float32, in batches with an optional progress bar."""
    out = np.empty_like(tiles, dtype=np.float32)
    spans: Any = _batches(len(tiles), _fitting_batch(batch, tiles))
    if show_progress(progress, len(spans)):
        from edgeae._optional import require

        spans = require("tqdm").tqdm(spans, desc="cae tiles", unit="batch", leave=False)
    for i, j in spans:
        x = np.ascontiguousarray(tiles[i:j].transpose(0, 3, 1, 2), dtype=np.float32)
        y = np.asarray(predictor(x), dtype=np.float32)
        if y.shape != x.shape:
            raise ValueError(f"model returned shape {y.shape} for input {x.shape}; expected the same shape")
        out[i:j] = y.transpose(0, 2, 3, 1)
    return out


def reconstruct_cae(
    image: np.ndarray,
    known: np.ndarray,
    predictor: Any,
    tile: int | None = None,
    overlap: int | None = None,
    batch: int = DEFAULT_BATCH,
    convert_channels: bool = False,
    progress: bool | None = None,
) -> np.ndarray:
    """CAE reconstruction of (H, W, C) float32; see the module docstring. Known pixels are not restored here."""
    channels, tile = _model_geometry(predictor, tile)
    overlap = tile // 4 if overlap is None else overlap
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, {tile}), got {overlap}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    c_img = image.shape[2]
    if c_img != channels:
        name = getattr(predictor, "source", "the model")
        if c_img not in (1, 3) or channels not in (1, 3):  # no conversion exists: say so, not "convert"
            raise ChannelMismatchError(
                f"the image has {c_img} channels and the CAE {name} takes {channels}: the CAE fills grey (1) or "
                "RGB (3) images only; pick those bands first (drop an alpha channel, split a multispectral cube)"
            )
        if not convert_channels:
            raise ChannelMismatchError(
                f"the image has {c_img} channel(s) but the model {name} expects {channels}: use "
                f"{'a grey' if c_img == 1 else 'an RGB'} model, or convert explicitly "
                "(convert_channels=True; edgeae reconstruct --convert-channels)"
            )
        if c_img == 1 and channels == 3:  # grey -> replicate, reconstruct, average back
            y = reconstruct_cae(np.repeat(image, 3, axis=2), known, predictor, tile, overlap, batch, False, progress)
            return y.mean(axis=2, keepdims=True)
        # RGB with a grey model: each channel is a grey image
        planes = [
            reconstruct_cae(image[..., c : c + 1], known, predictor, tile, overlap, batch, False, progress)
            for c in range(c_img)
        ]
        return np.concatenate(planes, axis=2)
    # destroyed pixels are zeros (the paper's convention); kept pixels are lifted to at least KNOWN_FLOOR so a
    # truly black kept pixel is never mistaken for a destroyed one (the U-Net variant infers its mask from the
    # zeros). Kept pixels are restored exactly afterwards, so the floor never reaches the output.
    x = np.where(known[..., None], np.maximum(image, KNOWN_FLOOR), np.float32(0.0))
    h, w = x.shape[:2]
    positions = tiling.tile_positions(h, w, tile, tile - overlap)
    tiles = tiling.extract_tiles(x.astype(np.float32), positions, tile)
    preds = _predict_tiles(predictor, tiles, batch, progress)
    return tiling.blend_tiles(preds, positions, x.shape, tile)


def reconstruct(
    image: np.ndarray,
    known: np.ndarray,
    method: str,
    predictor: Any = None,
    tile: int | None = None,
    overlap: int | None = None,
    batch: int = DEFAULT_BATCH,
    convert_channels: bool = False,
    progress: bool | None = None,
) -> np.ndarray:
    """Fill the destroyed pixels of ``image`` with ``method`` (``cae`` needs ``predictor``); ``edgeae.fill``.

    ``image`` float (H, W) or (H, W, C) in [0, 1]: integer samples and floats outside [0, 1] are refused
    (:func:`edgeae.inpaint.prepare`; ``edgeae.read_image(path).pixels`` is in [0, 1]). ``known``: bool (H, W),
    True = a sample kept (``edgeae.make_mask``); a known NaN/inf sample is treated as destroyed (a warning).
    ``method``: one of :data:`METHODS`. ``predictor``: a CAE from ``edgeae.load_predictor`` (``cae`` only).
    ``tile`` / ``overlap``: the CAE's tile side and tile overlap in pixels (None: the model's defaults);
    ``batch``: tiles per forward pass. ``convert_channels``: give the CAE the image converted to its channel count
    (grey <-> RGB) instead of refusing a mismatch. ``progress``: a bar over the tiles (None: for many tiles, only
    when stderr is a terminal). Returns the filled image, float32 of ``image``'s shape.

    This is ``edgeae reconstruct --no-cross-check``. The CLI's default for the CAE, up to 4 Mpx, also mixes in a
    linear fill where the two disagree: ``edgeae.crosscheck.cross_checked_fill(image, known, predictor,
    CrossCheckConfig(), tile=..., overlap=..., batch=...)`` (:mod:`edgeae.crosscheck`); the two can differ by
    tens of counts on a few samples in five."""
    if method not in METHODS:
        raise ValueError(f"unknown reconstruction method {method!r}; expected one of {METHODS}")
    # float [0, 1] only; a NaN/inf known sample is destroyed; no known pixel is refused for every method, the
    # CAE too (it would paint a frame from nothing); destroyed pixels are zeroed (they may hold anything)
    img, k, squeeze, bad = _inpaint.prepare(image, known)
    if bad:
        log.warning("%d known pixels hold NaN or inf samples: treated as destroyed", bad)
    if method == "cae":
        if predictor is None:
            raise ValueError("method 'cae' needs a predictor (edgeae.predictor.load_predictor(MODEL))")
        out = reconstruct_cae(img, k, predictor, tile, overlap, batch, convert_channels, progress)
        out = np.clip(out, 0.0, 1.0)
        out[k] = img[k]
    else:
        out = _inpaint.fill_prepared(img, k, method)
    return out[..., 0] if squeeze else out


@dataclass
class Reconstruction:
    """One method's result on one image: the pixels, the wall time and the metrics against the original."""

    method: str
    image: np.ndarray
    seconds: float
    metrics: dict[str, float] = field(default_factory=dict)


def run_method(
    original: np.ndarray, known: np.ndarray, method: str, predictor: Any = None, **kwargs: Any
) -> Reconstruction:
    """Reconstruct ``original`` sampled at ``known`` with ``method``, timed, with :func:`metrics.compare`."""
    from edgeae.metrics import compare

    t0 = time.perf_counter()
    out = reconstruct(original, known, method, predictor=predictor, **kwargs)
    seconds = time.perf_counter() - t0
    return Reconstruction(method, out, seconds, compare(original, out, known))

"""The onboard reconstruction work of a frame: the reconstruction check (a few tiles rebuilt from their own
samples, the MAE over the destroyed pixels recorded) or, in ``latent`` mode, the whole frame encoded into float16
latents. Functions over the :class:`~.frame_work.FrameWork` of the frame (as :mod:`.strip_scoring`)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from edgeae.cae_input import encoder_input_mask, mask_encoder_input
from edgeae.metadata import latent_encoder_id
from edgeae.tiling import axis_starts, pad_to_patch
from edgeae.wire.products import LatentFrame

from .budget import recon_check_positions
from .strip_scoring import _ms

if TYPE_CHECKING:
    from .frame_work import FrameWork


def recon_check(fw: FrameWork, r0: int, samples: np.ndarray, mask: np.ndarray) -> None:
    """Reconstruct the check tiles of the first strip with a tile's rows (a whole-file frame: the frame),
    distinct cells of its tile grid spread over its rows and columns (:func:`.budget.recon_check_positions`),
    and record the MAE over their destroyed pixels."""
    guard, rc = fw.rt.recon, fw.m.reconstruction
    if rc.mode == "latent":
        encode_latents(fw, samples)
        return
    if guard is None or not fw.level.reconstruct or fw.cut or fw.recon:
        return
    at = recon_check_positions(samples.shape[0], fw.w, rc.tile, rc.check_tiles)
    if not at:
        return
    t = time.perf_counter()
    scale = np.float32(1.0 / ((1 << fw.m.camera.bit_depth) - 1))
    truth = np.stack([samples[y : y + rc.tile, x : x + rc.tile].transpose(2, 0, 1) for y, x in at])
    truth = truth.astype(np.float32)
    truth *= scale
    known = np.stack([mask[y : y + rc.tile, x : x + rc.tile] for y, x in at])[:, None]
    x_hat = np.asarray(guard.predictor(truth * known), np.float32)
    destroyed = np.broadcast_to(~known, truth.shape)
    err = np.abs(x_hat - truth)[destroyed]
    fw.recon = {"tiles": len(at), "row": r0, "positions": [[r0 + y, x] for y, x in at]}
    if len(at) < rc.check_tiles:  # the strip's tile grid has fewer cells than asked for
        fw.recon["check_tiles"] = rc.check_tiles
    fw.recon["mae_destroyed"] = float(err.mean()) if err.size else 0.0
    fw.recon["ms"] = _ms(t)


def recon_skipped(fw: FrameWork) -> str | None:
    """Why a frame whose level asked for the reconstruction check has none (too small for a tile, cut by the
    deadline first), or None."""
    guard, rc = fw.rt.recon, fw.m.reconstruction
    if rc.mode != "check" or guard is None or not fw.level.reconstruct or fw.recon:
        return None
    if fw.cut:
        return "deadline_cut: the frame's time ran out before the check"
    tile = f"a {rc.tile} x {rc.tile} tile ([reconstruction] tile = {rc.tile})"
    if fw.h < rc.tile or fw.w < rc.tile:
        return f"smaller than a tile: the frame ({fw.h} x {fw.w} px) is smaller than {tile}"
    if fw.streamed and fw.strip_rows < rc.tile:
        return f"smaller than a tile: its strips ([camera] strip_rows = {fw.strip_rows}) are shorter than {tile}"
    return None


def encode_latents(fw: FrameWork, samples: np.ndarray) -> None:
    """Encode every tile of a whole frame (``tile_positions`` order) into float16 latents; a frame smaller than
    the tile along an axis is padded there as :func:`edgeae.ground.pipeline.encode_latents` pads it.

    The encoder sees the frame sampled as it was trained (:func:`encoder_input_mask`,
    :func:`mask_encoder_input`): the mask ``make_mask(seed, (h, w), input_keep, input_pattern)`` of the frame's
    seed, so the ground can regenerate it; ``input_keep`` and ``input_pattern`` go into the frame record."""
    from edgeae.masks import make_mask_rows

    guard, rc = fw.rt.recon, fw.m.reconstruction
    if guard is None or not fw.level.reconstruct or fw.cut or samples.shape[0] != fw.h:
        return
    t = time.perf_counter()
    ys, xs = axis_starts(fw.h, rc.tile, rc.tile), axis_starts(fw.w, rc.tile, rc.tile)
    keep, pattern = encoder_input_mask(getattr(guard.predictor, "metadata", None))
    scale = np.float32(1.0 / ((1 << fw.m.camera.bit_depth) - 1))
    batch = np.empty((len(xs), fw.c, rc.tile, rc.tile), np.float32)
    known = np.empty((len(xs), rc.tile, rc.tile), bool)
    rows = []
    for y in ys:  # one row of tiles per call bounds the input buffer
        kept = make_mask_rows(fw.seed, (fw.h, fw.w), keep, pattern, y, min(y + rc.tile, fw.h))
        for j, x in enumerate(xs):
            px, kn = samples[y : y + rc.tile, x : x + rc.tile], kept[:, x : x + rc.tile]
            if kn.shape != (rc.tile, rc.tile):  # a frame smaller than the tile along an axis: padded as the ground's
                # encoder pads it (docs/wire-format.md "Tile grid": reflect, edge when the frame is 1 px high or wide;
                # the tile spans the frame along a short axis and is 1 px there only where the frame is, so padding
                # the tile is padding the frame)
                px, kn = pad_to_patch(px, rc.tile)[0], pad_to_patch(kn, rc.tile)[0]
            np.multiply(px.transpose(2, 0, 1), scale, out=batch[j])
            known[j] = kn
        mask_encoder_input(batch, known)
        rows.append(np.asarray(guard.predictor(batch), np.float32).astype(np.float16))
    fw.latents = LatentFrame(
        fw.fid,
        # the id the ground matches its decoder by: the encoder's source checkpoint (the file hash only for
        # an artifact without one; it was always the file hash, which no decoder matches)
        latent_encoder_id(getattr(guard.predictor, "metadata", None), guard.expected),
        fw.h,
        fw.w,
        fw.c,
        rc.tile,
        rc.tile,
        len(ys),
        len(xs),
        1.0,
        "fp16",
        np.concatenate(rows),
    )
    fw.recon = {
        "latent_tiles": len(ys) * len(xs),
        "latent_shape": list(rows[0].shape[1:]),
        "input_keep": keep,  # the encoder saw make_mask(seed, (h, w), input_keep, input_pattern)
        "input_pattern": pattern,
        "ms": _ms(t),
    }

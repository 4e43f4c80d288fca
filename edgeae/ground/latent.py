"""A latent frame on the ground: its received encoder latents checked, dequantised and decoded tile by tile with a
``cae-decoder`` artifact into the frame's image (:meth:`edgeae.ground.station.GroundStation` writes it)."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeae.tiling import axis_count, blend_tiles, tile_positions

from .decode import DecodeError, coverage, decode_flat, dequantise, latent_image_note
from .limits import GroundLimits, LimitError, check_frame
from .reassembly import Assembly

DECODER_BATCH = 32
"""Tiles the decoder takes at once: bounded activations, the decoder never sees the whole frame."""


def rebuild_latent(asm: Assembly, lim: GroundLimits, decoder: Any) -> tuple[dict[str, Any], np.ndarray | None]:
    """(the frame's report, its image) from the latents received; the image is None when there is no decoder or
    it comes from another encoder (the report's ``error`` / ``error_reason`` say which). Raises
    :class:`DecodeError` / :class:`LimitError` for a frame that cannot be decoded."""
    h = asm.header
    check_frame("latent", asm.frame_id, h["height"], h["width"], h["channels"], lim)
    n_tiles = axis_count(h["height"], h["tile"], h["stride"]) * axis_count(h["width"], h["tile"], h["stride"])
    if (h["grid_rows"] * h["grid_cols"], h["latent_shape"][0]) != (n_tiles, n_tiles):
        raise DecodeError(
            f"latent frame {asm.frame_id}: {h['grid_rows']}x{h['grid_cols']} tiles but the tiling gives {n_tiles}"
        )
    if n_tiles * h["tile"] ** 2 * h["channels"] * 4 > lim.max_frame_bytes:
        raise LimitError(
            f"latent frame {asm.frame_id}: {n_tiles} decoded {h['tile']}x{h['tile']}x{h['channels']} tiles "
            f"are over max_frame_bytes {lim.max_frame_bytes:,}"
        )
    res = decode_flat(asm, lim)
    cov = coverage(asm, res)  # before the non-finite values below are taken as not received
    # float16 NaN / inf pass the wire checks: such an element is taken as not received (0), so the decoder
    # never sees one, and counted
    bad = ~np.isfinite(res.values) if res.values.dtype.kind == "f" else np.zeros(res.values.shape, bool)
    if bad.any():
        res.values[bad] = 0
        res.received[bad] = False
    rep: dict[str, Any] = {
        "encoder_id": h["encoder_id"],
        "elements_received": float(res.received.mean()),
        "latent_nonfinite": int(bad.sum()),
        **cov,
    }
    tiles_ok = res.received.reshape(res.received.shape[0], -1).all(axis=1)
    rep["tiles_complete"] = int(tiles_ok.sum())
    rep["tiles"] = int(tiles_ok.size)
    note = latent_image_note(res.received, int(bad.sum()), rep["tiles_complete"])
    if decoder is None:
        rep["error"] = "no cae-decoder artifact given (--decoder); latents not decoded"
        rep["error_reason"] = "no_decoder"
        return rep, None
    dec_hash = getattr(getattr(decoder, "metadata", None), "source_checkpoint_hash", "") or ""
    if dec_hash and h["encoder_id"] not in ("", "unknown") and not dec_hash.split(":")[-1].startswith(h["encoder_id"]):
        rep["error"] = f"decoder comes from checkpoint {dec_hash[:23]}, not encoder {h['encoder_id']}"
        rep["error_reason"] = "decoder_mismatch"
        return rep, None
    positions = tile_positions(h["height"], h["width"], h["tile"], h["stride"])
    if len(positions) != tiles_ok.size:
        raise DecodeError(f"latent frame {asm.frame_id}: {tiles_ok.size} tiles but the tiling gives {len(positions)}")
    lat = dequantise(asm.frame_id, h, res.values)
    tiles = np.concatenate(
        [np.asarray(decoder(lat[i : i + DECODER_BATCH]), dtype=np.float32) for i in range(0, len(lat), DECODER_BATCH)]
    )  # (N, C, t, t)
    if tiles.shape[1] != h["channels"] or tiles.shape[2:] != (h["tile"], h["tile"]):
        raise DecodeError(
            f"latent frame {asm.frame_id}: the decoder gives {tiles.shape[1:]} tiles, the frame wants "
            f"({h['channels']}, {h['tile']}, {h['tile']})"
        )
    recon = blend_tiles(tiles.transpose(0, 2, 3, 1), positions, (h["height"], h["width"], tiles.shape[1]))
    if note:  # the image is written all the same: the report says how far to trust it
        rep["image_note"] = note
    return rep, recon

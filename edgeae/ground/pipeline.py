"""The whole downlink path in one call: frame -> sparse product -> packets -> lossy link -> ground rebuild.

For demos and benchmarks (``edgeae demo`` can call :func:`downlink_frame`); the CLI runs the same steps
through files (``edgeae downlink simulate`` then ``edgeae ground decode``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edgeae.wire.codec import DEFAULT_SAMPLE_CODEC
from edgeae.wire.packets import SequenceCounters, WireConfig, packetise
from edgeae.wire.products import LATENT_SCALE_RANGE, LatentFrame

from .decode import longest_row_gap
from .keep_search import KEEP_STEPS as KEEP_STEPS
from .keep_search import keep_for_bytes as keep_for_bytes
from .link import LinkConfig, LinkStats, simulate
from .sources import as_float, sparse_from_samples
from .station import Filler, GroundStation


@dataclass(frozen=True, eq=False)
class DownlinkResult:
    """What the ground rebuilt: ``recon`` float32 (H, W, C), ``known`` bool (H, W) pixels received."""

    recon: np.ndarray
    known: np.ndarray
    report: dict
    link: LinkStats
    wire_bytes: int
    packets: int


def downlink_frame(
    samples: np.ndarray,
    bit_depth: int,
    *,
    keep: float = 0.1,
    seed: int = 0,
    pattern: str = "uniform",
    link: LinkConfig | None = None,
    wire: WireConfig | None = None,
    fill: Filler | None = None,
    fill_name: str = "none",
    frame_id: int = 0,
) -> DownlinkResult:
    """Sample integer ``samples`` (H, W, C), send them over ``link`` and rebuild them with ``fill``.

    ``wire`` defaults to 1024-byte packets, payload layout 2 (interleaved) and the ccsds121 sample codec. The
    report is the ground station's per-frame report (packets expected/received/lost/corrupt, pixels
    received, PSNR against ``samples``) plus ``longest_row_gap``: the longest run of rows in which no sample
    arrived. A frame that arrived but could not be rebuilt keeps the station's report (its counts, its ``error``)
    with ``rebuilt`` False and no ``psnr``. If no packet arrives intact the report says ``frame_lost``, every packet
    counts as lost or corrupt, and the result is a flat mid-grey frame whose PSNR is the report's ``psnr`` (what the
    benchmarks count for a lost frame; a report that shows the frame as lost should not show it as a rebuild). A
    frame with nothing to rebuild (``not_received``: every packet that carried a sample was lost; or its mask, at a
    tiny ``keep``, sampled no pixel) is not an error: like a lost frame it is mid-grey with that ``psnr``, its
    report the station's (``rebuilt`` False, ``frame_lost`` False).
    """
    frame = sparse_from_samples(samples, bit_depth, keep, seed, pattern, frame_id)
    pkts = packetise(frame, config=wire or WireConfig(codec=DEFAULT_SAMPLE_CODEC), counters=SequenceCounters())
    out, stats = simulate(pkts, link or LinkConfig())
    originals = {frame_id: as_float(samples, bit_depth)}
    gs = GroundStation(fill=fill, fill_name=fill_name, originals=originals, keep_images=True)  # its image is returned
    for _, p in out:
        gs.receive(p)
    reports = gs.finish()["products"]
    name = f"frame_{frame_id}"
    h, w, c = samples.shape
    if name in reports and frame_id not in gs.images:  # it arrived but no image was rebuilt
        recon = np.full((h, w, c), 0.5, np.float32)
        rep = {**reports[name], "frame_lost": False, "rebuilt": False, "longest_row_gap": h}
        if "error" not in rep and (rep.get("not_received") or rep.get("pixels_sent") == 0):  # nothing to rebuild
            from edgeae.metrics import psnr

            rep.pop("psnr_error", None)  # the mid-grey frame's PSNR, as for a lost frame
            rep["psnr"] = float(psnr(originals[frame_id], recon))
        return DownlinkResult(recon, np.zeros((h, w), bool), rep, stats, sum(map(len, pkts)), len(pkts))
    if name not in reports:
        recon = np.full((h, w, c), 0.5, np.float32)
        from edgeae.metrics import psnr

        corrupt = min(len(pkts), stats.corrupted_packets)  # arrived damaged and failed the CRC: not lost
        rep = {
            "packets_expected": len(pkts),
            "packets_received": 0,
            "packets_lost": len(pkts) - corrupt,
            "packets_corrupt": corrupt,
            "packets_refused": 0,
            "pixel_fraction_received": 0.0 if frame.values.size else None,  # None: the mask sampled no pixel
            "psnr": float(psnr(as_float(samples, bit_depth), recon)),
            "frame_lost": True,
            "longest_row_gap": h,
        }
        return DownlinkResult(recon, np.zeros((h, w), bool), rep, stats, sum(map(len, pkts)), len(pkts))
    recon = gs.images[frame_id]
    known = gs.known[frame_id]
    rep = {**reports[name], "longest_row_gap": longest_row_gap(known)}
    return DownlinkResult(recon, known, rep, stats, sum(map(len, pkts)), len(pkts))


def encoder_id(encoder: Any) -> str:
    """The id a latent frame carries (:func:`edgeae.metadata.latent_encoder_id`): the first 16 hex digits of the
    source checkpoint hash in the encoder's metadata (shared by the encoder and decoder exported from one
    checkpoint), else of the artifact file."""
    from edgeae.metadata import latent_encoder_id, sha256_file

    meta = getattr(encoder, "metadata", None)
    if getattr(meta, "source_checkpoint_hash", ""):
        return latent_encoder_id(meta)
    src = getattr(encoder, "source", "")
    return latent_encoder_id(None, sha256_file(src) if src and Path(src).is_file() else "")


def encode_latents(
    samples: np.ndarray,
    bit_depth: int,
    encoder: Any,
    *,
    tile: int = 128,
    stride: int | None = None,
    dtype: str = "int8",
    frame_id: int = 0,
    batch: int = 16,
    input_keep: float | None = None,
    seed: int = 0,
) -> LatentFrame:
    """A latent frame: ``encoder`` (a cae-encoder predictor) run on the tiles of ``samples`` (H, W, C).

    int8 latents are quantised symmetrically with one scale per frame, ``max|z| / 127``. The encoder sees the
    frame sampled as it was trained, as the flight runtime shows it (both use
    :func:`edgeae.cae_input.encoder_input_mask` and ``mask_encoder_input``): the pixels of
    ``make_mask(seed, (H, W), input_keep, pattern)``, destroyed pixels 0 and kept ones at least 1/255 (the CAE
    input convention of :func:`edgeae.reconstruct.reconstruct_cae`). ``input_keep`` None: 0.5, moved inside the
    keep range the encoder's metadata records for its training (a gt-CAE was trained on 50-99 % destroyed
    inputs; a complete frame, ``input_keep=1.0``, is outside what it saw and rebuilds about 9 dB worse).
    """
    from edgeae.cae_input import encoder_input_mask, mask_encoder_input
    from edgeae.masks import make_mask
    from edgeae.tiling import extract_tiles, tile_positions

    if dtype not in ("int8", "fp16"):
        raise ValueError(f"latent dtype must be 'int8' or 'fp16', got {dtype!r}")
    h, w, c = samples.shape
    st = stride or tile
    pos = tile_positions(h, w, tile, st)
    keep, pattern = encoder_input_mask(getattr(encoder, "metadata", None), input_keep)
    tiles = extract_tiles(as_float(samples, bit_depth), pos, tile)  # (N, t, t, C)
    known = extract_tiles(make_mask(seed, (h, w), keep, pattern), pos, tile)  # (N, t, t)
    x = mask_encoder_input(np.ascontiguousarray(tiles.transpose(0, 3, 1, 2), dtype=np.float32), known)
    z = np.concatenate([np.asarray(encoder(x[i : i + batch]), np.float32) for i in range(0, len(x), batch)])
    rows, cols = len({y for y, _ in pos}), len({x0 for _, x0 in pos})
    if dtype == "int8":
        # a nearly silent encoder output (max |z| <= ~1.5e-36) would give a scale below float32's normals, which the
        # wire refuses: the smallest normal keeps q within +-127
        amax = float(np.abs(z).max())
        scale = max(amax / 127.0, LATENT_SCALE_RANGE[0]) if amax else 1.0
        q = np.clip(np.round(z / scale), -127, 127).astype(np.int8)
    else:
        scale, q = 1.0, z.astype(np.float16)
    kind: Literal["int8", "fp16"] = "int8" if dtype == "int8" else "fp16"
    return LatentFrame(frame_id, encoder_id(encoder), h, w, c, tile, st, rows, cols, scale, kind, q)


def downlink_latents(
    frame: LatentFrame,
    decoder: Any,
    *,
    link: LinkConfig | None = None,
    wire: WireConfig | None = None,
    original: np.ndarray | None = None,
) -> tuple[dict, np.ndarray | None, int]:
    """Send a latent frame over ``link`` and decode it; (ground report, image or None, wire bytes)."""
    pkts = packetise(frame, config=wire or WireConfig(codec="deflate"), counters=SequenceCounters())
    out, _ = simulate(pkts, link or LinkConfig())
    gs = GroundStation(decoder=decoder, keep_images=True)  # its image is returned
    if original is not None:
        gs.originals[frame.frame_id] = original
    for _, p in out:
        gs.receive(p)
    rep = gs.finish()["products"].get(f"latent_{frame.frame_id}", {"frame_lost": True})
    return rep, gs.images.get(frame.frame_id), sum(map(len, pkts))

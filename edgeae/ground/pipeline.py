"""The whole downlink path in one call: frame -> sparse product -> packets -> lossy link -> ground rebuild.

For demos and benchmarks (``edgeae demo`` can call :func:`downlink_frame`); the CLI runs the same steps
through files (``edgeae downlink simulate`` then ``edgeae ground decode``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edgeae.wire.codec import DEFAULT_SAMPLE_CODEC
from edgeae.wire.packets import SequenceCounters, WireConfig, packetise
from edgeae.wire.products import LATENT_SCALE_RANGE, LatentFrame, SparseFrame

from .decode import longest_row_gap
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


KEEP_STEPS = 1 << 53
"""Keeps are searched as ``t / 2**53`` for whole numbers t: a uniform mask keeps a pixel when the top 53 bits of its
hash are under ``ceil(keep * 2**53)`` (:func:`edgeae.masks.uniform_threshold`), so these keeps give every uniform
mask there is, and a larger t keeps the same pixels and more (masks nested in the keep)."""
_Point = tuple[int, int, int]  # (t or sample count, wire bytes, samples)


def keep_for_bytes(
    samples: np.ndarray, bit_depth: int, budget: int, wire: WireConfig, seed: int, pattern: str = "uniform"
) -> float:
    """The largest keep fraction whose sparse frame of ``samples`` (H, W, C) takes at most ``budget`` wire bytes
    under ``wire``. For the uniform mask (nested in the keep) its frame fits and the frame that also sends the next
    pixel the mask would add does not, for every budget from a frame of no sample up (until session 37 the search
    stopped within 1.5 % of the budget, and budgets just over one packet sent one sample where dozens fit). The size
    is close to, not exactly, monotone in the samples kept (packet boundaries, the codec's blocks): a frame of a few
    more samples may fit again; the search does not look past the first that does not.

    Secant steps on the wire size over the thresholds ``t`` of :data:`KEEP_STEPS` (keep ``t / 2**53``; the size is
    close to linear in the samples kept) until a keep that fits and one that does not are known; then, for the
    uniform mask, the hashes of the pixels the larger one keeps (one pass over the frame, a block at a time) give
    the exact keep of every sample count between the two, searched by false position on their sizes (halved when a
    step moves the same end twice): each step packs the frame from those pixels without a pass over the frame
    (memory: 16 bytes per sample the larger keep sends). About 7 packings a search where the search before session
    37 made 2-3. Other patterns halve the thresholds between the two. ``ValueError`` when no keep fits: the budget
    is under the smallest frame (a uniform mask's of no sample: its packet headers)."""
    from edgeae.masks import PRNG_VERSION
    from edgeae.wire.layout import overhead

    h, w, c = samples.shape

    def size(values: np.ndarray, t: int) -> int:
        if not len(values):  # one packet of headers; not packed, as packetise warns of a frame sent with no sample
            return overhead("sparse", wire.layout)
        fr = SparseFrame(0, h, w, c, bit_depth, t / KEEP_STEPS, pattern, seed, PRNG_VERSION, values)
        return sum(map(len, packetise(fr, config=wire)))

    def at(t: int) -> _Point:
        values = sparse_from_samples(samples, bit_depth, t / KEEP_STEPS, seed, pattern).values
        return t, size(values, t), len(values)

    fits, over = _bracket(at, budget, int(budget / max(samples.nbytes, 1) * KEEP_STEPS))
    if over is None:
        return 1.0
    if pattern != "uniform":  # masks not nested in the keep: halve the thresholds between the two
        while over[2] - fits[2] > 1 and over[0] - fits[0] > 1:
            p = at((fits[0] + over[0]) // 2)
            fits, over = (p, over) if p[1] <= budget else (fits, p)
        return fits[0] / KEEP_STEPS
    idx, top = _kept_hashes(seed, h * w, over[0])  # the pixels ``over`` keeps (raster order) and their hashes
    order = np.sort(top[top >= fits[0]])  # n(fits) + j samples: the pixels whose hash is under order[j - 1] + 1
    flat = samples.reshape(h * w, c)

    def count(j: int) -> _Point:
        t = int(order[j - 1]) + 1
        values = flat[idx[top < t]]
        return j, size(values, t), len(values)

    lo, hi = (0, fits[1], fits[2]), (len(order), over[1], over[2])  # (j, bytes, samples)
    last, twice = "", False
    while hi[0] - lo[0] > 1:
        p = count(_between(lo, hi, budget, bisect=twice))
        side = "lo" if p[1] <= budget else "hi"
        lo, hi = (p, hi) if side == "lo" else (lo, p)
        last, twice = side, side == last
    return (int(order[lo[0] - 1]) + 1) / KEEP_STEPS if lo[0] else fits[0] / KEEP_STEPS


def _bracket(at: Callable[[int], _Point], budget: int, t: int) -> tuple[_Point, _Point | None]:
    """A threshold whose frame fits ``budget`` and one whose frame does not (None: keep 1 fits), by secant steps
    from ``t`` (:func:`_towards`; after 8 of them twice or half as far each step, so at most 54 more).
    ``ValueError`` when t = 1 does not fit."""
    fits: _Point | None = None
    over: _Point | None = None
    last: _Point | None = None
    t = min(KEEP_STEPS, max(1, t))
    for step in range(8 + 54):
        p = at(t)
        if p[1] <= budget:
            if t == KEEP_STEPS:
                return p, None
            fits = p
        else:
            if t == 1:
                raise ValueError(f"a budget of {budget:,} wire bytes is under the smallest sparse frame ({p[2]} "
                                 f"sample(s), {p[1]:,} bytes in its packets)")  # fmt: skip
            over = p
        if fits is not None and over is not None:
            return fits, over
        t, last = _towards(p, last, budget, far=step >= 8), p
    raise AssertionError("unreachable: halving or doubling t reaches 1 or 2**53 within 54 steps")


def _between(lo: _Point, hi: _Point, budget: int, bisect: bool) -> int:
    """The next x strictly between ``lo`` (fits) and ``hi`` (does not): false position on the wire bytes, or the
    middle (``bisect``: the last two steps moved the same end)."""
    (x0, b0, _), (x1, b1, _) = lo, hi
    x = (x0 + x1) // 2 if bisect else x0 + int((x1 - x0) * (budget + 0.5 - b0) / (b1 - b0))
    return min(x1 - 1, max(x0 + 1, x))


def _towards(point: _Point, last: _Point | None, budget: int, far: bool = False) -> int:
    """The next threshold while every keep tried so far fits (or none does): the secant through the last two
    (t, bytes) points aimed 0.1 % past the budget, so the next one likely lands on the other side; from one point
    the keep scaled by budget / bytes; twice (half) as far when the last two gave the same bytes, or ``far``."""
    t, size, _ = point
    target = budget * (1.001 if size <= budget else 0.999)
    if far or (last is not None and last[1] == size):  # the same bytes twice (no sample either time)
        nxt = 2 * t if size <= budget else t // 2
    elif last is None:
        nxt = int(t * target / max(size, 1))
    else:
        nxt = t + int((t - last[0]) * (target - size) / (size - last[1]))
    if size <= budget:  # further up, at least one step
        return min(KEEP_STEPS, max(t + 1, nxt))
    return max(1, min(t - 1, nxt))


def _kept_hashes(seed: int, n: int, t: int, block: int = 1 << 20) -> tuple[np.ndarray, np.ndarray]:
    """The pixels of a frame of ``n`` that the uniform mask of threshold ``t`` keeps (flat raster indices, int64
    ascending) and the top 53 bits of their hashes (a pixel is kept when they are under t,
    :func:`edgeae.masks.uniform_threshold`): one pass over the pixels, a block at a time."""
    from edgeae.masks import hash_counter, stream_key

    key = stream_key(seed, "uniform")
    idx, top = [np.zeros(0, np.int64)], [np.zeros(0, np.uint64)]
    for lo in range(0, n, block):
        i = np.arange(lo, min(n, lo + block), dtype=np.uint64)
        tp = hash_counter(key, i) >> np.uint64(11)
        kept = tp < np.uint64(t)
        idx.append(i[kept].astype(np.int64))
        top.append(tp[kept])
    return np.concatenate(idx), np.concatenate(top)


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

"""Which kept pixels a sparse packet of payload layout 2 carries (numpy only). Spec: ``docs/wire-format.md``.

A band of rows [row0, row1) holds ``n_band`` kept pixels, numbered 0 … n_band − 1 in raster (mask) order.
They are cut into T = ceil(n_band / seg) *segments* of ``seg`` consecutive kept pixels (the last one may be
shorter), and segment t travels in packet ``(t · step) mod parts`` of the band. Packet j therefore carries
the segments t ≡ j · step⁻¹ (mod parts), in increasing t, so its samples run in raster order, a few kept
pixels at a time, from the top of the band to its bottom. A lost packet leaves short scattered gaps in many
rows instead of a band of missing rows, and every packet still decodes alone: its pixel positions follow
from these five numbers and the regenerated mask of the band.

``segment_length`` and ``interleave_step`` are the sender's choices (sent in every packet, so a ground never
recomputes them); ``packet_samples`` and ``packet_indices`` are the contract both sides compute.
"""

from __future__ import annotations

import math

import numpy as np

MAX_SEGMENT = 16
"""Longest segment the sender uses: long enough for the predictor of the sample coders, short enough that
a row of a typical frame spreads over several packets."""
SEGMENTS_PER_ROW = 4
"""The sender keeps at least this many segments per row on average (when rows hold enough kept pixels), so
a row is lost only if that many packets are."""
GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


class InterleaveError(ValueError):
    """Band parameters that do not describe a valid interleave."""


def segment_count(n_band: int, seg: int) -> int:
    """T: the number of segments of a band."""
    return -(-n_band // seg) if n_band else 0


def check(n_band: int, seg: int, parts: int, step: int, index: int) -> None:
    """Raise :class:`InterleaveError` unless (n_band, seg, parts, step, index) is a valid packet of a band."""
    if seg < 1 or parts < 1 or not 0 <= index < parts:
        raise InterleaveError(f"bad segment length {seg} or packet {index} of {parts}")
    if math.gcd(step, parts) != 1 or not 1 <= step <= max(1, parts - 1):
        raise InterleaveError(
            f"interleave step {step} is not in 1..{max(1, parts - 1)} or shares a factor with {parts}"
        )
    if parts > max(1, segment_count(n_band, seg)):
        raise InterleaveError(f"{parts} packets for {segment_count(n_band, seg)} segments")


def first_segment(parts: int, step: int, index: int) -> int:
    """t0 = index · step⁻¹ mod parts: the first segment of packet ``index``."""
    return 0 if parts == 1 else (index * pow(step, -1, parts)) % parts


def packet_samples(n_band: int, seg: int, parts: int, step: int, index: int) -> int:
    """Number of kept pixels packet ``index`` carries (computed without allocating anything)."""
    check(n_band, seg, parts, step, index)
    t_count = segment_count(n_band, seg)
    t0 = first_segment(parts, step, index)
    if t0 >= t_count:
        return 0
    k = (t_count - 1 - t0) // parts + 1
    n = k * seg
    if (t_count - 1 - t0) % parts == 0:  # this packet holds the last, possibly short, segment
        n -= t_count * seg - n_band
    return n


def packet_indices(n_band: int, seg: int, parts: int, step: int, index: int) -> np.ndarray:
    """Kept-pixel numbers (int64, increasing) that packet ``index`` carries, in the order of its samples."""
    check(n_band, seg, parts, step, index)
    t = np.arange(first_segment(parts, step, index), segment_count(n_band, seg), parts, dtype=np.int64)
    idx = (t[:, None] * seg + np.arange(seg, dtype=np.int64)).reshape(-1)
    return idx[idx < n_band] if t.size and t[-1] * seg + seg > n_band else idx


# ------------------------------------------------------------------------------------------- sender
def segment_length(n_band: int, rows: int, cap: int) -> int:
    """The sender's segment length: at most :data:`MAX_SEGMENT` and ``cap`` (samples a packet carries raw),
    and short enough for :data:`SEGMENTS_PER_ROW` segments in an average row of the band."""
    per_row = n_band / max(1, rows)
    return int(max(1, min(MAX_SEGMENT, cap, per_row // SEGMENTS_PER_ROW)))


def _spread(g: int, parts: int, k: int) -> int:
    """Smallest circular distance from 0 of g, 2g, …, kg mod parts."""
    m = (np.arange(1, k + 1, dtype=np.int64) * g) % parts
    return int(np.minimum(m, parts - m).min())


def interleave_step(parts: int) -> int:
    """The sender's step: coprime with ``parts``, near parts · 0.618 (the golden ratio spreads consecutive
    segments furthest apart in send order), chosen so that the first few multiples of the step *and of its
    inverse* stay far from 0 mod parts: neighbouring segments go to packets far apart in time, and packets
    sent back to back (a burst) hold segments far apart in the frame."""
    if parts <= 2:
        return 1
    k = min(parts - 1, 6)
    centre = round(parts * GOLDEN)
    best, best_score = 1, -1
    for g in sorted(range(max(1, centre - 64), min(parts, centre + 65)), key=lambda v: (abs(v - centre), v)):
        if math.gcd(g, parts) != 1:
            continue
        score = min(_spread(g, parts, k), _spread(pow(g, -1, parts), parts, k))
        if score > best_score:
            best, best_score = g, score
    return best

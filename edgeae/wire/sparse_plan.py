"""Layout-2 sparse planning: how many packets each band of a sparse frame needs so that every packet fits.

A band is cut into interleaved segments (:mod:`.interleave`); with a sample codec the packet count comes from a
few real packets' compression and is checked on every packet, whose coded bytes are kept in a
:class:`BodySpool` (a temporary file) for :func:`~.sparse.sparse_v2_bodies` to send. Also the estimate a mission
can check before any frame exists (:func:`raw_packet_estimate`) and the 16-bit packet-count limit
(:class:`TooManyPackets`). Numpy only.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import IO

import numpy as np

from . import interleave as il
from .codec import CODECS, encode_samples
from .layout import MAX_PIECE_BYTES, WireConfig, overhead
from .products import SparseFrame


@dataclass(frozen=True)
class BandPlan:
    """One band of a layout-2 sparse frame: rows [row0, row1), its kept pixels (``n_band``, the first at
    ``v0`` in ``frame.values``), segment length, packets and interleave step."""

    row0: int
    row1: int
    n_band: int
    v0: int
    seg: int
    parts: int
    step: int


@dataclass
class BodySpool:
    """The coded sample bytes of one band's packets as the planner checked them, kept in a temporary file from
    offset ``start`` on, so :func:`~.sparse.sparse_v2_bodies` sends them without coding every packet again; memory:
    (codec, length) per packet. The bands of a frame share one file (one descriptor however many bands), each
    written after the previous one. Empty (``len == 0``) when the planner did not code the band (no codec, or
    raw packets)."""

    file: IO[bytes]
    start: int = 0
    items: list[tuple[int, int]] = field(default_factory=list)

    def reset(self) -> None:
        self.file.seek(self.start)
        self.file.truncate(self.start)
        self.items.clear()

    def add(self, codec: int, data: bytes) -> None:
        self.file.write(data)
        self.items.append((codec, len(data)))

    def replay(self) -> Iterator[tuple[int, bytes]]:
        pos = self.start
        for codec, n in self.items:
            self.file.seek(pos)
            pos += n
            yield codec, self.file.read(n)

    def close(self) -> None:
        self.file.close()

    def __len__(self) -> int:
        return len(self.items)


def _bands(h: int, band_rows: int) -> list[tuple[int, int]]:
    b = band_rows or h
    return [(r, min(h, r + b)) for r in range(0, h, b)]


def _packet_body(
    values: np.ndarray, band: BandPlan, index: int, codec: int, bits: int, budget: int
) -> tuple[int, bytes] | None:
    """(codec used, sample bytes) of one packet: coded when that is smaller and fits, else raw when raw fits;
    None when neither fits the packet."""
    idx = il.packet_indices(band.n_band, band.seg, band.parts, band.step, index)
    samples = np.asarray(values[band.v0 + idx]) if idx.size else values[0:0]
    raw_len = samples.nbytes  # the length of encode_samples(samples, 0), built only when it is used
    if codec:
        coded = encode_samples(samples, codec, bits)
        if len(coded) < raw_len and len(coded) <= budget:
            return codec, coded
    return (0, encode_samples(samples, 0)) if raw_len <= budget else None


def first_packet_count(
    take: Callable[[np.ndarray], np.ndarray], v0: int, n_band: int, rows: int, unit: int, cfg: WireConfig, bits: int
) -> tuple[int, int, int]:
    """The planner's first choice for one band of ``n_band`` kept pixels over ``rows`` rows, whose samples of
    numbers ``v0 + i`` are ``take(v0 + i)`` ((n, C), ``unit`` bytes a pixel): (segment length, raw packet count,
    first packet count). The raw count when the samples are not coded (a band of no pixel: one packet), else the
    count from the worst compression ratio of up to 16 packets it samples, with a 1 % margin (never above raw).
    :func:`plan_sparse` checks that count on every packet; :func:`edgeae.ground.keep_frames.planned_packets`
    estimates a frame's size from it."""
    budget = cfg.max_packet_size - overhead("sparse", 2)
    cap = max(1, min(budget, MAX_PIECE_BYTES) // unit)  # samples per raw packet
    seg = il.segment_length(n_band, rows, cap)
    t_count = il.segment_count(n_band, seg)
    if t_count == 0:
        return seg, 1, 1
    per_packet = max(1, cap // seg)
    raw_parts = -(-t_count // per_packet)
    codec = CODECS[cfg.codec]
    if codec == 0 or raw_parts == 1:
        return seg, raw_parts, raw_parts
    # every packet samples the whole band, so their coded sizes differ little
    step, ratio = _step(raw_parts), float("inf")
    for j in np.linspace(0, raw_parts - 1, min(raw_parts, 16)).astype(int):
        samples = np.asarray(take(v0 + il.packet_indices(n_band, seg, raw_parts, step, int(j))))
        ratio = min(ratio, samples.nbytes / max(1, len(encode_samples(samples, codec, bits))))
    floor_parts = max(1, -(-t_count // max(1, MAX_PIECE_BYTES // (seg * unit))))  # a packet: <= ceil(T/P) segments
    parts = max(floor_parts, int(np.ceil(t_count / (per_packet * max(1.0, ratio) * 0.99))))
    return seg, raw_parts, min(raw_parts, parts)


_step = lru_cache(maxsize=64)(il.interleave_step)  # ~1 ms a call; the frames a keep search estimates share a few


def _fit_band(
    values: np.ndarray,
    row0: int,
    row1: int,
    n_band: int,
    v0: int,
    frame: SparseFrame,
    cfg: WireConfig,
    spool: BodySpool | None = None,
) -> BandPlan:
    """Few packets for one band such that every packet fits (raw packets always do at the raw count).

    With a codec the count starts at :func:`first_packet_count`'s (the worst of a few real packets' compression
    ratios, with a 1 % margin) and is then checked on every packet (raised when one does not fit). Not searched
    further down: each try codes every packet once more, for ~1 % fewer packets (NAC-size strip at keep 0.02: 5,526
    packets at the smallest count that fits, 5,581 with this estimate: +0.07 % bytes, for a third of the products
    CPU). ``spool``: receives the checked packets' coded bytes (left empty when the band is sent raw).
    """
    budget = cfg.max_packet_size - overhead("sparse", 2)
    unit = frame.channels * values.dtype.itemsize
    seg, raw_parts, parts = first_packet_count(values.__getitem__, v0, n_band, row1 - row0, unit, cfg, frame.bit_depth)
    codec = CODECS[cfg.codec]
    for _ in range(8):
        if parts >= raw_parts:
            break
        band = BandPlan(row0, row1, n_band, v0, seg, parts, _step(parts))
        worst = _worst(values, band, codec, frame.bit_depth, budget, spool)
        if worst == 0:  # every packet fits
            return band
        parts = max(parts + 1, int(np.ceil(parts * worst / budget * 1.01)))
    if spool is not None:
        spool.reset()
    return BandPlan(row0, row1, n_band, v0, seg, raw_parts, _step(raw_parts))


def _worst(
    values: np.ndarray, band: BandPlan, codec: int, bits: int, budget: int, spool: BodySpool | None = None
) -> int:
    """0 when every packet of ``band`` fits (their bodies then in ``spool``); else the coded size of the first
    one that does not."""
    if spool is not None:
        spool.reset()
    for j in range(band.parts):
        body = _packet_body(values, band, j, codec, bits, budget)
        if body is None:
            idx = il.packet_indices(band.n_band, band.seg, band.parts, band.step, j)
            return len(encode_samples(np.asarray(values[band.v0 + idx]), codec, bits))
        if spool is not None:
            spool.add(*body)
    return 0


def raw_packet_estimate(height: int, width: int, keep: float, channels: int, itemsize: int, cfg: WireConfig) -> int:
    """Packets a layout-2 sparse frame of ``keep`` × ``height`` × ``width`` kept pixels needs sent raw, planned band
    by band as :func:`plan_sparse` plans it (a codec only lowers it): what a mission can check before any frame
    exists. Meant as an upper bound: each band is planned at its expected count of kept pixels, and the frame gets one
    margin for the spread of a uniform mask (each pixel kept with probability ``keep``: four standard deviations of
    the frame's count, in packets) and 1 % for the segment-length steps that can make a band a packet or two dearer
    at a count near its expected one (NAC-size strip at keep 0.02, 1,024-byte packets: 5,604 planned at the expected
    count, 5,671 with the margins). Per-band margins (review s32) summed to +14 % with 64-row bands."""
    unit = channels * itemsize
    cap = max(1, min(cfg.max_packet_size - overhead("sparse", 2), MAX_PIECE_BYTES) // unit)
    total = 0
    for r0, r1 in _bands(height, cfg.band_rows):
        n_band = round((r1 - r0) * width * keep)
        seg = il.segment_length(n_band, r1 - r0, cap)
        t_count = il.segment_count(n_band, seg)
        total += -(-t_count // max(1, cap // seg)) if t_count else 0
    spread = 4 * math.sqrt(height * width * keep * (1 - keep))
    return total + math.ceil(spread / cap) + math.ceil(0.01 * total) if total else 0


def plan_sparse(
    frame: SparseFrame, counts: np.ndarray, cfg: WireConfig, spools: list[BodySpool] | None = None
) -> list[BandPlan]:
    """The bands of a layout-2 sparse frame given its kept pixels per row (``counts``, (H,)). ``spools``: a
    list that receives one :class:`BodySpool` per band (the caller closes them), for
    :func:`~.sparse.sparse_v2_bodies`."""
    if counts.shape != (frame.height,) or int(counts.sum()) != frame.values.shape[0]:
        raise ValueError(
            f"frame {frame.frame_id}: values has {frame.values.shape[0]} rows, the mask keeps {int(counts.sum())}"
        )
    cum = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
    shared = tempfile.TemporaryFile(prefix="edgeae-bodies-") if spools is not None else None  # noqa: SIM115
    plan = []
    for r0, r1 in _bands(frame.height, cfg.band_rows):
        spool = BodySpool(shared, shared.seek(0, 2)) if shared is not None else None  # after the previous band
        plan.append(_fit_band(frame.values, r0, r1, int(cum[r1] - cum[r0]), int(cum[r0]), frame, cfg, spool))
        if spools is not None and spool is not None:
            spools.append(spool)
    if shared is not None and not spools:  # a frame without bands: nothing will close it
        shared.close()
    total = sum(b.parts for b in plan)
    if total >= 2**16:  # before a header packs a count into its 16-bit field (the caller closes ``spools``)
        raise TooManyPackets(too_many_packets("sparse", frame.frame_id, total), total, "sparse", frame.frame_id)
    return plan


class TooManyPackets(ValueError):
    """A product that needs more packets than the 16-bit part count holds (a front end may add its own
    option names to the message). ``packets``: how many it needs, ``kind`` and ``frame_id``: which product, where a
    product was planned (None for a refusal of a budget, :func:`edgeae.ground.keep_search.keep_for_bytes`); read
    them, not the message's words."""

    def __init__(
        self, message: str, packets: int | None = None, kind: str | None = None, frame_id: int | None = None
    ) -> None:
        super().__init__(message)
        self.packets, self.kind, self.frame_id = packets, kind, frame_id


def too_many_packets(kind: str, frame_id: int, n: int) -> str:
    """The error for a product that needs more packets than the 16-bit part count holds, with what helps."""
    helps = "raise the packet size limit"
    if kind == "sparse":
        helps += ", keep fewer pixels or code the samples losslessly"
    return f"{kind} product {frame_id} needs {n:,} packets, over the 65,535 a product can have: {helps}"

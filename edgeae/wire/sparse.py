"""Sparse frames -> packet bodies, payload layouts 1 (row rectangles) and 2 (interleaved). Numpy only.

Layout 2 needs only the number of kept pixels per row, never the mask: :func:`plan_sparse` and
:func:`sparse_v2_bodies` take ``row_counts`` and read ``frame.values`` (which may be a memory map of a spool
file) one packet at a time, so the flight runtime streams a frame of any size through them in bounded
memory. Layout 1 regenerates the mask to cut rows into rectangles.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO

import numpy as np

from edgeae.masks import make_mask, make_mask_rows

from . import interleave as il
from .codec import CODECS, encode_samples
from .layout import MAX_PIECE_BYTES, SPARSE, SPARSE_V2, WireConfig, overhead
from .products import PATTERN_CODES, SparseFrame

Body = tuple[int, bytes, bytes]  # codec, kind header, sample bytes


def _frame_fields(frame: SparseFrame) -> tuple:
    return (
        frame.height,
        frame.width,
        frame.channels,
        frame.bit_depth,
        float(frame.keep),
        PATTERN_CODES[frame.pattern],
        int(frame.seed),
        int(frame.prng_version),
    )


def sparse_header(frame: SparseFrame, r0: int, r1: int, c0: int, c1: int, n: int) -> bytes:
    """Layout 1 sparse header of one packet: frame geometry, mask parameters, its rectangle and value count."""
    return SPARSE.pack(*_frame_fields(frame), r0, r1, c0, c1, n)


def sparse_header_v2(frame: SparseFrame, band: BandPlan, index: int, n: int) -> bytes:
    """Layout 2 sparse header of packet ``index`` of ``band``."""
    return SPARSE_V2.pack(
        *_frame_fields(frame), band.row0, band.row1, band.n_band, band.seg, band.parts, index, band.step, n
    )


def row_counts(frame: SparseFrame, strip_rows: int = 256) -> np.ndarray:
    """Kept pixels per row of the frame's mask (int64 (H,)), regenerated a strip at a time."""
    h, w = frame.height, frame.width
    out = np.zeros(h, np.int64)
    buf = np.empty((min(h, strip_rows), w), bool)
    for r0 in range(0, h, strip_rows):
        r1 = min(h, r0 + strip_rows)
        rows = make_mask_rows(frame.seed, (h, w), frame.keep, frame.pattern, r0, r1, out=buf[: r1 - r0])
        out[r0:r1] = rows.sum(axis=1)
    return out


# ------------------------------------------------------------------------------------------ layout 2
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
    offset ``start`` on, so :func:`sparse_v2_bodies` sends them without coding every packet again; memory:
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

    With a codec the count comes from the worst of a few real packets' compression ratios, with a 1 % margin,
    and is then checked on every packet (raised when one does not fit). Not searched further down: each try
    codes every packet once more, for ~1 % fewer packets (NAC-size strip at keep 0.02: 5,526 packets at the
    smallest count that fits, 5,581 with this estimate: +0.07 % bytes, for a third of the products CPU).
    ``spool``: receives the checked packets' coded bytes (left empty when the band is sent raw).
    """
    unit = frame.channels * values.dtype.itemsize
    budget = cfg.max_packet_size - overhead("sparse", 2)
    cap = max(1, min(budget, MAX_PIECE_BYTES) // unit)  # samples per raw packet
    seg = il.segment_length(n_band, row1 - row0, cap)
    t_count = il.segment_count(n_band, seg)
    if t_count == 0:
        return BandPlan(row0, row1, 0, v0, seg, 1, 1)
    per_packet = max(1, cap // seg)
    raw_parts = -(-t_count // per_packet)
    codec = CODECS[cfg.codec]
    if codec == 0 or raw_parts == 1:
        return BandPlan(row0, row1, n_band, v0, seg, raw_parts, il.interleave_step(raw_parts))
    # every packet samples the whole band, so their coded sizes differ little
    band = BandPlan(row0, row1, n_band, v0, seg, raw_parts, il.interleave_step(raw_parts))
    ratio = float("inf")
    for j in np.linspace(0, raw_parts - 1, min(raw_parts, 16)).astype(int):
        idx = il.packet_indices(n_band, seg, raw_parts, band.step, int(j))
        samples = np.asarray(values[v0 + idx])
        ratio = min(ratio, samples.nbytes / max(1, len(encode_samples(samples, codec, frame.bit_depth))))
    floor_parts = max(1, -(-t_count // max(1, MAX_PIECE_BYTES // (seg * unit))))  # a packet: <= ceil(T/P) segments
    parts = max(floor_parts, int(np.ceil(t_count / (per_packet * max(1.0, ratio) * 0.99))))
    for _ in range(8):
        if parts >= raw_parts:
            break
        band = BandPlan(row0, row1, n_band, v0, seg, parts, il.interleave_step(parts))
        worst = _worst(values, band, codec, frame.bit_depth, budget, spool)
        if worst == 0:  # every packet fits
            return band
        parts = max(parts + 1, int(np.ceil(parts * worst / budget * 1.01)))
    if spool is not None:
        spool.reset()
    return BandPlan(row0, row1, n_band, v0, seg, raw_parts, il.interleave_step(raw_parts))


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
    list that receives one :class:`BodySpool` per band (the caller closes them), for :func:`sparse_v2_bodies`."""
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
        raise TooManyPackets(too_many_packets("sparse", frame.frame_id, total))
    return plan


class TooManyPackets(ValueError):
    """A product that needs more packets than the 16-bit part count holds (a front end may add its own
    option names to the message)."""


def too_many_packets(kind: str, frame_id: int, n: int) -> str:
    """The error for a product that needs more packets than the 16-bit part count holds, with what helps."""
    helps = "raise the packet size limit"
    if kind == "sparse":
        helps += ", keep fewer pixels or code the samples losslessly"
    return f"{kind} product {frame_id} needs {n:,} packets, over the 65,535 a product can have: {helps}"


def sparse_v2_bodies(
    frame: SparseFrame, plan: list[BandPlan], cfg: WireConfig, spools: list[BodySpool] | None = None
) -> Iterator[Body]:
    """The packets of a planned layout-2 frame as (codec, kind header, sample bytes), band by band; a band
    whose packets :func:`plan_sparse` coded into ``spools`` is sent from there, the others are coded now."""
    codec = CODECS[cfg.codec]
    budget = cfg.max_packet_size - overhead("sparse", 2)
    for b, band in enumerate(plan):
        spool = spools[b] if spools is not None and b < len(spools) else None
        stored = spool.replay() if spool is not None and len(spool) == band.parts else None
        for j in range(band.parts):
            body = (
                next(stored)
                if stored is not None
                else _packet_body(frame.values, band, j, codec, frame.bit_depth, budget)
            )
            if body is None:  # cannot happen for a plan from plan_sparse with the same config
                raise ValueError(f"frame {frame.frame_id}: packet {j} of band {band.row0} does not fit")
            n = il.packet_samples(band.n_band, band.seg, band.parts, band.step, j)
            yield body[0], sparse_header_v2(frame, band, j, n), body[1]


# ------------------------------------------------------------------------------------------ layout 1
def _fit(encode, n_total: int, unit_bytes: int, budget: int, codec: int, ratio: float, start: int):
    """Largest chunk from ``start`` whose coded bytes fit ``budget``: (count, codec used, bytes).

    ``encode(lo, hi, codec)`` codes units [lo, hi). Raw coding always fits ``budget // unit_bytes`` units;
    a compressed try starts at ``ratio`` times that and shrinks until it fits, else falls back to raw. No
    chunk holds more than :data:`MAX_PIECE_BYTES` of samples.
    """
    raw_cap = max(1, budget // unit_bytes)
    top = max(1, MAX_PIECE_BYTES // unit_bytes)
    remaining = n_total - start
    if codec != 0:
        cap = min(remaining, top, max(1, int(raw_cap * ratio * 0.97)))
        for _ in range(8):
            if cap < min(remaining, raw_cap):
                break  # raw coding carries more units
            data = encode(start, start + cap, codec)
            if len(data) <= budget:
                if cap > min(remaining, raw_cap) or len(data) < cap * unit_bytes:
                    return cap, codec, data
                break  # fits but no better than raw
            cap = max(1, int(cap * budget / len(data) * 0.95))
    cap = min(remaining, raw_cap)
    return cap, 0, encode(start, start + cap, 0)


def ratio(samples: np.ndarray, codec: int, bits: int | None = None) -> float:
    """Raw bytes over coded bytes of ``samples`` (1.0 for codec none or no samples)."""
    if codec == 0 or samples.size == 0:
        return 1.0
    return samples.nbytes / max(1, len(encode_samples(samples, codec, bits)))


def sparse_v1_bodies(frame: SparseFrame, cfg: WireConfig) -> list[Body]:
    """(codec, kind header, sample bytes) per packet of a sparse frame in layout 1 (row rectangles)."""
    h, w, c = frame.height, frame.width, frame.channels
    mask = make_mask(frame.seed, (h, w), frame.keep, frame.pattern)
    if int(mask.sum()) != frame.values.shape[0]:
        n_mask = int(mask.sum())
        raise ValueError(f"frame {frame.frame_id}: values has {frame.values.shape[0]} rows, the mask keeps {n_mask}")
    codec = CODECS[cfg.codec]
    bits = frame.bit_depth if codec == 3 else None
    unit = c * frame.values.dtype.itemsize
    budget = cfg.max_packet_size - overhead("sparse", 1)
    rat = ratio(frame.values, codec, bits)
    cum = np.concatenate([[0], np.cumsum(mask.sum(axis=1), dtype=np.int64)])
    values = frame.values
    out: list[Body] = []

    def enc(a: np.ndarray, cd: int) -> bytes:
        return encode_samples(a, cd, bits if cd == 3 else None)

    r = 0
    while r < h:

        def enc_rows(lo: int, hi: int, cd: int) -> bytes:
            return enc(values[cum[lo] : cum[hi]], cd)

        raw_cap = max(1, budget // unit)
        if cum[r + 1] - cum[r] <= raw_cap:
            # whole rows; raw coding of raw_rows always fits, a compressed try starts with more rows
            raw_rows = int(np.searchsorted(cum, cum[r] + raw_cap, side="right")) - 1 - r
            best = None
            if codec:
                most = min(int(raw_cap * rat * 0.97), MAX_PIECE_BYTES // unit)  # a packet's decoded bytes too
                want = int(np.searchsorted(cum, cum[r] + most, side="right")) - 1 - r
                try_rows = max(raw_rows, want)
                for _ in range(8):
                    data = enc_rows(r, r + try_rows, codec)
                    raw_len = int(cum[r + try_rows] - cum[r]) * unit
                    if len(data) <= budget:
                        if try_rows > raw_rows or len(data) < raw_len:
                            best = (try_rows, codec, data)
                        break
                    if try_rows <= raw_rows:
                        break
                    try_rows = max(raw_rows, int(try_rows * budget / len(data) * 0.95))
            if best is None:
                best = (raw_rows, 0, enc_rows(r, r + raw_rows, 0))
            n_rows, cd, data = best
            out.append((cd, sparse_header(frame, r, r + n_rows, 0, w, int(cum[r + n_rows] - cum[r])), data))
            r += n_rows
            continue
        # one row holds more kept values than a packet: cut it by columns at kept-pixel boundaries
        cols = np.flatnonzero(mask[r])
        row_vals = values[cum[r] : cum[r + 1]]
        k = 0
        while k < len(cols):
            n, cd, data = _fit(
                lambda a, b, cc, rv=row_vals: enc(rv[a:b], cc),
                len(cols),
                unit,
                budget,
                codec,
                rat,
                k,
            )
            c0 = 0 if k == 0 else int(cols[k])
            c1 = w if k + n >= len(cols) else int(cols[k + n])
            out.append((cd, sparse_header(frame, r, r + 1, c0, c1, n), data))
            k += n
        r += 1
    return out


# ------------------------------------------------------------------------------------------ reading
def values_in_mask_order(pieces: list) -> np.ndarray:
    """The samples of a complete sparse frame in mask (raster) order, from its parsed packets (any layout,
    any order): ``SparseFrame.values`` as it was sent. Raises ValueError when a sample is missing."""
    v1 = sorted(
        (p for p in pieces if p.header.get("layout", 1) == 1), key=lambda p: (p.header["row0"], p.header["col0"])
    )
    v2 = [p for p in pieces if p.header.get("layout", 1) == 2]
    parts = [p.samples for p in v1]
    for r0 in sorted({p.header["row0"] for p in v2}):
        band = [p for p in v2 if p.header["row0"] == r0]
        h = band[0].header
        out = np.zeros((h["n_band"], band[0].samples.shape[1]), band[0].samples.dtype)
        seen = np.zeros(h["n_band"], bool)
        for p in band:
            q = p.header
            idx = il.packet_indices(q["n_band"], q["seg"], q["band_parts"], q["step"], q["band_index"])
            out[idx] = p.samples
            seen[idx] = True
        if not seen.all():
            raise ValueError(f"band at row {r0}: {int((~seen).sum())} samples missing")
        parts.append(out)
    return np.concatenate(parts) if parts else np.zeros((0, 1), np.uint8)

"""Sparse frames -> packet bodies, payload layouts 1 (row rectangles) and 2 (interleaved). Numpy only.

Layout 2 needs only the number of kept pixels per row, never the mask: :func:`~.sparse_plan.plan_sparse` and
:func:`sparse_v2_bodies` take ``row_counts`` and read ``frame.values`` (which may be a memory map of a spool
file) one packet at a time, so the flight runtime streams a frame of any size through them in bounded
memory. Layout 1 regenerates the mask to cut rows into rectangles. How many packets each layout-2 band needs
(the band plan, its spooled bodies, the packet-count limit) is in :mod:`.sparse_plan`.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from edgeae.masks import make_mask, make_mask_rows

from . import interleave as il
from .codec import CODECS, encode_samples
from .layout import MAX_PIECE_BYTES, SPARSE, SPARSE_V2, WireConfig, overhead
from .products import PATTERN_CODES, SparseFrame
from .sparse_plan import BandPlan as BandPlan
from .sparse_plan import BodySpool as BodySpool
from .sparse_plan import TooManyPackets as TooManyPackets
from .sparse_plan import _packet_body
from .sparse_plan import plan_sparse as plan_sparse
from .sparse_plan import raw_packet_estimate as raw_packet_estimate
from .sparse_plan import too_many_packets as too_many_packets

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

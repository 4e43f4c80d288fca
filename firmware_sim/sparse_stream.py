"""Sparse-frame packets for frames too large to hold a whole mask: the same bytes, bounded memory.

``wire.packets.packetise(SparseFrame)`` regenerates the frame's mask to count kept pixels per row; the
flight runtime already has those counts (gathered strip by strip while the frame streamed) and the sample
values spooled to a file. This module produces the identical packets (tested byte for byte against
``packetise``) from the counts and the spool, read one packet at a time through a memory map.

Payload layout 2 (the default) interleaves each packet's samples over the whole frame (``band_rows = 0``)
or over bands of rows. Whole-frame interleaving costs no memory beyond one packet: a packet's samples are
short runs gathered from across the spool file (for a NAC-size frame at keep 0.02, ~5,500 packets of ~60
runs each, read from a 5 MB spool the page cache holds). With a sample codec the planner codes every
packet of a band to check that an estimated packet count fits (one pass, more if not) and keeps the coded
bytes of the count that fits in a temporary file (``edgeae.wire.sparse.BodySpool``: disk, not memory), from
which they are sent. Band interleaving (``band_rows`` = the strip height) is for a flight computer
that must send packets before the frame ends or cannot read its spool at random; it needs the band's
samples only (a 256-row NAC band at keep 0.02: 26 KB).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from edgeae.masks import make_mask_rows
from edgeae.wire.packets import (
    APIDS,
    COMMON,
    BodySpool,
    SequenceCounters,
    WireConfig,
    build_packet,
    overhead,
    plan_sparse,
    sparse_header,
    sparse_v2_bodies,
)
from edgeae.wire.products import SparseFrame
from edgeae.wire.sparse import TooManyPackets, too_many_packets

Piece = tuple[int, int, int, int, int, int]  # row0, row1, col0, col1, n values, first value index


def plan_pieces(frame: SparseFrame, row_counts: np.ndarray, max_packet_size: int) -> list[Piece]:
    """Layout 1: row rectangles per packet, as ``wire.sparse.sparse_v1_bodies`` cuts them with codec ``none``."""
    h, w, c = frame.height, frame.width, frame.channels
    unit = c * frame.values.dtype.itemsize
    raw_cap = max(1, (max_packet_size - overhead("sparse", 1)) // unit)
    cum = np.concatenate([[0], np.cumsum(row_counts, dtype=np.int64)])
    out: list[Piece] = []
    r = 0
    while r < h:
        if cum[r + 1] - cum[r] <= raw_cap:
            n_rows = int(np.searchsorted(cum, cum[r] + raw_cap, side="right")) - 1 - r
            out.append((r, r + n_rows, 0, w, int(cum[r + n_rows] - cum[r]), int(cum[r])))
            r += n_rows
            continue
        row = make_mask_rows(frame.seed, (h, w), frame.keep, frame.pattern, r, r + 1)[0]
        cols = np.flatnonzero(row)
        k = 0
        while k < len(cols):
            n = min(raw_cap, len(cols) - k)
            c0 = 0 if k == 0 else int(cols[k])
            c1 = w if k + n >= len(cols) else int(cols[k + n])
            out.append((r, r + 1, c0, c1, n, int(cum[r]) + k))
            k += n
        r += 1
    return out


def sparse_packets(
    frame: SparseFrame,
    row_counts: np.ndarray,
    config: WireConfig | int,
    counters: SequenceCounters | None = None,
) -> Iterator[bytes]:
    """Yield the packets of ``frame`` (values may be a memory map) given its kept-pixel count per row.

    ``config``: the wire configuration (an int is a packet size with the default layout and codec none).
    Layout 1 is sent with codec ``none`` only (its rectangles need the mask to cut rows)."""
    cfg = config if isinstance(config, WireConfig) else WireConfig(int(config))
    if int(row_counts.sum()) != frame.values.shape[0]:
        raise ValueError(f"frame {frame.frame_id}: {frame.values.shape[0]} values but rows count {row_counts.sum()}")
    seq = counters if counters is not None else SequenceCounters()
    apid = APIDS["sparse"]
    if cfg.layout == 2:
        spools: list[BodySpool] = []  # the planner's coded packets, on disk: sent without coding them again
        try:
            plan = plan_sparse(frame, np.asarray(row_counts, np.int64), cfg, spools)
            total = sum(b.parts for b in plan)  # plan_sparse refuses a frame over 65,535 (TooManyPackets)
            for i, (cd, head, data) in enumerate(sparse_v2_bodies(frame, plan, cfg, spools)):
                yield build_packet(apid, seq.take(apid), COMMON.pack(2, cd, frame.frame_id, i, total) + head + data)
        finally:
            for sp in spools:
                sp.close()
        return
    if cfg.codec != "none":
        raise ValueError("layout 1 sparse packets stream with codec 'none' only")
    pieces = plan_pieces(frame, row_counts, cfg.max_packet_size)
    if len(pieces) >= 2**16:
        raise TooManyPackets(
            too_many_packets("sparse", frame.frame_id, len(pieces)), len(pieces), "sparse", frame.frame_id
        )
    be = frame.values.dtype.newbyteorder(">")
    for i, (r0, r1, c0, c1, n, v0) in enumerate(pieces):
        head = sparse_header(frame, r0, r1, c0, c1, n)
        data = np.ascontiguousarray(frame.values[v0 : v0 + n]).astype(be, copy=False).tobytes()
        body = COMMON.pack(1, 0, frame.frame_id, i, len(pieces)) + head + data
        yield build_packet(apid, seq.take(apid), body)

"""Sparse-frame packets for frames too large to hold a whole mask: the same bytes, bounded memory.

``wire.packets.packetise(SparseFrame)`` builds the full (H, W) mask to count kept pixels per row; for a
52,224 × 5,064 line-scan frame that is 264 MB. This module produces the identical packets (codec ``none``,
tested byte for byte against ``packetise``) from per-row counts gathered strip by strip while the frame
streams, the sample values spooled to a file, and one mask row regenerated only when a row holds more kept
pixels than a packet carries.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from edgeae.masks import make_mask_rows

from edgeae.wire.packets import APIDS, COMMON, LAYOUT_VERSION, SequenceCounters, build_packet, overhead, sparse_header
from edgeae.wire.products import SparseFrame

Piece = tuple[int, int, int, int, int, int]  # row0, row1, col0, col1, n values, first value index


def plan_pieces(frame: SparseFrame, row_counts: np.ndarray, max_packet_size: int) -> list[Piece]:
    """Row rectangles per packet, as ``packets._sparse_bodies`` cuts them with codec ``none``."""
    h, w, c = frame.height, frame.width, frame.channels
    unit = c * frame.values.dtype.itemsize
    raw_cap = max(1, (max_packet_size - overhead("sparse")) // unit)
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
    frame: SparseFrame, row_counts: np.ndarray, max_packet_size: int, counters: SequenceCounters | None = None
) -> Iterator[bytes]:
    """Yield the packets of ``frame`` (values may be a memory map) given its kept-pixel count per row."""
    if int(row_counts.sum()) != frame.values.shape[0]:
        raise ValueError(f"frame {frame.frame_id}: {frame.values.shape[0]} values but rows count {row_counts.sum()}")
    pieces = plan_pieces(frame, row_counts, max_packet_size)
    if len(pieces) >= 2**16:
        raise ValueError(f"sparse frame {frame.frame_id} needs {len(pieces)} packets (max 65535)")
    seq = counters if counters is not None else SequenceCounters()
    apid = APIDS["sparse"]
    be = frame.values.dtype.newbyteorder(">")
    for i, (r0, r1, c0, c1, n, v0) in enumerate(pieces):
        head = sparse_header(frame, r0, r1, c0, c1, n)
        data = np.ascontiguousarray(frame.values[v0 : v0 + n]).astype(be, copy=False).tobytes()
        body = COMMON.pack(LAYOUT_VERSION, 0, frame.frame_id, i, len(pieces)) + head + data
        yield build_packet(apid, seq.take(apid), body)

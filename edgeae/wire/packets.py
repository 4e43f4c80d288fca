"""Products <-> CCSDS space packets (CCSDS 133.0-B-2), layout version 1. Spec: ``docs/wire-format.md``.

Every packet is a telemetry space packet with no secondary header, sequence flags 'unsegmented' (each
packet decodes on its own), one APID per product kind and a 14-bit sequence count per APID. The packet data
field is ``common header | kind header | sample bytes | CRC-16``; all integers are big-endian. The CRC is
CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, the ECSS PUS packet error control) over every byte of the
packet before it, primary header included.

A sparse frame is cut into rectangles of rows (whole rows, or column ranges of one row when a row is too
long for a packet); the ground regenerates the mask of exactly that rectangle from the seed, so a lost
packet removes only its own pixels. Latents, patch pixels and telemetry bytes are cut into flat ranges.
"""

from __future__ import annotations

import binascii
import struct
from dataclasses import dataclass

import numpy as np
from spacepackets.ccsds.spacepacket import PacketType, SequenceFlags, SpacePacket, SpacePacketHeader

from edgeae.masks import make_mask

from .codec import CODECS, encode_samples
from .products import (
    LATENT_CODES,
    PATTERN_CODES,
    AnomalyPatch,
    LatentFrame,
    Product,
    SparseFrame,
    TelemetryRecord,
)

LAYOUT_VERSION = 1
APIDS: dict[str, int] = {"sparse": 0x100, "latent": 0x101, "patch": 0x102, "telemetry": 0x103}
"""Product kind -> APID (11 bits). 0x7FF is the CCSDS idle APID, which the ground skips."""
IDLE_APID = 0x7FF
SEQ_MODULO = 1 << 14
PRIMARY_HEADER = 6
CRC_LEN = 2
MAX_PACKET = 65542  # CCSDS: 6-byte header + at most 65536 data bytes

COMMON = struct.Struct(">BBIHH")  # layout version, codec, frame id, part index, part count
SPARSE = struct.Struct(">IIBBdBQBIIIII")  # h, w, C, bits, keep, pattern, seed, prng, row0, row1, col0, col1, n
LATENT = struct.Struct(">16sIIBHHHHBdHHHII")  # id, h, w, C, tile, stride, rows, cols, dtype, scale, lc, lh, lw, e0, n
PATCH = struct.Struct(">IIHBBHdII")  # x, y, size, C, bits, index, score, e0, n
TELEMETRY = struct.Struct(">III")  # total length, offset, n
KIND_HEADER = {"sparse": SPARSE, "latent": LATENT, "patch": PATCH, "telemetry": TELEMETRY}


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, not reflected, no final xor); check 0x29B1."""
    return binascii.crc_hqx(data, 0xFFFF)


def sparse_header(frame: SparseFrame, r0: int, r1: int, c0: int, c1: int, n: int) -> bytes:
    """The sparse-pixel header of one packet: frame geometry, mask parameters, its rectangle and value count."""
    return SPARSE.pack(
        frame.height,
        frame.width,
        frame.channels,
        frame.bit_depth,
        float(frame.keep),
        PATTERN_CODES[frame.pattern],
        int(frame.seed),
        int(frame.prng_version),
        r0,
        r1,
        c0,
        c1,
        n,
    )


def overhead(kind: str) -> int:
    """Bytes per packet that are not samples: primary header, common header, kind header, CRC."""
    return PRIMARY_HEADER + COMMON.size + KIND_HEADER[kind].size + CRC_LEN


@dataclass(frozen=True)
class WireConfig:
    """How products are cut into packets: the packet size limit (bytes, header and CRC included) and codec."""

    max_packet_size: int = 1024
    codec: str = "none"

    def __post_init__(self) -> None:
        if not 128 <= self.max_packet_size <= MAX_PACKET:
            raise ValueError(f"max_packet_size must be in 128..{MAX_PACKET}, got {self.max_packet_size}")
        if self.codec not in CODECS:
            raise ValueError(f"codec must be one of {tuple(CODECS)}, got {self.codec!r}")


class SequenceCounters:
    """The 14-bit source sequence count of each APID, wrapping 16383 -> 0. Mutable; one per sender."""

    def __init__(self, start: dict[int, int] | None = None) -> None:
        self._next: dict[int, int] = {a: s % SEQ_MODULO for a, s in (start or {}).items()}

    def take(self, apid: int) -> int:
        """The count for the next packet of ``apid`` (then advance)."""
        n = self._next.get(apid, 0)
        self._next[apid] = (n + 1) % SEQ_MODULO
        return n


def build_packet(apid: int, seq_count: int, body: bytes) -> bytes:
    """A space packet around ``body`` (the data field without CRC), with the CRC appended."""
    header = SpacePacketHeader(
        packet_type=PacketType.TM,
        apid=apid,
        seq_count=seq_count % SEQ_MODULO,
        data_len=len(body) + CRC_LEN - 1,
        sec_header_flag=False,
        seq_flags=SequenceFlags.UNSEGMENTED,
    )
    packet = bytes(SpacePacket(header, None, body).pack())
    return packet + struct.pack(">H", crc16(packet))


# ------------------------------------------------------------------------------------------- planning
def _fit(encode, n_total: int, unit_bytes: int, budget: int, codec: int, ratio: float, start: int):
    """Largest chunk from ``start`` whose coded bytes fit ``budget``: (count, codec used, bytes).

    ``encode(lo, hi, codec)`` codes units [lo, hi). Raw coding always fits ``budget // unit_bytes`` units;
    a compressed try starts at ``ratio`` times that and shrinks until it fits, else falls back to raw.
    """
    raw_cap = max(1, budget // unit_bytes)
    remaining = n_total - start
    if codec != 0:
        cap = min(remaining, max(1, int(raw_cap * ratio * 0.97)))
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


def _ratio(samples: np.ndarray, codec: int) -> float:
    if codec == 0 or samples.size == 0:
        return 1.0
    return samples.nbytes / max(1, len(encode_samples(samples, codec)))


def _sparse_bodies(frame: SparseFrame, cfg: WireConfig) -> list[tuple[int, bytes, bytes]]:
    """(codec, kind header, sample bytes) per packet of a sparse frame."""
    h, w, c = frame.height, frame.width, frame.channels
    mask = make_mask(frame.seed, (h, w), frame.keep, frame.pattern)
    if int(mask.sum()) != frame.values.shape[0]:
        n_mask = int(mask.sum())
        raise ValueError(f"frame {frame.frame_id}: values has {frame.values.shape[0]} rows, the mask keeps {n_mask}")
    codec = CODECS[cfg.codec]
    unit = c * frame.values.dtype.itemsize
    budget = cfg.max_packet_size - overhead("sparse")
    ratio = _ratio(frame.values, codec)
    cum = np.concatenate([[0], np.cumsum(mask.sum(axis=1), dtype=np.int64)])
    values = frame.values
    out: list[tuple[int, bytes, bytes]] = []

    def head(r0: int, r1: int, c0: int, c1: int, n: int) -> bytes:
        return sparse_header(frame, r0, r1, c0, c1, n)

    r = 0
    while r < h:
        # whole rows: units are rows, coded bytes are their kept values
        def enc_rows(lo: int, hi: int, cd: int) -> bytes:
            return encode_samples(values[cum[lo] : cum[hi]], cd)

        raw_cap = max(1, budget // unit)
        if cum[r + 1] - cum[r] <= raw_cap:
            # whole rows; raw coding of raw_rows always fits, a compressed try starts with more rows
            raw_rows = int(np.searchsorted(cum, cum[r] + raw_cap, side="right")) - 1 - r
            best = None
            if codec:
                want = int(np.searchsorted(cum, cum[r] + int(raw_cap * ratio * 0.97), side="right")) - 1 - r
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
            out.append((cd, head(r, r + n_rows, 0, w, int(cum[r + n_rows] - cum[r])), data))
            r += n_rows
            continue
        # one row holds more kept values than a packet: cut it by columns at kept-pixel boundaries
        cols = np.flatnonzero(mask[r])
        row_vals = values[cum[r] : cum[r + 1]]
        k = 0
        while k < len(cols):
            n, cd, data = _fit(
                lambda a, b, cc, rv=row_vals: encode_samples(rv[a:b], cc),
                len(cols),
                unit,
                budget,
                codec,
                ratio,
                k,
            )
            c0 = 0 if k == 0 else int(cols[k])
            c1 = w if k + n >= len(cols) else int(cols[k + n])
            out.append((cd, head(r, r + 1, c0, c1, n), data))
            k += n
        r += 1
    return out


def _flat_bodies(flat: np.ndarray, kind_head, kind: str, cfg: WireConfig, codec: int):
    """(codec, kind header, sample bytes) per packet for a flat sample array cut into ranges."""
    budget = cfg.max_packet_size - overhead(kind)
    ratio = _ratio(flat, codec)
    out = []
    k = 0
    while True:
        n, cd, data = _fit(
            lambda a, b, cc: encode_samples(flat[a:b], cc), flat.size, flat.itemsize, budget, codec, ratio, k
        )
        n = min(n, flat.size - k)
        out.append((cd, kind_head(k, n), data))
        k += n
        if k >= flat.size:
            return out


def packet_bodies(product: Product, cfg: WireConfig) -> tuple[str, list[tuple[int, bytes, bytes]]]:
    """The kind of ``product`` and its packets as (codec, kind header, sample bytes), in order."""
    codec = CODECS[cfg.codec]
    if isinstance(product, SparseFrame):
        return "sparse", _sparse_bodies(product, cfg)
    if isinstance(product, LatentFrame):
        p = product
        _, lc, lh, lw = p.latents.shape
        flat = p.latents.reshape(-1)
        cd = 2 if codec else 0  # latents are not smooth: plain deflate

        def lat_head(e0: int, n: int) -> bytes:
            return LATENT.pack(
                p.encoder_id.encode("ascii"),
                p.height,
                p.width,
                p.channels,
                p.tile,
                p.stride,
                p.grid_rows,
                p.grid_cols,
                LATENT_CODES[p.dtype],
                float(p.scale),
                lc,
                lh,
                lw,
                e0,
                n,
            )

        return "latent", _flat_bodies(flat, lat_head, "latent", cfg, cd)
    if isinstance(product, AnomalyPatch):
        a = product

        def patch_head(e0: int, n: int) -> bytes:
            return PATCH.pack(a.x, a.y, a.size, a.channels, a.bit_depth, a.index, float(a.score), e0, n)

        flat = np.ascontiguousarray(a.pixels).reshape(-1)
        return "patch", _flat_bodies(flat, patch_head, "patch", cfg, 2 if codec else 0)
    if isinstance(product, TelemetryRecord):
        t = product
        flat = np.frombuffer(bytes(t.payload), dtype=np.uint8)

        def tm_head(e0: int, n: int) -> bytes:
            return TELEMETRY.pack(len(t.payload), e0, n)

        return "telemetry", _flat_bodies(flat, tm_head, "telemetry", cfg, 2 if codec else 0)
    raise TypeError(f"not a downlink product: {type(product).__name__}")


def packetise(
    product: Product, *, config: WireConfig | None = None, counters: SequenceCounters | None = None
) -> list[bytes]:
    """CCSDS space packets carrying ``product``, each at most ``config.max_packet_size`` bytes.

    Pass one :class:`SequenceCounters` for a whole downlink session so the counts run on across products.
    """
    cfg = config or WireConfig()
    seq = counters if counters is not None else SequenceCounters()
    kind, bodies = packet_bodies(product, cfg)
    if len(bodies) >= 2**16:
        raise ValueError(f"{kind} product {product.frame_id} needs {len(bodies)} packets (max 65535)")
    apid = APIDS[kind]
    packets = []
    for i, (cd, kh, data) in enumerate(bodies):
        body = COMMON.pack(LAYOUT_VERSION, cd, product.frame_id, i, len(bodies)) + kh + data
        packets.append(build_packet(apid, seq.take(apid), body))
    return packets

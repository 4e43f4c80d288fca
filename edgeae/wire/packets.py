"""Products <-> CCSDS space packets (CCSDS 133.0-B-2), payload layouts 1 and 2. Spec: ``docs/wire-format.md``.

Every packet is a telemetry space packet with no secondary header, sequence flags 'unsegmented' (each
packet decodes on its own), one APID per product kind and a 14-bit sequence count per APID. The packet data
field is ``common header | kind header | sample bytes | CRC-16``; all integers are big-endian. The CRC is
CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, the ECSS PUS packet error control) over every byte of the
packet before it, primary header included.

A sparse frame in layout 2 (the default) is cut into interleaved packets (:mod:`.interleave`): each packet
carries short runs of kept pixels from the whole frame (or from one band of rows), so a lost packet leaves
scattered gaps, never a band of rows. In layout 1 each packet carried a rectangle of rows
(:mod:`.sparse`). Latents, patch pixels and telemetry bytes are cut into flat ranges.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Sequence

import numpy as np
from spacepackets.ccsds.spacepacket import PacketType, SequenceFlags, SpacePacket, SpacePacketHeader

from .codec import CODECS, encode_samples
from .layout import (  # noqa: F401  (re-exported: the names every caller imports from here)
    APIDS,
    COMMON,
    CRC_LEN,
    IDLE_APID,
    KIND_HEADER,
    LATENT,
    LAYOUT_VERSION,
    LAYOUTS,
    MAX_PACKET,
    MAX_PIECE_BYTES,
    PATCH,
    PRIMARY_HEADER,
    SEQ_MODULO,
    SPARSE,
    SPARSE_V2,
    TELEMETRY,
    WireConfig,
    crc16,
    kind_header,
    overhead,
)
from .products import (
    LATENT_CODES,
    AnomalyPatch,
    LatentFrame,
    Product,
    SparseFrame,
    TelemetryRecord,
)
from .sparse import (  # noqa: F401
    Body,
    BodySpool,
    TooManyPackets,
    _fit,
    plan_sparse,
    ratio,
    row_counts,
    sparse_header,
    sparse_header_v2,
    sparse_v1_bodies,
    sparse_v2_bodies,
    too_many_packets,
)

log = logging.getLogger(__name__)


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


# ------------------------------------------------------------------------------------------- bodies
def _flat_bodies(
    flat: np.ndarray, kind_head, kind: str, cfg: WireConfig, codec: int, group: int = 1, bits: int | None = None
) -> list[Body]:
    """(codec, kind header, sample bytes) per packet for a flat sample array cut into ranges.

    Ranges start and end on multiples of ``group`` elements (a pixel's channels), and a range is coded as
    (n / group, group) samples: the ccsds121 codec then codes each channel as a plane."""
    units = flat.reshape(-1, group)
    budget = cfg.max_packet_size - overhead(kind, cfg.layout)
    rat = ratio(units, codec, bits)
    out: list[Body] = []
    k = 0
    while True:
        n, cd, data = _fit(
            lambda a, b, cc: encode_samples(units[a:b], cc, bits if cc == 3 else None),
            len(units),
            units.itemsize * group,
            budget,
            codec,
            rat,
            k,
        )
        n = min(n, len(units) - k)
        out.append((cd, kind_head(k * group, n * group), data))
        k += n
        if k >= len(units):
            return out


def packet_bodies(product: Product, cfg: WireConfig) -> tuple[str, list[Body]]:
    """The kind of ``product`` and its packets as (codec, kind header, sample bytes), in order."""
    codec = CODECS[cfg.codec]
    if isinstance(product, SparseFrame):
        if not product.values.size:  # legal (one packet, n = 0), but rarely what the caller meant
            log.warning(
                "sparse frame %d: keep %r keeps 0 of %s pixels: sent with no samples",
                product.frame_id,
                product.keep,
                f"{product.height * product.width:,}",
            )
        if cfg.layout == 1:
            return "sparse", sparse_v1_bodies(product, cfg)
        spools: list[BodySpool] = []  # the planner's coded packets, sent without coding them again
        try:
            plan = plan_sparse(product, row_counts(product), cfg, spools)
            return "sparse", list(sparse_v2_bodies(product, plan, cfg, spools))
        finally:
            for sp in spools:
                sp.close()
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
        if codec == 3:  # image samples: CCSDS 121, one plane per channel
            return "patch", _flat_bodies(flat, patch_head, "patch", cfg, 3, a.channels, a.bit_depth)
        return "patch", _flat_bodies(flat, patch_head, "patch", cfg, 2 if codec else 0)
    if isinstance(product, TelemetryRecord):
        t = product
        flat = np.frombuffer(bytes(t.payload), dtype=np.uint8)

        def tm_head(e0: int, n: int) -> bytes:
            return TELEMETRY.pack(len(t.payload), e0, n)

        return "telemetry", _flat_bodies(flat, tm_head, "telemetry", cfg, 2 if codec else 0)
    raise TypeError(f"not a downlink product: {type(product).__name__}")


def packetise(
    product: Product,
    *,
    config: WireConfig | None = None,
    counters: SequenceCounters | None = None,
    parts: Sequence[int] | None = None,
) -> list[bytes]:
    """CCSDS space packets carrying ``product``, each at most ``config.max_packet_size`` bytes.

    Pass one :class:`SequenceCounters` for a whole downlink session so the counts run on across products.
    ``parts`` (e.g. ``[0]``): only these pieces, in this order, each under a new sequence count: a resend, which
    the ground keeps only when the first copy of that piece was lost (docs/wire-format.md, intake).
    """
    cfg = config or WireConfig()
    seq = counters if counters is not None else SequenceCounters()
    kind, bodies = packet_bodies(product, cfg)
    if len(bodies) >= 2**16:
        raise TooManyPackets(too_many_packets(kind, product.frame_id, len(bodies)), len(bodies), kind, product.frame_id)
    wanted = range(len(bodies)) if parts is None else [int(i) for i in parts]
    bad = [i for i in wanted if not 0 <= i < len(bodies)]
    if bad:
        raise ValueError(f"{kind} product {product.frame_id} has parts 0-{len(bodies) - 1}; asked for {bad}")
    apid = APIDS[kind]
    packets = []
    for i in wanted:
        cd, kh, data = bodies[i]
        body = COMMON.pack(cfg.layout, cd, product.frame_id, i, len(bodies)) + kh + data
        packets.append(build_packet(apid, seq.take(apid), body))
    return packets

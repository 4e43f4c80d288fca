"""Constants and header layouts of the wire format (spec: ``docs/wire-format.md``), and how products are cut.

Payload layout 2 (the default) changes only the sparse-frame kind header and the way a sparse frame is
cut into packets (interleaved, :mod:`.interleave`); latent, patch and telemetry packets are laid out as in
layout 1, with the version byte 2. The ground reads both layouts.
"""

from __future__ import annotations

import binascii
import numbers
import struct
from dataclasses import dataclass

from .codec import CODECS

LAYOUT_VERSION = 2
"""The payload layout a sender writes by default."""
LAYOUTS = (1, 2)
"""Payload layouts the ground reads."""
APIDS: dict[str, int] = {"sparse": 0x100, "latent": 0x101, "patch": 0x102, "telemetry": 0x103}
"""Product kind -> APID (11 bits). 0x7FF is the CCSDS idle APID, which the ground skips."""
IDLE_APID = 0x7FF
SEQ_MODULO = 1 << 14
PRIMARY_HEADER = 6
CRC_LEN = 2
MAX_PACKET = 65542  # CCSDS: 6-byte header + at most 65536 data bytes
MAX_PIECE_BYTES = 1 << 22
"""Most decoded sample bytes one packet may announce (4 MiB, 64× the largest packet): senders never exceed
it, and the ground refuses a header that claims more before allocating anything."""

COMMON = struct.Struct(">BBIHH")  # layout version, codec, frame id, part index, part count
SPARSE = struct.Struct(">IIBBdBQBIIIII")  # v1: h, w, C, bits, keep, pattern, seed, prng, row0, row1, col0, col1, n
SPARSE_V2 = struct.Struct(">IIBBdBQBIIIHHHHI")  # v2: ... prng, row0, row1, n_band, seg, parts, index, step, n
LATENT = struct.Struct(">16sIIBHHHHBdHHHII")  # id, h, w, C, tile, stride, rows, cols, dtype, scale, lc, lh, lw, e0, n
PATCH = struct.Struct(">IIHBBHdII")  # x, y, size, C, bits, index, score, e0, n
TELEMETRY = struct.Struct(">III")  # total length, offset, n
KIND_HEADER = {"sparse": SPARSE, "latent": LATENT, "patch": PATCH, "telemetry": TELEMETRY}
"""Kind headers of layout 1 (layout 2 differs for ``sparse`` only: :func:`kind_header`)."""


def kind_header(kind: str, layout: int = LAYOUT_VERSION) -> struct.Struct:
    """The kind header struct of ``kind`` in payload ``layout``."""
    return SPARSE_V2 if kind == "sparse" and layout == 2 else KIND_HEADER[kind]


def overhead(kind: str, layout: int = LAYOUT_VERSION) -> int:
    """Bytes per packet that are not samples: primary header, common header, kind header, CRC."""
    return PRIMARY_HEADER + COMMON.size + kind_header(kind, layout).size + CRC_LEN


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, not reflected, no final xor); check 0x29B1."""
    return binascii.crc_hqx(data, 0xFFFF)


@dataclass(frozen=True)
class WireConfig:
    """How products are cut into packets.

    ``max_packet_size``: bytes per packet, header and CRC included. ``codec``: the lossless sample codec
    (:data:`edgeae.wire.codec.CODECS`; latents and telemetry use ``deflate`` whenever it is not ``none``).
    ``layout``: payload layout 2 (interleaved sparse packets) or 1 (sparse packets as row rectangles).
    ``band_rows`` (layout 2): interleave the sparse samples within bands of this many rows, 0 = the whole
    frame as one band (a lost packet then leaves gaps spread over the whole frame).
    """

    max_packet_size: int = 1024
    codec: str = "none"
    layout: int = LAYOUT_VERSION
    band_rows: int = 0

    def __post_init__(self) -> None:
        for name in ("max_packet_size", "layout", "band_rows"):  # 1000.7 or True would fail deep in packetise
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise ValueError(f"WireConfig.{name} must be a whole number (int), got {v!r}")
            object.__setattr__(self, name, int(v))  # a numpy integer becomes a plain int
        if not 128 <= self.max_packet_size <= MAX_PACKET:
            raise ValueError(f"max_packet_size must be in 128..{MAX_PACKET}, got {self.max_packet_size}")
        if not isinstance(self.codec, str) or self.codec not in CODECS:
            raise ValueError(f"codec must be one of {tuple(CODECS)}, got {self.codec!r}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout}")
        if self.band_rows < 0:
            raise ValueError(f"band_rows must be >= 0 (0 = whole frame), got {self.band_rows}")

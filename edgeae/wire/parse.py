"""Parse one space packet (payload layout 1 or 2) into a validated piece of a product (ground side, numpy only).

Every check that can fail raises :class:`WireError` with a short ``reason`` code, so a receiver can count
malformed packets by cause and carry on. Nothing here trusts a length or a count before checking it: every
announced sample count is checked against the header geometry and :data:`MAX_PIECE_BYTES` before anything
is allocated.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np
from spacepackets.ccsds.spacepacket import PacketType, SequenceFlags, SpacePacketHeader

from edgeae.masks import PRNG_VERSION

from . import interleave as il
from .codec import CODECS, CodecError, decode_delta_pixels, decode_samples
from .layout import (
    APIDS,
    COMMON,
    CRC_LEN,
    IDLE_APID,
    LAYOUTS,
    MAX_PIECE_BYTES,
    PRIMARY_HEADER,
    crc16,
    kind_header,
)
from .products import LATENT_CODES, LATENT_SCALE_RANGE, PATTERN_CODES, sample_dtype

KIND_OF_APID = {v: k for k, v in APIDS.items()}
PATTERN_OF_CODE = {v: k for k, v in PATTERN_CODES.items()}
LATENT_OF_CODE = {v: k for k, v in LATENT_CODES.items()}
_F32_SCALE = LATENT_SCALE_RANGE  # the scales the ground accepts, the ones a sender may build
REASONS = ("short", "length", "crc", "apid", "idle", "type", "version", "codec", "header", "prng", "samples")
"""Reason codes of :class:`WireError`, the keys of a receiver's malformed-packet counts."""


class WireError(ValueError):
    """A packet that cannot be used; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


@dataclass(frozen=True, eq=False)
class Packet:
    """A parsed, CRC-checked packet: its primary-header fields and the product piece it carries.

    ``header`` holds the kind header fields by name (see ``docs/wire-format.md``); ``samples`` the decoded
    samples of this piece ((n, C) for sparse, flat otherwise; telemetry as uint8).
    """

    apid: int
    kind: str
    seq_count: int
    frame_id: int
    part: int
    parts: int
    codec: int
    header: dict
    samples: np.ndarray
    size: int


def peek_header(data: bytes) -> tuple[int, int] | None:
    """(apid, seq_count) from the primary header, without any check; None when shorter than 6 bytes."""
    if len(data) < PRIMARY_HEADER:
        return None
    return ((data[0] & 0x07) << 8) | data[1], ((data[2] << 8) | data[3]) & 0x3FFF


def is_idle(data: bytes) -> bool:
    """Whether ``data`` is a whole CCSDS idle packet: version 0, APID 0x7FF and a length field that gives
    ``len(data)``. Its CRC is not checked: idle packets are fill, and other senders' carry none."""
    return (
        len(data) > PRIMARY_HEADER
        and (data[0] & 0xE0) == 0
        and ((data[0] & 0x07) << 8 | data[1]) == IDLE_APID
        and (data[4] << 8 | data[5]) + PRIMARY_HEADER + 1 == len(data)
    )


def _fail(reason: str, message: str) -> WireError:
    return WireError(reason, message)


def check_primary(data: bytes) -> SpacePacketHeader:
    """The checks every packet of this wire format passes first, on its primary header and CRC (long enough, the
    length field, the CRC, a wire APID, an unsegmented version-0 telemetry header without secondary header): its
    header, or :class:`WireError`. Cheap: :mod:`edgeae.ground.udp_receiver` runs it on datagrams it drops."""
    if len(data) < PRIMARY_HEADER + COMMON.size + CRC_LEN:
        raise _fail("short", f"{len(data)} bytes is shorter than the smallest packet")
    head = SpacePacketHeader.unpack(data[:PRIMARY_HEADER])
    if head.packet_len != len(data):
        raise _fail("length", f"length field says {head.packet_len} bytes, got {len(data)}")
    (crc,) = struct.unpack(">H", data[-CRC_LEN:])
    if crc16(data[:-CRC_LEN]) != crc:
        raise _fail("crc", f"CRC mismatch (apid {head.apid}, seq {head.seq_count})")
    if head.apid not in KIND_OF_APID:
        raise _fail("apid", f"unknown APID {head.apid:#x}")
    if head.ccsds_version != 0 or head.packet_type != PacketType.TM or head.sec_header_flag:
        raise _fail("type", "not a version-0 telemetry packet without secondary header")
    if head.seq_flags != SequenceFlags.UNSEGMENTED:  # this wire format never segments: each packet stands alone
        flags = f"{int(head.seq_flags):02b}"
        raise _fail(
            "type", f"sequence flags 0b{flags}, not 0b11 'unsegmented' (apid {head.apid}, seq {head.seq_count})"
        )
    return head


def parse_packet(data: bytes) -> Packet:
    """Check and decode one whole space packet; raises :class:`WireError` on anything malformed."""
    data = bytes(data)
    if is_idle(data):  # CCSDS fill: not ours, carries no CRC of ours
        raise _fail("idle", f"idle packet (APID {IDLE_APID:#x}, {len(data)} bytes)")
    head = check_primary(data)
    kind = KIND_OF_APID[head.apid]
    version, codec, frame_id, part, parts = COMMON.unpack_from(data, PRIMARY_HEADER)
    if version not in LAYOUTS:
        raise _fail("version", f"payload layout version {version} (this ground reads {LAYOUTS})")
    if codec not in CODECS.values():
        raise _fail("codec", f"unknown codec {codec}")
    if parts < 1 or part >= parts:
        raise _fail("header", f"part {part} of {parts}")
    kh = kind_header(kind, version)
    start = PRIMARY_HEADER + COMMON.size
    if len(data) < start + kh.size + CRC_LEN:
        raise _fail("header", f"{kind} packet too short for its header (the CRC matched: a sender error, not damage)")
    fields = kh.unpack_from(data, start)
    payload = data[start + kh.size : -CRC_LEN]
    header, dtype, shape = _check_kind(kind, fields, codec, version)
    most = _most_parts(kind, header)
    if parts > most:  # a forged count would otherwise charge its product with up to 65,534 lost packets
        raise _fail(
            "header",
            f"part count {parts} for a {kind} product of {most:,} {_UNITS[kind]} (every packet carries at least one)",
        )
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if nbytes > MAX_PIECE_BYTES:
        raise _fail("header", f"{nbytes} sample bytes in one packet (at most {MAX_PIECE_BYTES})")
    if codec == 0 and nbytes != len(payload):
        raise _fail("samples", f"expected {nbytes} sample bytes, got {len(payload)}")
    if codec in (1, 3) and dtype not in (np.uint8, np.uint16):
        raise _fail("codec", f"codec {codec} on {kind} samples")
    header["layout"] = version
    bits = header.get("bit_depth")
    try:
        if codec == 3 and kind == "patch" and header["channels"] > 1:  # planes of whole pixels
            c = header["channels"]
            if header["e0"] % c or header["n"] % c:
                raise _fail("header", f"ccsds121 patch range [{header['e0']}, +{header['n']}) splits a pixel")
            samples = decode_samples(payload, codec, dtype, (header["n"] // c, c), bits).reshape(shape)
        elif codec == 1 and kind == "patch" and header["channels"] > 1:  # differences per channel
            c = header["channels"]
            samples = decode_delta_pixels(payload, dtype, header["n"], c, header["e0"] % c)
        else:
            samples = decode_samples(payload, codec, dtype, shape, bits if codec == 3 else None)
    except CodecError as exc:
        raise _fail("samples", str(exc)) from None
    if bits is not None and bits not in (8, 16) and samples.size and int(samples.max()) >= 2**bits:
        raise _fail("samples", f"sample above the {bits}-bit range")
    return Packet(head.apid, kind, head.seq_count, frame_id, part, parts, codec, header, samples, len(data))


_UNITS = {"sparse": "pixels", "latent": "latent elements", "patch": "samples", "telemetry": "bytes"}


def _most_parts(kind: str, h: dict) -> int:
    """The most packets a product of these header fields can be sent in: one element (a pixel of a sparse frame, a
    latent value, a patch sample, a telemetry byte) at least in each, and one packet for an empty product. A sparse
    frame's packets each carry a kept pixel of their band or are the one packet of a band that keeps none, so
    height × width bounds them in both layouts (docs/wire-format.md, "Part count")."""
    if kind == "sparse":
        n = h["height"] * h["width"]
    elif kind == "latent":
        n = math.prod(h["latent_shape"])
    elif kind == "patch":
        n = h["size"] * h["size"] * h["channels"]
    else:
        n = h["total"]
    return max(1, n)


def _check_kind(kind: str, f: tuple, codec: int, layout: int) -> tuple[dict, np.dtype, tuple[int, ...]]:
    """Validated header dict, sample dtype and sample shape for the kind header fields ``f``."""
    if kind == "sparse" and layout == 2:
        return _check_sparse_v2(f)
    if kind == "sparse":
        h, w, c, bits, keep, pat, seed, prng, r0, r1, c0, c1, n = f
        _check_frame(h, w, c, bits, keep, pat, prng)
        if not (0 <= r0 < r1 <= h and 0 <= c0 < c1 <= w) or n > (r1 - r0) * (c1 - c0):
            raise _fail("header", f"bad rectangle rows [{r0},{r1}) cols [{c0},{c1}) n={n}")
        hd = dict(
            height=h,
            width=w,
            channels=c,
            bit_depth=bits,
            keep=keep,
            pattern=PATTERN_OF_CODE[pat],
            seed=seed,
            prng_version=prng,
            row0=r0,
            row1=r1,
            col0=c0,
            col1=c1,
            n=n,
        )
        return hd, sample_dtype(bits), (n, c)
    if kind == "latent":
        eid, h, w, c, tile, stride, gr, gc, dt, scale, lc, lh, lw, e0, n = f
        try:
            enc = eid.rstrip(b"\0").decode("ascii")
        except UnicodeDecodeError:
            raise _fail("header", "encoder id is not ASCII") from None
        if dt not in LATENT_OF_CODE:
            raise _fail("header", f"bad latent dtype {dt}")
        if not _F32_SCALE[0] <= scale <= _F32_SCALE[1]:  # NaN fails too; the ground computes q · scale in float32
            raise _fail(
                "header",
                f"latent scale {scale!r} is not a positive normal float32 whose int8 values (q · scale, |q| <= 128) "
                "stay finite",
            )
        if min(h, w, c, tile, stride, gr, gc, lc, lh, lw) < 1:
            raise _fail("header", "zero in a latent frame dimension")
        total = gr * gc * lc * lh * lw
        if e0 + n > total or (codec == 1):
            raise _fail("header", f"element range [{e0},{e0 + n}) outside {total} or delta codec on latents")
        hd = dict(
            encoder_id=enc,
            height=h,
            width=w,
            channels=c,
            tile=tile,
            stride=stride,
            grid_rows=gr,
            grid_cols=gc,
            dtype=LATENT_OF_CODE[dt],
            scale=scale,
            latent_shape=(gr * gc, lc, lh, lw),
            e0=e0,
            n=n,
        )
        return hd, np.dtype(np.int8 if dt == 0 else np.float16), (n,)
    if kind == "patch":
        x, y, size, c, bits, index, score, e0, n = f
        if size < 1 or c < 1 or not 1 <= bits <= 16 or e0 + n > size * size * c:
            raise _fail("header", f"bad patch size {size}, channels {c}, bits {bits} or range [{e0},{e0 + n})")
        if max(x, y) + size > 0xFFFFFFFF:  # frame sides are u32: no frame holds this patch
            raise _fail("header", f"patch at ({x}, {y}) of size {size} runs past the largest frame (2^32 - 1 pixels)")
        hd = dict(x=x, y=y, size=size, channels=c, bit_depth=bits, index=index, score=score, e0=e0, n=n)
        return hd, sample_dtype(bits), (n,)
    total, offset, n = f
    if codec in (1, 3):  # telemetry is JSON bytes, sent as they are or deflated
        raise _fail("codec", f"codec {codec} on telemetry (none or deflate only)")
    if offset + n > total:
        raise _fail("header", f"telemetry range [{offset},{offset + n}) outside {total} bytes")
    return {"total": total, "e0": offset, "n": n}, np.dtype(np.uint8), (n,)


def _check_frame(h: int, w: int, c: int, bits: int, keep: float, pat: int, prng: int) -> None:
    """The frame fields both sparse header versions carry."""
    if prng != PRNG_VERSION:  # the mask could not be regenerated: refused before anything is kept
        raise _fail("prng", f"mask PRNG version {prng} (this ground implements version {PRNG_VERSION})")
    if h < 1 or w < 1 or not 1 <= c <= 255 or not 1 <= bits <= 16:
        raise _fail("header", f"bad frame shape {h}x{w}x{c} or bit depth {bits}")
    if not (math.isfinite(keep) and 0.0 < keep <= 1.0) or pat not in PATTERN_OF_CODE:
        raise _fail("header", f"bad keep {keep} or pattern code {pat}")


def _check_sparse_v2(f: tuple) -> tuple[dict, np.dtype, tuple[int, ...]]:
    h, w, c, bits, keep, pat, seed, prng, r0, r1, n_band, seg, parts, index, step, n = f
    _check_frame(h, w, c, bits, keep, pat, prng)
    if not 0 <= r0 < r1 <= h or n_band > (r1 - r0) * w:
        raise _fail("header", f"bad band rows [{r0},{r1}) with {n_band} kept pixels")
    try:
        want = il.packet_samples(n_band, seg, parts, step, index)
    except il.InterleaveError as exc:
        raise _fail("header", str(exc)) from None
    if n != want:
        raise _fail("header", f"packet {index} of {parts} carries {want} samples, the header says {n}")
    hd = dict(
        height=h,
        width=w,
        channels=c,
        bit_depth=bits,
        keep=keep,
        pattern=PATTERN_OF_CODE[pat],
        seed=seed,
        prng_version=prng,
        row0=r0,
        row1=r1,
        n_band=n_band,
        seg=seg,
        band_parts=parts,
        band_index=index,
        step=step,
        n=n,
    )
    return hd, sample_dtype(bits), (n, c)

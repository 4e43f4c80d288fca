"""Independently tiled JPEG 2000 over a lossy link: JPEG 2000 sent as a mission would send it.

One JPEG 2000 codestream (``jpeg2000`` in :mod:`.baselines`) is truncated by its first lost packet. Here the frame
is cut into ``tile`` x ``tile`` tiles (the last row and column may be smaller), each coded as its own raw J2K
codestream (``imagecodecs``/OpenJPEG, no JP2 boxes, its COM marker dropped) at the highest target PSNR that fits
an equal share of the wire budget, held to whole packets (:func:`share_budget`; all tiles' packets together, every
packet and codestream header counted, take at most the budget). The tile side is by default a tile per packet
(:func:`packet_tile`: 64 px at the link benchmark's budget), so a lost packet loses one tile and every packet
decodes alone.
Each tile travels as its own flat product (a telemetry record whose 32-bit product id is the tile index, in the
packet headers already paid for; CCSDS packets of ``max_packet`` bytes, :func:`edgeae.wire.packets.packetise`),
tiles sent in the golden-ratio order of :func:`edgeae.wire.interleave.interleave_step`, so that a burst hits tiles
far apart. The ground decodes every tile whose bytes all arrived; a tile with any piece lost is lost whole (a
truncated J2K codestream does not decode) and is concealed from the received tiles around it with a classical fill
of :mod:`edgeae.inpaint`. A frame with no tile received is lost (mid-grey, as the other codec rows).

Used by ``edgeae downlink simulate --compare j2k-tiled`` (:func:`edgeae.ground.baselines.same_bytes`), the
``j2k-tiled`` method of ``edgeae downlink plan`` and the science-per-byte benchmark (:mod:`.budget_downlink`),
and the link benchmark (``benchmarks/link_comparison.py``). Samples of 8 bits (uint8) or, as the whole-frame row,
up to 16 (uint16, coded at their own depth).

Neither imagecodecs nor OpenCV exposes OpenJPEG's resilience options (SOP/EPH markers, the RESTART / ERTERM /
SEGMARK code-block modes): tiling is the resilience a mission can have with the codec libraries edgeae uses.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeae.wire.interleave import interleave_step
from edgeae.wire.layout import overhead
from edgeae.wire.packets import SequenceCounters, WireConfig, packetise
from edgeae.wire.products import TelemetryRecord

from .baselines import QUALITY_RANGE, file_budget
from .decode import decode_flat
from .link import LinkConfig, simulate
from .reassembly import Receiver

NAME = "j2k-tiled"
"""The name of tiled JPEG 2000 as a ``--compare`` codec and a ``downlink plan`` method."""
TILE = 64
"""The tile side :func:`packet_tile` gives at the link benchmark's budget (keep 0.1 of a 512-px RGB crop, ~2 bits
per pixel: a 64-px tile's share is about one 1024-byte packet, so a lost packet loses 1/64 of the crop). On the
rover train and validation crops (``benchmarks/tiled_j2k_choice.py``: 5 crops, 3 link seeds per lossy link, seeds
disjoint from the link stage's; perfect / 20% loss / bursts, telea concealment): 32 px 30.61 / 27.58 / 29.20 dB (a
~100-byte codestream header on every ~200-byte tile), 64 px 35.80 / 28.98 / 31.81, 128 px 35.86 / 23.65 / 31.20
(three whole packets a tile, lost with any of them: 45% of tiles at 20% loss)."""
FILL = "telea"
"""Default concealment of lost tiles (:data:`edgeae.inpaint.METHODS`), chosen on the same crops with 64-px tiles
(20% loss / bursts): telea 28.98 / 31.81 dB at 0.15 s a frame; blend 29.41 / 32.10 but 10.4 s (its linear half
triangulates every received pixel), linear 28.92 / 31.87 (10.1 s), normconv-wide 28.10 / 31.29 (seconds on a
loaded 2-core machine)."""
MIN_TILE = 16


def tile_boxes(height: int, width: int, tile: int) -> list[tuple[int, int, int, int]]:
    """The tiles of a (height, width) frame as (y, x, h, w), in raster order; edge tiles may be smaller."""
    if tile < MIN_TILE:
        raise ValueError(f"JPEG 2000 tile side must be at least {MIN_TILE} px, got {tile}")
    return [(y, x, min(tile, height - y), min(tile, width - x)) for y in range(0, height, tile)
            for x in range(0, width, tile)]  # fmt: skip


def strip_comments(cs: bytes) -> bytes:
    """A J2K codestream without the COM marker segments (OpenJPEG's "Created by ..." text) of its main header."""
    if cs[:2] != b"\xff\x4f":
        raise ValueError("not a raw J2K codestream (no SOC marker at its start)")
    out, i = bytearray(cs[:2]), 2
    while cs[i : i + 2] != b"\xff\x90":  # main header segments, up to the first tile-part (SOT)
        if i + 4 > len(cs) or cs[i] != 0xFF:
            raise ValueError(f"J2K main header is malformed at byte {i}")
        end = i + 2 + int.from_bytes(cs[i + 2 : i + 4], "big")
        if cs[i + 1] != 0x64:  # COM
            out += cs[i:end]
        i = end
    return bytes(out + cs[i:])


def encode_tile(tile: np.ndarray, q: float, bits: int | None = None) -> bytes:
    """One tile (h, w, C) as a raw J2K codestream at target PSNR ``q`` (dB), without COM; uint8, or uint16 samples
    of ``bits`` bits (default 16)."""
    import imagecodecs

    src = np.ascontiguousarray(tile[..., 0] if tile.shape[2] == 1 else tile)
    deep = None if tile.dtype == np.uint8 else 16 if bits is None else int(bits)
    cs = imagecodecs.jpeg2k_encode(src, level=float(q), codecformat=imagecodecs.JPEG2K.CODEC.J2K,  # type: ignore[arg-type]
                                   bitspersample=deep)  # fmt: skip
    return strip_comments(bytes(cs))


def encode_tiles(img: np.ndarray, tile: int, q: float, bits: int | None = None) -> list[bytes]:
    """Each tile of ``img`` (H, W, C) as its own J2K codestream at target PSNR ``q`` (dB), raster order."""
    h, w = img.shape[:2]
    return [encode_tile(img[y : y + th, x : x + tw], q, bits) for y, x, th, tw in tile_boxes(h, w, tile)]


def send_order(n: int) -> list[int]:
    """Tile indices in send order: position j sends tile (j · step) mod n (the sparse layout 2's step)."""
    g = interleave_step(n)
    return [(j * g) % n for j in range(n)]


def tile_packets(streams: list[bytes], max_packet: int, counters: SequenceCounters | None = None) -> list[bytes]:
    """The packets of every tile (one telemetry record each, id = tile index), in :func:`send_order`."""
    ctr, cfg = counters or SequenceCounters(), WireConfig(max_packet)
    return [p for k in send_order(len(streams)) for p in packetise(TelemetryRecord(k, streams[k]), config=cfg,
                                                                   counters=ctr)]  # fmt: skip


def tile_at_bytes(tile: np.ndarray, budget: int, bits: int | None = None) -> tuple[bytes, float]:
    """The J2K codestream of one tile (h, w, C) at the highest target PSNR (bisected on
    :data:`~edgeae.ground.baselines.QUALITY_RANGE`, as the whole-frame row) of at most ``budget`` bytes:
    (codestream, target PSNR); ValueError when even the lowest quality does not fit."""
    lo, hi = QUALITY_RANGE["jpeg2000"]
    best = encode_tile(tile, lo, bits)
    if len(best) > budget:
        raise ValueError(f"a {tile.shape[0]}x{tile.shape[1]} JPEG 2000 tile needs {len(best)} bytes at its lowest "
                         f"quality, over its {budget}-byte share of the budget")  # fmt: skip
    q = lo
    for _ in range(12):
        mid = (lo + hi) / 2
        cs = encode_tile(tile, mid, bits)
        if len(cs) <= budget:
            best, q, lo = cs, mid, mid
        else:
            hi = mid
    return best, q


def share_budget(share: int, max_packet: int, whole_packets: bool = True) -> int:
    """The codestream bytes one tile may take from its ``share`` of the wire bytes: the file whose packets fit the
    share (:func:`edgeae.ground.baselines.file_budget`), held to whole packets (``whole_packets``): rounded down to
    a whole number of packet payloads when it is over one, so that no tile ends in a partial packet. A tile is lost
    when any of its packets is, and a truncated codestream does not decode: a share a little over one packet (the
    link benchmark's img_336 crop: 1,079 wire bytes, 25 bytes past a packet) would otherwise send a 33-55-byte
    second packet that doubles the tile's loss exposure for a few bytes of quality (24.59 dB at 20% loss against
    26.86 held to one packet). ``whole_packets`` False: the share as it is (the rule until session 39 h10)."""
    budget = file_budget(share, max_packet)
    per = max_packet - overhead("telemetry")
    return (budget // per) * per if whole_packets and budget > per else budget


def at_wire_bytes(
    img: np.ndarray, tile: int, wire_budget: int, max_packet: int, bits: int | None = None, whole_packets: bool = True
) -> tuple[list[bytes], float, int]:
    """Tiles of ``img`` (H, W, C; uint8, or uint16 of ``bits`` bits) whose packets take at most ``wire_budget``
    bytes, packet and codestream headers included: each tile gets an equal share of the wire bytes, held to whole
    packets (:func:`share_budget`: one packet per tile when the share is under two, so that every packet decodes
    alone), and is coded at the highest quality its share holds. (codestreams in raster order, mean target PSNR,
    wire bytes); ValueError when a tile does not fit its share. Area-proportional shares and one target PSNR for
    every tile were tried in session 40 (``benchmarks/tiled_j2k_choice.py``, docs/wire-format.md): neither won by
    more than the seed-to-seed spread under loss, so the shares stay equal."""
    h, w = img.shape[:2]
    boxes = tile_boxes(h, w, tile)
    budget = share_budget(wire_budget // len(boxes), max_packet, whole_packets)
    coded = [tile_at_bytes(np.ascontiguousarray(img[y : y + th, x : x + tw]), budget, bits) for y, x, th, tw in boxes]
    streams = [c for c, _ in coded]
    return streams, float(np.mean([q for _, q in coded])), sum(map(len, tile_packets(streams, max_packet)))


# ------------------------------------------------------------------------ tile size for a budget (downlink plan)
@functools.lru_cache(maxsize=256)
def _header_bytes(height: int, width: int, channels: int, bits: int | None) -> int:
    dtype = np.uint8 if bits is None or bits <= 8 else np.uint16
    cs = encode_tile(np.zeros((height, width, channels), dtype), QUALITY_RANGE["jpeg2000"][0], bits)
    i = 2
    while cs[i : i + 2] != b"\xff\x93":  # marker segments (SOT's too) up to SOD
        i += 2 + int.from_bytes(cs[i + 2 : i + 4], "big")
    return i + 2


def header_bytes(height: int, width: int, channels: int, bits: int | None = None) -> int:
    """The bytes of a (height, width, channels) tile's codestream before its coded data (main header, COM dropped,
    and tile-part header up to SOD): 88-122 B, 7 more for each resolution level a larger tile adds. Measured on a
    tile of the same size class (the same power of two a side), so a frame's candidate sides cost a few encodes."""
    h, w = 1 << (height.bit_length() - 1), 1 << (width.bit_length() - 1)
    return _header_bytes(h, w, channels, bits)


def packet_tile(
    height: int, width: int, wire_budget: int, max_packet: int, channels: int = 1, bits: int | None = None
) -> int:
    """The tile side (a multiple of :data:`MIN_TILE` px) for a tile per packet: of every side, each tile's equal
    share of ``wire_budget`` held to one packet of ``max_packet`` bytes (:func:`share_budget`), the one whose full
    tile gets the most coded bytes per pixel (its codestream bytes less its :func:`header_bytes`, over its area). A
    lost packet then loses one tile and no tile pays a second packet's loss for a sliver; a side that leaves slivers
    at the frame's edge (a full share for a few rows) loses to one that cuts even tiles. Up to the frame in one tile
    (when its share fits one packet); :data:`MIN_TILE` when every share is over a packet.

    Chosen on the rover train and validation crops (``benchmarks/tiled_j2k_choice.py``): at shares 4-7% over a
    packet, 64-px tiles held to one packet gave 29.05 dB at 20% loss, the 48-px tiles whose share fits one packet
    28.58, 64-px tiles sending the rest in a second packet 27.79 (36.19 / 35.14 / 36.36 on a perfect link)."""
    per = max_packet - overhead("telemetry")
    top = -(-max(height, width) // MIN_TILE) * MIN_TILE
    best, rate = MIN_TILE, -np.inf
    for side in range(MIN_TILE, top + 1, MIN_TILE):
        th, tw = min(side, height), min(side, width)
        b = min(share_budget(wire_budget // (-(-height // side) * -(-width // side)), max_packet), per)
        r = (b - header_bytes(th, tw, channels, bits)) / (th * tw)
        if r > rate:
            best, rate = side, r
    return best


def within(
    img: np.ndarray, wire_budget: int, max_packet: int, tile: int = 0, bits: int | None = None
) -> tuple[list[bytes], int, float]:
    """:func:`at_wire_bytes` at tile side ``tile``, or with ``tile`` 0 at :func:`packet_tile`'s side, a packet a tile,
    doubled (up to the frame in one tile; then in whole packets) while a tile does not fit its share at its lowest
    quality: (codestreams, tile side, mean target PSNR). ValueError when it does not fit (a fixed ``tile``, or the
    frame in one tile)."""
    h, w = img.shape[:2]
    side = tile or packet_tile(h, w, wire_budget, max_packet, img.shape[2], bits)
    whole = -(-max(h, w) // MIN_TILE) * MIN_TILE
    budget = wire_budget if tile else min(wire_budget, len(tile_boxes(h, w, side)) * max_packet)  # a packet a tile
    while True:
        try:
            streams, q, _ = at_wire_bytes(img, side, budget, max_packet, bits)
            return streams, side, q
        except ValueError:
            if tile or side >= whole:
                raise
            side, budget = min(2 * side, whole), wire_budget  # larger tiles, in as many whole packets as fit


def floor_bytes(img: np.ndarray, max_packet: int, tile: int = 0, bits: int | None = None) -> tuple[int, str]:
    """The fewest wire bytes within which :func:`within` sends ``img`` at tile side ``tile`` (0: the frame in one
    tile, where :func:`within` ends up at small budgets), and why: every tile's share holds its largest tile at the
    lowest quality, in its packets."""
    h, w = img.shape[:2]
    boxes = tile_boxes(h, w, tile or -(-max(h, w) // MIN_TILE) * MIN_TILE)
    lo = QUALITY_RANGE["jpeg2000"][0]
    size = max(len(encode_tile(np.ascontiguousarray(img[y : y + th, x : x + tw]), lo, bits)) for y, x, th, tw in boxes)
    per = max_packet - overhead("telemetry")
    # a share holds a codestream of ``size`` in one packet from size + its headers, in k > 1 only as k whole packets
    need = len(boxes) * (size + overhead("telemetry") if size <= per else -(-size // per) * max_packet)
    what = f"{len(boxes)} {tile}-px JPEG 2000 tiles" if tile else "the frame as one JPEG 2000 tile"
    return need, f"{what} at the lowest quality ({size:,} B the largest, {need:,} B in their packets)"


# ------------------------------------------------------------------------------------------- ground side
@dataclass(frozen=True, eq=False)
class TiledResult:
    """A tiled frame after the link: ``image`` (H, W, C) of the frame's sample type (lost tiles concealed;
    mid-grey when every tile was lost), which tiles were lost, the wire bytes and packets sent."""

    image: np.ndarray
    tiles_lost: np.ndarray  # bool, one per tile in raster order
    lost: bool  # no tile arrived
    wire_bytes: int
    packets: int


def rebuild(
    received: list[bytes], shape: tuple[int, ...], tile: int, fill: str = FILL, bits: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """The frame from the packets that arrived (:func:`rebuild_products` of them)."""
    r = Receiver()
    for p in received:
        r.receive(p)
    return rebuild_products(r.products, shape, tile, fill, bits)


def rebuild_products(
    products: dict[Any, Any], shape: tuple[int, ...], tile: int, fill: str = FILL, bits: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """The frame from a :class:`~.reassembly.Receiver`'s products: every tile all of whose bytes arrived, decoded,
    the others concealed with ``fill`` from the decoded pixels. (``shape`` image of ``bits``-bit samples, uint8 or
    uint16 above 8; bool tiles lost); every tile lost: a mid-grey frame."""
    import imagecodecs

    from edgeae.inpaint import inpaint

    h, w, c = shape
    dtype, top = (np.uint8, 255) if bits <= 8 else (np.uint16, 2**bits - 1)
    boxes = tile_boxes(h, w, tile)
    img = np.full(shape, 1 << (bits - 1), dtype)
    known = np.zeros((h, w), bool)
    lost = np.ones(len(boxes), bool)
    for k, (y, x, th, tw) in enumerate(boxes):
        asm = products.get(("telemetry", k, 0))
        got = decode_flat(asm) if asm is not None else None
        if got is None or not got.received.all():
            continue
        try:
            t = np.asarray(imagecodecs.jpeg2k_decode(got.values.tobytes()))
        except Exception:  # a tile its decoder refuses is a lost tile
            continue
        t = t.reshape(*t.shape[:2], -1)
        if t.shape != (th, tw, c) or t.dtype != dtype:
            continue
        img[y : y + th, x : x + tw], known[y : y + th, x : x + tw], lost[k] = t, True, False
    if lost.any() and known.any():
        filled = inpaint(img.astype(np.float32) / np.float32(top), known, fill)
        img = np.round(np.clip(filled.reshape(shape), 0, 1) * top).astype(dtype)
    return img, lost


def over_link_tiled(streams: list[bytes], shape: tuple[int, ...], tile: int, link: LinkConfig, max_packet: int,
                    fill: str = FILL, bits: int = 8) -> TiledResult:  # fmt: skip
    """Send the tiles' packets over ``link`` and rebuild the frame from what arrived (:func:`rebuild`)."""
    pkts = tile_packets(streams, max_packet)
    out, _ = simulate(pkts, link)
    img, lost = rebuild([p for _, p in out], shape, tile, fill, bits)
    return TiledResult(img, lost, bool(lost.all()), sum(map(len, pkts)), len(pkts))

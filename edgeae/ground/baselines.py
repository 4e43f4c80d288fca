"""Image-codec baselines at equal bytes: JPEG, JPEG 2000, WebP, JPEG XL, also over the simulated link.

The shared part of ``edgeae downlink simulate --compare``, ``edgeae downlink plan`` and the rate-distortion
and link benchmarks. :func:`same_bytes` also sends JPEG 2000 in independent tiles (``j2k-tiled``,
:mod:`.tiled_j2k`: each tile its own codestream in its own packets, lost tiles concealed), as a mission would send
it over a lossy link. A codec encodes a whole frame (H, W, C), C = 1 or 3, of 8-bit samples, or for
:data:`DEEP_CODECS` of up to 16 bits; :func:`at_bytes` finds the best quality that fits a byte budget (of file
bytes); :func:`over_link` sends the file as a flat product (telemetry APID,
the same packet size as the sparse frame) over a :class:`~edgeae.ground.link.LinkConfig` and decodes what
arrived two ways — the prefix before the first lost packet (a truncated file) and the full length with lost
ranges zero-filled — crediting the codec with the better of the two (generous to the codec). If neither
decodes to an image of the right shape, the frame is lost: :func:`over_link` returns a flat mid-grey frame (the
link benchmark scores that), :func:`same_bytes` reports its PSNR as None, as the ground does a lost sparse frame.

Needs the ground extras (OpenCV for JPEG, imagecodecs for the others), imported when a codec runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeae.wire.packets import SequenceCounters, WireConfig, overhead, packetise
from edgeae.wire.products import TelemetryRecord

from .decode import decode_flat
from .link import LinkConfig, simulate
from .reassembly import Receiver

FILE_CODECS = ("jpeg", "jpeg-rst", "jpeg2000", "webp", "jpegxl")
"""The codecs that code a frame as one file (:func:`encode`, :func:`at_bytes`, :func:`over_link`). ``jpeg-rst``:
baseline JPEG with a restart marker every MCU row, the standard way to let a JPEG decoder resynchronise after
damage (costs a few bytes per row)."""
TILED = "j2k-tiled"
"""JPEG 2000 in independent tiles (:mod:`.tiled_j2k`): a :func:`same_bytes` codec, not one file."""
CODECS = (*FILE_CODECS, TILED)
"""What :func:`same_bytes` (``downlink simulate --compare``) sends."""
DEEP_CODECS = ("jpeg2000", "jpegxl", TILED)
"""The codecs that code samples of up to 16 bits (uint16; the others code 8-bit samples only): given a 12- or 16-bit
frame as it is, where an 8-bit codec gets an 8-bit copy."""
QUALITY_RANGE: dict[str, tuple[float, float]] = {
    "jpeg": (1.0, 100.0),  # quality
    "jpeg-rst": (1.0, 100.0),
    "webp": (1.0, 100.0),
    "jpeg2000": (10.0, 80.0),  # target PSNR (dB) of the single quality layer
    "jpegxl": (25.0, 0.1),  # butteraugli distance (smaller = better)
}


def _check(codec: str) -> None:
    if codec == TILED:
        raise ValueError(f"{TILED} is sent as independent tiles, not one file: edgeae.ground.tiled_j2k or same_bytes")
    if codec not in FILE_CODECS:
        raise ValueError(f"unknown image codec {codec!r}; choose from {', '.join(FILE_CODECS)}")


def encode(img: np.ndarray, codec: str, q: float, bits: int | None = None) -> bytes:
    """Encode uint8 (H, W, C) (C = 1 or 3) at quality ``q`` (JPEG/WebP 1-100; JPEG 2000 target PSNR in dB;
    JPEG XL butteraugli distance); a codec of :data:`DEEP_CODECS` also uint16 samples of ``bits`` bits (default
    16)."""
    import imagecodecs

    _check(codec)
    deep = _deep_bits(img, codec, bits)
    grey = img.shape[2] == 1
    src = np.ascontiguousarray(img[..., 0] if grey else img)
    if codec in ("jpeg", "jpeg-rst"):
        import cv2

        params = [cv2.IMWRITE_JPEG_QUALITY, int(q)]
        if codec == "jpeg-rst":
            params += [cv2.IMWRITE_JPEG_RST_INTERVAL, -(-img.shape[1] // (8 if grey else 16))]  # one MCU row
        ok, buf = cv2.imencode(".jpg", src if grey else np.ascontiguousarray(src[..., ::-1]), params)
        if not ok:
            raise RuntimeError("OpenCV could not encode JPEG")
        return buf.tobytes()
    if codec == "jpeg2000":
        return bytes(imagecodecs.jpeg2k_encode(src, level=float(q), bitspersample=deep))  # type: ignore[arg-type]
    if codec == "jpegxl":
        return bytes(imagecodecs.jpegxl_encode(src, distance=float(q), bitspersample=deep))
    return bytes(imagecodecs.webp_encode(np.repeat(img, 3, axis=2) if grey else src, level=float(q), lossless=False))


def _deep_bits(img: np.ndarray, codec: str, bits: int | None) -> int | None:
    """The bit depth to code uint16 ``img`` at (None for uint8); other sample types, or uint16 for an 8-bit codec,
    are refused."""
    if img.dtype == np.uint8:
        return None
    if img.dtype != np.uint16 or codec not in DEEP_CODECS:
        raise ValueError(
            f"{codec} codes uint8 samples{'' if codec not in DEEP_CODECS else ' or uint16'}, not {img.dtype}"
        )
    if bits is not None and not 9 <= bits <= 16:
        raise ValueError(f"uint16 samples of {bits} bits: expected 9-16")
    return 16 if bits is None else int(bits)


def decode(data: bytes, codec: str, shape: tuple[int, ...], dtype: Any = np.uint8) -> np.ndarray | None:
    """Decode as far as the decoder can, as ``dtype`` (uint8, or uint16 for a file of :data:`DEEP_CODECS` coded
    from uint16) ``shape`` (H, W, C); None when it refuses or the shape or sample type is wrong."""
    _check(codec)
    try:
        if codec in ("jpeg", "jpeg-rst"):
            import cv2

            from edgeae.logs import native_stderr_to_log

            grey = shape[2] == 1
            with native_stderr_to_log():  # libjpeg says "Corrupt JPEG data" on stderr for a damaged stream (-v shows)
                out: Any = cv2.imdecode(
                    np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR
                )
            if out is None:
                return None
            out = out if grey else out[..., ::-1]
        else:
            import imagecodecs

            fn: Any = {"jpeg2000": imagecodecs.jpeg2k_decode, "webp": imagecodecs.webp_decode}.get(
                codec, imagecodecs.jpegxl_decode
            )
            out = fn(data)
    except Exception:
        return None
    a = np.asarray(out)
    a = a.reshape(*a.shape[:2], -1)[..., : shape[2]]  # WebP of a grey image decodes as RGB
    return np.ascontiguousarray(a) if a.shape == tuple(shape) and a.dtype == np.dtype(dtype) else None


def roundtrip(img: np.ndarray, codec: str, q: float, bits: int | None = None) -> tuple[bytes, np.ndarray, float, float]:
    """Encode and decode; (bytes, decoded (H, W, C) of ``img``'s dtype, encode s, decode s)."""
    import time

    t0 = time.perf_counter()
    data = encode(img, codec, q, bits)
    t1 = time.perf_counter()
    out = decode(data, codec, img.shape, img.dtype)
    t2 = time.perf_counter()
    if out is None:
        raise RuntimeError(f"{codec} could not decode its own file at quality {q}")
    return data, out, t1 - t0, t2 - t1


def at_bytes(img: np.ndarray, codec: str, budget: int, bits: int | None = None) -> tuple[bytes, float]:
    """The highest-quality encoding of at most ``budget`` file bytes (bisection on the quality parameter; ``bits``:
    of uint16 samples, :func:`encode`).

    Raises ValueError when even the lowest quality does not fit."""
    _check(codec)
    lo, hi = QUALITY_RANGE[codec]
    integer = codec in ("jpeg", "jpeg-rst", "webp")
    best = encode(img, codec, lo, bits), lo
    if len(best[0]) > budget:
        raise ValueError(
            f"{codec} needs {len(best[0])} file bytes at its lowest quality, over the {budget}-byte file budget"
        )
    for _ in range(8 if integer else 12):
        mid = float(int((lo + hi) / 2)) if integer else (lo + hi) / 2
        d = encode(img, codec, mid, bits)
        if len(d) <= budget:
            best, lo = (d, mid), mid
        else:
            hi = mid
        if integer and abs(hi - lo) <= 1:
            break
    return best


def file_budget(wire_bytes: int, max_packet: int) -> int:
    """The largest file whose packets (flat product, ``max_packet`` bytes each) take at most ``wire_bytes``."""
    per = max_packet - overhead("telemetry")
    n = wire_bytes // max_packet
    rest = wire_bytes - n * max_packet - overhead("telemetry")
    return max(0, n * per + max(0, rest))


@dataclass(frozen=True, eq=False)
class LinkResult:
    """A codec file after the link: ``image`` (H, W, C) uint8, or uint16 for a deeper frame (mid-grey when
    lost), how it was decoded."""

    image: np.ndarray
    lost: bool
    how: str  # complete | prefix | zero-fill | undecodable | nothing
    bytes_received: float  # fraction of the file's bytes that arrived
    wire_bytes: int
    packets: int


def over_link(
    data: bytes,
    codec: str,
    shape: tuple[int, ...],
    link: LinkConfig,
    max_packet: int,
    original: np.ndarray | None = None,
    bits: int = 8,
) -> LinkResult:
    """Send a codec file over ``link`` (packets of ``max_packet`` bytes) and decode what arrived.

    When both a prefix and a zero-filled file decode, the one closer to ``original`` (``shape``; default: the
    complete file decoded) is kept. ``bits``: the file codes samples of that many bits (uint16 above 8)."""
    dtype = np.uint8 if bits <= 8 else np.uint16
    grey = 1 << (bits - 1)
    pkts = packetise(TelemetryRecord(1, data), config=WireConfig(max_packet), counters=SequenceCounters())
    out, _ = simulate(pkts, link)
    r = Receiver()
    for _, p in out:
        r.receive(p)
    asm = r.products.get(("telemetry", 1, 0))
    wire = sum(map(len, pkts))
    if asm is None:
        return LinkResult(np.full(shape, grey, dtype), True, "nothing", 0.0, wire, len(pkts))
    got = decode_flat(asm)
    im, how = decode_partial(got.values, got.received, codec, shape, original, dtype)
    lost = im is None
    return LinkResult(np.full(shape, grey, dtype) if im is None else im, lost, how, float(got.received.mean()), wire,
                      len(pkts))  # fmt: skip


def decode_partial(
    values: np.ndarray,
    received: np.ndarray,
    codec: str,
    shape: tuple[int, ...],
    original: np.ndarray | None = None,
    dtype: Any = np.uint8,
) -> tuple[np.ndarray | None, str]:
    """Decode a codec file of which only the bytes where ``received`` arrived (uint8 ``values``): the whole file,
    or the better of the prefix before the first gap and the zero-filled file (closer to ``original``; by
    default to whichever decodes); nothing when the file's first byte is missing (its header is gone).
    (image of ``dtype`` or None, how: complete | prefix | zero-fill | undecodable)."""
    cands: list[tuple[str, np.ndarray]] = []
    if received.all():
        im = decode(values.tobytes(), codec, shape, dtype)
        cands += [("complete", im)] if im is not None else []
    else:
        first = int(np.argmin(received))
        im = decode(values[:first].tobytes(), codec, shape, dtype) if first else None
        cands += [("prefix", im)] if im is not None else []
        # without its first bytes (the main header: sizes, coding style) a codec file is noise even when a
        # decoder accepts it: no zero-filled candidate then (a JPEG 2000 context decoded that way scored 7 dB)
        im = decode(values.tobytes(), codec, shape, dtype) if first else None
        cands += [("zero-fill", im)] if im is not None else []
    if not cands:
        return None, "undecodable"
    if len(cands) > 1 and original is not None:
        ref = original.astype(np.float32)
        cands.sort(key=lambda c: float(np.mean((c[1].astype(np.float32) - ref) ** 2)))
    return cands[0][1], cands[0][0]


def same_bytes(
    img: np.ndarray,
    codecs: list[str] | tuple[str, ...],
    wire_bytes: int,
    link: LinkConfig,
    max_packet: int,
    bits: int = 8,
    valid: np.ndarray | None = None,
    tile: int | None = None,
) -> list[dict[str, Any]]:
    """Each codec's file at the best quality whose packets take at most ``wire_bytes``, sent over ``link``:
    one row per codec with the file and wire bytes, the quality, how it decoded and the PSNR (dB) against
    ``img`` (integer samples (H, W, C) of ``bits`` bits: uint8, or uint16 above 8) on its own scale
    (``2**bits - 1``): None when the frame is lost (nothing decoded; not the mid-grey frame's PSNR, so a lost codec
    frame reads as a lost sparse frame does), inf when identical. A codec of :data:`DEEP_CODECS` codes the samples
    as they are; an 8-bit codec (JPEG, WebP) an 8-bit copy of a deeper frame, its loss counted in its PSNR (the
    row's ``input`` says which). ``file_bytes`` is the codec's file, ``wire_bytes`` its packets with their headers
    (the budget is in wire bytes). A codec that cannot get that small is reported with ``error``. ``valid`` (bool
    (H, W); None: every pixel): the PSNR over those pixels only, as ``edgeae reconstruct`` scores a frame with no-data
    margins (``downlink simulate --compare``).

    ``j2k-tiled`` (:data:`TILED`): JPEG 2000 in independent ``tile``-px tiles (None or 0, the default: a tile per
    packet, :func:`.tiled_j2k.packet_tile`'s side, larger while a tile cannot fit its share: :func:`.tiled_j2k.within`),
    their packets together within ``wire_bytes``, lost tiles concealed from the received ones
    (:func:`.tiled_j2k.over_link_tiled`); its row adds the tile side and the tiles sent and lost, and is lost only
    when every tile is."""
    if valid is not None and valid.all():
        valid = None

    top = float(2**bits - 1)
    ref = img.astype(np.float32) / np.float32(top)  # the real original, on the camera's scale
    img8 = img if bits <= 8 else np.round(ref * 255).astype(np.uint8)  # for the codecs that code 8 bits only
    budget = file_budget(wire_bytes, max_packet)
    rows: list[dict[str, Any]] = []
    for codec in codecs:
        deep = bits > 8 and codec in DEEP_CODECS
        src, sbits = (img, bits) if deep or bits <= 8 else (img8, 8)
        what = f"{bits}-bit" if sbits == bits else f"8-bit copy of {bits}-bit"
        if codec == TILED:
            rows.append(_tiled_row(src, sbits, what, wire_bytes, link, max_packet, tile, ref, valid))
            continue
        try:
            data, q = at_bytes(src, codec, budget, bits if deep else None)
        except ValueError as exc:
            rows.append({"method": codec, "input": what, "file_budget": budget, "error": f"{exc} (the {wire_bytes} "
                         f"wire bytes less {wire_bytes - budget} bytes of packet headers)"})  # fmt: skip
            continue
        r = over_link(data, codec, src.shape, link, max_packet, original=src, bits=sbits)
        rows.append({
            "method": codec,
            "input": what,
            "file_bytes": len(data),
            "quality": q,
            "wire_bytes": r.wire_bytes,
            "packets": r.packets,
            "bytes_received": r.bytes_received,
            "decoded": r.how,
            "lost": r.lost,
            "psnr": None if r.lost else round(_psnr_over(ref, r.image / np.float32(2**sbits - 1), valid), 3),
        })  # fmt: skip
    return rows


def _tiled_row(
    src: np.ndarray,
    bits: int,
    what: str,
    wire_bytes: int,
    link: LinkConfig,
    max_packet: int,
    tile: int | None,
    ref: np.ndarray,
    valid: np.ndarray | None,
) -> dict[str, Any]:
    """:func:`same_bytes`' row of JPEG 2000 in independent tiles (:mod:`.tiled_j2k`)."""
    from . import tiled_j2k as tj

    row: dict[str, Any] = {"method": TILED, "input": what}
    try:
        streams, tile, q = tj.within(src, wire_bytes, max_packet, tile or 0, bits if bits > 8 else None)
    except ValueError as exc:
        if not tile:
            return {**row, "error": f"{exc} (the frame in one tile: the {wire_bytes:,} wire bytes are too few)"}
        n = len(tj.tile_boxes(src.shape[0], src.shape[1], tile)) if tile >= tj.MIN_TILE else 0
        why = f"{exc} ({n} tiles share the {wire_bytes:,} wire bytes)" if n else str(exc)
        return {**row, "tile": tile, "error": why}
    row["tile"] = tile
    r = tj.over_link_tiled(streams, src.shape, tile, link, max_packet, bits=bits)
    lost = int(r.tiles_lost.sum())
    done = f"{len(streams) - lost} of {len(streams)} tiles" + (f", {lost} concealed ({tj.FILL})" if lost else "")
    return {
        **row,
        "tiles": len(streams),
        "file_bytes": sum(map(len, streams)),
        "quality": q,
        "wire_bytes": r.wire_bytes,
        "packets": r.packets,
        "tiles_lost": lost,
        "decoded": "every tile lost" if r.lost else done,
        "lost": r.lost,
        "psnr": None if r.lost else round(_psnr_over(ref, r.image / np.float32(2**bits - 1), valid), 3),
    }


def _psnr_over(ref: np.ndarray, got: np.ndarray, valid: np.ndarray | None) -> float:
    """PSNR (dB) of ``got`` against ``ref`` (both on [0, 1]) over every pixel, or over the ``valid`` ones."""
    from edgeae.metrics import psnr, psnr_db

    if valid is None:
        return float(psnr(ref, got))
    return psnr_db(ref[valid], got.reshape(ref.shape)[valid])

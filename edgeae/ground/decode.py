"""Turn the received pieces of a product back into arrays (numpy only; reconstruction is in ``rebuild``).

A sparse frame comes back as its received samples placed on the regenerated mask, plus ``known`` (pixels
whose value arrived) and ``covered`` (layout 1: pixels whose packet arrived, kept or not; layout 2: the rows
of every band from which at least one packet arrived). Latents come back with a
per-element received mask; patches and telemetry likewise. A piece whose regenerated mask does not hold
the announced number of samples (a PRNG mismatch) is dropped and counted.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeae import masks
from edgeae.wire.products import sample_dtype

from .limits import GroundLimits, LimitError, check_frame
from .reassembly import Assembly
from .sparse_mask import FrameMask


class DecodeError(ValueError):
    """A product that cannot be decoded at all (for example an unsupported mask PRNG version)."""


@dataclass(frozen=True, eq=False)
class SparseResult:
    """Received samples of a sparse frame: ``samples`` (H, W, C) uint8/uint16, zero where unknown."""

    frame_id: int
    samples: np.ndarray
    known: np.ndarray  # bool (H, W): value received
    covered: np.ndarray  # bool (H, W): the packet for this pixel arrived
    mask: np.ndarray  # bool (H, W): the full regenerated sampling mask
    bit_depth: int
    pieces_bad: int

    def as_float(self) -> np.ndarray:
        """Samples as float32 in [0, 1] (divided by 2**bit_depth - 1)."""
        return self.samples.astype(np.float32) / np.float32(2**self.bit_depth - 1)


def decode_sparse(asm: Assembly, max_pixels: int = 1 << 28, limits: GroundLimits | None = None) -> SparseResult:
    """Place every received piece of a sparse frame on its regenerated mask rows.

    The frame size the header claims is checked against ``limits`` (default: ``GroundLimits`` with
    ``max_frame_pixels=max_pixels``) before anything is allocated; over it, :class:`LimitError`. Every piece is
    checked against the rows of the mask it claims before the rest of the mask is generated (:mod:`.sparse_mask`;
    a claim those rows cannot plausibly hold is refused unhashed): when no piece that fits carries a sample,
    :class:`DecodeError`, before any frame-size array is touched (a black frame would pass for a rebuilt one),
    unless every piece fits and the mask keeps no pixel at all (a frame that sampled none, rebuilt as such).
    """
    h0 = asm.header
    check_frame("sparse", asm.frame_id, h0["height"], h0["width"], h0["channels"], _limits(limits, max_pixels))
    h, w, c, bits = h0["height"], h0["width"], h0["channels"], h0["bit_depth"]
    if h0["prng_version"] != masks.PRNG_VERSION:
        raise DecodeError(
            f"frame {asm.frame_id}: mask PRNG version {h0['prng_version']} is not "
            f"{masks.PRNG_VERSION}, the one this ground implements"
        )
    if h0["pattern"] not in masks.PATTERN_IDS:
        raise DecodeError(f"frame {asm.frame_id}: mask pattern {h0['pattern']!r} is not implemented here")
    fm = FrameMask(h0["seed"], (h, w), h0["keep"], h0["pattern"])
    rects: list = []  # layout-1 pieces that fit their rectangle of the mask
    bad = 0
    bands: dict[tuple, list] = {}
    for pkt in asm.pieces.values():
        p = pkt.header
        if p.get("layout", 1) == 2:  # interleaved: checked band by band below
            key = (p["row0"], p["row1"], p["n_band"], p["seg"], p["band_parts"], p["step"])
            bands.setdefault(key, []).append(pkt)
            continue
        r0, r1, c0, c1, n = p["row0"], p["row1"], p["col0"], p["col1"], p["n"]
        if pkt.samples.shape != (n, c) or not fm.fits(r0, r1, c0, c1, n):
            bad += 1
        else:
            rects.append(pkt)
    placed, band_bad = _check_bands(bands, fm, c)
    bad += band_bad
    fit = rects + [q for _, pkts in placed for q in pkts]
    if not any(len(pkt.samples) for pkt in fit):
        if bad:
            raise DecodeError(
                f"frame {asm.frame_id}: none of the {bad} pieces received fits the frame's sample mask "
                "(its seed, pattern or PRNG version disagrees with the pieces): nothing to rebuild"
            )
        if fm.count(0, h, 0, w, 0):  # stops at the first kept pixel (a 70-byte packet could claim an empty band)
            raise DecodeError(
                f"frame {asm.frame_id}: none of the {len(fit)} pieces received carries a sample, and the frame's "
                "sample mask keeps pixels outside them: nothing to rebuild"
            )
    mask = fm.full()
    samples = np.zeros((h, w, c), dtype=sample_dtype(bits))
    known = np.zeros((h, w), dtype=bool)
    covered = np.zeros((h, w), dtype=bool)
    for pkt in rects:
        r0, r1, c0, c1 = pkt.header["row0"], pkt.header["row1"], pkt.header["col0"], pkt.header["col1"]
        ys, xs = np.nonzero(mask[r0:r1, c0:c1])
        samples[ys + r0, xs + c0] = pkt.samples
        known[ys + r0, xs + c0] = True
        covered[r0:r1, c0:c1] = True
    _place_bands(placed, mask, samples, known, covered)
    return SparseResult(asm.frame_id, samples, known, covered, mask, bits, bad)


def _check_bands(bands: dict[tuple, list], fm: FrameMask, c: int) -> tuple[list[tuple[tuple, list]], int]:
    """The layout-2 band groups to place, each with its pieces that fit, and how many pieces were dropped.

    Pieces of one band must agree on its parameters: when two groups claim rows that overlap, the group
    with more pieces is placed and the other dropped, and a band whose regenerated mask does not keep
    ``n_band`` pixels (a PRNG mismatch) is dropped whole, so no sample is ever placed on the wrong pixel. Only the
    strips of a band's own rows are generated (none for a claim its rows cannot plausibly hold), and its count stops
    as soon as it passes ``n_band``.
    """
    from edgeae.wire.interleave import packet_samples

    w = fm.shape[1]
    bad = 0
    placed: list[tuple[tuple, list]] = []
    taken = np.zeros(fm.shape[0], bool)
    for key, pkts in sorted(bands.items(), key=lambda kv: -len(kv[1])):
        r0, r1, n_band, seg, parts, step = key
        if taken[r0:r1].any() or not fm.fits(r0, r1, 0, w, n_band):
            bad += len(pkts)
            continue
        taken[r0:r1] = True
        fit = [
            q for q in pkts if q.samples.shape == (packet_samples(n_band, seg, parts, step, q.header["band_index"]), c)
        ]
        bad += len(pkts) - len(fit)
        placed.append((key, fit))
    return placed, bad


def _place_bands(
    placed: list[tuple[tuple, list]], mask: np.ndarray, samples: np.ndarray, known: np.ndarray, covered: np.ndarray
) -> None:
    """Place the layout-2 pieces :func:`_check_bands` kept (``edgeae.wire.interleave``) on the full ``mask``."""
    from edgeae.wire.interleave import packet_indices

    w = mask.shape[1]
    for (r0, r1, n_band, seg, parts, step), pkts in placed:
        covered[r0:r1] = True  # the band's geometry arrived (its lost packets leave scattered holes)
        flat = np.flatnonzero(mask[r0:r1])  # kept pixels of the band in raster order
        for pkt in pkts:
            pos = flat[packet_indices(n_band, seg, parts, step, pkt.header["band_index"])]
            ys, xs = pos // w + r0, pos % w
            samples[ys, xs] = pkt.samples
            known[ys, xs] = True


@dataclass(frozen=True, eq=False)
class PatchPaste:
    """What :func:`paste_patches` took from a frame's anomaly patches."""

    used: list[int]  # indices of the patches whose pixels were used
    pixels: int  # frame pixels taken from them (overlaps counted once)
    not_used: list[dict]  # {"patch": index, "reason": why it was left out}


def paste_patches(
    image: np.ndarray,
    known: np.ndarray,
    bit_depth: int,
    patches: list[tuple[int, Assembly]],
    limits: GroundLimits | None = None,
) -> PatchPaste:
    """Put the received pixels of a sparse frame's anomaly patches ((index, assembly) pairs: full resolution,
    lossless, what the prioritised downlink sends first) into the frame: ``image`` (float32 (H, W, C) in [0, 1],
    counts / (2**bit_depth - 1) as :meth:`SparseResult.as_float`) and ``known`` (bool (H, W)) are written in place,
    so the fill keeps those pixels as it keeps received samples. A pixel is taken when all its channels arrived (a
    partly received patch gives its whole pixels). A patch is left out, with its reason, when its score is not
    finite, it runs past the frame, its channels or bit depth are not the frame's, or it is over ``limits``.

    No frame-size array is allocated (the memory check of a frame does not count one): the pixels taken are counted
    through ``known``'s own bytes, where bit 1 marks a pixel taken from a patch until it is counted once."""
    if not patches:
        return PatchPaste([], 0, [])
    if known.dtype != bool or known.shape != image.shape[:2]:
        raise ValueError(f"paste_patches: known must be bool {image.shape[:2]}, got {known.dtype} {known.shape}")
    h, w, c = image.shape
    top = np.float32(2**bit_depth - 1)
    marks = known.view(np.uint8)  # 1: known; | 2: taken from a patch, not counted yet (cleared before returning)
    regions: list[tuple[slice, slice]] = []
    used: list[int] = []
    not_used: list[dict] = []
    try:
        for index, asm in sorted(patches, key=lambda p: p[0]):
            hd = asm.header
            x, y, size = hd["x"], hd["y"], hd["size"]
            why = None
            if not math.isfinite(hd["score"]):
                why = f"anomaly score {hd['score']} is not finite"
            elif hd["channels"] != c:
                why = f"{hd['channels']} channel(s), the frame has {c}"
            elif hd["bit_depth"] != bit_depth:
                why = f"{hd['bit_depth']}-bit samples, the frame's are {bit_depth}-bit"
            elif x + size > w or y + size > h:
                why = f"{size}x{size} at (x={x}, y={y}) runs past the frame ({w} wide, {h} high)"
            if why is None:
                try:
                    res = decode_flat(asm, limits)
                except (LimitError, DecodeError) as exc:
                    why = str(exc)
            if why is not None:
                not_used.append({"patch": index, "reason": why})
                continue
            whole = res.received.all(axis=2)  # pixels all of whose channels arrived
            if not whole.any():
                not_used.append({"patch": index, "reason": "no whole pixel received"})
                continue
            region = (slice(y, y + size), slice(x, x + size))
            image[region][whole] = res.values[whole].astype(np.float32) / top
            marks[region][whole] |= 3  # known, and taken from a patch
            regions.append(region)
            used.append(index)
    finally:  # even when a patch failed part way, ``known`` is left holding only 0 and 1
        pixels = 0
        for region in regions:  # overlaps counted once: a pixel counted is cleared of its mark
            sub = marks[region]
            taken = sub > 1
            pixels += int(np.count_nonzero(taken))
            sub[taken] = 1
    return PatchPaste(used, pixels, not_used)


def longest_row_gap(known: np.ndarray) -> int:
    """The longest run of consecutive image rows in which no sample arrived (0 when every row has one)."""
    rows = np.asarray(known).reshape(known.shape[0], -1).any(axis=1)
    if rows.all():
        return 0
    edges = np.flatnonzero(np.diff(np.concatenate([[1], rows.astype(np.int8), [1]])))
    return int((edges[1::2] - edges[::2]).max())


def _limits(limits: GroundLimits | None, max_pixels: int) -> GroundLimits:
    if limits is not None:
        return limits
    return GroundLimits() if max_pixels == 1 << 28 else GroundLimits(max_frame_pixels=max_pixels)


@dataclass(frozen=True, eq=False)
class FlatResult:
    """A flat product: ``values`` in its final shape and ``received`` (same shape, bool)."""

    frame_id: int
    header: dict
    values: np.ndarray
    received: np.ndarray
    overlapping: int = 0  # pieces refused because they cover elements a piece of a lower part number gave

    def not_covered(self) -> int:
        """Elements no placed piece covers."""
        return int(self.received.size - np.count_nonzero(self.received))


def decode_flat(asm: Assembly, limits: GroundLimits | None = None) -> FlatResult:
    """Latents ((tiles, C, h, w)), patch pixels ((size, size, C)) or telemetry bytes from their pieces.

    The element count the header claims is checked against ``limits`` before anything is allocated. Pieces are
    placed in part order; one that covers an element an earlier part gave already (a crafted or damaged range:
    the flight's pieces never overlap) is refused whole and counted in ``overlapping``, so no piece silently
    overwrites another.
    """
    lim = limits or GroundLimits()
    h0 = asm.header
    if asm.kind == "latent":
        shape = tuple(h0["latent_shape"])
        dtype = np.dtype(np.int8 if h0["dtype"] == "int8" else np.float16)
    elif asm.kind == "patch":
        shape = (h0["size"], h0["size"], h0["channels"])
        dtype = sample_dtype(h0["bit_depth"])
    elif asm.kind == "telemetry":
        shape = (h0["total"],)
        dtype = np.dtype(np.uint8)
    else:
        raise DecodeError(f"not a flat product kind: {asm.kind}")
    total = math.prod(int(v) for v in shape)  # Python ints: no int64 overflow on a crafted shape
    cap = {"latent": lim.max_latent_elements, "patch": lim.max_patch_elements}.get(asm.kind, lim.max_telemetry_bytes)
    if total > cap:
        name = {"latent": "max_latent_elements", "patch": "max_patch_elements"}.get(asm.kind, "max_telemetry_bytes")
        unit = "bytes" if name == "max_telemetry_bytes" else "elements"
        raise LimitError(f"{asm.kind} {asm.frame_id}: {total:,} {unit} is over {name} {cap:,}")
    flat = np.zeros(total, dtype=dtype)
    got = np.zeros(total, dtype=bool)
    overlapping = 0
    pieces = asm.pieces
    for part in sorted(pieces):
        pkt = pieces[part]
        e0, n = pkt.header["e0"], pkt.header["n"]
        if got[e0 : e0 + n].any():
            overlapping += 1
            continue
        flat[e0 : e0 + n] = pkt.samples
        got[e0 : e0 + n] = True
    return FlatResult(asm.frame_id, h0, flat.reshape(shape), got.reshape(shape), overlapping)


def dequantise(frame_id: int, header: dict, values: np.ndarray) -> np.ndarray:
    """A latent frame's values as float32 (int8 ones times the frame's ``scale``). A value that is not finite in
    float32 then (a scale float32 cannot hold: the decoder must not see it) raises :class:`DecodeError`."""
    scale = header["scale"] if header["dtype"] == "int8" else 1.0
    with np.errstate(over="ignore", invalid="ignore"):  # said below, not warned
        lat = values.astype(np.float32) * np.float32(scale)
    overflow = int(lat.size - np.count_nonzero(np.isfinite(lat)))
    if overflow:
        raise DecodeError(
            f"latent frame {frame_id}: its int8 scale {scale:g} gives {overflow:,} dequantised latent values that are "
            "not finite in float32: latents not decoded"
        )
    return lat


_UNITS = {"telemetry": "bytes", "patch": "samples", "latent": "latent values"}


def coverage(asm: Assembly, res: FlatResult) -> dict[str, Any]:
    """What a flat product's report says of its pieces' ranges: ``pieces_overlapping`` (refused by
    :func:`decode_flat`) and, when every packet arrived but elements are missing (pieces that overlap or leave
    gaps: not packet loss), ``elements_not_covered``; ``coverage_note`` says it in words."""
    out: dict[str, Any] = {}
    refused = f"{res.overlapping} piece(s) overlapping an earlier part refused" if res.overlapping else ""
    if res.overlapping:
        out["pieces_overlapping"] = res.overlapping
    missing = res.not_covered()
    if missing and len(asm.pieces) == asm.parts:
        out["elements_not_covered"] = missing
        out["coverage_note"] = (
            f"{missing:,} of {res.received.size:,} {_UNITS.get(asm.kind, 'elements')} not covered by any received "
            f"piece (all {asm.parts} packets arrived{'; ' + refused if refused else ''})"
        )
    elif refused:
        out["coverage_note"] = refused
    return out


LATENT_PATCH_REASON = (
    "a latent frame is rebuilt by its decoder from the latents alone: anomaly patches are not pasted into it (each "
    "is written as a product of its own)"
)


def latent_image_note(received: np.ndarray, nonfinite: int, tiles_complete: int) -> str | None:
    """How far to trust a latent frame's image when latent values are missing (lost, or NaN / infinite), or None.
    ``received``: bool (tiles, ...) per latent value."""
    missing = int(received.size - np.count_nonzero(received))
    if not missing:
        return None
    tiles = received.shape[0]
    why = f" ({nonfinite:,} of them NaN or infinite)" if nonfinite else ""
    state = (
        "unusable: no tile's latents arrived whole"
        if tiles_complete == 0
        else f"partial: {tiles - tiles_complete} of its {tiles} tiles are decoded from incomplete latents"
    )
    return f"{missing:,} of {received.size:,} latent values not received{why}, decoded as 0: the image is {state}"


TELEMETRY_MAX_DEPTH = 64
"""Deepest nesting of lists and objects a telemetry record may have (a flight record has a few: the record, its
``anomaly`` list, a patch's entry); a deeper record is refused (:class:`DecodeError`), so no walker of the record or
of a report holding it can run out of stack."""


class _LongInteger(ValueError):
    def __init__(self, digits: int) -> None:
        super().__init__(digits)
        self.digits = digits


def _parse_int(text: str) -> int:
    """``int(text)`` that refuses, before converting, an integer longer than Python converts (its
    ``sys.get_int_max_str_digits()``, 4300 by default; 0: no limit)."""
    cap = sys.get_int_max_str_digits()
    digits = len(text) - text.startswith("-")
    if cap and digits > cap:
        raise _LongInteger(digits)
    return int(text)


def telemetry_json(res: FlatResult, nonfinite: list[str] | None = None) -> dict | None:
    """The telemetry record as JSON when every byte arrived and it parses; else None.

    JSON cannot hold NaN or infinities (``{"temp": NaN}`` parses in Python, but no strict reader takes it):
    such values become None, and their paths (``temp``, ``a.b[2]``) are appended to ``nonfinite``. Valid JSON
    this ground refuses raises :class:`DecodeError` naming the telemetry record and why: nested deeper than
    :data:`TELEMETRY_MAX_DEPTH`, or an integer longer than Python converts.
    """
    if not res.received.all():
        return None
    what = f"telemetry {res.frame_id}: the record's JSON"
    try:
        out = json.loads(res.values.tobytes().decode("utf-8"), parse_int=_parse_int)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    except RecursionError:  # the parser's own stack ran out: far deeper than the bound
        raise DecodeError(f"{what} is nested deeper than {TELEMETRY_MAX_DEPTH} levels: record refused") from None
    except _LongInteger as exc:
        raise DecodeError(
            f"{what} holds an integer of {exc.digits:,} digits, over the {sys.get_int_max_str_digits():,} this "
            "ground converts: record refused"
        ) from None
    top = 1 if isinstance(out, dict) else 0  # another value is wrapped: the wrapper is no level of the record
    try:
        return _finite_values(out if top else {"value": out}, "", [] if nonfinite is None else nonfinite, top)
    except _TooDeep:
        raise DecodeError(f"{what} is nested deeper than {TELEMETRY_MAX_DEPTH} levels: record refused") from None


class _TooDeep(ValueError):
    pass


def _finite_values(obj: object, path: str, nonfinite: list[str], depth: int) -> Any:
    """``obj`` with every NaN or infinite float replaced by None; their paths appended to ``nonfinite``. ``depth``:
    the nesting level of ``obj`` (the record is 1); a list or object deeper than :data:`TELEMETRY_MAX_DEPTH` raises
    :class:`_TooDeep` (so the recursion is bounded)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        nonfinite.append(path or "value")
        return None
    if isinstance(obj, dict | list) and depth > TELEMETRY_MAX_DEPTH:
        raise _TooDeep
    if isinstance(obj, dict):
        return {k: _finite_values(v, f"{path}.{k}" if path else str(k), nonfinite, depth + 1) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite_values(v, f"{path}[{i}]", nonfinite, depth + 1) for i, v in enumerate(obj)]
    return obj

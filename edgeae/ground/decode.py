"""Turn the received pieces of a sparse frame back into arrays (numpy only; reconstruction is in ``rebuild``).

A sparse frame comes back as its received samples placed on the regenerated mask, plus ``known`` (pixels
whose value arrived) and ``covered`` (layout 1: pixels whose packet arrived, kept or not; layout 2: the rows
of every band from which at least one packet arrived). A piece whose regenerated mask does not hold the
announced number of samples (a PRNG mismatch) is dropped and counted. The received pixels of a frame's anomaly
patches are pasted into it here too. Latents, patches and telemetry (flat products, each with a per-element
received mask) are decoded in :mod:`.flat_decode`; their names are importable from here as well.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgeae import masks
from edgeae.wire.products import sample_dtype

from .flat_decode import LATENT_PATCH_REASON as LATENT_PATCH_REASON
from .flat_decode import TELEMETRY_MAX_DEPTH as TELEMETRY_MAX_DEPTH
from .flat_decode import DecodeError as DecodeError
from .flat_decode import FlatResult as FlatResult
from .flat_decode import coverage as coverage
from .flat_decode import decode_flat as decode_flat
from .flat_decode import dequantise as dequantise
from .flat_decode import latent_image_note as latent_image_note
from .flat_decode import telemetry_json as telemetry_json
from .limits import GroundLimits, LimitError, check_frame
from .reassembly import Assembly
from .sparse_mask import FrameMask


class NothingReceived(DecodeError):
    """Every received piece of a sparse frame fits its mask but none carries a sample: the pieces that did were lost
    on the link (or not sent yet), or (``sampled_none``) the frame's whole mask keeps no pixel. Not damage: the frame
    is reported as not received (or as sampling none), or rebuilt from its anomaly patches when it has any.
    ``sent``: the pixels the mask keeps when the pieces' checks generated it whole (a frame of up to
    :data:`~.sparse_mask.STRIP_PIXELS` pixels, or one built for its patches), else None (not hashed)."""

    def __init__(self, frame_id: int, pieces: int, sampled_none: bool, sent: int | None = None) -> None:
        self.frame_id, self.pieces, self.sampled_none, self.sent = frame_id, pieces, sampled_none, sent
        super().__init__(
            f"frame {frame_id}: its sample mask keeps no pixel (the frame sampled none)"
            if sampled_none
            else f"frame {frame_id}: none of the {pieces} pieces received carries a sample (its samples, if it "
            "sampled any, were in pieces not received)"
        )


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


@dataclass(frozen=True, eq=False)
class SparsePlan:
    """A sparse frame's received pieces checked against its mask (:func:`check_sparse`), ready to be placed
    (:func:`place_sparse`): no frame-size array is touched yet (the mask only in the strips the checks needed)."""

    asm: Assembly
    fm: FrameMask
    rects: list  # layout-1 pieces that fit their rectangle of the mask
    placed: list[tuple[tuple, list]]  # layout-2 band groups, each with its pieces that fit
    bad: int  # pieces dropped


def decode_sparse(
    asm: Assembly, max_pixels: int = 1 << 28, limits: GroundLimits | None = None, *, rebuild_empty: bool = False
) -> SparseResult:
    """Place every received piece of a sparse frame on its regenerated mask rows: :func:`check_sparse`, then
    :func:`place_sparse` (a caller that checks the frame's memory hands :func:`check_sparse` its ``room``)."""
    return place_sparse(check_sparse(asm, max_pixels, limits, rebuild_empty=rebuild_empty))


def check_sparse(
    asm: Assembly,
    max_pixels: int = 1 << 28,
    limits: GroundLimits | None = None,
    *,
    rebuild_empty: bool = False,
    room: Callable[[], None] | None = None,
) -> SparsePlan:
    """The received pieces of a sparse frame checked against its mask, before any frame-size array is made.

    The frame size the header claims is checked against ``limits`` (default: ``GroundLimits`` with
    ``max_frame_pixels=max_pixels``) before anything is allocated; over it, :class:`LimitError`; a mask PRNG version
    or pattern this ground does not implement, :class:`DecodeError`. Then, when the frame may be built (a received
    piece carries a sample, or ``rebuild_empty``), ``room()`` (the caller's memory check: it raises to refuse the
    frame) before any of the mask is hashed, as the pieces' checks hash the whole mask (1 byte a pixel, seconds for a
    2^28-pixel frame) when they claim every row, and only they tell whether the pieces fit. Every piece is
    checked against the rows of the mask it claims before the rest of the mask is generated (:mod:`.sparse_mask`;
    a claim those rows cannot plausibly hold is refused unhashed). When no piece that fits carries a sample, before
    any frame-size array is touched or the rest of the mask hashed: :class:`DecodeError` if some piece does not fit
    (a black frame would pass for a rebuilt one), else :class:`NothingReceived` (its ``sent`` the mask's kept pixels
    when the pieces' checks generated the whole mask, ``sampled_none`` when that is 0), unless ``rebuild_empty``
    (the caller has anomaly patches of the frame to paste): then the frame is built with no sample known.
    """
    h0 = asm.header
    check_frame("sparse", asm.frame_id, h0["height"], h0["width"], h0["channels"], _limits(limits, max_pixels))
    h, w, c = h0["height"], h0["width"], h0["channels"]
    if h0["prng_version"] != masks.PRNG_VERSION:
        raise DecodeError(
            f"frame {asm.frame_id}: mask PRNG version {h0['prng_version']} is not "
            f"{masks.PRNG_VERSION}, the one this ground implements"
        )
    if h0["pattern"] not in masks.PATTERN_IDS:
        raise DecodeError(f"frame {asm.frame_id}: mask pattern {h0['pattern']!r} is not implemented here")
    if room is not None and (rebuild_empty or any(len(pkt.samples) for pkt in asm.pieces.values())):
        room()  # a frame none of whose pieces carries a sample is never built (DecodeError or NothingReceived below)
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
        if not rebuild_empty:  # the rest of the mask is not hashed (a 70-byte packet can claim an empty band)
            sent = int(np.count_nonzero(fm.mask)) if fm.generated() else None  # hashes nothing more
            raise NothingReceived(asm.frame_id, len(fit), sent == 0, sent)
    return SparsePlan(asm, fm, rects, placed, bad)


def place_sparse(plan: SparsePlan) -> SparseResult:
    """The frame of a :func:`check_sparse` plan: its whole mask, and its samples, ``known`` and ``covered`` arrays
    (the frame-size part of the decode)."""
    h0 = plan.asm.header
    h, w, c, bits = h0["height"], h0["width"], h0["channels"], h0["bit_depth"]
    mask = plan.fm.full()
    samples = np.zeros((h, w, c), dtype=sample_dtype(bits))
    known = np.zeros((h, w), dtype=bool)
    covered = np.zeros((h, w), dtype=bool)
    for pkt in plan.rects:
        r0, r1, c0, c1 = pkt.header["row0"], pkt.header["row1"], pkt.header["col0"], pkt.header["col1"]
        ys, xs = np.nonzero(mask[r0:r1, c0:c1])
        samples[ys + r0, xs + c0] = pkt.samples
        known[ys + r0, xs + c0] = True
        covered[r0:r1, c0:c1] = True
    _place_bands(plan.placed, mask, samples, known, covered)
    return SparseResult(plan.asm.frame_id, samples, known, covered, mask, bits, plan.bad)


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
            why = patch_unusable(hd, (h, w, c), bit_depth)
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


def patch_unusable(hd: dict, shape: tuple[int, int, int], bit_depth: int) -> str | None:
    """Why an anomaly patch (its header ``hd``) cannot be pasted into a frame of ``shape`` (H, W, C) and
    ``bit_depth``, from its header alone, or None: a score that is not finite, other channels or bit depth, past
    the frame."""
    h, w, c = shape
    x, y, size = hd["x"], hd["y"], hd["size"]
    if not math.isfinite(hd["score"]):
        return f"anomaly score {hd['score']} is not finite"
    if hd["channels"] != c:
        return f"{hd['channels']} channel(s), the frame has {c}"
    if hd["bit_depth"] != bit_depth:
        return f"{hd['bit_depth']}-bit samples, the frame's are {bit_depth}-bit"
    if x + size > w or y + size > h:
        return f"{size}x{size} at (x={x}, y={y}) runs past the frame ({w} wide, {h} high)"
    return None


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

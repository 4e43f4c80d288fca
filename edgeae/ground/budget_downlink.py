"""The budgeted downlink of one frame: what each method sends within a byte budget, and what the ground rebuilds.

Five ways to spend the same wire bytes on one frame (packets, headers and CRCs counted for all five):

- ``jpeg2000``: the whole frame as one JPEG 2000 file (:mod:`.baselines`), sent as a flat product.
- ``j2k-tiled``: JPEG 2000 as a mission sends it over a lossy link (:mod:`.tiled_j2k`): independent tiles, each its
  own codestream in its own packets (a tile per packet by default), lost tiles concealed from the received ones.
- ``sparse``: the frame's sparse samples (payload layout 2, lossless sample codec) at the keep fraction that
  fills the budget, rebuilt on the ground with the CAE.
- ``prioritised``: what edgeae's flight runtime sends: the top-ranked anomaly patches at full resolution
  (lossless, the same sample codec), as many as fit in ``patch_share`` of the budget, then sparse context in
  the bytes left; the ground rebuilds the context with the CAE, using every full-resolution pixel that
  arrived as known, and pastes the patches in exactly.
- ``prioritised-j2k``: the same patches, with the context as one JPEG 2000 file in the bytes left.

Flight side: :func:`plan` (with :func:`score_grid` ranking the grid's patches); ground side: :func:`receive`
rebuilds the frame from the packets that arrive. :mod:`.science` measures how much science that returns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgeae.wire.codec import DEFAULT_SAMPLE_CODEC
from edgeae.wire.packets import SequenceCounters, WireConfig, packetise
from edgeae.wire.products import AnomalyPatch, SparseFrame

from . import baselines, tiled_j2k
from .decode import DecodeError, NothingReceived, decode_flat, decode_sparse
from .feature_sets import LabelledFrame
from .link import LinkConfig, simulate
from .pipeline import keep_for_bytes
from .reassembly import Receiver
from .sources import sparse_from_samples
from .station import Filler
from .tiled_j2k import MIN_TILE

METHODS = ("jpeg2000", "j2k-tiled", "sparse", "prioritised", "prioritised-j2k")


@dataclass(frozen=True)
class PlanConfig:
    """How the budget is spent. ``budgets``: per-frame wire bytes as fractions of the raw frame's bytes.
    ``patch_share``: the most of a budget the prioritised downlink spends on full-resolution patches; never the
    bytes its context needs to send anything (:func:`context_floor`: one sparse packet with one sample, or the
    smallest JPEG 2000 file of the frame), whatever the share (at 0.99-1 the patches left under one packet of
    context before session 37: the sparse context went over the budget, the JPEG 2000 one raised).
    ``patch_copies``: each patch sent this many times (later copies after the context, so one burst does not
    take both); the ground keeps the first copy of each packet. ``codec_head_copies``: extra copies of the first
    packet of a codec file (the JPEG 2000 baseline and the prioritised-j2k context), sent last: it holds the
    file's main header, without which nothing of the file decodes; the copies come out of the same budget.
    Default 0: one copy measured no gain over 8 link seeds at 20% loss (±1 dB either way; the file loses more
    to truncation at the first lost packet than to a lost header, and the copy takes 1 KB of its bytes); not for
    ``j2k-tiled``, whose every tile has its own header. ``j2k_tile``: the tile side of ``j2k-tiled`` (px); 0 (default):
    per frame and budget, a tile per packet (:func:`.tiled_j2k.packet_tile`, the rule of the link benchmark's tiled
    row too: 64 px there), larger when a tile cannot fit its share at all."""

    budgets: tuple[float, ...] = (0.02, 0.05, 0.10)
    max_packet: int = 1024
    codec: str = DEFAULT_SAMPLE_CODEC
    patch_share: float = 0.5
    patch_copies: int = 1
    codec_head_copies: int = 0
    mask_seed: int = 7
    j2k_tile: int = 0

    def __post_init__(self) -> None:
        if not self.budgets or any(not 0.0 < b <= 1.0 for b in self.budgets):
            raise ValueError(f"budgets must be fractions of the raw frame in (0, 1], got {self.budgets}")
        if not 0.0 <= self.patch_share <= 1.0:
            raise ValueError(f"patch_share must be in [0, 1], got {self.patch_share}")
        if self.patch_copies < 1:
            raise ValueError(f"patch_copies must be >= 1, got {self.patch_copies}")
        if self.codec_head_copies < 0:
            raise ValueError(f"codec_head_copies must be >= 0, got {self.codec_head_copies}")
        if self.j2k_tile and self.j2k_tile < MIN_TILE:
            raise ValueError(f"j2k_tile must be 0 (one tile per packet) or at least {MIN_TILE} px, got {self.j2k_tile}")

    @property
    def wire(self) -> WireConfig:
        return WireConfig(self.max_packet, self.codec)


@dataclass(frozen=True, eq=False)
class Downlink:
    """The packets one method sends for one frame, in send order, and what they carry."""

    method: str
    packets: list[bytes]
    keep: float = 0.0
    patches: tuple[tuple[int, int], ...] = ()  # (x, y) of the full-resolution patches, in rank order
    tile: int = 0  # j2k-tiled: the tile side (px)

    @property
    def wire_bytes(self) -> int:
        return sum(map(len, self.packets))


# ------------------------------------------------------------------------------------------- flight side
def score_grid(
    frame: LabelledFrame, scorer: Callable[[np.ndarray], dict], min_valid: float = 0.9, score: str = "terms-max"
) -> np.ndarray:
    """The anomaly score of every grid patch (``frame.grid()`` order); patches with less than ``min_valid``
    of non-black pixels (no-data margins) score -inf, as the flight runtime skips them. ``score``: for a VAE
    scorer, ``"terms-max"`` (the orbital mission's flight score, :mod:`edgeae.anomaly.terms`, over the frame's
    valid patches) or ``"a"`` (a(x)); other scorers give their own score."""
    from edgeae.anomaly.score import score_batches
    from edgeae.anomaly.terms import SCORE_MODES, frame_terms_max

    if score not in SCORE_MODES:
        raise ValueError(f"score must be one of {SCORE_MODES}, got {score!r}")

    p = frame.patch
    img = frame.samples.astype(np.float32) / np.float32(frame.top)
    grid = frame.grid()
    valid = np.array([(frame.samples[y : y + p, x : x + p] > 0).any(axis=2).mean() >= min_valid for x, y in grid])
    tiles = (np.moveaxis(img[y : y + p, x : x + p], -1, 0) for (x, y), ok in zip(grid, valid, strict=True) if ok)
    out = np.full(len(grid), -np.inf)
    if valid.any():
        got = score_batches(scorer, tiles, 64)
        terms = score == "terms-max" and "rec" in got and "mu2" in got
        out[valid] = frame_terms_max(got["rec"], got["mu2"]) if terms else got["score"]
    return out


def sparse_within(
    samples: np.ndarray,
    budget: int,
    cfg: PlanConfig,
    counters: SequenceCounters,
    frame_id: int = 0,
    bits: int = 8,
) -> tuple[SparseFrame, list[bytes]]:
    """The sparse frame (``samples`` of ``bits`` bits) with the largest keep whose packets fit ``budget`` wire
    bytes."""
    seed = cfg.mask_seed + frame_id
    fr = sparse_from_samples(samples, bits, keep_for_bytes(samples, bits, budget, cfg.wire, seed), seed,
                             frame_id=frame_id)  # fmt: skip
    return fr, packetise(fr, config=cfg.wire, counters=counters)


def one_sample_bytes(samples: np.ndarray, bits: int, cfg: PlanConfig) -> int:
    """The wire bytes of a sparse frame of ``samples`` that carries one sample, packed as :func:`sparse_within`
    sends it (a one-pixel frame of its first sample: the headers do not depend on the frame's size; one sample is
    sent raw, so every pixel's takes as many bytes). Constant cost whatever the frame's size."""
    from edgeae.masks import PRNG_VERSION

    c = samples.shape[2]
    one = SparseFrame(
        0, 1, 1, c, bits, 1.0, "uniform", 0, PRNG_VERSION, np.ascontiguousarray(samples[:1, :1]).reshape(1, c)
    )
    return sum(map(len, packetise(one, config=cfg.wire)))


def plan(
    frame: LabelledFrame,
    scores: np.ndarray | None,
    budget: int,
    method: str,
    cfg: PlanConfig,
    floors: ContextFloors | None = None,
) -> Downlink:
    """What ``method`` sends for ``frame`` within ``budget`` wire bytes (``scores``: the grid's anomaly scores,
    needed by the prioritised methods; ``floors``: the frame's :class:`ContextFloors`, kept by a caller that plans
    it at several budgets, so a JPEG 2000 context's floor is encoded once a frame, not once a budget)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
    s, bits = frame.samples, frame.bits
    deep = bits if bits > 8 else None  # JPEG 2000 codes a 12- or 16-bit frame at its own depth
    counters = SequenceCounters()
    head = cfg.codec_head_copies * cfg.max_packet  # the header copies' share of a codec file's budget
    if method == "jpeg2000":
        data, _ = baselines.at_bytes(s, "jpeg2000", baselines.file_budget(budget - head, cfg.max_packet), deep)
        return Downlink(method, _file_packets(data, cfg, counters) + _head_copies(data, cfg, counters))
    if method == "j2k-tiled":
        streams, tile, _ = tiled_j2k.within(s, budget, cfg.max_packet, cfg.j2k_tile, deep)
        return Downlink(method, tiled_j2k.tile_packets(streams, cfg.max_packet, counters), tile=tile)
    if method == "sparse":
        fr, pk = sparse_within(s, budget, cfg, counters, bits=bits)
        return Downlink(method, pk, keep=fr.keep)
    if scores is None:
        raise ValueError("the prioritised downlink needs the grid's anomaly scores")
    floors = floors if floors is not None and floors.frame is frame and floors.cfg == cfg else ContextFloors(frame, cfg)
    chosen, first, used = _top_patches(frame, scores, budget, cfg, counters, lambda: floors(method))
    if method == "prioritised":
        fr, context = sparse_within(s, budget - used, cfg, counters, bits=bits)
        keep = fr.keep
    else:  # prioritised-j2k: the context as one JPEG 2000 file
        data, _ = baselines.at_bytes(s, "jpeg2000", baselines.file_budget(budget - used - head, cfg.max_packet), deep)
        context, keep = _file_packets(data, cfg, counters), 0.0
    repeats = [
        q
        for _ in range(cfg.patch_copies - 1)
        for ap in chosen
        for q in packetise(ap, config=cfg.wire, counters=counters)
    ]
    heads = _head_copies(data, cfg, counters) if method == "prioritised-j2k" else []
    patches = tuple((a.x, a.y) for a in chosen)
    return Downlink(method, first + context + repeats + heads, keep=keep, patches=patches)


def budget_floor(
    frame: LabelledFrame, methods: tuple[str, ...], cfg: PlanConfig, floors: ContextFloors | None = None
) -> tuple[int, str]:
    """The fewest wire bytes within which every method of ``methods`` can send ``frame`` with a sample (:func:`plan`
    raises under it, or sends no sample), and why: the largest :func:`context_floor` of the methods (from
    ``floors``, which keeps them for the frame's plans)."""
    floors = floors or ContextFloors(frame, cfg)
    return max((floors(m) for m in methods), key=lambda f: f[0])


class ContextFloors:
    """:func:`context_floor` of one frame under one config, each kind (JPEG 2000, tiled, sparse) computed once: the JPEG
    2000 floor encodes the whole frame (0.4 s on a 1200×1648 RGB frame), which a plan of several budgets asked for
    at each budget until session 37. Call it with a method."""

    def __init__(self, frame: LabelledFrame, cfg: PlanConfig) -> None:
        self.frame, self.cfg = frame, cfg
        self._got: dict[str, tuple[int, str]] = {}

    def __call__(self, method: str) -> tuple[int, str]:
        kind = {"prioritised-j2k": "jpeg2000", "jpeg2000": "jpeg2000", "j2k-tiled": "j2k-tiled"}.get(method, "sparse")
        if kind not in self._got:
            self._got[kind] = context_floor(self.frame, kind, self.cfg)
        return self._got[kind]


def context_floor(frame: LabelledFrame, method: str, cfg: PlanConfig) -> tuple[int, str]:
    """The fewest wire bytes with which ``method`` sends anything of ``frame`` (for the prioritised methods: its
    context; the patches never take them), and why: one sparse packet with one sample (:func:`one_sample_bytes`),
    or for the JPEG 2000 methods the codec's file at its lowest quality in its packets (with ``codec_head_copies``;
    one encoding of the frame); for ``j2k-tiled`` its tiles at the lowest quality (:func:`.tiled_j2k.floor_bytes`)."""
    from edgeae.wire.layout import overhead

    if method == "j2k-tiled":
        deep = frame.bits if frame.bits > 8 else None
        return tiled_j2k.floor_bytes(frame.samples, cfg.max_packet, cfg.j2k_tile, deep)
    if method not in ("jpeg2000", "prioritised-j2k"):
        one = one_sample_bytes(frame.samples, frame.bits, cfg)
        header = overhead("sparse")
        return one, f"one packet with one sample ({one} B: {header} B of headers and {one - header} B of sample)"
    deep = frame.bits if frame.bits > 8 else None
    size = len(baselines.encode(frame.samples, "jpeg2000", baselines.QUALITY_RANGE["jpeg2000"][0], deep))
    per = cfg.max_packet - overhead("telemetry")
    need = size + -(-size // per) * overhead("telemetry") + cfg.codec_head_copies * cfg.max_packet
    return need, f"the smallest JPEG 2000 file of the frame ({size:,} B, {need:,} B in its packets)"


def _top_patches(
    frame: LabelledFrame,
    scores: np.ndarray,
    budget: int,
    cfg: PlanConfig,
    counters: SequenceCounters,
    floor: Callable[[], tuple[int, str]],
) -> tuple[list[AnomalyPatch], list[bytes], int]:
    """The best-scoring grid patches whose packets (times ``patch_copies``) fit ``patch_share`` of the budget and
    leave the context its ``floor`` (:func:`context_floor`, asked for once a patch fits the share)."""
    grid, p, s = frame.grid(), frame.patch, frame.samples
    chosen: list[AnomalyPatch] = []
    packets: list[bytes] = []
    used = 0
    room: int | None = None  # the bytes the patches may take: the share, less what the context needs
    for rank, k in enumerate(np.argsort(-scores, kind="stable")):
        if not np.isfinite(scores[k]):
            break
        x, y = (int(v) for v in grid[k])
        ap = AnomalyPatch(0, x, y, p, float(scores[k]), np.ascontiguousarray(s[y : y + p, x : x + p]), frame.bits, rank)
        pk = packetise(ap, config=cfg.wire)  # its size (sequence counts do not change it)
        cost = sum(map(len, pk)) * cfg.patch_copies
        if used + cost > cfg.patch_share * budget:
            break
        if room is None:
            room = budget - floor()[0]
        if used + cost > room:
            break
        packets += packetise(ap, config=cfg.wire, counters=counters)
        chosen.append(ap)
        used += cost
    return chosen, packets, used


def _file_packets(data: bytes, cfg: PlanConfig, counters: SequenceCounters) -> list[bytes]:
    """A codec file as a flat product (the telemetry APID), as :func:`baselines.over_link` sends it."""
    from edgeae.wire.products import TelemetryRecord

    return packetise(TelemetryRecord(0, data), config=WireConfig(cfg.max_packet), counters=counters)


def _head_copies(data: bytes, cfg: PlanConfig, counters: SequenceCounters) -> list[bytes]:
    """``cfg.codec_head_copies`` resends of the codec file's first packet (its main header)."""
    from edgeae.wire.products import TelemetryRecord

    if not cfg.codec_head_copies:
        return []
    parts = [0] * cfg.codec_head_copies
    return packetise(TelemetryRecord(0, data), config=WireConfig(cfg.max_packet), counters=counters, parts=parts)


# ------------------------------------------------------------------------------------------- ground side
@dataclass(frozen=True, eq=False)
class Received:
    """The ground's rebuild: ``image`` float32 (H, W, C) in [0, 1]; ``exact`` bool (H, W) pixels that arrived
    at full resolution (patches); ``whole`` (x, y) of patches that arrived complete; ``lost``: nothing usable;
    ``patches_clipped``: patches that ran past the frame (only their pixels inside it were used);
    ``sparse_refused``: sparse frames the decode refused (:class:`~.decode.DecodeError`: pieces that do not fit its
    mask and none that fits carries a sample, e.g. a corrupted packet that passed the CRC), taken as not received (a
    frame whose received pieces all fit but carry no sample, the others lost, is not received either, not counted;
    one whose whole mask, generated by the pieces' checks, keeps no pixel is a sparse frame of no sample: its patches
    are filled as the ground station fills them, not spread as their mean)."""

    image: np.ndarray
    exact: np.ndarray
    whole: tuple[tuple[int, int], ...]
    lost: bool
    patches_clipped: int = 0
    sparse_refused: int = 0


def receive(frame: LabelledFrame, sent: Downlink, link: LinkConfig, fill: Filler | None) -> Received:
    """Send ``sent`` over ``link`` and rebuild the frame as the ground would: a codec file decoded as far as it
    arrived, sparse samples and full-resolution pixels filled with ``fill``, patches pasted in exactly; when only
    patches arrived, the rest of the frame at the patches' mean."""
    h, w, c = frame.samples.shape
    rx = Receiver()
    for _, pkt in simulate(sent.packets, link)[0]:
        rx.receive(pkt)
    if sent.method == "j2k-tiled":  # the tiles that arrived whole, the others concealed from them
        tiled, lost = tiled_j2k.rebuild_products(rx.products, (h, w, c), sent.tile, bits=frame.bits)
        return Received(tiled.astype(np.float32) / np.float32(frame.top), np.zeros((h, w), bool), (), bool(lost.all()))
    img = np.zeros((h, w, c), np.float32)
    known = np.zeros((h, w), bool)
    exact = np.zeros((h, w), bool)
    patch_px = np.zeros((h, w, c), np.float32)
    context: np.ndarray | None = None
    sparse = False
    whole = []
    clipped = refused = 0
    for (kind, _, _), asm in rx.products.items():
        if kind == "sparse":
            try:
                res = decode_sparse(asm)
            except NothingReceived as exc:
                if not exc.sampled_none:  # no sample arrived (lost on the link): as if no sparse frame arrived
                    continue
                # its mask keeps no pixel (no sample to lose): a sparse frame of no sample, filled from what else
                # is known (its patches), as the ground station rebuilds it and the sweep did before 9ea6a64
                res = decode_sparse(asm, rebuild_empty=True)
            except DecodeError:  # nothing of it can be placed: as if no sparse frame arrived
                refused += 1
                continue
            img = res.as_float()
            known |= res.known
            sparse = True
        elif kind == "telemetry":  # a codec file: the frame, or the context of the patches
            f = decode_flat(asm)
            im, _ = baselines.decode_partial(f.values, f.received, "jpeg2000", frame.samples.shape, frame.samples,
                                             frame.samples.dtype)  # fmt: skip
            context = None if im is None else im.astype(np.float32) / np.float32(frame.top)
        elif kind == "patch":
            res_p = decode_flat(asm)
            hd = res_p.header
            x, y, p = hd["x"], hd["y"], hd["size"]
            top = 2 ** int(hd["bit_depth"]) - 1  # a patch's own scale (the frame's, from the flight)
            ph, pw = max(0, min(p, h - y)), max(0, min(p, w - x))  # the part inside the frame
            if (ph, pw) != (p, p):  # a patch past the frame's edge: its pixels outside have nowhere to go
                clipped += 1
            got = np.asarray(res_p.received.all(axis=2))[:ph, :pw]
            patch_px[y : y + ph, x : x + pw][got] = res_p.values[:ph, :pw][got].astype(np.float32) / np.float32(top)
            exact[y : y + ph, x : x + pw] |= got
            if (ph, pw) == (p, p) and got.all():
                whole.append((int(x), int(y)))
    img[exact] = patch_px[exact]
    known |= exact
    if context is not None:
        out = context
    elif known.any() and not sparse:  # only whole patches arrived (their context was lost): a learned filler
        # wants scattered samples and paints far-off holes dark (7 dB frames); the patches' mean is the estimate
        out = np.broadcast_to(img[known].mean(axis=0), img.shape).astype(np.float32)
    elif known.any():
        out = np.clip(np.asarray(fill(img, known), np.float32), 0.0, 1.0) if fill is not None else img
    else:
        return Received(np.full((h, w, c), 0.5, np.float32), exact, (), True, clipped, refused)
    out = out.copy()
    out[exact] = patch_px[exact]
    return Received(out, exact, tuple(whole), False, clipped, refused)

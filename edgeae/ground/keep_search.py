"""The keep fraction whose sparse frame fills a byte budget (:func:`keep_for_bytes`): the ``sparse`` methods of
``edgeae downlink plan`` (:mod:`.budget_downlink`) and the link benchmark. Numpy and the wire package.

Every step packs a frame (:func:`wire_bytes`), as its size is close to, not exactly, monotone in its samples: on a
2048×2048 frame of 2 MB of packets one sample more or less moves the planner's packet count by a few packets
either way (±400 B, 70 B a packet), so within ~1,000 sample counts of the budget any frame may fit or not. The
frames themselves and the estimates that pick which to pack are in :mod:`.keep_frames`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np

from edgeae.wire.layout import MAX_PACKET, WireConfig, overhead
from edgeae.wire.products import SparseFrame

from .keep_frames import KEEP_STEPS as KEEP_STEPS
from .keep_frames import KeptPixels, Window, planned_packets

_Point = tuple[int, int, int]  # (t, or the number of pixels added to the smaller frame; wire bytes; samples)
_Sized = tuple[int, int]  # a frame's wire bytes and packets
_WINDOW = 1 << 18  # pixels between the two keeps past which packings narrow them first (a Window holds 24 B each)
_ROUNDS = 6  # frames packed where the estimates point, at most
_ESTIMATED = 256  # packets of the larger frame from which estimates (16 packets coded each) are worth their cost
MAX_PARTS = 2**16 - 1
"""Packets one product can have: its 16-bit part count (:func:`edgeae.wire.sparse_plan.too_many_packets`)."""
_HELPS = f"larger packets (up to {MAX_PACKET:,} B) or cut the frame into at least {{}} tiles, each a frame of its own"


def keep_for_bytes(
    samples: np.ndarray, bit_depth: int, budget: int, wire: WireConfig, seed: int, pattern: str = "uniform"
) -> float:
    """The largest keep fraction whose sparse frame of ``samples`` (H, W, C) takes at most ``budget`` wire bytes
    under ``wire``. For the uniform mask (nested in the keep) its frame fits and the frame that also sends the next
    pixel the mask would add does not, for every budget from a frame of no sample up; for the jittered mask (its
    grid's, :func:`edgeae.masks.jitter_grid`) the frame of the next grid does not. The size is close to, not
    exactly, monotone in the samples kept (the planner's packet count, the codec's blocks): a frame of a few more
    samples may fit again; the search does not look past the first that does not. ``ValueError`` when no keep
    fits: the budget is under the smallest frame (a uniform mask's of no sample: its packet headers).
    A frame of more than :data:`MAX_PARTS` packets (one product's) does not fit, whatever its bytes, and when that
    limit, not the budget, stops the keep (the next frame is over it while its bytes would fit ``budget``) the
    budget is over the largest frame one product carries: refused, with that frame's size as the budget to give
    (:func:`_packet_limited`; until review r2 #3 that frame was returned without a word, up to 20 % under the
    budget). :class:`~edgeae.wire.sparse_plan.TooManyPackets` (a ValueError) says so in one line, before the search
    when ``budget`` is more than a packet over what that many full packets carry (:func:`_too_many_for`: unless the
    whole frame fits in fewer, keep 1; a coded frame is packed once to find out), else after it.

    Secant steps on the wire size over the thresholds ``t`` of :data:`KEEP_STEPS` (keep ``t / 2**53``; from the
    frame's raw bytes, then its bytes per sample) until a keep that fits and one that does not are known, usually
    two packings. For the uniform mask, :class:`~.keep_frames.KeptPixels` then gives every frame between the two
    (one pass over the frame) and :class:`~.keep_frames.Window` builds each from the larger one's samples; in
    layout 2, for frames of at least :data:`_ESTIMATED` packets, up to :data:`_ROUNDS` frames are packed where size
    estimates point (:func:`_estimated`); false position on the packed sizes (:func:`_crossing`; near the packet
    limit on the packets, :func:`_fill`) ends the search.
    Cost, measured on a 2-core machine (docs/ground.md): 5-11 packings a search on 0.6-4 Mpixel frames at 2-50 %
    budgets (6-17 in session 37's first exact search, 1-2 before it, which stopped within 1.5 % of the budget);
    memory: a bit per pixel, 4 bytes per pixel between the two keeps (28 while they are sorted and searched) and two
    copies of the frame's samples, besides the packing's own (10 MB at a 2048×2048 frame's 50 % budget, 85 MB in
    the first exact search). The jittered mask: false position over the grids between the two
    (:func:`_grid_steps`), ~3 packings."""
    from edgeae.masks import PRNG_VERSION, iter_mask_strips

    h, w, c = samples.shape
    sized: dict[tuple[str, int], _Sized] = {}  # ("t", threshold) or ("k", frame) -> wire bytes, packets (_sendable)

    def packed(key: tuple[str, int], values: np.ndarray, t: int, counts: np.ndarray) -> _Point:  # the frame of t
        frame = SparseFrame(0, h, w, c, bit_depth, t / KEEP_STEPS, pattern, seed, PRNG_VERSION, values)
        fill, size, n = _sendable(frame, wire, counts, budget)
        sized[key] = size, n
        return key[1], fill, len(values)

    def at(t: int) -> _Point:  # the frame of threshold t, from its mask a strip at a time (as sparse_from_samples)
        parts, counts = [], np.zeros(h, np.int64)
        for r0, rows in iter_mask_strips(seed, (h, w), t / KEEP_STEPS, pattern):
            parts.append(samples[r0 : r0 + len(rows)][rows])
            counts[r0 : r0 + len(rows)] = np.count_nonzero(rows, axis=1)
        return packed(("t", t), np.concatenate(parts), t, counts)

    def whole() -> _Sized:  # the frame of keep 1
        return at(KEEP_STEPS)[1], sized["t", KEEP_STEPS][1]

    too_many = _too_many_for(samples.shape, samples.dtype.itemsize, budget, wire, bit_depth, whole)
    if too_many is not None:
        from edgeae.wire.sparse_plan import TooManyPackets

        raise TooManyPackets(too_many)
    if _past_full(budget, wire, c, samples.dtype.itemsize):  # the whole frame fits, in fewer (_too_many_for)
        return 1.0
    fits, over = _bracket(at, budget, int(budget / max(samples.nbytes, 1) * KEEP_STEPS))
    if over is None:
        return 1.0

    def result(lo: _Sized, hi: _Sized, n: tuple[int, int], t: int) -> float:  # keep t, lo's (n: lo's, hi's samples)
        why = _packet_limited(samples.shape, bit_depth, budget, wire, lo, hi, n, t / KEEP_STEPS)  # unless the limit
        if why is not None:
            from edgeae.wire.sparse_plan import TooManyPackets

            raise TooManyPackets(why)
        return t / KEEP_STEPS

    if pattern != "uniform":  # jittered: one mask per grid, searched over the grids between the two
        grids = [fits[0], *_grid_steps((h, w), fits[0], over[0])]  # the last one's mask is over's

        def grid(i: int) -> _Point:
            return (i, *at(grids[i])[1:]) if i < len(grids) - 1 else (i, over[1], over[2])

        lo, hi = _crossing(grid, (0, *fits[1:]), (len(grids) - 1, *over[1:]), budget, lambda a, b: b[0] - a[0] > 1)
        last = len(grids) - 1  # its frame is over's, packed under over's threshold
        ends = sized["t", grids[lo[0]]], sized["t", grids[hi[0]] if hi[0] < last else over[0]]
        return result(*ends, (lo[2], hi[2]), grids[lo[0]])
    kept = KeptPixels(samples, seed, fits[0], over[0])

    def count(k: int) -> _Point:
        values, counts, _ = kept.values(k)
        return packed(("k", k), values, kept.threshold(k), counts)

    lo, hi = (0, fits[1], fits[2]), (kept.steps, over[1], over[2])
    sized["k", lo[0]], sized["k", hi[0]] = sized["t", fits[0]], sized["t", over[0]]  # the same pixels
    lo, hi = _crossing(count, lo, hi, budget, lambda a, b: b[0] - a[0] > _WINDOW)  # rarely: a wide first bracket
    win = Window(kept, lo[0], hi[0])

    def near(k: int) -> _Point:  # a frame between the two, from the larger one's samples
        values, counts = win.frame(k)
        return packed(("k", k), values, kept.threshold(k), counts)

    if wire.layout == 2 and sized["k", hi[0]][1] >= _ESTIMATED:
        lo, hi = _estimated(win, near, lambda k: sized["k", k], lo, hi, budget, wire, bit_depth)
    lo, hi = _crossing(near, lo, hi, budget, lambda a, b: b[0] - a[0] > 1)
    return result(sized["k", lo[0]], sized["k", hi[0]], (lo[2], hi[2]), kept.threshold(lo[0]))


def _estimated(
    win: Window,
    count: Callable[[int], _Point],
    sized: Callable[[int], _Sized],
    lo: _Point,
    hi: _Point,
    budget: int,
    wire: WireConfig,
    bits: int,
) -> tuple[_Point, _Point]:
    """Narrow the frames ``lo`` (fits) and ``hi`` (does not) of ``win``, packing (``count``) up to :data:`_ROUNDS`
    frames where estimated sizes point: the frame not yet packed of the two adjacent ones whose estimates straddle
    the budget the furthest (within 8 of a crossing of the estimates). The search ends there when the estimates
    were right: the packet count as the planner first plans it (exact but where a packet does not fit), 70 B a
    packet, and the coded samples on the line between the two (±80 B on a 2048×2048 frame, where the count moves
    ±400 B). ``sized``: the wire bytes and packets of a frame packed (:func:`_sendable`). Not while the frame that
    does not fit is over the packet limit (its bytes unknown): false position on the packets is as quick there."""

    per, unit = overhead("sparse", 2), win.values.shape[1] * win.values.dtype.itemsize

    planned: dict[int, int] = {}  # k -> its estimated packets (the same whatever the ends)

    def guess(k: int, ends: tuple[_Point, _Point]) -> _Point:
        (k0, b0, _), (k1, b1, _) = ends
        if k in (k0, k1):  # their fills (_fill)
            return k, (b0 if k == k0 else b1), 0
        if k not in planned:
            planned[k] = planned_packets(*win.take(k), wire, bits, unit)
        (s0, p0), (s1, p1) = sized(k0), sized(k1)
        c0, c1 = s0 - per * p0, s1 - per * p1  # the coded samples of the two
        return k, _fill(int(per * planned[k] + c0 + (c1 - c0) * (k - k0) / (k1 - k0)), planned[k], budget), 0

    for _ in range(_ROUNDS):
        if hi[0] - lo[0] <= 1 or sized(hi[0])[1] > MAX_PARTS:
            break
        at = partial(guess, ends=(lo, hi))
        x = _crossing(at, lo, hi, budget, lambda a, b: b[0] - a[0] > 1)[0][0]
        near = {k: at(k)[1] for k in range(max(lo[0], x - 8), min(hi[0], x + 9) + 1)}
        _, k = max((min(budget - near[k], near[k + 1] - budget - 1), k) for k in near if k + 1 in near)
        p = count(k if k > lo[0] else k + 1)  # the pair's frame not packed yet
        lo, hi = (p, hi) if p[1] <= budget else (lo, p)
    return lo, hi


def wire_bytes(frame: SparseFrame, wire: WireConfig, counts: np.ndarray | None = None) -> int:
    """``sum(map(len, packetise(frame, config=wire)))`` without building the packets (their primary header, common
    header and CRC are of fixed size): the packet bodies only, planned and coded as :func:`packetise` does.
    ``counts``: the frame's kept pixels per row (H,), which layout 2 plans from (else regenerated from its mask,
    :func:`~edgeae.wire.sparse.row_counts`). A frame of no sample is one packet of headers (not packed:
    packetise warns of a frame sent with no sample)."""
    return _packed(frame, wire, counts)[0]


def _packed(frame: SparseFrame, wire: WireConfig, counts: np.ndarray | None = None) -> tuple[int, int]:
    """:func:`wire_bytes` and the number of packets."""
    from edgeae.wire.layout import COMMON, CRC_LEN, PRIMARY_HEADER
    from edgeae.wire.packets import packet_bodies, plan_sparse, sparse_v2_bodies
    from edgeae.wire.sparse_plan import BodySpool, TooManyPackets, too_many_packets

    if not len(frame.values):
        return overhead("sparse", wire.layout), 1
    if counts is None or wire.layout != 2:
        kind, bodies = packet_bodies(frame, wire)
    else:  # packet_bodies' layout-2 path, from the counts given
        kind = "sparse"
        spools: list[BodySpool] = []
        try:
            bodies = list(sparse_v2_bodies(frame, plan_sparse(frame, counts, wire, spools), wire, spools))
        finally:
            for sp in spools:
                sp.close()
    if len(bodies) >= 2**16:  # as packetise refuses it
        raise TooManyPackets(too_many_packets(kind, frame.frame_id, len(bodies)), len(bodies), kind, frame.frame_id)
    fixed = PRIMARY_HEADER + COMMON.size + CRC_LEN
    return sum(fixed + len(head) + len(data) for _, head, data in bodies), len(bodies)


def _sendable(frame: SparseFrame, wire: WireConfig, counts: np.ndarray | None, budget: int) -> tuple[int, int, int]:
    """The frame's :func:`_fill`, wire bytes and packets (:func:`_packed`). A frame of more packets than one product
    can have cannot be sent whatever its bytes: its packets are the planner's count (its refusal's), its wire bytes
    -1 (not packed), its fill over ``budget``: its packets', or where larger its bytes sent raw (its samples and its
    packets' headers; exact for codec ``none``), so a frame far over the budget aims the search well below it (its
    packets' alone, 1.03 x a 3 MB budget for a 7.5 MB frame, cost 2-4 packings more until review r5 #2)."""
    from edgeae.wire.sparse_plan import TooManyPackets

    try:
        size, n = _packed(frame, wire, counts)
    except TooManyPackets as exc:
        n = max(MAX_PARTS + 1, exc.packets or 0)  # the planner's count (until review r5 #3 read from its words)
        return _fill(frame.values.nbytes + n * overhead("sparse", wire.layout), n, budget), -1, n
    return _fill(size, n, budget), size, n


def _fill(size: int, packets: int, budget: int) -> int:
    """What the search compares with ``budget``: a frame's wire bytes or its packets less a half (the middle of the
    sample counts that give that many) scaled so that :data:`MAX_PARTS` and a half are ``budget``, whichever is
    larger. Over ``budget`` exactly when the frame does not fit, in bytes or in packets; near the packet limit as
    straight a line in the samples kept as the bytes, so false position takes as few steps there (an over-limit frame
    counted ``budget + 1`` until review r2 #2: the search crawled from it a sample at a time, 47-143 packings where
    it now takes 6-9)."""
    return max(size, -(-(2 * packets - 1) * budget // (2 * MAX_PARTS)))


def _full_packet(wire: WireConfig, channels: int, itemsize: int) -> int:
    """The most wire bytes one packet of a frame can hold: ``wire.max_packet_size``, or sent raw (codec ``none``) its
    headers and the whole pixels that fit (102 B for 16 bands of 16 bits in 128-byte packets)."""
    if wire.codec != "none":
        return wire.max_packet_size
    head = overhead("sparse", wire.layout)
    return min(
        wire.max_packet_size,
        head + max(1, (wire.max_packet_size - head) // (channels * itemsize)) * channels * itemsize,
    )


def _packet_limited(
    shape: tuple[int, ...], bits: int, budget: int, wire: WireConfig, lo: _Sized, hi: _Sized, kept: _Sized, keep: float
) -> str | None:
    """Why the search's answer is refused (None: it is not): the frame after it (``hi``: wire bytes and packets;
    ``kept``: the two frames' samples) is over the packet limit but its bytes would fit, so the limit, not the
    budget, stopped the keep: the budget is over the largest frame one product carries, ``lo`` (keep ``keep``), by
    more than the next frame adds, and the message gives that frame's size as the budget to give. A frame over the
    limit is never packed (:func:`_sendable`): its bytes are its packets' headers and ``lo``'s coded samples scaled
    to its samples (exact raw, codec ``none``; coded, an estimate)."""
    (size, n), per = lo, overhead("sparse", wire.layout)
    if hi[1] <= MAX_PARTS:
        return None
    after = hi[1] * per + (size - n * per) * kept[1] // max(kept[0], 1)
    if after > budget:
        return None
    h, w, c = shape
    return (
        f"sparse frame of {h}x{w}x{c} ({bits}-bit samples): a budget of {budget:,} wire bytes is over the largest "
        f"frame of it one product carries, keep {keep:.6g}: {size:,} B in {n:,} packets (the next frame would fit the "
        f"budget but needs {hi[1]:,} packets, over the {MAX_PARTS:,} one product can have): give a budget of at most "
        f"{size:,} B (a coarser keep), {_HELPS.format(max(2, -(-budget * n // max(size, 1) // MAX_PARTS)))}"
    )


def _too_many_for(
    shape: tuple[int, ...], itemsize: int, budget: int, wire: WireConfig, bits: int, whole: Callable[[], _Sized]
) -> str | None:
    """Why no frame of ``shape`` can be sent within ``budget`` as one product, found before the search (None: one
    may be). When ``budget`` is more than a packet over what :data:`MAX_PARTS` full packets carry (:func:`_past_full`)
    only the whole frame (keep 1: ``whole()``, its fill and packets) may fit, in fewer. Sent raw (codec ``none``) it
    needs at least its samples over what a packet carries, and is not packed when that is over the limit too;
    coded, it is packed. A budget under that bound but over the largest frame one product carries is refused after
    the search, with that frame (:func:`_packet_limited`)."""
    h, w, c = shape
    if not _past_full(budget, wire, c, itemsize):
        return None
    full = _full_packet(wire, c, itemsize)
    need = -(-budget // full)
    per = max(1, (wire.max_packet_size - overhead("sparse", wire.layout)) // (c * itemsize))  # pixels a packet, raw
    raw = -(-h * w // per)
    if wire.codec != "none" or raw <= MAX_PARTS:
        size, n = whole()
        if size <= budget and n <= MAX_PARTS:
            return None
    if wire.codec == "none" and raw < need:  # the whole frame is under the budget: its own packets
        need = max(raw, MAX_PARTS + 1)  # a raw count under the limit was packed, and was over it all the same
        what = f"the whole frame, sent raw, needs at least {need:,} packets"
    else:
        what = f"filling a budget of {budget:,} wire bytes takes at least {need:,} packets"
    note = f": the {per} raw pixel(s) one of {wire.max_packet_size:,} B holds" if full < wire.max_packet_size else ""
    return (
        f"sparse frame of {h}x{w}x{c} ({bits}-bit samples): {what}, over the {MAX_PARTS:,} one product can have: "
        f"give a budget of at most {MAX_PARTS * full:,} B, what they carry full ({full:,} B a packet{note}; a coarser "
        "keep; where the planner leaves packets part full the largest frame one product carries is less, and a budget "
        f"over it is refused with its size), {_HELPS.format(-(-need // MAX_PARTS))}"
    )


def _past_full(budget: int, wire: WireConfig, channels: int, itemsize: int) -> bool:
    """Whether ``budget`` is more than a packet over what :data:`MAX_PARTS` full packets (:func:`_full_packet`)
    carry: then over the largest frame one product carries by more than a packet, refused (:func:`_packet_limited`)
    unless the whole frame fits in fewer packets, found without a search."""
    return budget - wire.max_packet_size > MAX_PARTS * _full_packet(wire, channels, itemsize)


def _crossing(
    probe: Callable[[int], _Point], lo: _Point, hi: _Point, budget: int, wider: Callable[[_Point, _Point], bool]
) -> tuple[_Point, _Point]:
    """Narrow ``lo`` (fits the budget) and ``hi`` (does not) while ``wider(lo, hi)``: false position on the wire
    bytes, Illinois (an end kept twice in a row has its distance to the budget halved, so a curved or noisy size
    still moves both ends); each step at least one past an end."""
    dlo, dhi = budget + 0.5 - lo[1], hi[1] - budget - 0.5  # both > 0
    kept = ""
    while wider(lo, hi):
        x = lo[0] + int((hi[0] - lo[0]) * dlo / (dlo + dhi))
        p = probe(min(hi[0] - 1, max(lo[0] + 1, x)))
        if p[1] <= budget:
            lo, dlo = p, budget + 0.5 - p[1]
            dhi, kept = (dhi / 2 if kept == "hi" else dhi), "hi"
        else:
            hi, dhi = p, p[1] - budget - 0.5
            dlo, kept = (dlo / 2 if kept == "lo" else dlo), "lo"
    return lo, hi


def _grid_steps(shape: tuple[int, int], lo: int, hi: int) -> list[int]:
    """The thresholds in (``lo``, ``hi``] at which the jittered grid of a frame of ``shape`` (:func:`edgeae.masks.
    jitter_grid`: ``floor(n * sqrt(keep) + 0.5)`` cells an axis) gains a cell row or column, ascending: where its
    mask changes. Each is the least t (keep ``t / 2**53``) of that grid, from the formula then checked on it."""
    from edgeae.masks import jitter_grid

    def cells(t: int, axis: int) -> int:
        return jitter_grid(shape, t / KEEP_STEPS)[axis]

    steps = set()
    for axis, n in enumerate(shape):
        for m in range(cells(lo, axis) + 1, cells(hi, axis) + 1):
            t = min(hi, max(lo + 1, int(np.ceil(((m - 0.5) / n) ** 2 * KEEP_STEPS))))
            while t > lo + 1 and cells(t - 1, axis) >= m:
                t -= 1
            while cells(t, axis) < m:
                t += 1
            steps.add(t)
    return sorted(steps)


def _bracket(at: Callable[[int], _Point], budget: int, t: int) -> tuple[_Point, _Point | None]:
    """A threshold whose frame fits ``budget`` and one whose frame does not (None: keep 1 fits), by secant steps
    from ``t`` (:func:`_towards`; after 8 of them twice or half as far each step, so at most 54 more).
    ``ValueError`` when t = 1 does not fit."""
    fits: _Point | None = None
    over: _Point | None = None
    last: _Point | None = None
    t = min(KEEP_STEPS, max(1, t))
    for step in range(8 + 54):
        p = at(t)
        if p[1] <= budget:
            if t == KEEP_STEPS:
                return p, None
            fits = p
        else:
            if t == 1:
                raise ValueError(f"a budget of {budget:,} wire bytes is under the smallest sparse frame ({p[2]} "
                                 f"sample(s), {p[1]:,} bytes in its packets)")  # fmt: skip
            over = p
        if fits is not None and over is not None:
            return fits, over
        t, last = _towards(p, last, budget, far=step >= 8), p
    raise AssertionError("unreachable: halving or doubling t reaches 1 or 2**53 within 54 steps")


def _towards(point: _Point, last: _Point | None, budget: int, far: bool = False) -> int:
    """The next threshold while every keep tried so far fits (or none does): the secant through the last two
    (t, bytes) points aimed 0.1 % past the budget, so the next one likely lands on the other side; from one point
    the keep scaled by budget / bytes; twice (half) as far when the last two gave the same bytes, or ``far``."""
    t, size, _ = point
    target = budget * (1.001 if size <= budget else 0.999)
    if far or (last is not None and last[1] == size):  # the same bytes twice (no sample either time)
        nxt = 2 * t if size <= budget else t // 2
    elif last is None:
        nxt = int(t * target / max(size, 1))
    else:
        nxt = t + int((t - last[0]) * (target - size) / (size - last[1]))
    if size <= budget:  # further up, at least one step
        return min(KEEP_STEPS, max(t + 1, nxt))
    return max(1, min(t - 1, nxt))

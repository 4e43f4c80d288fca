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

from edgeae.wire.layout import WireConfig
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
    :class:`~edgeae.wire.sparse_plan.TooManyPackets` (a ValueError), in one line and before the search, when a frame
    filling ``budget`` would need more than :data:`MAX_PARTS` packets of ``wire.max_packet_size`` bytes, unless the
    whole frame fits under it in fewer (keep 1; a coded frame is packed once to find out): :func:`_too_many_for`.
    A frame packed on the way that
    needs more packets than that does not fit, whatever its bytes, and the search goes on below it (until session 39
    either raised TooManyPackets from inside the search, also where the budget's own frame needs far fewer).

    Secant steps on the wire size over the thresholds ``t`` of :data:`KEEP_STEPS` (keep ``t / 2**53``; from the
    frame's raw bytes, then its bytes per sample) until a keep that fits and one that does not are known, usually
    two packings. For the uniform mask, :class:`~.keep_frames.KeptPixels` then gives every frame between the two
    (one pass over the frame) and :class:`~.keep_frames.Window` builds each from the larger one's samples; in
    layout 2, for frames of at least :data:`_ESTIMATED` packets, up to :data:`_ROUNDS` frames are packed where size
    estimates point (:func:`_estimated`); false position on the packed sizes (:func:`_crossing`) ends the search.
    Cost, measured on a 2-core machine (docs/ground.md): 5-11 packings a search on 0.6-4 Mpixel frames at 2-50 %
    budgets (6-17 in session 37's first exact search, 1-2 before it, which stopped within 1.5 % of the budget);
    memory: a bit per pixel, 4 bytes per pixel between the two keeps (28 while they are sorted and searched) and two
    copies of the frame's samples, besides the packing's own (10 MB at a 2048×2048 frame's 50 % budget, 85 MB in
    the first exact search). The jittered mask: false position over the grids between the two
    (:func:`_grid_steps`), ~3 packings."""
    from edgeae.masks import PRNG_VERSION, iter_mask_strips

    h, w, c = samples.shape
    packets: dict[tuple[str, int], int] = {}  # ("t", threshold) or ("k", frame) -> packets, of each frame packed

    def frame(values: np.ndarray, t: int) -> SparseFrame:
        return SparseFrame(0, h, w, c, bit_depth, t / KEEP_STEPS, pattern, seed, PRNG_VERSION, values)

    def at(t: int) -> _Point:  # the frame of threshold t, from its mask a strip at a time (as sparse_from_samples)
        parts, counts = [], np.zeros(h, np.int64)
        for r0, rows in iter_mask_strips(seed, (h, w), t / KEEP_STEPS, pattern):
            parts.append(samples[r0 : r0 + len(rows)][rows])
            counts[r0 : r0 + len(rows)] = np.count_nonzero(rows, axis=1)
        values = np.concatenate(parts)
        size, packets["t", t] = _sendable(frame(values, t), wire, counts, budget)
        return t, size, len(values)

    def whole() -> _Sized:  # the frame of keep 1
        return at(KEEP_STEPS)[1], packets["t", KEEP_STEPS]

    too_many = _too_many_for(samples.shape, samples.dtype.itemsize, budget, wire, bit_depth, whole)
    if too_many is not None:
        from edgeae.wire.sparse_plan import TooManyPackets

        raise TooManyPackets(too_many)
    if -(-budget // wire.max_packet_size) > MAX_PARTS:  # the whole frame fits, in fewer packets (_too_many_for)
        return 1.0
    fits, over = _bracket(at, budget, int(budget / max(samples.nbytes, 1) * KEEP_STEPS))
    if over is None:
        return 1.0
    if pattern != "uniform":  # jittered: one mask per grid, searched over the grids between the two
        grids = [fits[0], *_grid_steps((h, w), fits[0], over[0])]  # the last one's mask is over's

        def grid(i: int) -> _Point:
            return (i, *at(grids[i])[1:]) if i < len(grids) - 1 else (i, over[1], over[2])

        lo = _crossing(grid, (0, *fits[1:]), (len(grids) - 1, *over[1:]), budget, lambda a, b: b[0] - a[0] > 1)[0]
        return grids[lo[0]] / KEEP_STEPS
    kept = KeptPixels(samples, seed, fits[0], over[0])

    def count(k: int) -> _Point:
        values, counts, _ = kept.values(k)
        size, packets["k", k] = _sendable(frame(values, kept.threshold(k)), wire, counts, budget)
        return k, size, len(values)

    lo, hi = (0, fits[1], fits[2]), (kept.steps, over[1], over[2])
    packets["k", lo[0]], packets["k", hi[0]] = packets["t", fits[0]], packets["t", over[0]]  # the same pixels
    lo, hi = _crossing(count, lo, hi, budget, lambda a, b: b[0] - a[0] > _WINDOW)  # rarely: a wide first bracket
    win = Window(kept, lo[0], hi[0])

    def near(k: int) -> _Point:  # a frame between the two, from the larger one's samples
        values, counts = win.frame(k)
        size, packets["k", k] = _sendable(frame(values, kept.threshold(k)), wire, counts, budget)
        return k, size, len(values)

    if wire.layout == 2 and packets["k", hi[0]] >= _ESTIMATED:
        lo, hi = _estimated(win, near, lambda k: packets["k", k], lo, hi, budget, wire, bit_depth)
    return kept.threshold(_crossing(near, lo, hi, budget, lambda a, b: b[0] - a[0] > 1)[0][0]) / KEEP_STEPS


def _estimated(
    win: Window,
    count: Callable[[int], _Point],
    packets: Callable[[int], int],
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
    ±400 B). ``packets``: the packet count of a frame packed."""
    from edgeae.wire.layout import overhead

    per, unit = overhead("sparse", 2), win.values.shape[1] * win.values.dtype.itemsize

    planned: dict[int, int] = {}  # k -> its estimated packets (the same whatever the ends)

    def guess(k: int, ends: tuple[_Point, _Point]) -> _Point:
        (k0, b0, _), (k1, b1, _) = ends
        if k in (k0, k1):
            return k, (b0 if k == k0 else b1), 0
        if k not in planned:
            planned[k] = planned_packets(*win.take(k), wire, bits, unit)
        c0, c1 = b0 - per * packets(k0), b1 - per * packets(k1)  # the coded samples of the two
        return k, int(per * planned[k] + c0 + (c1 - c0) * (k - k0) / (k1 - k0)), 0

    for _ in range(_ROUNDS):
        if hi[0] - lo[0] <= 1:
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
    from edgeae.wire.layout import COMMON, CRC_LEN, PRIMARY_HEADER, overhead
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
        raise TooManyPackets(too_many_packets(kind, frame.frame_id, len(bodies)))
    fixed = PRIMARY_HEADER + COMMON.size + CRC_LEN
    return sum(fixed + len(head) + len(data) for _, head, data in bodies), len(bodies)


def _sendable(frame: SparseFrame, wire: WireConfig, counts: np.ndarray | None, budget: int) -> _Sized:
    """:func:`_packed`; a frame of more packets than one product can have cannot be sent whatever its bytes, so it
    does not fit: a size over ``budget`` (at least its samples and 2**16 packets' headers, so false position steps
    well below it) and 2**16 packets."""
    from edgeae.wire.layout import overhead
    from edgeae.wire.sparse_plan import TooManyPackets

    try:
        return _packed(frame, wire, counts)
    except TooManyPackets:
        return max(budget + 1, frame.values.nbytes + 2**16 * overhead("sparse", wire.layout)), 2**16


def _too_many_for(
    shape: tuple[int, ...], itemsize: int, budget: int, wire: WireConfig, bits: int, whole: Callable[[], _Sized]
) -> str | None:
    """Why no frame of ``shape`` can be sent within ``budget`` as one product (None: one may be). Filling the budget
    takes at least ``budget / wire.max_packet_size`` packets; over :data:`MAX_PARTS` only the whole frame (keep 1:
    ``whole()``, its wire bytes and packets) may fit, in fewer. Sent raw (codec ``none``) it needs at least its
    samples over what a packet carries, and is not packed when that is over the limit too; coded, it is packed."""
    from edgeae.wire.layout import MAX_PACKET, overhead

    h, w, c = shape
    need = -(-budget // wire.max_packet_size)
    if need <= MAX_PARTS:
        return None
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
    return (
        f"sparse frame of {h}x{w}x{c} ({bits}-bit samples): {what} of at most {wire.max_packet_size:,} B, over the "
        f"{MAX_PARTS:,} one product can have: give a budget under {MAX_PARTS * wire.max_packet_size:,} B (a coarser "
        f"keep), larger packets (up to {MAX_PACKET:,} B) or cut the frame into at least {-(-need // MAX_PARTS)} tiles, "
        "each sent as a frame of its own"
    )


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

"""No-data detection: the black masked margins of NAC and HiRISE products as a validity mask.

A pixel is no-data when every channel is near zero (JPEG noise keeps margins from being exactly 0)
AND it belongs to a large dark region that runs along a good part of one image border side.
This is a heuristic: a saturated shadow cut by a long stretch of the frame edge cannot be told
from no-data by its pixels; use the product's own mask where it has one. Dark shadows inside the scene
are therefore kept valid, even when they reach 0. A 3×3 morphological opening cuts single-pixel
bridges between a margin and a shadow that happens to touch it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from edgeae._optional import require

__all__ = [
    "DEFAULT_THRESHOLD",
    "EDGES",
    "Margin",
    "across_channels",
    "margin_mask",
    "nodata_mask",
    "patch_valid_fraction",
    "valid_mask",
]

DEFAULT_THRESHOLD = 0.025  # of full scale: 6 of 255 (HiRISE browse margins reach 6 after JPEG)
DEFAULT_RELATIVE = 0.1  # a border row/column whose mean is below 10 % of the frame median is a dark margin
EDGES = ("top", "bottom", "left", "right")
NEAR_BORDER = 4
"""Px from a side within which a dark pixel can, after :func:`nodata_mask`'s 3 × 3 closing and opening (at most
2 px of growth), belong to a region on that side."""
RUN_CHUNK = 2**16  # pixels valid_mask finds the dark runs of at a time (its temporaries: a few bytes per pixel of it)
_FILLING, _KEEP, _DROP = 3, 1, 2  # nodata_mask's flood-fill mask values: being filled, no-data, not no-data


# ------------------------------------------------------------------------------------------------------------
# valid_mask: numpy only, the one mask of flight and ground (the flight runtime imports this module; nothing
# here may import OpenCV or SciPy at module level or inside valid_mask)


@dataclass(frozen=True)
class Margin:
    """A fixed margin in pixels per side (frame coordinates), given by a mission or on the command line."""

    top: int = 0
    bottom: int = 0
    left: int = 0
    right: int = 0

    def __post_init__(self) -> None:
        if min(self.top, self.bottom, self.left, self.right) < 0:
            sides = f"top {self.top}, bottom {self.bottom}, left {self.left}, right {self.right}"
            raise ValueError(f"margins must be >= 0 pixels, got {sides}")

    @classmethod
    def parse(cls, spec: str | int | Sequence[int] | None) -> Margin:
        """``N`` (every side), ``"T,B,L,R"`` or a sequence of 1 or 4 ints (numpy integers too; a bool or a float
        is refused: a ValueError)."""
        import numbers

        def whole(v: object) -> int:
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise ValueError(f"margin {spec!r}: expected N or TOP,BOTTOM,LEFT,RIGHT whole pixels")
            return int(v)

        if isinstance(spec, np.ndarray) and spec.ndim == 1:  # np.array([1, 1, 2, 2]): its elements
            spec = spec.tolist()
        if spec is None or (isinstance(spec, (str, Sequence)) and len(spec) == 0):
            return cls()
        if not isinstance(spec, (str, Sequence)):
            vals = [whole(spec)]
        elif isinstance(spec, str):
            try:
                vals = [int(v) for v in spec.replace(" ", "").split(",") if v != ""]
            except ValueError:
                raise ValueError(f"margin {spec!r}: expected N or TOP,BOTTOM,LEFT,RIGHT pixels") from None
        else:
            vals = [whole(v) for v in spec]
        if len(vals) == 1:
            return cls(vals[0], vals[0], vals[0], vals[0])
        if len(vals) != 4:
            raise ValueError(f"margin {spec!r}: expected N or TOP,BOTTOM,LEFT,RIGHT pixels")
        return cls(*vals)

    def __bool__(self) -> bool:
        return bool(self.top or self.bottom or self.left or self.right)


def across_channels(
    arr: np.ndarray, combine: np.ufunc, plane: Callable[[np.ndarray], np.ndarray] | None = None
) -> np.ndarray:
    """(H, W, C) -> (H, W): ``combine`` (``np.maximum``, ``np.minimum``, ``np.logical_and``, ``np.logical_or``)
    over the channel planes, each first mapped by ``plane`` (e.g. ``np.isfinite``; it must return a new array).

    The same values as ``combine.reduce(plane(arr), axis=2)`` (``arr.max(axis=2)``,
    ``np.isfinite(arr).all(axis=2)``), computed plane by plane: a reduction over a short last axis runs 9-28x
    slower than combining whole planes (1200x1648x3 uint8 ``max``: 46 ms against 1.7 ms).
    """
    if arr.ndim != 3 or arr.shape[2] == 0:
        return combine.reduce(arr if plane is None else plane(arr), axis=2)
    out = arr[..., 0].copy() if plane is None else plane(arr[..., 0])
    if not out.flags.writeable or not out.flags.owndata:  # never write into the caller's array
        out = out.copy()
    for c in range(1, arr.shape[2]):
        combine(out, arr[..., c] if plane is None else plane(arr[..., c]), out=out)
    return out


def _edge_run(flag: np.ndarray, k: int = 3) -> np.ndarray:
    """Per row of bool (R, N): length of the run of True from index 0, tolerating gaps shorter than ``k``
    (a run ends where ``k`` consecutive False start; a JPEG speck inside a margin does not end it)."""
    r, n = flag.shape
    if n == 0:
        return np.zeros(r, np.int64)
    stop = ~flag
    if n >= k:
        stopk = stop[:, : n - k + 1].copy()
        for i in range(1, k):
            stopk &= stop[:, i : n - k + 1 + i]
        stopk = np.concatenate([stopk, np.ones((r, k - 1), bool)], axis=1)
    else:
        stopk = np.ones((r, n), bool)
    run = np.where(stopk.any(axis=1), np.argmax(stopk, axis=1), n)
    # the margin ends at its last dark pixel before the stop
    before = flag & (np.arange(n)[None, :] < run[:, None])
    last = n - np.argmax(before[:, ::-1], axis=1)
    return np.where(before.any(axis=1), last, 0).astype(np.int64)


def _bad_profile(arr: np.ndarray, level: float, full: float, chunk: int = 32) -> int:
    """How many whole columns of (H, W) ``arr``, from column 0 on, are dark (mean ≤ ``level``) or saturated
    (≥ 95 % of pixels at ``full``)."""
    w = arr.shape[1]
    for c0 in range(0, w, chunk):
        block = arr[:, c0 : c0 + chunk]
        bad = (block.mean(axis=0, dtype=np.float64) <= level) | ((block >= full).mean(axis=0) >= 0.95)
        if not bad.all():
            return c0 + int(np.argmin(bad))
    return w


def _checked_input(
    raw: np.ndarray, edges: Iterable[str], threshold: float | None, reduce: str
) -> tuple[np.ndarray, set[str], float]:
    """The checks :func:`valid_mask` and :func:`nodata_mask` share: ``raw`` as one (H, W) value per pixel (channels
    reduced by ``reduce``), the real sides, and the darkness threshold as a fraction of full scale."""
    if reduce not in ("max", "min"):
        raise ValueError(f"reduce must be 'max' or 'min', got {reduce!r}")
    arr = np.asarray(raw)
    if arr.ndim == 3:
        arr = arr[:, :, 0] if arr.shape[2] == 1 else across_channels(arr, np.maximum if reduce == "max" else np.minimum)
    if arr.ndim != 2:
        raise ValueError(f"raw must be (H, W) or (H, W, C), got shape {np.shape(raw)}")
    sides = set(edges)
    unknown = sides - set(EDGES)
    if unknown:
        raise ValueError(f"edges must be among {EDGES}, got {sorted(unknown)}")
    frac = DEFAULT_THRESHOLD if threshold is None else float(threshold)
    if not 0.0 <= frac < 1.0:
        raise ValueError(f"threshold is a fraction of full scale in [0, 1), got {threshold}")
    return arr, sides, frac


def valid_mask(
    raw: np.ndarray,
    *,
    bit_depth: int | None = None,
    threshold: float | None = None,
    relative: float = DEFAULT_RELATIVE,
    edges: Iterable[str] = EDGES,
    margin: Margin | None = None,
    row0: int = 0,
    frame_height: int | None = None,
    min_contact: int = 32,
    min_side_fraction: float = 0.3,
    guard: int = 1,
    reduce: str = "max",
) -> np.ndarray:
    """Valid-pixel mask (H, W) bool of a frame or of a strip of one: False on no-data and margins.

    Numpy only and streaming-friendly, so the flight runtime and the ground tools share it. Invalid:

    - non-finite samples;
    - dark margins seen from the border: per row (column), the run of dark pixels (≤ ``threshold`` of full
      scale, default :data:`DEFAULT_THRESHOLD`) from the left/right (top/bottom) edge, gaps of 1-2 px
      tolerated, counted only on sides where at least max(``min_contact``, ``min_side_fraction`` × side)
      rows (columns) start dark (a shadow cut by the frame edge stays valid); this follows slanted
      map-projected borders (HiRISE, NAC);
    - dark and saturated border profiles: whole columns (rows) from an edge whose mean is below
      max(threshold, ``relative`` × the frame median) or that are ≥ 95 % saturated (Mastcam-Z raw frames:
      columns 0-22 and from 1631, mean 1-10 against a median of ~190, too noisy for a per-pixel threshold);
    - a fixed ``margin`` (frame coordinates: a strip passes its first row ``row0`` and ``frame_height``).

    ``edges``: the sides of ``raw`` that are real frame borders (a streamed strip passes top only for the
    first strip, bottom only for the last). ``guard``: pixels of JPEG ringing added inside each detected
    margin. ``reduce``: how channels become one value per pixel: ``"max"`` (a pixel is dark only when every
    channel is), or ``"min"`` for a demosaiced colour-filter frame, where interpolation lifts a dark sensor
    margin's interpolated channels towards its bright neighbours but each pixel keeps its own measured (dark)
    sample (raw Mastcam-Z: rows 0-1 read 4-13 of 255, demosaiced to a mean of 52).
    """
    arr, sides, frac = _checked_input(raw, edges, threshold, reduce)
    h, w = arr.shape
    valid = np.ones((h, w), dtype=bool)
    if h == 0 or w == 0:
        return valid
    full = _full_scale(arr, bit_depth)
    if arr.dtype.kind == "f":
        finite = np.isfinite(arr)
        valid &= finite
        arr = np.where(finite, arr, 0.0)
    limit = frac * full
    dark = arr <= limit
    if dark.any():
        need_rows = max(min(min_contact, h), min_side_fraction * h)
        need_cols = max(min(min_contact, w), min_side_fraction * w)
        # the runs are found a few rows (columns) at a time: _edge_run's temporaries are some 5 B per pixel of what
        # it is given, so a whole strip's were 8 B / px at the peak with the mask and the dark pixels (session 39,
        # fixer h12: 2 B / px and the chunks'); every row (column) is its own, so the mask is the same
        for side, view, out in (("left", dark, valid), ("right", dark[:, ::-1], valid[:, ::-1])):
            if side not in sides or view[:, 0].sum() < need_rows:
                continue
            step = max(1, RUN_CHUNK // w)
            for a in range(0, h, step):
                run = _edge_run(view[a : a + step])
                run = np.where(run > 0, np.minimum(run + guard, w), 0)
                out[a : a + step] &= ~(np.arange(w)[None, :] < run[:, None])
        for side, view, out in (("top", dark.T, valid.T), ("bottom", dark[::-1].T, valid[::-1].T)):
            if side not in sides or view[:, 0].sum() < need_cols:
                continue
            step = max(1, RUN_CHUNK // h)
            for a in range(0, w, step):
                run = _edge_run(view[a : a + step])
                run = np.where(run > 0, np.minimum(run + guard, h), 0)
                out[a : a + step] &= ~(np.arange(h)[None, :] < run[:, None])
    # border profiles: dark or saturated whole columns / rows, read from each edge inwards in chunks (a frame
    # without such a margin costs one chunk per side)
    sample = arr[:: max(1, h // 64), :: max(1, w // 64)]
    level = max(limit, relative * float(np.median(sample)))
    if "left" in sides and (n := _bad_profile(arr, level, full)):
        valid[:, : min(w, n + guard)] = False
    if "right" in sides and (n := _bad_profile(arr[:, ::-1], level, full)):
        valid[:, max(0, w - n - guard) :] = False
    if h >= 2 and "top" in sides and (n := _bad_profile(arr.T, level, full)):
        valid[: min(h, n + guard)] = False
    if h >= 2 and "bottom" in sides and (n := _bad_profile(arr[::-1].T, level, full)):
        valid[max(0, h - n - guard) :] = False
    if margin:
        valid &= margin_mask((h, w), margin, row0, frame_height)
    return valid


def margin_mask(shape: tuple[int, ...], margin: Margin, row0: int = 0, frame_height: int | None = None) -> np.ndarray:
    """(H, W) bool, False inside the fixed ``margin``; for a strip starting at frame row ``row0`` of a frame
    ``frame_height`` rows high (default: the strip is the frame)."""
    if not isinstance(margin, Margin):  # "3", "3,3,0,0", (3, 3, 0, 0): parsed (an AttributeError deep inside before)
        margin = Margin.parse(margin)
    h, w = int(shape[0]), int(shape[1])
    valid = np.ones((h, w), bool)
    fh = h if frame_height is None else int(frame_height)
    valid[: max(0, min(h, margin.top - row0))] = False
    valid[max(0, fh - margin.bottom - row0) :] = False
    valid[:, : margin.left] = False
    if margin.right:
        valid[:, max(0, w - margin.right) :] = False
    return valid


def patch_valid_fraction(valid: np.ndarray, y: int, x: int, patch: int) -> float:
    """Fraction of valid pixels of the ``patch``×``patch`` window at (y, x) of a (H, W) bool mask."""
    return float(valid[y : y + patch, x : x + patch].mean())


def _full_scale(raw: np.ndarray, bit_depth: int | None) -> float:
    if raw.dtype.kind == "f":
        return 1.0
    if bit_depth is None:
        bit_depth = 8 * raw.dtype.itemsize
    return float(2**bit_depth - 1)


def nodata_mask(
    raw: np.ndarray,
    *,
    bit_depth: int | None = None,
    threshold: float | None = None,
    min_area: int = 64,
    min_contact: int = 32,
    min_side_fraction: float = 0.3,
    margin: int = 1,
    edges: Iterable[str] = EDGES,
    seed: np.ndarray | None = None,
) -> np.ndarray:
    """Return ``valid`` bool (H, W): False on dark regions connected to the image border.

    raw: (H, W) or (H, W, C) stored samples (uint or float). threshold: darkness limit as a fraction
    of full scale (default :data:`DEFAULT_THRESHOLD`). min_area: smaller border-touching dark
    regions, and ones touching every border side along fewer than max(``min_contact``,
    ``min_side_fraction`` × side length) pixels (a crater shadow cut by the frame edge), stay
    valid. margin: pixels of JPEG ringing eroded from the valid side of each margin.
    edges: which sides are real image borders (a streaming reader passes only the real ones).
    seed: optional bool (H, W) of pixels already known to be no-data (e.g. from the strip above);
    dark regions touching them count as no-data too.
    """
    arr, sides, frac = _checked_input(raw, edges, threshold, "max")
    h, w = arr.shape
    if seed is not None and seed.shape != (h, w):
        raise ValueError(f"seed must have shape {(h, w)}, got {seed.shape}")
    valid = np.ones((h, w), dtype=bool)
    if h == 0 or w == 0:
        return valid
    limit = frac * _full_scale(arr, bit_depth)
    dark = ~(arr > limit) if arr.dtype.kind == "f" else arr <= limit  # NaN counts as dark
    if not dark.any():
        return valid
    # The closing and opening below move dark pixels by at most 2 px, so a region can reach a side only when
    # a dark pixel lies within NEAR_BORDER px of it: without one (and no seed), nothing is flagged; the common
    # case of a streamed strip whose shadows stay inside, decided without labelling the whole strip.
    near = {"top": dark[:NEAR_BORDER], "bottom": dark[-NEAR_BORDER:], "left": dark[:, :NEAR_BORDER],
            "right": dark[:, -NEAR_BORDER:]}  # fmt: skip
    if not any(near[side].any() for side in sides) and (seed is None or not seed.any()):
        return valid
    cv2 = require("cv2")
    se = np.ones((3, 3), dtype=np.uint8)
    # closing fills JPEG specks inside margins, opening cuts thin links to interior shadows; OpenCV's
    # default borders keep the outside of the image from creating or eroding dark pixels at the edge
    d8 = cv2.morphologyEx(dark.view(np.uint8), cv2.MORPH_CLOSE, se)
    d8 = cv2.morphologyEx(d8, cv2.MORPH_OPEN, se)
    # Each dark region of d8 that reaches a real side or a seed pixel is flood-filled on its own (8-connected,
    # as a labelling with 8-connectivity would join them; after the opening only >= 3-px links or corners join)
    # and kept or dropped from its own bounding box: the cost follows the border regions, not the strip (a
    # streamed NAC band: 1.3 Mpx of which a few border shadows; labelling every shadow was ~37 % of the mask's
    # time: benchmarks/nodata_cost.py).
    fill = np.zeros((h + 2, w + 2), dtype=np.uint8)  # floodFill's mask: 0 unvisited, then _KEEP or _DROP
    need = {side: max(min_contact, min_side_fraction * (w if side in ("top", "bottom") else h)) for side in sides}

    def region(x: int, y: int, forced: bool) -> None:
        area, _, _, (rx, ry, rw, rh) = cv2.floodFill(
            d8, fill, (x, y), 0, 0, 0, 8 | cv2.FLOODFILL_MASK_ONLY | (_FILLING << 8)
        )
        box = fill[ry + 1 : ry + 1 + rh, rx + 1 : rx + 1 + rw]
        mine = box == _FILLING
        keep = forced
        if not keep and area >= min_area:
            contact = {"top": ry == 0 and mine[0].sum(), "bottom": ry + rh == h and mine[-1].sum(),
                       "left": rx == 0 and mine[:, 0].sum(), "right": rx + rw == w and mine[:, -1].sum()}  # fmt: skip
            keep = any(int(contact[side]) >= need[side] for side in sides)
        box[mine] = _KEEP if keep else _DROP

    def runs(line: np.ndarray) -> list[int]:
        """Indices where a run of True starts (a run is one 8-connected piece of a region)."""
        return np.flatnonzero(line & ~np.concatenate(([False], line[:-1]))).tolist()

    if seed is not None:  # seeded regions first: they are kept whatever their size or contact
        for y in np.flatnonzero(seed.any(axis=1)).tolist():
            for x in runs(seed[y] & (d8[y] > 0)):
                if not fill[y + 1, x + 1]:
                    region(x, y, True)
    lines = {"top": (d8[0], lambda i: (i, 0)), "bottom": (d8[-1], lambda i: (i, h - 1)),
             "left": (d8[:, 0], lambda i: (0, i)), "right": (d8[:, -1], lambda i: (w - 1, i))}  # fmt: skip
    for side in EDGES:
        if side not in sides:
            continue
        line, at = lines[side]
        for i in runs(line > 0):
            x, y = at(i)
            if not fill[y + 1, x + 1]:
                region(x, y, False)
    invalid = fill[1:-1, 1:-1] == _KEEP
    if margin > 0 and invalid.any():
        invalid = cv2.dilate(invalid.view(np.uint8), se, iterations=int(margin)).view(bool)
    return ~invalid


def fill_patches(pixels: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``pixels`` (n, C, P, P) float with each patch's no-data pixels (``valid`` (n, P, P) False) set to the mean
    of its valid ones, per channel; returns ``pixels`` (filled in place when writable).

    What a scored patch holds where it has no data: read as 0 (black), a no-data margin, NaN sample or the
    reflected padding of a small image inside a patch added an edge that the reconstruction error scores, so
    partial patches ranked above whole ones (a moon crop with 4 NaN columns: its edge patches up 10-30 %, ranks
    13-54 → 10-17). The patch's own mean depends on nothing outside it (not on where a band of rows starts),
    and costs only the partial patches (a strip's margins: the patches along them). A patch with no valid
    pixel is left as read.
    """
    out = pixels if pixels.flags.writeable else np.array(pixels)
    ok = np.asarray(valid, dtype=bool)
    for k in range(out.shape[0]):
        m = ok[k]
        if m.all() or not m.any():
            continue
        for c in range(out.shape[1]):
            band = out[k, c]
            band[~m] = float(band[m].mean())
    return out

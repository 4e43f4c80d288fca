"""Memory and time budgets: what is planned before flight, measured per frame, and how the runtime degrades.

Degradation ladder (documented order, one level at a time, each level includes the ones before it):

====  ========================  =====================================================================
 0    nominal                   everything the mission asks
 1    skip_reconstruction       no onboard reconstruction check / latent encoding
 2    score_half_patches        anomaly-score a checkerboard half of the patches
 3    score_quarter_patches     score one patch in four (every other row and column)
 4    lower_keep_fraction       also halve the sparse-sampling keep fraction (not below ``min_keep``)
 5    sparse_only               no scoring at all; keep fraction quartered (not below ``min_keep``)
====  ========================  =====================================================================

Before each frame the :class:`CostModel` (fixed and per-unit costs learned from the frames so far) predicts the time
of every level; the lowest level that fits ``safety × (frame_ms − lateness)`` is used. During the frame a
deadline guard stops scoring when the deadline passes. Both are recorded in the telemetry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeae.tiling import axis_count

from .mission import Mission


@dataclass(frozen=True)
class Level:
    """One rung of the degradation ladder."""

    index: int
    name: str
    reconstruct: bool
    score_every: int  # 1: every patch, 2: half, 4: a quarter, 0: none
    keep_factor: float


LADDER: tuple[Level, ...] = (
    Level(0, "nominal", True, 1, 1.0),
    Level(1, "skip_reconstruction", False, 1, 1.0),
    Level(2, "score_half_patches", False, 2, 1.0),
    Level(3, "score_quarter_patches", False, 4, 1.0),
    Level(4, "lower_keep_fraction", False, 4, 0.5),
    Level(5, "sparse_only", False, 0, 0.25),
)


def patch_selected(i: int, j: int, every: int) -> bool:
    """Whether patch (grid row ``i``, column ``j``) is scored at a ``score_every`` setting."""
    if every == 1:
        return True
    if every == 2:
        return (i + j) % 2 == 0
    if every == 4:
        return i % 2 == 0 and j % 2 == 0
    return False


def selected_fraction(every: int) -> float:
    return {1: 1.0, 2: 0.5, 4: 0.25}.get(every, 0.0)


def selected_per_row(rows: np.ndarray, n_cols: int, every: int) -> np.ndarray:
    """How many of the ``n_cols`` patches of each grid row in ``rows`` :func:`patch_selected` picks (int64)."""
    i = np.asarray(rows, np.int64)
    if every == 1:
        return np.full(i.shape, n_cols, np.int64)
    if every == 2:  # even rows take the even columns, odd rows the odd ones
        return np.where(i % 2 == 0, (n_cols + 1) // 2, n_cols // 2).astype(np.int64)
    if every == 4:
        return np.where(i % 2 == 0, (n_cols + 1) // 2, 0).astype(np.int64)
    return np.zeros(i.shape, np.int64)


def scoring_left_ms(flushes: Any, batch: int, ms_per_patch: float, in_flight: int = 0) -> float:
    """Projected ms to score what is left of a frame, in whole batches: every call runs (and costs) a whole
    ``batch``, so 17 patches in batches of 16 cost 32 patches' time, not 17. ``flushes``: the patches run
    between two flushes of a part batch (one count per strip for the PatchScorer path, which flushes at each
    strip's end; one count for the ScoreEngine, whose batches run across strips, including the patches already
    in the batch being filled); ``in_flight``: whole batches submitted and not finished."""
    b = max(1, int(batch))
    n = np.asarray(flushes, np.int64)
    slots = int((-(-n // b)).sum()) * b + max(0, int(in_flight)) * b
    return slots * ms_per_patch


class StageCost:
    """ms ≈ fixed + rate · units for one stage of a frame (units: Mpixel, kept Mpixel), fitted by least squares
    over the frames measured so far, each weighted ``(1 − alpha)^age``.

    The fixed part (opening the file, telemetry, queue writes: the same for a thumbnail and a full frame) can
    be told from the rate only when the frames differ in size (weighted sizes spread by ``SPREAD`` of their
    mean and by at least ``min_units``); until then the rate absorbs it, which predicts frames of that size
    right. Frames smaller than ``min_units`` never set the rate: their time is mostly the fixed part, and
    ``ms / units`` of a 0.001 Mpixel thumbnail, extrapolated to a full frame, once predicted 13 s for 56 ms
    of work (and switched scoring off); their time beyond what the rate so far explains is the fixed part.
    A fit in which bigger frames were faster (noise, a cold first frame) predicts the larger of the mean and
    the through-origin line, never less than either, so a big frame is not planned at a small one's cost.
    """

    SPREAD = 0.5  # coefficient of variation of the sizes above which a line is fitted

    def __init__(self, rate: float, fixed: float = 0.0, alpha: float = 0.5, min_units: float = 0.1) -> None:
        self.rate, self.fixed, self.alpha, self.min_units = rate, fixed, alpha, min_units
        self.floor = 0.0  # a prediction is never below this (the mean ms, after a fit with a negative slope)
        self._sums = np.zeros(5)  # weighted n, Σu, Σms, Σu², Σu·ms

    def predict(self, units: float) -> float:
        return max(self.floor, self.fixed + self.rate * units)

    def update(self, units: float, ms: float) -> None:
        """Fold in one frame's measured ``ms`` for ``units``; a frame of no units teaches nothing."""
        if units <= 0:
            return
        ms = max(0.0, ms)
        self._sums = (1 - self.alpha) * self._sums + (1.0, units, ms, units * units, units * ms)
        n, su, sm, suu, sum_ = (float(v) for v in self._sums)
        mu, mm = su / n, sm / n
        var = suu / n - mu * mu
        self.floor = 0.0
        if var > max(self.SPREAD * mu, self.min_units) ** 2:  # sizes differ enough to separate the two terms
            rate = (sum_ / n - mu * mm) / var
            fixed = mm - rate * mu
            if rate < 0:  # bigger frames were not slower: the mean or the line through the origin, the larger
                rate, fixed, self.floor = sum_ / suu, 0.0, mm
            elif fixed < 0:  # no fixed cost to see: through the origin
                rate, fixed = sum_ / suu, 0.0
            self.rate, self.fixed = rate, fixed
        elif mu < self.min_units:  # small frames only: keep the rate, the rest of their time is fixed cost
            self.fixed = max(0.0, mm - self.rate * mu)
        else:  # one size: keep the fixed part learned before, the rest is the rate
            self.fixed = min(self.fixed, mm)
            self.rate = (mm - self.fixed) / mu


class CostModel:
    """The time of a frame in ms, learned from measured frames (:class:`StageCost` fits, EMA per patch):

    frame time ≈ base(Mpixel) (read, validate, mask) + products(kept Mpixel) (gather, packetise, queue)
    + ms_per_patch · patches scored + ms_recon (when reconstructing),

    where base and products are each a fixed per-frame cost plus a cost per unit. ``batch``: the model's own
    batch (a LiteRT file converted with a static batch pads a part batch, which costs a whole one), so patches
    are predicted, and their measured time spread, in whole batches of it (1: a model with a dynamic batch).
    The per-patch cost learns only from frames that scored at least ``min_patches`` (the scorer's batch).
    """

    def __init__(
        self,
        ms_per_patch: float = 1.0,
        ms_per_mpix: float = 20.0,
        ms_recon: float = 10.0,
        ms_per_mkept: float = 200.0,
    ) -> None:
        self.alpha = 0.5
        # below 0.1 Mpixel (0.005 kept Mpixel: 0.1 Mpixel at keep 0.05) a frame's time is mostly fixed cost
        self.base = StageCost(ms_per_mpix, alpha=self.alpha, min_units=0.1)
        self.products = StageCost(ms_per_mkept, alpha=self.alpha, min_units=0.005)
        self.ms_per_patch = ms_per_patch
        self.ms_recon = ms_recon
        self.batch = 1
        self.min_patches = 1

    # the per-unit rates, as the telemetry and the tests name them
    @property
    def ms_per_mpix(self) -> float:
        return self.base.rate

    @ms_per_mpix.setter
    def ms_per_mpix(self, v: float) -> None:
        self.base.rate = v

    @property
    def ms_per_mkept(self) -> float:
        return self.products.rate

    @ms_per_mkept.setter
    def ms_per_mkept(self, v: float) -> None:
        self.products.rate = v

    def _ema(self, old: float, new: float) -> float:
        return (1 - self.alpha) * old + self.alpha * new

    def predict(self, level: Level, mpix: float, n_patches: int, recon_wanted: bool, keep: float) -> float:
        """Predicted ms of a frame of ``mpix`` megapixels at ``level`` (``keep``: the mission's fraction)."""
        t = self.base.predict(mpix) + self.products.predict(mpix * keep * level.keep_factor)
        scored, batch = math.ceil(n_patches * selected_fraction(level.score_every)), max(1, self.batch)
        t += self.ms_per_patch * math.ceil(scored / batch) * batch  # a part batch costs a whole one
        return t + (self.ms_recon if recon_wanted and level.reconstruct else 0.0)

    def update(
        self,
        *,
        mpix: float,
        base_ms: float,
        kept_mpix: float,
        products_ms: float,
        patches: int,
        score_ms: float,
        recon_ms: float | None,
    ) -> None:
        self.base.update(mpix, base_ms)
        self.products.update(kept_mpix, products_ms)
        batch = max(1, self.batch)
        if patches >= max(1, self.min_patches):  # per slot of the batches run: 12 patches in batches of 8 ran 16
            self.ms_per_patch = self._ema(self.ms_per_patch, score_ms / (math.ceil(patches / batch) * batch))
        if recon_ms is not None:
            self.ms_recon = self._ema(self.ms_recon, recon_ms)

    def state(self) -> dict[str, float]:
        """The current estimates (for the telemetry)."""
        return {
            "ms_per_frame_base": self.base.fixed,
            "ms_per_mpix": self.base.rate,
            "ms_per_frame_products": self.products.fixed,
            "ms_per_mkept": self.products.rate,
            "ms_per_patch": self.ms_per_patch,
            "ms_recon": self.ms_recon,
        }

    def choose(
        self, available_ms: float, mpix: float, n_patches: int, recon_wanted: bool, keep: float, safety: float
    ) -> Level:
        """The lowest ladder level predicted to finish within ``safety × available_ms``."""
        for level in LADDER:
            if self.predict(level, mpix, n_patches, recon_wanted, keep) <= safety * available_ms:
                return level
        return LADDER[-1]


# ------------------------------------------------------------------------------------------------ memory
PREFETCH_STRIPS = 1  # strips decoded ahead of the one being processed (a thread; ring of PREFETCH + 2 buffers)


@dataclass(frozen=True)
class MemoryPlan:
    """Bytes a frame allocates beyond what the process holds before it, by purpose (``items``, summed in
    :attr:`total`), and the buffers allocated at boot that a frame uses (``boot``: listed, never added: they are
    in the RSS the frame check starts from)."""

    items: tuple[tuple[str, int], ...]
    boot: tuple[tuple[str, int], ...] = ()

    @property
    def total(self) -> int:
        return sum(v for _, v in self.items)

    def as_dict(self) -> dict[str, Any]:
        return {**dict(self.items), "total": self.total, **({"boot_held": dict(self.boot)} if self.boot else {})}


def patch_grid(mission: Mission, width: int, height: int) -> int | None:
    """Patches in a ``height`` × ``width`` frame's scoring grid, as the loop builds it (a streamed frame's rows
    stop at the last whole patch row, one patch apart); None when a size is unknown (0)."""
    an = mission.anomaly
    if width <= 0 or height <= 0:
        return None
    if width < an.patch or height < an.patch:
        return 0
    if mission.camera.source == "strips":
        rows = (height - an.patch) // an.patch + 1
    else:
        rows = axis_count(height, an.patch, an.stride)
    return rows * axis_count(width, an.patch, an.stride)


def recon_check_count(rows: int, width: int, tile: int, n: int) -> int:
    """How many tiles :func:`recon_check_positions` gives (``min(n, cells of the tile grid)``; 0 when the samples
    are smaller than a tile), computed without listing them: a camera of 2^20 rows has millions of cells."""
    if rows < tile or width < tile or n < 1:
        return 0
    return min(n, axis_count(rows, tile, tile) * axis_count(width, tile, tile))


def recon_check_positions(rows: int, width: int, tile: int, n: int) -> list[tuple[int, int]]:
    """The (y, x) corners of the tiles the reconstruction check takes from ``rows`` × ``width`` samples: at most
    ``n`` cells of the tile grid (:func:`edgeae.tiling.axis_starts`, the last flush with the edge), spread evenly
    over the cells in row-major order, none twice; [] when the samples are smaller than a tile. The chosen cells'
    corners are computed, the grid is never listed (until session 36 both axes' starts were: a mistyped camera of
    10^11 rows grew ``firmware-sim check`` to 22 GB)."""
    k = recon_check_count(rows, width, tile, n)
    if k == 0:
        return []
    nx = axis_count(width, tile, tile)
    cells = axis_count(rows, tile, tile) * nx
    picks = np.unique(np.rint(np.linspace(0, cells - 1, k)).astype(np.int64))
    # cell k of an axis starts at k * tile, the last one flush with the edge (axis_starts)
    return [(min(int(i) // nx * tile, rows - tile), min(int(i) % nx * tile, width - tile)) for i in picks]


def scoring_batch(mission: Mission) -> int:
    """Patches per scoring batch: ``[anomaly] batch``, but no more than the patches a frame of a fixed-size camera
    of whole files has (width and height set: every frame has that grid, :func:`patch_grid`), as a bigger batch
    would only allocate buffers no frame fills (batch = 4096 on a 256 x 256 camera of 9 patches held 10 GB).
    A strip camera's batch is not capped (its frames are tall: a batch rarely exceeds their grid)."""
    cam = mission.camera
    grid = patch_grid(mission, cam.width, cam.height) if cam.source == "files" else None
    return mission.anomaly.batch if grid is None else max(1, min(mission.anomaly.batch, grid))


def scoring_plan(mission: Mission, patch_channels: int, grid: int | None) -> tuple[int, int]:
    """(bytes a frame's scoring allocates, bytes of the :class:`~.score.PatchScorer` buffers allocated at boot).

    ``vae`` scores on the :class:`~.score_engine.ScoreEngine` (the fast path): raw-sample batches, at most
    ``2 × threads`` in flight and one being filled, and per scoring thread the float32 input it builds from one
    batch plus one layout or padding copy (an int8 model's input is a quarter of that); the PatchScorer's
    buffers are never filled on this path. ``cae-masked`` fills the PatchScorer's input, truth and weight buffers
    (allocated at boot) and each call allocates the reconstruction, its error and the weighted squared error.
    A batch never holds more patches than the frame's ``grid``."""
    an, cam = mission.anomaly, mission.camera
    pp = an.patch * an.patch
    f32 = pp * patch_channels * 4  # one patch as float32
    slots = an.batch if grid is None else min(an.batch, grid)
    held = scoring_batch(mission)  # the batch the boot allocates (capped to a fixed-size camera's patches)
    boot = held * (f32 + pp * 4) + (held * f32 if an.method == "cae-masked" else 0)
    if an.method == "vae":
        workers = max(1, mission.runtime.threads)
        raw = (2 * workers + 1) * an.batch
        raw = raw if grid is None else min(raw, grid)
        item = 1 if cam.bit_depth <= 8 else 2
        return raw * pp * patch_channels * item + workers * slots * f32 * 2, boot
    return slots * f32 * 3, boot


def plan_memory(
    mission: Mission,
    width: int,
    height: int,
    model_bytes: int,
    patch_channels: int,
    stored: tuple[int, np.dtype[Any] | type] | None = None,
    band_rows: int | None = None,
) -> MemoryPlan:
    """What a frame of ``width`` × ``height`` (0: unknown) allocates beyond the buffers the boot already holds
    (the model images and the PatchScorer's buffers, listed under ``boot``), on the mission's scoring path.
    ``stored``: the frame's channels and sample type as stored in its file (default: the camera's channels and
    sample type): a float32 ``.npy`` frame is read at 4 bytes per sample, not the camera's 1. ``band_rows``: the
    rows a streamed reader decodes at a time (a TIFF's tile height; default: a strip's), which its buffers hold.

    The patch batch, top-k store and reconstruction tiles are bounded by what the frame has: no more patches
    than its patch grid, no more check tiles than its tile grid (:func:`recon_check_positions`). Besides the
    buffers the frame keeps (the decoded strip, its demosaiced RGB and the mosaic plane it came from, the mask
    rows, the sparse values, the no-data mask) the plan counts the largest temporaries of each step (measured
    with tracemalloc on the 1200 × 1648 Mastcam-Z frame: docs/firmware_sim.md)."""
    cam, an, rc = mission.camera, mission.anomaly, mission.reconstruction
    streamed = cam.source == "strips"
    rows = (min(cam.strip_rows, height) if height > 0 else cam.strip_rows) if streamed else height
    px = rows * width
    item = 1 if cam.bit_depth <= 8 else 2
    s_channels, s_dtype = (
        stored if stored is not None else (cam.channels, np.dtype(np.uint8 if item == 1 else np.uint16))
    )
    s_item, s_float = np.dtype(s_dtype).itemsize, np.dtype(s_dtype).kind == "f"
    pixels = an.patch * an.patch * patch_channels * item  # one kept patch, raw samples
    grid = patch_grid(mission, width, height)
    k = max(an.top_k, 1) if grid is None else min(max(an.top_k, 1), grid)
    top_k = k * pixels
    if an.method == "vae" and an.score == "terms-max":  # two keepers (one per term) and 24 B per scored patch
        top_k = 2 * top_k + 24 * (grid or 0)
    score, scorer_boot = scoring_plan(mission, patch_channels, grid)
    items = [  # a strip as stored (streamed: the reader's and the prefetch ring's copies)
        ("frame_strip_raw", px * s_channels * s_item * (PREFETCH_STRIPS + 3 if streamed else 1)),
    ]
    if streamed:  # the TIFF reader's band of decoded tiles, the read buffer it is cut from, the next one and the tiles'
        # bytes cut from it: four bands at the peak (tracemalloc, a NAC strip of 512-row tiles in 256-row strips; until
        # session 36 two strips, 7.8 MiB short there: a frame sent down the ladder to sparse_only went over the budget)
        band_px = (band_rows or rows) * width
        items.append(("reader_band", 4 * band_px * s_channels * s_item))
    if cam.bayer:  # the mosaic plane copied out of the strip and the demosaiced RGB, both held while it runs
        items.append(("demosaic_rgb", px * (3 + 1) * item))
    if s_float or s_item != item:  # the strip converted to the wire's samples (to_samples)
        items.append(("samples", px * cam.channels * item))
    # the largest temporaries before scoring: float conversion (to_samples: three copies of every sample at the
    # stored float width, 8 B for float64), the demosaic's (the channel-equality check, one float32 block per
    # colour), the pixel check's (2 B / px)
    temps = max(px * s_channels * 3 * s_item if s_float else 0, px * (3 * item) if cam.bayer else 0, px * 2)
    items += [
        ("frame_temporaries", temps),
        ("mask_rows", px + int(px * mission.sampling.keep) * 8),  # + the kept pixels' flat indices (int64)
        # the no-data mask (1 B / px, kept while the strip is scored) and its temporaries (7 + item B / px at
        # their peak), beyond the temporaries above, which are freed before it is made; only when scoring (a model)
        ("nodata_mask", max(px, px * (7 + item) - temps) if an.model else 0),
        ("sparse_values_strip", int(px * mission.sampling.keep * cam.channels * item) + 1),
        ("patch_batch_f32", score),
        ("top_k_patches", top_k),
    ]
    t2 = rc.tile * rc.tile * cam.channels
    if rc.mode == "check":  # truth, masked input, x_hat, |error| as float32 and the known mask
        tiles = rc.check_tiles if width <= 0 or rows <= 0 else recon_check_count(rows, width, rc.tile, rc.check_tiles)
        items.append(("recon_tiles_f32", tiles * t2 * (4 * 4 + 1)))
    elif rc.mode == "latent":  # one row of tiles in, the encoder's output of that row (at most as large)
        cols = axis_count(width, rc.tile, rc.tile) if width > 0 else 1
        items.append(("recon_tiles_f32", cols * t2 * 4 * 2))
    boot = (("model_image", model_bytes), ("patch_scorer_buffers", scorer_boot if an.model else 0))
    return MemoryPlan(tuple(items), tuple((n, v) for n, v in boot if v))

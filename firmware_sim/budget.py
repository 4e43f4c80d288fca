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
deadline guard stops scoring when the deadline passes. Both are recorded in the telemetry. What a frame's buffers take
(the memory side of the ladder) is planned in :mod:`.memory_plan`, imported from here as well.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

# the memory plan, split out in session 39 (imported from here by the loop's modules and the tests)
from .memory_plan import PREFETCH_STRIPS as PREFETCH_STRIPS
from .memory_plan import MemoryPlan as MemoryPlan
from .memory_plan import WholeDecode as WholeDecode
from .memory_plan import patch_grid as patch_grid
from .memory_plan import plan_memory as plan_memory
from .memory_plan import recon_check_count as recon_check_count
from .memory_plan import recon_check_positions as recon_check_positions
from .memory_plan import scoring_batch as scoring_batch
from .memory_plan import scoring_plan as scoring_plan


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

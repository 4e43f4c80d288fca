"""What the CAE sees in training: the clean crop, masked at a fixed or random level, or colour-noised.

Each sample's corruption is a pure function of (base seed, epoch, sample index) so the same epoch is the
same data whatever order or worker draws it. Masks come from :func:`edgeae.masks.make_mask` (True = pixel
kept; destroyed pixels are zero on all channels, as in the paper).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MODES = ("plain", "fixed", "gt", "colour-noise")


@dataclass(frozen=True)
class Corruption:
    """How inputs are damaged. ``destroy`` is used by ``fixed``; ``destroy_range`` by ``gt``;
    ``coverage_range`` and ``amplitude`` by ``colour-noise``; ``pattern`` is the mask pattern.

    ``known_blocks`` (``fixed``/``gt``): the probability that a sample also keeps whole rectangular blocks
    (:func:`add_known_blocks`), as the prioritised downlink sends whole patches inside a sparse context; a model
    that never saw one in training can paint artefacts next to it (:mod:`edgeae.train.known_blocks`)."""

    mode: str = "gt"
    destroy: float = 0.9
    destroy_range: tuple[float, float] = (0.5, 0.99)
    coverage_range: tuple[float, float] = (0.1, 1.0)
    amplitude: float = 1.0
    pattern: str = "uniform"
    known_blocks: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown training mode {self.mode!r}; expected one of {MODES}")
        from edgeae.masks import PATTERNS

        if self.pattern not in PATTERNS:  # found here, not at the first mask once the run has started
            raise ValueError(f"unknown mask pattern {self.pattern!r}; expected one of {PATTERNS}")
        if not 0.0 <= self.destroy < 1.0:
            raise ValueError(f"destroy must be in [0, 1) (fraction of pixels destroyed), got {self.destroy}")
        lo, hi = self.destroy_range
        if not 0.0 <= lo <= hi < 1.0:
            raise ValueError(f"destroy_range must satisfy 0 <= lo <= hi < 1, got {self.destroy_range}")
        lo, hi = self.coverage_range
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"coverage_range must satisfy 0 <= lo <= hi <= 1, got {self.coverage_range}")
        if not 0.0 < self.amplitude <= 1.0:
            raise ValueError(f"noise amplitude must be in (0, 1], got {self.amplitude}")
        if not 0.0 <= self.known_blocks <= 1.0:
            raise ValueError(f"known_blocks must be a probability in [0, 1], got {self.known_blocks}")
        if self.known_blocks > 0 and self.mode not in ("fixed", "gt"):
            raise ValueError(f"known_blocks needs a masking mode (fixed or gt), not {self.mode!r}")
        object.__setattr__(self, "destroy_range", tuple(float(v) for v in self.destroy_range))
        object.__setattr__(self, "coverage_range", tuple(float(v) for v in self.coverage_range))

    def describe(self) -> dict[str, object]:
        """The mask settings recorded in model metadata (``plain`` and ``colour-noise`` use no mask: no pattern)."""
        d: dict[str, object] = {"mode": self.mode}
        if self.mode in ("fixed", "gt"):
            d["pattern"] = self.pattern
        if self.mode == "fixed":
            d["destroy"] = self.destroy
        elif self.mode == "gt":
            d["destroy_range"] = list(self.destroy_range)
        elif self.mode == "colour-noise":
            d["coverage_range"] = list(self.coverage_range)
            d["amplitude"] = self.amplitude
        if self.mode in ("fixed", "gt"):
            from edgeae.masks import PRNG_VERSION

            if self.known_blocks > 0:
                d["known_blocks"] = self.known_blocks
            d["prng_version"] = PRNG_VERSION
        return d


def sample_seed(base_seed: int, epoch: int, index: int) -> np.random.SeedSequence:
    """The seed sequence of one sample of one epoch (epoch -1 is the fixed validation set)."""
    return np.random.SeedSequence([int(base_seed), int(epoch) + 1, int(index)])


def corrupt(image: np.ndarray, spec: Corruption, ss: np.random.SeedSequence) -> tuple[np.ndarray, float]:
    """Damage one (C, H, W) float32 sample; return (input, level) where level is the destroyed fraction
    (or the noise coverage). Deterministic in ``ss``."""
    out, level, _keep = corrupt_keep(image, spec, ss)
    return out, level


def corrupt_keep(
    image: np.ndarray, spec: Corruption, ss: np.random.SeedSequence
) -> tuple[np.ndarray, float, np.ndarray | None]:
    """:func:`corrupt` plus the bool (H, W) mask of the pixels kept, None for the modes without one (``plain``
    and ``colour-noise``: every pixel is given to the model, none is known to be clean)."""
    if spec.mode == "plain":
        return image, 0.0, None
    rng = np.random.default_rng(ss)
    if spec.mode == "colour-noise":
        from edgeae.noise import additive_colour_noise

        cov = float(rng.uniform(*spec.coverage_range))
        noisy = additive_colour_noise(image.transpose(1, 2, 0), cov, spec.amplitude, rng)
        return np.ascontiguousarray(noisy.transpose(2, 0, 1), dtype=np.float32), cov, None
    from edgeae.masks import make_mask

    level = spec.destroy if spec.mode == "fixed" else float(rng.uniform(*spec.destroy_range))
    mask_seed = int(ss.generate_state(1, np.uint64)[0])
    keep = make_mask(mask_seed, image.shape[1:], 1.0 - level, spec.pattern)
    if spec.known_blocks > 0 and rng.random() < spec.known_blocks:  # no draw at 0: older runs reproduce
        keep = add_known_blocks(keep, rng)
    return image * keep[None].astype(np.float32), level, keep


BLOCK_SIDES = (16, 64)  # side range (px) of a known block, clipped to half the crop
BLOCK_COUNT = (1, 2)


def add_known_blocks(keep: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A copy of the bool (H, W) mask with 1-2 whole rectangles (sides 16-64 px, at most half the crop) kept."""
    out = keep.copy()
    h, w = keep.shape
    for _ in range(int(rng.integers(BLOCK_COUNT[0], BLOCK_COUNT[1] + 1))):
        bh, bw = (int(rng.integers(min(BLOCK_SIDES[0], n // 2), min(BLOCK_SIDES[1], n // 2) + 1)) for n in (h, w))
        y, x = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
        out[y : y + bh, x : x + bw] = True
    return out


def corrupt_at(
    images: np.ndarray, destroy: float, seed: int, pattern: str = "uniform"
) -> tuple[np.ndarray, np.ndarray]:
    """Mask a (N, C, H, W) batch at one destroyed fraction with ``make_mask(seed + i, ...)`` for sample i.
    Returns (masked batch, keep masks bool (N, H, W))."""
    from edgeae.masks import make_mask

    out = np.empty_like(images)
    masks = np.empty((images.shape[0], *images.shape[2:]), dtype=bool)
    for i, img in enumerate(images):
        masks[i] = make_mask(seed + i, img.shape[1:], 1.0 - destroy, pattern)
        out[i] = img * masks[i][None]
    return out, masks

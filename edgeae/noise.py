"""Noise models from the gt-CAE paper: destructive luminance noise and additive luminance+colour noise.

Both take an image of shape (H, W) or (H, W, C) with values in [0, 1] and a ``numpy.random.Generator``
(randomness is passed in, never global), and return new arrays; the input is never modified.
"""

from __future__ import annotations

import numbers

import numpy as np


class NoiseError(ValueError):
    """Invalid noise parameters or image."""


def _check_fraction(name: str, value: float, allow_zero: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise NoiseError(f"{name} must be a number in [0, 1], got {value!r}")
    v = float(value)
    if not (0.0 <= v <= 1.0) or (v == 0.0 and not allow_zero):
        raise NoiseError(f"{name} must be in {'[0, 1]' if allow_zero else '(0, 1]'}, got {value}")
    return v


def _check_image(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim not in (2, 3) or img.shape[0] == 0 or img.shape[1] == 0:
        raise NoiseError(f"image must have shape (H, W) or (H, W, C), got {img.shape}")
    return img


def _choose_pixels(shape: tuple[int, int], fraction: float, rng: np.random.Generator) -> np.ndarray:
    """A bool (H, W) map with exactly ``round(fraction * H * W)`` True pixels chosen uniformly."""
    n = shape[0] * shape[1]
    k = round(fraction * n)
    chosen = np.zeros(n, dtype=bool)
    if k:
        chosen[rng.choice(n, size=k, replace=False)] = True
    return chosen.reshape(shape)


def destructive_noise(image: np.ndarray, coverage: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Zero exactly ``round(coverage * H * W)`` random pixels on all channels.

    Returns ``(noisy, kept)`` where ``kept`` is bool (H, W), True where the pixel survived (the same
    convention as :mod:`edgeae.masks`).
    """
    img = _check_image(image)
    cov = _check_fraction("coverage", coverage)
    destroyed = _choose_pixels(img.shape[:2], cov, rng)
    out = img.copy()
    out[destroyed] = 0
    return out, ~destroyed


def additive_colour_noise(image: np.ndarray, fraction: float, amplitude: float, rng: np.random.Generator) -> np.ndarray:
    """Add uniform noise in [-amplitude, +amplitude] to a random ``fraction`` of the pixels, clipped to [0, 1].

    One value is drawn per affected pixel and added to every channel of it (the paper's luminance+colour
    noise, x = ``amplitude``; the paper trains with x = 1.0 on 10-100% of the pixels). Returns float32.
    """
    img = _check_image(image)
    frac = _check_fraction("fraction", fraction)
    if isinstance(amplitude, bool) or not isinstance(amplitude, numbers.Real) or not amplitude >= 0:
        raise NoiseError(f"amplitude must be a non-negative number, got {amplitude!r}")
    hit = _choose_pixels(img.shape[:2], frac, rng)
    delta = np.zeros(img.shape[:2], dtype=np.float32)
    delta[hit] = rng.uniform(-float(amplitude), float(amplitude), size=int(hit.sum())).astype(np.float32)
    if img.ndim == 3:
        delta = delta[..., None]
    return np.clip(img.astype(np.float32) + delta, 0.0, 1.0)

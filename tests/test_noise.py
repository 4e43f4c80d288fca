"""Destructive and additive noise: exact coverage, per-pixel equal channels, clipping, determinism."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from edgeae.noise import NoiseError, additive_colour_noise, destructive_noise


def _image(shape: tuple[int, ...] = (60, 50, 3)) -> np.ndarray:
    return np.random.default_rng(0).uniform(0.2, 0.8, size=shape).astype(np.float32)


@pytest.mark.parametrize("coverage", [0.0, 0.5, 0.9, 0.99, 1.0])
def test_destructive_noise_exact_coverage(coverage: float) -> None:
    img = _image()
    noisy, kept = destructive_noise(img, coverage, np.random.default_rng(1))
    assert kept.shape == (60, 50) and kept.dtype == bool
    assert (~kept).sum() == round(coverage * 3000)
    assert (noisy[~kept] == 0).all()
    assert np.array_equal(noisy[kept], img[kept])
    assert img.min() > 0  # input untouched


def test_destructive_noise_grey_and_deterministic() -> None:
    img = _image((40, 30))
    a, ka = destructive_noise(img, 0.7, np.random.default_rng(5))
    b, kb = destructive_noise(img, 0.7, np.random.default_rng(5))
    assert np.array_equal(a, b) and np.array_equal(ka, kb)
    c, _ = destructive_noise(img, 0.7, np.random.default_rng(6))
    assert not np.array_equal(a, c)


def test_additive_noise_same_value_on_all_channels() -> None:
    img = np.full((50, 40, 3), 0.5, np.float32)
    noisy = additive_colour_noise(img, 0.3, 0.2, np.random.default_rng(2))
    delta = noisy - img
    assert np.allclose(delta[..., 0], delta[..., 1]) and np.allclose(delta[..., 0], delta[..., 2])
    hit = np.abs(delta[..., 0]) > 0
    assert hit.sum() == 600  # 30% of 2000 pixels (a zero draw has probability 0)
    assert np.abs(delta).max() <= 0.2 + 1e-7
    assert noisy.dtype == np.float32


def test_additive_noise_is_clipped() -> None:
    img = _image((80, 80, 3))
    noisy = additive_colour_noise(img, 1.0, 1.0, np.random.default_rng(3))
    assert noisy.min() >= 0.0 and noisy.max() <= 1.0
    assert (noisy == 0).any() and (noisy == 1).any()
    assert np.array_equal(additive_colour_noise(img, 0.0, 1.0, np.random.default_rng(3)), img)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda rng: destructive_noise(np.zeros((4, 4)), 1.5, rng), "coverage"),
        (lambda rng: destructive_noise(np.zeros(4), 0.5, rng), "shape"),
        (lambda rng: additive_colour_noise(np.zeros((4, 4)), -0.1, 1.0, rng), "fraction"),
        (lambda rng: additive_colour_noise(np.zeros((4, 4)), 0.5, -1.0, rng), "amplitude"),
    ],
)
def test_invalid_arguments(call: Callable[[np.random.Generator], object], match: str) -> None:
    with pytest.raises(NoiseError, match=match):
        call(np.random.default_rng(0))

"""Metric values on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgeae.metrics import compare, error_variance, mae, psnr, ssim


def test_hand_values() -> None:
    a = np.zeros((8, 8), np.float32)
    b = np.full((8, 8), 0.1, np.float32)
    assert psnr(a, b) == pytest.approx(20.0, abs=1e-5)  # mse 0.01 -> 20 dB
    assert mae(a, b) == pytest.approx(0.1)
    assert error_variance(a, b) == pytest.approx(0.0, abs=1e-12)  # constant offset has no variance
    c = b.copy()
    c[:, :4] = 0.3  # errors 0.3 and 0.1, half each -> mean 0.2, variance 0.01
    assert mae(a, c) == pytest.approx(0.2)
    assert error_variance(a, c) == pytest.approx(0.01)
    assert psnr(a, a) == math.inf


def test_ssim_identity_and_rgb(moon: np.ndarray) -> None:
    img = moon[:64, :64].astype(np.float32) / 255
    assert ssim(img, img) == pytest.approx(1.0)
    rgb = np.stack([img, img[::-1], img.T], axis=-1)
    noisy = np.clip(rgb + np.random.default_rng(0).normal(0, 0.1, rgb.shape), 0, 1)
    s = ssim(rgb, noisy)
    assert 0.0 < s < 0.9
    assert ssim(rgb[..., :1], noisy[..., :1]) == pytest.approx(ssim(img, noisy[..., 0]))
    assert ssim(img[:5, :5], img[:5, :5]) == pytest.approx(1.0)  # small window fallback


def test_compare_destroyed_only() -> None:
    a = np.zeros((10, 10, 3), np.float32)
    b = a.copy()
    known = np.zeros((10, 10), bool)
    known[:5] = True
    b[5:] = 0.2  # only destroyed pixels are wrong
    d = compare(a, b, known)
    assert d["keep_actual"] == pytest.approx(0.5)
    assert d["mae"] == pytest.approx(0.1)
    assert d["mae_destroyed"] == pytest.approx(0.2)
    assert d["error_variance_destroyed"] == pytest.approx(0.0, abs=1e-12)
    assert d["psnr_destroyed"] == pytest.approx(10 * math.log10(1 / 0.04))
    assert set(compare(a, b)) == {"psnr", "ssim", "mae", "error_variance"}


def test_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="different shapes"):
        mae(np.zeros((4, 4)), np.zeros((4, 5)))


def test_compare_over_valid_pixels_only(moon: np.ndarray) -> None:
    """A no-data margin (whose 'truth' is a fill value) is left out of every metric when ``valid`` is given."""
    from edgeae.metrics import compare

    img = moon[:64, :80].astype(np.float64) / 255.0
    rec = img + 0.01
    rec[:, :10] = 1.0  # a margin rebuilt badly
    valid = np.ones(img.shape, bool)
    valid[:, :10] = False
    known = np.zeros(img.shape, bool)
    known[::3, ::3] = True
    whole, inside = compare(img, rec, known), compare(img, rec, known, valid=valid)
    assert whole["psnr"] < 30 and inside["psnr"] == pytest.approx(40.0, abs=1e-6)
    assert inside["valid_fraction"] == pytest.approx(70 / 80) and inside["mae"] == pytest.approx(0.01)
    assert inside["ssim"] > whole["ssim"] and "psnr_destroyed" in inside
    assert compare(img, rec, known, valid=np.ones(img.shape, bool))["psnr"] == whole["psnr"]
    assert np.isnan(compare(img, rec, valid=np.zeros(img.shape, bool))["psnr"])

"""Review s36 r15 #1, #6: ``ground decode --original`` reads the original once (its no-data mask from the samples
read, one float copy), the PSNR sums in row bands, and the frame's PSNR is reconstruct's unrounded figure."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from edgeae.cli.ground_originals import _read
from edgeae.ground.outputs import psnr_fields
from edgeae.ground.sources import image_samples

cv2 = pytest.importorskip("cv2")


def _margin_png(path: Path, h: int = 256, w: int = 256, alpha: bool = False) -> Path:
    rng = np.random.default_rng(5)
    img = rng.integers(60, 200, (h, w), dtype=np.uint8)
    img[:, :20] = 0  # a black no-data margin
    if alpha:
        a = np.full((h, w), 255, np.uint8)
        a[100:110, 100:110] = 0  # transparent inside: only the file's alpha says so
        cv2.imwrite(str(path), np.dstack([img, img, img, a]))
    else:
        cv2.imwrite(str(path), img)
    return path


@pytest.mark.parametrize("alpha", [False, True])
def test_original_no_data_is_reconstructs_rule(tmp_path: Path, alpha: bool) -> None:
    from edgeae.imageio import read_image

    p = _margin_png(tmp_path / "m.png", alpha=alpha)
    got = _read(p, None, {}, 0, None)
    want = read_image(p)
    assert np.array_equal(np.isnan(got).any(axis=2), ~want.valid)
    ok = want.valid
    assert np.allclose(got[ok], want.pixels[ok], rtol=0, atol=1e-6) and not ok[:, :20].any()
    assert ok[100:110, 100:110].any() != alpha  # the transparent block: from the file's alpha


def test_original_read_once_without_a_second_float_copy(tmp_path: Path) -> None:
    """Peak of the read: the samples' own read plus the float32 copy (4 B) and the masks, not a second decode
    and float copy (12 B a sample before)."""
    p = _margin_png(tmp_path / "big.png", 1024, 1024)
    n = 1024 * 1024
    tracemalloc.start()
    try:
        image_samples(p)
        base = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        tracemalloc.start()
        out = _read(p, None, {}, 0, None)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.isnan(out).any() and peak <= base + 6.5 * n, (base / n, peak / n)


def test_psnr_is_reconstructs_unrounded_figure_in_bands() -> None:
    """One rebuild, one figure: the ground's PSNR equals edgeae.image_metrics' (reconstruct's) to the last digits,
    unrounded (24.595 printed 24.59 beside reconstruct's 24.60), without whole-frame float64 copies."""
    import edgeae

    rng = np.random.default_rng(2)
    orig = rng.random((2048, 512, 1), dtype=np.float32)
    recon = np.clip(orig + rng.normal(0, 0.05, orig.shape).astype(np.float32), 0, 1)
    valid = np.ones((2048, 512), bool)
    valid[:, :30] = False
    want = edgeae.image_metrics(orig, recon, valid=valid)["psnr"]
    marked = orig.copy()
    marked[~valid] = np.nan
    tracemalloc.start()
    try:
        rep = psnr_fields(marked, recon, None)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rep["psnr"] == pytest.approx(want, rel=1e-13) and rep["psnr"] != round(rep["psnr"], 3)
    from edgeae.metrics import BAND_SAMPLES

    # a band's float64 work and the frame's masks; 32 B a sample with fancy-index and float64 copies before
    assert peak < 3 * orig.size + 40 * BAND_SAMPLES < 16 * orig.size, peak / orig.size
    assert psnr_fields(orig, recon, None)["psnr"] == pytest.approx(edgeae.image_metrics(orig, recon)["psnr"], rel=1e-13)


def test_budget_refusal_suggests_a_budget_that_passes() -> None:
    """Review s36 r15 #5: the suggestion passes the check itself, and a frame under one packet says no budget can."""
    from edgeae.cli.downlink_plan import _least_budget

    text = _least_budget(2047, 7120)
    least = float(text.rsplit(" ", 1)[1])
    assert int(least * 7120) >= 2047 and least == 0.287501
    assert "too small to plan at any budget" in _least_budget(71, 64)
    assert _least_budget(64, 64) == "give at least 1.0"

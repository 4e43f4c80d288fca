"""Raw colour-filter mosaics: numpy bilinear demosaic (flight) against OpenCV (ground), strips, detection."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeae.bayer import PATTERNS, demosaic, demosaic_bilinear, demosaic_strips, looks_like_mosaic, shifted

ZL0 = "rover_rgb/mars2020_raw/ZL0_0038_0670307360_057ECM_N0031392ZCAM08007_1100LUJ.png"


def _scene(h: int = 120, w: int = 160) -> np.ndarray:
    """A smooth colour scene with edges (uint8 RGB)."""
    yy, xx = np.indices((h, w))
    r = 120 + 80 * np.sin(xx / 9.0)
    g = 100 + 60 * np.cos(yy / 7.0)
    b = 60 + 40 * ((xx // 30 + yy // 25) % 2)
    return np.clip(np.stack([r, g, b], axis=2), 0, 255).astype(np.uint8)


def _mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    m = np.zeros(rgb.shape[:2], rgb.dtype)
    for i, c in enumerate(pattern):
        dy, dx = divmod(i, 2)
        m[dy::2, dx::2] = rgb[dy::2, dx::2, "RGB".index(c)]
    return m


@pytest.mark.parametrize("pattern", PATTERNS)
def test_numpy_demosaic_matches_opencv(pattern: str) -> None:
    cv2 = pytest.importorskip("cv2")
    rgb = _scene()
    m = _mosaic(rgb, pattern)
    ours = demosaic_bilinear(m, pattern).astype(int)
    code = {"RGGB": cv2.COLOR_BayerBG2RGB, "BGGR": cv2.COLOR_BayerRG2RGB, "GRBG": cv2.COLOR_BayerGB2RGB,
            "GBRG": cv2.COLOR_BayerGR2RGB}[pattern]  # fmt: skip
    ref = cv2.cvtColor(m, code).astype(int)
    assert np.abs(ours[1:-1, 1:-1] - ref[1:-1, 1:-1]).max() <= 1  # rounding only
    assert np.abs(ours - ref).mean() < 0.5  # the outermost ring differs by border handling
    assert np.array_equal(demosaic(m, pattern), demosaic_bilinear(m, pattern))  # the ground path is the flight's
    assert np.abs(ours - rgb.astype(int)).mean() < 6  # and it recovers the scene


def test_strips_demosaic_exactly_and_patterns_shift() -> None:
    m = _mosaic(_scene(), "RGGB")
    whole = demosaic_bilinear(m, "RGGB")
    for rows in (2, 7, 37, 64):
        got = np.concatenate(
            [s for _, s in demosaic_strips(((r, m[r : r + rows]) for r in range(0, 120, rows)), "RGGB")]
        )
        assert np.array_equal(got, whole), rows
    assert shifted("RGGB", 1, 0) == "GBRG" and shifted("RGGB", 0, 1) == "GRBG" and shifted("RGGB", 1, 1) == "BGGR"
    with pytest.raises(ValueError, match="Bayer pattern"):
        demosaic_bilinear(m, "RGBW")
    with pytest.raises(ValueError, match="already demosaiced"):
        demosaic_bilinear(_scene(), "RGGB")


def test_mosaic_detection_on_real_frames(data_root: Path) -> None:
    cv2 = pytest.importorskip("cv2")
    raw = data_root / ZL0
    if not raw.is_file():
        pytest.skip(f"{raw} not in the data folder")
    assert looks_like_mosaic(cv2.imread(str(raw)))  # grey stored as RGB, 2×2 repeating filter values
    for rel in ("orbital_gray/misc/Tycho_LRO.png", "rover_rgb/mars2020_raw/NRB_670586006EDR_S0871444NCAM00545M_.jpg"):
        assert not looks_like_mosaic(cv2.imread(str(data_root / rel)))
    rgb = demosaic(cv2.imread(str(raw)), "RGGB")
    centre = rgb[200:1000, 200:1400].reshape(-1, 3).mean(axis=0)
    assert centre[0] > centre[1] > centre[2]  # Mars: red > green > blue once demosaiced
    assert not looks_like_mosaic(rgb[:, :, 1])


def test_streamed_scoring_warns_of_a_mosaic(data_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The streamed path edgeae score / scan read (edgeae.strips) warns of an undemosaiced frame as read_image
    does, and not when --bayer demosaics it."""
    import logging

    from edgeae.strips import iter_patch_blocks

    raw = data_root / ZL0
    if not raw.is_file():
        pytest.skip(f"{raw} not in the data folder")
    with caplog.at_level(logging.WARNING, logger="edgeae"):
        next(iter_patch_blocks(raw, 64, channels=3))
    assert "undemosaiced colour-filter mosaic" in caplog.text and "--bayer" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="edgeae"):
        next(iter_patch_blocks(raw, 64, channels=3, bayer="RGGB"))
    assert "undemosaiced" not in caplog.text


def test_flight_demosaic_runs_without_opencv() -> None:
    code = (
        "import sys, numpy as np\n"
        "sys.modules['cv2'] = None  # a flight-only install has no OpenCV\n"
        "from edgeae.bayer import demosaic\n"
        "m = (np.arange(64 * 64) % 251).reshape(64, 64).astype(np.uint8)\n"
        "assert demosaic(m, 'RGGB').shape == (64, 64, 3)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_a_demosaiced_dark_margin_is_found_on_the_min_channel() -> None:
    """Raw Mastcam-Z frames start with two dark sensor rows (4-13 of 255); demosaicing lifts their interpolated
    channels towards the bright rows below (mean ~52), so the margin is only seen on each pixel's darkest channel."""
    from edgeae.nodata import valid_mask

    rng = np.random.default_rng(0)
    mosaic = rng.integers(150, 230, (64, 96), dtype=np.uint8)
    mosaic[:2] = rng.integers(2, 14, (2, 96), dtype=np.uint8)
    cv2 = pytest.importorskip("cv2")
    # OpenCV's demosaicing lifts them (edgeae's own, the flight's, since session 32 on the ground too, lifts less)
    rgb = cv2.cvtColor(mosaic, cv2.COLOR_BayerBG2RGB)
    assert rgb[:2].mean() > 0.1 * np.median(rgb)  # lifted above the relative dark-margin level
    lifted = valid_mask(rgb, bit_depth=8, reduce="max")
    found = valid_mask(rgb, bit_depth=8, reduce="min")
    assert lifted[:2].all()  # the default (max over channels) misses it
    assert not found[:2].any() and found[4:].all()
    with pytest.raises(ValueError, match="reduce"):
        valid_mask(rgb, reduce="mean")


def test_demosaiced_rows_keep_a_products_no_data_rule() -> None:
    """A planetary product's label says what is missing (its reader turns the margin heuristics off); read with
    bayer= its rows were judged by the black/dark-margin heuristics all the same (the wrapper hid the rule)."""
    from edgeae.row_bands import _BayerRows, _iter_bands

    class ProductRows:  # what edgeae.archive.reader.ProductReader tells the band reader
        path, height, width, bit_depth = Path("product.IMG"), 32, 48, 8
        heuristic_nodata, zero_fill = False, False

        def read_rows(self, y0: int, y1: int) -> tuple[np.ndarray, None]:
            raw = np.full((y1 - y0, self.width, 1), 120, np.uint8)
            raw[:, :6] = 2  # a dark left margin that is real content by the label (no no-data value declared)
            return raw, None

        def close(self) -> None:
            pass

    bayer = _BayerRows(ProductRows(), "RGGB")
    assert bayer.heuristic_nodata is False and bayer.zero_fill is False
    strips = list(_iter_bands(bayer, [(0, 16), (16, 32)], None, True))
    assert all(s.valid.all() for s in strips)  # was: the dark margin marked invalid in every band
    plain = list(_iter_bands(ProductRows(), [(0, 16), (16, 32)], None, True))
    assert all(s.valid.all() for s in plain)

"""The flight runtime's NaN/inf refusal (session 37, fixer h3; audit s37 a2 #7): an all-NaN strip said "76,800
pixel(s), 1 of them, are NaN/inf", the fraction 1.0 printed where a count is read."""

from __future__ import annotations

import numpy as np
from edgeae.firmware_sim.mission import load_mission
from edgeae.firmware_sim.validate import check_pixels


def _detail(strip: np.ndarray) -> str:
    v = check_pixels(strip, load_mission("orbital_nac").camera)
    assert not v.ok and v.reason == "nan"
    return v.detail


def test_an_all_nan_strip_says_all_of_its_pixels() -> None:
    assert _detail(np.full((256, 300, 1), np.nan, np.float32)) == "all 76,800 pixels (100%) are NaN/inf"


def test_a_strip_nan_but_one_pixel_does_not_print_its_fraction_as_1() -> None:
    strip = np.full((256, 300, 1), np.inf, np.float32)
    strip[5, 7] = 0.5
    assert _detail(strip) == "76,799 pixel(s), >0.999 of them, are NaN/inf"


def test_a_few_nan_pixels_keep_their_count_and_fraction() -> None:
    strip = np.full((256, 300, 1), 0.5, np.float32)
    strip[:128] = np.nan
    assert _detail(strip) == "38,400 pixel(s), 0.5 of them, are NaN/inf"

"""The demo (session 36, fixer j1; review s36 r8 #4): a PSNR difference that prints as 0.00 dB is a tie."""

from __future__ import annotations

import re

import numpy as np
import pytest

from edgeae.demo import DemoConfig, DemoContext, conclusion_lines
from edgeae.reconstruct import Reconstruction

ZERO = re.compile(r"(?<![\d.])0\.00 dB")  # a margin of 0.00 dB (not 30.00 dB)


# ----------------------------------------------------------------------------- r8 #4: a tie is what prints as 0.00
def _ctx(*results: Reconstruction, codec: float | None = None) -> DemoContext:
    ctx = DemoContext(DemoConfig(cross_check=None), model="m")
    ctx.results = list(results)
    if codec is not None:
        ctx.extra["codec"] = {"budget": 1000, "bytes": 990, "metrics": {"psnr": codec}}
        ctx.extra["downlink"] = {"perfect": {"psnr": 30.0, "pixels_received": 1.0}}
    return ctx


def _r(method: str, psnr: float) -> Reconstruction:
    return Reconstruction(method, np.zeros((2, 2, 1), np.float32), 1.0, {"psnr": psnr, "ssim": 0.9, "mae": 0.01})


@pytest.mark.parametrize(("cae", "linear"), [(30.006, 30.004), (30.004, 30.006), (29.9951, 30.0049)])
def test_psnr_values_that_straddle_a_rounding_step_are_a_tie(cae: float, linear: float) -> None:
    """30.006 and 30.004 print as 30.01 and 30.00, their difference as 0.00: it read 'beats ... by 0.00 dB'."""
    lines = conclusion_lines(_ctx(_r("cae", cae), _r("linear", linear)))
    assert "tied with" in lines[0] and "ahead of" not in lines[0], lines[0]
    assert lines[1].startswith("The CAE matches the best classical method (linear, "), lines[1]
    for text in lines:
        assert not ZERO.search(text) and "beats" not in text and "loses to" not in text, text


@pytest.mark.parametrize(("jp", "sp"), [(30.006, 30.004), (30.004, 30.006), (30.0049, 29.9951)])
def test_a_codec_that_straddles_a_rounding_step_is_the_same(jp: float, sp: float) -> None:
    text = " ".join(conclusion_lines(_ctx(_r("cae", sp), _r("linear", 20.0), codec=jp)))
    assert "JPEG 2000 of the whole frame reaches" in text and ": the same as sparse pixels + CAE (" in text, text
    assert "JPEG 2000 at the same bytes matches sparse pixels + CAE" in text, text
    assert not ZERO.search(text) and "better than" not in text and "worse than" not in text, text
    assert "beat JPEG 2000" not in text, text


def test_a_difference_that_prints_as_0_01_is_not_a_tie() -> None:
    lines = conclusion_lines(_ctx(_r("cae", 30.0101), _r("linear", 30.0)))
    assert lines[0] == "From 10% of the pixels, the best rebuild is cae (m) at 30.01 dB PSNR, 0.01 dB ahead of linear."
    assert lines[1].startswith("The CAE beats the best classical method (linear, 30.00 dB) by 0.01 dB PSNR")

"""Session 36, fixer j2 (review s36 r14): the demo's conclusion margins and its write's clean-up."""

from __future__ import annotations

import numpy as np

from edgeae.demo import DemoConfig, DemoContext, conclusion_lines
from edgeae.demo.conclusion import ADAPTED, CROSS
from edgeae.reconstruct import Reconstruction


def _r(method: str, psnr: float) -> Reconstruction:
    return Reconstruction(method, np.zeros((2, 2, 1), np.float32), 1.0, {"psnr": psnr, "ssim": 0.9, "mae": 0.01})


def test_a_cross_check_tied_with_the_cae_says_the_same_not_minus_zero():
    ctx = DemoContext(DemoConfig(), model="m")
    ctx.results = [_r("cae", 31.006), _r(CROSS, 31.002), _r("linear", 30.0)]
    ctx.extra["cross_check_report"] = {"alpha_mean": 0.99, "cae_share": 1.0}
    line = next(x for x in conclusion_lines(ctx) if "Mixed with" in x)
    assert "0.00 dB" not in line
    assert "the same as the CAE alone" in line
    assert "+1.00 dB over the best classical method" in line


def test_an_adapted_model_that_is_the_one_shipped_says_the_same_not_plus_zero():
    ctx = DemoContext(DemoConfig(cross_check=None, adapt=3), model="m")
    ctx.results = [_r("cae", 31.0), _r(ADAPTED, 31.0), _r("linear", 30.0)]
    ctx.extra["adapt_report"] = {"chosen_step": 0}
    line = next(x for x in conclusion_lines(ctx) if "Adapted to" in x)
    assert "0.00 dB" not in line
    assert "the same as the CAE as shipped" in line


def test_a_link_cost_that_prints_as_zero_says_no_packet_loss_changed_it():
    ctx = DemoContext(DemoConfig(cross_check=None), model="m")
    ctx.results = [_r("cae", 31.0), _r("linear", 30.0)]
    ctx.extra["downlink"] = {
        "perfect": {"psnr": 31.0, "pixels_received": 1.0},
        "loss5": {"psnr": 30.997, "pixels_received": 0.99},
    }
    lines = [x for x in conclusion_lines(ctx) if "link" in x]
    assert lines and not any("0.00 dB below" in x for x in lines)
    assert any("no packet loss changed the ground rebuild" in x for x in lines)

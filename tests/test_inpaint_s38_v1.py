"""Session 38 (v1): the classical fills ``normconv-wide`` (normalised convolution with σ = 8 added) and ``blend``
(the mean of ``normconv-wide`` and ``linear``), picked on validation, listed wherever the classical fills are, and
counted by the benchmarks' "best classical fill"."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeae.inpaint import BLEND_OF, METHODS, NORMCONV_SIGMAS, NORMCONV_WIDE_SIGMAS, inpaint
from edgeae.masks import make_mask

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _reference_normconv(img: np.ndarray, known: np.ndarray, sigmas: tuple[float, ...]) -> np.ndarray:
    """Normalised convolution written out again in float64 (Knutsson & Westin): coarse to fine, a finer scale
    taking over with weight 1 - exp(-certainty × 2πσ² / 1.5); the known samples kept, the rest clipped."""
    from scipy.ndimage import gaussian_filter

    m = known.astype(np.float64)
    x = img.astype(np.float64) * m[..., None]
    est = np.broadcast_to(x.sum((0, 1)) / m.sum(), img.shape).copy()
    for s in sorted(sigmas, reverse=True):
        opts = {"sigma": s, "mode": "nearest", "radius": max(1, math.ceil(3 * s))}
        den = gaussian_filter(m, **opts)
        num = np.stack([gaussian_filter(x[..., c], **opts) for c in range(img.shape[2])], axis=-1)
        w = (1 - np.exp(-den * 2 * np.pi * s * s / 1.5))[..., None]
        est = w * num / np.maximum(den, 1e-6)[..., None] + (1 - w) * est
    out = np.clip(est, 0, 1)
    out[known] = img[known]
    return out


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    rng = np.random.default_rng(38)
    yy, xx = np.mgrid[:48, :56] / 48.0
    base = np.stack([0.5 + 0.4 * np.sin(3 * yy), 0.3 + 0.5 * xx / 1.2, 0.5 + 0.3 * np.cos(4 * xx * yy)], -1)
    return np.clip(base + 0.05 * rng.standard_normal(base.shape), 0, 1).astype(np.float32)


def test_the_new_fills_are_methods_and_normconv_keeps_the_unet_prefill_sigmas() -> None:
    from edgeae.models.unet_cae import SIGMAS
    from edgeae.reconstruct import METHODS as RECONSTRUCT_METHODS

    assert {"normconv-wide", "blend"} <= set(METHODS) <= set(RECONSTRUCT_METHODS)
    assert NORMCONV_SIGMAS == SIGMAS == (1.0, 2.0, 4.0)  # the published normconv and the U-Net pre-fill unchanged
    assert NORMCONV_WIDE_SIGMAS == (1.0, 2.0, 4.0, 8.0)
    assert BLEND_OF == ("normconv-wide", "linear")  # picked on validation (docs/reconstruction.md)


@pytest.mark.parametrize("keep", [0.02, 0.1])
def test_normconv_and_normconv_wide_equal_an_independent_computation(rgb: np.ndarray, keep: float) -> None:
    known = make_mask(5, rgb.shape[:2], keep, "uniform")
    for method, sigmas in (("normconv", NORMCONV_SIGMAS), ("normconv-wide", NORMCONV_WIDE_SIGMAS)):
        out = inpaint(rgb, known, method)
        assert out.dtype == np.float32 and np.array_equal(out[known], rgb[known])
        np.testing.assert_allclose(out, _reference_normconv(rgb, known, sigmas), atol=2e-5, err_msg=method)


def test_blend_is_the_mean_of_its_two_fills_exactly(rgb: np.ndarray) -> None:
    known = make_mask(2, rgb.shape[:2], 0.05, "uniform")
    a, b = (inpaint(rgb, known, m) for m in BLEND_OF)
    out = inpaint(rgb, known, "blend")
    assert out.dtype == np.float32 and out.shape == rgb.shape
    assert np.array_equal(out, (a + b) / 2)
    assert np.array_equal(out[known], rgb[known])  # the known samples bit for bit
    grey = inpaint(rgb[..., 1], known, "blend")  # (H, W) in, (H, W) out
    assert grey.shape == rgb.shape[:2] and np.array_equal(grey, out[..., 1])


def test_normconv_wide_fills_where_normconv_leaves_the_global_mean() -> None:
    """Samples 16 px apart (keep 0.4 %): between them σ ≤ 4 px sees almost nothing and falls back to the image's
    global mean; σ = 8 brings each hole most of the way to its own neighbourhood's value."""
    img = np.full((128, 128), 0.9, np.float32)
    img[:, 64:] = 0.1  # global mean 0.5
    known = np.zeros(img.shape, bool)
    known[8::16, 8::16] = True
    holes = np.zeros(img.shape, bool)
    holes[16::16, 16::16] = True  # the points furthest from any sample (11.3 px)
    holes[:, 40:88] = False  # away from the edge between the halves
    narrow, wide = (inpaint(img, known, m) for m in ("normconv", "normconv-wide"))
    err_narrow = np.abs(narrow - img)[holes]
    err_wide = np.abs(wide - img)[holes]
    assert err_narrow.min() > 0.3  # normconv: within 0.1 of the global mean 0.5, 0.4 off
    assert err_wide.max() < 0.15 and err_wide.max() < err_narrow.min() / 2


def test_reconstruct_cli_lists_and_runs_the_new_fills(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from edgeae.cli import main
    from edgeae.imageio import write_image

    monkeypatch.setenv("COLUMNS", "500")  # one line per option: no name broken at its hyphen
    with pytest.raises(SystemExit):
        main(["reconstruct", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "normconv-wide" in text and "blend (the mean of normconv-wide and linear" in text
    src = tmp_path / "in.png"
    img = np.clip(np.add.outer(np.arange(40), np.arange(40)) / 80.0, 0, 1).astype(np.float32)
    write_image(src, img)
    for method in ("normconv-wide", "blend"):
        out, js = tmp_path / f"{method}.png", tmp_path / f"{method}.json"
        argv = ["reconstruct", str(src), "--method", method, "-o", str(out), "--metrics-json", str(js)]
        assert main(argv) == 0
        m = json.loads(js.read_text())
        assert out.is_file() and m["method"] == method and m["psnr"] > 30  # 36.4 / 36.6 dB measured


def test_demo_and_ground_filler_take_the_new_fills() -> None:
    from edgeae.demo.context import DemoConfig
    from edgeae.ground.filler import make_filler

    assert {"normconv-wide", "blend"} <= set(DemoConfig().methods)
    DemoConfig(methods=("cae", "normconv", "blend"))  # accepted
    img = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32, 1)
    known = make_mask(0, (32, 32), 0.2, "uniform")
    fill, name = make_filler(method="blend")
    assert name == "blend"
    np.testing.assert_array_equal(fill(img, known), inpaint(img, known, "blend"))


def test_memory_estimates_cover_the_new_fills() -> None:
    from edgeae.cli.reconstruct_memory import FILL_BYTES_PER_PIXEL, fill_bytes
    from edgeae.ground.limits import REBUILD_BYTES, rebuild_bytes

    px = 4 * 10**6
    for method in ("normconv-wide", "blend"):
        assert method in FILL_BYTES_PER_PIXEL and method in REBUILD_BYTES
        assert fill_bytes(method, px, 3, False) < fill_bytes("cae", px, 3, False)  # not the CAE's fallback
    # blend runs linear (it triangulates the samples) and normconv-wide
    assert fill_bytes("blend", px, 1, False, kept=px // 10) >= fill_bytes("linear", px, 1, False, kept=px // 10)
    assert rebuild_bytes(2048, 2048, 1, "blend") > rebuild_bytes(2048, 2048, 1, "linear")


def test_benchmarks_count_the_new_fills_as_classical() -> None:
    from benchmarks import acceptance_report, grey_rates

    assert {"normconv-wide", "blend"} <= set(acceptance_report.CLASSICAL) and "blend" in grey_rates.CLASSICAL
    per = {
        "a.png": {"m": {"psnr": 30.0, "ssim": 0.8}, "normconv": {"psnr": 29.0, "ssim": 0.7},
                  "blend": {"psnr": 29.5, "ssim": 0.7}, "linear": {"psnr": 28.0, "ssim": 0.7}},
        "b.png": {"m": {"psnr": 25.0, "ssim": 0.6}, "normconv": {"psnr": 24.0, "ssim": 0.6},
                  "blend": {"psnr": 25.5, "ssim": 0.6}, "linear": {"psnr": 24.9, "ssim": 0.6}},
    }  # fmt: skip
    s = acceptance_report.summarise(per, ["m"])
    assert s["best_classical_per_image"] == {"a.png": "blend", "b.png": "blend"}
    assert s["margins"]["m"]["mean_margin_db"] == pytest.approx(0.0) and s["margins"]["m"]["wins"] == 1


def test_grey_rates_table_shows_every_classical_fill_and_reads_an_old_result() -> None:
    from benchmarks.grey_rates import CLASSICAL, markdown

    cell = {"mean": {"cae": 20.0, "margin": 0.1, **{m: 19.0 + i / 10 for i, m in enumerate(CLASSICAL)}}}
    new = markdown({"model": "g", "classical": list(CLASSICAL), "cells": {"test 0.02": {**cell, "wins": 3, "n": 5}}})
    assert "| crops | keep | CAE | normconv | normconv-wide | linear | blend | margin | CAE ahead |" in new
    assert "| test (orbital_gray) | 0.02 | 20.00 | 19.00 | 19.10 | 19.20 | 19.30 | +0.10 | 3/5 |" in new
    old = {"model": "g", "cells": {"test 0.02": {"mean": {"cae": 20.0, "normconv": 19.0, "linear": 19.5,
                                                          "margin": 0.5}, "wins": 5, "n": 5}}}  # fmt: skip
    assert "| test (orbital_gray) | 0.02 | 20.00 | 19.00 | 19.50 | +0.50 | 5/5 |" in markdown(old)


def test_a_ground_memory_refusal_suggests_only_fills_ground_decode_offers() -> None:
    from edgeae.cli import build_parser
    from edgeae.ground import limits

    def sub(p: Any, name: str) -> Any:
        return next(a for a in p._actions if a.choices and name in a.choices).choices[name]

    offered = next(a.choices for a in sub(sub(build_parser(), "ground"), "decode")._actions if a.dest == "method")
    msg = limits._lighter(4096, 4096, 1, "cae:rover-rgb-unet2-ground")
    named = msg.split("with --method ")[1].split(":")[0].split(" or ")
    assert named and set(named) <= set(offered)
    assert set(limits.NOT_A_GROUND_METHOD) == set(METHODS) - set(offered) == set()  # ground decode offers every fill

"""The demo (session 36, fixer g1): an image name that is not UTF-8, index.html and metrics.json replaced together,
and a conclusion that ranks an exact rebuild (PSNR ∞) first."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from _helpers_demo import FAST, small_frame, write_png
from _helpers_report import no_space_for_the_page

from edgeae.demo import DemoConfig, DemoContext, conclusion_lines, run_demo, stage_frame
from edgeae.demo.rebuild import stage_reconstruct
from edgeae.reconstruct import Reconstruction

INF = math.inf


def test_demo_on_an_image_named_with_bytes_that_are_not_utf8(tmp_path: Path) -> None:
    image = write_png(tmp_path / os.fsdecode(b"t\xff.png"), small_frame())
    said: list[str] = []
    cfg = DemoConfig(out=tmp_path / "demo", image=image, methods=("nearest",), cross_check=None)
    res = run_demo(cfg, FAST, say=said.append)
    page = res.html.read_text(encoding="utf-8")
    assert "t\\xff.png" in page and "\udcff" not in page
    record = json.loads((tmp_path / "demo" / "metrics.json").read_text(encoding="ascii"))
    assert os.fsencode(record["image"]) == b"t\xff.png"  # the exact name, as JSON's \udcff escape (review s36 r3 #3)
    assert said and all(line.encode("utf-8") for line in said)  # printable in any UTF-8 terminal
    assert any("t\\xff.png" in line for line in said)


def test_a_failed_page_write_leaves_the_earlier_index_and_metrics_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "demo"
    run_demo(DemoConfig(out=out, image=write_png(tmp_path / "a.png", small_frame()), methods=("nearest",)), FAST)
    before = {n: (out / n).read_bytes() for n in ("index.html", "metrics.json")}
    images = {p.name: p.read_bytes() for p in (out / "img").iterdir()}  # the earlier page's images (review s36 r3 #1)
    no_space_for_the_page(monkeypatch)
    cfg = DemoConfig(out=out, image=write_png(tmp_path / "b.png", 255 - small_frame()), methods=("nearest", "linear"))
    with pytest.raises(OSError, match="No space left"):
        run_demo(cfg, FAST)
    monkeypatch.undo()
    assert {n: (out / n).read_bytes() for n in before} == before
    assert {p.name: p.read_bytes() for p in (out / "img").iterdir()} == images  # not the new frame's, no staged ones
    assert sorted(p.name for p in out.iterdir()) == ["img", "index.html", "metrics.json"]  # no temporary file left


def test_conclusion_on_a_constant_frame_ranks_the_exact_rebuilds_first(tmp_path: Path) -> None:
    """A flat frame (a lens-cap or saturated frame): the classical fills rebuild it exactly, the CAE does not."""
    pytest.importorskip("onnxruntime")
    image = write_png(tmp_path / "flat.png", np.full((32, 32, 3), 77, np.uint8))
    cfg = DemoConfig(out=tmp_path / "d", image=image, methods=("cae", "nearest", "linear"), cross_check=None)
    ctx = DemoContext(cfg)
    stage_frame(ctx)
    stage_reconstruct(ctx)
    psnr = {r.method: r.metrics["psnr"] for r in ctx.results}
    assert psnr["nearest"] == psnr["linear"] == INF and math.isfinite(psnr["cae"])
    lines = conclusion_lines(ctx)
    assert lines[0].startswith("From 10% of the pixels, nearest and linear rebuild the frame exactly (PSNR ∞)")
    assert f"the best of the others is cae ({ctx.model}) at {psnr['cae']:.2f} dB" in lines[0]
    assert "best rebuild is cae" not in " ".join(lines)
    assert lines[1].startswith(
        f"The CAE does not rebuild the frame exactly ({psnr['cae']:.2f} dB PSNR), where nearest and linear do"
    )


def _ctx(*results: Reconstruction, codec_psnr: float | None = None) -> DemoContext:
    ctx = DemoContext(DemoConfig(), model="m")
    ctx.results = list(results)
    if codec_psnr is not None:
        ctx.extra["codec"] = {"budget": 1000, "bytes": 990, "metrics": {"psnr": codec_psnr}}
        ctx.extra["downlink"] = {"perfect": {"psnr": 40.0, "pixels_received": 1.0}}
    return ctx


def _r(method: str, psnr: float, seconds: float = 1.0, ssim: float = 0.9, mae: float = 0.01) -> Reconstruction:
    return Reconstruction(method, np.zeros((2, 2, 1), np.float32), seconds, {"psnr": psnr, "ssim": ssim, "mae": mae})


def test_conclusion_words_every_exact_case_without_inf_or_nan() -> None:
    every = conclusion_lines(_ctx(_r("cae", INF, 2.0, 1.0, 0.0), _r("linear", INF, 0.5, 1.0, 0.0), codec_psnr=INF))
    text = " ".join(every)
    assert "inf" not in text and "nan" not in text
    assert every[0] == "From 10% of the pixels, every method rebuilds the frame exactly (PSNR ∞)."
    assert every[1].startswith("The CAE rebuilds the frame exactly, as does the best classical method (linear)")
    assert "time (2.00 s vs 0.50 s for linear)" in every[1] and "SSIM" not in every[1]  # a tie is not a loss
    assert "JPEG 2000 of the whole frame rebuilds it exactly, as does sparse pixels + CAE" in text
    assert "Should you fly it? On a clean link, no: JPEG 2000 at the same bytes rebuilds the frame exactly too" in text

    cae_only = " ".join(conclusion_lines(_ctx(_r("cae", INF), _r("linear", 41.5), codec_psnr=35.0)))
    assert "From 10% of the pixels, cae (m) rebuilds the frame exactly (PSNR ∞); the best of the others is linear" in (
        cae_only
    )
    assert "The CAE rebuilds the frame exactly, where the best classical method (linear, 41.50 dB) does not" in cae_only
    assert "yes: sparse pixels + CAE rebuilds the frame exactly at equal bytes; JPEG 2000 reaches 35.00 dB" in cae_only
    assert "inf" not in cae_only and "nan" not in cae_only

    codec_exact = " ".join(conclusion_lines(_ctx(_r("cae", 30.0), _r("linear", 29.0), codec_psnr=INF)))
    assert "JPEG 2000 of the whole frame rebuilds it exactly; sparse pixels + CAE reaches 30.00 dB" in codec_exact
    assert "no: JPEG 2000 at the same bytes rebuilds the frame exactly and sparse pixels + CAE does not" in codec_exact
    assert "inf" not in codec_exact and "nan" not in codec_exact


def test_conclusion_drops_a_failed_method_but_keeps_the_exact_one() -> None:
    lines = conclusion_lines(_ctx(_r("cae", 30.0), _r("telea", math.nan), _r("nearest", INF)))
    assert lines[0] == (
        "From 10% of the pixels, nearest rebuilds the frame exactly (PSNR ∞); the best of the others is cae (m) at "
        "30.00 dB PSNR."
    )
    assert "telea" not in " ".join(lines)

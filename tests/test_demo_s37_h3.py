"""`edgeae demo --image` on a frame with no-data (session 37, fixer h3; audit s37 a2 #4): the rule of `edgeae
reconstruct` (edgeae.received, edgeae.ground.validity): no-data samples not used, every metric over the pixels with
data, a frame with no pixel of data refused in one line. Before, an all-no-data cube was "rebuilt exactly (PSNR ∞)"
and a HiRISE GeoTIFF gave 22.76 dB in the demo, 23.33 dB in reconstruct for the same rebuild."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _helpers_demo import ESP, cli, downlink_ctx, float_tif, linear_for_the_cae, nan_tif, texture

from edgeae.demo import DemoConfig, DemoContext


def _nan_block(tmp_path: Path) -> Path:
    """A 64×64 float TIFF whose 20 left columns are NaN (no data); with the dark column beside them that the margin
    rule leaves out, 2,752 pixels (67.2%) hold data."""
    return nan_tif(tmp_path / "block.tif", 64, 64, 20)


def _demo(image: Path, out: Path, methods: str = "telea,linear") -> int:
    return cli("demo", "--image", image, "--out", out, "--methods", methods, "--no-anomaly", "--no-cross-check")


def _reconstruct(image: Path, method: str, tmp_path: Path) -> dict[str, Any]:
    js = tmp_path / f"r-{method}.json"
    assert cli("reconstruct", image, "--method", method, "-o", tmp_path / f"r-{method}.tif", "--metrics-json", js) == 0
    record: dict[str, Any] = json.loads(js.read_text())
    return record


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_a_frame_with_no_pixel_of_data_is_refused_in_one_line(
    value: float, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An all-NaN (all-inf) frame was 'telea PSNR inf dB ... rebuilds the frame exactly (PSNR ∞)', status 0."""
    image = float_tif(tmp_path / "nan.tif", np.full((40, 40), value, np.float32))
    out = tmp_path / "demo"
    assert _demo(image, out) == 1  # a data error (since review s37 r5)
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1, err
    assert "nan.tif: none of its 1,600 pixels holds data" in err and "raise --keep" not in err
    assert "PSNR" not in captured.out and not out.exists()  # nothing scored, no report folder left behind


def test_the_demo_scores_the_pixels_with_data_as_reconstruct_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("cv2")
    image = _nan_block(tmp_path)
    out = tmp_path / "demo"
    assert _demo(image, out) == 0
    printed = capsys.readouterr().out
    frame_line = next(line for line in printed.splitlines() if line.startswith("frame: "))
    assert "sampled pixels hold no data: not used" in frame_line
    assert "metrics over the 67.2% of the pixels with data" in frame_line
    record = json.loads((out / "metrics.json").read_text())
    assert record["psnr_over"].startswith("the 2,752 pixels with data (67.2%")
    assert record["received"] + record["sampled_no_data"] == record["sampled"] and record["sampled_no_data"] > 0
    for method in ("telea", "linear"):
        ours, theirs = record["results"][method], _reconstruct(image, method, tmp_path)
        assert ours["valid_fraction"] == theirs["valid_fraction"] == 2752 / 4096
        for key in ("psnr", "ssim", "mae", "mae_destroyed"):  # the same rebuild, the same figures
            assert ours[key] == theirs[key], (method, key)
        assert record["received"] == theirs["received"] and record["sampled_no_data"] == theirs["sampled_no_data"]
    assert all(math.isfinite(r["psnr"]) for r in record["results"].values() if r["psnr"] is not None)
    assert record["conclusion"][0].startswith("Every PSNR, SSIM and MAE here is over the 67.2% of the pixels")
    page = (out / "index.html").read_text()
    assert "over the 67.2% of the pixels with data" in page


def test_a_guessed_dark_margin_stays_a_sample_as_in_reconstruct(tmp_path: Path) -> None:
    """A PNG with a black border: the margin rule leaves it out of the metrics, but its samples are used (dark
    content is content), as ``edgeae reconstruct`` uses them: the same figures from both commands."""
    pytest.importorskip("cv2")
    from edgeae.imageio import read_image, write_image

    frame = texture(64, 64)
    frame[:, :6] = 0.0
    image = write_image(tmp_path / "edge.png", frame)
    data = read_image(image)
    assert not data.valid.all() and data.extra["declared_valid"].all()  # guessed, not declared
    out = tmp_path / "demo"
    assert _demo(image, out, "linear") == 0
    ours, theirs = json.loads((out / "metrics.json").read_text()), _reconstruct(image, "linear", tmp_path)
    assert ours["sampled_no_data"] == 0 and ours["received"] == theirs["received"]
    assert ours["results"]["linear"]["psnr"] == theirs["psnr"]


def test_a_frame_with_every_pixel_valid_keeps_its_figures(tmp_path: Path) -> None:
    """No no-data: the mask, the fills and the metrics are those of before (run_method), no key added."""
    pytest.importorskip("cv2")
    from edgeae.demo import stage_frame, stage_reconstruct
    from edgeae.imageio import write_image
    from edgeae.masks import MaskSpec
    from edgeae.reconstruct import run_method

    image = write_image(tmp_path / "full.png", texture(48, 40))
    lines: list[str] = []
    ctx = DemoContext(DemoConfig(out=tmp_path / "d", image=image, methods=("linear", "nearest")), say=lines.append)
    stage_frame(ctx)
    stage_reconstruct(ctx)
    known = MaskSpec(0, 0.1, "uniform").make((48, 40))
    assert np.array_equal(ctx.known, known)
    for res in ctx.results:
        before = run_method(ctx.original, known, res.method)
        assert res.metrics == before.metrics and np.array_equal(res.image, before.image)
    kept = int(known.sum())
    said = f"keeping {kept} of 1,920 pixels ({kept / 1920:.1%}, uniform, seed 0)"
    assert lines[0] == f"frame: full.png, 40×48 grey; {said}"


def test_the_downlink_psnr_is_over_the_pixels_with_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ground rebuild's PSNR leaves the no-data out, as ``edgeae ground decode --original`` does. Its fill takes
    what arrived unchanged, the no-data samples among them (the flight sends what it sampled; the ground cannot tell
    their 0 counts from data): 22.94 dB on the HiRISE GeoTIFF, as ground decode, where the CAE's row is 23.43."""
    pytest.importorskip("cv2")
    from edgeae.demo import stage_downlink
    from edgeae.ground.outputs import psnr_fields
    from edgeae.ground.validity import mark_no_data
    from edgeae.reconstruct import reconstruct

    linear_for_the_cae(monkeypatch, [])  # the CAE's stand-in: the ground's fill
    ctx = downlink_ctx(tmp_path, _nan_block(tmp_path))
    stage_downlink(ctx)
    got = ctx.extra["downlink"]["perfect"]
    assert got["report"]["psnr_over"].startswith("the 2,752 pixels with data (67.2%")
    from edgeae.ground.link import load_link
    from edgeae.ground.pipeline import downlink_frame
    from edgeae.ground.sources import as_float

    samples = np.round(np.clip(ctx.original, 0, 1) * 255).astype(np.uint8)
    res = downlink_frame(
        samples, 8, link=load_link("perfect"), fill=lambda img, known, notes=None: reconstruct(img, known, "linear")
    )
    want = psnr_fields(mark_no_data(as_float(samples, 8), ctx.extra["valid"]), res.recon, res.known)
    assert got["psnr"] == want["psnr"] != res.report["psnr"]  # not the PSNR over every pixel
    assert got["report"]["pixels_received"] == int(np.count_nonzero(res.known)) > int(np.count_nonzero(ctx.known))


@pytest.mark.skipif(not ESP.is_file(), reason=f"real data not found: {ESP}")
def test_a_hirise_geotiff_gives_reconstructs_figure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """ESP_037156_1800_RED.byte.tif (30.1% no-data): 22.76 dB in the demo, 23.33 dB in reconstruct, before."""
    pytest.importorskip("cv2")
    out = tmp_path / "demo"
    assert _demo(ESP, out, "telea") == 0
    printed = capsys.readouterr().out
    assert "5,402 sampled pixels hold no data: not used" in printed
    assert "metrics over the 69.9% of the pixels with data" in printed
    ours = json.loads((out / "metrics.json").read_text())["results"]["telea"]
    theirs = _reconstruct(ESP, "telea", tmp_path)
    assert ours["psnr"] == theirs["psnr"] and f"{ours['psnr']:.2f}" == "23.33"

"""`edgeae demo` and `edgeae reconstruct` on frames with no-data, after review r5 of session 37 (fixer p1).

- The downlink section's ground station fills from what it received, the no-data samples (0 counts it cannot tell
  from data) included, as ``edgeae ground decode`` does: 6858643 had it leave them out with the file's mask, which the
  ground never receives (HiRISE GeoTIFF: 23.43 dB for the perfect link where ``ground decode --original`` says 22.94),
  and an empty mask there would have stopped the whole demo.
- A frame with no pixel of data is a data error, status 1 (``edgeae.cli.DataError``), not a usage error.
- An all-black or all-saturated frame (a lens cap) is rebuilt, metrics not computed, as ``reconstruct`` does (the demo
  refused it, status 2); only the file's declared no-data counts as no data, also for the bundled frames.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from _helpers_demo import ESP, cli, downlink_ctx, linear_for_the_cae, nan_tif, texture, write_png

from edgeae.demo import DemoConfig, DemoContext


def test_the_ground_fills_from_every_sample_it_received(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ground's fill gets the received mask unchanged, no-data samples included (it cannot tell them from data);
    its PSNR is still over the pixels with data, as ``ground decode --original`` reports it."""
    pytest.importorskip("cv2")
    from edgeae.demo import stage_downlink
    from edgeae.ground.link import load_link
    from edgeae.ground.outputs import psnr_fields
    from edgeae.ground.pipeline import downlink_frame
    from edgeae.ground.sources import as_float
    from edgeae.ground.validity import mark_no_data
    from edgeae.reconstruct import reconstruct

    seen: list[np.ndarray] = []
    ctx = downlink_ctx(tmp_path, nan_tif(tmp_path / "block.tif", 64, 64, 20))
    linear_for_the_cae(monkeypatch, seen)
    stage_downlink(ctx)
    got = ctx.extra["downlink"]["perfect"]
    samples = np.round(np.clip(ctx.original, 0, 1) * 255).astype(np.uint8)
    res = downlink_frame(
        samples, 8, link=load_link("perfect"), fill=lambda img, k, notes=None: reconstruct(img, k, "linear")
    )
    assert len(seen) == 1 and np.array_equal(seen[0], res.known)  # what arrived, unchanged
    assert not np.array_equal(seen[0], seen[0] & ctx.extra["has_data"])  # no-data samples among them
    want = psnr_fields(mark_no_data(as_float(samples, 8), ctx.extra["valid"]), res.recon, res.known)
    assert got["psnr"] == want["psnr"] and got["report"]["psnr_over"] == want["psnr_over"]


def test_no_received_sample_with_data_does_not_stop_the_downlink(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """6858643 filled from ``known & has_data``: where no received sample held data that mask was empty and the fill
    raised 'nothing to reconstruct from', stopping the whole demo. The ground never sees the file's mask."""
    pytest.importorskip("cv2")
    from edgeae.demo import stage_downlink

    seen: list[np.ndarray] = []
    ctx = downlink_ctx(tmp_path, nan_tif(tmp_path / "block.tif", 64, 64, 20))
    linear_for_the_cae(monkeypatch, seen)
    ctx.extra["has_data"] = np.zeros_like(ctx.known)  # no received sample holds data
    stage_downlink(ctx)
    got = ctx.extra["downlink"]["perfect"]
    assert seen and seen[0].any() and got["psnr"] is not None and math.isfinite(got["psnr"])


@pytest.mark.skipif(not ESP.is_file(), reason=f"real data not found: {ESP}")
def test_the_perfect_link_gives_ground_decodes_figure_on_a_hirise_geotiff(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same frame over the same perfect link: the demo's ground rebuild and ``edgeae downlink simulate`` +
    ``edgeae ground decode --original`` give one PSNR (the fill linear in both, for speed: with the CAE, 22.94 dB in
    both; 6858643's demo said 23.43)."""
    pytest.importorskip("cv2")
    from edgeae.demo import stage_downlink

    seen: list[np.ndarray] = []
    ctx = downlink_ctx(tmp_path, ESP)
    linear_for_the_cae(monkeypatch, seen)
    stage_downlink(ctx)
    ours = ctx.extra["downlink"]["perfect"]["psnr"]
    rx, out = tmp_path / "rx.bin", tmp_path / "gd"
    assert cli("downlink", "simulate", "--image", ESP, "--link", "perfect", "--out", rx, "--no-progress") == 0
    assert cli("ground", "decode", rx, "--out", out, "--method", "linear", "--original", ESP, "--no-progress") == 0
    theirs = json.loads(next(out.glob("frame_*.json")).read_text())
    assert theirs["psnr"] == pytest.approx(ours, abs=1e-9)
    assert theirs["psnr_over"] == ctx.extra["downlink"]["perfect"]["report"]["psnr_over"]
    capsys.readouterr()


def test_a_frame_with_no_pixel_of_data_is_a_data_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``reconstruct`` exits 1 (``DataError``: an input with nothing usable), no longer 2 (usage); the demo's library
    raises :class:`edgeae.received.NoData` for its command line to map the same way."""
    tifffile = pytest.importorskip("tifffile")
    from edgeae.demo import stage_frame
    from edgeae.received import NoData

    image = tmp_path / "nan.tif"
    tifffile.imwrite(image, np.full((30, 50), np.nan, np.float32))
    assert cli("reconstruct", image, "--method", "linear", "-o", tmp_path / "r.tif") == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        f"edgeae reconstruct: error: {image}: none of its 1,500 pixels holds data (all no-data, transparent or "
        "NaN/inf): nothing to rebuild from or to measure against"
    )
    with pytest.raises(NoData, match=r"nan.tif: none of its 1,500 pixels holds data"):
        stage_frame(DemoContext(DemoConfig(out=tmp_path / "d", image=image), say=lambda _: None))


@pytest.mark.parametrize("level", [0, 255])
def test_a_lens_cap_frame_is_rebuilt_as_reconstruct_rebuilds_it(
    level: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An all-black (all-white) PNG: every pixel reads as a guessed dark (saturated) margin, none is declared no-data.
    ``reconstruct`` rebuilds it, status 0, "metrics not computed"; the demo refused it, status 2. Now both rebuild
    it from the same samples and neither scores it."""
    pytest.importorskip("cv2")

    image = write_png(tmp_path / "cap.png", np.full((64, 64), level, np.uint8))
    js = tmp_path / "r.json"
    assert cli("reconstruct", image, "--method", "linear", "-o", tmp_path / "r.png", "--metrics-json", js) == 0
    theirs = json.loads(js.read_text())
    capsys.readouterr()
    out = tmp_path / "demo"
    argv = ("demo", "--image", image, "--out", out, "--methods", "linear,nearest", "--no-anomaly", "--no-cross-check")
    assert cli(*argv) == 0
    printed = capsys.readouterr().out
    assert not re.search(r"\b(nan|inf)\b", printed, re.IGNORECASE), printed
    record = json.loads((out / "metrics.json").read_text())
    assert record["received"] == theirs["received"] == record["sampled"] and record["sampled_no_data"] == 0
    assert record["metrics_note"] == theirs["metrics_note"] == "no pixel with data: metrics not computed"
    for method in ("linear", "nearest"):
        assert record["results"][method]["psnr"] is None and record["results"][method]["valid_fraction"] == 0.0
    frame_line = next(line for line in printed.splitlines() if line.startswith("frame: "))
    margin = "(100.0% read as a dark or saturated margin by the no-data margin rule)"
    assert frame_line.endswith(f"; no pixel with data: metrics not computed {margin}")
    assert "metrics not computed" in next(line for line in printed.splitlines() if line.startswith("  linear "))
    assert record["conclusion"][0].startswith(f"No pixel of the frame holds data {margin}: the rebuilds are shown")
    assert (
        len(record["conclusion"]) == 1 and "same bytes: JPEG 2000 not run (no pixel of the frame holds data" in printed
    )
    page = (out / "index.html").read_text()
    assert "PSNR nan" not in page and "metrics not computed" in page


def test_a_lens_cap_frame_over_the_links_is_not_measured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The downlink of an all-black frame: rebuilt on the ground, no PSNR (it printed 'PSNR nan dB')."""
    pytest.importorskip("cv2")
    from edgeae.demo import stage_downlink

    lines: list[str] = []
    ctx = downlink_ctx(tmp_path, write_png(tmp_path / "cap.png", np.zeros((64, 64), np.uint8)))
    ctx.say = lines.append
    linear_for_the_cae(monkeypatch, [])
    section = stage_downlink(ctx)
    assert ctx.extra["downlink"]["perfect"]["psnr"] is None and section is not None
    assert lines[-1].endswith("ground rebuild, no pixel with data: metrics not computed"), lines
    assert section.paragraphs[0].endswith(
        "No pixel of the frame holds data (100.0% read as a dark or saturated margin by the no-data margin rule): "
        "no pixel with data: metrics not computed."
    )


def test_the_input_paragraph_counts_the_unused_samples_only_when_there_are_some(tmp_path: Path) -> None:
    """'0 of the sampled pixels hold no data and are not used' on a frame whose only no-data is a guessed margin; the
    count without its thousands separator ('5402' beside the frame line's '5,402')."""
    pytest.importorskip("cv2")
    from edgeae.demo import stage_frame
    from edgeae.imageio import write_image

    frame = texture(64, 64)
    frame[:, :6] = 0.0
    ctx = DemoContext(DemoConfig(out=tmp_path / "d", image=write_image(tmp_path / "e.png", frame)), say=print)
    text = stage_frame(ctx).paragraphs[1]
    assert "of the sampled pixels hold no data" not in text and " Every metric below is over the 3,648 pixels" in text
    ctx = DemoContext(DemoConfig(out=tmp_path / "d", image=nan_tif(tmp_path / "w.tif", 200, 200, 150)), say=print)
    text = stage_frame(ctx).paragraphs[1]
    unused = ctx.extra["sampled_no_data"]
    assert unused >= 1000 and f" {unused:,} of the sampled pixels hold no data and are not used" in text


def test_a_bundled_frame_keeps_its_guessed_margin_as_samples(tmp_path: Path) -> None:
    """The rover frame from a data folder: a dark margin the margin rule only guesses stays a sample (``has_data``
    is the file's declared mask), as for ``--image``; ``_load`` took ``valid`` for both."""
    cv2 = pytest.importorskip("cv2")
    from edgeae.datasets import DEMO_FRAME
    from edgeae.demo import stage_frame

    rgb = np.repeat((texture(64, 64)[..., None] * 255).astype(np.uint8), 3, axis=2)
    rgb[:, :6] = 0
    path = tmp_path / "data" / DEMO_FRAME
    path.parent.mkdir(parents=True)
    ok, data = cv2.imencode(".png", rgb)  # PNG bytes under the frame's .jpg name: read by content, losslessly
    assert ok
    path.write_bytes(data.tobytes())
    ctx = DemoContext(DemoConfig(out=tmp_path / "d", data_root=tmp_path / "data"), say=lambda _: None)
    stage_frame(ctx)
    assert not ctx.extra["valid"].all() and ctx.extra["has_data"].all()
    assert ctx.extra["sampled_no_data"] == 0 and ctx.known[:, :6].any()

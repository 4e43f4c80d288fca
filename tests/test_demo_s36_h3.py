"""The demo (session 36, fixer h3): a failed run leaves the earlier report's images too; a --model path that is not
UTF-8 is shown escaped and recorded exactly; the conclusion's wording of exact-method lists, printed ties and failed
methods."""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from _helpers_demo import FAST, small_frame, write_png
from _helpers_report import files

from edgeae.demo import DemoConfig, DemoContext, conclusion_lines, run_demo
from edgeae.demo.context import CROSS
from edgeae.reconstruct import Reconstruction

INF = math.inf


# ----------------------------------------------------------------------------- a failed run and the earlier images
def test_an_image_write_failing_part_way_leaves_the_earlier_report_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import edgeae.imageio

    out = tmp_path / "demo"
    run_demo(DemoConfig(out=out, image=write_png(tmp_path / "a.png", small_frame()), methods=("nearest",)), FAST)
    before = files(out)
    real = edgeae.imageio.write_image
    calls = []

    def third_fails(path: Path, array: np.ndarray, **kwargs: object) -> Path:
        calls.append(path)
        if len(calls) == 3:
            raise OSError(28, "No space left on device", str(path))
        return real(path, array, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(edgeae.imageio, "write_image", third_fails)
    cfg = DemoConfig(out=out, image=write_png(tmp_path / "b.png", 255 - small_frame()), methods=("nearest",))
    with pytest.raises(OSError, match="No space left"):
        run_demo(cfg, FAST)
    assert len(calls) == 3
    assert files(out) == before  # the page, metrics.json and every image: the earlier run's, no staged file left
    assert sorted(p.name for p in (out / "img").iterdir()) == sorted(Path(n).name for n in before if "img/" in n)


def test_a_rerun_shows_its_own_images_and_leaves_no_staging_folder(tmp_path: Path) -> None:
    cv2 = pytest.importorskip("cv2")
    out = tmp_path / "demo"
    run_demo(DemoConfig(out=out, image=write_png(tmp_path / "a.png", small_frame()), methods=("nearest",)), FAST)
    stale = out / "img" / ".new-999999999"  # a staging folder that a killed run (no such process) left behind
    stale.mkdir()
    (stale / "00-original.png").write_bytes(b"half")
    said: list[str] = []
    cfg = DemoConfig(out=out, image=write_png(tmp_path / "b.png", 255 - small_frame()), methods=("nearest",))
    res = run_demo(cfg, FAST, say=said.append)
    shown = cv2.imread(str(out / "img" / "00-original.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(shown, 255 - small_frame())  # the new frame under the new page
    assert sorted(p.name for p in (out / "img").iterdir() if p.name.startswith(".")) == []
    assert "index.html, metrics.json" in said[-1] and res.html.is_file()


# ----------------------------------------------------------------------------- a --model path that is not UTF-8
def _fake_cae(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CAE without a model: the predictor is a stub that remembers its file, every fill returns the frame."""
    import edgeae.predictor
    import edgeae.reconstruct

    class Stub:
        def __init__(self, source: str) -> None:
            self.source = source

    monkeypatch.setattr(edgeae.predictor, "load_predictor", lambda spec, threads=None: Stub(spec))
    monkeypatch.setattr(edgeae.reconstruct, "reconstruct", lambda img, known, method, predictor=None: img)


def test_a_model_path_that_is_not_utf8_is_shown_escaped_and_recorded_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_cae(monkeypatch)
    model = tmp_path / os.fsdecode(b"m\xfd.pt")
    model.write_bytes(b"weights")
    image = write_png(tmp_path / os.fsdecode(b"t\xff.png"), small_frame())
    said: list[bytes] = []
    cfg = DemoConfig(out=tmp_path / "demo", image=image, model=str(model), methods=("cae", "nearest"), cross_check=None)
    res = run_demo(cfg, FAST, say=lambda line: said.append(line.encode("utf-8")))  # strict, as a UTF-8 terminal
    text = b"\n".join(said).decode("utf-8")
    assert "m\\xfd.pt" in text and "t\\xff.png" in text
    page = res.html.read_text(encoding="utf-8")
    assert "m\\xfd.pt" in page and "\udcfd" not in page
    raw = (tmp_path / "demo" / "metrics.json").read_bytes()
    raw.decode("ascii")  # plain ASCII: JSON's \udcXX escapes
    record = json.loads(raw)
    # the exact names back, byte for byte (json.loads, then os.fsencode)
    assert os.fsencode(record["image"]) == b"t\xff.png"
    assert os.fsencode(record["model"]) == os.fsencode(model)
    assert os.fsencode(record["provenance"]["model_file"]) == os.fsencode(model)
    assert record["provenance"]["model_sha256"] == hashlib.sha256(b"weights").hexdigest()


def test_the_cli_with_such_names_on_a_strict_utf8_console(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``PYTHONIOENCODING=utf-8:strict`` (an en_US.UTF-8 locale): the run stopped with status 2 at the CAE's line."""
    import sys

    import edgeae.demo
    from edgeae.cli import main

    _fake_cae(monkeypatch)
    monkeypatch.setattr(edgeae.demo, "SECTIONS", FAST)
    model = tmp_path / os.fsdecode(b"m\xfd.pt")
    model.write_bytes(b"weights")
    image = write_png(tmp_path / os.fsdecode(b"t\xff.png"), small_frame())
    out = tmp_path / os.fsdecode(b"d\xfe")
    console = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict", write_through=True)
    monkeypatch.setattr(sys, "stdout", console)
    argv = ["demo", "--image", str(image), "--model", str(model), "--out", str(out), "--methods", "cae,nearest"]
    code = main([*argv, "--no-cross-check"])
    printed = console.buffer.getvalue().decode("utf-8")  # type: ignore[attr-defined]
    assert code == 0, capsys.readouterr().err
    assert "cae (" in printed and "m\\xfd.pt)" in printed and "d\\xfe" in printed


# ----------------------------------------------------------------------------- the conclusion's wording
def _ctx(*results: Reconstruction, cross_check: str | None = "linear") -> DemoContext:
    ctx = DemoContext(DemoConfig(cross_check=cross_check), model="m")
    ctx.results = list(results)
    return ctx


def _r(method: str, psnr: float, seconds: float = 1.0, ssim: float = 0.9, mae: float = 0.01) -> Reconstruction:
    return Reconstruction(method, np.zeros((2, 2, 1), np.float32), seconds, {"psnr": psnr, "ssim": ssim, "mae": mae})


def test_an_exact_list_with_the_cross_checked_cae_reads_as_one_list() -> None:
    ctx = _ctx(_r("cae", 48.0), _r(CROSS, INF), _r("linear", INF), _r("nearest", INF), _r("ns", 150.97))
    ctx.extra["cross_check_report"] = {"alpha_mean": 0.1, "cae_share": 0.0}
    first = conclusion_lines(ctx)[0]
    assert first == (
        "From 10% of the pixels, linear, nearest and the CAE cross-checked with linear rebuild the frame exactly "
        "(PSNR ∞); the best of the others is ns at 150.97 dB PSNR."
    )
    alone = conclusion_lines(_ctx(_r("cae", 48.0), _r(CROSS, INF), _r("linear", 40.0)))[0]
    assert alone.startswith("From 10% of the pixels, the CAE cross-checked with linear rebuilds the frame exactly")


def test_a_psnr_tie_as_printed_is_not_a_loss() -> None:
    for cae in (30.001, 30.003):
        line = conclusion_lines(_ctx(_r("cae", cae), _r("linear", 30.003)))[1]
        assert line.startswith("The CAE matches the best classical method (linear, 30.00 dB PSNR)"), line
        assert "loses to" not in line and "beats" not in line and "by 0.00 dB" not in line
    first = conclusion_lines(_ctx(_r("cae", 30.001), _r("linear", 30.003)))[0]
    assert first == "From 10% of the pixels, the best rebuild is linear at 30.00 dB PSNR, tied with cae (m)."
    ahead = conclusion_lines(_ctx(_r("cae", 30.01), _r("linear", 30.003)))[1]
    assert ahead.startswith("The CAE beats the best classical method (linear, 30.00 dB) by 0.01 dB PSNR")


def test_a_codec_tie_as_printed_is_neither_better_nor_worse() -> None:
    ctx = _ctx(_r("cae", 30.004), _r("linear", 29.0))
    ctx.extra["codec"] = {"budget": 1000, "bytes": 990, "metrics": {"psnr": 30.001}}
    ctx.extra["downlink"] = {"perfect": {"psnr": 30.0, "pixels_received": 1.0}}
    text = " ".join(conclusion_lines(ctx))
    assert "JPEG 2000 of the whole frame reaches 30.00 dB: the same as sparse pixels + CAE (30.00 dB)." in text
    assert "worse than" not in text and "beat JPEG 2000" not in text and " 0.00 dB" not in text
    assert "Should you fly it? On a clean link, no: JPEG 2000 at the same bytes matches sparse pixels + CAE" in text
    # session 39: JPEG 2000 sent as tiles stayed ahead under loss too; the conclusion no longer says sparse pays there
    assert "sent as independent tiles" in text and "even degradation, and a higher PSNR only where more" in text
    assert "fell behind at 30% (on average) and 40% (on every crop)" in text  # the link stage since session 43
    assert "only pay" not in text


def test_every_method_does_not_count_a_failed_one() -> None:
    lines = conclusion_lines(_ctx(_r("cae", INF), _r("linear", INF), _r("telea", math.nan)))
    assert lines[0] == (
        "From 10% of the pixels, every method but telea rebuilds the frame exactly (PSNR ∞); the rebuild of telea "
        "could not be scored."
    )
    every = conclusion_lines(_ctx(_r("cae", INF), _r("linear", INF)))
    assert every[0] == "From 10% of the pixels, every method rebuilds the frame exactly (PSNR ∞)."

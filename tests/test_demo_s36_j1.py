"""The demo (session 36, fixer j1; review s36 r8 #1, #2, #4, #7): the report is replaced all or nothing through the
last rename (an fsync error, Ctrl-C or SIGTERM there), the run holds its folder, a PSNR difference that prints as
0.00 dB is a tie, and a failed first run leaves no empty folders."""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _helpers_demo import FAST, small_frame, write_png
from _helpers_report import files, no_space_for_the_page

from edgeae.demo import DemoConfig, DemoContext, conclusion_lines, run_demo
from edgeae.folder_lock import FolderBusy, hold
from edgeae.reconstruct import Reconstruction

ZERO = re.compile(r"(?<![\d.])0\.00 dB")  # a margin of 0.00 dB (not 30.00 dB)
MAIN = threading.current_thread() is threading.main_thread()


def _state(out: Path, refs: dict[str, dict[str, str]]) -> str:
    """Which run's report ``out`` holds, 'a' or 'b', when its page, metrics.json and images are all that run's and
    nothing else is there; else what it holds."""
    page = "b" if "b.png" in (out / "index.html").read_text(encoding="utf-8") else "a"
    record = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    metrics = Path(record["image"]).name[0]
    images = [k for k, v in refs.items() if v == files(out / "img")]
    extra = sorted(p.name for p in out.iterdir() if p.name not in ("img", "index.html", "metrics.json"))
    found = {page, metrics, *images}
    return found.pop() if len(found) == 1 and not extra else f"page {page}, metrics {metrics}, images {images} {extra}"


def _two_runs(tmp_path: Path) -> tuple[Path, DemoConfig, dict[str, dict[str, str]]]:
    """An earlier report of frame a in ``out``; the config of a run of frame b into it; each run's images."""
    a, b = write_png(tmp_path / "a.png", small_frame()), write_png(tmp_path / "b.png", 255 - small_frame())
    refs = {}
    for name, image in (("a", a), ("b", b)):
        run_demo(DemoConfig(out=tmp_path / f"ref-{name}", image=image, methods=("nearest",)), FAST)
        refs[name] = files(tmp_path / f"ref-{name}" / "img")
    out = tmp_path / "out"
    run_demo(DemoConfig(out=out, image=a, methods=("nearest",)), FAST)
    return out, DemoConfig(out=out, image=b, methods=("nearest",)), refs


# ----------------------------------------------------------------------------- r8 #1: the last steps of the write
@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="names an open file through /proc")
def test_an_fsync_error_on_the_page_leaves_the_earlier_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """fsync is where NFS or a quota reports a failed write (EIO, EDQUOT): the images were already in img/."""
    out, cfg, refs = _two_runs(tmp_path)
    real = os.fsync

    def fsync(fd: int) -> None:
        if "index.html" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.EDQUOT, "Disk quota exceeded")
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError, match=r"cannot write .*index\.html: Disk quota exceeded"):
        run_demo(cfg, FAST)
    assert _state(out, refs) == "a"


@pytest.mark.skipif(not MAIN, reason="signals need the main thread")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_the_cli_interrupted_during_the_renames_leaves_the_new_report_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], sig: int
) -> None:
    import edgeae.demo
    from edgeae.cli import main

    out, cfg, refs = _two_runs(tmp_path)
    monkeypatch.setattr(edgeae.demo, "SECTIONS", FAST)
    real = os.replace
    sent = []

    def replace(src: Any, dst: Any) -> None:
        if Path(dst).parent.name == "img" and not sent:  # the first rename into place (not a write into staging)
            sent.append(sig)
            os.kill(os.getpid(), sig)
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    argv = ["demo", "--image", str(cfg.image), "--out", str(out), "--methods", "nearest", "--no-cross-check"]
    assert main(argv) == 130
    assert sent and "interrupted" in capsys.readouterr().err
    assert _state(out, refs) == "b"  # the page, metrics.json and images of the new run, nothing staged left


# ----------------------------------------------------------------------------- r8 #2: one run per folder
def test_a_second_run_into_a_held_folder_is_refused_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import edgeae.demo
    from edgeae.cli import main

    out, cfg, refs = _two_runs(tmp_path)
    worked = []
    monkeypatch.setattr(edgeae.demo, "SECTIONS", [lambda ctx: worked.append(1)])
    with hold(out, "demo run"):  # another run (a lock is refused to a second holder in the same process too)
        with pytest.raises(FolderBusy, match="is in use by another demo run"):
            run_demo(cfg, FAST)
        argv = ["demo", "--image", str(cfg.image), "--out", str(out), "--methods", "nearest"]
        assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"edgeae demo: error: {out} is in use by another demo run (pid {os.getpid()}, ")
    assert worked == [] and _state(out, refs) == "a"
    run_demo(cfg, FAST)  # once the other run has ended
    assert _state(out, refs) == "b"


# ----------------------------------------------------------------------------- r8 #7: a failed first run
def test_a_failed_first_run_into_a_new_out_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import edgeae.demo
    from edgeae.cli import main

    image = write_png(tmp_path / "a.png", small_frame())
    monkeypatch.setattr(edgeae.demo, "SECTIONS", FAST)
    no_space_for_the_page(monkeypatch)
    argv = ["demo", "--image", str(image), "--out", str(tmp_path / "new" / "deep"), "--methods", "nearest"]
    assert main([*argv, "--no-cross-check"]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]
    with pytest.raises(OSError, match="No space left"):  # the library call too
        run_demo(DemoConfig(out=tmp_path / "lib" / "deep", image=image, methods=("nearest",)), FAST)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


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

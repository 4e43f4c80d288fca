"""Session 36, fixer j2 (review s36 r14): the demo's conclusion margins and its write's clean-up."""

from __future__ import annotations

import os
import re
import signal
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeae.demo import DemoConfig, DemoContext, conclusion_lines, run_demo, stage_frame, stage_metrics
from edgeae.demo.conclusion import ADAPTED, CROSS
from edgeae.demo.rebuild import stage_reconstruct
from edgeae.reconstruct import Reconstruction

FAST = [stage_frame, stage_reconstruct, stage_metrics]  # no model, no codec: well under a second


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


def test_a_link_cost_that_prints_as_zero_says_it_is_under_a_hundredth():
    ctx = DemoContext(DemoConfig(cross_check=None), model="m")
    ctx.results = [_r("cae", 31.0), _r("linear", 30.0)]
    ctx.extra["downlink"] = {
        "perfect": {"psnr": 31.0, "pixels_received": 1.0},
        "loss5": {"psnr": 30.997, "pixels_received": 0.99},
    }
    lines = [x for x in conclusion_lines(ctx) if "link" in x]
    assert lines and not any("0.00 dB below" in x for x in lines)
    assert any("packet loss changed the ground rebuild by under 0.01 dB" in x for x in lines)  # not "no" (r19)
    ctx.extra["downlink"]["loss5"]["psnr"] = 31.0
    assert any("no packet loss changed the ground rebuild" in x for x in conclusion_lines(ctx))


# ----------------------------------------------------------------------------- r14 #1 and #7: the demo's clean-up
MAIN = threading.current_thread() is threading.main_thread()


def _frame_png(path: Path) -> Path:
    cv2 = pytest.importorskip("cv2")
    y, x = np.mgrid[0:40, 0:48]
    frame = np.stack([(x * 5 + y * 3) % 256, (x * 2) % 256, (y * 6) % 256], axis=2).astype(np.uint8)
    ok, data = cv2.imencode(".png", frame)
    assert ok
    path.write_bytes(data.tobytes())
    return path


@pytest.mark.skipif(not MAIN, reason="signals are held in the main thread only")
def test_a_rerun_interrupted_during_its_renames_removes_the_images_it_does_not_show(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image, out = _frame_png(tmp_path / "a.png"), tmp_path / "out"
    run_demo(DemoConfig(out=out, image=image, methods=("nearest", "linear")), FAST)
    assert any("linear" in p.name for p in (out / "img").iterdir())
    real, sent = os.replace, []

    def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        if Path(dst).parent.name == "img" and ".new-" in str(src) and not sent:
            sent.append(1)
            os.kill(os.getpid(), signal.SIGINT)
        real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    lines: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        run_demo(DemoConfig(out=out, image=image, methods=("nearest",)), FAST, say=lines.append)
    page = (out / "index.html").read_text(encoding="utf-8")
    shown = set(re.findall(r"img/([^'\"/]+)", page))
    assert sent and "recon-linear" not in page
    assert sorted(p.name for p in (out / "img").iterdir()) == sorted(shown)  # nothing hidden, nothing stale
    assert [x for x in lines if x.startswith("replaced the earlier demo report")]


def test_a_demo_run_removes_temporary_files_and_staging_folders_that_killed_runs_left(tmp_path: Path) -> None:
    image, out = _frame_png(tmp_path / "a.png"), tmp_path / "out"
    (out / "img" / f".new-{os.getpid()}-old").mkdir(parents=True)  # an earlier pid 1's, killed outright
    (out / "img" / ".new-999999999-x").mkdir()
    left = [out / ".index.html.ab12cd34.tmp-999999999", out / f".metrics.json.ab12cd34.tmp-{os.getpid()}"]
    for f in left:
        f.write_text("half")
    run_demo(DemoConfig(out=out, image=image, methods=("nearest",)), FAST)
    assert sorted(p.name for p in out.rglob(".*")) == []

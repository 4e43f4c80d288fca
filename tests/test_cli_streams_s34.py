"""Session 34 (p2): what goes on which stream. ``downlink plan`` draws bars only on a terminal and sends its -v
lines to stderr; ``firmware-sim`` prints every WARNING on stderr; ``-v`` is accepted after a subcommand; the demo
removes its own earlier images that a rerun does not write, and says what it replaced."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from edgeae.cli import build_parser, main


# ------------------------------------------------------------------------- downlink plan: bars and -v lines
def _plan_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A small grey PNG and ``downlink plan`` arguments for it, with a cheap fill in place of the zoo models."""
    pytest.importorskip("cv2")
    pytest.importorskip("imagecodecs")
    import cv2

    from edgeae.ground import science

    rng = np.random.default_rng(0)
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), rng.integers(0, 255, (64, 64), dtype=np.uint8))

    def fill(img: np.ndarray, known: np.ndarray, notes: dict | None = None) -> np.ndarray:
        return np.asarray(img, np.float32)

    monkeypatch.setattr(science, "load_models", lambda model, scorer, threads=None, loaded=None: (fill, None))
    return ["downlink", "plan", "--image", str(image), "--budgets", "0.1", "--links", "perfect", "--methods", "sparse"]


def test_plan_draws_no_progress_bar_into_a_redirected_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _plan_image(tmp_path, monkeypatch)
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert "| 10% | sparse |" in out
    assert "\r" not in err and "frame.png" not in err, err  # no tqdm redraws in a log file


def test_plan_draws_its_bar_on_a_terminal_and_not_with_no_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgeae.cli import downlink_plan

    args = _plan_image(tmp_path, monkeypatch)
    monkeypatch.setattr(downlink_plan, "_stderr_is_terminal", lambda: True)
    monkeypatch.setattr("edgeae.reconstruct.show_progress", lambda progress, steps, more_than=4: bool(progress))
    assert main(args) == 0
    assert "frame.png" in capsys.readouterr().err  # the bar, labelled with the image
    parsed = build_parser().parse_args(args)  # --no-progress: its parser line belongs in edgeae.cli.downlink
    assert downlink_plan.plan(argparse.Namespace(**{**vars(parsed), "no_progress": True})) == 0
    assert "frame.png" not in capsys.readouterr().err


def test_plan_verbose_lines_go_to_stderr_not_into_the_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _plan_image(tmp_path, monkeypatch)
    assert main(["-v", *args]) == 0
    out, err = capsys.readouterr()
    assert "frame 10% sparse:" not in out and out.lstrip().startswith("**image**"), out
    assert "frame 10% sparse:" in err and "feature PSNR" in err


# ------------------------------------------------------------------------- firmware-sim: WARNING lines on stderr
def _summary(**extra: object) -> dict:
    s = {
        "mission": "m", "frames": {"acquired": 1, "downlinked": 1, "queued": 0, "dropped": 0},
        "queue": {"sent_bytes": 10, "pending_bytes": 0, "passes": 1}, "budgets": {"memory_bytes": 2**20},
        "anomalies": [],
    }  # fmt: skip
    return {**s, **extra}


def test_run_summary_prints_every_warning_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    from edgeae.firmware_sim.cli_outputs import _print_summary, print_lines

    refused = {"role": "anomaly", "consequence": "no patch is scored", "detail": "hash mismatch"}
    _print_summary(_summary(models_refused=[refused], warnings=["odd"], downlink_passes_failed=2), "OUT")
    print_lines(["  advice line", "WARNING: 1 downlink pass sent nothing"])
    out, err = capsys.readouterr()
    assert "WARNING" not in out and "mission m: 1 frame acquired" in out and "  advice line" in out
    said = err.splitlines()
    assert said[0] == "WARNING: the anomaly model was refused at boot, so no patch is scored: hash mismatch"
    assert said[1] == "WARNING: odd" and said[2].startswith("WARNING: 2 downlink pass(es) could not be written")
    assert said[3] == "WARNING: 1 downlink pass sent nothing"


def test_bench_prints_its_table_on_stdout_and_its_warnings_on_stderr_after_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgeae.firmware_sim import bench, cli_commands

    stage = {"p50": 1.0, "p90": 1.0, "p99": 1.0}
    run = {"threads": 1, "stages_ms": dict.fromkeys(bench.STAGES, stage), "patches_per_s": 1.0,
           "patches_per_cpu_s": 1.0, "batch": 16, "patch": 64, "load_ms": 1.0}  # fmt: skip
    busy = "1-minute load 3.00 before the run, at or above the 2 cores: the timings are of a busy machine"
    result = {"artifact": "/z/m.onnx", "runs": [run], "memory": {"traced_peak_bytes": 1, "rss_peak_bytes": 1},
              "warnings": [busy], "machine": {"loadavg_1min": 3.0, "cpus": 2}}  # fmt: skip
    monkeypatch.setattr(bench, "run_bench", lambda *a, **k: result)
    args = argparse.Namespace(model="/z/m.onnx", threads="1", batch=16, iters=5, frame_height=256,
                              frame_width=256, keep=0.1, json=None, prefer=None)  # fmt: skip
    assert cli_commands._bench(args) == 0
    out, err = capsys.readouterr()
    assert "WARNING" not in out and "1-minute load 3.00" in out  # the table, whole, on stdout
    assert err.splitlines() == [f"WARNING: {busy}"]


# ------------------------------------------------------------------------- -v after the subcommand
@pytest.mark.parametrize(
    ("argv", "verbose"),
    [
        (["zoo"], False),
        (["zoo", "-v"], True),
        (["-v", "zoo"], True),
        (["zoo", "--verbose"], True),
        (["links", "-v"], True),
        (["downlink", "plan", "-v"], True),
        (["downlink", "-v", "plan"], True),
        (["-v", "downlink", "plan"], True),
        (["evaluate", "--dataset", "all", "--out", "o", "-q", "-v"], True),
    ],
)
def test_verbose_is_taken_before_or_after_the_subcommand(argv: list[str], verbose: bool) -> None:
    assert build_parser().parse_args(argv).verbose is verbose


def test_every_subcommand_takes_verbose_and_only_evaluate_takes_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    from edgeae.cli import COMMANDS

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name in COMMANDS:
        flags = {o for a in sub.choices[name]._actions for o in a.option_strings}
        assert {"-v", "--verbose"} <= flags, name
        assert ("-q" in flags) == (name == "evaluate"), name
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["zoo", "-q"])  # zoo has no -q: still a usage error
    assert info.value.code == 2 and "-q" in capsys.readouterr().err


# ------------------------------------------------------------------------- demo: a rerun into the same folder
def test_demo_rerun_removes_its_own_images_the_new_page_does_not_show_and_says_so(tmp_path: Path) -> None:
    from edgeae.demo import DemoConfig, DemoContext, run_demo
    from edgeae.report import Figure, Section

    pix = np.full((4, 4, 1), 0.5, np.float32)

    def frame(ctx: DemoContext) -> Section:
        return Section("Input", figures=[Figure("original", pix, "original"), Figure("masked", pix, "masked")])

    def anomaly(ctx: DemoContext) -> Section:
        figs = [Figure("map", pix, "anomaly-map"), Figure("#1", pix, "anomaly-top1"), Figure("#1", pix, "anomaly-top1")]
        return Section("Anomaly", figures=figs, images={"colourbar-score": np.zeros((2, 8, 3), np.float32)})

    out = tmp_path / "d"
    cfg = DemoConfig(out=out, source="moon", methods=("nearest",))
    said: list[str] = []
    run_demo(cfg, stages=[frame, anomaly], say=said.append)
    assert not said  # a new folder: nothing replaced
    first = {f.name for f in (out / "img").iterdir()}
    assert {"01-anomaly-map.png", "01-anomaly-top1.png", "01-anomaly-top1-x.png", "colourbar-score.png"} <= first
    for mine in ("notes.png", "01-holiday.png", "colourbar-mine.png"):  # not names the demo writes: kept
        (out / "img" / mine).write_bytes(b"user's")
    (out / "img" / "99-anomaly-map").mkdir()  # not a file: kept

    run_demo(cfg, stages=[frame], say=said.append)  # as a rerun with --no-anomaly
    left = {f.name for f in (out / "img").iterdir()}
    assert left == {"00-original.png", "00-masked.png", "notes.png", "01-holiday.png", "colourbar-mine.png",
                    "99-anomaly-map"}  # fmt: skip
    assert len(said) == 1 and said[0].startswith(f"replaced the earlier demo report in {out}: index.html, 2 image(s)")
    assert "removed 4 earlier image(s) this run does not show (01-anomaly-map.png, 01-anomaly-top1-x.png" in said[0]

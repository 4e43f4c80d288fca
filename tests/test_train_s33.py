"""Audit a7 (session 33) of the trainers, one test per defect: a plain --resume keeps the run's time budget; a
refused new run leaves no folder and no config.json; --pattern with a mode that draws no mask; an all-black
training image is named; the zoo's descriptions and its in-sample λ-tuning AP; the bar on a terminal only; the help's
defaults; --batch-size above --crops; docs/io.md's streaming comment; .pnm in a folder; one-line messages naming the
flag, --out and the mask shape."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

from test_train_resume import _config, _images  # noqa: E402  (the tiny library run of the resume tests)

import edgeae.train.common as common  # noqa: E402
import edgeae.train.run_memory as run_memory  # noqa: E402
from edgeae.cli import build_parser, main  # noqa: E402
from edgeae.train.cae import CAETrainConfig, split_data, train_cae  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Four smooth RGB 256×256 PNGs (one to validation): big enough for the CLI's 128-px crops."""
    return _pngs(tmp_path / "imgs", 4)


def _pngs(out: Path, n: int, size: int = 256) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for i in range(n):
        img = cv2.GaussianBlur(rng.random((size, size, 3)).astype(np.float32), (0, 0), 4)
        img = 30 + 190 * (img - img.min()) / (img.max() - img.min())
        cv2.imwrite(str(out / f"f{i}.png"), img.astype(np.uint8))
    return out


def _cli(folder: Path, out: Path, *extra: str) -> list[str]:
    """A tiny ``edgeae train cae``: a seed CAE of widths 4,8, 8 crops in batches of 4, 1 epoch."""
    return [
        "train", "cae", "--data", str(folder), "--out", str(out), "--widths", "4,8", "--epochs", "1", "--crops", "8",
        "--batch-size", "4", "--val-crops", "4", "--threads", "1", "--no-progress", "--no-bf16", *extra,
    ]  # fmt: skip


def _vae_cli(folder: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train", "vae", "--data", str(folder), "--out", str(out), "--widths", "4,4,4,4", "--latent", "8", "--epochs",
        "2", "--crops", "48", "--batch-size", "16", "--val-crops", "16", "--threads", "1", "--no-progress",
        "--no-bf16", *extra,
    ]  # fmt: skip


def _one_line(text: str) -> str:
    return " ".join(text.split())


# 1. a plain --resume keeps the run's --time-budget (per invocation)


def test_resume_changes_keep_the_run_budget_unless_given() -> None:
    from edgeae.cli.train_flags import resume_changes

    parser = build_parser()
    plain = parser.parse_args(["train", "cae", "--resume", "r"])
    assert "time_budget" not in resume_changes(plain, None, None, False)
    given = parser.parse_args(["train", "vae", "--resume", "r", "--time-budget", "2h"])
    assert resume_changes(given, 7200.0, None, False)["time_budget"] == 7200.0


def test_a_plain_cae_resume_stops_at_the_run_budget_again(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _images(tmp_path / "data")
    run = tmp_path / "run"
    assert not train_cae(_config(data, run, time_budget=1e-9))["complete"]
    assert main(["train", "cae", "--resume", str(run)]) == 75  # it used to run to the end with no limit
    assert json.loads((run / "config.json").read_text())["time_budget"] == 1e-9  # it used to be rewritten null
    assert main(["train", "cae", "--resume", str(run), "--time-budget", "1h"]) == 0
    assert json.loads((run / "config.json").read_text())["time_budget"] == 3600.0


def test_time_budget_none_clears_a_runs_budget() -> None:
    """A run with a budget had no documented way to resume without one (0 is refused as not positive)."""
    from edgeae.train.resume import parse_duration

    assert parse_duration("none") is None and parse_duration(" None ") is None and parse_duration("90m") == 5400.0
    with pytest.raises(ValueError, match="must be positive"):
        parse_duration("0")


def test_a_plain_vae_resume_stops_at_the_run_budget_again(folder: Path, tmp_path: Path) -> None:
    run = tmp_path / "v"
    assert main(_vae_cli(folder, run, "--time-budget", "0.000001")) == 75
    assert main(["train", "vae", "--resume", str(run)]) == 75
    assert json.loads((run / "config.json").read_text())["time_budget"] == 1e-6


# 2. a refused new run leaves no folder and no config.json


def test_an_unknown_pattern_is_refused_with_the_config() -> None:
    with pytest.raises(ValueError, match="unknown mask pattern 'bogus'"):
        CAETrainConfig(data="d", out="o", pattern="bogus")


@pytest.mark.parametrize("case", ["pattern", "black", "small", "truncated", "nested"])
def test_a_refused_new_cae_run_leaves_nothing(
    case: str, folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "runs" / "x1" / "x2" / "x3" if case == "nested" else tmp_path / "runs" / "r"
    extra: list[str] = []
    if case in ("pattern", "nested"):
        extra = ["--pattern", "bogus"]
    elif case == "black":
        folder = tmp_path / "black"
        folder.mkdir()
        for i in range(2):
            cv2.imwrite(str(folder / f"b{i}.png"), np.zeros((256, 256, 3), np.uint8))
    elif case == "small":
        folder = _pngs(tmp_path / "small", 3, size=150)  # under 211 px: too small for augmented 128-px crops
    else:
        data = (folder / "f2.png").read_bytes()
        (folder / "f2.png").write_bytes(data[: len(data) // 2])
    assert main(_cli(folder, out, *extra)) == 2
    assert "error: " in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # config.json of the refused settings used to stay, and its folders


def test_a_refused_init_leaves_nothing(folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_cli(folder, tmp_path / "first")) == 0
    out = tmp_path / "runs" / "ft"
    assert main(_cli(folder, out, "--widths", "4,16", "--init", str(tmp_path / "first" / "best.pt"))) == 2
    assert "is not this run's" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_refused_new_vae_run_leaves_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    small = _pngs(tmp_path / "small", 3, size=96)  # under 107 px: too small for augmented 64-px patches
    assert main(_vae_cli(small, tmp_path / "runs" / "a" / "b")) == 2
    assert "too small" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


# 3. --pattern with a mode that draws no mask


def test_pattern_is_refused_with_plain_and_colour_noise(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgeae.train.corrupt import Corruption

    for mode in ("plain", "colour-noise"):
        assert main(_cli(folder, tmp_path / "p", "--mode", mode, "--pattern", "jittered")) == 2
        assert f"--pattern applies to --mode fixed / gt, not to --mode {mode}" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()
    assert Corruption(mode="plain").describe() == {"mode": "plain"}  # training.md's table
    assert Corruption(mode="gt", pattern="jittered").describe()["pattern"] == "jittered"


# 4. an all-black training image is named, and recorded


def test_an_all_black_image_is_named_and_recorded(
    folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cv2.imwrite(str(folder / "f1b.png"), np.zeros((256, 256, 3), np.uint8))  # sorted second: a training file
    with caplog.at_level(logging.WARNING, logger="edgeae.train"):
        assert main(_cli(folder, tmp_path / "r")) == 0
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "1 of 4 images give no crops" in warned[0] and "f1b.png" in warned[0]
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["train_files_without_crops"] == ["f1b.png"]


# 5, 6 and 12. the zoo: previous defaults, the VAEs' in-sample AP, the rover VAE's recorded stop


def test_zoo_descriptions_name_the_current_defaults() -> None:
    from edgeae.reconstruct import DEFAULT_MODELS
    from edgeae.zoo import ZOO

    for old, channels in (("rover-rgb-gtunet", 3), ("orbital-gray-gtunet", 1)):
        text = ZOO[old]["description"]
        assert "the default for" not in text and "previous default" in text and DEFAULT_MODELS[channels] in text


def test_the_rover_vae_command_agrees_with_its_weights_record() -> None:
    from edgeae.zoo import ZOO

    command = ZOO["rover-rgb-vae"]["command"]
    assert "stopped with SIGTERM in epoch 2" in command and "after epoch 1" not in command
    record = ROOT / "edgeae" / "zoo" / "weights" / "rover-rgb-vae.json"
    if record.is_file():  # the weights' own record (read only)
        assert "stopped with SIGTERM in epoch 2" in json.loads(record.read_text())["command"]


def test_zoo_labels_the_vae_ap_as_in_sample(capsys: pytest.CaptureFixture[str]) -> None:
    from edgeae.cli.zoo import summary

    assert summary({"calibration": {"lambda_ap": 0.969}}) == "in-sample λ-tuning AP 0.969"
    assert main(["zoo"]) == 0
    table = capsys.readouterr().out
    header = table.splitlines()[0].split()
    assert header[-1] == "metrics" and "validation" not in header
    assert "λ-tuning AP is in-sample" in table
    assert max(map(len, table.splitlines())) <= 100


# 7. the bar on a terminal only


@pytest.mark.parametrize("terminal", [False, True])
def test_the_training_bar_is_drawn_on_a_terminal_only(
    terminal: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("tqdm")
    monkeypatch.setattr(common, "stderr_is_terminal", lambda: terminal)
    data = _images(tmp_path / "data")
    train_cae(_config(data, tmp_path / "r", epochs=1, progress=True))
    err = capsys.readouterr().err
    assert ("epoch 1/1:" in err) is terminal  # tqdm's "epoch 1/1:  33%|..." redraws
    assert ("\r" in err) is terminal


def test_stderr_is_terminal_reads_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty:
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stderr", Tty())
    assert common.stderr_is_terminal()
    monkeypatch.setattr("sys.stderr", None)
    assert not common.stderr_is_terminal()


# 8. the help shows the defaults and the whole --resume list


def _help(*names: str) -> str:
    parser = build_parser()
    for name in names:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return _one_line(parser.format_help())


def test_train_help_shows_the_defaults() -> None:
    cae = _help("train", "cae")
    for text in (
        "default 3000", "(default 400)", "(default gt)", "(default 0.9)", "(default 0.5,0.99)", "default uniform)",
        "(default mse)", "(default cosine", "(default: torch's choice)", "(default 0.1,1.0)",
    ):  # fmt: skip
        assert text in cae, text
    vae = _help("train", "vae")
    for text in ("default 4096", "(default 64)", "(default 16,32,64,32)", "(default 0)", "best_state.pt"):
        assert text in vae, text
    for text in (cae, vae):
        assert "only --epochs, --time-budget, --threads, --no-progress, --device and --data-root may change" in text
        assert "--epochs not below the epochs it finished" in text
        assert "The budget is per invocation: --resume without it keeps the run's" in text


# 9. --batch-size above --crops


def test_crops_below_a_batch_are_said_to_be_raised() -> None:
    assert common.crops_rounding(64, 32) is None
    assert (
        common.crops_rounding(8, 64)
        == "each epoch trains one batch of 64 crops (8 crops raised to one batch of --batch-size)"
    )
    assert common.crops_rounding(2000, 32) == (
        "each epoch trains 62 batches of 32 = 1,984 crops (2,000 crops rounded down to whole batches)"
    )


def test_a_memory_refusal_names_batch_size_when_it_is_the_cause(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeae.ground import limits

    monkeypatch.setattr(limits, "available_memory", lambda: 1 << 30)
    crops = {"crops": (200_000, 196_608), "val_crops": (8, 3 * 196_608)}
    with pytest.raises(common.MemoryEstimateError) as exc:
        run_memory.check_run_memory(crops, batch=(8, 200_000))
    text = str(exc.value)
    assert "8 raised to one batch of batch_size 200,000" in text and "lower batch_size (--batch-size)" in text
    with pytest.raises(common.MemoryEstimateError, match=r"lower the number of crops \(--crops, --val-crops\)"):
        run_memory.check_run_memory(crops, batch=(200_000, 32))


# 10. docs/io.md's streaming comment


def test_io_docs_say_the_patch_equals_the_image_only_when_complete() -> None:
    text = (ROOT / "docs" / "io.md").read_text()
    assert "# p.pixels == full_image" not in text
    assert "for a patch with valid_frac 1: p.pixels == full_image[p.y:p.y+64, p.x:p.x+64]" in text


# 11. a folder's images are every file the reader reads


def test_pnm_images_in_a_folder_are_named_not_silently_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """.pnm files were skipped without a word. Reading them would change the split and data hash of every earlier
    run on such a folder (refused on resume: review s33 r5/r6), so they are named in a warning instead."""
    folder = tmp_path / "mix"
    folder.mkdir()
    for i in range(3):
        (folder / f"c{i}.ppm").write_bytes(b"P6\n4 4\n255\n" + bytes(range(48)))
    (folder / "x.pnm").write_bytes(b"P6\n4 4\n255\n" + bytes(range(48)))
    with caplog.at_level(logging.WARNING, logger="edgeae.train.cae_config"):
        train, val = split_data(CAETrainConfig(data=str(folder), out=str(tmp_path / "o")))
    assert [p.name for p in val] == ["c0.ppm"] and [p.name for p in train] == ["c1.ppm", "c2.ppm"]
    assert "1 image(s) not used for training (x.pnm)" in caplog.text and "rename them" in caplog.text
    caplog.clear()  # a run splits its folder twice (the zoo check, then training): named once
    with caplog.at_level(logging.WARNING, logger="edgeae.train.cae_config"):
        split_data(CAETrainConfig(data=str(folder), out=str(tmp_path / "o")))
    assert "not used for training" not in caplog.text


def test_count_flags_are_named(folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_cli(folder, tmp_path / "r", "--val-crops", "0")) == 2
    assert "--val-crops must be a positive whole number, got 0" in capsys.readouterr().err
    assert main(_vae_cli(folder, tmp_path / "v", "--batch-size", "-1")) == 2
    assert "--batch-size must be a positive whole number, got -1" in capsys.readouterr().err
    assert not (tmp_path / "r").exists() and not (tmp_path / "v").exists()


def test_an_out_that_cannot_be_made_names_out(folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "run"
    assert main(_cli(folder, out)) == 2
    err = capsys.readouterr().err
    assert f"--out {out}: cannot write in" in err and "[Errno" not in err
    assert main(_vae_cli(folder, out)) == 2
    assert f"--out {out}: cannot write in" in capsys.readouterr().err


def test_the_data_line_counts_files_in_english(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = _images(tmp_path / "data")
    with caplog.at_level(logging.INFO, logger="edgeae.train"):
        train_cae(_config(data, tmp_path / "r", epochs=1))
    assert any("8 val crops from 1 file in" in r.getMessage() for r in caplog.records)


def test_a_mask_too_large_for_memory_is_refused_naming_its_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeae import memory_probe
    from edgeae.masks import MaskError, make_mask

    monkeypatch.setattr(memory_probe, "available_memory", lambda: 1 << 30)
    with pytest.raises(MaskError, match=r"mask shape \(1000000, 1000000\) needs 931\.3 GiB .* 1\.0 GiB"):
        make_mask(seed=1, shape=(10**6, 10**6), keep=0.5)
    assert make_mask(seed=1, shape=(64, 64), keep=0.5).shape == (64, 64)  # small masks are not checked

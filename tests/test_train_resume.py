"""Resumable CAE training: a run stopped mid-epoch and resumed ends with exactly the weights and loss
curve of an uninterrupted run; resuming on other data or another config is refused."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

from _helpers_train import cae_config, smooth_images  # noqa: E402

from edgeae.train.cae import train_cae  # noqa: E402
from edgeae.train.resume import ResumeError, parse_duration  # noqa: E402


def _images(folder: Path, n: int = 3) -> Path:
    return smooth_images(folder, n, (96, 112, 3))


# a unet2 CAE of 24 crops in batches of 8, two epochs (bfloat16 the config's default)
_config = functools.partial(cae_config, variant="unet2", crops=24, val_crops=8, batch_size=8, bf16=None)


def _weights(folder: Path) -> dict[str, np.ndarray]:
    blob = torch.load(folder / "last.pt", map_location="cpu", weights_only=False)
    return {k: v.numpy() for k, v in blob["model"].items()}


def test_stop_and_resume_matches_uninterrupted_run(tmp_path: Path) -> None:
    data = _images(tmp_path / "data")
    full = train_cae(_config(data, tmp_path / "full"))
    assert full["complete"] and full["epochs_run"] == 2

    # stopped after the first batch of epoch 1, then resumed twice (once mid-run, once to the end)
    part = train_cae(_config(data, tmp_path / "part", time_budget=1e-9))
    assert part["complete"] is False and part["batch"] == 1
    cfg = _config(data, tmp_path / "part")
    train_cae(dataclasses.replace(cfg, time_budget=1e-9), resume=True)
    resumed = train_cae(cfg, resume=True)
    assert resumed["complete"] and resumed["epochs_run"] == 2
    assert len(resumed["segments"]) == 3  # start + two resumptions, recorded in metrics.json

    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "part")
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=0, atol=1e-6, err_msg=k)
    hist_a = (tmp_path / "full" / "loss.csv").read_text().splitlines()
    hist_b = (tmp_path / "part" / "loss.csv").read_text().splitlines()
    assert len(hist_a) == len(hist_b) == 3  # header + one row per epoch, kept across resumes
    assert [r.split(",")[:3] for r in hist_a] == [r.split(",")[:3] for r in hist_b]


def test_resume_refuses_other_data_and_config(tmp_path: Path) -> None:
    data = _images(tmp_path / "data")
    train_cae(_config(data, tmp_path / "run", time_budget=1e-9))
    with pytest.raises(ResumeError, match="config changed"):
        train_cae(_config(data, tmp_path / "run", lr=5e-4), resume=True)
    img = cv2.imread(str(data / "im0.png"))
    cv2.imwrite(str(data / "im0.png"), 255 - img)
    with pytest.raises(ResumeError, match="training data changed"):
        train_cae(_config(data, tmp_path / "run"), resume=True)
    with pytest.raises(FileExistsError, match="--resume"):
        train_cae(_config(data, tmp_path / "run"))


def test_parse_duration() -> None:
    assert parse_duration("90m") == 5400
    assert parse_duration("1h30m") == 5400
    assert parse_duration("45s") == 45
    assert parse_duration("120") == 120
    assert parse_duration(None) is None
    for bad in ("ten minutes", "-5", "0"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_init_warm_starts_from_a_checkpoint_and_refuses_another_architecture(tmp_path: Path) -> None:
    from edgeae.checkpoint import load_checkpoint
    from edgeae.metadata import MetadataError

    data = _images(tmp_path / "data")
    first = tmp_path / "first"
    train_cae(_config(data, first, epochs=1))
    start = load_checkpoint(first / "best.pt")
    # lr tiny: the fine-tuned weights stay next to the ones it started from, far from a fresh initialisation
    tuned = train_cae(_config(data, tmp_path / "tuned", epochs=1, lr=1e-9, seed=4, init=str(first / "best.pt")))
    fresh = train_cae(_config(data, tmp_path / "fresh", epochs=1, lr=1e-9, seed=4))
    assert tuned["complete"] and fresh["complete"]
    ck = load_checkpoint(tmp_path / "tuned" / "best.pt")
    a, b = start.model.state_dict(), ck.model.state_dict()
    for k in a:
        np.testing.assert_allclose(a[k].numpy(), b[k].numpy(), atol=1e-5, err_msg=k)
    f = load_checkpoint(tmp_path / "fresh" / "best.pt").model.state_dict()
    assert max(float((a[k] - f[k]).abs().max()) for k in a if a[k].is_floating_point()) > 1e-2  # not by chance
    assert ck.metadata.extra["init"]["file"] == "best.pt"
    assert tuned["init"]["val_psnr"] > 0  # the starting point, measured on this run's validation crops
    # validating on the starting run's crops (its seed): the bar equals that run's own best validation PSNR
    from edgeae.train.cae import init_val_seed

    assert init_val_seed(first / "best.pt") == 3
    same = train_cae(
        _config(data, tmp_path / "same", epochs=1, lr=1e-9, seed=4, val_seed=3, init=str(first / "best.pt"))
    )
    assert same["init"]["val_psnr"] == pytest.approx(start.history[-1]["val_psnr"], abs=0.01)
    assert tuned["init"]["val_psnr"] != pytest.approx(same["init"]["val_psnr"], abs=1e-6)  # other crops
    # the comparison tool measures any checkpoint on a run's own validation crops: the run's figures exactly
    from edgeae.train.cae import compare_on_validation

    again = compare_on_validation(first, [str(first / "best.pt"), str(tmp_path / "same" / "best.pt")])
    assert again[str(first / "best.pt")] == load_checkpoint(first / "best.pt").metrics["val_levels"]
    with pytest.raises(MetadataError, match="architecture"):
        train_cae(_config(data, tmp_path / "other", widths=(4, 16), init=str(first / "best.pt")))


def test_cli_resume_refuses_flags_that_change_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`edgeae train cae --resume RUN` with a flag that would change the run names it and what the run has
    (it used to be ignored); flags equal to the run's pass; an explicit --epochs 8 (the default) is applied."""
    import json

    from edgeae.cli import main
    from edgeae.cli.train import data_arg

    data = _images(tmp_path / "data")
    run = tmp_path / "run"
    train_cae(_config(data, run, time_budget=1e-9))
    assert main(["train", "cae", "--resume", str(run), "--lr", "0.5", "--variant", "seed", "--no-augment"]) == 2
    err = capsys.readouterr().err
    assert "--lr 0.5" in err and "--variant 'seed'" in err and "--no-augment" in err and "config.json" in err
    assert main(["train", "cae", "--resume", str(run), "--data", str(tmp_path / "other")]) == 2
    assert "--data" in capsys.readouterr().err
    # the same values as the run's are not a change; --epochs 8 raises the 2-epoch run to 8
    args = [
        "train",
        "cae",
        "--resume",
        str(run),
        "--seed",
        "3",
        "--data",
        str(data),
        "--epochs",
        "8",
        "--no-progress",
        "--data-root",
        str(tmp_path),
        "--device",
        "cpu",
        "--time-budget",
        "1h",
    ]  # fmt: skip  (where it continues may change; the run's 1e-9 s budget would stop it again)
    assert main(args) == 0
    assert json.loads((run / "metrics.json").read_text())["epochs_run"] == 8
    # a damaged config.json is named, not a bare JSON error
    (run / "config.json").write_text('{"data": ')
    assert main(["train", "cae", "--resume", str(run)]) == 2
    assert "config.json: not a readable training config" in capsys.readouterr().err
    # a folder given relative to the working directory is kept absolute, so the run resumes from anywhere
    monkeypatch.chdir(tmp_path)
    assert data_arg("data") == str(data.resolve()) and data_arg("rover_rgb") == "rover_rgb"

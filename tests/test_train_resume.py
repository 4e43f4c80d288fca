"""Resumable CAE training: a run stopped mid-epoch and resumed ends with exactly the weights and loss
curve of an uninterrupted run; resuming on other data or another config is refused."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

from edgeae.train.cae import CAETrainConfig, train_cae  # noqa: E402
from edgeae.train.resume import ResumeError, parse_duration  # noqa: E402


def _images(folder: Path, n: int = 3) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        img = cv2.GaussianBlur(rng.random((96, 112, 3)).astype(np.float32), (0, 0), 2)
        img = 40 + 160 * (img - img.min()) / (img.max() - img.min())
        cv2.imwrite(str(folder / f"im{i}.png"), img.astype(np.uint8))
    return folder


def _config(data: Path, out: Path, **kw: object) -> CAETrainConfig:
    base = dict(
        data=str(data), out=str(out), variant="unet2", widths=(4, 8), tile=32, epochs=2, crops=24,
        val_crops=8, batch_size=8, threads=1, progress=False, seed=3,
    )  # fmt: skip
    base.update(kw)
    return CAETrainConfig(**base)  # type: ignore[arg-type]


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

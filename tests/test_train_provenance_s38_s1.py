"""Session 38, fixer s1 (review s37-r10 #5): after a resume, a run's metrics and the artifacts exported from it told
contradicting stories: ``command`` said ``--epochs 50`` (the first invocation's), ``hyper_parameters`` ``epochs``
17 (the resume's) and ``channels`` null (the images decided it). Now ``resume_commands`` lists the commands that
resumed the run, ``hyper_parameters`` holds the channels trained on and ``epochs_trained`` (all invocations), and
an export records them (``training_resume_commands``), from older checkpoints too."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

from edgeae.export import producer  # noqa: E402

from edgeae.cli import main  # noqa: E402
from edgeae.train import run_record  # noqa: E402


def _grey_pngs(out: Path, n: int = 3, size: int = 224) -> Path:
    out.mkdir(parents=True)
    rng = np.random.default_rng(3)
    for i in range(n):
        img = cv2.GaussianBlur(rng.random((size, size)).astype(np.float32), (0, 0), 4)
        cv2.imwrite(str(out / f"g{i}.png"), (30 + 190 * (img - img.min()) / np.ptp(img)).astype(np.uint8))
    return out


def test_a_resumed_run_records_its_resume_epochs_and_channels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgeae.checkpoint import load_checkpoint

    data, run = _grey_pngs(tmp_path / "imgs"), tmp_path / "run"
    argv = [
        "train", "cae", "--data", str(data), "--out", str(run), "--widths", "4,8", "--epochs", "1", "--crops", "8",
        "--batch-size", "4", "--val-crops", "4", "--threads", "1", "--no-progress", "--no-bf16",
        "--time-budget", "0.000001",
    ]  # fmt: skip
    assert main(argv) == 75
    resume = ["train", "cae", "--resume", str(run), "--epochs", "2", "--time-budget", "none"]
    assert main(resume) == 0
    capsys.readouterr()
    metrics = json.loads((run / "metrics.json").read_text())
    assert "--epochs 1" in metrics["command"]
    assert metrics["resume_commands"] == [f"edgeae train cae --resume {run} --epochs 2 --time-budget none"]
    hyper = metrics["hyper_parameters"]
    assert (hyper["epochs"], hyper["epochs_trained"], hyper["channels"]) == (2, 2, 1)  # channels was None
    facts = producer.training_facts(load_checkpoint(run / "best.pt").metrics)
    assert facts["training_command"] == metrics["command"]
    assert facts["training_resume_commands"] == metrics["resume_commands"]
    assert facts["training_hyper_parameters"] == hyper


def test_a_checkpoint_trained_before_records_its_resumes_from_its_segments() -> None:
    first, again = "edgeae train cae --data d --epochs 50", "edgeae train cae --resume r --epochs 17"
    old = {
        "command": first,
        "segments": [{"command": first}, {"start_epoch": 9}, {"command": again}],  # one before commands were kept
        "hyper_parameters": {"epochs": 17, "channels": None, "lr": 1e-3},
        "channels": 3,
        "epochs_run": 17,
    }
    facts = producer.training_facts(old)
    assert facts["training_command"] == first and facts["training_resume_commands"] == [again]
    assert facts["training_hyper_parameters"] == {"epochs": 17, "channels": 3, "lr": 1e-3, "epochs_trained": 17}
    assert old["hyper_parameters"]["channels"] is None  # the checkpoint's metrics are left as they are
    never = producer.training_facts({"command": first, "segments": [{"command": first}]})
    assert "training_resume_commands" not in never


def test_resume_commands_are_every_segment_s_after_the_first() -> None:
    segments = [{"command": "a"}, {"command": "b"}, {}, {"command": "c"}]
    assert run_record.resume_commands(segments) == ["b", "c"]
    assert run_record.resume_commands(segments[:1]) == [] and run_record.resume_commands([]) == []
    hyper = run_record.hyper_parameters({"epochs": 5, "channels": None, "threads": 2}, 3, 4)
    assert hyper == {"epochs": 5, "channels": 3, "epochs_trained": 4}

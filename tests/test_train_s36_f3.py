"""Session 36, f3: a resume reads last.pt once; the time left each epoch says when --time-budget stops the run; the
trainers' memory check is edgeae.train.run_memory's alone."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

from _helpers_train import cae_config, smooth_images, vae_config  # noqa: E402

from edgeae.train import resume, run_record  # noqa: E402
from edgeae.train.cae import train_cae  # noqa: E402
from edgeae.train.vae import train_vae  # noqa: E402


def _images(folder: Path, n: int = 5, side: int = 96) -> Path:
    return smooth_images(folder, n, (side, side, 3))


# 3. a resume reads last.pt once: its checks (kind, epochs; data and config) and the restore share one read


@pytest.mark.parametrize("kind", ["cae", "vae"])
def test_a_resume_reads_last_pt_once(tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _images(tmp_path / "data", side=96 if kind == "cae" else 256)
    make, train = {"cae": (cae_config, train_cae), "vae": (vae_config, train_vae)}[kind]
    cfg = make(data, tmp_path / "run", epochs=1)
    assert train(dataclasses.replace(cfg, time_budget=1e-9))["complete"] is False  # stopped after one batch
    reads: list[Path] = []
    real = resume._read_state

    def counted(folder: Any) -> dict[str, Any]:
        reads.append(Path(folder))
        return real(folder)

    monkeypatch.setattr(resume, "_read_state", counted)
    if kind == "vae":
        from edgeae.train import vae

        monkeypatch.setattr(vae, "calibrate_folder", lambda *a, **k: {"lambda": 1.0, "threshold": 1.0,
                                                                      "lambda_source": "test"})  # fmt: skip
    assert train(cfg, resume=True)["complete"]
    assert reads == [tmp_path / "run"], reads  # it used to be read twice: check_resume, then check_state


def test_a_resume_read_once_is_still_refused_for_its_kind_and_epochs(tmp_path: Path) -> None:
    data = _images(tmp_path / "data")
    train_cae(cae_config(data, tmp_path / "run", epochs=1))
    with pytest.raises(resume.ResumeError, match="already complete"):
        train_cae(cae_config(data, tmp_path / "run", epochs=1), resume=True)
    with pytest.raises(resume.ResumeError, match="is a CAE run"):
        train_vae(vae_config(data, tmp_path / "run", epochs=3), resume=True)


# 2. the time left each epoch says when --time-budget stops the run, where that comes before its last epoch


def test_the_time_left_says_when_the_budget_stops_the_run_first() -> None:
    assert run_record.time_left(3, [10.0, 30.0]) == "  about 1m00s left"  # no budget: as before
    assert run_record.time_left(3, [10.0, 30.0], budget_left=3600.0) == "  about 1m00s left"  # later: not said
    assert run_record.time_left(3, [10.0, 30.0], budget_left=25.0) == (
        "  about 1m00s left; the time budget stops it in 25s"
    )
    assert run_record.time_left(3, [10.0], budget_left=0.0).endswith("; the time budget stops it now")
    assert run_record.time_left(3, [10.0], budget_left=0.4).endswith("; the time budget stops it now")  # not "in 0s"
    assert run_record.time_left(3, [10.0], budget_left=1.2).endswith("; the time budget stops it in 1s")
    assert run_record.time_left(0, [10.0], budget_left=5.0) == "" and run_record.time_left(2, [], 5.0) == ""


def test_a_deadline_says_how_long_its_budget_has_left() -> None:
    assert resume.Deadline(None, handle_signals=False).left is None
    left = resume.Deadline(600.0, handle_signals=False).left
    assert left is not None and 599.0 < left <= 600.0


class _SoonDeadline(resume.Deadline):
    """A time budget that stops the run a microsecond from now, sooner than its next epoch (and, here, never)."""

    @property
    def left(self) -> float | None:
        return 1e-6


@pytest.mark.parametrize("kind", ["cae", "vae"])
def test_each_epoch_line_says_when_the_budget_stops_the_run(
    tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    data = _images(tmp_path / "data", side=96 if kind == "cae" else 256)
    make, train = {"cae": (cae_config, train_cae), "vae": (vae_config, train_vae)}[kind]
    monkeypatch.setattr(resume, "Deadline", _SoonDeadline)
    if kind == "vae":
        from edgeae.train import vae

        monkeypatch.setattr(vae, "calibrate_folder", lambda *a, **k: {"lambda": 1.0, "threshold": 1.0,
                                                                      "lambda_source": "test"})  # fmt: skip
    with caplog.at_level(logging.INFO, logger="edgeae.train"):
        assert train(make(data, tmp_path / "run", crops=4 if kind == "cae" else 16))["complete"]
    epoch_1 = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch 1/2 "))
    assert epoch_1.endswith(" left; the time budget stops it now"), epoch_1  # not "in 0s" (review s36 r4 #2)


# 4. the trainers' memory check is edgeae.train.run_memory's (common.check_memory, used by tests alone, is gone)


def test_the_run_memory_check_asks_the_ground_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeae.ground import limits
    from edgeae.train import common, run_memory

    monkeypatch.setattr(limits, "available_memory", lambda: 1 << 20)
    with pytest.raises(common.MemoryEstimateError, match=r"crops 10 \(0\.0 GiB\).* but 0\.0 GiB is available"):
        run_memory.check_run_memory({"crops": (10, 1 << 20)}, batch=(10, 5))
    monkeypatch.setattr(limits, "available_memory", lambda: None)  # unknown: not checked
    run_memory.check_run_memory({"crops": (10, 1 << 20)}, batch=(10, 5))
    assert not hasattr(common, "available_memory") and not hasattr(common, "check_memory")

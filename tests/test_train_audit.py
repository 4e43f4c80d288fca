"""The training audit's defects, one test each (or a few): zoo installs only of complete, matching runs under safe
names; resumes that refuse another kind, a complete run or fewer epochs and then change nothing; exit statuses of
stopped runs; true validation PSNR; warm starts from the seed CAEs; progress lines without -v; one-line errors;
flags that are refused instead of ignored; the crops an epoch really trains; float32 VAE; the in-sample λ AP."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

from test_train_resume import _config, _images  # noqa: E402  (the tiny run of the resume tests)

import edgeae.train.cae as cae_mod  # noqa: E402
import edgeae.train.vae as vae_mod  # noqa: E402
from edgeae import zoo  # noqa: E402
from edgeae.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from edgeae.cli import main  # noqa: E402
from edgeae.metadata import ModelMetadata  # noqa: E402
from edgeae.train.cae import CAETrainConfig, train_cae  # noqa: E402
from edgeae.train.resume import ResumeError, TrainState, account_batch  # noqa: E402
from edgeae.train.vae import VAETrainConfig  # noqa: E402


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Four smooth RGB 256×256 PNGs (one to validation): big enough for the CLI's 128-px crops."""
    out = tmp_path / "imgs"
    out.mkdir()
    rng = np.random.default_rng(1)
    for i in range(4):
        img = cv2.GaussianBlur(rng.random((256, 256, 3)).astype(np.float32), (0, 0), 4)
        img = 30 + 190 * (img - img.min()) / (img.max() - img.min())
        cv2.imwrite(str(out / f"f{i}.png"), img.astype(np.uint8))
    return out


@pytest.fixture
def weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The zoo's weights folder, moved to a temporary one: no test writes into the real zoo (nor reads its
    shipped artifacts: the artifacts folder moves to an empty temporary one too)."""
    w = tmp_path / "zoo-weights"
    monkeypatch.setattr(zoo, "WEIGHTS_DIR", w)
    monkeypatch.setenv("EDGEAE_ZOO", str(w))  # user models too (edgeae.zoo.user)
    monkeypatch.setattr(zoo, "ARTIFACTS_DIR", tmp_path / "zoo-artifacts")
    return w


def _cli(folder: Path, out: Path, *extra: str) -> list[str]:
    """A tiny ``edgeae train cae`` command: a seed CAE of widths 4,8, 8 crops in batches of 4, 1 epoch."""
    return [
        "train", "cae", "--data", str(folder), "--out", str(out), "--widths", "4,8", "--epochs", "1", "--crops", "8",
        "--batch-size", "4", "--val-crops", "4", "--threads", "1", "--no-progress", "--no-bf16", *extra,
    ]  # fmt: skip


def _snapshot(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(run.iterdir()) if p.is_file()}


# 1. --zoo-name


@pytest.mark.parametrize("bad", ["../../../../escaped", "a/b", "", "..", ".hidden", "Rover", "x.pt", "a" * 65])
def test_zoo_names_must_be_safe(bad: str) -> None:
    with pytest.raises(zoo.ZooInstallError, match="zoo name is"):
        zoo.check_name(bad)


def test_unsafe_zoo_name_is_refused_before_training(
    folder: Path, tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_cli(folder, tmp_path / "run", "--zoo-name", "../../../../escaped")) == 2
    assert "zoo name is" in capsys.readouterr().err
    assert not (tmp_path / "run").exists() and not weights.exists()
    assert not list(tmp_path.rglob("escaped*"))


def test_a_stopped_run_is_not_installed_and_exits_75(
    folder: Path, tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--time-budget 6s --zoo-name NAME` used to install the half-trained model and exit 0."""
    rc = main(_cli(folder, tmp_path / "run", "--epochs", "2", "--time-budget", "0.000001", "--zoo-name", "mymodel"))
    assert rc == 75
    out = capsys.readouterr().out
    assert "not installed" in out and "--resume" in out
    assert not weights.exists() or not list(weights.iterdir())


def test_a_registered_name_refuses_another_model_unless_forced(
    folder: Path, tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A seed CAE of widths 4,8 may not replace the 1.1 M-parameter unet2 ground model (refused before training);
    --force replaces it on purpose."""
    assert main(_cli(folder, tmp_path / "run", "--zoo-name", "rover-rgb-unet2-ground")) == 2
    err = capsys.readouterr().err
    assert "refusing to replace" in err and "1,395 parameters (the zoo's: 1,096,395)" in err and "--force" in err
    assert not (tmp_path / "run").exists()
    shipped = zoo.Path(zoo.__file__).parent / "weights" / "rover-rgb-unet2-ground.pt"
    if shipped.is_file():  # with its weights installed, their architecture is named too (read, never written)
        weights.mkdir()
        (weights / shipped.name).write_bytes(shipped.read_bytes())
        assert main(_cli(folder, tmp_path / "run", "--zoo-name", "rover-rgb-unet2-ground")) == 2
        assert "variant 'seed' (the zoo's: 'unet2')" in capsys.readouterr().err
        assert not (tmp_path / "run").exists()
    assert main(_cli(folder, tmp_path / "run", "--zoo-name", "rover-rgb-unet2-ground", "--force")) == 0
    assert "zoo: wrote" in capsys.readouterr().out
    assert sorted(p.name for p in weights.iterdir()) == ["rover-rgb-unet2-ground.json", "rover-rgb-unet2-ground.pt"]
    assert load_checkpoint(weights / "rover-rgb-unet2-ground.pt").metadata.architecture["widths"] == [4, 8]
    assert main(_cli(folder, tmp_path / "other", "--force")) == 2  # --force alone means nothing
    assert "--force only applies with --zoo-name" in capsys.readouterr().err


def _vae_checkpoint(path: Path, channels: int = 3) -> Path:
    from edgeae.models.vae import VAE, VAEConfig

    cfg = VAEConfig(channels=channels, widths=(4, 4, 4, 4), latent=8)
    meta = ModelMetadata(kind="vae", architecture=cfg.to_dict(), input_shape=(-1, channels, 64, 64), channels=channels)
    return save_checkpoint(path, VAE(cfg), meta)


def _cae_checkpoint(path: Path, channels: int = 1, widths: tuple[int, ...] = (16, 32, 64, 128), **arch: Any) -> Path:
    from edgeae.models.cae import CAEConfig, build

    cfg = CAEConfig(channels=channels, widths=widths, **arch)
    meta = ModelMetadata(
        kind="cae", architecture=cfg.to_dict(), input_shape=(-1, channels, 128, 128), channels=channels
    )
    return save_checkpoint(path, build(cfg), meta)


def test_install_checks_kind_architecture_and_completion(tmp_path: Path, weights: Path) -> None:
    done = tmp_path / "metrics.json"
    done.write_text(json.dumps({"complete": True, "epochs_run": 1, "best_epoch": 1}))
    vae = _vae_checkpoint(tmp_path / "vae.pt")
    with pytest.raises(zoo.ZooInstallError, match="kind vae"):
        zoo.install("rover-rgb-gtcae", vae, done)  # a VAE under a CAE's name
    same = _cae_checkpoint(tmp_path / "seed.pt")  # the architecture of orbital-gray-gtcae
    stopped = tmp_path / "stopped.json"
    stopped.write_text(json.dumps({"complete": False, "stopped": "time budget of 6 s reached", "epochs_run": 1}))
    with pytest.raises(zoo.ZooInstallError, match="not from a complete run"):
        zoo.install("orbital-gray-gtcae", same, stopped)
    assert not weights.exists()
    assert zoo.install("orbital-gray-gtcae", same, done) == weights / "orbital-gray-gtcae.pt"
    # with shipped weights present, their architecture is the one to match (a unet of the same widths differs)
    other = _cae_checkpoint(tmp_path / "unet.pt", variant="unet")
    with pytest.raises(zoo.ZooInstallError, match="variant 'unet'"):
        zoo.install("orbital-gray-gtcae", other, done)
    assert zoo.install("orbital-gray-gtcae", other, done, force=True).is_file()
    assert zoo.install("my-new-model", vae, done).is_file()  # an unregistered name: a new model


def test_gate_refuses_unsafe_names_incomplete_runs_and_non_gated_models(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """All refused before τ is tuned (one line, exit 2), never a traceback."""
    from edgeae.train.gate import main as gate

    data = _images(tmp_path / "data")
    run = tmp_path / "run"
    train_cae(_config(data, run, epochs=1))  # unet2: the gate's variant
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps({**metrics, "complete": False, "stopped": "stopped by SIGTERM"}))
    args = [str(run / "best.pt"), "--data", "rover_rgb", "--out", str(tmp_path / "g.pt")]
    assert gate([*args, "--zoo-name", "../../x"]) == 2
    assert "zoo name is" in capsys.readouterr().err
    assert gate([*args, "--zoo-name", "rover-rgb-unet2-ground"]) == 2
    assert "not from a complete run (stopped by SIGTERM)" in capsys.readouterr().err
    seed = _cae_checkpoint(tmp_path / "seed.pt")
    assert gate([str(seed), "--data", "rover_rgb", "--out", str(tmp_path / "g.pt")]) == 2
    assert "the gate needs a unet2 / unet2h CAE" in capsys.readouterr().err
    # neither a dataset nor a folder (a folder tunes τ on its val files since session 31: test_train_folder_s31)
    assert gate([*args[:1], "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "g.pt")]) == 2
    assert "named dataset" in capsys.readouterr().err
    assert gate([*args, "--taus", "0,x"]) == 2
    assert "--taus" in capsys.readouterr().err
    assert not (tmp_path / "g.pt").exists() and not weights.exists()


# 2. and 3. resume: the kind first; a refused resume changes nothing


def test_vae_resume_of_a_cae_run_is_refused_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _images(tmp_path / "data")
    run = tmp_path / "k1"
    train_cae(_config(data, run, time_budget=1e-9))
    before = _snapshot(run)
    assert json.loads(before["config.json"])["kind"] == "cae"
    assert main(["train", "vae", "--resume", str(run)]) == 2
    assert f"is a CAE run; use edgeae train cae --resume {run}" in capsys.readouterr().err
    with pytest.raises(ResumeError, match="is a CAE run"):
        vae_mod.train_vae(VAETrainConfig(out=str(run)), resume=True)
    # a config.json written before the kind was recorded: told apart by its fields
    cfg = json.loads(before["config.json"])
    del cfg["kind"]
    (run / "config.json").write_text(json.dumps(cfg))
    assert main(["train", "vae", "--resume", str(run)]) == 2
    assert "is a CAE run" in capsys.readouterr().err
    (run / "config.json").write_bytes(before["config.json"])
    assert _snapshot(run) == before
    assert train_cae(_config(data, run), resume=True)["complete"]  # the CAE run still resumes


def test_cae_resume_of_a_vae_run_names_the_kind(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "v1"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(VAETrainConfig(out=str(run)).to_dict()))  # an older VAE run's
    assert main(["train", "cae", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert f"is a VAE run; use edgeae train vae --resume {run}" in err and "TypeError" not in err
    with pytest.raises(ValueError, match="config of a VAE run"):
        CAETrainConfig.from_dict({"kind": "vae", "data": "x", "out": "o"})


def test_a_refused_resume_leaves_config_json_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The data changed: `--resume k3 --epochs 3 --data-root droot` is refused, and a plain resume still works."""
    data = _images(tmp_path / "data")
    run = tmp_path / "k3"
    train_cae(_config(data, run, time_budget=1e-9))
    before = _snapshot(run)
    img = cv2.imread(str(data / "im0.png"))
    cv2.imwrite(str(data / "im0.png"), 255 - img)
    monkeypatch.chdir(tmp_path)
    assert main(["train", "cae", "--resume", str(run), "--epochs", "3", "--data-root", "droot"]) == 2
    assert "training data changed" in capsys.readouterr().err
    assert _snapshot(run) == before
    cv2.imwrite(str(data / "im0.png"), img)
    assert main(["train", "cae", "--resume", str(run), "--data-root", "droot", "--time-budget", "1h"]) == 0
    saved = json.loads((run / "config.json").read_text())
    assert saved["epochs"] == 2 and saved["data_root"] == str((tmp_path / "droot").resolve())  # stored absolute


# 4. exit statuses


class _Signalled:
    """A :class:`edgeae.train.resume.Deadline` that received ``SIGNAL`` before the first batch ended."""

    SIGNAL = "SIGTERM"

    def __init__(self, budget_s: float | None, handle_signals: bool = True) -> None:
        self.budget_s, self.signal = budget_s, self.SIGNAL

    expired = True
    left = None  # no time budget to say
    reason = property(lambda self: f"stopped by {self.signal}")
    cause = property(lambda self: self.signal)

    def close(self) -> None:
        pass


@pytest.mark.parametrize(("signal_name", "status"), [("SIGTERM", 143), ("SIGINT", 130)])
def test_a_run_stopped_by_a_signal_exits_with_its_status(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, signal_name: str, status: int
) -> None:
    import edgeae.train.resume as resume
    from edgeae.train.resume import stop_exit_status

    monkeypatch.setattr(_Signalled, "SIGNAL", signal_name)
    monkeypatch.setattr(resume, "Deadline", _Signalled)
    assert main(_cli(folder, tmp_path / "run", "--epochs", "2")) == status
    assert stop_exit_status(None) == 0 and stop_exit_status("budget") == 75


def test_help_documents_the_exit_statuses(capsys: pytest.CaptureFixture[str]) -> None:
    for kind in ("cae", "vae"):
        with pytest.raises(SystemExit):
            main(["train", kind, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "Exit status: 0 when the run completed" in text and "75 when --time-budget" in text
        assert "130 / 143" in text


# 5. validation PSNR


@pytest.mark.parametrize("mode", ["plain", "colour-noise"])
def test_val_psnr_of_modes_without_a_mask_is_plain_psnr(tmp_path: Path, mode: str) -> None:
    """The MSE val loss and the PSNR describe the same reconstruction (120 dB for MSE 0.0246 before; a seed CAE:
    a U-Net passes a plain input through its pre-fill exactly)."""
    data = _images(tmp_path / "data")
    train_cae(_config(data, tmp_path / "run", epochs=1, mode=mode, variant="seed", bf16=False, channels_last=False))
    (row,) = load_checkpoint(tmp_path / "run" / "best.pt").history
    assert row["val_psnr"] == pytest.approx(-10 * math.log10(row["val_loss"]), abs=0.01)


def test_validation_keep_masks_are_the_masks_that_made_the_inputs(tmp_path: Path) -> None:
    from edgeae.train.cae import split_data, validation_set

    data = _images(tmp_path / "data")
    cfg = _config(data, tmp_path / "run", mode="fixed", destroy=0.7, val_crops=6)
    _train, val = split_data(cfg)
    clean, corrupted, keep = validation_set(cfg, val, 3)
    assert keep is not None and keep.shape == (6, 32, 32) and abs(1 - keep.mean() - 0.7) < 0.05
    assert np.array_equal(corrupted, clean * keep[:, None])
    assert validation_set(dataclasses.replace(cfg, mode="plain"), val, 3)[2] is None


# 6. --init of a checkpoint whose metadata has no variant (the shipped seed CAEs)


def test_init_accepts_a_seed_checkpoint_without_a_variant(tmp_path: Path) -> None:
    from edgeae.models.cae import CAEConfig, build

    data = _images(tmp_path / "data")
    cfg = CAEConfig(channels=3, widths=(4, 8), tile=32)
    arch = {k: v for k, v in cfg.to_dict().items() if k != "variant"}  # as rover-rgb-gtcae.pt has it
    meta = ModelMetadata(kind="cae", architecture=arch, input_shape=(-1, 3, 32, 32), channels=3)
    start = save_checkpoint(tmp_path / "old-seed.pt", build(cfg), meta, {"best_epoch": 5})
    tuned = train_cae(_config(data, tmp_path / "ft", variant="seed", epochs=1, init=str(start)))
    assert tuned["complete"] and tuned["init"]["file"] == "old-seed.pt"


# 7. progress without -v


def test_progress_lines_show_without_verbose(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _images(tmp_path / "data")
    run = tmp_path / "run"
    train_cae(_config(data, run, time_budget=1e-9))
    capsys.readouterr()
    assert main(["train", "cae", "--resume", str(run), "--time-budget", "1h"]) == 0  # the run's 1e-9 s: replaced
    err = capsys.readouterr().err
    for line in ("precision: ", "resumed ", "at epoch 1/2, batch 1/3", "epoch 1/2  train", "epoch 2/2  train"):
        assert line in err, line
    assert "debug" not in err
    assert logging.getLogger("edgeae.train").level == logging.NOTSET  # the command's level did not leak


def test_a_resumed_epoch_bar_counts_its_done_batches(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("tqdm")
    from edgeae.train.common import progress

    assert list(progress(range(16, 20), "epoch 1/2", total=20, initial=16)) == [16, 17, 18, 19]
    err = capsys.readouterr().err
    assert "16/20" in err and "0/4" not in err


# 8. one-line errors


def test_a_diverged_loss_is_a_one_line_error(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgeae.train.resume import TrainingDiverged

    monkeypatch.setattr(cae_mod, "_loss_fn", lambda name: lambda a, b: ((a - b) ** 2).mean() * float("nan"))
    assert main(_cli(folder, tmp_path / "run")) == 2
    err = capsys.readouterr().err
    assert "training diverged: the loss became nan at epoch 1, batch 1; lower the learning rate" in err
    assert "Traceback" not in err
    with pytest.raises(ValueError, match="diverged"):  # a ValueError: the CLI's one-line errors
        account_batch(TrainState(), float("inf"), 4, 1, 0)
    assert issubclass(TrainingDiverged, ValueError)


@pytest.mark.parametrize("flag", ["--crops", "--val-crops"])
def test_too_many_crops_are_refused_before_the_data_is_read(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str
) -> None:
    assert main([*_cli(folder, tmp_path / "run"), flag, "1000000000"]) == 2
    err = capsys.readouterr().err
    assert "GiB of memory" in err and "1,000,000,000" in err and "lower the number of crops" in err
    assert not (tmp_path / "run").exists()
    assert main(["train", "vae", "--out", str(tmp_path / "v"), "--crops", "1000000000"]) == 2
    assert "GiB of memory" in capsys.readouterr().err


def test_vae_learning_rate_is_bounded_like_the_cae_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "vae", "--out", str(tmp_path / "v"), "--lr", "1000"]) == 2
    assert "lr must be in (0, 1)" in capsys.readouterr().err
    with pytest.raises(ValueError, match="lr"):
        VAETrainConfig(out="x", lr=1.0).check_new_run()  # a new run's rule (a saved run still loads)


def test_compare_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgeae.train.compare import main as compare

    data = _images(tmp_path / "data")
    run = tmp_path / "run"
    train_cae(_config(data, run, epochs=1))
    assert compare([str(tmp_path / "nope"), str(run / "best.pt")]) == 2
    assert "no config.json there" in capsys.readouterr().err
    vrun = tmp_path / "vae-run"
    vrun.mkdir()
    (vrun / "config.json").write_text(json.dumps({"kind": "vae", **VAETrainConfig(out=str(vrun)).to_dict()}))
    assert compare([str(vrun), str(run / "best.pt")]) == 2
    assert "is a VAE run" in capsys.readouterr().err
    grey = _cae_checkpoint(tmp_path / "grey.pt", channels=1, widths=(4, 8))
    assert compare([str(run), str(grey)]) == 2
    assert "1 channel(s); the run" in capsys.readouterr().err
    assert compare([str(run), str(_vae_checkpoint(tmp_path / "v.pt"))]) == 2
    assert "a VAE with 3 channel(s)" in capsys.readouterr().err
    assert compare([str(run), str(tmp_path / "missing.pt")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err
    assert compare([str(run), str(run / "best.pt")]) == 0


# 9. finished runs


def test_resuming_a_complete_run_needs_more_epochs_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _images(tmp_path / "data")
    run = tmp_path / "s2"
    assert train_cae(_config(data, run))["complete"]
    before = _snapshot(run)
    assert main(["train", "cae", "--resume", str(run)]) == 2
    assert "already complete (2 epochs); pass a larger --epochs" in capsys.readouterr().err
    assert main(["train", "cae", "--resume", str(run), "--epochs", "1"]) == 2
    assert (
        "already trained 2 epochs; pass --epochs more than 2"
    )  # complete: 2 is refused too (s46) in capsys.readouterr().err
    assert _snapshot(run) == before
    assert main(["train", "cae", "--resume", str(run), "--epochs", "3"]) == 0
    assert json.loads((run / "metrics.json").read_text())["epochs_run"] == 3


def test_a_run_stopped_mid_epoch_may_be_resumed_to_the_epochs_it_finished(tmp_path: Path) -> None:
    """As the rover-rgb-vae zoo command did (`--resume runs/vae2/rgb --epochs 1` after a stop inside epoch 2):
    the run completes at its finished epochs; resuming it again then needs more epochs."""
    data = _images(tmp_path / "data")
    run = tmp_path / "mid"
    train_cae(_config(data, run, epochs=2))
    blob = torch.load(run / "last.pt", map_location="cpu", weights_only=False)
    blob["state"].update(epoch=2, batch=1, complete=False, best_epoch=1, history=blob["state"]["history"][:1])
    torch.save(blob, run / "last.pt")  # as if stopped after the first batch of epoch 2
    done = train_cae(_config(data, run, epochs=1), resume=True)
    assert done["complete"] and done["epochs_run"] == 1
    with pytest.raises(ResumeError, match=r"already complete \(1 epochs\)"):
        train_cae(_config(data, run, epochs=1), resume=True)


def test_an_early_stopped_run_is_complete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """It used to train one more epoch on every resume."""
    monkeypatch.setattr(cae_mod, "_val_loss", lambda *a, **k: 1.0)  # never better after epoch 1
    data = _images(tmp_path / "data")
    run = tmp_path / "es"
    m = train_cae(_config(data, run, epochs=4, patience=1))
    assert m["complete"] and m["early_stop"] and m["epochs_run"] == 2
    before = _snapshot(run)
    with pytest.raises(ResumeError, match="stopped early after epoch 2"):
        train_cae(_config(data, run, epochs=6, patience=1), resume=True)
    assert _snapshot(run) == before


# 10. flags that were silently ignored


def test_ignored_flags_are_refused(folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _images(tmp_path / "data")
    run = tmp_path / "s3"
    train_cae(_config(data, run, time_budget=1e-9))
    assert main(["train", "cae", "--resume", str(run), "--out", str(tmp_path / "elsewhere")]) == 2
    assert "continues in its own folder" in capsys.readouterr().err
    assert not (tmp_path / "elsewhere").exists()
    assert main(_cli(folder, tmp_path / "d", "--destroy", "0.3")) == 2
    assert "--destroy applies to --mode fixed, not to --mode gt" in capsys.readouterr().err
    assert main(_cli(folder, tmp_path / "d", "--mode", "fixed", "--coverage-range", "0.2,0.5")) == 2
    assert "--coverage-range applies to --mode colour-noise" in capsys.readouterr().err
    assert main(["train", "vae", "--out", str(tmp_path / "v"), "--msl-ground"]) == 2
    assert "--msl-ground applies to RGB data" in capsys.readouterr().err
    assert main(["train", "vae", "--out", str(tmp_path / "v"), "--data", "rover_rgb", "--no-hirise"]) == 2
    assert "--no-hirise applies to grey data" in capsys.readouterr().err
    with pytest.raises(ValueError, match="msl_ground"):
        VAETrainConfig(out="x", msl_ground=True).check_new_run()
    assert not (tmp_path / "d").exists() and not (tmp_path / "v").exists()


# 11. the crops an epoch trains


def test_an_epoch_trains_whole_batches_and_records_how_many(tmp_path: Path) -> None:
    assert CAETrainConfig(data="x", out="o", crops=2000, batch_size=32).crops_per_epoch == 1984
    assert CAETrainConfig(data="x", out="o", crops=16, batch_size=32).crops_per_epoch == 32
    assert VAETrainConfig(out="o", crops=100, batch_size=64).crops_per_epoch == 64
    assert VAETrainConfig(out="o", crops=16384, batch_size=64).crops_per_epoch == 16384
    data = _images(tmp_path / "data")
    m = train_cae(_config(data, tmp_path / "run", epochs=1, crops=20, batch_size=8))
    assert m["crops_per_epoch"] == 16
    assert load_checkpoint(tmp_path / "run" / "best.pt").metadata.extra["crops_per_epoch"] == 16


# 12. float32 VAE on CUDA


def test_vae_without_bf16_is_float32_on_cuda_too() -> None:
    ctx = vae_mod._autocast(torch, torch.device("cuda"), False)
    assert isinstance(ctx, contextlib.nullcontext)  # float16 autocast once, without a gradient scaler
    assert isinstance(vae_mod._autocast(torch, torch.device("cpu"), False), contextlib.nullcontext)


# 13. the rover VAE's λ-tuning AP is in-sample


def test_rgb_lambda_reports_its_in_sample_ap_beside_a_patch_std_baseline() -> None:
    from edgeae.anomaly.calibrate import RELATIVE_GRID
    from edgeae.anomaly.metrics import average_precision

    rng = np.random.default_rng(0)
    sizes = rng.integers(3, 9, size=40)
    bounds = np.cumsum([0, *sizes])
    y = np.arange(40) % 2 == 0
    rec = rng.random(bounds[-1])
    mu2 = rng.random(bounds[-1])
    std = rng.random(bounds[-1])
    for i in np.flatnonzero(y):  # one μ² outlier per hardware image: λ matters
        mu2[bounds[i]] += 3.0
    got = vae_mod._rgb_lambda(rec, mu2, std, bounds, y, RELATIVE_GRID, average_precision)
    # the λ of the loop as it was: the first best of the grid
    scale = float(np.median(rec) / np.median(mu2))
    aps = [average_precision(np.maximum.reduceat(rec + r * scale * mu2, bounds[:-1]), y) for r in RELATIVE_GRID]
    assert got["lambda"] == pytest.approx(RELATIVE_GRID[int(np.argmax(aps))] * scale)
    assert got["lambda_ap"] == pytest.approx(max(aps)) and got["lambda_ap_in_sample"] is True
    assert got["baseline_patch_std_ap"] == pytest.approx(average_precision(np.maximum.reduceat(std, bounds[:-1]), y))


# the VAE trainer on real data (orbital_gray; calibration stubbed): crops, kind, completion, exit statuses, NaN


def _stub_calibrate(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"lambda": 0.0, "threshold": 1.0, "lambda_ap": 0.5, "lambda_ap_in_sample": True,
            "baseline_patch_std_ap": 0.4, "lambda_feature": "stub"}  # fmt: skip


def test_vae_trainer_records_its_run_and_refuses_to_redo_it(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(vae_mod, "calibrate", _stub_calibrate)
    tiny = ["--widths", "4,4,4,4", "--latent", "8", "--epochs", "1", "--crops", "80", "--batch-size", "32"]
    tiny += ["--val-crops", "32", "--no-hirise", "--threads", "1", "--no-progress", "--data-root", str(data_root)]
    run = tmp_path / "v"
    assert main(["train", "vae", "--out", str(run), *tiny]) == 0
    captured = capsys.readouterr()
    assert "each epoch trains 2 batches of 32 = 64 crops" in captured.err and "calibrating λ" in captured.err
    assert "in-sample AP 0.500, patch-std baseline 0.400" in captured.out
    assert json.loads((run / "config.json").read_text())["kind"] == "vae"
    assert json.loads((run / "metrics.json").read_text())["crops_per_epoch"] == 64
    assert load_checkpoint(run / "best.pt").metadata.extra["crops_per_epoch"] == 64
    before = _snapshot(run)
    assert main(["train", "vae", "--resume", str(run)]) == 2  # no second calibration
    assert "already complete (1 epochs)" in capsys.readouterr().err
    assert main(["train", "cae", "--resume", str(run)]) == 2
    assert "is a VAE run; use edgeae train vae --resume" in capsys.readouterr().err
    assert _snapshot(run) == before
    stopped = tmp_path / "stopped"
    assert main(["train", "vae", "--out", str(stopped), *tiny, "--time-budget", "0.000001"]) == 75
    monkeypatch.setattr(vae_mod, "_losses", lambda *a, **k: torch.tensor(float("nan"), requires_grad=True))
    assert main(["train", "vae", "--out", str(tmp_path / "nan"), *tiny]) == 2
    err = capsys.readouterr().err
    assert "training diverged: the loss became nan" in err and "Traceback" not in err


# the review of the training changes: zoo names kept in the run, --force, early stops killed before their final
# files, older configs, the GPU script's exit statuses


def test_a_stopped_zoo_run_keeps_its_zoo_name_and_a_complete_run_installs_without_training(
    folder: Path, tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The printed hint of a stopped `--zoo-name` run used to drop the name: following it exited 0 and installed
    nothing, and `--resume t3 --zoo-name NAME` of the then complete run was refused as already complete."""
    run = tmp_path / "t3"
    argv = _cli(folder, run, "--epochs", "2", "--time-budget", "0.000001", "--zoo-name", "review-test", "--force")
    assert main(argv) == 75
    assert f"continue with: edgeae train cae --resume {run} --zoo-name review-test --force" in capsys.readouterr().out
    saved = json.loads((run / "config.json").read_text())
    assert saved["zoo_name"] == "review-test" and saved["zoo_force"] is True
    assert main(["train", "cae", "--resume", str(run)]) == 75  # the run's budget applies to each invocation
    capsys.readouterr()
    assert main(["train", "cae", "--resume", str(run), "--time-budget", "1h"]) == 0  # the name is the run's
    assert f"zoo: wrote {weights / 'review-test.pt'}" in capsys.readouterr().out
    assert (weights / "review-test.pt").read_bytes() == (run / "best.pt").read_bytes()
    before = _snapshot(run)
    assert main(["train", "cae", "--resume", str(run), "--zoo-name", "review-test-2"]) == 0
    out = capsys.readouterr().out
    assert "is complete (2 epochs): installing it without training" in out and "zoo: wrote" in out
    assert (weights / "review-test-2.pt").read_bytes() == (run / "best.pt").read_bytes()
    assert _snapshot(run) == before  # nothing trained, nothing rewritten
    assert main(["train", "cae", "--resume", str(run)]) == 2  # without a name a complete run is still refused
    assert "or only --zoo-name NAME to install it" in capsys.readouterr().err
    plain = tmp_path / "plain"  # a run without --zoo-name: its config.json has no zoo keys
    assert main(_cli(folder, plain)) == 0
    assert not {"zoo_name", "zoo_force"} & set(json.loads((plain / "config.json").read_text()))


def test_force_never_replaces_a_model_of_another_kind_or_channels(
    folder: Path, tmp_path: Path, weights: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--zoo-name orbital-gray-vae --force` of a CAE run replaced the registered VAE (`edgeae zoo` then listed a
    341 k CAE as "vae 1 478 k"); a replaced model's shipped artifacts were left to look current."""
    done = tmp_path / "metrics.json"
    done.write_text(json.dumps({"complete": True, "epochs_run": 1, "best_epoch": 1}))
    grey_cae = _cae_checkpoint(tmp_path / "cae.pt")
    with pytest.raises(zoo.ZooInstallError, match=r"kind cae \(the zoo's: vae\).*--force does not change"):
        zoo.install("orbital-gray-vae", grey_cae, done, force=True)
    rgb_cae = _cae_checkpoint(tmp_path / "rgb.pt", channels=3)
    with pytest.raises(zoo.ZooInstallError, match=r"3 channel\(s\) \(the zoo's: 1\)"):
        zoo.install("orbital-gray-gtcae", rgb_cae, done, force=True)
    assert not weights.exists()
    assert main(_cli(folder, tmp_path / "run", "--zoo-name", "orbital-gray-vae", "--force")) == 2
    assert "--force does not change a registered model's kind or channels" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    # an architecture change is what --force is for; the shipped artifacts of the old weights are then stale
    arts = zoo.ARTIFACTS_DIR / "orbital-gray-gtcae"
    arts.mkdir(parents=True)
    for name in ("orbital-gray-gtcae.int8.onnx", "orbital-gray-gtcae.int8.tflite", "parity.json"):
        (arts / name).write_text("old")
    unet = _cae_checkpoint(tmp_path / "unet.pt", variant="unet")
    with caplog.at_level(logging.WARNING, logger="edgeae.zoo"):
        assert zoo.install("orbital-gray-gtcae", unet, done, force=True).is_file()
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "orbital-gray-gtcae.int8.onnx, orbital-gray-gtcae.int8.tflite" in warning and "now stale" in warning
    assert "edgeae export orbital-gray-gtcae --no-latency --out runs/export/orbital-gray-gtcae" in warning
    assert (arts / "parity.json").read_text() == "old"  # said, not deleted
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="edgeae.zoo"):
        zoo.install("rover-rgb-gtunet", _cae_checkpoint(tmp_path / "u3.pt", channels=3, variant="unet"), done)
    assert not caplog.records  # no artifacts ship for it: nothing to say


def _simulate_kill_before_final_files(run: Path, **state: Any) -> None:
    """As if the run had been killed after its last ``save()`` but before ``metrics.json`` was written."""
    blob = torch.load(run / "last.pt", map_location="cpu", weights_only=False)
    blob["state"].update(complete=False, **state)
    torch.save(blob, run / "last.pt")
    (run / "metrics.json").unlink()


def test_an_early_stopped_run_killed_before_its_final_files_only_finalises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its last.pt says early_stop=True, complete=False: the resume used to train a third epoch."""
    monkeypatch.setattr(cae_mod, "_val_loss", lambda *a, **k: 1.0)  # never better after epoch 1
    data = _images(tmp_path / "data")
    run = tmp_path / "es"
    assert train_cae(_config(data, run, epochs=4, patience=1))["epochs_run"] == 2
    _simulate_kill_before_final_files(run)
    weights_before = torch.load(run / "last.pt", map_location="cpu", weights_only=False)["model"]
    m = train_cae(_config(data, run, epochs=4, patience=1), resume=True)
    assert m["complete"] and m["early_stop"] and m["epochs_run"] == 2 and m["best_epoch"] == 1
    assert len((run / "loss.csv").read_text().splitlines()) == 3  # header + the two epochs, no third
    after = torch.load(run / "last.pt", map_location="cpu", weights_only=False)
    assert after["state"]["complete"] and after["state"]["epoch"] == 3
    assert all(torch.equal(weights_before[k], v) for k, v in after["model"].items())  # not one more step
    with pytest.raises(ResumeError, match="stopped early after epoch 2"):
        train_cae(_config(data, run, epochs=4, patience=1), resume=True)


def test_older_vae_configs_load_with_a_warning_and_only_new_runs_are_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run saved with --msl-ground on grey data (ignored then) or an lr of 1 or more could no longer be loaded,
    so not resumed."""
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"kind": "vae", **VAETrainConfig(out="o").to_dict(), "msl_ground": True, "lr": 1.5}))
    with caplog.at_level(logging.WARNING, logger="edgeae.train.vae"):
        loaded = vae_mod.load_config(cfg)
    assert loaded.msl_ground and loaded.lr == 1.5
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "lr must be in (0, 1), got 1.5" in warned and "msl_ground adds RGB MSL images" in warned
    assert "this run resumes as it started" in warned
    assert dataclasses.replace(loaded, epochs=9).epochs == 9  # --epochs on resume: no new refusal either
    with pytest.raises(ValueError, match=r"lr must be in \(0, 1\)"):
        vae_mod.train_vae(VAETrainConfig(out=str(tmp_path / "new"), lr=1.5))  # a new run: refused
    assert not (tmp_path / "new").exists()
    assert main(["train", "vae", "--out", str(tmp_path / "v"), "--lr", "1"]) == 2
    assert "lr must be in (0, 1), got 1.0" in capsys.readouterr().err
    with pytest.raises(ValueError, match="positive"):
        VAETrainConfig(out="o", lr=0.0)


def test_vae_runs_keep_their_zoo_name_and_older_runs_resume(
    data_root: Path, tmp_path: Path, weights: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """A stopped `train vae --zoo-name` run is installed when resumed to completion; a run saved with --msl-ground
    on grey data and before the crops per epoch were recorded resumes (with warnings); a state that records an
    early stop trains no further."""
    monkeypatch.setattr(vae_mod, "calibrate", _stub_calibrate)
    tiny = ["--widths", "4,4,4,4", "--latent", "8", "--epochs", "2", "--crops", "80", "--batch-size", "32"]
    tiny += ["--val-crops", "32", "--no-hirise", "--threads", "1", "--no-progress", "--data-root", str(data_root)]
    run = tmp_path / "v"
    assert main(["train", "vae", "--out", str(run), *tiny, "--time-budget", "0.000001", "--zoo-name", "vae-t"]) == 75
    assert f"continue with: edgeae train vae --resume {run} --zoo-name vae-t" in capsys.readouterr().out
    # as an older run saved it: msl_ground on grey data (then ignored), no crops per epoch in its state
    cfg = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**cfg, "msl_ground": True}))
    blob = torch.load(run / "last.pt", map_location="cpu", weights_only=False)
    assert blob["state"].pop("crops_per_epoch") == 64
    blob["config"]["msl_ground"] = True
    torch.save(blob, run / "last.pt")
    with caplog.at_level(logging.WARNING):
        assert main(["train", "vae", "--resume", str(run), "--time-budget", "1h"]) == 0
    warned = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "msl_ground adds RGB MSL images" in warned
    assert "drew 80 crops (3 batches, the last of 16), the rest of its epochs draw 64 (2 batches of 32)" in warned
    assert f"zoo: wrote {weights / 'vae-t.pt'}" in capsys.readouterr().out
    assert json.loads((run / "metrics.json").read_text())["epochs_run"] == 2
    done = torch.load(run / "last.pt", map_location="cpu", weights_only=False)["state"]
    assert done["crops_per_epoch"] == 64 and len(done["history"]) == 2
    # a state recording an early stop after epoch 1 (the CAE trainer's kind of state): finalised, not trained on
    hist = done["history"]
    _simulate_kill_before_final_files(run, epoch=2, batch=0, history=hist[:1], best_epoch=1, early_stop=True)
    assert main(["train", "vae", "--resume", str(run), "--zoo-name", "vae-t2"]) == 0
    assert json.loads((run / "metrics.json").read_text())["epochs_run"] == 1
    assert (weights / "vae-t2.pt").is_file()


def test_gpu_script_tells_a_time_budget_stop_from_a_failure(tmp_path: Path) -> None:
    """`wait "$p" || echo "a $phase run failed (exit $?)"` called a --time-budget stop (75) a failure."""
    import os
    import subprocess

    script = Path(__file__).resolve().parents[1] / "scripts" / "gpu_train.sh"
    fake = tmp_path / "fake-python"  # the probe parser's one epoch; every training run exits $FAKE_RC
    fake.write_text('#!/usr/bin/env bash\nif [ "$1" = - ]; then cat >/dev/null; echo 1; exit 0; fi\nexit "$FAKE_RC"\n')
    fake.chmod(0o755)
    results = {}
    for rc in ("75", "2"):
        env = {**os.environ, "PY": str(fake), "FAKE_RC": rc, "JOBS_ONLY": "rover-ground-ft", "OUT": "out"}
        proc = subprocess.run(["bash", str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        results[rc] = proc.stdout
    stop = results["75"]
    assert "[main] rover-ground-ft: stopped by its time budget (exit 75): continue with: edgeae train cae " in stop
    assert "--resume runs/gpu-main/rover-ground-ft" in stop and "failed" not in stop
    assert "[main] rover-ground-ft: failed (exit 2): see runs/gpu-main/rover-ground-ft/train.log" in results["2"]

"""Session 35, audit a2 (hours-long, interrupted training): the memory estimate counts the images and the model,
SIGTERM is handled from the start, a trained model in --out is not overwritten, each segment records its machine
settings and command (the zoo entry shows it), clearer data messages, one "continue with" and the time left."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

from _helpers_train import smooth_images  # noqa: E402

from edgeae.cli import main  # noqa: E402
from edgeae.train import common, crops, run_memory, run_record  # noqa: E402
from edgeae.train.crops import Augment, MasterImage, sample_crops  # noqa: E402


def _pngs(out: Path, n: int, size: int = 256) -> Path:
    return smooth_images(out, n, (size, size, 3), seed=1, prefix="f", sigma=4, low=30, span=190)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Four smooth RGB 256×256 PNGs (one to validation): big enough for the CLI's 128-px crops."""
    return _pngs(tmp_path / "imgs", 4)


def _cli(folder: Path, out: Path, *extra: str) -> list[str]:
    """A tiny ``edgeae train cae``: a seed CAE of widths 4,8, 8 crops in batches of 4, 1 epoch."""
    return [
        "train", "cae", "--data", str(folder), "--out", str(out), "--widths", "4,8", "--epochs", "1", "--crops", "8",
        "--batch-size", "4", "--val-crops", "4", "--threads", "1", "--no-progress", "--no-bf16", *extra,
    ]  # fmt: skip


def _vae_cli(folder: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train", "vae", "--data", str(folder), "--out", str(out), "--widths", "4,4,4,4", "--latent", "8", "--epochs",
        "1", "--crops", "16", "--batch-size", "16", "--val-crops", "16", "--threads", "1", "--no-progress",
        "--no-bf16", *extra,
    ]  # fmt: skip


# 1. the memory estimate: images (from their headers) and the model, before anything is read or written


def test_the_images_are_counted_from_their_headers(folder: Path) -> None:
    files = sorted(folder.glob("*.png"))
    need = run_memory.image_bytes(run_memory.read_headers(files), 3)
    per_image = 256 * 256 * (4 * 3 + 1)  # float32 RGB pixels and a bool mask
    assert need.count == 4 and need.nbytes == 4 * per_image + 256 * 256 * 3 * 6  # + the largest one's decode


def test_a_run_whose_images_do_not_fit_is_refused_before_config_json(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """2,000 JPEGs of 256 px peaked at 1.9 GB: every image is kept as float32, and only the crops were counted,
    so a run too big died with a numpy _ArrayMemoryError traceback after reading for 25 s."""
    from edgeae.ground import limits

    big = _pngs(tmp_path / "big", 4, size=768)
    crop_arrays = 8 * 3 * 128 * 128 * 4 + 4 * 3 * (3 * 128 * 128 * 4)  # what the old check counted
    monkeypatch.setattr(limits, "available_memory", lambda: crop_arrays + 100_000)
    out = tmp_path / "r"
    assert main(_cli(big, out)) == 2
    err = capsys.readouterr().err
    assert "this run needs about" in err and "images 4 files, decoded as float32 (0.0" in err, err
    assert "model " in err and "parameters, with gradients, Adam state" in err
    assert "train on fewer or smaller images" in err and "Traceback" not in err
    assert not out.exists()  # nothing written, the folder made for it removed


def test_a_model_too_big_for_memory_is_refused_naming_its_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    """`--widths 4096,8192,16384` grew to 22 GB and was OOM-killed after config.json; `train vae --latent
    100000000` failed allocating 204,800,000,000 bytes with a traceback. The model is sized on torch's meta
    device: nothing is allocated."""
    from edgeae.ground import limits
    from edgeae.models.cae import CAEConfig, build
    from edgeae.models.vae import VAE, VAEConfig

    vae = run_memory.model_bytes(lambda: VAE(VAEConfig(3, (16, 32, 64, 32), 100_000_000, 64)), (3, 64, 64), 64)
    assert vae.count > 10**10 and vae.nbytes > 16 * 10**10
    cae = run_memory.model_bytes(lambda: build(CAEConfig(3, (4096, 8192, 16384), 128, "seed")), (3, 128, 128), 32)
    assert cae.count > 5 * 10**9
    monkeypatch.setattr(limits, "available_memory", lambda: 4 * 2**30)
    with pytest.raises(common.MemoryEstimateError, match=r"a smaller model \(--widths, --latent\)"):
        run_memory.check_run_memory({"crops": (64, 49152)}, (64, 64), model=vae, model_flags="--widths, --latent")
    small = run_memory.model_bytes(lambda: build(CAEConfig(3, (4, 8), 128, "seed")), (3, 128, 128), 4)
    run_memory.check_run_memory({"crops": (8, 196608)}, (8, 4), model=small)  # fits: no refusal


def test_a_cae_model_too_big_is_refused_before_it_is_built(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgeae.ground import limits
    from edgeae.models.cae import CAEConfig, build

    model = run_memory.model_bytes(lambda: build(CAEConfig(3, (64, 64), 128, "seed")), (3, 128, 128), 4)
    others = (
        8 * 196608
        + 4 * 3 * 196608
        + run_memory.image_bytes(run_memory.read_headers(sorted(folder.glob("*.png"))), 3).nbytes
    )
    monkeypatch.setattr(limits, "available_memory", lambda: others + model.nbytes // 2)
    assert main([*_cli(folder, tmp_path / "r"), "--widths", "64,64"]) == 2
    err = capsys.readouterr().err
    assert "a smaller model (--widths) or a smaller --batch-size" in err, err
    assert not (tmp_path / "r").exists()


# 2. SIGTERM from the start


def test_sigterm_while_the_data_is_read_stops_with_143_and_one_line(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A SIGTERM before the training loop killed the run silently (exit 143 from the kernel, no message, a stale
    .edgeae.lock and a config.json), because the handler came only with the loop's Deadline."""
    got: list[int] = []
    old = signal.signal(signal.SIGTERM, lambda signum, frame: got.append(signum))  # without the fix: recorded
    real = crops.load_masters

    def load_and_term(files: Any, channels: int) -> Any:
        os.kill(os.getpid(), signal.SIGTERM)
        return real(files, channels)

    monkeypatch.setattr(crops, "load_masters", load_and_term)
    out = tmp_path / "r"
    try:
        code = main(_cli(folder, out))
    finally:
        signal.signal(signal.SIGTERM, old)
    cap = capsys.readouterr()
    out_text, err = cap.out, cap.err
    assert code == 143 and not got, err
    # on stdout, like the in-loop stop line (audit a5: it was on stderr)
    assert "edgeae train cae: stopped by SIGTERM outside the training loop; nothing was saved" in out_text
    assert "Traceback" not in err and "stopped by SIGTERM" not in err
    assert not out.exists()  # no config.json, no lock: the refused new run's folder removed
    assert signal.getsignal(signal.SIGTERM) is old


# 3. a trained model in --out is not overwritten


@pytest.mark.parametrize("left", ["best.pt", "metrics.json"])
def test_a_new_run_does_not_overwrite_a_trained_model(
    folder: Path, tmp_path: Path, left: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`rm runs/ow/last.pt` and a new run into runs/ow replaced best.pt, metrics.json and the loss curve."""
    out = tmp_path / "ow"
    out.mkdir()
    (out / left).write_text("the earlier run's")
    for argv in (_cli(folder, out), _vae_cli(folder, out)):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"{out} already holds the trained model of an earlier run ({left}; no last.pt to resume)" in err
        assert "choose another --out" in err
    assert sorted(p.name for p in out.iterdir()) == [left] and (out / left).read_text() == "the earlier run's"


# 4 and 5. each segment records its settings and command; metrics.json the command (the zoo entry shows it)


def test_segments_record_device_threads_precision_command_and_end(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgeae.checkpoint import load_checkpoint
    from edgeae.zoo import user_entry

    run = tmp_path / "r"
    argv = _cli(folder, run, "--time-budget", "0.000001")
    assert main(argv) == 75
    assert main(["train", "cae", "--resume", str(run), "--time-budget", "none"]) == 0
    capsys.readouterr()
    metrics = json.loads((run / "metrics.json").read_text())
    first, second = metrics["segments"]
    assert first["command"] == "edgeae " + " ".join(argv)
    assert second["command"] == f"edgeae train cae --resume {run} --time-budget none"
    for seg in (first, second):
        assert seg["device"] == "cpu" and seg["threads"] == 1 and seg["precision"] == "fp32"
        assert "ended" in seg
    assert first["end"] == "budget" and first["stop"].startswith("time budget")
    assert second["end"] == "epochs_done" and second["stop"] is None
    assert metrics["command"] == first["command"]
    best = run / "best.pt"
    entry = user_entry(load_checkpoint(best).metadata, 1, metrics, best)
    # was "not recorded; the run's settings: .../config.json"; until session 38 the first command alone
    assert entry["command"] == f"{first['command']}; then: {second['command']}"


def test_the_recorded_command_quotes_what_needs_it() -> None:
    assert run_record.command_line(["train", "cae", "--out", "my runs/a"]) == "edgeae train cae --out 'my runs/a'"
    assert run_record.first_command([{"start_epoch": 1}]) is None  # a run started before it was recorded


# 6. messages


def test_every_unreadable_image_is_named_not_only_the_first(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("bad1.png", "bad2.png", "bad3.png"):
        (folder / name).write_bytes(b"not an image at all")
    assert main(_cli(folder, tmp_path / "r")) == 2
    err = capsys.readouterr().err
    assert "3 of 7 image files cannot be read" in err, err
    assert all(name in err for name in ("bad1.png", "bad2.png", "bad3.png"))
    assert not (tmp_path / "r").exists()


def test_load_masters_names_every_file_it_cannot_read(folder: Path) -> None:
    from edgeae._headers import ImageReadError

    files = sorted(folder.glob("*.png"))
    for f in files[1:3]:
        f.write_bytes(f.read_bytes()[:200])  # truncated
    with pytest.raises(ImageReadError) as exc:
        crops.load_masters(files, 3)
    assert str(exc.value).startswith("2 of 4 image files cannot be read") and "f1.png" in str(exc.value)
    assert "f2.png" in str(exc.value)


def test_small_validation_images_are_named_as_such_with_both_limits() -> None:
    small = MasterImage(np.zeros((100, 100, 1), np.float32), np.ones((100, 100), bool), Path("a0.png"))
    with pytest.raises(ValueError) as exc:
        sample_crops([small], 1, 128, np.random.default_rng(0), Augment.none(), role="validation")
    text = str(exc.value)
    assert text.startswith("1 of 1 validation images are too small for 128-pixel crops"), text
    assert "not augmented: each side needs at least 131 px" in text and "training images need 211 px" in text
    assert "a0.png (100x100)" in text and "every fifth" in text


def test_a_mostly_dark_validation_image_says_its_valid_fraction() -> None:
    valid = np.zeros((300, 300), bool)
    valid[:40, :40] = True  # 1.8% valid: no 128-px crop fits in it
    dark = MasterImage(np.zeros((300, 300, 1), np.float32), valid, Path("/data/a0.png"))
    with pytest.raises(ValueError) as exc:
        sample_crops([dark], 1, 128, np.random.default_rng(0), Augment.none(), role="validation")
    text = str(exc.value)
    assert "could not find a 128-pixel validation crop free of no-data in 50 tries" in text, text
    assert "/data/a0.png (1.8% valid)" in text and "remove or replace them" in text


def test_a_folder_mixing_a_cae_config_and_a_vae_state_is_named(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A CAE config.json beside a VAE last.pt said "use edgeae train vae --resume", which refused as well."""
    import torch

    cae, vae = tmp_path / "cae", tmp_path / "vae"
    assert main(_cli(folder, cae, "--time-budget", "0.000001")) == 75
    assert main(_vae_cli(folder, vae, "--time-budget", "0.000001", "--epochs", "2")) == 75
    (cae / "last.pt").write_bytes((vae / "last.pt").read_bytes())
    assert torch.load(cae / "last.pt", weights_only=False)["kind"] == "vae"
    capsys.readouterr()
    for kind in ("cae", "vae"):
        assert main(["train", kind, "--resume", str(cae)]) == 2
        err = capsys.readouterr().err
        assert f"{cae} mixes two runs: its config.json is of a CAE run, its last.pt of a VAE run" in err, err


# 7. one "continue with", one "best epoch", and the time left


def test_a_stop_says_continue_with_once(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    for argv in (_cli(folder, tmp_path / "c", "--time-budget", "0.000001"),
                 _vae_cli(folder, tmp_path / "v", "--time-budget", "0.000001", "--epochs", "2")):  # fmt: skip
        caplog.clear()
        with caplog.at_level(logging.INFO):
            assert main(argv) == 75
        printed = capsys.readouterr()
        said = printed.out + printed.err + "\n".join(r.getMessage() for r in caplog.records if r.levelno >= 20)
        assert said.count("continue with") == 1, said
        assert "state saved to" in printed.out and "continue with: edgeae train" in printed.out


def test_the_vae_says_best_epoch_once_and_each_epoch_the_time_left(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    argv = [*_vae_cli(folder, tmp_path / "v"), "--epochs", "2"]
    with caplog.at_level(logging.INFO):
        assert main(argv) == 0
    printed = capsys.readouterr()
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    said = printed.out + printed.err + "\n".join(logged)
    assert said.count("best epoch") == 1, said
    epoch_lines = [m for m in logged if m.startswith("epoch ")]
    assert len(epoch_lines) == 2 and "left" in epoch_lines[0] and "left" not in epoch_lines[1], epoch_lines


def test_time_left_is_epochs_left_times_the_mean_epoch() -> None:
    assert run_record.time_left(3, [10.0, 30.0]) == "  about 1m00s left"
    assert run_record.time_left(0, [10.0]) == "" and run_record.time_left(2, []) == ""
    assert run_record.duration(3 * 3600 + 5 * 60 + 9) == "3h05m" and run_record.duration(45.4) == "45s"


def test_a_model_too_big_for_the_gpu_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    need = run_memory.Need(10**9, 16 * 10**9, "parameters, with gradients, Adam state and a batch's activations")
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (8 * 2**30, 80 * 2**30))
    with pytest.raises(common.MemoryEstimateError, match=r"about 14\.9 GiB on cuda:0 .* but 8\.0 GiB is free there"):
        run_memory.check_device_memory(torch.device("cuda:0"), need)
    run_memory.check_device_memory(torch.device("cpu"), need)  # the host check counts it there


# follow-up: the trainers pass their files to last.pt, so a refused resume names the ones that changed


def test_a_resume_on_changed_data_names_the_file_through_both_trainers(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The trainers did not pass ``files=``: the refusal said "its last.pt records no file list"."""
    runs = {"cae": tmp_path / "c", "vae": tmp_path / "v"}
    assert main(_cli(folder, runs["cae"], "--time-budget", "0.000001")) == 75
    assert main(_vae_cli(folder, runs["vae"], "--time-budget", "0.000001", "--epochs", "2")) == 75
    img = cv2.imread(str(folder / "f1.png"))
    cv2.imwrite(str(folder / "f1.png"), img[::-1])  # same size and name, other contents
    capsys.readouterr()
    for kind, run in runs.items():
        assert main(["train", kind, "--resume", str(run)]) == 2
        err = capsys.readouterr().err
        assert "the training data changed" in err and "now: 1 changed (f1.png)); start a new run" in err, err


# review r7: last.pt before best.pt, one read of the data per run, a changed-data refusal before any image is decoded


class _Killed(BaseException):
    """What a kill -9 between two writes looks like to the test: the trainer stops there, writing nothing more."""


@pytest.mark.parametrize("kind", ["cae", "vae"])
def test_a_failed_first_last_pt_leaves_a_folder_the_command_trains_into_again(
    folder: Path, tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """best.pt / best_state.pt were written before the first last.pt: when that write failed (a full disk), --resume
    said to run the command again, and that command was refused for the best.pt left there."""
    import errno

    from edgeae.atomic import WriteFailed
    from edgeae.train import resume

    def full_disk(folder: Any, *args: Any, **kwargs: Any) -> Path:
        raise WriteFailed(errno.ENOSPC, f"cannot write {folder}/last.pt: no space left on device")

    out = tmp_path / "run"
    argv = {"cae": _cli, "vae": _vae_cli}[kind](folder, out)
    monkeypatch.setattr(resume, "save_state", full_disk)
    assert main(argv) == 2
    assert "no space left on device" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["config.json"]  # no model without its last.pt
    monkeypatch.undo()
    assert main(["train", kind, "--resume", str(out)]) == 2
    assert "started it again (without --resume)" in capsys.readouterr().err
    assert main(argv) == 0, capsys.readouterr().err  # as the resume refusal says
    assert json.loads((out / "metrics.json").read_text())["complete"] is True


@pytest.mark.parametrize("kind", ["cae", "vae"])
def test_a_kill_between_last_pt_and_the_best_model_resumes_to_the_same_best_model(
    folder: Path, tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """last.pt now comes first at an epoch's end: a kill before the best model is written leaves a last.pt that
    says which epoch was best; the resume writes that model (the weights last.pt holds) before going on."""
    import torch

    import edgeae.checkpoint
    from edgeae.train import vae

    argv = {"cae": _cli, "vae": _vae_cli}[kind]
    full, part = tmp_path / "full", tmp_path / "part"
    assert main(argv(folder, full)) == 0

    def killed(*args: Any, **kwargs: Any) -> None:
        raise _Killed

    if kind == "cae":
        monkeypatch.setattr(edgeae.checkpoint, "save_checkpoint", killed)
    else:
        monkeypatch.setattr(vae, "_save_best_weights", killed)
    with pytest.raises(_Killed):
        main(argv(folder, part))
    monkeypatch.undo()
    assert (part / "last.pt").is_file() and not (part / "best.pt").exists() and not (part / "best_state.pt").exists()
    assert torch.load(part / "last.pt", weights_only=True)["state"]["best_epoch"] == 1
    assert main(["train", kind, "--resume", str(part)]) == 0, capsys.readouterr().err
    a, b = (torch.load(f / "best.pt", weights_only=True) for f in (full, part))
    assert a["state_dict"].keys() == b["state_dict"].keys()
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    ma, mb = (json.loads((f / "metrics.json").read_text()) for f in (full, part))
    assert mb["best_epoch"] == ma["best_epoch"] == 1 and mb["val_loss"] == ma["val_loss"]


def test_a_run_reads_each_data_file_once(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """save_state hashed every data file at each save (an lru_cache of 4,096 entries in front; the first save
    re-hashed what manifest_hash had just read, and the model's training-data hash read the train files again)."""
    import collections

    import torch

    from edgeae import metadata

    real, reads = metadata.sha256_file, collections.Counter[str]()

    def counted(path: Any, *args: Any, **kwargs: Any) -> str:
        reads[Path(path).name] += 1
        return real(path, *args, **kwargs)

    monkeypatch.setattr(metadata, "sha256_file", counted)
    for argv in (_cli(folder, tmp_path / "c", "--epochs", "2"), _vae_cli(folder, tmp_path / "v", "--epochs", "2")):
        reads.clear()
        assert main(argv) == 0, capsys.readouterr().err
        assert {k: v for k, v in reads.items() if k.startswith("f")} == {f"f{i}.png": 1 for i in range(4)}, reads
    files = sorted(folder.glob("*.png"))
    blob = torch.load(tmp_path / "c" / "last.pt", weights_only=True)
    assert blob["data_hash"] == metadata.manifest_hash(files)  # the same hash as before: old last.pt files resume
    assert [r[0] for r in blob["files"]] == ["f1.png", "f2.png", "f3.png", "f0.png"]  # train files, then val
    train = [f for f in files if f.name != "f0.png"]
    assert torch.load(tmp_path / "c" / "best.pt", weights_only=True)["edgeae"].count(metadata.manifest_hash(train))


def test_a_resume_on_changed_data_is_refused_before_any_image_is_decoded(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The refusal came after every image was loaded and the validation crops drawn (load_state)."""
    runs = {"cae": tmp_path / "c", "vae": tmp_path / "v"}
    assert main(_cli(folder, runs["cae"], "--time-budget", "0.000001")) == 75
    assert main(_vae_cli(folder, runs["vae"], "--time-budget", "0.000001", "--epochs", "2")) == 75
    img = cv2.imread(str(folder / "f2.png"))
    cv2.imwrite(str(folder / "f2.png"), img[::-1])

    def decoded(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("an image was decoded before the data check")

    monkeypatch.setattr(crops, "load_masters", decoded)
    capsys.readouterr()
    for kind, run in runs.items():
        assert main(["train", kind, "--resume", str(run)]) == 2
        err = capsys.readouterr().err
        assert "the training data changed" in err and "1 changed (f2.png)" in err, err


# review r11: a complete VAE run's last.pt holds its last epoch's weights; the epoch-end repair only when needed


def _weights_equal(a: dict[str, Any], b: dict[str, Any], skip: tuple[str, ...] = ()) -> bool:
    import torch

    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a if k not in skip)


def test_a_complete_vae_run_resumed_to_more_epochs_ends_as_an_uninterrupted_one(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """A finished run loaded best_state.pt into its model before its complete last.pt: --epochs 4 after 2 went on
    from epoch 1's weights with epoch 2's Adam state (val 5763, 11001, 6092, 4174 against 5763, 11001, 3264, 1813)."""
    import torch

    from edgeae.checkpoint import load_checkpoint
    from edgeae.train.vae_calibrate import calibrate_folder

    full, part = tmp_path / "full", tmp_path / "part"
    assert main(_vae_cli(folder, full, "--epochs", "4", "--crops", "32", "--lr", "0.2")) == 0
    assert main(_vae_cli(folder, part, "--epochs", "2", "--crops", "32", "--lr", "0.2")) == 0
    last = torch.load(part / "last.pt", weights_only=True)
    best_state = torch.load(part / "best_state.pt", weights_only=True)
    assert last["state"]["complete"] and last["state"]["best_epoch"] == 1  # the last epoch was not the best
    assert not _weights_equal(
        last["model"], best_state, skip=("score_lambda",)
    )  # the last epoch's weights, not the best's
    assert _weights_equal(load_checkpoint(part / "best.pt").model.state_dict(), best_state, skip=("score_lambda",))
    old = tmp_path / "old"  # the same run as an edgeae before the fix left it: last.pt holds the best epoch's weights
    shutil.copytree(part, old)
    blob = torch.load(old / "last.pt", weights_only=True)
    torch.save({**blob, "model": torch.load(old / "best.pt", weights_only=True)["state_dict"]}, old / "last.pt")
    with caplog.at_level(logging.WARNING):
        assert main(["train", "vae", "--resume", str(part), "--epochs", "4"]) == 0, capsys.readouterr().err
    assert "best epoch" not in caplog.text, caplog.text  # its own complete last.pt: no warning

    a, b = (torch.load(f / "last.pt", weights_only=True) for f in (full, part))
    assert [h["val_loss"] for h in a["state"]["history"]] == [h["val_loss"] for h in b["state"]["history"]]
    assert _weights_equal(a["model"], b["model"])
    ca, cb = (load_checkpoint(f / "best.pt") for f in (full, part))
    assert _weights_equal(ca.model.state_dict(), cb.model.state_dict())
    ma, mb = (json.loads((f / "metrics.json").read_text()) for f in (full, part))
    assert ma["best_epoch"] == mb["best_epoch"] == 4 and ma["calibration"] == mb["calibration"]
    # the plain run: best.pt holds best_state.pt's weights, calibrated on them as before
    best_full = torch.load(full / "best_state.pt", weights_only=True)
    assert _weights_equal(ca.model.state_dict(), best_full, skip=("score_lambda",))  # λ: set by the calibration
    again = calibrate_folder(ca.model, ca.metadata, [folder / "f0.png"], 64, 0.99)
    assert again["lambda"] == ma["calibration"]["lambda"] and again["threshold"] == ma["calibration"]["threshold"]

    caplog.clear()  # the copy before the fix: its resume warns (called directly: a fourth run made the test slow)
    from types import SimpleNamespace

    from edgeae.train.vae_steps import _warn_best_weights

    restored = load_checkpoint(old / "best.pt").model  # what its last.pt restores: the best epoch's weights
    with caplog.at_level(logging.WARNING):
        _warn_best_weights(torch, restored, SimpleNamespace(epochs_done=2, best_epoch=1), old / "best_state.pt", old)
    assert "holds the weights of its best epoch 1, not of its last epoch 2" in caplog.text, caplog.text


@pytest.mark.parametrize("kind", ["cae", "vae"])
def test_a_resume_at_a_best_epoch_end_rewrites_the_best_model_only_when_it_is_missing(
    folder: Path, tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each resume whose last finished epoch was the best rewrote an identical best.pt / best_state.pt (a full disk
    failed it); the resume also read last.pt three times (check_resume, check_state, load_state)."""
    import edgeae.checkpoint
    from edgeae.train import resume, vae

    out = tmp_path / "run"
    argv = {"cae": _cli, "vae": _vae_cli}[kind](folder, out, "--epochs", "2", "--crops", "4" if kind == "cae" else "16")
    assert main([*argv, "--time-budget", "0.000001"]) == 75  # one batch an epoch: stopped at epoch 1's end
    best = out / {"cae": "best.pt", "vae": "best_state.pt"}[kind]
    before = best.read_bytes()
    writes: list[str] = []
    real_ckpt, real_best, real_read = edgeae.checkpoint.save_checkpoint, vae._save_best_weights, resume._read_state

    def checkpoint(path: Any, model: Any, metadata: Any, metrics: Any = None, *args: Any) -> Path:
        writes.append("final best.pt" if "complete" in (metrics or {}) else "best.pt")
        return real_ckpt(path, model, metadata, metrics, *args)

    def best_weights(*args: Any) -> None:
        writes.append("best_state.pt")
        real_best(*args)

    reads: list[str] = []

    def read_state(folder: Any) -> dict[str, Any]:
        reads.append("last.pt")
        return real_read(folder)

    monkeypatch.setattr(edgeae.checkpoint, "save_checkpoint", checkpoint)
    monkeypatch.setattr(vae, "_save_best_weights", best_weights)
    monkeypatch.setattr(resume, "_read_state", read_state)
    assert main(["train", kind, "--resume", str(out), "--epochs", "1"]) == 0, capsys.readouterr().err  # final files
    assert writes == ["final best.pt"], writes  # the best model was there: not written again
    assert len(reads) == 1, reads  # check_resume; check_state and load_state use what it read
    if kind == "vae":
        assert best.read_bytes() == before

    out2 = tmp_path / "run2"  # missing: rewritten, as before
    argv2 = [a if a != str(out) else str(out2) for a in argv]
    monkeypatch.undo()
    assert main([*argv2, "--time-budget", "0.000001"]) == 75
    best2 = out2 / best.name
    best2.unlink()
    monkeypatch.setattr(edgeae.checkpoint, "save_checkpoint", checkpoint)
    monkeypatch.setattr(vae, "_save_best_weights", best_weights)
    writes.clear()
    assert main(["train", kind, "--resume", str(out2), "--epochs", "1"]) == 0, capsys.readouterr().err
    assert writes == {"cae": ["best.pt", "final best.pt"], "vae": ["best_state.pt", "final best.pt"]}[kind], writes

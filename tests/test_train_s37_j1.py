"""Session 37, j1 (audit a3 findings 2, 4, 5, 7, 8): a folder that mixes grey and colour images needs --channels
(the first file sorted used to decide, silently); the channels a run trains on are said and recorded."""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

from _helpers_train import cae_config, smooth_image  # noqa: E402

from edgeae.cli import main  # noqa: E402
from edgeae.train.cae import CAETrainConfig, train_cae  # noqa: E402
from edgeae.train.channels import folder_channels  # noqa: E402


def _images(folder: Path, colour: int = 3, grey: int = 0, side: int = 96, prefix: str = "im") -> Path:
    """``colour`` RGB then ``grey`` grey PNGs (names sorting grey first: ``0_grey*`` before ``im*``)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(colour + grey):
        img = smooth_image(rng, (side, side, 3))
        if i < colour:
            cv2.imwrite(str(folder / f"{prefix}{i}.png"), img)
        else:
            cv2.imwrite(str(folder / f"0_grey{i}.png"), img[..., 1])
    return folder


_cae = functools.partial(cae_config, epochs=1)  # one epoch unless a test asks for more


# 2. mixed grey/colour folders


def test_folder_channels_rules() -> None:
    files = [Path(f"d/{n}") for n in ("a.png", "b.png", "c.png", "d.png")]
    colour, grey = (10, 10, 3), (10, 10, 1)
    assert folder_channels("d", files, [colour] * 4, None) == (
        3,
        "channels: 3 (every one of the 4 images is colour; --channels 1 for a grey model)",
    )
    assert folder_channels("d", files, [grey] * 4, None)[0] == 1
    assert folder_channels("d", files, [(10, 10, 4)] * 4, None)[0] == 3  # RGBA trains as RGB
    mixed = [grey, colour, colour, colour]
    with pytest.raises(ValueError) as e:
        folder_channels("d", files, mixed, None)
    assert str(e.value) == (
        "d mixes 3 colour and 1 grey images (colour: b.png, c.png, d.png; grey: a.png) and a model has one channel "
        "count: pass --channels 3 (the grey ones replicated to 3 channels) or --channels 1 (the colour ones converted "
        "to grey), or train on one kind"
    )
    assert folder_channels("d", files, mixed, 3) == (
        3,
        "channels: 3 (--channels): 1 of 4 images is grey, their grey replicated to 3 channels",
    )
    assert (
        folder_channels("d", files, mixed, 1)[1]
        == "channels: 1 (--channels): 3 of 4 images are colour, converted to grey"
    )
    # a run started when the first file decided keeps going with the model it has
    assert folder_channels("d", files, mixed, None, resume=True) == (
        1,
        "channels: 1 (from the first image, a.png, as when this run started; the folder mixes grey and colour "
        "images: 3 of 4 images are colour, converted to grey)",
    )


@pytest.mark.parametrize("kind", ["cae", "vae"])
def test_a_mixed_folder_without_channels_is_refused_in_one_line(
    tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _images(tmp_path / "data", colour=4, grey=2)  # the grey ones sort first: they used to decide
    out = tmp_path / "run"
    assert main(["train", kind, "--data", str(data), "--out", str(out), "--epochs", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"{data} mixes 4 colour and 2 grey images (colour: im0.png, im1.png, im2.png and 1 more; grey: " in err
    assert "pass --channels 3" in err
    assert not out.exists()


def test_the_channels_are_said_and_recorded(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = _images(tmp_path / "data", colour=4, grey=2)
    with caplog.at_level(logging.INFO, logger="edgeae.train"):
        metrics = train_cae(_cae(data, tmp_path / "run", channels=3))
    lines = [r.getMessage() for r in caplog.records]
    assert "channels: 3 (--channels): 2 of 6 images are grey, their grey replicated to 3 channels" in lines
    assert metrics["channels"] == 3
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["channels"] == 3
    # what an export records in its artifacts (audit a3 #3): the settings that shape what it learned
    hyper = saved["hyper_parameters"]
    assert hyper["lr"] == 1e-3 and hyper["epochs"] == 1 and hyper["widths"] == [4, 8] and hyper["channels"] == 3
    assert not {"out", "threads", "device", "progress", "time_budget"} & set(hyper)


# 4. a folder of .npy frames (which firmware-sim flies) was "found 0" without naming them


def test_a_folder_of_npy_frames_names_them_and_what_is_read(tmp_path: Path) -> None:
    from edgeae.train.cae_config import split_data

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(6):
        np.save(folder / f"a{i}.npy", np.zeros((8, 8), np.float32))
    (folder / "notes.txt").write_text("x")
    (folder / ".hidden").write_text("x")
    with pytest.raises(ValueError) as e:
        split_data(CAETrainConfig(data=str(folder), out=str(tmp_path / "o")))
    assert str(e.value) == (
        f"{folder}: need at least 2 images to split train/val by file, found 0; 7 file(s) not used for training (6 "
        ".npy: a0.npy, a1.npy, a2.npy ...; 1 .txt: notes.txt): a folder's training images are .png .jpg .jpeg .tif "
        ".tiff .pgm .ppm; .npy frames (which firmware-sim flies) are not read for training: write them as 16-bit PNG "
        "or TIFF with edgeae.write_image"
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"found 0; its training images are \.png .* \.ppm$"):
        split_data(CAETrainConfig(data=str(empty), out=str(tmp_path / "o")))


def test_npy_frames_beside_images_are_named_in_the_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from edgeae.train.cae_config import split_data

    folder = _images(tmp_path / "mixnpy", colour=3)
    np.save(folder / "f.npy", np.zeros((8, 8), np.float32))
    with caplog.at_level(logging.WARNING, logger="edgeae.train.cae_config"):
        train, val = split_data(CAETrainConfig(data=str(folder), out=str(tmp_path / "o")))
    assert len(train) + len(val) == 3
    assert "1 image(s) not used for training (f.npy): " in caplog.text and "write them as 16-bit PNG" in caplog.text


# 5. too-small training and validation images refused together, with what removing files does to the split


def test_small_training_and_validation_images_are_named_in_one_error(tmp_path: Path) -> None:
    data = _images(tmp_path / "data", colour=9, side=260)
    small = np.full((100, 120, 3), 128, np.uint8)
    cv2.imwrite(str(data / "0000_small.png"), small)  # sorted first: a validation file (every fifth, from the first)
    cv2.imwrite(str(data / "0001_small.png"), small)  # a training file
    with pytest.raises(ValueError) as e:
        train_cae(_cae(data, tmp_path / "run", tile=128, widths=(4, 8, 8, 8)))
    assert str(e.value) == (
        "images too small for 128-pixel crops: 1 of 8 training images need at least 211 px a side with this "
        "augmentation: 0001_small.png (120x100); 1 of 3 validation images need at least 131 px a side (validation "
        "crops are not augmented): 0000_small.png (120x100); remove or replace them (a folder's validation files are "
        "every fifth of its sorted files: removing or adding a file moves the files sorted after it between training "
        "and validation; replacing one with a larger image of the same name keeps the split)"
    )
    assert not (tmp_path / "run" / "config.json").exists()


def test_check_sizes_of_a_named_split_says_nothing_of_folders() -> None:
    from edgeae.train.crops import Augment, check_sizes

    check_sizes([Path("a.png")], [Path("b.png")], [(300, 300, 1), (131, 131, 1)], 128, Augment(), folder=False)
    with pytest.raises(ValueError) as e:
        check_sizes([Path("a.png")], [Path("b.png")], [(210, 300, 1), (131, 131, 1)], 128, Augment(), folder=False)
    assert str(e.value).endswith("a.png (300x210); remove or replace them")


# 7. a collapsed U-Net recorded in loss.csv, metrics.json and the final summary, not only in a log line


def test_a_collapsed_unet_is_recorded_and_summarised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import edgeae.train.cae as cae_module
    from edgeae.cli.train_cae import _report

    fractions = iter([0.41, 0.0043])  # alive in epoch 1, collapsed in epoch 2 (as the audit's unet2h at lr 1e-3)
    monkeypatch.setattr(cae_module, "_active_fraction", lambda *a: next(fractions))
    data = _images(tmp_path / "data", colour=3)
    metrics = train_cae(_cae(data, tmp_path / "run", variant="unet2", epochs=2))
    assert metrics["active_fraction"] == [0.41, 0.0043] and metrics["collapsed_epochs"] == [2]
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["collapsed_epochs"] == [2]
    header, *rows = (tmp_path / "run" / "loss.csv").read_text().splitlines()
    assert "active_fraction" in header.split(",") and rows[1].split(",")[header.split(",").index("active_fraction")]
    capsys.readouterr()
    _report(metrics, tmp_path / "run", None)
    out = capsys.readouterr().out
    best = metrics["best_epoch"]
    assert (
        "warning: the U-Net collapsed to its fixed pre-fill (fewer than 1% of its last features active) in 1 epoch(s): "
        f"2; the best epoch, {best}, {'is one of them' if best == 2 else 'is not'}: retrain with a lower --lr"
    ) in out


def test_collapse_record_of_histories_old_and_new() -> None:
    from edgeae.train.cae_steps import collapse_record, collapse_summary

    assert collapse_record([{"epoch": 1, "val_loss": 0.1}]) == {}  # a seed CAE: no residual head
    old_then_new = [{"epoch": 1}, {"epoch": 2, "active_fraction": 0.002}, {"epoch": 3, "active_fraction": 0.3}]
    record = collapse_record(old_then_new)  # epoch 1 from a last.pt of before session 37
    assert record == {"active_fraction": [None, 0.002, 0.3], "collapsed_epochs": [2]}
    assert collapse_summary({"best_epoch": 3, **record}).endswith(
        "2; the best epoch, 3, is not: retrain with a lower --lr"
    )
    assert collapse_summary({"best_epoch": 3, "collapsed_epochs": []}) is None


def test_loss_csv_takes_a_column_added_since(tmp_path: Path) -> None:
    from edgeae.train.common import write_history

    old = {"epoch": 1, "train_loss": 0.2, "val_loss": 0.3, "seconds": 1.0}  # a row from a last.pt of before
    write_history(
        [old, {"epoch": 2, "train_loss": 0.1, "val_loss": 0.2, "active_fraction": 0.5, "seconds": 1.0}], tmp_path
    )
    assert (tmp_path / "loss.csv").read_text().splitlines() == [
        "epoch,train_loss,val_loss,seconds,active_fraction",
        "1,0.2,0.3,1.0,",
        "2,0.1,0.2,1.0,0.5",
    ]


# 8. the resume counters: a run killed while writing its final files said "resumed RUN at epoch 4/3"


def test_a_run_killed_in_its_final_writes_resumes_saying_all_epochs_are_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import edgeae.train.cae as cae_module

    data = _images(tmp_path / "data", colour=3)
    real = cae_module.level_metrics

    def killed(*a: Any, **k: Any) -> Any:
        raise KeyboardInterrupt  # a kill after the last epoch's last.pt, before metrics.json and the final best.pt

    monkeypatch.setattr(cae_module, "level_metrics", killed)
    with pytest.raises(KeyboardInterrupt):
        train_cae(_cae(data, tmp_path / "run", epochs=2))
    monkeypatch.setattr(cae_module, "level_metrics", real)
    with caplog.at_level(logging.INFO, logger="edgeae.train"):
        metrics = train_cae(_cae(data, tmp_path / "run", epochs=2), resume=True)
    lines = [r.getMessage() for r in caplog.records]
    assert f"resumed {tmp_path / 'run'}: all 2/2 epochs are done; writing its final files" in lines
    assert not any("at epoch 3/2" in line for line in lines)
    first, second = metrics["segments"]
    # end_epoch/end_batch are a position (the epoch in progress, batches of it done); epochs_completed counts
    assert (first["end_epoch"], first["end_batch"], first["epochs_completed"]) == (3, 0, 2)
    assert (second["start_epoch"], second["epochs_completed"]) == (3, 2)
    assert metrics["complete"] and metrics["epochs_run"] == 2

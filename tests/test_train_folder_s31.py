"""Session 31 audit (a scientist's own images): the VAE and the do-no-harm gate train on a folder of images, split
by file as ``edgeae train cae`` splits it; a model installed with ``--zoo-name NEWNAME`` is usable by that name."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

from _helpers_train import smooth_images  # noqa: E402
from _helpers_zoo import move_zoo, vae_run  # noqa: E402

from edgeae import zoo  # noqa: E402
from edgeae.checkpoint import load_checkpoint  # noqa: E402
from edgeae.cli import main  # noqa: E402
from edgeae.resolve import model_path  # noqa: E402


def _folder(root: Path, n: int = 5, side: int = 128, channels: int = 1) -> Path:
    """``n`` smooth textured PNGs (``f0.png`` ...): the CAE's split sends every fifth, f0, to validation."""
    return smooth_images(root / "mydata", n, (side, side, channels), seed=3, prefix="f", low=20, span=200)


@pytest.fixture
def weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The zoo's weights (and artifacts) folder, moved to a temporary one: no test writes into the real zoo."""
    w = tmp_path / "zoo-weights"
    return move_zoo(monkeypatch, w, tmp_path / "zoo-artifacts", w)  # user models in the same folder


def _vae_cli(folder: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train", "vae", "--data", str(folder), "--out", str(out), "--widths", "4,4,4,4", "--latent", "8",
        "--epochs", "1", "--crops", "32", "--batch-size", "16", "--val-crops", "16", "--threads", "1",
        "--no-progress", "--no-bf16", *extra,
    ]  # fmt: skip


# 1. the VAE and the gate on a folder


def test_vae_trains_on_a_folder_split_by_file_with_lambda_from_the_flag(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`edgeae train vae --data FOLDER` was refused (`invalid choice`). It trains on the folder split as the CAE
    splits it, records both lists, takes λ from --lambda (no labels to tune it on) and sets the threshold to the
    0.99 quantile of the val file's patch scores, as for named data; `--zoo-name` makes it usable by name."""
    from edgeae.anomaly.score import make_scorer, score_array
    from edgeae.imageio import read_image
    from edgeae.predictor import TorchPredictor

    folder = _folder(tmp_path)
    assert main(_vae_cli(folder, tmp_path / "run", "--lambda", "2.5", "--zoo-name", "my-ctx-vae")) == 0
    out = capsys.readouterr().out
    assert "λ 2.5 (not tuned, a folder has no labels: --lambda)" in out
    assert "user-installed: every MODEL argument takes my-ctx-vae" in out
    assert model_path("my-ctx-vae", "checkpoint") == weights / "my-ctx-vae.pt"
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["data"] == str(folder.resolve()) and cfg["channels"] == 1 and cfg["hirise"] is False
    assert cfg["score_lambda"] == 2.5
    ck = load_checkpoint(tmp_path / "run" / "best.pt")
    md = ck.metadata
    assert md.extra["train_files"] == ["f1.png", "f2.png", "f3.png", "f4.png"] and md.extra["val_files"] == ["f0.png"]
    assert md.extra["lambda_source"] == "--lambda" and md.score["lambda"] == 2.5
    assert float(ck.model.score_lambda) == 2.5
    img = read_image(folder / "f0.png", channels=1)
    scores = score_array(img.pixels, make_scorer(TorchPredictor(ck.model, md, "t")), 64, 64, valid=img.valid).score
    assert md.score["threshold"] == pytest.approx(float(np.quantile(scores, 0.99)), rel=1e-5)
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["calibration"]["lambda_ap"] is None and m["calibration"]["threshold_files"] == ["f0.png"]


def test_vae_on_a_folder_defaults_lambda_to_the_median_ratio(tmp_path: Path) -> None:
    """Without --lambda: λ = median(rec) / median(mu2) of the val patches, said so in metrics and metadata."""
    from edgeae.anomaly.score import make_scorer, score_array
    from edgeae.imageio import read_image
    from edgeae.predictor import TorchPredictor

    folder = _folder(tmp_path)
    assert main(_vae_cli(folder, tmp_path / "run")) == 0
    ck = load_checkpoint(tmp_path / "run" / "best.pt")
    assert ck.metadata.extra["lambda_source"].startswith("default: median(rec) / median(mu2)")
    img = read_image(folder / "f0.png", channels=1)
    r = score_array(img.pixels, make_scorer(TorchPredictor(ck.model, ck.metadata, "t")), 64, 64, valid=img.valid)
    want = float(np.median(r.extras["rec"]) / np.median(r.extras["mu2"]))
    assert ck.metadata.score["lambda"] == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--lambda", "1"), "--lambda applies to a folder of images"),  # named data: λ is tuned on labels
        (("--no-hirise",), "--no-hirise applies to a named dataset"),
        (("--msl-ground",), "--msl-ground applies to a named dataset"),
    ],
)
def test_vae_flags_of_the_other_kind_of_data_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: tuple[str, ...], message: str
) -> None:
    folder = _folder(tmp_path, n=2)
    data = "orbital_gray" if extra[0] == "--lambda" else str(folder)
    assert main(_vae_cli(Path(data), tmp_path / "run", *extra)) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_vae_data_that_is_neither_a_dataset_nor_a_folder_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_vae_cli(tmp_path / "nope", tmp_path / "run")) == 2
    err = capsys.readouterr().err
    assert "is neither a dataset (orbital_gray, orbital_gray_v2, rover_rgb, rover_rgb_v2) nor a folder" in err


def test_gate_tunes_tau_on_a_folders_val_split(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m edgeae.train.gate best.pt --data FOLDER` was refused ("a named dataset's val split"); the gate
    needs no labels, only validation images: it tunes τ on the folder's val files, split as train cae splits it."""
    from edgeae.train.gate import main as gate_main

    folder = _folder(tmp_path, side=160, channels=3)
    run = tmp_path / "cae"
    cae = [
        "train", "cae", "--data", str(folder), "--out", str(run), "--variant", "unet2", "--widths", "4,4,4,4",
        "--epochs", "1", "--crops", "8", "--batch-size", "4", "--val-crops", "4", "--threads", "1", "--no-progress",
        "--no-bf16", "--no-augment",
    ]  # fmt: skip
    assert main(cae) == 0
    gated = tmp_path / "gated.pt"
    assert gate_main([str(run / "best.pt"), "--data", str(folder), "--out", str(gated), "--taus", "0,0.016"]) == 0
    report = json.loads(Path(str(gated) + ".gate.json").read_text())
    assert report["data"] == str(folder.resolve()) and report["val_files"] == ["f0.png"]
    assert report["chosen_tau"] in (0.0, 0.016) and [r["tau"] for r in report["rows"]] == [0.0, 0.016]
    assert load_checkpoint(gated).metadata.architecture["gate_tau"] == report["chosen_tau"]
    capsys.readouterr()
    assert gate_main([str(run / "best.pt"), "--data", str(tmp_path / "nope"), "--out", str(gated)]) == 2
    assert "a named dataset (orbital_gray" in capsys.readouterr().err


# 2. --zoo-name NEWNAME


def _vae_run(run: Path) -> Path:
    """A tiny VAE run trained on a folder: the checkpoint records its data and train/val files."""
    return vae_run(run, extra={"data": "/data/mydata", "train_files": ["a.tif", "b.tif"], "val_files": ["c.tif"]})


def test_a_new_zoo_name_is_usable_by_name_and_listed_as_user_installed(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--zoo-name NEWNAME` wrote NAME.pt/.json and said so, but no command knew the name (only ZOO's entries)."""
    ckpt = _vae_run(tmp_path / "run")
    target = zoo.install("my-ctx-vae", ckpt, tmp_path / "run" / "metrics.json")
    assert "user-installed: every MODEL argument takes my-ctx-vae" in zoo.installed_message("my-ctx-vae", target)
    assert model_path("my-ctx-vae", "checkpoint") == weights / "my-ctx-vae.pt" == zoo.resolve("my-ctx-vae")
    assert model_path("zoo:my-ctx-vae") == target
    entry = next(m for m in zoo.list_models() if m["name"] == "my-ctx-vae")
    assert entry["user_installed"] and entry["available"] and entry["kind"] == "vae" and entry["channels"] == 1
    assert entry["parameters"] == sum(int(p.numel()) for p in load_checkpoint(ckpt).model.parameters())
    assert entry["training_data"] == "/data/mydata (2 train files, 1 val files)"
    assert str((tmp_path / "run" / "config.json").resolve()) in entry["command"]
    assert not any(m["user_installed"] for m in zoo.list_models() if m["name"] in zoo.ZOO)
    assert main(["zoo"]) == 0
    table = capsys.readouterr().out
    assert "my-ctx-vae +" in table and "+ user-installed" in table
    assert main(["zoo", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["my-ctx-vae"]["weights_path"] == str(target) and rows["my-ctx-vae"]["user_installed"] is True


def test_a_user_model_installed_before_entries_were_recorded_still_resolves(weights: Path, tmp_path: Path) -> None:
    ckpt = _vae_run(tmp_path / "run")
    weights.mkdir()
    (weights / "old-install.pt").write_bytes(ckpt.read_bytes())
    (weights / "old-install.json").write_text("{}")
    assert model_path("old-install", "checkpoint") == weights / "old-install.pt"
    entry = zoo.models()["old-install"]
    assert entry["kind"] == "?" and "install it again with --zoo-name" in entry["description"]

"""CAE training: config validation, crops and corruption, a short run that lowers the loss, the checkpoint
it writes, and the ``edgeae train cae`` command in-process."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

from edgeae.checkpoint import load_checkpoint  # noqa: E402
from edgeae.cli import main  # noqa: E402
from edgeae.metadata import manifest_hash  # noqa: E402
from edgeae.train.cae import CAETrainConfig, split_data, train_cae  # noqa: E402
from edgeae.train.common import EarlyStopping  # noqa: E402
from edgeae.train.corrupt import Corruption, corrupt, corrupt_at, sample_seed  # noqa: E402
from edgeae.train.crops import Augment, MasterImage, sample_crops  # noqa: E402


@pytest.fixture(scope="module")
def moon_folder(tmp_path_factory: pytest.TempPathFactory, moon: np.ndarray) -> Path:
    """Four 256×256 PNG tiles of the real moon image (file split: one val, three train)."""
    folder = tmp_path_factory.mktemp("moon")
    for i, (y, x) in enumerate([(0, 0), (0, 256), (256, 0), (256, 256)]):
        cv2.imwrite(str(folder / f"moon_{i}.png"), moon[y : y + 256, x : x + 256])
    return folder


def _tiny(folder: Path, out: Path, **kw: object) -> CAETrainConfig:
    args: dict = dict(
        data=str(folder),
        out=str(out),
        channels=1,
        crops=96,
        val_crops=32,
        epochs=2,
        batch_size=16,
        lr=3e-3,
        widths=(8, 8, 16, 16),
        seed=3,
        threads=1,
        progress=False,
    )
    args.update(kw)
    return CAETrainConfig(**args)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"mode": "half"}, "unknown training mode"),
        ({"epochs": 0}, "epochs"),
        ({"crops": -5}, "crops"),
        ({"destroy": 1.0}, "destroy"),
        ({"destroy_range": (0.9, 0.5)}, "destroy_range"),
        ({"coverage_range": (0.1, 1.5)}, "coverage_range"),
        ({"channels": 2}, "channels"),
        ({"lr": 0.0}, "lr"),
        ({"widths": (16, 0)}, "widths"),
    ],
)
def test_config_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CAETrainConfig(data="rover_rgb", out="x", **kwargs)


def test_config_round_trips_through_json() -> None:
    cfg = CAETrainConfig(data="orbital_gray", out="o", mode="fixed", destroy=0.5, widths=(8, 16, 32, 64))
    assert CAETrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert cfg.resolved_channels() == 1
    with pytest.raises(ValueError, match="channels"):
        CAETrainConfig(data="some/folder", out="o").resolved_channels()


def test_corruption_levels_and_determinism(moon: np.ndarray) -> None:
    img = (moon[:128, :128].astype(np.float32) / 255.0)[None] * 0.9 + 0.05  # no exact zeros
    fixed = Corruption(mode="fixed", destroy=0.9)
    a, level = corrupt(img, fixed, sample_seed(1, 2, 3))
    b, _ = corrupt(img, fixed, sample_seed(1, 2, 3))
    c, _ = corrupt(img, fixed, sample_seed(1, 2, 4))
    assert level == 0.9 and np.array_equal(a, b) and not np.array_equal(a, c)
    assert abs(float((a == 0).mean()) - 0.9) < 0.02
    kept = a != 0
    assert np.array_equal(a[kept], img[kept])
    levels = [corrupt(img, Corruption(mode="gt"), sample_seed(0, 0, i))[1] for i in range(50)]
    assert min(levels) >= 0.5 and max(levels) <= 0.99 and np.std(levels) > 0.1
    plain, _ = corrupt(img, Corruption(mode="plain"), sample_seed(0, 0, 0))
    assert plain is img
    rgb = np.repeat(img, 3, axis=0)
    noisy, cov = corrupt(rgb, Corruption(mode="colour-noise"), sample_seed(0, 0, 1))
    assert 0.1 <= cov <= 1.0 and noisy.min() >= 0.0 and noisy.max() <= 1.0
    d = noisy - rgb
    changed = np.abs(d).sum(axis=0) > 0
    assert 0.5 * cov < changed.mean() <= cov + 0.01
    masked, masks = corrupt_at(rgb[None].repeat(2, 0), 0.5, seed=7)
    assert masks.shape == (2, 128, 128) and np.array_equal(masked[0][:, ~masks[0]], np.zeros((3, (~masks[0]).sum())))


def _largest_kept_square(keep: np.ndarray) -> int:
    """Side of the largest all-True square in a bool mask (dynamic programming)."""
    best = np.zeros(keep.shape, dtype=np.int32)
    for y in range(keep.shape[0]):
        for x in range(keep.shape[1]):
            if keep[y, x]:
                best[y, x] = 1 if y == 0 or x == 0 else 1 + min(best[y - 1, x], best[y, x - 1], best[y - 1, x - 1])
    return int(best.max())


def test_known_blocks_keep_whole_rectangles_and_leave_older_runs_unchanged(moon: np.ndarray) -> None:
    """``known_blocks`` adds whole kept rectangles (the prioritised downlink's patches) to some training masks;
    at 0 the masks are bit-identical to a run made before the option existed, and configs without it resume."""
    img = (moon[:128, :128].astype(np.float32) / 255.0)[None] * 0.9 + 0.05  # no exact zeros
    base = Corruption(mode="gt", destroy_range=(0.9, 0.95))
    for i in range(10):
        ss = sample_seed(3, 1, i)
        a, la = corrupt(img, base, ss)
        b, lb = corrupt(img, Corruption(mode="gt", destroy_range=(0.9, 0.95), known_blocks=0.0), ss)
        assert la == lb and np.array_equal(a, b)
    always = Corruption(mode="gt", destroy_range=(0.9, 0.95), known_blocks=1.0)
    for i in range(10):
        x, level = corrupt(img, always, sample_seed(3, 1, i))
        y, _ = corrupt(img, always, sample_seed(3, 1, i))
        keep = x[0] != 0
        assert np.array_equal(x, y) and level == corrupt(img, base, sample_seed(3, 1, i))[1]
        assert _largest_kept_square(keep) >= 16 and keep.mean() < 0.5  # a block, in a sparse context
        assert np.array_equal(x[0][keep], img[0][keep])
    some = [corrupt(img, Corruption(mode="gt", known_blocks=0.25), sample_seed(0, 0, i))[0] for i in range(80)]
    with_block = sum(_largest_kept_square(s[0] != 0) >= 16 for s in some)
    assert 8 <= with_block <= 35  # ~20 of 80
    assert always.describe()["known_blocks"] == 1.0 and "known_blocks" not in base.describe()
    with pytest.raises(ValueError, match="known_blocks"):
        Corruption(known_blocks=1.5)
    with pytest.raises(ValueError, match="masking mode"):
        Corruption(mode="colour-noise", known_blocks=0.5)
    cfg = CAETrainConfig(data="orbital_gray", out="o")
    assert "known_blocks" not in cfg.to_dict()  # a run started before the option compares equal on resume
    kb = CAETrainConfig(data="orbital_gray", out="o", known_blocks=0.25)
    assert CAETrainConfig.from_dict(json.loads(json.dumps(kb.to_dict()))) == kb
    assert kb.corruption.known_blocks == 0.25


def test_crops_are_deterministic_and_skip_no_data(moon: np.ndarray) -> None:
    pix = (moon.astype(np.float32) / 255.0)[:, :, None]
    valid = np.zeros(moon.shape, dtype=bool)
    valid[:, :300] = True  # the right part is "no-data": painted black
    pix = np.where(valid[:, :, None], np.maximum(pix, 0.1), 0.0).astype(np.float32)
    master = MasterImage(pixels=pix, valid=valid, path=Path("moon"))
    a = sample_crops([master], 12, 128, np.random.default_rng(5))
    b = sample_crops([master], 12, 128, np.random.default_rng(5))
    assert a.shape == (12, 1, 128, 128) and a.dtype == np.float32
    assert np.array_equal(a, b)
    assert a.min() >= 0.1 - 1e-6  # no crop reached into the black no-data part
    plain = sample_crops([master], 4, 128, np.random.default_rng(5), Augment.none())
    assert plain.min() >= 0.1 - 1e-6
    with pytest.raises(ValueError, match="too small"):
        sample_crops([MasterImage(pix[:100, :100], valid[:100, :100], Path("small"))], 1, 128, np.random.default_rng(0))
    # one small image among good ones is refused before any crop is drawn (it used to fail only when drawn)
    small = MasterImage(pix[:30, :30], valid[:30, :30], Path("thumb.png"))
    with pytest.raises(ValueError, match=r"1 of 2 images are too small.*thumb\.png \(30x30\)"):
        sample_crops([master, small], 1, 128, np.random.default_rng(0))
    with pytest.raises(ValueError, match="rotation"):
        Augment(rotation_deg=90)


def test_early_stopping() -> None:
    stop = EarlyStopping(patience=2)
    assert stop.update(1, 1.0) and not stop.update(2, 1.5) and not stop.should_stop
    assert not stop.update(3, 1.2) and stop.should_stop and stop.best_epoch == 1


def test_folder_split_is_by_file(moon_folder: Path, tmp_path: Path) -> None:
    train, val = split_data(_tiny(moon_folder, tmp_path))
    assert [p.name for p in val] == ["moon_0.png"] and len(train) == 3 and not set(train) & set(val)


def test_short_training_lowers_the_loss_and_writes_a_full_checkpoint(moon_folder: Path, tmp_path: Path) -> None:
    cfg = _tiny(moon_folder, tmp_path / "run", epochs=3)
    metrics = train_cae(cfg)
    hist = [json.loads(json.dumps(h)) for h in load_checkpoint(tmp_path / "run" / "best.pt").history]
    assert len(hist) == 3
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert metrics["val_loss"] == min(h["val_loss"] for h in hist)
    assert metrics["val_loss"] < hist[0]["val_loss"] or metrics["best_epoch"] == 1
    for name in ("config.json", "loss.csv", "loss.png", "metrics.json", "best.pt"):
        assert (tmp_path / "run" / name).is_file(), name
    assert CAETrainConfig.from_dict(json.loads((tmp_path / "run" / "config.json").read_text())) == cfg
    ck = load_checkpoint(tmp_path / "run" / "best.pt")
    md = ck.metadata
    assert md.kind == "cae" and md.channels == 1 and md.input_shape == (-1, 1, 128, 128)
    assert md.architecture == cfg.architecture().to_dict()
    assert md.architecture["widths"] == [8, 8, 16, 16] and md.architecture["channels"] == 1
    assert md.mask["mode"] == "gt" and md.mask["destroy_range"] == [0.5, 0.99]
    train_files, _ = split_data(cfg)
    assert md.training_data_hash == manifest_hash(list(train_files))
    assert ck.metrics["best_epoch"] == metrics["best_epoch"]
    lv = ck.metrics["val_levels"]
    assert set(lv) == {"0.5", "0.9", "0.99"} and lv["0.5"]["mae"] < lv["0.99"]["mae"]


def test_training_is_reproducible_from_the_seed(moon_folder: Path, tmp_path: Path) -> None:
    a = train_cae(_tiny(moon_folder, tmp_path / "a", epochs=1, crops=32, mode="fixed", destroy=0.5))
    b = train_cae(_tiny(moon_folder, tmp_path / "b", epochs=1, crops=32, mode="fixed", destroy=0.5))
    assert a["val_loss"] == b["val_loss"]


def test_cli_train_cae_in_process(moon_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    rc = main(
        [
            "train",
            "cae",
            "--data",
            str(moon_folder),
            "--mode",
            "colour-noise",
            "--epochs",
            "1",
            "--crops",
            "32",
            "--val-crops",
            "16",
            "--widths",
            "4,8,8,8",
            "--seed",
            "1",
            "--out",
            str(out),
            "--threads",
            "1",
            "--no-progress",
        ]
    )
    assert rc == 0
    assert "best epoch 1" in capsys.readouterr().out
    md = load_checkpoint(out / "best.pt").metadata
    assert md.mask["mode"] == "colour-noise" and md.channels == 1  # grey PNGs: channels inferred
    assert main(["train", "cae", "--data", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert "neither a dataset" in capsys.readouterr().err
    assert main(["train", "cae", "--data", "rover_rgb", "--epochs", "0", "--out", str(out)]) == 2


def test_named_dataset_split(data_root: Path) -> None:
    train, val = split_data(CAETrainConfig(data="rover_rgb", out="o", data_root=str(data_root)))
    assert len(train) == 4 and len(val) == 1 and all(p.is_file() for p in train + val)


def test_cli_unet2h_defaults_to_the_flight_widths(moon_folder: Path, tmp_path: Path) -> None:
    from edgeae.checkpoint import load_checkpoint
    from edgeae.cli import main

    out = tmp_path / "h"
    args = ["train", "cae", "--data", str(moon_folder), "--variant", "unet2h", "--epochs", "1", "--crops", "16"]
    args += ["--val-crops", "8", "--out", str(out), "--threads", "1", "--no-progress"]
    assert main(args) == 0
    arch = load_checkpoint(out / "best.pt").metadata.architecture
    assert arch["variant"] == "unet2h" and arch["widths"] == [24, 32, 64, 64]  # within the flight budget


@pytest.mark.parametrize(
    ("avx512_bf16", "amx", "expected"), [(True, False, True), (False, True, True), (False, False, False)]
)
def test_bf16_default_follows_the_cpu(
    monkeypatch: pytest.MonkeyPatch, avx512_bf16: bool, amx: bool, expected: bool
) -> None:
    """bfloat16 autocast is the CPU default only where the CPU computes bfloat16 in hardware (emulated it was 2-3×
    slower than float32); an explicit setting always wins, and CUDA keeps it on for the CAE."""
    import torch

    from edgeae.train.vae import VAETrainConfig

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert CAETrainConfig(data="x", out="o", channels=1).use_bf16("cpu") is expected
    assert VAETrainConfig(out="o").use_bf16("cpu") is expected
    assert CAETrainConfig(data="x", out="o", channels=1, bf16=True).use_bf16("cpu") is True
    assert CAETrainConfig(data="x", out="o", channels=1, bf16=False).use_bf16("cpu") is False
    assert CAETrainConfig(data="x", out="o", channels=1).use_bf16("cuda") is True
    assert VAETrainConfig(out="o").use_bf16("cuda") is False


def test_validation_crops_have_no_known_blocks(moon_folder: Path) -> None:
    """A run with ``known_blocks`` validates on the same sparse inputs as its starting run."""
    from edgeae.train.cae import validation_crops

    files = sorted(moon_folder.glob("*.png"))
    plain = CAETrainConfig(data=str(moon_folder), out="o", val_crops=8, channels=1)
    blocks = CAETrainConfig(data=str(moon_folder), out="o", val_crops=8, channels=1, known_blocks=1.0)
    a, b = validation_crops(plain, files, 1), validation_crops(blocks, files, 1)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])

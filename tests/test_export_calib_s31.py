"""Session 31 audit: an export calibrates and checks a model on the model's own data (its dataset's val and test
splits, or the val files and unused images of the folder it was trained on), says so, and warns when the
calibration draws on the model's training images.

Tiny synthetic checkpoints and image folders (no project data) except where a zoo model's datasets are checked.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from edgeae.export import calibration as cal
from edgeae.export import data_plan as dp

from edgeae.data import DataNotFoundError
from edgeae.metadata import ModelMetadata

cv2 = pytest.importorskip("cv2")


def _meta(**extra: Any) -> ModelMetadata:
    arch = {"channels": 1, "widths": [4, 8, 8, 8], "tile": 128, "latent_channels": 8}
    return ModelMetadata(kind="cae", architecture=arch, input_shape=(-1, 1, 128, 128), channels=1, extra=extra)


def _folder(path: Path, n: int, seed: int = 0, side: int = 160) -> list[Path]:
    """``n`` distinct grey PNGs ``img_XX.png`` in ``path``."""
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    files = [path / f"img_{i:02d}.png" for i in range(n)]
    for f in files:
        cv2.imwrite(str(f), rng.integers(0, 255, (side, side), dtype=np.uint8))
    return files


def _folder_meta(folder: Path, train: list[Path], val: list[Path]) -> ModelMetadata:
    """What the CAE trainer records of a folder run (edgeae.train.cae: data, train_files, val_files by name)."""
    return _meta(data=str(folder), train_files=[f.name for f in train], val_files=[f.name for f in val])


# ----------------------------------------------------------------------------- 1: the model's data decides


def test_the_checkpoints_data_names_the_dataset() -> None:
    """The trainers write ``extra["data"]``; ``dataset_of`` read only ``dataset``/``train_dataset`` and guessed
    ``orbital_gray`` from one channel for a model trained on ``orbital_gray_v2``."""
    assert cal.dataset_of(_meta(data="orbital_gray_v2")) == "orbital_gray_v2"
    assert cal.dataset_of(_meta(data="rover_rgb_v2")) == "rover_rgb_v2"
    # the first VAEs record no data: their val files name the dataset, else the channel count does
    legacy = _meta(val_files=["ESP_073496_0985_RED.NOMAP.browse.jpg", "mercury.png"])
    assert dp.training_data(legacy) == "orbital_gray" == dp.training_data(_meta())
    with pytest.raises(ValueError, match="trained on the folder /x/mine, not on a named dataset"):
        cal.dataset_of(_meta(data="/x/mine"))


def test_zoo_models_calibrate_on_their_own_dataset(data_root: Path) -> None:
    """The benchmark's exports (rover-rgb-gtcae, orbital-gray-vae) keep their sets; the v2 models get v2's val
    split (their test split and tail frames are those of v1, unchanged)."""
    pytest.importorskip("torch")
    from edgeae.checkpoint import load_checkpoint
    from edgeae.predictor import resolve_model_path

    plans: dict[str, dp.DataPlan] = {}

    def plan(name: str) -> dp.DataPlan:
        if name not in plans:
            meta = load_checkpoint(resolve_model_path(name, want="checkpoint")).metadata
            plans[name] = cal.plan_data(meta, root=data_root)
        return plans[name]

    for name, dataset in [("rover-rgb-gtcae", "rover_rgb"), ("orbital-gray-vae", "orbital_gray")]:
        p = plan(name)
        assert (p.calib_source, p.test_source) == (f"{dataset} val split", f"{dataset} test split")
        assert p.calib == cal.split_images(_meta(data=dataset), "val", data_root)
        assert p.tail == cal.tail_frame_files(_meta(data=dataset), data_root)
    ground = plan("orbital-gray-unet2-ground")
    assert ground.calib_source == "orbital_gray_v2 val split" and len(ground.calib) == 4
    assert ground.tail == plan("orbital-gray-vae").tail  # the same 7 frames as before
    flight = plan("rover-rgb-unet2-flight")
    # fine-tuned on rover_rgb_msl (session 42), whose val split is rover_rgb_v2's 7 panoramas
    assert flight.calib_source == "rover_rgb_msl val split" and len(flight.calib) == 7
    assert flight.calib == cal.split_images(_meta(data="rover_rgb_v2"), "val", data_root)
    assert flight.test == plan("rover-rgb-gtcae").test


def test_a_folder_trained_model_uses_its_folder(tmp_path: Path) -> None:
    """Calibration on the val files the checkpoint records, parity on the folder's images no training used; no
    data folder needed (the audit: ``orbital_gray val split`` for a model trained on the user's TIFFs)."""
    files = _folder(tmp_path / "mine", 10)
    meta = _folder_meta(tmp_path / "mine", files[:7], files[7:9])
    p = cal.plan_data(meta, root=tmp_path / "empty")
    assert p.calib == files[7:9] and p.test == files[9:] == p.tail and p.train == []  # val files: no train overlap
    assert cal.plan_data(meta, calib=tmp_path / "mine").train == files[:7]  # --calib: compared with every one
    assert p.calib_source == f"the model's 2 val files in {tmp_path / 'mine'}"
    assert "neither trained nor validated on" in p.test_source and not p.notes
    files[8].unlink()  # a val file gone since the training: said, not skipped silently
    q = cal.plan_data(meta)
    assert q.calib == files[7:8] and q.notes == (
        f"1 of the model's 2 val files are no longer in {tmp_path / 'mine'} (img_08.png): calibrating on the 1 there",
    )


def test_a_folder_without_unseen_images_says_parity_is_on_val_files(tmp_path: Path) -> None:
    files = _folder(tmp_path / "mine", 5)
    meta = _folder_meta(tmp_path / "mine", files[1:], files[:1])
    p = cal.plan_data(meta)
    assert p.test == files[:1] and "NOT unseen" in p.test_source
    assert len(p.notes) == 1 and "give --test DIR" in p.notes[0]
    own = _folder(tmp_path / "held", 2, seed=1)
    q = cal.plan_data(meta, test=tmp_path / "held")
    assert q.test == own == q.tail and q.test_source == str((tmp_path / "held").resolve()) and not q.notes


def test_missing_data_names_what_and_the_option_to_give(tmp_path: Path) -> None:
    """``--calib mydata --data emptyroot`` failed on ``Tycho_LRO.png (split orbital_gray/test) is missing`` with
    no word of a way round it."""
    own = _folder(tmp_path / "mine", 2)
    empty = tmp_path / "empty"
    empty.mkdir()
    named = _meta(data="orbital_gray_v2")
    with pytest.raises(
        DataNotFoundError, match=r"^parity test set \(the model's orbital_gray_v2 test split\).*--test DIR"
    ):
        cal.plan_data(named, calib=tmp_path / "mine", root=empty)
    with pytest.raises(DataNotFoundError, match=r"^calibration set .*--calib DIR"):
        cal.plan_data(named, root=empty)
    p = cal.plan_data(named, calib=tmp_path / "mine", test=tmp_path / "mine", root=empty)
    assert p.calib == own == p.test and p.train == []
    gone = _folder_meta(tmp_path / "gone", own, own)
    with pytest.raises(DataNotFoundError, match=r"trained on .*gone.*give --calib DIR and --test DIR"):
        cal.plan_data(gone)
    with pytest.raises(DataNotFoundError, match="give --test DIR"):
        cal.plan_data(gone, calib=tmp_path / "mine")
    assert cal.plan_data(gone, calib=tmp_path / "mine", test=tmp_path / "mine").test == own


# ------------------------------------------------------------------------- export_model and the CLI (1, 2)


@pytest.fixture
def checkpoint(tmp_path: Path) -> tuple[Path, list[Path]]:
    """A tiny CAE checkpoint trained (so its metadata says) on 7 of 10 images of ``tmp_path/mine``, 2 for val."""
    torch = pytest.importorskip("torch")
    from edgeae.checkpoint import save_checkpoint
    from edgeae.models.cae import CAE, CAEConfig

    files = _folder(tmp_path / "mine", 10)
    torch.manual_seed(0)
    cfg = CAEConfig(channels=1, widths=(4, 8, 8, 8), tile=128)
    meta = dataclasses.replace(_folder_meta(tmp_path / "mine", files[:7], files[7:9]), architecture=cfg.to_dict())
    return save_checkpoint(tmp_path / "run" / "best.pt", CAE(cfg).eval(), meta), files


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """export_model up to the conversion: what it hands export_checkpoint."""
    from edgeae.export import api

    seen: dict[str, Any] = {}

    def capture(model: Any, meta: Any, out_dir: Any, name: str, calib: Any, test: Any, config: Any, **kw: Any) -> Any:
        seen.update(kw, calib=calib, test=test)

    monkeypatch.setattr(api, "export_checkpoint", capture)
    return seen


LITE: dict[str, Any] = {"formats": ("onnx",), "n_calib": 8, "n_test": 8, "latency": False, "tail_check": False}


def test_export_model_records_the_folders_sets(
    tmp_path: Path, checkpoint: tuple[Path, list[Path]], captured: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    from edgeae.export.api import ExportConfig, export_model

    ckpt, _ = checkpoint
    with caplog.at_level(logging.INFO, logger="edgeae.export.api"):
        export_model(ckpt, tmp_path / "out", ExportConfig(**LITE, data_root=tmp_path / "empty"))
    assert captured["calib_source"] == f"the model's 2 val files in {tmp_path / 'mine'}"
    assert captured["test_source"].startswith(f"the 1 images in {tmp_path / 'mine'}")
    assert captured["calib"].shape == (8, 1, 128, 128)
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    assert any("parity test set: the 1 images" in r.getMessage() for r in caplog.records)


def test_calibrating_on_training_images_is_warned(
    tmp_path: Path, checkpoint: tuple[Path, list[Path]], captured: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """Audit item 2: ``--calib`` on the training folder drew on the model's own training files without a word
    (the overlap warning covered only the test and tail sets). Found by path and by content (a copy)."""
    from edgeae.export.api import ExportConfig, export_model

    ckpt, files = checkpoint
    export_model(ckpt, tmp_path / "out", ExportConfig(**LITE, calib=tmp_path / "mine"))
    sampled = cal.sampled_files(files, 8, ExportConfig().calib_tail)
    trained = [f.name for f in sampled if f in files[:7]]
    assert captured["provenance"]["calibration"]["training_overlaps"] == trained and trained
    warned = [r.getMessage() for r in caplog.records if "training images of the model" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith(f"{len(trained)} of the {len(sampled)} calibration images")
    copies = tmp_path / "copies"
    copies.mkdir()
    shutil.copy(files[0], copies / "renamed.png")  # a copy under another name: the same content
    _folder(copies / "new", 1, seed=5)
    caplog.clear()
    export_model(ckpt, tmp_path / "out2", ExportConfig(**LITE, calib=copies))
    assert captured["provenance"]["calibration"]["training_overlaps"] == ["renamed.png"]
    caplog.clear()
    export_model(ckpt, tmp_path / "out3", ExportConfig(**LITE))  # the default: the val files, no training image
    assert "training_overlaps" not in captured["provenance"]["calibration"]
    assert not [r for r in caplog.records if "training images" in r.getMessage()]


def test_cli_takes_test_and_prints_the_parity_test_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgeae.export import api
    from edgeae.export.report import ExportReport

    from edgeae.cli import main

    seen: dict[str, Any] = {}

    def fake(spec: Any, out: Any, config: Any) -> ExportReport:
        seen["config"] = config
        return ExportReport("m", str(out), {"source": "c", "n_patches": 8}, {"source": "/t", "n_patches": 8})

    monkeypatch.setattr(api, "export_model", fake)
    _folder(tmp_path / "t", 1)
    assert main(["export", "m.pt", "--no-latency", "--test", str(tmp_path / "t"), "--out", str(tmp_path / "o")]) == 0
    assert seen["config"].test == tmp_path / "t"
    assert "parity test set: /t (8 patches)" in capsys.readouterr().out
    assert main(["export", "m.pt", "--test", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    assert f"--test {tmp_path / 'none'} does not exist" in capsys.readouterr().err


# ------------------------------------------------------- review r5: the bundle, the tail tool, hashing, the split


@pytest.fixture
def big_checkpoint(tmp_path: Path) -> tuple[Path, list[Path]]:
    """As ``checkpoint``, with 256-px images: each tail frame gives 4 patches (a bundle's tail needs 3)."""
    torch = pytest.importorskip("torch")
    from edgeae.checkpoint import save_checkpoint
    from edgeae.models.cae import CAE, CAEConfig

    files = _folder(tmp_path / "mine", 10, side=256)
    torch.manual_seed(0)
    cfg = CAEConfig(channels=1, widths=(4, 8, 8, 8), tile=128)
    meta = dataclasses.replace(_folder_meta(tmp_path / "mine", files[:7], files[7:9]), architecture=cfg.to_dict())
    return save_checkpoint(tmp_path / "run" / "best.pt", CAE(cfg).eval(), meta), files


def test_board_bundle_takes_the_exports_images(tmp_path: Path, big_checkpoint: tuple[Path, list[Path]]) -> None:
    """Review r5, 1: ``board bundle`` of a folder-trained model failed ("not on a named dataset: it has no splits";
    before 7603130 it bundled orbital_gray patches). Its parity patches and tail frames are now the export's: the
    folder's unseen image, or ``--test DIR``."""
    from edgeae.export.board import load_bundle, main, make_bundle

    ckpt, files = big_checkpoint
    s = make_bundle(str(ckpt), tmp_path / "B.npz", n_test=8, data_root=str(tmp_path / "empty"))
    assert (
        s["test"]
        == f"8 patches of the 1 images in {tmp_path / 'mine'} the model was neither trained nor validated on, seed 1"
    )
    assert s["tail"]["frames"] == [files[9].name] and s["tail"]["patches"] == 4
    assert load_bundle(tmp_path / "B.npz")[0]["kinds"] == s["kinds"]
    held = _folder(tmp_path / "held", 2, seed=1, side=256)
    t = make_bundle(str(ckpt), tmp_path / "T.npz", n_test=8, test=tmp_path / "held")
    assert t["test"] == f"8 patches of {(tmp_path / 'held').resolve()}, seed 1"
    assert t["tail"]["frames"] == [f.name for f in held] and t["tail"]["patches"] == 8
    argv = ["bundle", str(ckpt), "--out", str(tmp_path / "C.npz"), "--n-test", "8", "--no-tail"]
    assert main([*argv, "--test", str(tmp_path / "held")]) == 0
    assert load_bundle(tmp_path / "C.npz")[0]["test"] == t["test"]


def test_too_few_tail_patches_are_refused_before_a_bundle_is_written(
    tmp_path: Path, checkpoint: tuple[Path, list[Path]]
) -> None:
    """One 160-px unseen image is one 128-px tail patch: ``load_bundle`` refuses such a bundle (the tail's Spearman
    needs 3), so ``make_bundle`` says so and writes nothing; the tail tool says the same."""
    from edgeae.export import tail
    from edgeae.export.board import BundleError, make_bundle

    ckpt, _ = checkpoint
    with pytest.raises(BundleError, match=r"tail frames \(img_09.png\) give 1 patch\(es\) of 128 px.*--no-tail$"):
        make_bundle(str(ckpt), tmp_path / "B.npz", n_test=8)
    assert not (tmp_path / "B.npz").exists()
    assert make_bundle(str(ckpt), tmp_path / "B.npz", n_test=8, tail=False)["kinds"]
    with pytest.raises(ValueError, match=r"give 1 patch\(es\) of 128 px, the tail's Spearman needs at least 3"):
        tail.measure(str(ckpt), [])


def test_tail_tool_takes_the_exports_frames(
    tmp_path: Path, big_checkpoint: tuple[Path, list[Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review r5, 1: ``edgeae.export.tail`` of a folder-trained model raised as the bundle did; its frames are the
    export's tail frames (the folder's unseen image), or ``--test DIR``."""
    from edgeae.export import filetype, tail

    ckpt, files = big_checkpoint
    read: list[Path] = []
    frame_patches = cal.frame_patches
    monkeypatch.setattr(cal, "frame_patches", lambda f, *a: (read.append(Path(f)), frame_patches(f, *a))[1])
    assert tail.measure(str(ckpt), []) == [] and read == [files[9]]
    held = _folder(tmp_path / "held", 2, seed=1, side=256)
    read.clear()
    assert tail.measure(str(ckpt), [], test=tmp_path / "held") == [] and read == [f.resolve() for f in held]
    seen: dict[str, Any] = {}
    monkeypatch.setattr(filetype, "check_artifact_file", lambda a: None)
    monkeypatch.setattr(tail, "measure", lambda *a: seen.setdefault("args", a) and [])
    assert tail.main([str(ckpt), "m.int8.onnx", "--test", str(tmp_path / "held")]) == 0
    assert seen["args"] == (str(ckpt), ["m.int8.onnx"], None, str(tmp_path / "held"))


def test_the_default_calibration_reads_no_training_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Review r5, 2: with uncompressed frames of one size (PGM), every training file was content-hashed to look
    for overlaps the default calibration (the val files) cannot have by path; now only ``--calib`` is compared by
    content, and no file is read twice."""
    import edgeae.metadata as md

    folder = tmp_path / "frames"
    folder.mkdir()
    rng = np.random.default_rng(0)
    files = [folder / f"f{i:02d}.pgm" for i in range(20)]
    for f in files:
        cv2.imwrite(str(f), rng.integers(0, 255, (160, 160), dtype=np.uint8))
    assert len({f.stat().st_size for f in files}) == 1
    val = files[::5]
    train = [f for f in files if f not in val]
    meta = _folder_meta(folder, train, val)
    calls: list[Path] = []
    sha = md.sha256_file
    monkeypatch.setattr(md, "sha256_file", lambda f: (calls.append(Path(f)), sha(f))[1])
    plan = cal.plan_data(meta)
    prov = cal.provenance(plan.calib, plan.test, plan.tail, cal.sampled_files(plan.calib, 8, 0.25), plan.train)
    assert sorted(calls) == val and "training_overlaps" not in prov["calibration"]  # test = val: hashed once
    calls.clear()
    mine = cal.plan_data(meta, calib=folder)
    sampled = cal.sampled_files(mine.calib, 8, 0.25)
    prov = cal.provenance(mine.calib, mine.test, mine.tail, sampled, mine.train)
    assert prov["calibration"]["training_overlaps"] == [f.name for f in sampled if f in train]
    assert len(calls) == len(set(calls)) == len(files)  # --calib: every training file of that size compared


def _days(root: Path, names: dict[str, int]) -> list[Path]:
    """Smooth grey 160-px PNGs ``DAY/IMG_000i.png``: camera names that repeat across day folders."""
    rng = np.random.default_rng(4)
    out = []
    for day, n in names.items():
        (root / day).mkdir(parents=True)
        for i in range(n):
            img = cv2.GaussianBlur(rng.random((160, 160)).astype(np.float32), (0, 0), 2)
            cv2.imwrite(
                str(root / day / f"IMG_{i:04d}.png"), (20 + 200 * (img - img.min()) / np.ptp(img)).astype(np.uint8)
            )
            out.append(root / day / f"IMG_{i:04d}.png")
    return sorted(out)


def test_the_split_of_a_folder_with_repeated_names_is_matched_by_path(tmp_path: Path) -> None:
    """Review r5, 3: the trainers recorded bare names, so day1/IMG_0004.png and day2/IMG_0004.png were one name: the
    export's "val" calibration set held 6 files, 3 of them training files. They record paths relative to the folder
    now; an old checkpoint's bare names still match where unambiguous, and an ambiguous one is said and left out."""
    from edgeae.train.cae import recorded_files
    from edgeae.train.cae_config import CAETrainConfig, split_data

    root = tmp_path / "cam"
    _days(root, {"day1": 6, "day2": 6})
    train, val = split_data(CAETrainConfig(data=str(root), out=""))
    meta = _meta(data=str(root), train_files=recorded_files(train, str(root)), val_files=recorded_files(val, str(root)))
    assert meta.extra["val_files"] == ["day1/IMG_0000.png", "day1/IMG_0005.png", "day2/IMG_0004.png"]
    plan = cal.plan_data(meta)
    assert plan.calib == val and plan.test == val and not dp.folder_split(meta).ambiguous
    assert cal.plan_data(meta, calib=root).train == train
    old = _meta(data=str(root), train_files=[p.name for p in train], val_files=[p.name for p in val])
    split = dp.folder_split(old)
    assert (split.train, split.val, split.unseen) == ([], [], []) and len(split.ambiguous) == 12
    with pytest.raises(DataNotFoundError, match=r"val files is in .*cam \(its 12 files of ambiguous names are left"):
        cal.plan_data(old)
    own = _folder(tmp_path / "own", 1)
    p = cal.plan_data(old, calib=tmp_path / "own", test=tmp_path / "own")
    assert p.calib == own and p.train == [] and len(p.notes) == 1
    assert p.notes[0].startswith(
        f"6 file name(s) the checkpoint records (IMG_0000.png, IMG_0001.png, IMG_0002.png, ...) are each in several "
        f"subfolders of {root} (it records bare names, as before session 31): which of those 12 files"
    )
    # an old checkpoint of a folder whose names do not repeat: matched by name as before
    uniq = tmp_path / "uniq"
    for f in _days(uniq, {"a": 2, "b": 3})[2:]:
        f.rename(f.with_name(f"B{f.name}"))
    train, val = split_data(CAETrainConfig(data=str(uniq), out=""))
    legacy = dp.folder_split(
        _meta(data=str(uniq), train_files=[p.name for p in train], val_files=[p.name for p in val])
    )
    assert (legacy.train, legacy.val, legacy.ambiguous) == (train, val, [])


def test_the_trainers_record_paths_relative_to_the_folder(tmp_path: Path) -> None:
    """Review r5, 3: what ``edgeae train cae`` / ``train vae`` write into the checkpoint of a nested folder."""
    pytest.importorskip("torch")
    from edgeae.checkpoint import load_checkpoint
    from edgeae.cli import main

    root = tmp_path / "cam"
    files = _days(root, {"day1": 3, "day2": 3})
    common = ["--data", str(root), "--epochs", "1", "--batch-size", "4", "--threads", "1", "--no-progress", "--no-bf16"]
    cae = ["train", "cae", *common, "--out", str(tmp_path / "cae"), "--variant", "unet2", "--widths", "4,4,4,4"]
    assert main([*cae, "--crops", "8", "--val-crops", "4", "--no-augment"]) == 0
    vae = ["train", "vae", *common, "--out", str(tmp_path / "vae"), "--widths", "4,4,4,4", "--latent", "8"]
    assert main([*vae, "--crops", "8", "--val-crops", "4"]) == 0
    for run in ("cae", "vae"):
        extra = load_checkpoint(tmp_path / run / "best.pt").metadata.extra
        assert extra["val_files"] == ["day1/IMG_0000.png", "day2/IMG_0002.png"], run
        assert extra["train_files"] == [
            "day1/IMG_0001.png",
            "day1/IMG_0002.png",
            "day2/IMG_0000.png",
            "day2/IMG_0001.png",
        ]
        meta = load_checkpoint(tmp_path / run / "best.pt").metadata
        assert cal.plan_data(meta).calib == [files[0], files[5]]


def test_the_data_plan_is_its_own_module() -> None:
    """Review r5, 4: the data plan moved out of calibration.py (past the ~400-line guideline); the names the export
    API, the tests and the benchmarks import from ``edgeae.export.calibration`` are the plan's own."""
    for name in ("plan_data", "split_images", "tail_frame_files", "dataset_of"):
        assert getattr(cal, name) is getattr(dp, name)
    assert not hasattr(cal, "folder_split") and not hasattr(cal, "_folder_plan")
    assert len(Path(cal.__file__).read_text().splitlines()) < 400


def test_a_flat_folder_s_paths_still_match_when_a_same_named_file_appears_in_a_subfolder(tmp_path: Path) -> None:
    """A flat folder's relative paths have no "/", so they were read as old bare names: a later
    ``later/img_00.png`` made the recorded val file ambiguous and the new, unseen image vanished (review r8)."""
    files = _folder(tmp_path / "cam", 10)
    train, val = files[1::2], files[0::2]
    meta = _folder_meta(tmp_path / "cam", train, val)  # flat: relative path == name
    (tmp_path / "cam" / "later").mkdir()
    cv2.imwrite(str(tmp_path / "cam" / "later" / "img_00.png"), np.zeros((160, 160), np.uint8))
    s = dp.folder_split(meta)
    assert [f.name for f in s.val] == [f.name for f in val] and s.ambiguous == []
    assert [f.relative_to(tmp_path / "cam").as_posix() for f in s.unseen] == ["later/img_00.png"]

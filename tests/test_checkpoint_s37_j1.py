"""Session 37 (audit a3 finding 1): a checkpoint with one byte flipped inside a record (a flaky disk, a bad copy)
is refused on every load path, in one line naming the file and the damaged record, where torch.load (which never
checks the zip records' CRC-32) used to load it as a changed weight: a model (export, reconstruct, --init, zoo
install: ``load_checkpoint``), a run's ``last.pt`` (resume), its best weights (``best.pt``, ``best_state.pt``)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from edgeae.checkpoint import damaged_record, load_checkpoint, save_checkpoint  # noqa: E402
from edgeae.cli import main  # noqa: E402
from edgeae.metadata import MetadataError, ModelMetadata  # noqa: E402
from edgeae.models.cae import CAE, CAEConfig  # noqa: E402
from edgeae.train.resume import ResumeError, TrainState, check_resume, save_state  # noqa: E402


def flip_in_largest_record(path: Path, mask: int = 0x40) -> str:
    """Flip one bit in the middle of the largest record's bytes of the zip file ``path``; its record name."""
    with zipfile.ZipFile(path) as z:
        big = max(z.infolist(), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    start = big.header_offset + 30 + len(big.filename.encode()) + len(big.extra)
    data[start + big.file_size // 2] ^= mask
    path.write_bytes(bytes(data))
    return big.filename


def _model_file(path: Path) -> Path:
    cfg = CAEConfig(channels=1, widths=(4, 8, 8, 8))
    torch.manual_seed(0)
    meta = ModelMetadata(kind="cae", architecture=cfg.to_dict(), input_shape=(-1, 1, 128, 128), channels=1)
    return save_checkpoint(path, CAE(cfg), meta, metrics={"best_epoch": 1})


def test_flipped_byte_in_a_model_is_refused_naming_the_record(tmp_path: Path) -> None:
    path = _model_file(tmp_path / "best.pt")
    assert damaged_record(path) is None
    load_checkpoint(path)  # intact: loads
    record = flip_in_largest_record(path)
    assert damaged_record(path) == f"its record {record} fails its CRC-32 check"
    with pytest.raises(MetadataError) as e:
        load_checkpoint(path)
    assert str(e.value) == (
        f"{path} is a damaged checkpoint: its record {record} fails its CRC-32 check (a byte changed on disk or in a "
        "copy); copy it again from an intact source or use an earlier checkpoint"
    )


def test_damaged_record_leaves_other_files_to_torch(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00garbage")
    assert damaged_record(junk) is None  # not a zip: load_checkpoint says "not a PyTorch file"
    full = _model_file(tmp_path / "full.pt")
    cut = tmp_path / "cut.pt"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    assert damaged_record(cut) is None  # cut short: torch's "truncated or damaged" line (session 35) stays
    with pytest.raises(MetadataError, match="is not a complete checkpoint"):
        load_checkpoint(cut)


def test_flipped_last_pt_refuses_the_resume(tmp_path: Path) -> None:
    model = torch.nn.Linear(300, 200)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    save_state(tmp_path, model, opt, None, TrainState(), {"lr": 1e-3}, "h", kind="cae")
    (tmp_path / "config.json").write_text(json.dumps({"kind": "cae"}))
    check_resume(tmp_path, "cae", 2)  # intact: resumable
    record = flip_in_largest_record(tmp_path / "last.pt")
    with pytest.raises(ResumeError) as e:
        check_resume(tmp_path, "cae", 2)
    assert str(e.value).startswith(f"cannot resume {tmp_path}: {tmp_path / 'last.pt'} is a damaged checkpoint: its "
                                   f"record {record} fails its CRC-32 check")  # fmt: skip
    assert "\n" not in str(e.value)


def test_vae_best_state_and_holds_weights_check_the_records(tmp_path: Path) -> None:
    from edgeae.train.vae_steps import _best_model, _holds_weights_of, _save_best_weights

    model = torch.nn.Linear(300, 200)
    path = tmp_path / "best_state.pt"
    _save_best_weights(torch, model, path)
    assert _holds_weights_of(torch, model, path)
    flip_in_largest_record(path, mask=0x01)  # the lowest mantissa bit: a tiny change, still a changed weight
    assert not _holds_weights_of(torch, model, path)  # a resume at the best epoch's end rewrites it
    with pytest.raises(MetadataError, match=r"best_state\.pt is a damaged checkpoint: its record .* CRC-32"):
        _best_model(torch, lambda: torch.nn.Linear(300, 200), path)


def test_cae_best_epoch_of_a_damaged_best_pt_is_unknown(tmp_path: Path) -> None:
    from edgeae.train.cae_steps import _recorded_best_epoch

    path = _model_file(tmp_path / "best.pt")
    assert _recorded_best_epoch(torch, path) == 1
    flip_in_largest_record(path)
    assert _recorded_best_epoch(torch, path) is None  # at the best epoch's end the trainer rewrites it


@pytest.mark.parametrize("command", ["export", "reconstruct"])
def test_cli_load_paths_exit_2_in_one_line(tmp_path: Path, command: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = _model_file(tmp_path / "best.pt")
    record = flip_in_largest_record(path)
    if command == "export":
        argv = ["export", str(path), "--out", str(tmp_path / "exp"), "--no-latency"]
    else:
        import numpy as np
        from PIL import Image

        Image.fromarray((np.random.default_rng(0).random((64, 64)) * 255).astype(np.uint8)).save(tmp_path / "f.png")
        argv = ["reconstruct", str(tmp_path / "f.png"), "--model", str(path), "--out", str(tmp_path / "r.png")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"{path} is a damaged checkpoint: its record {record} fails its CRC-32 check" in err
    assert not (tmp_path / "exp").exists() or not any((tmp_path / "exp").iterdir())


def test_resume_with_a_damaged_best_pt_is_refused_before_training(tmp_path: Path) -> None:
    pytest.importorskip("cv2")
    from test_train_resume import _config, _images

    from edgeae.train.cae import train_cae

    data = _images(tmp_path / "data", n=2)
    train_cae(_config(data, tmp_path / "run", epochs=1, crops=8, val_crops=4))
    config_before = (tmp_path / "run" / "config.json").read_bytes()
    record = flip_in_largest_record(tmp_path / "run" / "best.pt")
    with pytest.raises(ResumeError) as e:  # a complete run to more epochs would end on the damaged best weights
        train_cae(_config(data, tmp_path / "run", epochs=2, crops=8, val_crops=4), resume=True)
    assert str(e.value).startswith(
        f"cannot resume {tmp_path / 'run'}: {tmp_path / 'run' / 'best.pt'} is a damaged checkpoint: its record "
        f"{record} fails its CRC-32 check"
    )
    assert (tmp_path / "run" / "config.json").read_bytes() == config_before  # refused before anything was written


@pytest.mark.parametrize("damage", ["cut", "text"])
def test_resume_with_a_cut_short_or_foreign_best_pt_is_refused_before_training(tmp_path: Path, damage: str) -> None:
    """Session 46's audit: a best.pt cut short (or replaced by another file) passed the CRC-32 check, which reads zip
    archives only, and was found after every remaining epoch had trained; the run then could not be finished."""
    pytest.importorskip("cv2")
    from test_train_resume import _config, _images

    from edgeae.train.cae import train_cae

    data = _images(tmp_path / "data", n=2)
    train_cae(_config(data, tmp_path / "run", epochs=1, crops=8, val_crops=4))
    best = tmp_path / "run" / "best.pt"
    best.write_bytes(best.read_bytes()[:700] if damage == "cut" else b"hello")
    config_before = (tmp_path / "run" / "config.json").read_bytes()
    with pytest.raises(ResumeError) as e:
        train_cae(_config(data, tmp_path / "run", epochs=2, crops=8, val_crops=4), resume=True)
    assert str(e.value).startswith(f"cannot resume {tmp_path / 'run'}: {best} is not a complete checkpoint")
    assert (tmp_path / "run" / "config.json").read_bytes() == config_before

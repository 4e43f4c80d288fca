"""Session 35 (audit a2/a4): resuming reads last.pt weights only (planted code is refused, not run), a full disk
under torch.save is one line, stale temporary files of killed writers are removed, config.json / metrics.json
are written atomically (a damaged config.json falls back to last.pt's), a data change names the files, a run
killed before its first checkpoint says to rerun its command, a truncated checkpoint says so, and a resume leaves
torch's global RNG alone."""

from __future__ import annotations

import collections
import dataclasses
import errno
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

import edgeae.atomic as atomic  # noqa: E402
from edgeae.checkpoint import load_checkpoint  # noqa: E402
from edgeae.metadata import MetadataError, manifest_hash  # noqa: E402
from edgeae.train.common import write_json  # noqa: E402
from edgeae.train.resume import (  # noqa: E402
    ResumeError,
    TrainState,
    check_resume,
    load_state,
    save_state,
)

TORCH_FULL = "[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598"


class Planted:
    """A pickled object whose loading would run a shell command (what a planted last.pt holds)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def _tiny() -> tuple[Any, Any]:
    model = torch.nn.Linear(3, 2)
    return model, torch.optim.Adam(model.parameters(), lr=1e-3)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_planted_code_in_last_pt_is_refused_not_run(tmp_path: Path) -> None:
    run, marker = tmp_path / "evil", tmp_path / "ran"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"kind": "cae", "mode": "gt", "widths": [4, 8]}))
    torch.save({"version": 1, "state": {"epoch": 1}, "payload": Planted(marker)}, run / "last.pt")
    with pytest.raises(ResumeError, match=r"evil/last\.pt: not a readable edgeae checkpoint .*holds code") as e:
        check_resume(run, "cae", 2)
    assert not marker.exists()  # weights_only=False would have run the command here
    assert "\n" not in str(e.value) and "weights_only=False" not in str(e.value)


def test_full_disk_under_torch_save_is_one_oserror_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, opt = _tiny()
    save_state(tmp_path, model, opt, None, TrainState(), {"lr": 1e-3}, "h")
    before = (tmp_path / "last.pt").read_bytes()

    def full_save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        Path(f).write_bytes(b"PK\x03\x04partial")  # what torch wrote before the disk filled
        raise RuntimeError(TORCH_FULL)

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(torch, "save", full_save)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9, 4096))
    with pytest.raises(OSError) as e:
        save_state(tmp_path, model, opt, None, TrainState(epoch=2), {"lr": 1e-3}, "h")
    assert isinstance(e.value, atomic.WriteFailed) and e.value.errno == errno.ENOSPC
    assert str(e.value) == f"cannot write {tmp_path / 'last.pt'}: no space left on device"  # the CLI's line, exit 2
    assert (tmp_path / "last.pt").read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]

    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**12, 0, 10**12))  # not full: torch's reason
    with pytest.raises(OSError, match=r"cannot write .*last\.pt: the write failed \(\[enforce fail .*unexpected pos"):
        save_state(tmp_path, model, opt, None, TrainState(epoch=2), {"lr": 1e-3}, "h")

    def other_error(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("some other torch error")

    monkeypatch.setattr(torch, "save", other_error)  # not a failed write: unchanged
    with pytest.raises(RuntimeError, match="some other torch error"):
        save_state(tmp_path, model, opt, None, TrainState(epoch=2), {"lr": 1e-3}, "h")


def test_stale_temps_of_dead_writers_are_removed_when_the_run_saves_or_resumes(tmp_path: Path) -> None:
    dead, live = _dead_pid(), os.getppid()
    stale = [f".last.pt.tmp-{dead}", f".best.pt.tmp-{dead}", f".best_state.pt.tmp-{os.getpid()}"]
    kept = [f".metrics.json.tmp-{live}", "notes.tmp", "last.pt.tmp-x"]
    for name in stale + kept:
        (tmp_path / name).write_bytes(b"x" * 10)
    model, opt = _tiny()
    save_state(tmp_path, model, opt, None, TrainState(), {"lr": 1e-3}, "h")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*kept, "last.pt"])
    (tmp_path / f".config.json.tmp-{dead}").write_text("{")
    load_state(tmp_path, model, opt, None, {"lr": 1e-3}, "h")  # a resume that passed its checks
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*kept, "last.pt"])


def test_write_json_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_json(tmp_path / "config.json", {"epochs": 2})
    real = Path.write_text

    def full(self: Path, text: str, *args: Any, **kwargs: Any) -> int:
        real(self, text[:5], *args, **kwargs)  # part written, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(OSError, match=r"cannot write .*config\.json"):
        write_json(path, {"epochs": 3})
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"epochs": 2} and [p.name for p in tmp_path.iterdir()] == ["config.json"]


def test_damaged_config_json_resumes_with_last_pt_config(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from edgeae.train.cae_config import CAETrainConfig, load_config

    cfg = CAETrainConfig(data=str(tmp_path / "data"), out=str(tmp_path / "run"), widths=(4, 8), tile=32, epochs=3)
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"kind": "cae", **cfg.to_dict()})[:40])  # killed mid-write
    with pytest.raises(ValueError, match=r"config\.json: not a readable training config \(JSONDecodeError"):
        load_config(run / "config.json")  # no last.pt: nothing to fall back on
    model, opt = _tiny()
    save_state(run, model, opt, None, TrainState(), cfg.to_dict(), "h", kind="cae")
    with caplog.at_level(logging.WARNING):
        assert load_config(run / "config.json") == cfg
    assert "not a readable training config (JSONDecodeError" in caplog.text and "last.pt recorded" in caplog.text

    # the VAE trainer: its last.pt recorded the config without out, epochs, time_budget and zoo_name (review r7)
    from edgeae.train.vae import load_config as load_vae_config
    from edgeae.train.vae import train_vae

    vcfg = _vae_config(tmp_path, zoo_name="tiny-vae")
    assert train_vae(vcfg)["complete"] is False
    (tmp_path / "vae" / "config.json").write_text("{")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert load_vae_config(tmp_path / "vae" / "config.json") == vcfg  # its epochs, budget and zoo name too
    assert "last.pt recorded" in caplog.text
    assert train_vae(dataclasses.replace(vcfg, time_budget=None), resume=True)["complete"]


def _vae_config(tmp_path: Path, **kw: Any) -> Any:
    """A tiny VAE run on three RGB images in ``tmp_path / "vae"``, stopped by its time budget after one batch."""
    pytest.importorskip("cv2")
    from test_train_resume import _images

    from edgeae.train.vae import VAETrainConfig

    data = _images(tmp_path / "imgs")
    base: dict[str, Any] = dict(
        out=str(tmp_path / "vae"), data=str(data), channels=3, hirise=False, widths=(4, 4, 4, 4), latent=8,
        crops=16, batch_size=16, val_crops=16, epochs=2, threads=1, progress=False, bf16=False, time_budget=1e-9,
        augment=False,
    )  # fmt: skip
    return VAETrainConfig(**{**base, **kw})


def test_a_vae_last_pt_saved_without_its_resumable_keys_still_resumes(tmp_path: Path) -> None:
    """A VAE last.pt written before review r7 holds its config without the keys a resume may change."""
    from edgeae.train.vae import RESUMABLE, train_vae

    vcfg = _vae_config(tmp_path)
    train_vae(vcfg)
    path = tmp_path / "vae" / "last.pt"
    blob = torch.load(path, weights_only=True)
    assert blob["config"]["out"] == vcfg.out and blob["config"]["epochs"] == 2  # the whole config now
    torch.save({**blob, "config": {k: v for k, v in blob["config"].items() if k not in RESUMABLE}}, path)
    assert train_vae(dataclasses.replace(vcfg, time_budget=None), resume=True)["complete"]
    assert torch.load(path, weights_only=True)["config"]["out"] == vcfg.out


def test_resume_of_a_model_without_last_pt_names_the_files_to_move(tmp_path: Path) -> None:
    """ "run the command again (without --resume)" was refused there: the new run does not overwrite best.pt."""
    (tmp_path / "config.json").write_text(json.dumps({"kind": "cae", "mode": "gt", "widths": [4, 8]}))
    (tmp_path / "best.pt").write_bytes(b"a model")
    with pytest.raises(ResumeError) as e:
        check_resume(tmp_path, "cae", 2)
    assert str(e.value) == (
        f"cannot resume {tmp_path}: it holds no last.pt to continue from, only best.pt; to train it again, move "
        "best.pt away and run the command that started it (without --resume)"
    )


def _files(folder: Path, names: dict[str, bytes]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in names.items():
        (folder / name).write_bytes(data)
    return sorted(folder / n for n in names)


def test_changed_data_names_the_files(tmp_path: Path) -> None:
    data = tmp_path / "data"
    files = _files(data, {f"im{i}.png": bytes([i]) * (10 + i) for i in range(6)})
    model, opt = _tiny()
    save_state(tmp_path, model, opt, None, TrainState(), {"data": str(data)}, manifest_hash(files), files=files)
    (data / "im0.png").write_bytes(b"changed!")
    (data / "im5.png").unlink()
    now = _files(data, {"new1.png": b"a", "new2.png": b"b"})
    now = sorted(p for p in data.iterdir())
    with pytest.raises(ResumeError, match="training data changed") as e:
        load_state(tmp_path, model, opt, None, {"data": str(data)}, manifest_hash(now), files=now)
    assert "now: 1 changed (im0.png); 2 added (new1.png, new2.png); 1 removed (im5.png)); start a new run" in str(
        e.value
    )


def test_changed_data_without_per_file_records_names_added_and_removed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    files = _files(data, {"a.png": b"1", "b.png": b"2", "c.png": b"3"})
    model, opt = _tiny()
    save_state(tmp_path, model, opt, None, TrainState(), {"data": str(data)}, manifest_hash(files))  # no files=
    with pytest.raises(ResumeError, match=r"now; its last\.pt records no file list, so which files changed is not"):
        load_state(tmp_path, model, opt, None, {"data": str(data)}, "other", files=files)
    meta = {"extra": {"train_files": ["a.png", "b.png"], "val_files": ["old.png"]}}
    torch.save({"edgeae": json.dumps(meta), "state_dict": {}}, tmp_path / "best.pt")
    with pytest.raises(ResumeError, match=r"now: 1 added \(c\.png\); 1 removed \(old\.png\); its last\.pt records no"):
        load_state(tmp_path, model, opt, None, {"data": str(data)}, "other", files=files)


def test_resume_before_the_first_checkpoint_says_to_rerun(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"kind": "cae", "mode": "gt", "widths": [4, 8]}))
    with pytest.raises(ResumeError, match=r"stopped before its first checkpoint.*started it again \(without --resume"):
        check_resume(tmp_path, "cae", 2)


def test_truncated_checkpoint_says_so(tmp_path: Path) -> None:
    full = tmp_path / "full.pt"
    torch.save({"edgeae": "{}", "state_dict": {"w": torch.zeros(1000)}}, full)
    cut = tmp_path / "trunc.pt"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(MetadataError) as e:
        load_checkpoint(cut)
    assert str(e.value) == (
        f"{cut} is not a complete checkpoint (truncated or damaged: reading zip archive: failed finding central "
        "directory)"
    )
    (tmp_path / "last.pt").write_bytes(cut.read_bytes())
    with pytest.raises(ResumeError, match=r"last\.pt is not a complete checkpoint \(truncated or damaged"):
        check_resume(tmp_path, "cae", 2)


def test_resume_leaves_the_global_rng_and_loads_old_states(tmp_path: Path) -> None:
    model, opt = _tiny()
    torch.manual_seed(1)
    save_state(tmp_path, model, opt, None, TrainState(), {"lr": 1e-3}, "h")
    assert "torch_rng" not in torch.load(tmp_path / "last.pt", weights_only=True)
    blob = torch.load(tmp_path / "last.pt", weights_only=True)
    torch.save({**blob, "torch_rng": torch.get_rng_state()}, tmp_path / "last.pt")  # as written before session 35
    torch.manual_seed(2)
    expected = torch.get_rng_state()
    state = load_state(tmp_path, model, opt, None, {"lr": 1e-3}, "h")
    assert state.epoch == 1 and torch.equal(torch.get_rng_state(), expected)


def test_resumed_training_run_is_exact_and_cleans_up(tmp_path: Path) -> None:
    """A whole stop / kill -9 leftovers / resume cycle of the CAE trainer."""
    cv2 = pytest.importorskip("cv2")
    from test_train_resume import _config, _images, _weights

    from edgeae.train.cae import train_cae

    del cv2
    data = _images(tmp_path / "data")
    full = train_cae(_config(data, tmp_path / "full", epochs=1))
    train_cae(_config(data, tmp_path / "part", epochs=1, time_budget=1e-9))
    dead = _dead_pid()
    for name in (f".last.pt.tmp-{dead}", f".best.pt.tmp-{dead}"):
        (tmp_path / "part" / name).write_bytes(b"x" * 100)
    (tmp_path / "part" / "config.json").write_text("{")  # damaged: last.pt has the config
    from edgeae.train.cae_config import load_config

    cfg = dataclasses.replace(load_config(tmp_path / "part" / "config.json"), time_budget=None)
    done = train_cae(cfg, resume=True)
    assert done["complete"] and done["val_loss"] == full["val_loss"]
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "part")
    assert all((a[k] == b[k]).all() for k in a)
    assert not [p.name for p in (tmp_path / "part").iterdir() if ".tmp-" in p.name]
    assert json.loads((tmp_path / "part" / "config.json").read_text())["kind"] == "cae"


def test_file_records_live_in_their_own_module_and_only_describe_the_hashed_data(tmp_path: Path) -> None:
    """resume.py passed 500 lines: the per-file records moved to edgeae.train.resume_files, behaviour unchanged."""
    from edgeae.train import resume, resume_files

    data = tmp_path / "data"
    files = _files(data, {"a.png": b"1", "sub.png": b"22"})
    (data / "d").mkdir()
    files.append(data / "d" / "c.png")
    files[-1].write_bytes(b"333")
    assert resume.data_change is resume_files.data_change
    assert resume_files.file_records(files, str(data), manifest_hash(files)) == [
        ["a.png", 1, hashlib.sha256(b"1").hexdigest()],
        ["sub.png", 2, hashlib.sha256(b"22").hexdigest()],
        ["d/c.png", 3, hashlib.sha256(b"333").hexdigest()],
    ]
    assert resume_files.file_records(files, "rover_rgb", manifest_hash(files))[2][0] == "c.png"  # a named dataset
    assert resume_files.file_records(files, str(data), "another hash") == []  # changed since the run read them
    assert resume_files.file_records([*files, data / "gone.png"], str(data), manifest_hash(files)) == []
    assert resume_files.file_records(None, str(data), manifest_hash(files)) == []


def test_data_files_read_each_file_once_and_hash_as_manifest_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trainers read their files once (DataFiles): every save records them from that read (review r7)."""
    from edgeae import metadata
    from edgeae.train.resume_files import DataFiles

    data = tmp_path / "data"
    files = _files(data, {"b.png": b"2", "a.png": b"1", "c.png": b"333"})
    got = DataFiles.read(files)
    assert got.hash == manifest_hash(files) and got.hash_of(files[1:]) == manifest_hash(files[1:])

    def read_again(path: Any, *args: Any, **kwargs: Any) -> str:
        raise AssertionError(f"{path} read again")

    monkeypatch.setattr(metadata, "sha256_file", read_again)
    model, opt = _tiny()
    save_state(tmp_path, model, opt, None, TrainState(), {"data": str(data)}, got.hash, files=got)
    assert torch.load(tmp_path / "last.pt", weights_only=True)["files"] == [
        [n, len(b), hashlib.sha256(b).hexdigest()] for n, b in (("a.png", b"1"), ("b.png", b"2"), ("c.png", b"333"))
    ]

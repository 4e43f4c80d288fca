"""Session 38, fixer s1: a user zoo folder that os.access calls writable but that refuses a folder or a file (root on
a virtual file system such as /proc or /sys; a mount that refuses writes for other reasons) passed the check before
training: the run trained to its end and only the install failed. The check now creates the folder and a file in it
(removing what it made), so ``edgeae train ... --zoo-name`` refuses it in one line naming the folder and
``$EDGEAE_ZOO``, exit 2, before any training."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeae import zoo
from edgeae.zoo import user


def test_a_folder_that_refuses_a_file_is_unwritable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "zoo"
    folder.mkdir()
    assert user.unwritable(folder) is None and list(folder.iterdir()) == []  # the check's file is removed

    def refuse(*a, **k):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(user.tempfile, "mkstemp", refuse)
    assert user.unwritable(folder) == "operation not permitted"
    monkeypatch.setenv("EDGEAE_ZOO", str(folder))
    with pytest.raises(zoo.ZooFolderError) as exc:
        zoo.check_folder("my-vae")
    msg = str(exc.value)
    assert "\n" not in msg and f"the user zoo folder {folder} cannot be written (operation not permitted)" in msg
    assert "set $EDGEAE_ZOO to a folder you can write" in msg


def test_a_folder_that_cannot_be_created_is_unwritable_and_nothing_is_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "a" / "b" / "zoo"
    assert user.unwritable(folder) is None
    assert list(tmp_path.iterdir()) == []  # the folders made to try it are removed again
    real = Path.mkdir

    def refuse_the_last(self: Path, *a, **k):
        if self.name == "zoo":
            raise FileNotFoundError(2, "No such file or directory")
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "mkdir", refuse_the_last)
    assert user.unwritable(folder) == "creating it: no such file or directory"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not sys.platform.startswith("linux") or not Path("/proc/self").is_dir(), reason="Linux /proc")
def test_train_refuses_a_user_zoo_under_proc_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """As root, os.access says /proc is writable; the run trained, then the install failed (exit 2 after training)."""
    cv2 = pytest.importorskip("cv2")
    pytest.importorskip("torch")
    from edgeae.cli import main

    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(data / f"g{i}.png"), (40 + 160 * rng.random((224, 224))).astype(np.uint8))
    bad = Path(f"/proc/edgeae-zoo-{os.getpid()}")
    monkeypatch.setenv("EDGEAE_ZOO", str(bad))
    argv = ["train", "cae", "--data", str(data), "--out", str(tmp_path / "run"), "--widths", "4,8", "--epochs", "1",
            "--crops", "4", "--batch-size", "4", "--val-crops", "4", "--threads", "1", "--no-progress", "--no-bf16",
            "--zoo-name", "mine"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"edgeae train: error: --zoo-name mine: the user zoo folder {bad} cannot be written (")
    assert "set $EDGEAE_ZOO to a folder you can write" in err[-1]
    assert not any(line.startswith("epoch ") for line in err) and not (tmp_path / "run").exists()


def test_a_folder_another_check_removes_meanwhile_is_checked_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs checking a user zoo that does not exist yet: one's check removes the folder it made while the
    other's writes its file there (review r1, session 38). The vanished folder is checked again, not refused."""
    folder = tmp_path / "zoo"
    real, calls = user.tempfile.mkstemp, []

    def vanish_once(*a, **k):
        calls.append(1)
        if len(calls) == 1:
            raise FileNotFoundError(2, "No such file or directory")
        return real(*a, **k)

    monkeypatch.setattr(user.tempfile, "mkstemp", vanish_once)
    assert user.unwritable(folder) is None and len(calls) == 2 and not folder.exists()

    def always_vanish(*a, **k):
        raise FileNotFoundError(2, "No such file or directory")

    monkeypatch.setattr(user.tempfile, "mkstemp", always_vanish)
    assert "vanishing" in (user.unwritable(folder) or "")


def test_a_zoo_entry_says_a_repeated_resume_once_with_its_count() -> None:
    """40 resumes with the same command made a 1,872-character zoo command (review r2, session 38)."""
    assert user._runs_of(["a", "b", "b", "b", "a"]) == ["a", "b (3 times)", "a"]
    assert user._runs_of([]) == []

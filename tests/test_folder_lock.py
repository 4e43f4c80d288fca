"""edgeae.folder_lock: one process per output folder."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edgeae.folder_lock import LOCK_NAME, FolderBusy, hold


def test_second_hold_is_refused_and_names_the_holder(tmp_path: Path) -> None:
    with hold(tmp_path, "flight run") as lock:
        assert lock.exists() and "pid " in lock.read_text()
        with pytest.raises(FolderBusy, match=r"in use by another flight run \(pid \d+"), hold(tmp_path, "flight run"):
            pass
    assert not (tmp_path / LOCK_NAME).exists()  # a clean exit leaves nothing
    with hold(tmp_path, "flight run"):  # and the folder can be held again
        pass


def test_another_process_is_refused_while_held(tmp_path: Path) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        from edgeae.folder_lock import FolderBusy, hold
        try:
            with hold({str(tmp_path)!r}, "scan"):
                print("held")
        except FolderBusy as exc:
            print("busy:", exc)
        """
    )
    with hold(tmp_path, "scan"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("busy:") and str(tmp_path) in out
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "held"


def test_a_killed_holders_lock_file_is_taken(tmp_path: Path) -> None:
    (tmp_path / LOCK_NAME).write_text("pid 1, 'gone', since then\n")  # left by a run killed with -9
    with hold(tmp_path, "decode"):
        pass
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_missing_folder_is_an_oserror(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError), hold(tmp_path / "nope", "decode"):
        pass

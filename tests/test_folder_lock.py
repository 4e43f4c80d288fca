"""edgeae.folder_lock: one process per output folder."""

from __future__ import annotations

import os
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


def test_another_user_s_lock_file_is_held_read_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In a shared folder the lock file may be another user's (0o644): opening it for writing is refused, and a
    killed holder's file stayed in the way for good (review s32). flock works on a read-only descriptor."""
    import os

    (tmp_path / LOCK_NAME).write_text("pid 1, 'gone', since then\n")
    real_open = os.open

    def other_users(path: object, flags: int, *a: object) -> int:
        if str(path).endswith(LOCK_NAME) and flags & os.O_RDWR:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *a)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", other_users)
    with hold(tmp_path, "scan"):
        pass
    (tmp_path / "sub").mkdir()  # no lock file there, and (as patched) none can be made: the OS's own error
    with pytest.raises(PermissionError), hold(tmp_path / "sub", "scan"):
        pass


def test_the_refusal_names_what_holds_the_folder(tmp_path: Path) -> None:
    """A scan refused by a training run's hold said 'in use by another scan' (review s32)."""
    busy = pytest.raises(FolderBusy, match=r"in use by another training run \(pid ")
    with hold(tmp_path, "training run"), busy, hold(tmp_path, "scan"):
        pass


def test_a_planted_symlink_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    """``hold`` followed a ``.edgeae.lock`` symlink, truncated the file it pointed to and wrote its note there
    (review s32)."""
    precious = tmp_path / "precious.txt"
    precious.write_text("precious data\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_NAME).symlink_to(precious)
    with pytest.raises(OSError, match="is a symbolic link, not edgeae's lock file"), hold(out, "ground session"):
        pass
    assert precious.read_text() == "precious data\n"


def test_a_file_system_without_locks_warns_and_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import errno

    import edgeae.folder_lock as fl

    def no_locks(fd: int, op: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fl.fcntl, "flock", no_locks)
    ran = False
    with caplog.at_level("WARNING"), hold(tmp_path, "ground session") as held:
        ran = True
    assert ran and held is None and "cannot lock files" in caplog.text  # None: the caller knows it is not held
    assert not (tmp_path / LOCK_NAME).exists()  # the file it made is not left behind


def test_a_planted_fifo_is_refused_not_waited_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another user's FIFO as ``.edgeae.lock``: the read-only fallback's open waited for a writer for ever (review
    s32); now it opens without blocking and the FIFO is refused as not a regular file."""
    import os
    import signal

    os.mkfifo(tmp_path / LOCK_NAME)
    real_open = os.open

    def other_users(path: object, flags: int, *a: object) -> int:
        if str(path).endswith(LOCK_NAME) and flags & os.O_RDWR:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *a)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", other_users)

    def hung(*_: object) -> None:
        raise TimeoutError("hold() blocked on the FIFO")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(5)
    try:
        with pytest.raises(OSError, match="not a regular file"), hold(tmp_path, "scan"):
            pass
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_a_lock_file_nfs_cannot_lock_read_only_says_whose_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    import edgeae.folder_lock as fl

    def nfs(fd: int, op: int) -> None:
        raise OSError(errno.EBADF, "Bad file descriptor")

    monkeypatch.setattr(fl.fcntl, "flock", nfs)
    refused = pytest.raises(OSError, match="locks only files opened for writing: it cannot be locked here")
    with refused, hold(tmp_path, "scan"):
        pass


def test_a_new_lock_file_is_writable_by_every_user(tmp_path: Path) -> None:
    """NFS locks only a file opened for writing: another user's 0o644 file could not be locked there."""
    import os
    import stat

    old = os.umask(0o022)
    try:
        with hold(tmp_path, "scan") as lock:
            assert lock is not None and stat.S_IMODE(os.stat(lock).st_mode) == 0o666
    finally:
        os.umask(old)


def test_a_dead_holder_s_note_is_not_taken_for_the_holder(tmp_path: Path) -> None:
    """A run holding another user's stale file read-only cannot rewrite its note: the refusal named the killed
    holder's work and pid as the holder (review s32). Any user may write the note: a pid no kernel takes is shown,
    not a traceback."""
    with hold(tmp_path, "scan") as lock:
        assert lock is not None
        lock.write_text("training run; pid 4194305, 'edgeae train ...', since then\n")  # above any pid_max
        with pytest.raises(FolderBusy) as err, hold(tmp_path, "flight run"):
            pass
        assert str(err.value).startswith(f"{tmp_path} is in use by another edgeae run (its lock file names ")
        assert "not running on this host" in str(err.value)
        for pid in ("99999999999999999999", "9999999999"):  # no kernel takes either: shown, not a traceback
            lock.write_text(f"training run; pid {pid}, 'x', since then\n")
            with pytest.raises(FolderBusy, match="in use by another training run"), hold(tmp_path, "flight run"):
                pass
        lock.write_text(f"scan; pid {os.getpid()}, 'edgeae scan --out a\nb\x1b[2J', since now\n")
        with pytest.raises(FolderBusy) as err, hold(tmp_path, "flight run"):
            pass
        assert "\n" not in str(err.value) and "\x1b" not in str(err.value)  # one line, no terminal escapes

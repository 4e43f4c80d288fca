"""edgeae.report (session 36, fixer j1; review s36 r8 #1, #3, #7): a report's page and images are replaced all or
nothing through the last step. Every file is written and fsynced before the first rename; a rename that fails part
way puts the earlier files back; Ctrl-C (SIGINT) waits until the renames are done; two writers in one process stage
apart; a failed first write leaves no empty folders."""

from __future__ import annotations

import errno
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _helpers_report import files, no_space_for_the_page, sections

import edgeae.imageio
from edgeae.report import stage_images, write_report

EARLIER, NEW = 10, 200


def _which(folder: Path, earlier: dict[str, bytes], new: dict[str, bytes]) -> str:
    """'earlier' or 'new' when ``folder`` holds exactly one whole report (nothing else), else what it holds."""
    now = files(folder)
    if now == earlier:
        return "earlier"
    page = now.get("index.html", b"")
    if set(now) == set(new) and all(now[n] == new[n] for n in now if n != "index.html") and b"<h1>new</h1>" in page:
        return "new"
    return f"mixed: {sorted(n for n in now if now.get(n) != earlier.get(n))}"


def _reference(tmp_path: Path) -> tuple[dict[str, bytes], dict[str, bytes]]:
    ref = tmp_path / "ref"
    write_report(ref, "new", sections(NEW))
    new = files(ref)
    write_report(ref, "earlier", sections(EARLIER))
    return files(ref), new


def _sweep(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    inject: Callable[[], None],
    before: bool,
) -> list[tuple[int, str, str]]:
    """Write an earlier report, then a new one into the same folder with ``inject`` run at the i-th call of
    ``os.NAME`` (before or after the real call), for every i the write makes; returns (i, outcome, error)."""
    earlier, new = _reference(tmp_path)
    real = getattr(os, name)
    seen: list[tuple[int, str, str]] = []
    for i in range(1, 200):
        out = tmp_path / f"run{i}"
        write_report(out, "earlier", sections(EARLIER))
        calls = [0]

        def wrapped(*args: Any, i: int = i, calls: list[int] = calls, **kwargs: Any) -> Any:
            calls[0] += 1
            if calls[0] == i and before:
                inject()
            result = real(*args, **kwargs)
            if calls[0] == i and not before:
                inject()
            return result

        monkeypatch.setattr(os, name, wrapped)
        error = ""
        try:
            write_report(out, "new", sections(NEW))
        except (OSError, KeyboardInterrupt) as exc:
            error = f"{type(exc).__name__}: {exc}"
        finally:
            monkeypatch.setattr(os, name, real)
        if calls[0] < i:  # the write made fewer calls: every one has been tried
            return seen
        seen.append((i, _which(out, earlier, new), error))
    raise AssertionError("the sweep did not end")


def _eio() -> None:
    raise OSError(errno.EIO, "Input/output error (injected)")


# ----------------------------------------------------------------------------- r8 #1: fsync, renames, Ctrl-C
def test_an_fsync_error_anywhere_leaves_one_whole_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An fsync that fails (EIO, ENOSPC, EDQUOT on NFS or a quota) after the images were renamed left the earlier page
    over the new images."""
    seen = _sweep(tmp_path, monkeypatch, "fsync", _eio, before=True)
    assert len(seen) >= 4, seen  # the page's and every staged image's fsync at least
    for i, outcome, error in seen:
        assert outcome == ("earlier" if error else "new"), (i, outcome, error)
    assert any(outcome == "earlier" for _, outcome, _ in seen)


@pytest.mark.parametrize("before", [True, False], ids=["before", "after"])
def test_a_rename_failing_part_way_puts_the_earlier_report_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, before: bool
) -> None:
    seen = _sweep(tmp_path, monkeypatch, "replace", _eio, before=before)
    for i, outcome, error in seen:
        assert outcome == ("earlier" if error else "new"), (i, outcome, error)
    moved = [error for _, _, error in seen if "cannot move" in error]
    assert moved, seen  # the renames into place were among the calls tried
    assert all("the earlier report is kept" in e for e in moved), moved


def _ctrl_c() -> None:
    os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C: Python raises KeyboardInterrupt at its next step


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals need the main thread")
def test_ctrl_c_during_the_renames_waits_until_they_are_done(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    seen = _sweep(tmp_path, monkeypatch, "replace", _ctrl_c, before=True)
    assert len(seen) >= 5, seen
    for i, outcome, error in seen:
        assert error.startswith("KeyboardInterrupt"), (i, outcome, error)  # the Ctrl-C is not lost
        assert outcome in ("earlier", "new"), (i, outcome, error)
    assert [o for _, o, _ in seen].count("new") >= 5  # from the first rename into place on: the new report whole
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # its handler put back


# ----------------------------------------------------------------------------- r8 #3: two writers in one process
def test_two_writers_in_one_process_lose_no_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both staged in img/.new-PID: the second writer's sweep removed the first one's live staging folder."""
    real = edgeae.imageio.write_image
    other: list[BaseException] = []

    def second_writer() -> None:
        try:
            write_report(tmp_path, "b", sections(NEW, ("b0", "b1")))
        except BaseException as exc:  # reported below
            other.append(exc)

    def write_image(path: Path, array: np.ndarray, **kwargs: Any) -> Path:
        if Path(path).name == "00-a1.png":  # the first writer is half way through its images
            t = threading.Thread(target=second_writer)
            t.start()
            t.join()
        return real(path, array, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(edgeae.imageio, "write_image", write_image)
    write_report(tmp_path, "a", sections(EARLIER, ("a0", "a1", "a2")))
    assert other == []
    img = tmp_path / "img"
    assert sorted(p.name for p in img.iterdir()) == [
        "00-a0.png",
        "00-a1.png",
        "00-a2.png",
        "00-b0.png",
        "00-b1.png",
        "bar.png",
    ]
    page = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert all(f"img/00-a{i}.png" in page for i in range(3))


def test_a_staging_folder_of_this_process_is_kept_while_live_and_removed_once_left(tmp_path: Path) -> None:
    """This process's own number: a folder it is writing now is kept, one an earlier process with the same number
    left (a container's pid 1 killed outright) is removed by a sweep of a caller that holds the folder (the demo); a
    plain write never sweeps this process's folders (review s36 r14 #5: it could take another thread's new one)."""
    from edgeae.report_files import sweep_leftovers

    live = stage_images(tmp_path)
    assert live.name.startswith(f".new-{os.getpid()}-")
    left = tmp_path / "img" / f".new-{os.getpid()}-old"
    left.mkdir()
    (left / "00-a.png").write_bytes(b"half")
    second = stage_images(tmp_path)
    assert second != live
    assert sorted(p.name for p in (tmp_path / "img").iterdir()) == sorted([live.name, second.name, left.name])
    assert sweep_leftovers(tmp_path, this_process=True) == [f"img/{left.name}"]
    assert sorted(p.name for p in (tmp_path / "img").iterdir()) == sorted([live.name, second.name])


# ----------------------------------------------------------------------------- r8 #7: a failed first write
def test_a_failed_first_write_into_a_new_folder_leaves_no_empty_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_space_for_the_page(monkeypatch)
    with pytest.raises(OSError, match="No space left"):
        write_report(tmp_path / "new" / "deep", "new", sections(NEW))
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    kept = tmp_path / "kept"
    (kept / "img").mkdir(parents=True)  # folders that were there before stay, empty or not
    with pytest.raises(OSError, match="No space left"):
        write_report(kept, "new", sections(NEW))
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == ["kept", "kept/img"]

"""A report folder's files replaced all or nothing (standard library only): the page, ``metrics.json`` and the images
in ``img/``, for :func:`edgeae.report.write_report` and the demo.

The images go to a staging folder ``img/.new-PID-XXXXXXXX``, one per call (:func:`staging`), the texts to temporary
files beside their targets (``.index.html.XXXXXXXX.tmp-PID``). :func:`replace_together` then

1. writes the texts and fsyncs every new file: a write error on NFS or a quota-limited mount (EIO, ENOSPC, EDQUOT)
   shows here, before anything is replaced;
2. links every file about to be replaced into ``STAGING/.old/``, so that it can be put back;
3. renames the new files into place, the images first, then the texts in the order given, one after the other with
   nothing in between; SIGINT and SIGTERM (Ctrl-C, ``kill``) are held until the last rename is done and then
   delivered (in the main thread; signals interrupt no other thread);
4. fsyncs the folders, so that the renames survive a power loss.

A failure or Ctrl-C in 1 or 2 leaves every earlier file as it was. A rename that fails in 3 puts back the files
already renamed, and the error line says so, or names the file that could not be put back. Only a run killed
outright (``kill -9``, a power loss) during 3 can leave some new files beside earlier ones.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from edgeae.atomic import fsync_folder, process_gone, temp_name

# img/.new-PID-XXXXXXXX (img/.new-PID before session 36's fixer j1): the images of a report being written
_STAGED = re.compile(r"\.new-(\d+)(?:-[a-z0-9_]+)?")
_LIVE: dict[str, tuple[int, int]] = {}  # this process's staging folders being written: path -> (device, inode)
_LIVE_LOCK = threading.Lock()


def missing_folders(folder: str | os.PathLike[str]) -> list[Path]:
    """``folder`` and those above it that do not exist yet, the deepest first (for :func:`remove_empty`)."""
    missing = []
    for f in (Path(folder), *Path(folder).parents):
        if os.path.lexists(f):
            break
        missing.append(f)
    return missing


def remove_empty(folders: list[Path]) -> None:
    """Remove each of ``folders`` (the deepest first) that is empty; a folder that holds anything stays."""
    for f in folders:
        with contextlib.suppress(OSError):
            f.rmdir()


def stage_images(out_dir: str | os.PathLike[str]) -> Path:
    """A new, empty staging folder ``out_dir/img/.new-PID-XXXXXXXX`` for one report's images (one per call: two
    writers in one process never share one); release it with :func:`release`. Staging folders that a run killed
    outright left are removed first: those of processes gone, and those of this process's number that it is not
    writing now (left by an earlier process with the same number, a container's pid 1)."""
    img = Path(out_dir) / "img"
    img.mkdir(parents=True, exist_ok=True)
    with _LIVE_LOCK:
        live = set(_LIVE.values())
    for entry in os.scandir(img):
        m = _STAGED.fullmatch(entry.name)
        if not m or not entry.is_dir(follow_symlinks=False):
            continue
        pid = int(m[1])
        if pid == os.getpid():
            st = entry.stat(follow_symlinks=False)
            if (st.st_dev, st.st_ino) in live:
                continue
        elif not process_gone(pid):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
    staged = Path(tempfile.mkdtemp(prefix=f".new-{os.getpid()}-", dir=img))
    st = os.stat(staged)
    with _LIVE_LOCK:
        _LIVE[str(staged)] = (st.st_dev, st.st_ino)
    return staged


def release(staged: Path) -> None:
    """Remove a staging folder of :func:`stage_images` and what it still holds."""
    shutil.rmtree(staged, ignore_errors=True)
    with _LIVE_LOCK:
        _LIVE.pop(str(staged), None)


@contextlib.contextmanager
def staging(out_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """A staging folder (:func:`stage_images`) for the block, removed after it; on an error also the folders that this
    call made (``img/``, ``out_dir`` and those above it) and that are still empty."""
    made = missing_folders(Path(out_dir) / "img")
    staged = stage_images(out_dir)
    try:
        yield staged
    except BaseException:
        release(staged)
        remove_empty(made)
        raise
    release(staged)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM while the block runs, then deliver them (Ctrl-C raises ``KeyboardInterrupt`` once the
    block is done). Outside the main thread nothing changes: Python delivers signals to the main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[signal.Signals] = []

    def hold(signum: int, frame: Any) -> None:
        got.append(signal.Signals(signum))

    old: dict[signal.Signals, Any] = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            handler = signal.getsignal(sig)
            if handler not in (signal.SIG_IGN, None):  # ignored stays ignored; None: set outside Python, left alone
                old[sig] = signal.signal(sig, hold)
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(got):
            signal.raise_signal(sig)


def _cannot_write(target: Path, exc: OSError) -> OSError:
    why = exc.strerror or str(exc)
    return OSError(exc.errno, f"cannot write {target}: {why}") if exc.errno is not None else OSError(why)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_texts(out: Path, texts: Mapping[str, str], temps: list[Path]) -> list[tuple[Path, Path]]:
    """Write each text to a temporary file beside its target (a symbolic link's file: the link stays) and fsync it;
    returns (temporary file, target) pairs. Each temporary file is added to ``temps`` before it is written."""
    token = secrets.token_hex(4)  # per call: two writers in one process never share a temporary file
    moves = []
    for name, text in texts.items():
        shown = out / name
        target = Path(os.path.realpath(shown))
        if target.is_dir():
            raise IsADirectoryError(errno.EISDIR, f"cannot write {shown}: it is a folder")
        tmp = temp_name(target.with_name(f"{target.name}.{token}"))
        temps.append(tmp)
        try:
            tmp.write_text(text, encoding="utf-8")
            _fsync(tmp)
        except OSError as exc:
            raise _cannot_write(shown, exc) from exc
        moves.append((tmp, target))
    return moves


def _keep_earlier(moves: list[tuple[Path, Path]], old: Path) -> dict[Path, Path]:
    """Link (else copy) every file that ``moves`` replaces into ``old``: target -> its earlier file, to put back."""
    old.mkdir()
    kept = {}
    for i, (_, dst) in enumerate(moves):
        if not os.path.lexists(dst):
            continue
        keep = old / str(i)
        try:
            try:
                os.link(dst, keep, follow_symlinks=False)
            except OSError:  # a file system without hard links
                shutil.copy2(dst, keep, follow_symlinks=False)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot keep {dst} to put back: {exc.strerror or exc}") from exc
        kept[dst] = keep
    return kept


def _put_back(done: list[Path], kept: dict[Path, Path]) -> list[str]:
    """Undo the renames onto ``done`` (the last first): each earlier file back, a file that was new removed; returns
    what could not be undone ('NAME (why)')."""
    failed = []
    for dst in reversed(done):
        try:
            if dst in kept:
                os.replace(kept[dst], dst)
            else:
                os.unlink(dst)
        except OSError as exc:
            failed.append(f"{dst.name} ({exc.strerror or exc})")
    return failed


def _rename_all(moves: list[tuple[Path, Path]], kept: dict[Path, Path]) -> tuple[Path, OSError, list[str]] | None:
    """Rename each source over its target in order; on a failure put back those done (:func:`_put_back`) and return
    (the target, the error, what could not be put back); None when every rename was done."""
    done: list[Path] = []
    for src, dst in moves:
        try:
            os.replace(src, dst)
        except BaseException as exc:  # an OSError; anything else is put back too, then raised as it is
            if not os.path.lexists(src):  # renamed all the same: put it back too
                done.append(dst)
            stuck = _put_back(done, kept)
            if not isinstance(exc, OSError):
                raise
            return dst, exc, stuck
        done.append(dst)
    return None


def replace_together(out_dir: str | os.PathLike[str], staged: Path, texts: Mapping[str, str]) -> None:
    """Replace ``out_dir/img/*`` by the images in ``staged`` (:func:`stage_images`) and each ``out_dir/NAME`` of
    ``texts`` (name -> UTF-8 text; renamed in that order, after the images) all or nothing (see the module's
    docstring). Raises ``OSError`` naming the file on a failure (the earlier files then stay, or are put back)."""
    out = Path(out_dir)
    img = staged.parent
    temps: list[Path] = []
    try:
        moves = [(f, img / f.name) for f in sorted(staged.iterdir()) if f.is_file()]
        for src, dst in moves:
            try:
                _fsync(src)
            except OSError as exc:
                raise _cannot_write(dst, exc) from exc
        moves += _write_texts(out, texts, temps)
        kept = _keep_earlier(moves, staged / ".old")
        with signals_held():  # from here to the last rename: nothing that waits, nothing but the renames
            failed = _rename_all(moves, kept)
        if failed is not None:
            dst, error, stuck = failed
            then = (
                "nothing was replaced: the earlier report is kept"
                if not stuck
                else f"{out} now holds part of the new report (could not put back {', '.join(stuck)}): run it again"
            )
            why = error.strerror or error
            raise OSError(error.errno, f"cannot move the new {dst.name} into {dst.parent}: {why}; {then}") from error
    finally:
        for tmp in temps:
            with contextlib.suppress(OSError):
                tmp.unlink()
    for folder in dict.fromkeys([img, out, *(dst.parent for _, dst in moves)]):
        fsync_folder(folder)

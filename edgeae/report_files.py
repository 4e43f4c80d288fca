"""A report folder's files replaced all or nothing (standard library only): the page, ``metrics.json`` and the images
in ``img/``, for :func:`edgeae.report.write_report` and the demo.

The images go to a staging folder ``img/.new-PID-XXXXXXXX``, one per call (:func:`staging`), the texts to temporary
files beside their targets (``.index.html.XXXXXXXX.tmp-PID``). :func:`replace_together` then

1. writes the texts and fsyncs every new file: a write error on NFS or a quota-limited mount (EIO, ENOSPC, EDQUOT)
   shows here, before anything is replaced;
2. links every file about to be replaced into ``STAGING/.old/``, so that it can be put back;
3. renames the new files into place, the images first, then the texts in the order given, one after the other with
   nothing in between;
4. fsyncs the folders, so that the renames survive a power loss, removes the staging folder (with ``.old``) and runs
   the caller's ``then`` (the demo removes the earlier run's images there).

SIGINT and SIGTERM (Ctrl-C, ``kill``) are held from 3 to the end of 4 and delivered after it (in the main thread;
signals interrupt no other thread; an asyncio loop's wakeup fd gets them once). A failure or Ctrl-C in 1 or 2 leaves
every earlier file as it was. A rename that fails in 3 puts back the files already renamed, and the error line says
so; an earlier file that cannot be put back either is kept in ``img/.earlier-PID-XXXXXXXX/`` under its own name, and
the error line says where. Only a run killed outright (``kill -9``, a power loss) during 3 can leave some new files
beside earlier ones; what such a run leaves (its staging folder, its temporary files) the next write removes
(:func:`sweep_leftovers`).
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
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from edgeae.atomic import fsync_folder, process_gone, remove_files, temp_name

# img/.new-PID-XXXXXXXX (img/.new-PID before session 36's fixer j1): the images of a report being written
_STAGED = re.compile(r"\.new-(\d+)(?:-[a-z0-9_]+)?")
_TEMP = re.compile(r"\..+\.tmp-(\d+)")  # a temporary file of edgeae.atomic.temp_name (.NAME.XXXXXXXX.tmp-PID)
_LIVE: dict[str, tuple[int, int]] = {}  # this process's staging folders being written: path -> (device, inode)
_LIVE_TEMPS: set[str] = set()  # this process's temporary files being written
_LIVE_LOCK = threading.Lock()  # held from a staging folder's mkdtemp to its record, and by a sweep of this process's


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


def _left(pid: int, this_process: bool) -> bool:
    """Whether what process ``pid`` was writing is left over: it runs no more (not this process, unless asked)."""
    if pid == os.getpid():
        return this_process
    return process_gone(pid)


def sweep_leftovers(out_dir: str | os.PathLike[str], this_process: bool = False) -> list[str]:
    """Remove what writes killed outright (``kill -9``, a power loss) left in ``out_dir``: staging folders
    ``img/.new-PID-*`` and temporary files ``.NAME.XXXXXXXX.tmp-PID``, those of processes that run no more. Those of a
    live process, this one included, stay; with ``this_process`` also this process's that it is not writing now (left
    by an earlier process with the same number, a container's pid 1): for a caller that holds the folder, as the demo
    does. Returns what it removed (``img/NAME`` for a folder), sorted. Best effort: what cannot be removed stays."""
    out = Path(out_dir)
    removed = []
    with _LIVE_LOCK if this_process else contextlib.nullcontext():  # no folder of ours between mkdtemp and record
        live = set(_LIVE.values())
        with contextlib.suppress(OSError):
            for entry in os.scandir(out / "img"):
                m = _STAGED.fullmatch(entry.name)
                if not m or not entry.is_dir(follow_symlinks=False) or not _left(int(m[1]), this_process):
                    continue
                if int(m[1]) == os.getpid():
                    st = entry.stat(follow_symlinks=False)
                    if (st.st_dev, st.st_ino) in live:
                        continue
                shutil.rmtree(entry.path, ignore_errors=True)
                if not os.path.lexists(entry.path):
                    removed.append(f"img/{entry.name}")

        def stale(name: str) -> bool:
            m = _TEMP.fullmatch(name)
            return m is not None and _left(int(m[1]), this_process) and str(out / name) not in _LIVE_TEMPS

        removed += remove_files(out, stale)
    return sorted(removed)


def stage_images(out_dir: str | os.PathLike[str]) -> Path:
    """A new, empty staging folder ``out_dir/img/.new-PID-XXXXXXXX`` for one report's images (one per call: two
    writers in one process never share one); release it with :func:`release`. What writes of processes gone left
    there is removed first (:func:`sweep_leftovers`)."""
    img = Path(out_dir) / "img"
    img.mkdir(parents=True, exist_ok=True)
    sweep_leftovers(out_dir)
    with _LIVE_LOCK:
        staged = Path(tempfile.mkdtemp(prefix=f".new-{os.getpid()}-", dir=img))
        st = os.stat(staged)
        _LIVE[str(staged)] = (st.st_dev, st.st_ino)
    return staged


def release(staged: Path) -> None:
    """Remove a staging folder of :func:`stage_images` and what it still holds (unless it holds the only copy of an
    earlier file that could not be put back, named in the error)."""
    with _LIVE_LOCK:
        keep = str(staged) in _KEEP
    if not keep:
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


_HELD = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def signals_held(got: list[signal.Signals]) -> Iterator[None]:
    """Hold SIGINT and SIGTERM while the block runs: each one that arrives is added to ``got`` and nothing else
    happens; the caller delivers them with :func:`deliver` when its work is done. The handlers and the wakeup fd (an
    asyncio loop's, which would else be told twice) are put back when the block ends, with the two signals blocked
    meanwhile; a signal that still finds the hold in place (taken by another thread) puts everything back and is
    passed on. Outside the main thread nothing changes: Python delivers signals to the main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old: dict[signal.Signals, Any] = {}
    holding = [True]
    wakeup = [-1]

    def hold(signum: int, frame: Any) -> None:
        if holding[0]:
            got.append(signal.Signals(signum))
            return
        put_back()  # the block is over but this handler is still set: its restore was cut short
        signal.raise_signal(signum)

    def put_back() -> None:
        holding[0] = False
        block = hasattr(signal, "pthread_sigmask") and old
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, list(old)) if block else None
        try:
            for sig, handler in old.items():
                if signal.getsignal(sig) is hold:
                    signal.signal(sig, handler)
            if wakeup[0] != -1:
                signal.set_wakeup_fd(wakeup[0])
                wakeup[0] = -1
        finally:
            if mask is not None:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)

    try:
        wakeup[0] = signal.set_wakeup_fd(-1)  # first: a signal from here on reaches the fd only when delivered
        for sig in _HELD:
            handler = signal.getsignal(sig)
            if handler not in (signal.SIG_IGN, None):  # ignored stays ignored; None: set outside Python, left alone
                old[sig] = signal.signal(sig, hold)
        yield
    finally:
        put_back()


def deliver(got: list[signal.Signals]) -> None:
    """Deliver the signals :func:`signals_held` held, each once (Ctrl-C raises ``KeyboardInterrupt`` here)."""
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
        with _LIVE_LOCK:
            _LIVE_TEMPS.add(str(tmp))
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


def _put_back(done: list[Path], kept: dict[Path, Path]) -> list[tuple[Path, str]]:
    """Undo the renames onto ``done`` (the last first): each earlier file back, a file that was new removed; returns
    what could not be undone: (target, why)."""
    failed = []
    for dst in reversed(done):
        try:
            if dst in kept:
                os.replace(kept[dst], dst)
            else:
                os.unlink(dst)
        except OSError as exc:
            failed.append((dst, str(exc.strerror or exc)))
    return failed


def _rename_all(
    moves: list[tuple[Path, Path]], kept: dict[Path, Path]
) -> tuple[Path, OSError, list[tuple[Path, str]]] | None:
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


def _keep_stuck(img: Path, stuck: list[tuple[Path, str]], kept: dict[Path, Path]) -> str:
    """Move the earlier copy of each file that could not be put back out of the staging folder (removed after) into
    ``img/.earlier-PID-XXXXXXXX/`` under its own name; returns what the error line says of them ("" when none)."""
    held = [dst for dst, _ in stuck if dst in kept]
    if not held:
        return ""
    try:
        keep = Path(tempfile.mkdtemp(prefix=f".earlier-{os.getpid()}-", dir=img))
    except OSError:
        keep = None
    said = []
    for dst in held:
        name = dst.name if keep is None or not os.path.lexists(keep / dst.name) else f"{kept[dst].name}-{dst.name}"
        try:
            if keep is None:
                raise OSError("no folder to keep it in")
            os.replace(kept[dst], keep / name)
            said.append(f"the earlier {dst.name} is kept in {keep}" + ("" if name == dst.name else f" as {name}"))
        except OSError:  # left where it is: its staging folder is then not removed
            with _LIVE_LOCK:
                _KEEP.add(str(kept[dst].parent.parent))
            said.append(f"the earlier {dst.name} is kept as {kept[dst]}")
    if keep is not None:
        with contextlib.suppress(OSError):
            keep.rmdir()  # only when nothing could be moved there
    return "; " + "; ".join(said)


_KEEP: set[str] = set()  # staging folders that hold the only copy of an earlier file: release() leaves them


def replace_together(
    out_dir: str | os.PathLike[str],
    staged: Path,
    texts: Mapping[str, str],
    then: Callable[[], None] | None = None,
) -> None:
    """Replace ``out_dir/img/*`` by the images in ``staged`` (:func:`stage_images`) and each ``out_dir/NAME`` of
    ``texts`` (name -> UTF-8 text; renamed in that order, after the images) all or nothing, then fsync the folders,
    remove ``staged`` and run ``then`` (renames and unlinks only: SIGINT and SIGTERM are still held; see the module's
    docstring). Raises ``OSError`` naming the file on a failure (the earlier files then stay, or are put back)."""
    out = Path(out_dir)
    img = staged.parent
    temps: list[Path] = []
    got: list[signal.Signals] = []
    try:
        moves = [(f, img / f.name) for f in sorted(staged.iterdir()) if f.is_file()]
        for src, dst in moves:
            try:
                _fsync(src)
            except OSError as exc:
                raise _cannot_write(dst, exc) from exc
        moves += _write_texts(out, texts, temps)
        kept = _keep_earlier(moves, staged / ".old")
        with signals_held(got):  # from here to the end: renames, folder fsyncs and unlinks only, nothing that waits
            failed = _rename_all(moves, kept)
            if failed is not None:
                dst, error, stuck = failed
                then_ = (
                    "nothing was replaced: the earlier report is kept"
                    if not stuck
                    else f"{out} now holds part of the new report (could not put back "
                    f"{', '.join(f'{d.name} ({why})' for d, why in stuck)}){_keep_stuck(img, stuck, kept)}: "
                    "run it again"
                )
                why = error.strerror or error
                raise OSError(
                    error.errno, f"cannot move the new {dst.name} into {dst.parent}: {why}; {then_}"
                ) from error
            for folder in dict.fromkeys([img, out, *(d.parent for _, d in moves)]):
                fsync_folder(folder)
            release(staged)  # the earlier files' links in .old are not needed any more
            if then is not None:
                then()
    finally:
        for tmp in temps:
            with contextlib.suppress(OSError):
                tmp.unlink()
        with _LIVE_LOCK:
            _LIVE_TEMPS.difference_update(str(t) for t in temps)
        deliver(got)  # after the write is finished (review s36 r14 #1)

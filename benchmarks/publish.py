"""Staging and publishing a stage's output: the staging copy's snapshot, moving what a run wrote into the published
folder, the per-stage record in ``stages.json`` (updated under a lock) and holding Ctrl-C back while a stage is
published (used by ``python -m benchmarks``; the stage's command itself runs from :mod:`benchmarks.stage_command`)."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import signal
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from benchmarks.report import STAGES_REMEDY, load_record, write_atomic

ROOT = Path(__file__).resolve().parent.parent
"""The repository: stage commands name its scripts relative to it and run with it as their working folder."""
WORK = ".work"
"""Under --out: staging/<stage> (a run's output until it is published), logs/, the locks (all git-ignored)."""


def shown_path(path: Path) -> str:
    """``path`` as commands and pages name it: relative to the repository when inside it, else absolute."""
    try:
        return path.relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


OUTPUT_SUFFIXES = (".md", ".json", ".png")
"""The files a stage record lists: tables, results and plots (not models, frames or logs)."""


def written_since(folder: Path, t0: float) -> list[str]:
    """Paths (relative to ``folder``, sorted) of the tables, JSON and plots modified at or after ``t0`` (epoch s;
    1 s of slack for file systems with coarse timestamps)."""
    if not folder.is_dir():
        return []
    return sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.suffix in OUTPUT_SUFFIXES and p.is_file() and p.stat().st_mtime >= t0 - 1.0
    )


def earlier_runs(folder: Path, written: list[str], previous: dict[str, Any] | None) -> dict[str, Any]:
    """For each output in ``folder`` this run did not write: the run that did, from the stage's previous record
    (its size, date and commit; None when that record does not say)."""
    mine = set(written)
    out: dict[str, Any] = {}
    prev = previous or {}
    where = prev.get("machine") or {}
    origin = (
        {"size": prev.get("size"), "date": where.get("date"), "commit": where.get("commit"), "listed": "files" in prev}
        if prev
        else None
    )
    for rel in written_since(folder, float("-inf")):
        if rel in mine:
            continue
        # a record from before files were listed showed its whole folder: those files count as its run's
        if "files" not in prev or rel in prev["files"]:
            out[rel] = origin
        else:
            out[rel] = (prev.get("earlier") or {}).get(rel)
    return out


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file (and link) under ``folder``: relative path -> (mtime in ns, size)."""
    if not folder.is_dir():
        return {}
    found = {}
    for p in folder.rglob("*"):
        if p.is_symlink() or p.is_file():
            st = p.lstat()
            found[p.relative_to(folder).as_posix()] = (st.st_mtime_ns, st.st_size)
    return found


TEXT_SUFFIXES = (".md", ".json", ".jsonl", ".txt", ".csv", ".log")
"""Promoted files in which the staging folder's name is replaced by the published one (their own commands)."""


class PublishError(Exception):
    """Publishing a stage's files failed (``why``, one line). ``partial``: the error came while the copies were
    being renamed into place, so the published folder may hold some of them; otherwise it is exactly as it was."""

    def __init__(self, why: str, partial: bool) -> None:
        super().__init__(why)
        self.why, self.partial = why, partial


def _blocking(published: Path, rel: str) -> Path | None:
    """The highest folder of ``rel`` that exists in ``published`` as something other than a folder (a file the
    stage replaced with a folder), or None."""
    p = published
    for part in Path(rel).parts[:-1]:
        p = p / part
        if not p.is_dir() and (p.exists() or p.is_symlink()):  # a link to a folder counts as one
            return p
        if not p.exists():
            return None
    return None


def promote(staging: Path, published: Path, before: dict[str, tuple[int, int]]) -> tuple[list[str], list[str]]:
    """Publish the files a run wrote in ``staging`` (new, or changed since ``before``) into ``published`` and delete
    there the files the run deleted from its copy; returns (written, deleted), relative paths. In two phases: each
    file is first copied beside its place (``.NAME.tmp-<pid>``; staging keeps its whole copy); only when every copy
    succeeded are they renamed into place and the deletions applied. An error in the first phase removes the copies
    and the folders made for them, leaving ``published`` exactly as it was; any error raises :class:`PublishError`.
    A stage that records its own command line (``--out <staging>``) gets the published folder named there instead:
    before the copies, the staging path as the stage was given it (:func:`shown_path`) is replaced in its text files
    in the staging copy, which also turns the absolute form of a path inside the repository into the published one."""
    try:
        was, now_named = shown_path(staging).encode(), shown_path(published).encode()
        now = snapshot(staging)
        written = sorted(rel for rel, sig in now.items() if before.get(rel) != sig)
        deleted = sorted(rel for rel in before if rel not in now)
        for rel in written:
            src = staging / rel
            if src.suffix in TEXT_SUFFIXES and not src.is_symlink():
                data = src.read_bytes()
                if was in data:  # written beside it and renamed: a full disk leaves the staged file whole
                    write_atomic_bytes(src, data.replace(was, now_named))
    except OSError as exc:
        raise PublishError(_why(exc, staging), partial=False) from None
    temps: dict[str, Path] = {}
    made: list[Path] = []  # folders made in published for the copies, outermost first
    try:
        for rel in written:
            dst = published / rel
            block = _blocking(published, rel)
            if block is not None and block.relative_to(published).as_posix() not in deleted:
                raise OSError(errno.ENOTDIR, "a file of the published folder is in the way", str(block))
            if block is None:
                for parent in reversed([dst.parent, *dst.parent.parents]):
                    if parent.is_relative_to(published) and not parent.is_dir():
                        parent.mkdir()
                        made.append(parent)
                home, name = dst.parent, dst.name
            else:  # its folder replaces a file: copied beside that file, moved into the folder when it is made
                home, name = block.parent, "-".join(dst.relative_to(block.parent).parts)
            tmp = home / f".{name}.tmp-{os.getpid()}"
            while tmp in temps.values():  # two names that the joining made one
                tmp = tmp.with_name(f"{tmp.name}-")
            temps[rel] = tmp
            tmp.unlink(missing_ok=True)
            shutil.copy2(staging / rel, tmp, follow_symlinks=False)
    except OSError as exc:
        _remove(temps.values(), made)
        raise PublishError(_why(exc, published), partial=False) from None
    try:
        for rel in written:
            dst = published / rel
            block = _blocking(published, rel)
            if block is not None:
                block.unlink()
                dst.parent.mkdir(parents=True, exist_ok=True)
            if dst.is_dir() and not dst.is_symlink():  # a folder the stage replaced with a file
                shutil.rmtree(dst)
            os.replace(temps[rel], dst)
            del temps[rel]
        for rel in deleted:
            gone = published / rel
            try:
                if gone.is_dir() and not gone.is_symlink():  # a folder now: it holds what replaced the file
                    continue
                gone.unlink(missing_ok=True)
            except NotADirectoryError:  # its folder was replaced by a file
                continue
            for parent in gone.parents:  # the folders the stage removed with them, when now empty
                if parent == published or not parent.is_dir() or any(parent.iterdir()):
                    break
                parent.rmdir()
    except OSError as exc:
        _remove(temps.values(), made)  # only the folders left empty go
        raise PublishError(_why(exc, published), partial=True) from None
    return written, deleted


def _why(exc: OSError, where: Path) -> str:
    """One line for ``exc``: what went wrong and the path it happened at (``where`` when it names none)."""
    return f"{exc.strerror or exc} ({exc.filename or where})"


def _remove(temps: Iterable[Path], made: list[Path]) -> None:
    """Remove the copies not (yet) renamed into place and the folders made for them (when empty)."""
    for tmp in temps:
        with suppress(OSError):
            tmp.unlink(missing_ok=True)
    for folder in reversed(made):
        with suppress(OSError):
            folder.rmdir()


def write_atomic_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` beside ``path``, then rename it over ``path`` (its mode kept): a reader never sees half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        shutil.copymode(path, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def locked(path: Path, wait: bool = True) -> Iterator[bool]:
    """Hold an exclusive flock on ``path`` (created); yields False at once when ``wait`` is False and another
    process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def update_record(out: Path, name: str, change: Callable[[dict[str, Any] | None], dict[str, Any]]) -> None:
    """Replace stage ``name``'s record in ``out/stages.json`` with ``change(current record)``: re-read, changed and
    renamed into place under the lock, so concurrent ``--only`` runs into one folder keep each other's records."""
    path = out / "stages.json"
    with locked(out / WORK / "stages.lock"):
        status = load_record(path, STAGES_REMEDY) if path.is_file() else {}
        status[name] = change(status.get(name))
        write_atomic(path, json.dumps(status, indent=2))


@contextmanager
def sigint_deferred() -> Iterator[list[int]]:
    """Hold Ctrl-C back while the body runs (publishing a stage: its files and record go together); the list it
    yields holds the signals that arrived meanwhile. SIGTERM and SIGHUP are held back too where a Python handler
    takes them (``python -m benchmarks`` turns each into Ctrl-C), and handed to that handler afterwards in the order
    they came (the Ctrl-C it raises is dropped: the list says to stop); one the caller ignores (``nohup``'s SIGHUP,
    a background shell's SIGINT: until session 39 an ignored SIGINT was held back and then stopped the run), or whose
    default ends the process, is left as it is. Outside the main thread nothing can be held back."""
    got: list[int] = []
    try:
        ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # a background shell's: it stays ignored
        old = None if ignored else signal.signal(signal.SIGINT, lambda signum, frame: got.append(signum))
    except ValueError:  # not the main thread
        yield got
        return
    handlers = {int(sig): signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}
    taken = {signum: handler for signum, handler in handlers.items() if callable(handler)}
    for signum in taken:
        signal.signal(signum, lambda signum, frame: got.append(signum))
    try:
        yield got
    finally:
        if not ignored:
            signal.signal(signal.SIGINT, old)
        for signum, handler in taken.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(got):  # each handler records its signal; the stop it raises is what got says
            if signum in taken:
                with suppress(KeyboardInterrupt):
                    taken[signum](signum, None)

"""Staging and publishing a stage's output: the staging copy's snapshot, moving what a run wrote into the published
folder, the per-stage record in ``stages.json`` (updated under a lock), running one stage command with its output
teed to a log, and holding Ctrl-C back while a stage is published (used by ``python -m benchmarks``)."""

from __future__ import annotations

import codecs
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

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


def promote(staging: Path, published: Path, before: dict[str, tuple[int, int]]) -> tuple[list[str], list[str]]:
    """Move the files a run wrote in ``staging`` (new, or changed since ``before``) into ``published``, file by file,
    and delete there the files the run deleted from its copy; returns (written, deleted), relative paths. A stage
    that records its own command line (``--out <staging>``) gets the published folder named there instead: the
    staging path as the stage was given it (:func:`shown_path`) is replaced in its text files, which also turns the
    absolute form of a path inside the repository into the published one."""
    was, now_named = shown_path(staging).encode(), shown_path(published).encode()
    now = snapshot(staging)
    written = sorted(rel for rel, sig in now.items() if before.get(rel) != sig)
    deleted = sorted(rel for rel in before if rel not in now)
    for rel in deleted:
        (published / rel).unlink(missing_ok=True)
        for parent in (published / rel).parents:  # the folders the stage removed with them, when now empty
            if parent == published or not parent.is_dir() or any(parent.iterdir()):
                break
            parent.rmdir()
    for rel in written:
        dst = published / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.is_dir() and not dst.is_symlink():  # a folder the stage replaced with a file
            shutil.rmtree(dst)
        shutil.move(staging / rel, dst)  # a rename, or a copy where .work is on another file system (EXDEV)
        if dst.suffix in TEXT_SUFFIXES and not dst.is_symlink():
            data = dst.read_bytes()
            if was in data:
                dst.write_bytes(data.replace(was, now_named))
    return written, deleted


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


def run_command(argv: list[str], log: IO[bytes], env: dict[str, str]) -> int:
    """Run one stage command in the repository, its output (stdout and stderr together) shown and written to
    ``log``; returns its exit status. On Ctrl-C the command gets SIGINT (killed after 10 s) and this re-raises."""
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if proc.stdout is None:  # for the type checker: stdout=PIPE always gives one
        raise RuntimeError("no pipe from the stage command")
    decode = codecs.getincrementaldecoder("utf-8")(errors="replace").decode
    try:
        while chunk := os.read(proc.stdout.fileno(), 65536):  # what is there, at once (a tee)
            log.write(chunk)
            log.flush()
            sys.stdout.write(decode(chunk))
            sys.stdout.flush()
        return proc.wait()
    except KeyboardInterrupt:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        raise
    finally:
        proc.stdout.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@contextmanager
def sigint_deferred() -> Iterator[list[int]]:
    """Hold Ctrl-C back while the body runs (publishing a stage: its files and record go together); the list it
    yields holds the signals that arrived meanwhile. Outside the main thread nothing can be held back."""
    got: list[int] = []
    try:
        old = signal.signal(signal.SIGINT, lambda signum, frame: got.append(signum))
    except ValueError:  # not the main thread
        yield got
        return
    try:
        yield got
    finally:
        signal.signal(signal.SIGINT, old)

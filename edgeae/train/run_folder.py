"""The run folder of a training: held by one trainer for the whole run (a second one is refused before it
writes anything), and how a checkpoint records the train and val files it read from a folder or named dataset.
Used by the CAE trainer (:mod:`edgeae.train.cae`) and the VAE trainer (:mod:`edgeae.train.vae`)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path


def recorded_files(files: list[Path], data: str) -> list[str]:
    """How a checkpoint records its train or val files (``extra["train_files"]``, ``extra["val_files"]``): a
    folder's by path relative to it (``day1/IMG_0004.png``: camera names repeat across subfolders), a named
    dataset's by file name (its split lists them). The VAE trainer records a folder's the same way."""
    from edgeae.datasets import SPLITS

    if data in SPLITS:
        return [p.name for p in files]
    return [p.relative_to(data).as_posix() for p in files]


@contextlib.contextmanager
def held_run_folder(out: Path, resume: bool, check: Callable[[], object]) -> Iterator[None]:
    """Hold the run folder ``out`` for this training (:func:`edgeae.folder_lock.hold`) while the block runs: a
    second trainer on the same folder is refused at once with :class:`~edgeae.folder_lock.FolderBusy`, before it
    checks or writes anything. A new run's folder is made first, and removed again (with the folders made for it)
    if the run is refused or fails before writing into it; a resumed run's folder must exist (``check``: the
    resume check, which says why when it does not)."""
    from edgeae.folder_lock import hold

    made: list[Path] = []
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} is a file, not a run folder")
    if resume and not out.is_dir():
        check()  # refuses: no run there
    if not resume:
        made = [f for f in (out, *out.parents) if not f.exists()]
    try:
        for f in reversed(list(made)):  # the outermost first
            try:
                f.mkdir()
            except FileExistsError:  # made meanwhile by another process: not ours to remove
                made.remove(f)
            except OSError as exc:  # a read-only disk, /proc, a permission: say which folder, not a bare errno
                made.remove(f)
                raise OSError(f"run folder {out}: cannot make {f} ({exc.strerror or exc})") from exc
        with hold(out, "training run"):
            yield
    except BaseException:
        for f in made:  # the deepest first; one the run wrote into is not empty and stays
            with contextlib.suppress(OSError):
                f.rmdir()
        raise


TRAINED_FILES = ("best.pt", "metrics.json", "best_state.pt")  # what a run that trained leaves (best_state: VAE)


def refuse_trained_out(out: Path, kind: str) -> None:
    """Refuse a new run into ``out`` where an earlier run left its trained model (:data:`TRAINED_FILES`) but no
    ``last.pt`` to resume: the new run would replace them without a word. Training has no flag to overwrite."""
    if (out / "last.pt").exists():
        raise FileExistsError(
            f"{out} already holds a run (last.pt): pass --resume {out} (edgeae train {kind} --resume {out}) or "
            "choose another --out"
        )
    found = [name for name in TRAINED_FILES if (out / name).exists()]
    if found:
        raise FileExistsError(
            f"{out} already holds the trained model of an earlier run ({', '.join(found)}; no last.pt to resume): "
            "choose another --out, or move those files away to train into it again"
        )


def mixed_run(out: Path) -> str | None:
    """What is wrong with run folder ``out`` when its ``config.json`` and ``last.pt`` are of different model kinds
    (a CAE config beside a VAE state: neither trainer can resume it), else None."""
    from edgeae.train.resume import ResumeError, _read_state, config_kind, run_kind

    configured = run_kind(out)
    try:
        blob = _read_state(out)
    except ResumeError:
        return None
    saved = blob.get("kind") or config_kind(blob.get("config") or {})
    if configured is None or saved is None or configured == saved:
        return None
    return (
        f"{out} mixes two runs: its config.json is of a {configured.upper()} run, its last.pt of a {saved.upper()} "
        "run, so neither edgeae train cae nor edgeae train vae can resume it; start a new run in another --out"
    )


@contextlib.contextmanager
def named_mixture(out: Path, errors: tuple[type[Exception], ...] = (ValueError,)) -> Iterator[None]:
    """Turn a refused resume of ``out`` (one of ``errors``: a :class:`~edgeae.train.resume.ResumeError` by default)
    into the :func:`mixed_run` message where the folder mixes two runs (looked for only once refused)."""
    try:
        yield
    except errors as exc:
        why = mixed_run(out) if (out / "last.pt").is_file() else None
        if why is None:
            raise
        raise type(exc)(why) from None

"""Resumable training: a run folder's ``last.pt`` holds everything needed to continue a stopped run.

``last.pt`` (``torch.save`` dict, written atomically) carries the model and optimiser state, the learning-rate
schedule, the epoch and the batch inside it reached, the partial epoch's loss sums, the loss history of every
epoch so far, the training-data manifest hash and, where the trainer passes its files, each file's name, size and
SHA-256 (so a refusal names the files that changed: :mod:`edgeae.train.resume_files`). Per-epoch randomness (crop
positions, augmentation, masks, shuffling) is derived from ``(seed, epoch)`` (never torch's global RNG, which
``last.pt`` no longer records and a resume leaves alone), so a resumed run draws exactly the batches the
uninterrupted run would have drawn. A run refuses to resume on different data or a different config. ``last.pt``
is read with ``weights_only=True``: a file that holds anything but tensors, numbers, strings and containers
(pickled code) is refused, never run.

A :class:`Deadline` ends training cleanly: at a wall-clock budget (``--time-budget 90m``) or on SIGINT/SIGTERM
(``nohup`` runs stopped with ``kill``), the trainer finishes the current batch, writes ``last.pt`` and returns;
the command line then exits with :func:`stop_exit_status` (not 0: a chain ``train ... && gate ...`` stops there).
The deadline, the exit statuses and the mid-epoch saves (:class:`Autosave`) live in :mod:`edgeae.train.run_clock`;
their names are importable from here too.

``last.pt`` also records the kind of model (``cae``/``vae``) and whether the run is complete, so a run is only
resumed by its own trainer and a finished run is not silently trained further (:func:`check_resume`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeae._optional import require
from edgeae.atomic import atomic_path, remove_stale_temps
from edgeae.train.resume_files import DataFiles as DataFiles
from edgeae.train.resume_files import data_change as data_change
from edgeae.train.resume_files import file_records

# the run's clock (time budget, signals, exit statuses, mid-epoch saves); the trainers look Deadline up here
from edgeae.train.run_clock import CHECKPOINT_EVERY_S as CHECKPOINT_EVERY_S
from edgeae.train.run_clock import EXIT_BUDGET as EXIT_BUDGET
from edgeae.train.run_clock import EXIT_SIGINT as EXIT_SIGINT
from edgeae.train.run_clock import EXIT_SIGTERM as EXIT_SIGTERM
from edgeae.train.run_clock import Autosave as Autosave
from edgeae.train.run_clock import Deadline as Deadline
from edgeae.train.run_clock import parse_duration as parse_duration
from edgeae.train.run_clock import stop_exit_status as stop_exit_status
from edgeae.train.run_folder import TRAINED_FILES

STATE_FILE = "last.pt"
STATE_VERSION = 1


# Config keys that may change between a run and its resumption (they do not change what is learned).
RESUMABLE_CHANGES = frozenset(
    {"epochs", "time_budget", "progress", "threads", "device", "data_root", "out", "resume", "zoo_name", "zoo_force"}
)  # data_root: where the same files are (the manifest hash, by name, size and content, is checked); zoo_name and
# zoo_force: where a complete run is installed (--zoo-name, --force), set at the start or on any resume
# Config keys added after runs were saved, with the value those runs had in effect.
ADDED_LATER: dict[str, object] = {"data_workers": 1}


class ResumeError(ValueError):
    """A run folder cannot be resumed (missing state, other data, other config, another kind, complete)."""


class TrainingDiverged(ValueError):
    """The loss became NaN or infinite: the run cannot go on (a user error: too high a learning rate)."""


@dataclass
class TrainState:
    """Where a run stands: ``epoch`` (1-based) and ``batch`` (batches of it already done)."""

    epoch: int = 1
    batch: int = 0
    loss_sum: float = 0.0
    loss_count: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_val: float = float("inf")
    best_epoch: int = -1
    seconds: float = 0.0  # training seconds spent in the current epoch before the last stop
    segments: list[dict[str, Any]] = field(default_factory=list)  # one entry per start/resume
    complete: bool = False  # the run finished (all its epochs, or stopped early) and wrote its final files
    early_stop: bool = False  # it finished by early stopping (patience): more epochs would not train on
    # crops each epoch trains (the config's crops_per_epoch); None in a last.pt written before it was recorded
    crops_per_epoch: int | None = None

    @property
    def epochs_done(self) -> int:
        """Epochs finished (a partly trained epoch does not count)."""
        return self.epoch - 1


def account_batch(state: TrainState, value: float, n: int, epoch: int, batch: int) -> None:
    """Add one finished batch (mean loss ``value`` over ``n`` samples) to ``state``; a non-finite loss stops
    the run with the epoch and batch where it happened."""
    if not math.isfinite(value):
        raise TrainingDiverged(
            f"training diverged: the loss became {value} at epoch {epoch}, batch {batch + 1}; lower the learning rate"
        )
    state.loss_sum += value * n
    state.loss_count += n
    state.batch = batch + 1


def save_state(
    folder: str | os.PathLike[str],
    model: Any,
    optimizer: Any,
    scheduler: Any,
    state: TrainState,
    config: dict[str, Any],
    data_hash: str,
    kind: str = "",
    files: Sequence[str | os.PathLike[str]] | DataFiles | None = None,
) -> Path:
    """Write ``folder/last.pt`` atomically (``kind``: the trainer's model kind, checked by :func:`check_resume`;
    ``files``: the training and validation files ``data_hash`` was made of, recorded one by one so that a resume on
    changed data names them; the trainers pass the :class:`DataFiles` they read once at the start, so a save does
    not read the data again). Temporary files a killed writer left in ``folder`` are removed first."""
    torch = require("torch")
    path = Path(folder) / STATE_FILE
    remove_stale_temps(folder)
    records = file_records(files, str(config.get("data", "")), data_hash)
    blob = {
        "version": STATE_VERSION,
        "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "state": {
            "epoch": state.epoch,
            "batch": state.batch,
            "loss_sum": state.loss_sum,
            "loss_count": state.loss_count,
            "history": state.history,
            "best_val": state.best_val,
            "best_epoch": state.best_epoch,
            "seconds": state.seconds,
            "segments": state.segments,
            "complete": state.complete,
            "early_stop": state.early_stop,
            **({"crops_per_epoch": state.crops_per_epoch} if state.crops_per_epoch is not None else {}),
        },
        "config": config,
        "data_hash": data_hash,
        **({"files": records} if records else {}),
        **({"kind": kind} if kind else {}),
    }
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)
    return path


def load_state(
    folder: str | os.PathLike[str],
    model: Any,
    optimizer: Any,
    scheduler: Any,
    config: dict[str, Any],
    data_hash: str,
    files: Sequence[str | os.PathLike[str]] | DataFiles | None = None,
    blob: dict[str, Any] | None = None,
) -> TrainState:
    """Restore ``folder/last.pt`` into ``model``/``optimizer``/``scheduler`` after checking data and config
    (:func:`check_state`), then remove the temporary files a killed writer left in ``folder``. ``blob``: its contents
    as :func:`check_state` returned them (the folder held since), so that it is not read again. Torch's global RNG
    is left as it is (a ``last.pt`` written before session 35 records it; training never draws from it)."""
    blob = _read_state(folder) if blob is None else blob
    _check_blob(folder, blob, config, data_hash, files)
    model.load_state_dict(blob["model"])
    optimizer.load_state_dict(blob["optimizer"])
    if scheduler is not None and blob.get("scheduler") is not None:
        scheduler.load_state_dict(blob["scheduler"])
    remove_stale_temps(folder)  # the checks passed: this run takes the folder
    s = blob["state"]
    return TrainState(
        epoch=int(s["epoch"]),
        batch=int(s["batch"]),
        loss_sum=float(s["loss_sum"]),
        loss_count=int(s["loss_count"]),
        history=list(s["history"]),
        best_val=float(s["best_val"]),
        best_epoch=int(s["best_epoch"]),
        seconds=float(s.get("seconds", 0.0)),
        segments=list(s.get("segments", [])),
        complete=_was_complete(Path(folder), s),
        early_stop=bool(s.get("early_stop", False)),
        crops_per_epoch=int(s["crops_per_epoch"]) if s.get("crops_per_epoch") is not None else None,
    )


def check_state(
    folder: str | os.PathLike[str],
    config: dict[str, Any],
    data_hash: str,
    files: Sequence[str | os.PathLike[str]] | DataFiles | None = None,
    blob: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Refuse (a :class:`ResumeError`) to resume the run in ``folder`` on other data (``data_hash``; ``files``: those
    it was made of, to name the ones that changed) or another ``config`` (the keys of :data:`RESUMABLE_CHANGES`
    aside): what :func:`load_state` checks, for the trainers to call right after hashing the data, before any image
    is decoded. ``blob``: its ``last.pt`` contents as :func:`read_resumable` read them (else it is read here).
    Returns them, for :func:`load_state` (``blob``)."""
    blob = _read_state(folder) if blob is None else blob
    _check_blob(folder, blob, config, data_hash, files)
    return blob


def _check_blob(
    folder: str | os.PathLike[str],
    blob: dict[str, Any],
    config: dict[str, Any],
    data_hash: str,
    files: Sequence[str | os.PathLike[str]] | DataFiles | None,
) -> None:
    """:func:`check_state` of the ``last.pt`` contents ``blob``."""
    if blob["data_hash"] != data_hash:
        what = ""
        if files:
            with contextlib.suppress(OSError):  # naming the files is a courtesy: the refusal stands without it
                what = data_change(Path(folder), blob, files, str(blob["config"].get("data", "")))
        raise ResumeError(
            f"cannot resume {folder}: the training data changed (manifest hash {blob['data_hash'][:12]}… "
            f"at the start, {data_hash[:12]}… now{what}); start a new run instead"
        )
    old = {k: v for k, v in blob["config"].items() if k not in RESUMABLE_CHANGES}
    new = {k: v for k, v in config.items() if k not in RESUMABLE_CHANGES}
    for k, default in ADDED_LATER.items():  # runs saved before a key existed ran with its default
        if k in new and k not in old:
            old[k] = default
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if changed:
        diffs = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed)
        raise ResumeError(f"cannot resume {folder}: the config changed ({diffs})")


def _read_state(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """``folder/last.pt`` as a dict, read weights only (tensors, numbers, strings, containers: a pickled object
    that would run code is refused, not run); a ResumeError saying why it cannot be."""
    torch = require("torch")
    from edgeae.checkpoint import check_intact, load_error
    from edgeae.metadata import MetadataError

    path = Path(folder) / STATE_FILE
    if not path.is_file():
        trained = [name for name in TRAINED_FILES if (Path(folder) / name).exists()]
        if trained and (Path(folder) / "config.json").is_file():  # a new run refuses to overwrite them: say so
            them = ", ".join(trained)
            raise ResumeError(
                f"cannot resume {folder}: it holds no {STATE_FILE} to continue from, only {them}; to train it again, "
                f"move {them} away and run the command that started it (without --resume)"
            )
        if (Path(folder) / "config.json").is_file():  # killed before the first save: a new run can start there
            raise ResumeError(
                f"cannot resume {folder}: the run stopped before its first checkpoint ({STATE_FILE} is written at the "
                "first epoch's end, every 10 minutes and at a stop): nothing to continue; run the command that "
                "started it again (without --resume)"
            )
        raise ResumeError(f"cannot resume {folder}: {STATE_FILE} not found (was the run started with this edgeae?)")
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise ResumeError(f"cannot resume {folder}: cannot read {path} ({exc.strerror or exc})") from exc
    try:
        check_intact(path)  # torch.load never checks the records' CRC-32: a flipped byte would resume as a weight
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except MetadataError as exc:
        raise ResumeError(f"cannot resume {folder}: {exc}") from exc
    except Exception as exc:
        raise ResumeError(f"cannot resume {folder}: {load_error(path, exc, head)}") from exc
    if not isinstance(blob, dict) or blob.get("version") != STATE_VERSION:
        version = blob.get("version") if isinstance(blob, dict) else None
        raise ResumeError(f"cannot resume {folder}: state version {version} != {STATE_VERSION}")
    return blob


def state_config(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The config the run in ``folder`` recorded in its ``last.pt`` (with its ``kind``), None when there is none
    or it cannot be read: what a run whose ``config.json`` was damaged resumes with."""
    try:
        blob = _read_state(folder)
    except ResumeError:
        return None
    config = blob.get("config")
    if not isinstance(config, dict):
        return None
    kind = blob.get("kind")
    return {**({"kind": kind} if isinstance(kind, str) and kind else {}), **config}


def _was_complete(folder: Path, s: dict[str, Any]) -> bool:
    """The state's ``complete`` flag; for a ``last.pt`` written before it existed, whether the run's final
    ``metrics.json`` says complete for exactly the epochs the state holds."""
    if "complete" in s:
        return bool(s["complete"])
    try:
        m = json.loads((folder / "metrics.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(m, dict) and m.get("complete") is True and m.get("epochs_run") == len(s.get("history", []))


def config_kind(config: dict[str, Any]) -> str | None:
    """The model kind of a run's ``config.json`` contents: its ``kind`` key, or for a run written before the key
    existed, the kind its fields belong to (a VAE config has ``beta`` and ``latent``, a CAE config ``mode``)."""
    kind = config.get("kind")
    if isinstance(kind, str):
        return kind
    if "beta" in config and "latent" in config:
        return "vae"
    if "mode" in config and "widths" in config:
        return "cae"
    return None


def run_kind(folder: str | os.PathLike[str]) -> str | None:
    """The model kind of the run in ``folder`` (:func:`config_kind` of its ``config.json``), None when unknown."""
    try:
        config = json.loads((Path(folder) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return config_kind(config) if isinstance(config, dict) else None


def check_kind(folder: str | os.PathLike[str], kind: str, found: str | None = None) -> None:
    """Refuse to resume the run in ``folder`` (of kind ``found``, by default its ``config.json``'s) with the
    trainer of another model kind ``kind``."""
    found = run_kind(folder) if found is None else found
    if found is not None and found != kind:
        raise ResumeError(
            f"{folder} is a {found.upper()} run, not a {kind.upper()} run; use edgeae train {found} --resume {folder}"
        )


def read_run_state(folder: str | os.PathLike[str], kind: str) -> TrainState:
    """Where the run in ``folder`` stands (epoch, batch, history, best epoch, completion, early stop) after
    checking that it is a run of ``kind``; reads ``last.pt`` without loading anything into a model."""
    return _run_state(folder, kind)[0]


def _run_state(folder: str | os.PathLike[str], kind: str) -> tuple[TrainState, dict[str, Any]]:
    """:func:`read_run_state`, and the ``last.pt`` contents it read."""
    check_kind(folder, kind)
    blob = _read_state(folder)
    check_kind(folder, kind, blob.get("kind") or config_kind(blob.get("config", {})))
    s = blob["state"]
    return TrainState(
        epoch=int(s["epoch"]),
        batch=int(s["batch"]),
        history=list(s["history"]),
        best_epoch=int(s["best_epoch"]),
        complete=_was_complete(Path(folder), s),
        early_stop=bool(s.get("early_stop", False)),
        crops_per_epoch=int(s["crops_per_epoch"]) if s.get("crops_per_epoch") is not None else None,
    ), blob


def resume_command(kind: str, folder: str | os.PathLike[str], zoo_name: str | None = None, force: bool = False) -> str:
    """The command that continues the stopped run in ``folder``, with the ``--zoo-name`` (and ``--force``) it
    installs a complete run under: ``edgeae train cae --resume RUN --zoo-name NAME``."""
    cmd = f"edgeae train {kind} --resume {folder}"
    if zoo_name:
        cmd += f" --zoo-name {zoo_name}" + (" --force" if force else "")
    return cmd


def check_resume(folder: str | os.PathLike[str], kind: str, epochs: int) -> TrainState:
    """Check, before any work and without writing anything, that the run in ``folder`` can be resumed by the
    ``kind`` trainer to ``epochs`` epochs: the same kind, ``epochs`` not below the epochs it has done, and a
    complete run only with more epochs (never one that stopped early). Returns the state it holds."""
    return read_resumable(folder, kind, epochs)[0]


def read_resumable(folder: str | os.PathLike[str], kind: str, epochs: int) -> tuple[TrainState, dict[str, Any]]:
    """:func:`check_resume`, and the ``last.pt`` contents it read: a trainer, which holds the folder, hands them to
    :func:`check_state` and :func:`load_state` (``blob``), so that a resume reads ``last.pt`` once."""
    state, blob = _run_state(folder, kind)
    done = state.epochs_done
    if state.complete and state.early_stop:
        raise ResumeError(
            f"{folder} is already complete: it stopped early after epoch {done} (no better validation loss for its "
            f"patience); more epochs would stop again: start a new run with --init {Path(folder) / 'best.pt'} instead"
        )
    if epochs < done:
        least = f"more than {done}" if state.complete else f"{done} or more"  # --epochs done: "already complete"
        raise ResumeError(
            f"cannot resume {folder} with --epochs {epochs}: it has already trained {done} epochs; pass --epochs "
            f"{least}"
        )
    if state.complete and epochs <= done:
        raise ResumeError(
            f"{folder} is already complete ({done} epochs); pass a larger --epochs to train it further (or only "
            "--zoo-name NAME to install it as it is)"
        )
    return state, blob

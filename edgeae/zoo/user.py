"""The user zoo: models installed with ``--zoo-name NAME`` under a name ``ZOO`` does not register.

They live in a folder of the user's, never in the installed package (whose folder pip owns: ``pip uninstall``
left them behind, a new environment lost them, and a read-only install refused them with a bare errno):
:func:`user_dir` is ``$EDGEAE_ZOO`` when set (an absolute path: a relative one is refused), else
``$XDG_DATA_HOME/edgeae/zoo`` when that is absolute, else ``~/.local/share/edgeae/zoo``: one rule on every
platform (until review r2 of session 37 platformdirs' folder was used where some other package had installed
platformdirs, another folder on macOS and Windows, so user models came and went with it). Each model is
``NAME.pt``, ``NAME.json`` (its run's metrics) and ``NAME.entry.json`` (its entry, :func:`user_entry`).
User models that an older install of a checkout put into the zoo's own ``weights/`` folder still resolve:
:func:`scan` reads both folders. Standard library only, as :mod:`edgeae.zoo` is.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ENV_VAR = "EDGEAE_ZOO"
ENTRY_SUFFIX = ".entry.json"  # FOLDER/NAME.entry.json: the entry of a user-installed model


def user_dir() -> Path:
    """The folder user-installed models go to and are read from (absolute; it may not exist yet). A RuntimeError
    (one line) when ``$EDGEAE_ZOO`` is a relative path (it would name another folder from every working folder), or
    when it is not set and there is no home folder to put it in."""
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        path = Path(env).expanduser()
        if not path.is_absolute():
            raise RuntimeError(
                f"${ENV_VAR}={env!r} is a relative path, which names another folder from every working folder: set "
                f"it to an absolute one (from here: {path.absolute()})"
            )
        return path
    xdg = os.environ.get("XDG_DATA_HOME", "")
    if xdg and Path(xdg).is_absolute():  # a relative one is ignored, as the XDG Base Directory specification says
        return Path(xdg) / "edgeae" / "zoo"
    try:
        home = Path.home()
    except RuntimeError:  # no $HOME and no password entry (a bare container user)
        raise RuntimeError(f"no home folder to keep the user zoo in: set ${ENV_VAR} to a folder") from None
    return home / ".local" / "share" / "edgeae" / "zoo"


_UNRECORDED = {
    "kind": "?",
    "channels": "?",
    "training_data": "not recorded",
    "description": "user-installed before its entry was recorded: install it again with --zoo-name and --force to "
    "record its kind and channels",
    "command": "not recorded",
}


def scan(folders: Iterable[Path], registered: Iterable[str], valid_name: Any) -> dict[str, dict[str, Any]]:
    """The user-installed models in ``folders``, a later folder's NAME replacing an earlier one's: each ``NAME.pt``
    whose NAME is not ``registered`` and matches ``valid_name`` (a compiled pattern), with the entry recorded in
    ``NAME.entry.json`` (kind and channels ``"?"`` where there is none), ``file`` the absolute path of ``NAME.pt``
    (``WEIGHTS_DIR / file`` is that path too), ``folder`` its folder and ``user_installed`` True."""
    skip = set(registered)
    out: dict[str, dict[str, Any]] = {}
    for folder in folders:
        try:
            found = sorted(folder.glob("*.pt")) if folder.is_dir() else []
        except OSError:  # an unreadable user folder lists nothing; the shipped zoo still does
            found = []
        for pt in found:
            name = pt.stem
            if name in skip or not valid_name.fullmatch(name):
                continue
            entry: dict[str, Any] = dict(_UNRECORDED)
            try:
                recorded = json.loads((folder / f"{name}{ENTRY_SUFFIX}").read_text())
            except (OSError, ValueError):
                recorded = None
            if isinstance(recorded, dict):
                entry.update(recorded)
            out[name] = {**entry, "file": str(pt.absolute()), "folder": str(folder), "user_installed": True}
    return out


def unwritable(folder: Path) -> str | None:
    """Why ``folder`` (created when missing) cannot take a model's files, in a few words; None when it can. Asks
    ``os.access``, then tries: creates the folder and an empty file in it, and removes both again (and the folders it
    made above it), so a refused run leaves nothing behind. ``os.access`` alone says yes to root where a virtual
    file system (/proc, /sys) refuses any folder: the run trained to its end and only then failed to install (until
    session 38). The install itself still reports the error it meets."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is a file, not a folder"
    if not os.access(probe, os.W_OK | os.X_OK):
        return "read-only file system" if _read_only(probe) else "no write permission"
    for _ in range(3):  # another run's check may remove the folder it made between our mkdir and our file
        reason = _try_writing(folder, probe)
        if reason != _VANISHED:
            return reason
    return "it kept vanishing while being checked (another process removes it)"


_VANISHED = "vanished"


def _try_writing(folder: Path, existing: Path) -> str | None:
    """Create ``folder`` (below ``existing``, its nearest folder that exists) and an empty file in it; remove what
    was made. The reason it failed, or None."""
    missing = [folder, *folder.parents][: len(folder.parts) - len(existing.parts)]
    made: list[Path] = []
    try:
        for d in reversed(missing):
            try:
                d.mkdir()
            except FileExistsError:  # another process made it meanwhile: not ours to remove
                continue
            made.append(d)
    except OSError as exc:
        reason: str | None = f"creating it: {os_reason(exc)}"
    else:
        try:
            fd, name = tempfile.mkstemp(prefix=".edgeae-write-check-", dir=folder)
            os.close(fd)
            os.unlink(name)
            reason = None
        except FileNotFoundError:
            reason = _VANISHED
        except OSError as exc:
            reason = os_reason(exc)
    for d in reversed(made):
        try:
            d.rmdir()
        except OSError:  # no longer empty: another install wrote into it meanwhile
            break
    return reason


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # no statvfs (Windows)
        return False


def os_reason(exc: OSError) -> str:
    """An OSError's reason without its path, e.g. ``read-only file system`` (EROFS)."""
    return (exc.strerror or str(exc) or type(exc).__name__).lower()


def folder_message(name: str, folder: Path, reason: str, registered: bool, checkpoint: Path | str | None) -> str:
    """The one line that says the zoo folder for ``name`` cannot be written, and what to do instead."""
    model = f"give the checkpoint {checkpoint} itself as MODEL" if checkpoint else "give the run's best.pt as MODEL"
    if registered:  # replacing a shipped model writes the package's own folder: a source checkout's job
        return (
            f"--zoo-name {name}: the shipped zoo model {name!r} is in {folder}, which cannot be written ({reason}): "
            f"replace shipped models in a source checkout of edgeae, or install under a new name (the user zoo, "
            f"${ENV_VAR}), or {model}"
        )
    return (
        f"--zoo-name {name}: the user zoo folder {folder} cannot be written ({reason}): set ${ENV_VAR} to a folder "
        f"you can write, or {model}"
    )


def user_entry(
    metadata: Any, parameters: int, card: dict[str, Any], checkpoint: Path, run: Path | str | None = None
) -> dict[str, Any]:
    """The zoo entry of a user-installed model, from its checkpoint's ``metadata`` (kind, channels, training data)
    and its run's metrics ``card`` (the command, where recorded, then those that resumed the run:
    :func:`resume_commands`); ``run``: the training run folder that made it (default: the checkpoint's folder)."""
    extra = dict(metadata.extra)
    counts = []
    for key in ("train_files", "val_files"):
        value = extra.get(key)
        if isinstance(value, (int, list)):
            counts.append(f"{len(value) if isinstance(value, list) else value} {key.replace('_', ' ')}")
    data = str(extra.get("data", "not recorded"))
    run = Path(checkpoint).resolve().parent if run is None else Path(run).resolve()
    arch = dict(metadata.architecture)
    shape = ", ".join(f"{k} {arch[k]}" for k in ("variant", "widths", "latent") if k in arch)
    first = str(card.get("command") or f"not recorded; the run's settings: {run / 'config.json'}")
    return {
        "kind": metadata.kind,
        "channels": int(metadata.channels),
        "parameters": int(parameters),
        "training_data": f"{data} ({', '.join(counts)})" if counts else data,
        "training_data_hash": metadata.training_data_hash,
        "description": f"user-installed {metadata.kind} ({shape}) from {Path(checkpoint).resolve()}",
        "run": str(run),  # the run folder that made it: only it replaces the model without --force
        "command": "; then: ".join([first, *_runs_of(resume_commands(card))]),
    }


def _runs_of(commands: list[str]) -> list[str]:
    """``commands`` with each run of the same command said once with its count (a run resumed 40 times with the
    same ``--resume RUN`` reads ``... (40 times)``, not 40 copies: review r2, session 38)."""
    out: list[tuple[str, int]] = []
    for c in commands:
        if out and out[-1][0] == c:
            out[-1] = (c, out[-1][1] + 1)
        else:
            out.append((c, 1))
    return [c if n == 1 else f"{c} ({n} times)" for c, n in out]


def resume_commands(card: dict[str, Any]) -> list[str]:
    """The commands that resumed the run of metrics ``card``: its ``resume_commands`` (since session 38), else
    those its ``segments`` record after the first (a run trained before); none recorded, none. The zoo entry shows
    them after the first command, ``FIRST; then: SECOND`` as the shipped rover-rgb-vae entry does (until session
    38 it showed the first alone: a run started with ``--epochs 50`` and resumed with ``--epochs 17`` read as a
    50-epoch run)."""
    from edgeae.train.run_record import recorded_resume_commands

    return recorded_resume_commands(card)

"""``--zoo-name`` / ``--force`` of ``edgeae train cae`` and ``edgeae train vae``: the flags, the checks of the zoo
name before training and the install of a complete run's ``best.pt`` and ``metrics.json`` into the zoo.

Standard library only (heavy imports inside the functions): ``edgeae --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeae.cli import CLIError


def add_zoo_args(parser: argparse.ArgumentParser) -> None:
    """``--zoo-name`` / ``--force`` of both trainers."""
    parser.add_argument(
        "--zoo-name",
        default=None,
        metavar="NAME",
        help="when the run completes, also copy best.pt and metrics.json to the zoo as NAME.pt/.json (NAME: "
        "lower-case letters, digits, - and _); a new NAME is user-installed into the user zoo folder ($EDGEAE_ZOO, "
        "default ~/.local/share/edgeae/zoo; usable by name, listed by edgeae zoo); a registered zoo model "
        "(edgeae/zoo/weights of the package) is only replaced by one of the same kind, channels and architecture. "
        "Kept in "
        "the run: a stopped run resumed to completion is installed. With "
        "--resume of a complete run (no larger --epochs): install it as it is, without training",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="with --zoo-name: replace a registered zoo model of another architecture or parameter count (never "
        "of another kind or channel count), or a user-installed model another run made",
    )


def zoo_target(args: argparse.Namespace, saved: Any = None) -> tuple[str | None, bool]:
    """(zoo name, force) of the run: ``--zoo-name`` / ``--force`` as given, else, on ``--resume``, those the run
    was started (or last resumed) with (``saved``: its config; ``--force`` alone applies to its stored name)."""
    if args.zoo_name:
        return args.zoo_name, bool(args.force)
    stored = getattr(saved, "zoo_name", None)
    if args.force and not stored:
        raise CLIError("--force only applies with --zoo-name")
    return stored, bool(args.force or getattr(saved, "zoo_force", False))


def check_zoo_args(
    zoo_name: str | None,
    force: bool,
    kind: str,
    channels: int | None,
    architecture: dict[str, Any],
    parameters: Callable[[], int] | None = None,
    run: str | Path | None = None,
) -> None:
    """Refuse an unsafe or mismatched zoo name (:func:`zoo_target`) before training
    (:func:`edgeae.zoo.check_install`); ``parameters``: a function giving the parameter count of the model the run
    trains (called only when needed); ``run``: the run folder, which must be the one that made a user-installed
    model of that name unless ``force``."""
    if zoo_name:
        from edgeae.zoo import ZOO, check_install

        count = parameters() if parameters is not None and zoo_name in ZOO and not force else None
        check_install(zoo_name, kind, channels, architecture, count, force=force, run=run)


def install_complete_run(args: argparse.Namespace, kind: str) -> int | None:
    """``--resume RUN --zoo-name NAME`` of a complete run (``--epochs`` left out or the epochs it trained):
    install it as it is, without training; returns the exit status, or None when the run is to be trained
    (not complete, a larger ``--epochs``, no ``--zoo-name``)."""
    if not args.zoo_name:
        return None
    from edgeae.train.resume import read_run_state

    state = read_run_state(args.resume, kind)
    if not state.complete or args.epochs not in (None, state.epochs_done):
        return None
    out = Path(args.resume)
    try:
        metrics = json.loads((out / "metrics.json").read_text())
    except (OSError, ValueError) as exc:
        raise CLIError(f"--resume {out}: complete, but its metrics.json is unreadable ({exc})") from None
    print(f"{out} is complete ({state.epochs_done} epochs): installing it without training")
    install_into_zoo(metrics, out, args.zoo_name, bool(args.force))
    return 0


def install_into_zoo(metrics: dict[str, Any], out: Path, zoo_name: str | None, force: bool) -> None:
    """``--zoo-name``: install a complete run's best.pt and metrics.json (:func:`edgeae.zoo.install`). The zoo's
    folder held by another install (:class:`~edgeae.folder_lock.FolderBusy`): a :class:`CLIError` that says the run
    is complete and gives the command that installs it afterwards; a folder that cannot be written
    (:class:`~edgeae.zoo.ZooFolderError`): its line, and that the run is complete and kept."""
    if zoo_name and metrics.get("complete"):
        from edgeae.folder_lock import FolderBusy
        from edgeae.train.resume import resume_command, run_kind
        from edgeae.zoo import ZooFolderError, install, installed_message

        try:
            target = install(zoo_name, out / "best.pt", out / "metrics.json", force=force)
        except FolderBusy as exc:
            busy = str(exc).split(": wait for it")[0]  # not its advice to choose another folder: there is one zoo
            later = resume_command(run_kind(out) or "cae", out, zoo_name, force)
            raise CLIError(
                f"--zoo-name {zoo_name}: the run {out} is complete but was not installed ({busy}); install it once "
                f"that one has finished: {later}"
            ) from None
        except ZooFolderError as exc:  # the run is kept: say so, and how to install it once the folder is fixed
            later = resume_command(run_kind(out) or "cae", out, zoo_name, force)
            raise CLIError(f"{exc} (the run {out} is complete and kept; install it later with: {later})") from None
        print(installed_message(zoo_name, target))
    elif zoo_name:
        print(f"zoo: {zoo_name} not installed: the run is not complete")

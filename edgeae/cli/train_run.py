"""What ``edgeae train cae`` and ``edgeae train vae`` do alike once their flags are parsed: SIGTERM handled from the
command's start (:func:`stop_on_sigterm`), ``--time-budget`` and the counts checked (:func:`time_budget`), the
``--resume RUN_DIR`` checks and the resumed run (:func:`run_resumed`), and the command line a run records
(:func:`recorded_command`). Standard library only at import (heavy imports inside the functions)."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeae.cli import CLIError


class _Terminated(KeyboardInterrupt):
    """SIGTERM outside the training loop (the loop's :class:`~edgeae.train.resume.Deadline` handles it there)."""


def stop_on_sigterm(kind: str, args: argparse.Namespace, command: Callable[[], int]) -> int:
    """Run ``command`` with SIGTERM handled from its start (``kill`` while the data is read, hashed or checked): one
    line, exit 143 as for a stop, the run folder's lock released and a refused new run's folders removed on the
    way out. The training loop installs its own handler over this one (a clean stop with ``last.pt``). A SIGTERM the
    caller set to be ignored stays ignored (:func:`edgeae.firmware_sim.cli_preflight._sigterm_as_ctrl_c`, the
    installer every command shares, holds that check)."""
    from edgeae.firmware_sim import cli_preflight
    from edgeae.train.resume import EXIT_SIGTERM, resume_command

    # the installer shared by every command: a SIGTERM the caller ignores stays ignored, off the main thread nothing
    restore = cli_preflight._sigterm_as_ctrl_c(getattr(args, "_sigterm", []), _Terminated)
    try:
        return command()
    except _Terminated:
        run = Path(args.resume or args.out or ".")
        if (run / "last.pt").is_file():
            how = f"its state is in {run / 'last.pt'}; continue with: {resume_command(kind, run)}"
        else:
            how = "nothing was saved to resume: run the same command again"
        # on stdout, as the stop line of a SIGTERM inside the loop (a script reads either for its resume command)
        print(f"edgeae train {kind}: stopped by SIGTERM outside the training loop; {how}")
        return EXIT_SIGTERM
    finally:
        restore()


def recorded_command(args: argparse.Namespace) -> str | None:
    """The command line a run's segment records (``edgeae ARGS`` as typed; None outside the CLI's main)."""
    from edgeae.train.run_record import command_line

    argv = getattr(args, "_argv", None)
    return command_line(argv) if isinstance(argv, list) else None


def time_budget(args: argparse.Namespace) -> float | None:
    """``--time-budget`` in seconds (None: no limit), after the counts (``--epochs``, ``--crops``, ...) are checked:
    a bad value of either is one line."""
    from edgeae.cli.train_flags import check_counts
    from edgeae.train.resume import parse_duration

    try:
        budget = parse_duration(args.time_budget)
    except ValueError as exc:
        raise CLIError(str(exc)) from exc
    check_counts(args)
    return budget


def run_resumed(
    args: argparse.Namespace,
    kind: str,
    budget: float | None,
    load_config: Callable[[Path], Any],
    fields: dict[str, str],
    check_zoo: Callable[[Any], None],
    train: Callable[..., dict[str, Any]],
    report: Callable[[dict[str, Any], Path, str | None, bool], int],
) -> int:
    """``--resume RUN_DIR`` of a ``kind`` run: the run's kind, ``--out``, the flags that would change it (``fields``:
    flag dest -> config field) and its ``--zoo-name`` checked against its ``config.json`` (``load_config``) before
    anything is read or written (a folder that mixes two runs named as such); a complete run given only
    ``--zoo-name`` installed as it is; else the run continued (``train(config, resume=True, command=...)``, with
    ``check_zoo`` first) and its result printed (``report``): the command's exit status."""
    from edgeae.cli.train_flags import check_resume_kind, refuse_out_on_resume, refuse_resume_changes, resume_changes
    from edgeae.cli.train_zoo import install_complete_run, zoo_target
    from edgeae.train.run_folder import named_mixture

    with named_mixture(Path(args.resume), (CLIError, ValueError)):  # CAE config + VAE last.pt: named as such
        cfg_file = check_resume_kind(args, kind)
        refuse_out_on_resume(args)
        saved = load_config(cfg_file)
        refuse_resume_changes(args, saved, fields)
        zoo_name, force = zoo_target(args, saved)
        done = install_complete_run(args, kind)
    if done is not None:
        return done
    cfg = dataclasses.replace(saved, **resume_changes(args, budget, zoo_name, force))
    check_zoo(cfg)
    metrics = train(cfg, resume=True, command=recorded_command(args))
    return report(metrics, Path(args.resume), cfg.zoo_name, cfg.zoo_force)

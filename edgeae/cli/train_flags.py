"""The flags ``edgeae train cae`` and ``edgeae train vae`` share and the checks of ``--resume``: which flags the
command line gave (:func:`given_flags`), the ones a resumed run refuses or takes (:func:`refuse_resume_changes`,
:func:`where_it_continues`), and ``--data`` / ``--data-root`` / ``--bf16`` as a run's config keeps them.

Standard library only (heavy imports inside the functions): ``edgeae --help`` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from edgeae.cli import CLIError


def resolved_root(data_root: str | None) -> str | None:
    """``--data-root`` as the config keeps it: absolute, so a resume from another working directory finds it."""
    return None if data_root is None else str(Path(data_root).resolve())


def _has_init(args: argparse.Namespace) -> bool:
    """Whether the trainer that parsed ``args`` takes ``--init`` (``train cae`` does, ``train vae`` does not)."""
    return "init" in vars(args)


def refuse_out_on_resume(args: argparse.Namespace) -> None:
    """``--out`` with ``--resume``: a resumed run continues in its own folder; another folder is refused."""
    if args.out is not None and Path(args.out).resolve() != Path(args.resume).resolve():
        if _has_init(args):
            best = Path(args.resume) / "best.pt"
            way = f"to train a copy elsewhere, start a new run with --out {args.out} --init {best}"
        else:
            way = f"to train another run elsewhere, start a new one with --out {args.out} (from fresh weights)"
        raise CLIError(f"--out {args.out}: a resumed run continues in its own folder (--resume {args.resume}); {way}")


def check_resume_kind(args: argparse.Namespace, kind: str) -> Path:
    """The ``config.json`` of ``--resume RUN_DIR`` after checking that the run is one of ``kind`` (before anything
    is read or written: a CAE run handed to ``train vae`` is named, not rewritten)."""
    from edgeae.train.resume import run_kind

    cfg_file = Path(args.resume) / "config.json"
    if not Path(args.resume).exists():  # a typo: said as such (session 46's audit: "no config.json there")
        raise CLIError(f"--resume {args.resume} does not exist (give the --out folder of the run to continue)")
    if not cfg_file.is_file():
        raise CLIError(f"--resume {args.resume}: no config.json there (not a training run folder)")
    found = run_kind(args.resume)
    if found is not None and found != kind:
        raise CLIError(
            f"--resume {args.resume}: {args.resume} is a {found.upper()} run; use edgeae train {found} --resume "
            f"{args.resume}"
        )
    return cfg_file


def add_precision_args(parser: argparse.ArgumentParser) -> None:
    """``--bf16`` / ``--no-bf16`` (mutually exclusive) of both trainers; read back with :func:`precision_arg`."""
    prec = parser.add_mutually_exclusive_group()
    prec.add_argument(
        "--bf16", action="store_true", help="bfloat16 autocast even where the CPU has no hardware bfloat16"
    )
    prec.add_argument(
        "--no-bf16",
        action="store_true",
        help="float32 (default: bfloat16 autocast on a CPU with AVX512-BF16 or AMX, float32 on one without)",
    )


def data_arg(data: str) -> str:
    """``--data`` as the config keeps it: a dataset name as given, a folder as its absolute path (so a run can be
    resumed from another working directory)."""
    from edgeae.datasets import SPLITS

    return data if data in SPLITS or not Path(data).is_dir() else str(Path(data).resolve())


def refuse_resume_changes(args: argparse.Namespace, saved: object, fields: dict[str, str]) -> None:
    """``--resume`` continues a run as it was configured: a flag given with it that would change the run's data or
    training (``fields``: flag dest -> config field) is refused with what the run has, not silently ignored."""
    given = given_flags(args)
    diffs = []
    for dest, name in fields.items():
        value = getattr(args, dest, None)
        if dest not in given:
            continue
        have = getattr(saved, name)
        want: Any = value
        if dest == "no_augment":
            want = not value
        elif dest in ("bf16", "no_bf16"):
            want = dest == "bf16"
        elif dest == "data" and value is not None:
            want = data_arg(value)
        if isinstance(have, list | tuple) and isinstance(want, list | tuple):
            have, want = tuple(have), tuple(want)
        if want != have:
            flag = "--" + dest.replace("_", "-")
            shown = flag if isinstance(value, bool) else f"{flag} {value!r}"
            diffs.append(f"{shown} (the run has {name} = {have!r})")
    if diffs:
        way = "(--init CHECKPOINT to start from its weights)" if _has_init(args) else "(from fresh weights)"
        raise CLIError(
            f"--resume {args.resume} continues the run as configured in its config.json; these flags would change "
            f"it: {'; '.join(diffs)}. Leave them out (only --epochs, --time-budget, --threads, --no-progress, "
            f"--device and --data-root may change), or start a new run with --out {way}"
        )


COUNT_FLAGS = ("epochs", "crops", "val_crops", "batch_size", "latent")  # whole numbers >= 1 (where a trainer has them)


def check_counts(args: argparse.Namespace) -> None:
    """``--epochs``, ``--crops``, ``--val-crops``, ``--batch-size`` (and ``--latent``) below 1: refused naming the
    flag (the configs' own errors name their fields, ``val_crops must be ...``)."""
    for dest in COUNT_FLAGS:
        value = getattr(args, dest, None)
        if value is not None and value < 1:
            raise CLIError(f"--{dest.replace('_', '-')} must be a positive whole number, got {value}")


def check_out(out: str, data: str | None = None) -> None:
    """A new run's ``--out``: refused with one line naming it when its folder cannot be made or written (``/proc/x``,
    a read-only disk, a file), or when it is the ``--data`` folder or inside it (folders are read recursively: the
    run's loss.png became a training image and the next resume was refused as "the training data changed"; session
    46's audit); the folders made here are removed again if the command then fails."""
    from edgeae.cli import check_writable

    if data is not None and Path(data).is_dir():
        folder, target = Path(data).resolve(), Path(out).resolve()
        if target == folder or folder in target.parents:
            raise CLIError(
                f"--out {out} is inside the --data folder {data}: the run's files (loss.png, ...) would be read as "
                "training images; write the run elsewhere"
            )

    try:
        check_writable(Path(out) / "config.json", "--out")
    except CLIError as exc:
        why = str(exc).split(": ", 1)[-1]  # "cannot write in FOLDER (reason)"
        raise CLIError(f"--out {out}: {why}") from None


def where_it_continues(args: argparse.Namespace) -> dict[str, Any]:
    """``--device`` / ``--data-root`` given with ``--resume``: where the run continues (a lent GPU, data moved),
    not what it trains on (the data's manifest hash is checked on resume)."""
    given = given_flags(args)
    out: dict[str, Any] = {dest: getattr(args, dest) for dest in ("device", "data_root") if dest in given}
    if "data_root" in out:
        out["data_root"] = resolved_root(out["data_root"])
    return out


def resume_changes(args: argparse.Namespace, budget: float | None, zoo_name: str | None, force: bool) -> dict[str, Any]:
    """The config fields ``--resume RUN_DIR`` may change, as given (both trainers): where it writes, the time
    budget, the zoo target, ``--epochs``, ``--threads``, ``--no-progress`` and :func:`where_it_continues`. A
    flag left out keeps the run's value: its ``--time-budget`` then stops this invocation too (the budget is per
    invocation), so ``until edgeae train cae --resume RUN; do ...`` goes on in steps of it."""
    changes: dict[str, Any] = {"out": str(args.resume), "zoo_name": zoo_name, "zoo_force": force}
    if args.time_budget is not None:
        changes["time_budget"] = budget
    if args.epochs is not None:
        changes["epochs"] = args.epochs
    if args.threads is not None:
        changes["threads"] = args.threads
    if args.no_progress:
        changes["progress"] = False
    return changes | where_it_continues(args)


def record_flag_defaults(parser: argparse.ArgumentParser) -> None:
    """Keep the parser's option strings and defaults on the parsed args, so ``--resume`` can tell which flags
    were given (:func:`given_flags`)."""
    actions = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    parser.set_defaults(
        _flag_options={a.dest: tuple(a.option_strings) for a in actions},
        _flag_defaults={a.dest: a.default for a in actions},
    )


def given_flags(args: argparse.Namespace) -> set[str]:
    """Dests of the flags on the command line (``args._argv``, kept by the CLI's main; argparse's unique prefixes
    count), or, without it, those whose value differs from the default."""
    options: dict[str, tuple[str, ...]] = getattr(args, "_flag_options", {})
    argv = getattr(args, "_argv", None)
    if argv is None:
        defaults: dict[str, Any] = getattr(args, "_flag_defaults", {})
        return {d for d, v in defaults.items() if getattr(args, d, v) != v}
    every = {o: d for d, opts in options.items() for o in opts}
    given = set()
    for token in argv:
        if not token.startswith("--") or token == "--":
            continue
        word = token.split("=", 1)[0]
        if word in every:
            given.add(every[word])
        elif len(hits := {d for o, d in every.items() if o.startswith(word)}) == 1:
            given |= hits
    return given


def precision_arg(args: argparse.Namespace) -> bool | None:
    """The trainers' ``bf16`` config value: forced on, forced off, or None (chosen for the CPU)."""
    return False if args.no_bf16 else (True if args.bf16 else None)

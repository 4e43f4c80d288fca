"""``edgeae train cae``: train a CAE / gt-CAE on random crops of a named dataset or a folder of images.

Other model kinds add a second level here: a module listed in ``EXTRA_KINDS`` that defines
``register_cli(subparsers) -> parser`` and ``run_cli(args) -> int`` (heavy imports inside ``run_cli``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from edgeae.cli import CLIError, positive_int
from edgeae.train.resume import EXIT_BUDGET, EXIT_SIGINT, EXIT_SIGTERM  # standard library only: --help stays fast

# extra train kinds: name -> module defining register_cli(subparsers) and run_cli(args)
EXTRA_KINDS: dict[str, str] = {"vae": "edgeae.cli.train_vae"}


# the exit statuses of a run that stopped before it was complete (edgeae.train.resume.stop_exit_status)
EXIT_STATUS_HELP = (
    f"Exit status: 0 when the run completed (and, with --zoo-name, was installed); {EXIT_BUDGET} when --time-budget "
    f"stopped it and {EXIT_SIGINT} / {EXIT_SIGTERM} when SIGINT / SIGTERM did (last.pt saved: continue with --resume "
    "RUN_DIR, which installs the run under its --zoo-name once it completes; nothing is installed yet, and a chain "
    "such as: edgeae train ... && python -m edgeae.train.gate ... stops there); 2 for a refused command or a failed "
    "run."
)
# flags that only mean something in one --mode (flag dest -> modes that use it): refused with another mode
MODE_FLAGS: dict[str, tuple[str, ...]] = {
    "destroy": ("fixed",),
    "destroy_range": ("gt",),
    "coverage_range": ("colour-noise",),
}


@contextlib.contextmanager
def training_log() -> Iterator[None]:
    """Show the trainers' progress lines (data, precision, warm start, resume, one line per epoch, early stop,
    stops, calibration) without ``-v``: the ``edgeae.train`` loggers at INFO for the length of the command. The
    rest of edgeae keeps the quiet default of :mod:`edgeae.logs`; with ``-v`` nothing changes."""
    logger = logging.getLogger("edgeae.train")
    old = logger.level
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.setLevel(old)


def resolved_root(data_root: str | None) -> str | None:
    """``--data-root`` as the config keeps it: absolute, so a resume from another working directory finds it."""
    return None if data_root is None else str(Path(data_root).resolve())


def refuse_out_on_resume(args: argparse.Namespace) -> None:
    """``--out`` with ``--resume``: a resumed run continues in its own folder; another folder is refused."""
    if args.out is not None and Path(args.out).resolve() != Path(args.resume).resolve():
        raise CLIError(
            f"--out {args.out}: a resumed run continues in its own folder (--resume {args.resume}); to train a copy "
            f"elsewhere, start a new run with --out {args.out} --init {Path(args.resume) / 'best.pt'}"
        )


def check_resume_kind(args: argparse.Namespace, kind: str) -> Path:
    """The ``config.json`` of ``--resume RUN_DIR`` after checking that the run is one of ``kind`` (before anything
    is read or written: a CAE run handed to ``train vae`` is named, not rewritten)."""
    from edgeae.train.resume import run_kind

    cfg_file = Path(args.resume) / "config.json"
    if not cfg_file.is_file():
        raise CLIError(f"--resume {args.resume}: no config.json there (not a training run folder)")
    found = run_kind(args.resume)
    if found is not None and found != kind:
        raise CLIError(
            f"--resume {args.resume}: {args.resume} is a {found.upper()} run; use edgeae train {found} --resume "
            f"{args.resume}"
        )
    return cfg_file


def add_zoo_args(parser: argparse.ArgumentParser) -> None:
    """``--zoo-name`` / ``--force`` of both trainers."""
    parser.add_argument(
        "--zoo-name",
        default=None,
        metavar="NAME",
        help="when the run completes, also copy best.pt and metrics.json to edgeae/zoo/weights/NAME.pt/.json (NAME: "
        "lower-case letters, digits, - and _); a registered zoo model is only replaced by one of the same kind, "
        "channels and architecture. Kept in the run: a stopped run resumed to completion is installed. With "
        "--resume of a complete run (no larger --epochs): install it as it is, without training",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="with --zoo-name: replace a registered zoo model of another architecture or parameter count (never "
        "of another kind or channel count)",
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
) -> None:
    """Refuse an unsafe or mismatched zoo name (:func:`zoo_target`) before training
    (:func:`edgeae.zoo.check_install`); ``parameters``: a function giving the parameter count of the model the run
    trains (called only when needed)."""
    if zoo_name:
        from edgeae.zoo import ZOO, check_install

        count = parameters() if parameters is not None and zoo_name in ZOO and not force else None
        check_install(zoo_name, kind, channels, architecture, count, force=force)


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
    """``--zoo-name``: install a complete run's best.pt and metrics.json (:func:`edgeae.zoo.install`)."""
    if zoo_name and metrics.get("complete"):
        from edgeae.zoo import install

        print(f"zoo: wrote {install(zoo_name, out / 'best.pt', out / 'metrics.json', force=force)} and .json")
    elif zoo_name:
        print(f"zoo: {zoo_name} not installed: the run is not complete")


# --widths when not given: the published CAE's, and for unet2h the shipped flight model's (within its budget)
DEFAULT_WIDTHS: dict[str, tuple[int, ...]] = {"seed": (16, 32, 64, 128), "unet2h": (24, 32, 64, 64)}


def _widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(v) for v in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"widths must be comma-separated integers, got {text!r}") from exc
    if not widths or min(widths) <= 0:
        raise argparse.ArgumentTypeError(f"widths must be positive, got {text!r}")
    return widths


def _range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected LO,HI, got {text!r}") from exc
    return lo, hi


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


# flags of `edgeae train cae` that set a field of the run's config (flag dest -> field); on --resume each must
# be left out or equal the run's (--epochs, --time-budget, --threads, --no-progress, --device and --data-root
# may change: where the run continues, not what it trains on; the data's manifest hash is checked on resume)
CAE_FLAG_FIELDS: dict[str, str] = {
    name: name
    for name in (
        "data",
        "mode",
        "crops",
        "val_crops",
        "batch_size",
        "lr",
        "seed",
        "destroy",
        "destroy_range",
        "known_blocks",
        "coverage_range",
        "pattern",
        "widths",
        "variant",
        "channels",
        "patience",
        "loss",
        "lr_schedule",
        "data_workers",
        "init",
        "val_seed",
    )
} | {"no_augment": "augment", "bf16": "bf16", "no_bf16": "bf16"}


def data_arg(data: str) -> str:
    """``--data`` as the config keeps it: a dataset name as given, a folder as its absolute path (so a run can be
    resumed from another working directory)."""
    from edgeae.datasets import SPLITS

    return data if data in SPLITS or not Path(data).is_dir() else str(Path(data).resolve())


def refuse_mode_flags(args: argparse.Namespace, mode: str) -> None:
    """A mask or noise flag given with a ``--mode`` that does not use it is refused, not silently ignored."""
    given = given_flags(args)
    for dest, modes in MODE_FLAGS.items():
        if dest in given and mode not in modes:
            flag = "--" + dest.replace("_", "-")
            raise CLIError(f"{flag} applies to --mode {' / '.join(modes)}, not to --mode {mode}; leave it out")


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
        raise CLIError(
            f"--resume {args.resume} continues the run as configured in its config.json; these flags would change "
            f"it: {'; '.join(diffs)}. Leave them out (only --epochs, --time-budget, --threads, --no-progress, "
            "--device and --data-root may change), or start a new run with --out (--init CHECKPOINT to start "
            "from its weights)"
        )


def where_it_continues(args: argparse.Namespace) -> dict[str, Any]:
    """``--device`` / ``--data-root`` given with ``--resume``: where the run continues (a lent GPU, data moved),
    not what it trains on (the data's manifest hash is checked on resume)."""
    given = given_flags(args)
    out: dict[str, Any] = {dest: getattr(args, dest) for dest in ("device", "data_root") if dest in given}
    if "data_root" in out:
        out["data_root"] = resolved_root(out["data_root"])
    return out


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


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train",
        help="train a model (cae; vae)",
        description="Train a CAE / gt-CAE (edgeae train cae) or the anomaly β-VAE (edgeae train vae) on a named "
        "dataset or a folder of images; see edgeae train KIND --help.",
        epilog=EXIT_STATUS_HELP,
    )
    kinds = p.add_subparsers(dest="kind", metavar="KIND")
    c = kinds.add_parser(
        "cae",
        help="train a CAE / gt-CAE",
        description="Train a CAE on random 128x128 crops. Progress lines (one per epoch) go to stderr.",
        epilog=EXIT_STATUS_HELP,
    )
    c.add_argument(
        "--data",
        default=None,
        help="rover_rgb | rover_rgb_v2 | orbital_gray | orbital_gray_v2 | a folder of images (not with --resume)",
    )
    c.add_argument(
        "--resume",
        metavar="RUN_DIR",
        default=None,
        help="continue the run in RUN_DIR from its last.pt (same data and config; --epochs and --time-budget "
        "may be raised; a complete run only with a larger --epochs, or with --zoo-name alone to install it)",
    )
    c.add_argument(
        "--init",
        metavar="CHECKPOINT",
        default=None,
        help="fine-tune: start from this checkpoint's weights (same --variant/--widths; a fresh optimiser and "
        "LR schedule), e.g. to train a shipped model longer on more data",
    )
    c.add_argument(
        "--time-budget",
        default=None,
        help="stop cleanly with a checkpoint after this much wall time, e.g. 90m, 2h, 1h30m (resume later; the "
        "command then exits with status 75)",
    )
    c.add_argument(
        "--mode",
        default="gt",
        choices=["plain", "fixed", "gt", "colour-noise"],
        help="plain AE, fixed masking level, gt-CAE (random 50-99%% per sample), colour-noise gt-CAE",
    )
    c.add_argument("--epochs", type=int, default=None, help="training epochs (default 8)")
    c.add_argument(
        "--crops", type=int, default=3000,
        help="training crops per epoch, drawn afresh every epoch (rounded down to whole batches of --batch-size)",
    )  # fmt: skip
    c.add_argument("--val-crops", type=int, default=400, help="validation crops from the val files")
    c.add_argument(
        "--out", default=None, help="output folder (config.json, loss.csv/png, best.pt, last.pt, metrics.json)"
    )
    c.add_argument("--seed", type=int, default=0, help="seed of crops, masks and initial weights (default 0)")
    c.add_argument(
        "--val-seed",
        type=int,
        default=None,
        help="seed of the validation crops and masks (default: --seed; with --init, the starting run's, so the "
        "validation figures of both runs compare)",
    )
    c.add_argument("--destroy", type=float, default=0.9, help="destroyed fraction for --mode fixed")
    c.add_argument("--destroy-range", type=_range, default=(0.5, 0.99), help="LO,HI for --mode gt")
    c.add_argument(
        "--known-blocks",
        type=float,
        default=0.0,
        metavar="P",
        help="probability that a training crop also keeps 1-2 whole blocks of 16-64 px, as the prioritised "
        "downlink sends whole patches (default 0)",
    )
    c.add_argument("--coverage-range", type=_range, default=(0.1, 1.0), help="LO,HI for --mode colour-noise")
    c.add_argument("--pattern", default="uniform", help="mask pattern (edgeae.masks)")
    c.add_argument(
        "--widths",
        type=_widths,
        default=None,
        help="encoder widths, e.g. 8,16,32,64 (default: 24,32,64,64 for unet2h, the flight model; else 16,32,64,128)",
    )
    c.add_argument(
        "--variant",
        choices=("seed", "unet", "unet2", "unet2h"),
        default="seed",
        help="seed (default): the published CAE (latents); unet: normalised-convolution pre-fill + U-Net residual; "
        "unet2: the same with two convolutions per level (the shipped ground models: --widths 24,48,96,192); "
        "unet2h: unet2 at half resolution with a pyramid pre-fill, the flight-budget model (widths 24,32,64,64 "
        "by default); edgeae zoo --commands gives each shipped model's exact command",
    )
    c.add_argument("--loss", choices=("mse", "l1"), default="mse", help="training loss")
    add_precision_args(c)
    c.add_argument(
        "--lr-schedule", choices=("cosine", "constant"), default="cosine", help="learning-rate schedule per step"
    )
    c.add_argument("--channels", type=int, choices=[1, 3], default=None, help="default: from the dataset")
    c.add_argument("--batch-size", type=int, default=32, help="crops per optimiser step (default 32)")
    c.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    c.add_argument("--patience", type=int, default=0, help="early stopping patience in epochs (0 = off)")
    c.add_argument("--no-augment", action="store_true", help="turn off rotation/shift/shear/flip")
    c.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    c.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    c.add_argument(
        "--data-workers", type=int, default=1,
        help="threads that draw crops and masks ahead of the optimiser (default 1; 3-4 keep a GPU busy). Part of "
        "the run's recipe: other values draw other crops",
    )  # fmt: skip
    c.add_argument("--data-root", default=None, help="data folder (default: $EDGEAE_DATA or ../shared/data)")
    add_zoo_args(c)
    c.add_argument("--no-progress", action="store_true", help="no progress bar")
    record_flag_defaults(c)
    for kind, module_name in EXTRA_KINDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        if hasattr(module, "register_cli") and hasattr(module, "run_cli"):
            module.register_cli(kinds).set_defaults(_kind_run=module.run_cli)
        else:  # pragma: no cover - a trainer module without a CLI yet
            kinds.add_parser(kind, help=f"({module_name} has no register_cli yet)")
    return p


def needs(args: argparse.Namespace) -> dict[str, str]:
    """Optional packages training imports (checked before the data is read)."""
    return {"torch": "train", "cv2": "train", "tifffile": "train", "tqdm": "train", "matplotlib": "train"}


def run(args: argparse.Namespace) -> int:
    if getattr(args, "_kind_run", None):
        with training_log():
            return int(args._kind_run(args) or 0)
    if args.kind != "cae":
        raise CLIError("choose what to train: edgeae train cae ... (see edgeae train cae --help)")
    with training_log():
        return _run_cae(args)


def _run_cae(args: argparse.Namespace) -> int:
    from edgeae.train.cae import CAETrainConfig, train_cae
    from edgeae.train.resume import parse_duration

    try:
        budget = parse_duration(args.time_budget)
    except ValueError as exc:
        raise CLIError(str(exc)) from exc
    if args.resume and args.init:
        raise CLIError("--init starts a new run from a checkpoint's weights; --resume continues a run: pass one")
    if args.resume:
        from edgeae.train.cae import load_config

        cfg_file = check_resume_kind(args, "cae")
        refuse_out_on_resume(args)
        saved = load_config(cfg_file)
        refuse_resume_changes(args, saved, CAE_FLAG_FIELDS)
        zoo_name, force = zoo_target(args, saved)
        done = install_complete_run(args, "cae")
        if done is not None:
            return done
        changes: dict[str, object] = {"out": str(args.resume), "time_budget": budget}
        changes |= {"zoo_name": zoo_name, "zoo_force": force}
        if args.epochs is not None:
            changes["epochs"] = args.epochs
        if args.threads is not None:
            changes["threads"] = args.threads
        if args.no_progress:
            changes["progress"] = False
        changes |= where_it_continues(args)
        cfg = dataclasses.replace(saved, **changes)  # type: ignore[arg-type]
        _check_cae_zoo(cfg)
        metrics = train_cae(cfg, resume=True)
        return _report(metrics, Path(args.resume), cfg.zoo_name, cfg.zoo_force)
    if not args.data or not args.out:
        raise CLIError("edgeae train cae needs --data and --out (or --resume RUN_DIR)")
    refuse_mode_flags(args, args.mode)
    zoo_name, force = zoo_target(args)
    cfg = CAETrainConfig(
        data=data_arg(args.data),
        out=args.out,
        mode=args.mode,
        epochs=CAETrainConfig.epochs if args.epochs is None else args.epochs,
        crops=args.crops,
        val_crops=args.val_crops,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        destroy=args.destroy,
        destroy_range=args.destroy_range,
        known_blocks=args.known_blocks,
        coverage_range=args.coverage_range,
        pattern=args.pattern,
        widths=args.widths or DEFAULT_WIDTHS.get(args.variant, DEFAULT_WIDTHS["seed"]),
        variant=args.variant,
        channels=args.channels,
        augment=not args.no_augment,
        patience=args.patience,
        loss=args.loss,
        bf16=precision_arg(args),
        lr_schedule=args.lr_schedule,
        time_budget=budget,
        device=args.device,
        threads=args.threads,
        data_workers=args.data_workers,
        data_root=resolved_root(args.data_root),
        progress=not args.no_progress,
        init=args.init,
        val_seed=_val_seed(args),
        zoo_name=zoo_name,
        zoo_force=force,
    )
    _check_cae_zoo(cfg)
    metrics = train_cae(cfg)
    return _report(metrics, Path(args.out), cfg.zoo_name, cfg.zoo_force)


def _check_cae_zoo(cfg: Any) -> None:
    """``--zoo-name`` checks before training: the channels come from the data (a folder's first image)."""
    if not cfg.zoo_name:
        return
    from edgeae.train.cae import split_data

    channels = cfg.channels
    if channels is None:
        train_files, _ = split_data(cfg)
        channels = cfg.resolved_channels(train_files[0])
    arch = {"variant": cfg.variant, "widths": list(cfg.widths), "tile": cfg.tile}

    def parameters() -> int:
        from edgeae.models.cae import build, count_parameters

        return int(count_parameters(build(dataclasses.replace(cfg.architecture(), channels=channels or 3))))

    check_zoo_args(cfg.zoo_name, cfg.zoo_force, "cae", channels, arch, parameters)


def _val_seed(args: argparse.Namespace) -> int | None:
    if args.val_seed is not None or not args.init:
        return args.val_seed
    from edgeae.train.cae import init_val_seed

    try:
        return init_val_seed(args.init)
    except (FileNotFoundError, ValueError) as exc:  # MetadataError is a ValueError
        raise CLIError(f"--init {args.init}: {exc}") from exc


def _report(metrics: dict[str, Any], out: Path, zoo_name: str | None, force: bool = False) -> int:
    """Print the result; return 0 for a complete run, the stop's exit status (75, 130, 143) for a stopped one."""
    from edgeae.train.resume import resume_command, stop_exit_status

    status = 0 if metrics.get("complete") else stop_exit_status(metrics.get("stop") or "budget")
    hint = resume_command("cae", out, zoo_name, force)
    if not metrics.get("complete") and "best_epoch" not in metrics:
        print(f"stopped before the first epoch ended ({metrics.get('stopped')}); continue with: {hint}")
        if zoo_name:
            print(f"zoo: {zoo_name} not installed: the run is not complete")
        return status
    if not metrics.get("complete"):
        print(f"{metrics['stopped']}; continue with: {hint}")
    print(
        f"best epoch {metrics['best_epoch']}  val loss {metrics['val_loss']:.5f}  "
        f"parameters {metrics['parameters']:,}  -> {out / 'best.pt'}"
    )
    for level, m in metrics.get("val_levels", {}).items():
        print(f"  val destroyed {float(level):.0%}: MAE {m['mae']:.4f}  PSNR {m['psnr']:.2f} dB")
    install_into_zoo(metrics, out, zoo_name, force)
    return status

"""``edgeae train cae``: train a CAE / gt-CAE on random crops of a named dataset or a folder of images.

Other model kinds add a second level here: a module listed in ``EXTRA_KINDS`` that defines
``register_cli(subparsers) -> parser`` and ``run_cli(args) -> int`` (heavy imports inside ``run_cli``).

What a CAE run does once parsed is :mod:`edgeae.cli.train_cae`. The flags and ``--resume`` checks both trainers
share live in :mod:`edgeae.cli.train_flags`, the ``--zoo-name`` install in :mod:`edgeae.cli.train_zoo`; their
names are importable from here too.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
from collections.abc import Iterator

from edgeae.cli import CLIError, positive_int
from edgeae.cli.train_flags import add_precision_args as add_precision_args
from edgeae.cli.train_flags import check_resume_kind as check_resume_kind
from edgeae.cli.train_flags import data_arg as data_arg
from edgeae.cli.train_flags import given_flags as given_flags
from edgeae.cli.train_flags import precision_arg as precision_arg
from edgeae.cli.train_flags import record_flag_defaults as record_flag_defaults
from edgeae.cli.train_flags import refuse_out_on_resume as refuse_out_on_resume
from edgeae.cli.train_flags import refuse_resume_changes as refuse_resume_changes
from edgeae.cli.train_flags import resolved_root as resolved_root
from edgeae.cli.train_flags import where_it_continues as where_it_continues
from edgeae.cli.train_zoo import add_zoo_args as add_zoo_args
from edgeae.cli.train_zoo import check_zoo_args as check_zoo_args
from edgeae.cli.train_zoo import install_complete_run as install_complete_run
from edgeae.cli.train_zoo import install_into_zoo as install_into_zoo
from edgeae.cli.train_zoo import zoo_target as zoo_target
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


# --resume, --time-budget and --no-progress of both trainers
RESUME_HELP = (
    "continue the run in RUN_DIR from its last.pt (same data and config; only --epochs, --time-budget, --threads, "
    "--no-progress, --device and --data-root may change, --epochs not below the epochs it finished; a complete run "
    "only with a larger --epochs, or with --zoo-name alone to install it)"
)
BUDGET_HELP = (
    "The budget is per invocation: --resume without it keeps the run's, so each resumed invocation stops after it "
    "too; give it again to change it, or --time-budget none for no limit"
)
NO_PROGRESS_HELP = "no progress bar (the bar is drawn only when stderr is a terminal; the per-epoch lines always)"


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
        help=(
            "rover_rgb | rover_rgb_v2 | rover_rgb_msl | rover_rgb_msl_all | orbital_gray | orbital_gray_v2 | "
            "orbital_gray_lunar | a folder of images (not with --resume)"
        ),
    )
    c.add_argument(
        "--resume",
        metavar="RUN_DIR",
        default=None,
        help=RESUME_HELP,
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
        f"command then exits with status 75). {BUDGET_HELP}",
    )
    c.add_argument(
        "--mode",
        default="gt",
        choices=["plain", "fixed", "gt", "colour-noise"],
        help="plain AE, fixed masking level, gt-CAE (random 50-99%% per sample), colour-noise gt-CAE (default "
        "%(default)s)",
    )
    c.add_argument("--epochs", type=int, default=None, help="training epochs (default 8)")
    c.add_argument(
        "--crops", type=int, default=3000,
        help="training crops per epoch, drawn afresh every epoch (rounded down to whole batches of --batch-size, at "
        "least one batch; default %(default)s)",
    )  # fmt: skip
    c.add_argument(
        "--val-crops", type=int, default=400, help="validation crops from the val files (default %(default)s)"
    )
    c.add_argument(
        "--out",
        default=None,
        help="output folder (config.json, loss.csv/png, best.pt, last.pt, metrics.json; init.json with --init)",
    )
    c.add_argument("--seed", type=int, default=0, help="seed of crops, masks and initial weights (default 0)")
    c.add_argument(
        "--val-seed",
        type=int,
        default=None,
        help="seed of the validation crops and masks (default: --seed; with --init, the starting run's, so the "
        "validation figures of both runs compare)",
    )
    c.add_argument("--destroy", type=float, default=0.9, help="destroyed fraction for --mode fixed (default 0.9)")
    c.add_argument("--destroy-range", type=_range, default=(0.5, 0.99), help="LO,HI for --mode gt (default 0.5,0.99)")
    c.add_argument(
        "--known-blocks",
        type=float,
        default=0.0,
        metavar="P",
        help="probability that a training crop also keeps 1-2 whole blocks of 16-64 px, as the prioritised "
        "downlink sends whole patches (default 0)",
    )
    c.add_argument(
        "--coverage-range", type=_range, default=(0.1, 1.0), help="LO,HI for --mode colour-noise (default 0.1,1.0)"
    )
    c.add_argument(
        "--pattern",
        default="uniform",
        help="mask pattern of --mode fixed / gt: uniform | jittered (edgeae.masks; default %(default)s)",
    )
    c.add_argument(
        "--widths",
        type=_widths,
        default=None,
        help="encoder widths, one level each, e.g. 8,16,32,64 (default: 24,32,64,64 for unet2h, the flight model; "
        "else 16,32,64,128); the seed CAE's latent is widths[-1] × (tile / 2^levels)², 128×8×8 by default",
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
    c.add_argument("--loss", choices=("mse", "l1"), default="mse", help="training loss (default %(default)s)")
    add_precision_args(c)
    c.add_argument(
        "--lr-schedule",
        choices=("cosine", "constant"),
        default="cosine",
        help="learning-rate schedule per step (default %(default)s: to 5%% of --lr over all epochs)",
    )
    c.add_argument(
        "--channels", type=int, choices=[1, 3], default=None,
        help="1 grey or 3 RGB: the images are read as this many (default: the dataset's; a folder: the one count "
        "all its images share, a mixed folder is refused)",
    )  # fmt: skip
    c.add_argument("--batch-size", type=int, default=32, help="crops per optimiser step (default 32)")
    c.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    c.add_argument("--patience", type=int, default=0, help="early stopping patience in epochs (default 0 = off)")
    c.add_argument("--no-augment", action="store_true", help="turn off rotation/shift/shear/flip")
    c.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default %(default)s)")
    c.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's choice)")
    c.add_argument(
        "--data-workers", type=int, default=1,
        help="threads that draw crops and masks ahead of the optimiser (default 1; 3-4 keep a GPU busy). Part of "
        "the run's recipe: other values draw other crops",
    )  # fmt: skip
    c.add_argument("--data-root", default=None, help="data folder (default: $EDGEAE_DATA or ../shared/data)")
    add_zoo_args(c)
    c.add_argument("--no-progress", action="store_true", help=NO_PROGRESS_HELP)
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
    try:
        if getattr(args, "_kind_run", None):
            with training_log():
                return int(args._kind_run(args) or 0)
        if args.kind != "cae":
            raise CLIError("choose what to train: edgeae train cae ... or edgeae train vae ... (see their --help)")
        from edgeae.cli.train_cae import run_cae

        with training_log():
            return run_cae(args)
    except ValueError as exc:  # a config's own check names its field: the user typed the flag (same error type)
        named = flag_names(str(exc), args)
        if named != str(exc):
            exc.args = (named,)
        raise


FIELD_FLAGS = {"score_lambda": "--lambda"}
"""Config fields whose flag is not their name with dashes."""


def flag_names(message: str, args: argparse.Namespace) -> str:
    """``message`` with a leading config field name (``destroy_range must satisfy ...``) written as the flag that
    sets it (``--destroy-range must satisfy ...``; session 46's audit), when the command has that flag."""
    head, sep, rest = message.partition(" ")
    if not sep:
        return message
    flag = FIELD_FLAGS.get(head) or (f"--{head.replace('_', '-')}" if head in vars(args) else None)
    return f"{flag} {rest}" if flag else message

"""``edgeae train cae``: train a CAE / gt-CAE on random crops of a named dataset or a folder of images.

Other model kinds add a second level here: a module listed in ``EXTRA_KINDS`` that defines
``register_cli(subparsers) -> parser`` and ``run_cli(args) -> int`` (heavy imports inside ``run_cli``).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
from pathlib import Path
from typing import Any

from edgeae.cli import CLIError, positive_int

# extra train kinds: name -> module defining register_cli(subparsers) and run_cli(args)
EXTRA_KINDS: dict[str, str] = {"vae": "edgeae.cli.train_vae"}


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
    return {dest: getattr(args, dest) for dest in ("device", "data_root") if dest in given}


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
    )
    kinds = p.add_subparsers(dest="kind", metavar="KIND")
    c = kinds.add_parser("cae", help="train a CAE / gt-CAE", description="Train a CAE on random 128x128 crops.")
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
        "may be raised)",
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
        help="stop cleanly with a checkpoint after this much wall time, e.g. 90m, 2h, 1h30m (resume later)",
    )
    c.add_argument(
        "--mode",
        default="gt",
        choices=["plain", "fixed", "gt", "colour-noise"],
        help="plain AE, fixed masking level, gt-CAE (random 50-99%% per sample), colour-noise gt-CAE",
    )
    c.add_argument("--epochs", type=int, default=None, help="training epochs (default 8)")
    c.add_argument("--crops", type=int, default=3000, help="training crops per epoch, drawn afresh every epoch")
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
    c.add_argument(
        "--zoo-name", default=None, help="also copy best.pt and metrics.json to edgeae/zoo/weights/NAME.pt/.json"
    )
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
        return int(args._kind_run(args) or 0)
    if args.kind != "cae":
        raise CLIError("choose what to train: edgeae train cae ... (see edgeae train cae --help)")
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

        cfg_file = Path(args.resume) / "config.json"
        if not cfg_file.is_file():
            raise CLIError(f"--resume {args.resume}: no config.json there (not a training run folder)")
        saved = load_config(cfg_file)
        refuse_resume_changes(args, saved, CAE_FLAG_FIELDS)
        changes: dict[str, object] = {"out": str(args.resume), "time_budget": budget}
        if args.epochs is not None:
            changes["epochs"] = args.epochs
        if args.threads is not None:
            changes["threads"] = args.threads
        if args.no_progress:
            changes["progress"] = False
        changes |= where_it_continues(args)
        cfg = dataclasses.replace(saved, **changes)  # type: ignore[arg-type]
        metrics = train_cae(cfg, resume=True)
        return _report(metrics, Path(args.resume), args.zoo_name)
    if not args.data or not args.out:
        raise CLIError("edgeae train cae needs --data and --out (or --resume RUN_DIR)")
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
        data_root=args.data_root,
        progress=not args.no_progress,
        init=args.init,
        val_seed=_val_seed(args),
    )
    metrics = train_cae(cfg)
    return _report(metrics, Path(args.out), args.zoo_name)


def _val_seed(args: argparse.Namespace) -> int | None:
    if args.val_seed is not None or not args.init:
        return args.val_seed
    from edgeae.train.cae import init_val_seed

    try:
        return init_val_seed(args.init)
    except (FileNotFoundError, ValueError) as exc:  # MetadataError is a ValueError
        raise CLIError(f"--init {args.init}: {exc}") from exc


def _report(metrics: dict[str, Any], out: Path, zoo_name: str | None) -> int:
    if not metrics.get("complete", True) and "best_epoch" not in metrics:
        print(f"stopped before the first epoch ended ({metrics.get('stopped')}); continue with --resume {out}")
        return 0
    if metrics.get("stopped"):
        print(f"{metrics['stopped']}; continue with: edgeae train cae --resume {out}")
    print(
        f"best epoch {metrics['best_epoch']}  val loss {metrics['val_loss']:.5f}  "
        f"parameters {metrics['parameters']:,}  -> {out / 'best.pt'}"
    )
    for level, m in metrics.get("val_levels", {}).items():
        print(f"  val destroyed {float(level):.0%}: MAE {m['mae']:.4f}  PSNR {m['psnr']:.2f} dB")
    if zoo_name:
        from edgeae.zoo import install

        print(f"zoo: wrote {install(zoo_name, out / 'best.pt', out / 'metrics.json')} and .json")
    return 0

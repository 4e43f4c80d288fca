"""What ``edgeae train cae`` does once its flags are parsed (:mod:`edgeae.cli.train` registers them): a new run or
``--resume RUN_DIR``, the checks before training and the printed result."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from edgeae.cli import CLIError
from edgeae.cli.train_flags import check_out, data_arg, given_flags, precision_arg, resolved_root
from edgeae.cli.train_run import recorded_command, run_resumed, stop_on_sigterm, time_budget
from edgeae.cli.train_zoo import check_zoo_args, install_into_zoo, zoo_target

# flags that only mean something in one --mode (flag dest -> modes that use it): refused with another mode
MODE_FLAGS: dict[str, tuple[str, ...]] = {
    "destroy": ("fixed",),
    "destroy_range": ("gt",),
    "coverage_range": ("colour-noise",),
    "pattern": ("fixed", "gt"),  # plain and colour-noise draw no mask
}


# --widths when not given: the published CAE's, and for unet2h the shipped flight model's (within its budget)
DEFAULT_WIDTHS: dict[str, tuple[int, ...]] = {"seed": (16, 32, 64, 128), "unet2h": (24, 32, 64, 64)}


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


def refuse_mode_flags(args: argparse.Namespace, mode: str) -> None:
    """A mask or noise flag given with a ``--mode`` that does not use it is refused, not silently ignored."""
    given = given_flags(args)
    for dest, modes in MODE_FLAGS.items():
        if dest in given and mode not in modes:
            flag = "--" + dest.replace("_", "-")
            raise CLIError(f"{flag} applies to --mode {' / '.join(modes)}, not to --mode {mode}; leave it out")


def run_cae(args: argparse.Namespace) -> int:
    return stop_on_sigterm("cae", args, lambda: _run_cae(args))


def _run_cae(args: argparse.Namespace) -> int:
    from edgeae.train.cae import CAETrainConfig, load_config, train_cae

    budget = time_budget(args)
    if args.resume and args.init:
        raise CLIError("--init starts a new run from a checkpoint's weights; --resume continues a run: pass one")
    if args.resume:
        return run_resumed(args, "cae", budget, load_config, CAE_FLAG_FIELDS, _check_cae_zoo, train_cae, _report)
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
    _check_cae_zoo(cfg, resume=False)
    check_out(args.out, args.data)  # made here, removed again if the run is refused
    metrics = train_cae(cfg, command=recorded_command(args))
    return _report(metrics, Path(args.out), cfg.zoo_name, cfg.zoo_force)


def _check_cae_zoo(cfg: Any, resume: bool = True) -> None:
    """``--zoo-name`` checks before training: the channels come from the data (the one every image of a folder
    has; ``resume``: a run started before that rule keeps its first image's)."""
    if not cfg.zoo_name:
        return
    from edgeae.train.cae import split_data

    channels = cfg.channels
    if channels is None:
        from edgeae.train.run_memory import read_headers

        train_files, val_files = split_data(cfg)
        files = [*train_files, *val_files]
        channels = cfg.channels_for(files, read_headers(files), resume)[0]  # a mixed folder: refused here
    arch = {"variant": cfg.variant, "widths": list(cfg.widths), "tile": cfg.tile}

    def parameters() -> int:
        from edgeae.models.cae import build, count_parameters

        return int(count_parameters(build(dataclasses.replace(cfg.architecture(), channels=channels or 3))))

    check_zoo_args(cfg.zoo_name, cfg.zoo_force, "cae", channels, arch, parameters, run=cfg.out)


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
    from edgeae.train.cae_steps import collapse_summary
    from edgeae.train.resume import resume_command, stop_exit_status

    status = 0 if metrics.get("complete") else stop_exit_status(metrics.get("stop") or "budget")
    hint = resume_command("cae", out, zoo_name, force)
    saved = f"state saved to {out / 'last.pt'}"
    if not metrics.get("complete") and "best_epoch" not in metrics:
        print(f"stopped before the first epoch ended ({metrics.get('stopped')}); {saved}; continue with: {hint}")
        if zoo_name:
            print(f"zoo: {zoo_name} not installed: the run is not complete")
        return status
    if not metrics.get("complete"):
        print(f"{metrics['stopped']}: {saved}; continue with: {hint}")
    print(
        f"best epoch {metrics['best_epoch']}  val loss {metrics['val_loss']:.5f}  "
        f"parameters {metrics['parameters']:,}  -> {out / 'best.pt'}"
    )
    for level, m in metrics.get("val_levels", {}).items():
        print(f"  val destroyed {float(level):.0%}: MAE {m['mae']:.4f}  PSNR {m['psnr']:.2f} dB")
    collapsed = collapse_summary(metrics)
    if collapsed:  # the epochs' warnings scroll away in a long log: said again at its end
        print(collapsed)
    install_into_zoo(metrics, out, zoo_name, force)
    return status

"""What ``edgeae train cae`` does once its flags are parsed (:mod:`edgeae.cli.train` registers them): a new run or
``--resume RUN_DIR``, the checks before training and the printed result."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeae.cli import CLIError
from edgeae.cli.train_flags import (
    check_counts,
    check_out,
    check_resume_kind,
    data_arg,
    given_flags,
    precision_arg,
    refuse_out_on_resume,
    refuse_resume_changes,
    resolved_root,
    resume_changes,
)
from edgeae.cli.train_zoo import check_zoo_args, install_complete_run, install_into_zoo, zoo_target

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


class _Terminated(KeyboardInterrupt):
    """SIGTERM outside the training loop (the loop's :class:`~edgeae.train.resume.Deadline` handles it there)."""


def stop_on_sigterm(kind: str, args: argparse.Namespace, command: Callable[[], int]) -> int:
    """Run ``command`` with SIGTERM handled from its start (``kill`` while the data is read, hashed or checked): one
    line, exit 143 as for a stop, the run folder's lock released and a refused new run's folders removed on the
    way out. The training loop installs its own handler over this one (a clean stop with ``last.pt``)."""
    import signal
    import threading

    from edgeae.train.resume import EXIT_SIGTERM, resume_command

    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) is signal.SIG_IGN:
        return command()

    def terminate(signum: int, frame: Any) -> None:
        raise _Terminated

    old = signal.signal(signal.SIGTERM, terminate)
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
        signal.signal(signal.SIGTERM, old)


def recorded_command(args: argparse.Namespace) -> str | None:
    """The command line a run's segment records (``edgeae ARGS`` as typed; None outside the CLI's main)."""
    from edgeae.train.run_record import command_line

    argv = getattr(args, "_argv", None)
    return command_line(argv) if isinstance(argv, list) else None


def run_cae(args: argparse.Namespace) -> int:
    return stop_on_sigterm("cae", args, lambda: _run_cae(args))


def _run_cae(args: argparse.Namespace) -> int:
    from edgeae.train.cae import CAETrainConfig, train_cae
    from edgeae.train.resume import parse_duration
    from edgeae.train.run_folder import named_mixture

    try:
        budget = parse_duration(args.time_budget)
    except ValueError as exc:
        raise CLIError(str(exc)) from exc
    check_counts(args)
    if args.resume and args.init:
        raise CLIError("--init starts a new run from a checkpoint's weights; --resume continues a run: pass one")
    if args.resume:
        from edgeae.train.cae import load_config

        with named_mixture(Path(args.resume), (CLIError, ValueError)):  # CAE config + VAE last.pt: named as such
            cfg_file = check_resume_kind(args, "cae")
            refuse_out_on_resume(args)
            saved = load_config(cfg_file)
            refuse_resume_changes(args, saved, CAE_FLAG_FIELDS)
            zoo_name, force = zoo_target(args, saved)
            done = install_complete_run(args, "cae")
        if done is not None:
            return done
        cfg = dataclasses.replace(saved, **resume_changes(args, budget, zoo_name, force))
        _check_cae_zoo(cfg)
        metrics = train_cae(cfg, resume=True, command=recorded_command(args))
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
    check_out(args.out)  # made here, removed again if the run is refused
    metrics = train_cae(cfg, command=recorded_command(args))
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
    install_into_zoo(metrics, out, zoo_name, force)
    return status

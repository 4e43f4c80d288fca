"""``edgeae train vae``: train the anomaly β-VAE on 64×64 patches (grey orbital, RGB rover or a folder of images),
set λ and the alarm threshold. The defaults come from :class:`edgeae.train.vae.VAETrainConfig` (the library owns
them)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path
from typing import Any

from edgeae.cli import CLIError, positive_int
from edgeae.cli.train import (
    BUDGET_HELP,
    EXIT_STATUS_HELP,
    RESUME_HELP,
    add_precision_args,
    add_zoo_args,
    check_zoo_args,
    given_flags,
    install_into_zoo,
    precision_arg,
    record_flag_defaults,
    resolved_root,
    zoo_target,
)
from edgeae.cli.train_flags import check_out
from edgeae.cli.train_run import recorded_command, run_resumed, stop_on_sigterm, time_budget


def _widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(v) for v in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"widths must be comma-separated integers, got {text!r}") from exc
    if len(widths) != 4 or min(widths) <= 0:
        raise argparse.ArgumentTypeError(f"need four positive widths, got {text!r}")
    return widths


def register_cli(kinds: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from edgeae.train.vae import DATASETS, VAETrainConfig

    d = {f.name: f.default for f in dataclasses.fields(VAETrainConfig)}
    v = kinds.add_parser(
        "vae",
        help="train the anomaly β-VAE",
        description="Train the β-VAE on 64x64 patches of a named dataset (grey orbital or RGB rover) or a folder of "
        "images (split by file as train cae splits it); tune λ (named data; a folder's comes from --lambda or a "
        "default) and the threshold on validation data. Resumable: --time-budget stops cleanly, --resume RUN_DIR "
        "continues. Progress lines (one per epoch, then the calibration) go to stderr.",
        epilog=EXIT_STATUS_HELP,
    )
    v.add_argument(
        "--out",
        default=None,
        help="output folder (config.json, loss.csv/png, best.pt, best_state.pt, last.pt, metrics.json)",
    )
    v.add_argument("--resume", metavar="RUN_DIR", default=None, help=RESUME_HELP)
    v.add_argument(
        "--time-budget",
        default=None,
        help="stop cleanly with a checkpoint after this much wall time, e.g. 60m, 1h30m (continue with --resume; "
        f"the command then exits with status 75). {BUDGET_HELP}",
    )
    v.add_argument(
        "--data",
        default=d["data"],
        help=f"training registration (edgeae.datasets: {' | '.join(sorted(DATASETS))}; default {d['data']}; "
        "orbital_* are grey, rover_* RGB) or a folder of images (sorted, every fifth file to validation)",
    )
    v.add_argument(
        "--channels", type=int, choices=[1, 3], default=None,
        help="folder data: 1 grey or 3 RGB (default: the one count all its images share; a mixed folder is refused); "
        "named data: its own",
    )  # fmt: skip
    v.add_argument(
        "--lambda", dest="lambda", type=float, default=None, metavar="LAMBDA",
        help="folder data only: weight λ of ||mu||^2 in the anomaly score (a folder has no labels to tune it on; "
        "default median(rec) / median(mu2) of its val patches); named data tune λ on labelled images",
    )  # fmt: skip
    v.add_argument("--epochs", type=int, default=None, help=f"training epochs (default {d['epochs']})")
    v.add_argument(
        "--crops", type=int, default=d["crops"],
        help=f"fresh random patches per epoch (rounded down to whole batches of --batch-size, at least one batch; "
        f"default {d['crops']})",
    )  # fmt: skip
    v.add_argument(
        "--val-crops", type=int, default=d["val_crops"], help=f"validation patches (default {d['val_crops']})"
    )
    v.add_argument(
        "--batch-size", type=int, default=d["batch_size"],
        help=f"patches per optimiser step (default {d['batch_size']})",
    )  # fmt: skip
    v.add_argument("--latent", type=int, default=d["latent"], help=f"latent dimension (default {d['latent']})")
    v.add_argument(
        "--widths", type=_widths, default=d["widths"],
        help=f"four encoder widths (default {','.join(map(str, VAETrainConfig.widths))})",
    )  # fmt: skip
    v.add_argument("--beta", type=float, default=d["beta"], help=f"weight β of the KL term (default {d['beta']})")
    v.add_argument("--lr", type=float, default=d["lr"], help=f"Adam learning rate in (0, 1) (default {d['lr']})")
    v.add_argument(
        "--seed", type=int, default=d["seed"], help=f"seed of patches, noise and initial weights (default {d['seed']})"
    )
    v.add_argument("--no-hirise", action="store_true", help="grey data only: do not add HiRISE class-0 landmark crops")
    v.add_argument(
        "--msl-ground", action="store_true", help="RGB data only: add the MSL 'ground' images of the train sols"
    )
    v.add_argument("--no-augment", action="store_true", help="turn off rotation/shift/shear/flip")
    add_precision_args(v)
    v.add_argument(
        "--device", default=d["device"],
        help=f"auto | cpu | cuda | cuda:N (default {d['device']}, unlike train cae's auto: the zoo's VAEs were trained "
        "on CPUs; on CUDA --no-bf16 is float32, the default there)",
    )  # fmt: skip
    v.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's choice)")
    v.add_argument("--data-root", default=None, help="data folder (default: $EDGEAE_DATA or ../shared/data)")
    add_zoo_args(v)
    v.add_argument("--no-progress", action="store_true", help="no progress bar")
    record_flag_defaults(v)
    return v


# flags that set a field of the run's config (flag dest -> field): on --resume each must be left out or equal
VAE_FLAG_FIELDS: dict[str, str] = {
    name: name
    for name in (
        "data",
        "crops",
        "val_crops",
        "batch_size",
        "latent",
        "widths",
        "beta",
        "lr",
        "seed",
        "channels",
    )
} | {"no_hirise": "hirise", "msl_ground": "msl_ground", "no_augment": "augment", "bf16": "bf16", "no_bf16": "bf16"}
VAE_FLAG_FIELDS["lambda"] = "score_lambda"  # --lambda (a keyword: read as getattr(args, "lambda"))


def run_cli(args: argparse.Namespace) -> int:
    return stop_on_sigterm("vae", args, lambda: _run_cli(args))


def _run_cli(args: argparse.Namespace) -> int:
    from edgeae.train.vae import DATASETS, VAETrainConfig, load_config, train_vae

    budget = time_budget(args)
    if args.resume:
        return run_resumed(args, "vae", budget, load_config, VAE_FLAG_FIELDS, _check_vae_zoo, train_vae, _report)
    if not args.out:
        raise CLIError("edgeae train vae needs --out (or --resume RUN_DIR)")
    data, channels = _data_and_channels(args)
    zoo_name, force = zoo_target(args)
    cfg = VAETrainConfig(
        out=args.out,
        data=data,
        channels=channels,
        score_lambda=getattr(args, "lambda"),
        widths=args.widths,
        latent=args.latent,
        beta=args.beta,
        lr=args.lr,
        batch_size=args.batch_size,
        epochs=args.epochs if args.epochs is not None else VAETrainConfig.epochs,
        crops=args.crops,
        val_crops=args.val_crops,
        seed=args.seed,
        hirise=not args.no_hirise and data in DATASETS,
        msl_ground=args.msl_ground,
        augment=not args.no_augment,
        bf16=precision_arg(args),
        time_budget=budget,
        device=args.device,
        threads=args.threads,
        data_root=resolved_root(args.data_root),
        progress=not args.no_progress,
        zoo_name=zoo_name,
        zoo_force=force,
    )
    problems = cfg.new_run_problems()  # rules for new runs only: a saved run that breaks them still resumes
    if problems:
        raise CLIError(problems[0])
    _check_vae_zoo(cfg)
    check_out(args.out, getattr(args, "data", None))  # made here, removed again if the run is refused
    return _report(train_vae(cfg, command=recorded_command(args)), Path(args.out), cfg.zoo_name, cfg.zoo_force)


def _data_and_channels(args: argparse.Namespace) -> tuple[str, int | None]:
    """``--data`` as the config keeps it (a folder: its absolute path) and the channels (a folder: ``--channels``,
    else the one every image has: a folder that mixes grey and colour is refused); the flags that apply to named
    data only are refused with a folder."""
    from edgeae.train.vae import DATASETS, VAETrainConfig

    if args.data in DATASETS:
        if getattr(args, "lambda") is not None:
            raise CLIError(f"--lambda applies to a folder of images; --data {args.data} tunes λ on labelled images")
        if args.no_hirise and DATASETS[args.data] != 1:
            raise CLIError(f"--no-hirise applies to grey data (orbital_*); --data {args.data} adds no HiRISE crops")
        if "msl_ground" in given_flags(args) and DATASETS[args.data] != 3:
            raise CLIError(f"--msl-ground applies to RGB data (rover_*); --data {args.data} is grey")
        return args.data, args.channels
    if not Path(args.data).is_dir():
        from edgeae.datasets import SPLITS

        if args.data in SPLITS:  # a dataset, of another trainer: say so, not "neither a dataset nor a folder"
            raise CLIError(
                f"--data {args.data} is a dataset the VAE does not train on (its datasets: "
                f"{', '.join(sorted(DATASETS))}; train cae takes it), or give a folder of images"
            )
        raise CLIError(f"--data {args.data!r} is neither a dataset ({', '.join(sorted(DATASETS))}) nor a folder")
    for flag, given in (("--no-hirise", args.no_hirise), ("--msl-ground", "msl_ground" in given_flags(args))):
        if given:
            raise CLIError(f"{flag} applies to a named dataset; --data {args.data} is a folder of images")
    from edgeae.cli.train_flags import data_arg
    from edgeae.train.vae import data_files

    data = data_arg(args.data)
    if args.channels is not None:
        return data, args.channels
    from edgeae.train.channels import folder_channels
    from edgeae.train.run_memory import read_headers

    try:  # the CAE trainer's rule: the channels every image has; a folder that mixes grey and colour is refused
        train, val = data_files(VAETrainConfig(out=args.out, data=data, channels=1, hirise=False), Path(data))
        files = [*train, *val]
        shapes = read_headers(files)  # every unreadable file named at once
    except (OSError, ValueError) as exc:
        raise CLIError(f"--data {args.data}: {exc}") from exc
    channels, why = folder_channels(data, files, shapes, None)  # the line names the folder
    logging.getLogger("edgeae.train.vae").info("%s", why)  # the trainer's logger: its lines keep their name
    return data, channels


def _check_vae_zoo(cfg: Any) -> None:
    arch = {"widths": list(cfg.widths), "latent": cfg.latent, "patch": cfg.patch}

    def parameters() -> int:
        from edgeae.models.vae import VAE, VAEConfig, count_parameters

        return int(count_parameters(VAE(VAEConfig(cfg.n_channels, cfg.widths, cfg.latent, cfg.patch))))

    check_zoo_args(cfg.zoo_name, cfg.zoo_force, "vae", cfg.n_channels, arch, parameters, run=cfg.out)


def _report(m: dict[str, Any], out: Path, zoo_name: str | None, force: bool = False) -> int:
    """Print the result; return 0 for a complete run, the stop's exit status (75, 130, 143) for a stopped one."""
    from edgeae.train.resume import resume_command, stop_exit_status

    if not m.get("complete"):
        print(f"{m.get('stopped')} at epoch {m.get('epoch')}, batch {m.get('batch')}: state saved to "
              f"{out / 'last.pt'}; continue with: {resume_command('vae', out, zoo_name, force)}")  # fmt: skip
        if zoo_name:
            print(f"zoo: {zoo_name} not installed: the run is not complete")
        return stop_exit_status(m.get("stop") or "budget")
    c = m["calibration"]
    base = c.get("baseline_patch_std_ap")
    baseline = f", patch-std baseline {base:.3f}" if isinstance(base, float) else ""
    if isinstance(c.get("lambda_ap"), float):
        how = f"in-sample AP {c['lambda_ap']:.3f}{baseline} on {c['lambda_feature']}"
    else:  # folder data: not tuned
        how = f"not tuned, a folder has no labels: {c.get('lambda_source', '?')}"
    print(
        f"best epoch {m['best_epoch']}  val loss {m['val_loss']:.2f}  parameters {m['parameters']:,}  "
        f"λ {c['lambda']:.4g} ({how})  threshold {c['threshold']:.4g}  -> {out / 'best.pt'}"
    )
    install_into_zoo(m, out, zoo_name, force)
    return 0

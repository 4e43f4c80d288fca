"""``edgeae train vae``: train the β-VAE on 64×64 orbital patches, tune λ and the alarm threshold."""

from __future__ import annotations

import argparse
from pathlib import Path


def _widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(v) for v in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"widths must be comma-separated integers, got {text!r}") from exc
    if len(widths) != 4 or min(widths) <= 0:
        raise argparse.ArgumentTypeError(f"need four positive widths, got {text!r}")
    return widths


def register_cli(kinds: argparse._SubParsersAction) -> argparse.ArgumentParser:
    v = kinds.add_parser(
        "vae",
        help="train the anomaly β-VAE",
        description="Train the β-VAE on 64x64 orbital patches; tune λ and the threshold.",
    )
    v.add_argument("--out", required=True, help="output folder (config.json, loss.csv/png, best.pt, metrics.json)")
    v.add_argument("--epochs", type=int, default=6)
    v.add_argument("--crops", type=int, default=4096, help="fresh random patches per epoch")
    v.add_argument("--val-crops", type=int, default=512)
    v.add_argument("--batch-size", type=int, default=64)
    v.add_argument("--latent", type=int, default=256)
    v.add_argument("--widths", type=_widths, default=(16, 32, 64, 32), help="four encoder widths")
    v.add_argument("--channels", type=int, choices=[1, 3], default=1)
    v.add_argument("--beta", type=float, default=0.25)
    v.add_argument("--lr", type=float, default=1e-3)
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--no-hirise", action="store_true", help="do not add HiRISE class-0 landmark crops")
    v.add_argument("--no-augment", action="store_true")
    v.add_argument("--device", default="cpu", help="auto | cpu | cuda | cuda:N")
    v.add_argument("--threads", type=int, default=None)
    v.add_argument("--data-root", default=None)
    v.add_argument("--zoo-name", default=None, help="also copy best.pt and metrics.json into the zoo weights")
    v.add_argument("--no-progress", action="store_true")
    return v


def run_cli(args: argparse.Namespace) -> int:
    from edgeae.train.vae import VAETrainConfig, train_vae

    cfg = VAETrainConfig(
        out=args.out,
        channels=args.channels,
        widths=args.widths,
        latent=args.latent,
        beta=args.beta,
        lr=args.lr,
        batch_size=args.batch_size,
        epochs=args.epochs,
        crops=args.crops,
        val_crops=args.val_crops,
        seed=args.seed,
        hirise=not args.no_hirise,
        augment=not args.no_augment,
        device=args.device,
        threads=args.threads,
        data_root=args.data_root,
        progress=not args.no_progress,
    )
    m = train_vae(cfg)
    out = Path(args.out)
    c = m["calibration"]
    print(
        f"best epoch {m['best_epoch']}  val loss {m['val_loss']:.2f}  parameters {m['parameters']:,}  "
        f"λ {c['lambda']:.4g} (AP {c['lambda_ap']:.3f} on {c['lambda_feature']})  "
        f"threshold {c['threshold']:.4g}  -> {out / 'best.pt'}"
    )
    if args.zoo_name:
        from edgeae.zoo import install

        print(f"zoo: wrote {install(args.zoo_name, out / 'best.pt', out / 'metrics.json')} and .json")
    return 0

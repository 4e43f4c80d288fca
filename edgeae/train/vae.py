"""Train the lunar β-VAE on 64×64 grey orbital patches, then tune λ and the alarm threshold.

Data (named, never the evaluation patches):

- training: random crops of the ``orbital_gray`` train split plus the class-0 HiRISE landmark crops of the
  training products (:func:`edgeae.anomaly.labels.hirise_training_products`), no-data patches skipped,
  light augmentation (:mod:`edgeae.train.crops`), fresh crops every epoch;
- loss validation: crops of the ``orbital_gray`` val split;
- λ: two LROC NAC crater mosaics kept apart from every reported figure (:data:`LAMBDA_FILES`), positives =
  patches holding a crater centre of diameter ≥ 32 px, AP maximised over a grid;
- threshold: the 99th percentile of scores of the ``orbital_gray`` val split patches (normal terrain).

Loss: L1 reconstruction (sum over pixels) + β·KL, β = 1/4; Adam 1e-3 (as in the paper).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeae._optional import require
from edgeae.cli.train_vae import register_cli, run_cli  # the `edgeae train vae` subcommand

__all__ = ["VAETrainConfig", "calibrate", "register_cli", "run_cli", "train_vae", "training_files"]

log = logging.getLogger(__name__)

# LROC NAC mosaics used only to choose λ (never reported); the other 10 are the evaluation set.
LAMBDA_FILES: tuple[str, ...] = (
    "orbital_gray/lroc_nac_craters/M1266003170_mosaic_train_small.png",
    "orbital_gray/lroc_nac_craters/M1275410097_mosaic_train_small.png",
)
LAMBDA_CRATER_MIN = 32.0  # px: the "large crater" feature λ is tuned for
HIRISE_DIR = "hirise_landmarks"


@dataclass(frozen=True)
class VAETrainConfig:
    """One VAE training run; written to ``out/config.json``."""

    out: str
    channels: int = 1
    widths: tuple[int, ...] = (16, 32, 64, 32)
    latent: int = 256
    patch: int = 64
    beta: float = 0.25
    lr: float = 1e-3
    batch_size: int = 64
    epochs: int = 6
    crops: int = 4096
    val_crops: int = 512
    seed: int = 0
    hirise: bool = True
    augment: bool = True
    threshold_quantile: float = 0.99
    device: str = "cpu"
    threads: int | None = None
    data_root: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        for name in ("batch_size", "epochs", "crops", "val_crops", "latent", "patch"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not (self.beta >= 0 and math.isfinite(self.beta)):
            raise ValueError(f"beta must be finite and >= 0, got {self.beta}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VAETrainConfig:
        d = dict(d)
        d["widths"] = tuple(d.get("widths", (16, 32, 64, 32)))
        return cls(**d)


def training_files(root: Path, hirise: bool = True) -> list[Path]:
    """orbital_gray train split + class-0 HiRISE landmark crops of the training products."""
    from edgeae.anomaly.labels import hirise_product, hirise_training_products, read_hirise_labels
    from edgeae.datasets import split_files

    files = split_files("orbital_gray", "train", root)
    if hirise:
        labels = read_hirise_labels(root / HIRISE_DIR / "labels.txt")
        products = hirise_training_products(labels)
        files += [root / HIRISE_DIR / "images" / f for f, c in labels if c == 0 and hirise_product(f) in products]
    return files


def _vae_loss(beta: float, generator: Any) -> Any:
    def loss(model: Any, batch: Any, device: Any) -> Any:
        return model.training_losses(batch.to(device), beta=beta, generator=generator)["loss"]

    return loss


def _val_loss(beta: float, seed: int) -> Any:
    torch = require("torch")

    def loss(model: Any, batch: Any, device: Any) -> Any:
        g = torch.Generator().manual_seed(seed)  # the same ε for every evaluation: comparable epochs
        return model.training_losses(batch.to(device), beta=beta, generator=g)["loss"]

    return loss


def calibrate(model: Any, metadata: Any, root: Path, patch: int, quantile: float, batch: int = 256) -> dict[str, Any]:
    """Tune λ on :data:`LAMBDA_FILES` (sets it in the model), then the threshold on orbital_gray val."""
    from edgeae.anomaly.calibrate import threshold, tune_lambda
    from edgeae.anomaly.labels import crater_file_for, patch_labels, read_craters
    from edgeae.anomaly.score import make_scorer, score_array
    from edgeae.datasets import split_files
    from edgeae.imageio import read_image
    from edgeae.predictor import TorchPredictor

    model.eval()
    scorer = make_scorer(TorchPredictor(model, metadata, "training"))
    rec, mu2, labels = [], [], []
    for rel in LAMBDA_FILES:
        img = read_image(root / rel, channels=metadata.channels)
        r = score_array(img.pixels, scorer, patch, patch // 2, valid=img.valid, batch=batch, file=rel)
        rec.append(r.extras["rec"])
        mu2.append(r.extras["mu2"])
        labels.append(patch_labels(r.xy, patch, read_craters(crater_file_for(root / rel)), LAMBDA_CRATER_MIN))
    tuned = tune_lambda(np.concatenate(rec), np.concatenate(mu2), np.concatenate(labels))
    model.set_lambda(tuned["lambda"])
    normal = []
    for f in split_files("orbital_gray", "val", root):
        img = read_image(f, channels=metadata.channels)
        normal.append(score_array(img.pixels, scorer, patch, patch, valid=img.valid, batch=batch).score)
    scores = np.concatenate(normal)
    return {
        "lambda": tuned["lambda"],
        "threshold": threshold(scores, quantile),
        "threshold_quantile": quantile,
        "lambda_ap": tuned["ap"],
        "lambda_grid": tuned["grid"],
        "lambda_files": [Path(r).name for r in LAMBDA_FILES],
        "lambda_feature": f"craters >= {LAMBDA_CRATER_MIN:g} px",
        "threshold_patches": int(scores.size),
    }


def train_vae(config: VAETrainConfig) -> dict[str, Any]:
    """Train + calibrate; write ``best.pt``, ``metrics.json`` and loss curves; return the metrics."""
    torch = require("torch")
    from edgeae import __version__
    from edgeae.checkpoint import save_checkpoint
    from edgeae.data import data_root
    from edgeae.datasets import split_files
    from edgeae.metadata import ModelMetadata, manifest_hash
    from edgeae.models.vae import VAE, VAEConfig, count_macs, count_parameters
    from edgeae.train.common import fit, start_run, write_history, write_json
    from edgeae.train.crops import Augment, load_masters, sample_crops

    out, device = start_run(config.out, config.to_dict(), config.threads, config.device)
    root = data_root(config.data_root)
    train_files = training_files(root, config.hirise)
    val_files = split_files("orbital_gray", "val", root)
    t0 = time.perf_counter()
    masters = load_masters(train_files, config.channels)
    val_rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0x7A1]))
    val = sample_crops(
        load_masters(val_files, config.channels), config.val_crops, config.patch, val_rng, Augment.none()
    )
    log.info("%d training images, %d val crops in %.1fs", len(masters), len(val), time.perf_counter() - t0)
    aug = Augment() if config.augment else Augment.none()

    torch_seed = int(np.random.SeedSequence([config.seed, 0x70]).generate_state(1)[0])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(torch_seed)  # weight init only, never the caller's state
        vae_cfg = VAEConfig(channels=config.channels, widths=config.widths, latent=config.latent, patch=config.patch)
        model = VAE(vae_cfg).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    noise = torch.Generator().manual_seed(torch_seed + 1)

    def train_batches(epoch: int) -> Any:
        rng = np.random.default_rng(np.random.SeedSequence([config.seed, epoch]))
        crops = sample_crops(masters, config.crops, config.patch, rng, aug)
        order = rng.permutation(len(crops))
        for i in range(0, len(crops), config.batch_size):
            yield torch.from_numpy(crops[order[i : i + config.batch_size]])

    val_batches = [torch.from_numpy(val[i : i + 256]) for i in range(0, len(val), 256)]
    metadata = ModelMetadata(
        kind="vae",
        architecture=vae_cfg.to_dict(),
        input_shape=(-1, config.channels, config.patch, config.patch),
        channels=config.channels,
        training_data_hash=manifest_hash(list(train_files)),
        edgeae_version=__version__,
        extra={
            "train_files": len(train_files),
            "val_files": [p.name for p in val_files],
            "beta": config.beta,
            "seed": config.seed,
            "score": "sum over pixels of (x - x_hat)^2 + lambda * sum(mu^2), x_hat decoded from mu",
        },
    )
    best: dict[str, Any] = {}

    def on_best(epoch: int, val_loss: float, history: list[dict[str, Any]]) -> None:
        best.update(
            epoch=epoch,
            val_loss=val_loss,
            state={k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        )

    history, _ = fit(
        model,
        train_batches,
        lambda: val_batches,
        _vae_loss(config.beta, noise),
        optimizer,
        config.epochs,
        device,
        on_best,
        out_dir=out,
        show_progress=config.progress,
        val_loss_fn=_val_loss(config.beta, config.seed),
    )
    model.load_state_dict(best["state"])
    model.cpu().eval()
    log.info("calibrating λ and threshold")
    score = calibrate(model, metadata, root, config.patch, config.threshold_quantile)
    vae_cfg = model.config
    metadata = metadata.replace(
        architecture=vae_cfg.to_dict(), score={"lambda": score["lambda"], "threshold": score["threshold"]}
    )
    metrics: dict[str, Any] = {
        "best_epoch": best["epoch"],
        "val_loss": best["val_loss"],
        "epochs_run": len(history),
        "parameters": count_parameters(model),
        "macs_per_patch": count_macs(vae_cfg),
        "train_seconds": round(sum(h["seconds"] for h in history), 1),
        "device": str(device),
        "calibration": score,
    }
    path = save_checkpoint(out / "best.pt", model, metadata, metrics, history)
    write_history(history, out)
    write_json(out / "metrics.json", metrics)
    log.info(
        "best epoch %d, val loss %.2f, λ %.4g, threshold %.4g -> %s",
        best["epoch"],
        best["val_loss"],
        score["lambda"],
        score["threshold"],
        path,
    )
    return metrics


def load_config(path: str | os.PathLike[str]) -> VAETrainConfig:
    """Read a ``config.json`` written by :func:`train_vae`."""
    return VAETrainConfig.from_dict(json.loads(Path(path).read_text()))

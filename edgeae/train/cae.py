"""Train the CAE (plain, fixed-level, gt-CAE or colour-noise gt-CAE) on random crops of master images.

Input = masked or noisy crop, target = clean crop, MSE, Adam, batch 32. The best epoch by validation loss
is saved with :func:`edgeae.checkpoint.save_checkpoint`; the config, loss curves and metrics sit beside it::

    out/config.json  out/loss.csv  out/loss.png  out/best.pt  out/metrics.json
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeae._optional import require
from edgeae.train.corrupt import MODES, Corruption, corrupt, corrupt_at, sample_seed
from edgeae.train.crops import Augment

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".pgm", ".ppm")
DATASET_CHANNELS = {"rover_rgb": 3, "orbital_gray": 1}
EVAL_LEVELS = (0.5, 0.9, 0.99)  # destroyed fractions reported in metrics.json


@dataclass(frozen=True)
class CAETrainConfig:
    """Everything that defines a CAE training run (validated; written to ``config.json``).

    ``data`` is a dataset name of :mod:`edgeae.datasets` (train/val splits by file) or a folder of images
    (sorted; every fifth file, at least one, is validation). ``channels`` None = from the dataset.
    """

    data: str
    out: str
    mode: str = "gt"
    epochs: int = 8
    crops: int = 3000
    val_crops: int = 400
    batch_size: int = 32
    lr: float = 1e-3
    seed: int = 0
    destroy: float = 0.9
    destroy_range: tuple[float, float] = (0.5, 0.99)
    coverage_range: tuple[float, float] = (0.1, 1.0)
    amplitude: float = 1.0
    pattern: str = "uniform"
    widths: tuple[int, ...] = (16, 32, 64, 128)
    variant: str = "seed"  # edgeae.models.cae.VARIANTS: "seed" (published CAE) or "unet"
    channels: int | None = None
    tile: int = 128
    augment: bool = True
    patience: int = 0
    device: str = "auto"
    threads: int | None = None
    data_root: str | None = None
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown training mode {self.mode!r}; expected one of {MODES}")
        for name in ("epochs", "crops", "val_crops", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not (0 < self.lr < 1):
            raise ValueError(f"lr must be in (0, 1), got {self.lr}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.channels not in (None, 1, 3):
            raise ValueError(f"channels must be 1, 3 or None, got {self.channels}")
        if self.patience < 0:
            raise ValueError(f"patience must be >= 0, got {self.patience}")
        if self.threads is not None and self.threads <= 0:
            raise ValueError(f"threads must be positive, got {self.threads}")
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        _ = self.corruption  # validates the mask/noise settings
        self.architecture()  # validates widths/tile

    @property
    def corruption(self) -> Corruption:
        return Corruption(
            mode=self.mode,
            destroy=self.destroy,
            destroy_range=self.destroy_range,
            coverage_range=self.coverage_range,
            amplitude=self.amplitude,
            pattern=self.pattern,
        )

    def resolved_channels(self, first_file: str | os.PathLike[str] | None = None) -> int:
        """``channels``, else the dataset's, else 3 when ``first_file`` is colour and 1 when grey."""
        if self.channels is not None:
            return self.channels
        if self.data in DATASET_CHANNELS:
            return DATASET_CHANNELS[self.data]
        if first_file is not None:
            from edgeae.imageio import image_shape

            return 3 if image_shape(first_file)[2] >= 3 else 1
        raise ValueError(f"channels not given and {self.data!r} is not a named dataset: pass channels 1 or 3")

    def architecture(self) -> Any:
        from edgeae.models.cae import CAEConfig

        return CAEConfig(
            channels=self.channels or DATASET_CHANNELS.get(self.data, 3),
            widths=self.widths,
            tile=self.tile,
            variant=self.variant,
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("widths", "destroy_range", "coverage_range"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CAETrainConfig:
        d = dict(d)
        for k in ("widths", "destroy_range", "coverage_range"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


def split_data(config: CAETrainConfig) -> tuple[list[Path], list[Path]]:
    """(train files, val files) for ``config.data``: a named dataset split or a folder split by file."""
    from edgeae.datasets import SPLITS, split_files

    if config.data in SPLITS:
        return (
            split_files(config.data, "train", root=config.data_root),
            split_files(config.data, "val", root=config.data_root),
        )
    folder = Path(config.data)
    if not folder.is_dir():
        raise FileNotFoundError(f"--data {config.data!r} is neither a dataset ({sorted(SPLITS)}) nor a folder")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if len(files) < 2:
        raise ValueError(f"{folder}: need at least 2 images to split train/val by file, found {len(files)}")
    val = files[::5]
    train = [f for f in files if f not in val]
    return train, val


class CropDataset:
    """Precomputed clean crops; item i of epoch e is (corrupted, clean) from seed (seed, e, i)."""

    def __init__(self, crops: np.ndarray, spec: Corruption, seed: int) -> None:
        self.crops, self.spec, self.seed, self.epoch = crops, spec, seed, 0

    def __len__(self) -> int:
        return int(self.crops.shape[0])

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        clean = self.crops[i]
        x, _ = corrupt(clean, self.spec, sample_seed(self.seed, self.epoch, i))
        return x, clean


def mse_loss(model: Any, batch: Any, device: Any) -> Any:
    torch = require("torch")
    x, y = (t.to(device, non_blocking=True) for t in batch)
    return torch.nn.functional.mse_loss(model(x).float(), y.float())


def _predict(model: Any, x: np.ndarray, device: Any, batch: int = 64) -> np.ndarray:
    torch = require("torch")
    model.eval()
    outs = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            outs.append(model(torch.from_numpy(x[i : i + batch]).to(device)).float().cpu().numpy())
    return np.concatenate(outs)


def level_metrics(
    model: Any, clean: np.ndarray, device: Any, levels: tuple[float, ...], seed: int, pattern: str = "uniform"
) -> dict[str, dict[str, float]]:
    """MAE and PSNR of the reconstruction (known pixels kept) on ``clean`` crops at each destroyed level."""
    out: dict[str, dict[str, float]] = {}
    for level in levels:
        masked, keep = corrupt_at(clean, level, seed, pattern)
        recon = _predict(model, masked, device)
        recon = np.where(keep[:, None], clean, recon)
        err = recon - clean
        mse = float(np.mean(err**2))
        out[f"{level:g}"] = {
            "mae": float(np.mean(np.abs(err))),
            "psnr": float(10 * np.log10(1.0 / max(mse, 1e-12))),
            "error_variance": float(np.var(err)),
        }
    return out


def train_cae(config: CAETrainConfig) -> dict[str, Any]:
    """Run one training; return the metrics (also written to ``out/metrics.json``)."""
    torch = require("torch")
    from edgeae import __version__
    from edgeae.checkpoint import save_checkpoint
    from edgeae.metadata import ModelMetadata, manifest_hash
    from edgeae.models.cae import CAEConfig, count_parameters
    from edgeae.models.cae import build as build_cae
    from edgeae.train.common import fit, seeded_generator, start_run, write_history, write_json
    from edgeae.train.crops import load_masters, sample_crops

    out, device = start_run(config.out, config.to_dict(), config.threads, config.device)
    train_files, val_files = split_data(config)
    channels = config.resolved_channels(train_files[0])
    spec = config.corruption
    t0 = time.perf_counter()
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0xC0]))
    aug = Augment() if config.augment else Augment.none()
    train_crops = sample_crops(load_masters(train_files, channels), config.crops, config.tile, rng, aug)
    val_rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0x7A1]))
    val_clean = sample_crops(load_masters(val_files, channels), config.val_crops, config.tile, val_rng, Augment.none())
    log.info(
        "%d train crops from %d files, %d val crops from %d files in %.1fs",
        len(train_crops),
        len(train_files),
        len(val_clean),
        len(val_files),
        time.perf_counter() - t0,
    )
    val_in = np.stack([corrupt(c, spec, sample_seed(config.seed, -1, i))[0] for i, c in enumerate(val_clean)])

    torch_seed = int(np.random.SeedSequence([config.seed, 0x70]).generate_state(1)[0])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(torch_seed)  # local to this block: weight init only, never the caller's state
        cae_cfg = CAEConfig(channels=channels, widths=config.widths, tile=config.tile, variant=config.variant)
        model = build_cae(cae_cfg).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    dataset = CropDataset(train_crops, spec, config.seed)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=True,
        generator=seeded_generator(config.seed),
        collate_fn=_collate,
    )
    val_batches = [
        (torch.from_numpy(val_in[i : i + 64]), torch.from_numpy(val_clean[i : i + 64]))
        for i in range(0, len(val_in), 64)
    ]

    def train_batches(epoch: int) -> Any:
        dataset.epoch = epoch
        return loader

    metadata = ModelMetadata(
        kind="cae",
        architecture=cae_cfg.to_dict(),
        input_shape=(-1, channels, config.tile, config.tile),
        channels=channels,
        mask=spec.describe(),
        training_data_hash=manifest_hash(list(train_files)),
        edgeae_version=__version__,
        extra={
            "data": config.data,
            "train_files": [p.name for p in train_files],
            "val_files": [p.name for p in val_files],
            "crops": config.crops,
            "seed": config.seed,
        },
    )
    best_path = out / "best.pt"
    best_state: dict[str, Any] = {}

    def on_best(epoch: int, val_loss: float, history: list[dict[str, Any]]) -> None:
        best_state.update(epoch=epoch, val_loss=val_loss)
        best_state["state"] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        save_checkpoint(best_path, model, metadata, {"best_epoch": epoch, "val_loss": val_loss}, history)

    history, _ = fit(
        model,
        train_batches,
        lambda: val_batches,
        mse_loss,
        optimizer,
        config.epochs,
        device,
        on_best,
        out_dir=out,
        patience=config.patience,
        show_progress=config.progress,
    )
    model.load_state_dict(best_state["state"])
    metrics: dict[str, Any] = {
        "best_epoch": best_state["epoch"],
        "val_loss": best_state["val_loss"],
        "epochs_run": len(history),
        "parameters": count_parameters(model),
        "train_seconds": round(sum(h["seconds"] for h in history), 1),
        "device": str(device),
        "val_crops": config.val_crops,
    }
    if spec.mode != "colour-noise":
        metrics["val_levels"] = level_metrics(
            model, val_clean, device, EVAL_LEVELS, seed=config.seed + 10_000, pattern=spec.pattern
        )
    save_checkpoint(best_path, model, metadata, metrics, history)
    write_history(history, out)
    write_json(out / "metrics.json", metrics)
    log.info("best epoch %d, val loss %.5f -> %s", metrics["best_epoch"], metrics["val_loss"], best_path)
    return metrics


def _collate(items: list[tuple[np.ndarray, np.ndarray]]) -> tuple[Any, Any]:
    torch = require("torch")
    x = np.stack([a for a, _ in items])
    y = np.stack([b for _, b in items])
    return torch.from_numpy(x), torch.from_numpy(y)


def load_config(path: str | os.PathLike[str]) -> CAETrainConfig:
    """Read a ``config.json`` written by :func:`train_cae`."""
    return CAETrainConfig.from_dict(json.loads(Path(path).read_text()))

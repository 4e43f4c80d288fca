"""Train the CAE (plain, fixed-level, gt-CAE or colour-noise gt-CAE) on random crops of master images.

Input = masked or noisy crop, target = clean crop, MSE, Adam, batch 32. The best epoch by validation loss
is saved with :func:`edgeae.checkpoint.save_checkpoint`; the config, loss curves and metrics sit beside it::

    out/config.json  out/loss.csv  out/loss.png  out/best.pt  out/metrics.json
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeae._optional import require
from edgeae.train.common import check_zoo_fields, drop_zoo_defaults
from edgeae.train.corrupt import MODES, Corruption, corrupt, corrupt_at, corrupt_keep, sample_seed
from edgeae.train.crops import Augment

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".pgm", ".ppm")
DATASET_CHANNELS = {"rover_rgb": 3, "orbital_gray": 1, "rover_rgb_v2": 3, "orbital_gray_v2": 1}
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
    known_blocks: float = 0.0  # probability that a training crop also keeps whole blocks (Corruption)
    widths: tuple[int, ...] = (16, 32, 64, 128)
    variant: str = "seed"  # edgeae.models.cae.VARIANTS: "seed" (published CAE), "unet", "unet2", "unet2h"
    channels: int | None = None
    tile: int = 128
    augment: bool = True
    patience: int = 0
    loss: str = "mse"  # "mse" or "l1"
    bf16: bool | None = None  # bfloat16 autocast; None = on CUDA and on a CPU with hardware bfloat16
    channels_last: bool = True
    lr_schedule: str = "cosine"  # "cosine" (to min_lr_frac·lr over all epochs, per step) or "constant"
    min_lr_frac: float = 0.05
    time_budget: float | None = None  # seconds; the run stops cleanly with last.pt when it is spent
    device: str = "auto"
    threads: int | None = None
    data_workers: int = 1  # threads drawing crops and masks ahead of the optimiser (a GPU outruns one)
    data_root: str | None = None
    progress: bool = True
    init: str | None = None  # warm start: weights of this checkpoint (same architecture); fresh optimiser/schedule
    val_seed: int | None = None  # seed of the validation crops and masks; None = ``seed``
    extra: dict[str, Any] = field(default_factory=dict)
    zoo_name: str | None = None  # --zoo-name: the command line installs the run here once it is complete
    zoo_force: bool = False  # --force: that install may replace a registered model of another architecture

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
        if self.val_seed is not None and (isinstance(self.val_seed, bool) or self.val_seed < 0):
            raise ValueError(f"val_seed must be >= 0 or None, got {self.val_seed!r}")
        if self.channels not in (None, 1, 3):
            raise ValueError(f"channels must be 1, 3 or None, got {self.channels}")
        if self.patience < 0:
            raise ValueError(f"patience must be >= 0, got {self.patience}")
        if self.threads is not None and self.threads <= 0:
            raise ValueError(f"threads must be positive, got {self.threads}")
        if isinstance(self.data_workers, bool) or not isinstance(self.data_workers, int) or self.data_workers < 1:
            raise ValueError(f"data_workers must be a positive integer, got {self.data_workers!r}")
        if self.loss not in ("mse", "l1"):
            raise ValueError(f"loss must be mse or l1, got {self.loss!r}")
        if self.lr_schedule not in ("cosine", "constant"):
            raise ValueError(f"lr_schedule must be cosine or constant, got {self.lr_schedule!r}")
        if not (0 <= self.min_lr_frac <= 1):
            raise ValueError(f"min_lr_frac must be in [0, 1], got {self.min_lr_frac}")
        if self.time_budget is not None and not self.time_budget > 0:
            raise ValueError(f"time_budget must be positive seconds, got {self.time_budget}")
        check_zoo_fields(self.zoo_name, self.zoo_force)
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
            known_blocks=self.known_blocks,
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

    @property
    def crops_per_epoch(self) -> int:
        """The crops an epoch trains on: whole batches only, ``crops`` rounded down to a multiple of ``batch_size``
        (at least one batch). The VAE trainer follows the same rule."""
        return max(1, self.crops // self.batch_size) * self.batch_size

    @property
    def resolved_val_seed(self) -> int:
        """The seed of the validation crops and masks: ``val_seed``, else ``seed``."""
        return self.seed if self.val_seed is None else self.val_seed

    def use_bf16(self, device_type: str) -> bool:
        """Whether this run trains under bfloat16 autocast on ``device_type``."""
        from edgeae.train.common import default_bf16

        return default_bf16(device_type) if self.bf16 is None else bool(self.bf16)

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
        if not d["known_blocks"]:  # absent from runs started before it existed: they still resume
            del d["known_blocks"]
        return drop_zoo_defaults(d)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CAETrainConfig:
        """The config of a ``config.json`` (its ``kind`` must be ``cae`` where present; unknown keys refused)."""
        from edgeae.train.common import config_fields

        d = config_fields(cls, d, "cae")
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


def _predict(model: Any, x: np.ndarray, device: Any, batch: int = 64) -> np.ndarray:
    torch = require("torch")
    model.eval()
    outs = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            outs.append(model(torch.from_numpy(x[i : i + batch]).to(device)).float().cpu().numpy())
    return np.concatenate(outs)


def validation_crops(config: CAETrainConfig, val_files: list[Path], channels: int) -> tuple[np.ndarray, np.ndarray]:
    """(clean, corrupted) validation crops of a run: the same crops and masks every time for one config
    (seeded by :attr:`CAETrainConfig.resolved_val_seed`), so checkpoints can be compared on them later."""
    clean, corrupted, _keep = validation_set(config, val_files, channels)
    return clean, corrupted


def validation_set(
    config: CAETrainConfig, val_files: list[Path], channels: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """:func:`validation_crops` plus the bool (N, H, W) masks of the pixels each corrupted crop keeps (None for
    ``plain`` and ``colour-noise``, which keep no pixel known: their PSNR is over every pixel)."""
    from edgeae.train.crops import load_masters, sample_crops

    vseed = config.resolved_val_seed
    rng = np.random.default_rng(np.random.SeedSequence([vseed, 0x7A1]))
    clean = sample_crops(load_masters(val_files, channels), config.val_crops, config.tile, rng, Augment.none())
    # sparse masks only (no known blocks), so runs with and without them validate on the same inputs
    spec = dataclasses.replace(config.corruption, known_blocks=0.0)
    parts = [corrupt_keep(c, spec, sample_seed(vseed, -1, i)) for i, c in enumerate(clean)]
    corrupted = np.stack([x for x, _, _ in parts])
    keeps = [k for _, _, k in parts]
    keep = None if any(k is None for k in keeps) else np.stack([k for k in keeps if k is not None])
    return clean, corrupted, keep


def compare_on_validation(
    run: str | os.PathLike[str], checkpoints: list[str], device: str = "cpu"
) -> dict[str, dict[str, dict[str, float]]]:
    """PSNR/MAE/error variance of each checkpoint at :data:`EVAL_LEVELS` on the validation crops of training
    run folder ``run`` (its ``config.json``): exactly the crops and masks that run's ``metrics.json`` used, so
    a fine-tune and the model it started from compare on equal terms."""
    from edgeae.checkpoint import load_checkpoint
    from edgeae.train.resume import run_kind

    cfg_file = Path(run) / "config.json"
    if not cfg_file.is_file():
        raise FileNotFoundError(f"{run}: no config.json there (not a training run folder)")
    kind = run_kind(run)
    if kind not in (None, "cae"):
        raise ValueError(f"{run} is a {kind.upper()} run: checkpoints are compared on a CAE run's validation crops")
    config = load_config(cfg_file)
    train_files, val_files = split_data(config)
    channels = config.resolved_channels(train_files[0])
    loaded = {}
    for ck in checkpoints:  # all checked before the validation crops are drawn
        c = load_checkpoint(ck)
        if c.metadata.kind != "cae" or c.metadata.channels != channels:
            raise ValueError(
                f"{ck}: a {c.metadata.kind.upper()} with {c.metadata.channels} channel(s); the run {run} validates "
                f"CAEs of {channels} channel(s)"
            )
        loaded[ck] = c.model
    clean, _ = validation_crops(config, val_files, channels)
    dev = require("torch").device(device)
    seed, pattern = config.resolved_val_seed + 10_000, config.corruption.pattern
    out: dict[str, dict[str, dict[str, float]]] = {}
    for ck, model in loaded.items():
        out[ck] = level_metrics(model.to(dev), clean, dev, EVAL_LEVELS, seed=seed, pattern=pattern)
    return out


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


def train_cae(config: CAETrainConfig, resume: bool = False) -> dict[str, Any]:
    """Run (or, with ``resume``, continue) one training; return the metrics (also in ``out/metrics.json``).

    Each epoch draws :attr:`CAETrainConfig.crops_per_epoch` fresh crops from the master images (seeded by
    ``(seed, epoch)``), so the data is streamed rather than one precomputed array, and a resumed run sees exactly
    the batches an uninterrupted one would. ``out/last.pt`` is written at every epoch end, every few minutes and
    when the time budget or a SIGINT/SIGTERM stops the run (see :mod:`edgeae.train.resume`); the result then says
    ``complete: False`` and ``stop`` (``"budget"``, ``"SIGINT"`` or ``"SIGTERM"``). A refused resume (another
    kind of run, a complete one, fewer epochs than it did, other data or config) writes nothing.
    """
    torch = require("torch")
    from edgeae import __version__
    from edgeae.checkpoint import save_checkpoint
    from edgeae.metadata import ModelMetadata, manifest_hash
    from edgeae.models.cae import CAEConfig, count_parameters
    from edgeae.models.cae import build as build_cae
    from edgeae.train.common import check_memory, select_device, write_history, write_json
    from edgeae.train.crops import load_masters, sample_crops
    from edgeae.train.resume import (
        Autosave,
        Deadline,
        TrainingDiverged,
        TrainState,
        account_batch,
        check_resume,
        load_state,
        resume_command,
        save_state,
    )

    out = Path(config.out)
    if resume:
        check_resume(out, "cae", config.epochs)  # before any work: nothing is written when it refuses
    device = select_device(config.device)
    train_files, val_files = split_data(config)
    if not resume and (out / "last.pt").exists():
        raise FileExistsError(f"{out} already holds a run (last.pt): pass --resume {out} or choose another --out")
    channels = config.resolved_channels(train_files[0])
    n_batches = config.crops_per_epoch // config.batch_size
    crop_bytes = channels * config.tile * config.tile * 4
    check_memory({"crops": (config.crops_per_epoch, crop_bytes), "val_crops": (config.val_crops, 3 * crop_bytes)})
    if config.threads:
        torch.set_num_threads(config.threads)
    spec = config.corruption
    data_hash = manifest_hash([*train_files, *val_files])
    cfg_dict = config.to_dict()
    out.mkdir(parents=True, exist_ok=True)
    if not resume:
        write_json(out / "config.json", {"kind": "cae", **cfg_dict})
    if config.crops_per_epoch != config.crops:
        log.info(
            "each epoch trains %d batches of %d = %d crops (crops %d rounded to whole batches)", n_batches,
            config.batch_size, config.crops_per_epoch, config.crops,
        )  # fmt: skip

    t0 = time.perf_counter()
    aug = Augment() if config.augment else Augment.none()
    masters = load_masters(train_files, channels)
    vseed = config.resolved_val_seed
    val_clean, val_in, val_keep = validation_set(config, val_files, channels)
    log.info(
        "%d master images, %d val crops from %d files in %.1fs", len(masters), len(val_clean), len(val_files),
        time.perf_counter() - t0,
    )  # fmt: skip

    torch_seed = int(np.random.SeedSequence([config.seed, 0x70]).generate_state(1)[0])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(torch_seed)  # local to this block: weight init only, never the caller's state
        cae_cfg = CAEConfig(channels=channels, widths=config.widths, tile=config.tile, variant=config.variant)
        model = build_cae(cae_cfg).to(device)
    init_info: dict[str, Any] | None = None
    if config.init and resume and (out / "init.json").is_file():
        init_info = json.loads((out / "init.json").read_text())  # the weights come from last.pt below
    elif config.init and not resume:
        init_info = _warm_start(model, config.init, cae_cfg)
        # the bar a fine-tune has to clear, on this run's own validation crops
        init_info["val_psnr"] = round(_psnr_of(model, val_in, val_clean, device, False, val_keep), 3)
        log.info("warm start: val PSNR %.2f dB before fine-tuning", init_info["val_psnr"])
        write_json(out / "init.json", init_info)
    use_bf16 = config.use_bf16(device.type)
    log.info(
        "precision: %s%s",
        "bfloat16 autocast" if use_bf16 else "float32",
        "" if config.bf16 is not None else " (chosen for this CPU: --bf16 / --no-bf16 to force)",
    )
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)

    def lr_factor(step: int) -> float:
        if config.lr_schedule == "constant":
            return 1.0
        total = max(1, config.epochs * n_batches)
        frac = min(1.0, step / total)
        return config.min_lr_frac + (1 - config.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * frac))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    state = TrainState()
    if resume:
        state = load_state(out, model, optimizer, scheduler, cfg_dict, data_hash)
        state.complete = False  # a complete run resumes only to more epochs (check_resume)
        write_json(out / "config.json", {"kind": "cae", **cfg_dict})  # the checks passed: --epochs etc. apply
        if state.early_stop:  # stopped early, then killed before its final files: write them, train no more
            log.info("resumed %s: it stopped early after epoch %d; writing its final files", out, state.epochs_done)
        else:
            log.info("resumed %s at epoch %d/%d, batch %d/%d", out, state.epoch, config.epochs, state.batch, n_batches)
    state.crops_per_epoch = config.crops_per_epoch
    state.segments.append({"start_epoch": state.epoch, "start_batch": state.batch, "started": time.time()})

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
            "crops_per_epoch": config.crops_per_epoch,
            "seed": config.seed,
            "val_seed": vseed,
            "loss": config.loss,
            **({"init": init_info} if init_info else {}),
        },
    )
    best_path = out / "best.pt"
    loss_of = _loss_fn(config.loss)
    deadline = Deadline(config.time_budget)

    def save() -> Path:
        return save_state(out, model, optimizer, scheduler, state, cfg_dict, data_hash, kind="cae")

    autosave = Autosave(state, save)
    stopped: str | None = None
    cause: str | None = None
    pool = ThreadPoolExecutor(config.data_workers) if config.data_workers > 1 else None
    try:
        while state.epoch <= config.epochs and stopped is None and not state.early_stop:
            epoch = state.epoch
            autosave.start_epoch()
            rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0xC0, epoch]))
            crops = sample_crops(masters, config.crops_per_epoch, config.tile, rng, aug, workers=config.data_workers)
            perm = np.random.default_rng(np.random.SeedSequence([config.seed, 0x5F, epoch])).permutation(len(crops))
            model.train()
            bar = _progress(range(state.batch, n_batches), f"epoch {epoch}/{config.epochs}", config.progress, n_batches)
            batches = _masked_batches(crops, perm, range(state.batch, n_batches), config, spec, epoch, pool)
            for b, (idx, x) in zip(bar, batches, strict=False):
                clean = crops[idx]
                xt = torch.from_numpy(x).to(device)
                yt = torch.from_numpy(clean).to(device)
                if config.channels_last:
                    xt = xt.contiguous(memory_format=torch.channels_last)
                pred = _forward(torch, model, xt, device, use_bf16)
                loss = loss_of(pred.float(), yt)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                account_batch(state, float(loss.detach()), len(idx), epoch, b)
                if deadline.expired:
                    stopped, cause = deadline.reason, deadline.cause
                    break
                autosave.batch_done()
            autosave.bank_time()
            if stopped is not None and state.batch < n_batches:
                break
            val = _val_loss(torch, model, val_in, val_clean, device, use_bf16, config.channels_last, loss_of)
            if not math.isfinite(val):
                raise TrainingDiverged(f"training diverged: the validation loss became {val} after epoch {epoch}; "
                                       "lower the learning rate")  # fmt: skip
            row = {
                "epoch": epoch,
                "train_loss": state.loss_sum / max(state.loss_count, 1),
                "val_loss": val,
                "val_psnr": _psnr_of(model, val_in, val_clean, device, config.channels_last, val_keep),
                "lr": float(optimizer.param_groups[0]["lr"]),
                "seconds": round(state.seconds, 1),
            }
            state.history.append(row)
            active = _active_fraction(torch, model, val_in, device, config.channels_last)
            if active is not None and active < COLLAPSE_ACTIVE:
                log.warning(
                    "epoch %d: only %.3f%% of the U-Net's last features are active: its ReLUs died and the model has "
                    "collapsed to the fixed pre-fill (a residual of 0); retrain with a lower --lr", epoch, 100 * active,
                )  # fmt: skip
            improved = val < state.best_val
            log.info(
                "epoch %d/%d  train %.5f  val %.5f  val PSNR %.2f dB  %.0fs%s", epoch, config.epochs,
                row["train_loss"], val, row["val_psnr"], row["seconds"], "  (best)" if improved else "",
            )  # fmt: skip
            if improved:
                state.best_val, state.best_epoch = val, epoch
                save_checkpoint(best_path, model, metadata, {"best_epoch": epoch, "val_loss": val}, state.history)
            state.epoch, state.batch, state.loss_sum, state.loss_count, state.seconds = epoch + 1, 0, 0.0, 0, 0.0
            autosave.save_now()
            write_history(state.history, out)
            if config.patience and epoch - state.best_epoch >= config.patience:
                log.info("early stop: no improvement for %d epochs", epoch - state.best_epoch)
                state.early_stop = True
                break
            if stopped is None and deadline.expired and state.epoch <= config.epochs:
                stopped, cause = deadline.reason, deadline.cause
    finally:
        deadline.close()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    if stopped is None or state.epoch > config.epochs or state.early_stop:  # every epoch done: not a stop
        stopped = cause = None
    state.segments[-1].update(end_epoch=state.epoch, end_batch=state.batch, ended=time.time(), stop=stopped)
    save()
    if stopped is not None:
        log.info("%s: state saved to %s; continue with: %s", stopped, out / "last.pt",
                 resume_command("cae", out, config.zoo_name, config.zoo_force))  # fmt: skip
    if state.best_epoch < 0:
        return {"stopped": stopped, "stop": cause, "epoch": state.epoch, "batch": state.batch, "complete": False}

    from edgeae.checkpoint import load_checkpoint

    best = load_checkpoint(best_path).model.to(device)
    metrics: dict[str, Any] = {
        "best_epoch": state.best_epoch,
        "val_loss": state.best_val,
        "epochs_run": len(state.history),
        "parameters": count_parameters(best),
        "train_seconds": round(sum(h["seconds"] for h in state.history), 1),
        "device": str(device),
        "bf16": use_bf16,
        "crops_per_epoch": config.crops_per_epoch,
        "val_crops": config.val_crops,
        "segments": state.segments,
        "complete": stopped is None,
        "stopped": stopped,
        "stop": cause,
        **({"early_stop": True} if state.early_stop else {}),
        **({"init": init_info} if init_info else {}),
    }
    if spec.mode != "colour-noise":
        metrics["val_levels"] = level_metrics(
            best, val_clean, device, EVAL_LEVELS, seed=vseed + 10_000, pattern=spec.pattern
        )
    save_checkpoint(best_path, best, metadata, metrics, state.history)
    write_history(state.history, out)
    write_json(out / "metrics.json", metrics)
    if stopped is None:  # recorded last: a run killed before its final files resumes to write them
        state.complete = True
        save()
    log.info("best epoch %d, val loss %.5f -> %s", metrics["best_epoch"], metrics["val_loss"], best_path)
    return metrics


def _masked_batch(crops: np.ndarray, idx: np.ndarray, spec: Corruption, seed: int, epoch: int) -> np.ndarray:
    return np.stack([corrupt(crops[i], spec, sample_seed(seed, epoch, int(i)))[0] for i in idx])


def _masked_batches(
    crops: np.ndarray,
    perm: np.ndarray,
    batches: range,
    config: CAETrainConfig,
    spec: Corruption,
    epoch: int,
    pool: ThreadPoolExecutor | None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(indices, masked inputs) of each batch in ``batches``. With a pool, up to ``data_workers + 1`` batches
    are masked ahead in threads while the optimiser works; the inputs are the same either way (each sample's
    mask comes from its own seed)."""
    bs = config.batch_size

    def indices(b: int) -> np.ndarray:
        return perm[b * bs : (b + 1) * bs]

    if pool is None:
        for b in batches:
            idx = indices(b)
            yield idx, _masked_batch(crops, idx, spec, config.seed, epoch)
        return
    ahead: deque[tuple[np.ndarray, Future[np.ndarray]]] = deque()
    todo = iter(batches)
    for b in todo:
        idx = indices(b)
        ahead.append((idx, pool.submit(_masked_batch, crops, idx, spec, config.seed, epoch)))
        if len(ahead) > config.data_workers:
            break
    while ahead:
        idx, fut = ahead.popleft()
        nxt = next(todo, None)
        if nxt is not None:
            nidx = indices(nxt)
            ahead.append((nidx, pool.submit(_masked_batch, crops, nidx, spec, config.seed, epoch)))
        yield idx, fut.result()


def _warm_start(model: Any, path: str, cae_cfg: Any) -> dict[str, Any]:
    """Load the weights of checkpoint ``path`` into ``model`` (a fine-tune: optimiser and LR schedule start
    afresh). The architecture must match exactly; returns what the new model's metadata records about it."""
    from edgeae.checkpoint import load_checkpoint
    from edgeae.metadata import MetadataError

    ck = load_checkpoint(path)
    arch = {"variant": "seed", "tile": 128, **ck.metadata.architecture}  # absent = the defaults, as build() reads it
    want = cae_cfg.to_dict()
    keys = ("variant", "channels", "widths", "tile")
    if ck.metadata.kind != "cae" or any(_norm(arch.get(k)) != _norm(want.get(k)) for k in keys):
        got, mine = {k: arch.get(k) for k in keys}, {k: want.get(k) for k in keys}
        raise MetadataError(f"--init {path}: its architecture {got} is not this run's {mine}")
    try:
        model.load_state_dict(ck.model.state_dict())
    except RuntimeError as exc:
        raise MetadataError(f"--init {path}: its weights do not fit this run's model ({exc})") from exc
    log.info("warm start from %s (its best epoch %s)", path, ck.metrics.get("best_epoch"))
    return {
        "file": Path(path).name,
        "training_data_hash": ck.metadata.training_data_hash,
        "val_loss": ck.metrics.get("val_loss"),
    }


def init_val_seed(path: str | os.PathLike[str]) -> int | None:
    """The validation seed of the run that made checkpoint ``path`` (None when its metadata does not say):
    a fine-tune that validates on the same crops gets a ``loss.csv`` comparable with its starting run's."""
    from edgeae.checkpoint import load_checkpoint

    extra = load_checkpoint(path).metadata.extra
    seed = extra.get("val_seed", extra.get("seed"))
    return int(seed) if isinstance(seed, int) and not isinstance(seed, bool) else None


def _norm(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


COLLAPSE_ACTIVE = 0.01  # below this fraction of active last features a U-Net CAE has collapsed to its pre-fill


def _active_fraction(torch: Any, model: Any, val_in: Any, device: Any, channels_last: bool) -> float | None:
    """Fraction of the U-Net's last feature map (the residual head's input) that is > 0 on a validation batch;
    None for models without a residual head. ~0 means dead ReLUs: the zero-initialised head then gets no
    gradient and the model stays exactly its pre-fill (seen once on grey orbital data at lr 1e-3)."""
    head = getattr(model, "head", None)
    if head is None or not hasattr(model, "up"):
        return None
    seen: list[float] = []
    hook = head.register_forward_hook(lambda _m, inp, _o: seen.append(float((inp[0] > 0).float().mean())))
    try:
        x = torch.as_tensor(val_in[:16]).to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        hook.remove()
    return seen[0] if seen else None


def _loss_fn(name: str) -> Any:
    torch = require("torch")
    if name == "l1":
        return torch.nn.functional.l1_loss
    return torch.nn.functional.mse_loss


def _autocast(torch: Any, device: Any, bf16: bool) -> Any:
    import contextlib

    if bf16:  # bfloat16 needs no gradient scaler (float32 exponent range)
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _forward(torch: Any, model: Any, x: Any, device: Any, bf16: bool) -> Any:
    """``model(x)``, under bfloat16 autocast when asked; a model with a fixed pre-fill (``fill`` + ``refine``)
    runs the pre-fill in float32 and only the learned part under autocast."""
    if hasattr(model, "refine") and hasattr(model, "fill"):
        with torch.no_grad():
            prefill, m = model.fill(x)
        with _autocast(torch, device, bf16):
            return model.refine(prefill, m)
    with _autocast(torch, device, bf16):
        return model(x)


def _progress(it: range, desc: str, enabled: bool, total: int) -> Any:
    """A bar over the batches ``it`` of an epoch of ``total``: a resumed epoch's starts at ``it.start``."""
    from edgeae.train.common import progress

    return progress(it, desc, total=total, enabled=enabled, initial=it.start)


def _val_loss(
    torch: Any, model: Any, x: np.ndarray, y: np.ndarray, device: Any, bf16: bool, cl: bool, loss_of: Any
) -> float:
    model.eval()
    total = 0.0
    with torch.no_grad():
        for i in range(0, len(x), 32):
            xt = torch.from_numpy(x[i : i + 32]).to(device)
            if cl:
                xt = xt.contiguous(memory_format=torch.channels_last)
            pred = _forward(torch, model, xt, device, bf16)
            total += float(loss_of(pred.float(), torch.from_numpy(y[i : i + 32]).to(device))) * len(xt)
    model.train()
    return total / len(x)


def _psnr_of(model: Any, x: np.ndarray, y: np.ndarray, device: Any, cl: bool, keep: np.ndarray | None) -> float:
    """fp32 PSNR of the reconstruction over the validation crops, with the known pixels (bool ``keep`` (N, H, W),
    the masks that made ``x``) kept; ``keep`` None (plain, colour-noise): over every pixel as reconstructed."""
    recon = _predict(model, x, device)
    if keep is not None:
        recon = np.where(keep[:, None], y, recon)
    mse = float(np.mean((recon - y) ** 2))
    model.train()
    return float(10 * np.log10(1.0 / max(mse, 1e-12)))


def load_config(path: str | os.PathLike[str]) -> CAETrainConfig:
    """Read a ``config.json`` written by :func:`train_cae` (a damaged one: a ValueError naming the file)."""
    try:
        d = json.loads(Path(path).read_text())
        if not isinstance(d, dict):
            raise TypeError("not a JSON object")
        return CAETrainConfig.from_dict(d)
    except (ValueError, TypeError, KeyError) as exc:  # not JSON, another trainer's, or not this trainer's fields
        raise ValueError(f"{path}: not a readable training config ({type(exc).__name__}: {exc})") from None

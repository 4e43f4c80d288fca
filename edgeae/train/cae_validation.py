"""How a CAE is measured on validation data: the fixed validation crops and masks of a run (the same every time
for one config), MAE/PSNR/error variance of the reconstruction per destroyed level, the fp32 validation PSNR of an
epoch, and checkpoints compared on a run's validation crops."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np

from edgeae._optional import require
from edgeae.train.cae_config import CAETrainConfig, load_config, split_data
from edgeae.train.corrupt import corrupt_at, corrupt_keep, sample_seed
from edgeae.train.crops import Augment

EVAL_LEVELS = (0.5, 0.9, 0.99)  # destroyed fractions reported in metrics.json


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
    val_masters = load_masters(val_files, channels)
    clean = sample_crops(val_masters, config.val_crops, config.tile, rng, Augment.none(), role="validation")
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


def _psnr_of(model: Any, x: np.ndarray, y: np.ndarray, device: Any, cl: bool, keep: np.ndarray | None) -> float:
    """fp32 PSNR of the reconstruction over the validation crops, with the known pixels (bool ``keep`` (N, H, W),
    the masks that made ``x``) kept; ``keep`` None (plain, colour-noise): over every pixel as reconstructed."""
    recon = _predict(model, x, device)
    if keep is not None:
        recon = np.where(keep[:, None], y, recon)
    mse = float(np.mean((recon - y) ** 2))
    model.train()
    return float(10 * np.log10(1.0 / max(mse, 1e-12)))

"""Train the CAE (plain, fixed-level, gt-CAE or colour-noise gt-CAE) on random crops of master images.

Input = masked or noisy crop, target = clean crop, MSE, Adam, batch 32. The best epoch by validation loss
is saved with :func:`edgeae.checkpoint.save_checkpoint`; the config, loss curves and metrics sit beside it::

    out/config.json  out/loss.csv  out/loss.png  out/best.pt  out/metrics.json

The configuration lives in :mod:`edgeae.train.cae_config`, the validation metrics in
:mod:`edgeae.train.cae_validation`, the steps of the loop in :mod:`edgeae.train.cae_steps`, the warm start
(``--init``) in :mod:`edgeae.train.cae_init` and the run folder (held for the run, and how the checkpoint records
its files) in :mod:`edgeae.train.run_folder`; their public names are importable from here too. The start-up, resume
and epoch bookkeeping both trainers share is :mod:`edgeae.train.run_start`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from edgeae._optional import require
from edgeae.train.cae_config import DATASET_CHANNELS as DATASET_CHANNELS
from edgeae.train.cae_config import IMAGE_SUFFIXES as IMAGE_SUFFIXES
from edgeae.train.cae_config import CAETrainConfig as CAETrainConfig
from edgeae.train.cae_config import load_config as load_config
from edgeae.train.cae_config import split_data as split_data
from edgeae.train.cae_init import _warm_start  # train_cae looks it up here
from edgeae.train.cae_init import init_val_seed as init_val_seed

# train_cae looks the names it imports up in this module: tests patch edgeae.train.cae._loss_fn and _val_loss
from edgeae.train.cae_steps import COLLAPSE_ACTIVE as COLLAPSE_ACTIVE
from edgeae.train.cae_steps import (
    _active_fraction,
    _forward,
    _loss_fn,
    _masked_batches,
    _progress,
    _recorded_best_epoch,
    _val_loss,
    collapse_record,
)
from edgeae.train.cae_validation import EVAL_LEVELS as EVAL_LEVELS
from edgeae.train.cae_validation import _psnr_of
from edgeae.train.cae_validation import compare_on_validation as compare_on_validation
from edgeae.train.cae_validation import level_metrics as level_metrics
from edgeae.train.cae_validation import validation_crops as validation_crops
from edgeae.train.cae_validation import validation_set as validation_set
from edgeae.train.crops import Augment
from edgeae.train.run_folder import held_run_folder as held_run_folder
from edgeae.train.run_folder import recorded_files as recorded_files

log = logging.getLogger(__name__)


def train_cae(config: CAETrainConfig, resume: bool = False, command: str | None = None) -> dict[str, Any]:
    """Run (or, with ``resume``, continue) one training; return the metrics (also in ``out/metrics.json``).

    Each epoch draws :attr:`CAETrainConfig.crops_per_epoch` fresh crops from the master images (seeded by
    ``(seed, epoch)``), so the data is streamed rather than one precomputed array, and a resumed run sees exactly
    the batches an uninterrupted one would. ``out/last.pt`` is written at every epoch end, every few minutes and
    when the time budget or a SIGINT/SIGTERM stops the run (see :mod:`edgeae.train.resume`); the result then says
    ``complete: False`` and ``stop`` (``"budget"``, ``"SIGINT"`` or ``"SIGTERM"``). A refused resume (another
    kind of run, a complete one, fewer epochs than it did, other data or config) writes nothing.

    The run folder is held for the whole run (:func:`held_run_folder`): a second run on it, new or resumed, is
    refused with :class:`~edgeae.folder_lock.FolderBusy` and writes nothing. A new run is refused where ``out``
    holds an earlier run's model (:func:`~edgeae.train.run_folder.refuse_trained_out`), and any run whose memory
    estimate (images, crops, model) exceeds the memory available (:mod:`edgeae.train.run_memory`). ``command``:
    the command line recorded in this invocation's segment (:mod:`edgeae.train.run_record`; default ``sys.argv``).
    The steps both trainers share are :mod:`edgeae.train.run_start`'s.
    """
    from edgeae.train.run_start import held_run

    with held_run(Path(config.out), "cae", config.epochs, resume):
        return _train_cae(config, resume, command)


def _train_cae(config: CAETrainConfig, resume: bool, command: str | None = None) -> dict[str, Any]:
    """:func:`train_cae` once the run folder is held."""
    torch = require("torch")
    from edgeae import __version__
    from edgeae.checkpoint import save_checkpoint
    from edgeae.metadata import ModelMetadata
    from edgeae.models.cae import CAEConfig, count_parameters
    from edgeae.models.cae import build as build_cae
    from edgeae.train.common import plural, select_device, stderr_is_terminal, write_history, write_json
    from edgeae.train.crops import check_masters, check_sizes, load_masters, sample_crops, without_crops
    from edgeae.train.run_memory import read_headers
    from edgeae.train.run_start import RunStart

    out = Path(config.out)  # held by train_cae: no other run checks or writes it meanwhile
    start = RunStart(config, "cae", resume, log)
    start.check_resume()  # before any work: nothing is written when it refuses
    device = select_device(config.device)
    train_files, val_files = split_data(config)
    start.check_new_out()
    shapes = read_headers([*train_files, *val_files])  # every unreadable file named at once, before any is read
    channels, why = config.channels_for([*train_files, *val_files], shapes, resume)  # a mixed folder: refused
    if why:
        log.info("%s", why)
    aug = Augment() if config.augment else Augment.none()
    # too-small training and validation images named together, before any is decoded
    check_sizes(train_files, val_files, shapes, config.tile, aug, config.data not in DATASET_CHANNELS)
    n_batches = config.crops_per_epoch // config.batch_size
    cae_cfg = CAEConfig(channels=channels, widths=config.widths, tile=config.tile, variant=config.variant)
    start.check_fits(device, lambda: build_cae(cae_cfg), (channels, config.tile), shapes, val_copies=3)
    spec = config.corruption
    data = start.read_data([*train_files, *val_files])  # other data or config: refused before any image is decoded

    t0 = time.perf_counter()
    masters = load_masters(train_files, channels)
    check_masters(masters, config.tile, aug)  # before anything is written, not at the first epoch's crops
    vseed = config.resolved_val_seed
    val_clean, val_in, val_keep = validation_set(config, val_files, channels)
    log.info(
        "%s: %d master images, %d val crops from %s in %.1fs", config.data, len(masters), len(val_clean),
        plural(len(val_files), "file"), time.perf_counter() - t0,
    )  # fmt: skip

    torch_seed = int(np.random.SeedSequence([config.seed, 0x70]).generate_state(1)[0])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(torch_seed)  # local to this block: weight init only, never the caller's state
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
    if not resume:  # the data and --init checks passed: a refused new run leaves no config.json (nor its folder)
        start.write_config()
    use_bf16 = start.precision(device)
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
    state = start.restore(model, optimizer, scheduler, n_batches)
    start.begin(state, device, use_bf16, command)

    metadata = ModelMetadata(
        kind="cae",
        architecture=cae_cfg.to_dict(),
        input_shape=(-1, channels, config.tile, config.tile),
        channels=channels,
        mask=spec.describe(),
        training_data_hash=data.hash_of(train_files),
        edgeae_version=__version__,
        extra={
            "data": config.data,
            "train_files": recorded_files(train_files, config.data),
            "val_files": recorded_files(val_files, config.data),
            "crops_per_epoch": config.crops_per_epoch,
            "seed": config.seed,
            "val_seed": vseed,
            "loss": config.loss,
            **({"init": init_info} if init_info else {}),
        },
    )
    best_path = out / "best.pt"
    loss_of = _loss_fn(config.loss)

    def save_best() -> None:  # the model as it is at the end of epoch state.best_epoch
        scores = {"best_epoch": state.best_epoch, "val_loss": state.best_val}
        save_checkpoint(best_path, model, metadata, scores, state.history)

    # last.pt was written at its best epoch's end, then best.pt, which a kill may have prevented: rewritten only then
    # (a resume stopped at each epoch end used to rewrite it every time, and a full disk failed the resume)
    if start.at_best_epoch_end(state) and _recorded_best_epoch(torch, best_path) != state.best_epoch:
        save_best()
    loop = start.loop(model, optimizer, scheduler, state)
    pool = ThreadPoolExecutor(config.data_workers) if config.data_workers > 1 else None
    show_bar = config.progress and stderr_is_terminal()  # a bar's \r lines would fill a log file
    try:
        for epoch in loop.epochs_left():
            desc = loop.begin_epoch()
            rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0xC0, epoch]))
            crops = sample_crops(masters, config.crops_per_epoch, config.tile, rng, aug, workers=config.data_workers)
            perm = np.random.default_rng(np.random.SeedSequence([config.seed, 0x5F, epoch])).permutation(len(crops))
            model.train()
            bar = _progress(range(state.batch, n_batches), desc, show_bar, n_batches)
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
                if loop.batch_done(float(loss.detach()), len(idx), epoch, b):
                    break
            if loop.stopped_in_epoch(n_batches):
                break
            val = _val_loss(torch, model, val_in, val_clean, device, use_bf16, config.channels_last, loss_of)
            active = _active_fraction(torch, model, val_in, device, config.channels_last)  # None: no U-Net

            def columns(active: float | None = active) -> dict[str, Any]:  # loss.csv's; the fraction: metrics.json
                return {
                    "val_psnr": _psnr_of(model, val_in, val_clean, device, config.channels_last, val_keep),
                    "lr": float(optimizer.param_groups[0]["lr"]),
                    **({"active_fraction": round(active, 6)} if active is not None else {}),
                }

            row = loop.epoch_row(val, "lower the learning rate", columns)
            if active is not None and active < COLLAPSE_ACTIVE:
                log.warning(
                    "epoch %d: only %.3f%% of the U-Net's last features are active: its ReLUs died and the model has "
                    "collapsed to the fixed pre-fill (a residual of 0); retrain with a lower --lr", epoch, 100 * active,
                )  # fmt: skip
            improved = val < state.best_val
            log.info(
                "epoch %d/%d  train %.5f  val %.5f  val PSNR %.2f dB  %.0fs%s%s", epoch, config.epochs,
                row["train_loss"], val, row["val_psnr"], row["seconds"], "  (best)" if improved else "",
                loop.time_left(),
            )  # fmt: skip
            if improved:
                state.best_val, state.best_epoch = val, epoch
            loop.end_epoch()  # last.pt before best.pt: a first last.pt that fails leaves no best.pt behind
            if improved:
                save_best()
            write_history(state.history, out)
            if config.patience and epoch - state.best_epoch >= config.patience:
                log.info("early stop: no improvement for %d epochs", epoch - state.best_epoch)
                state.early_stop = True
                break
            loop.check_deadline()
    finally:
        loop.close()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    stopped, cause = loop.finish()
    if state.best_epoch < 0:
        return {"stopped": stopped, "stop": cause, "epoch": state.epoch, "batch": state.batch, "complete": False}

    from edgeae.checkpoint import load_checkpoint

    best = load_checkpoint(best_path).model.to(device)
    metrics: dict[str, Any] = {
        **loop.metrics(count_parameters(best), device, use_bf16, channels),
        "channels": channels,
        "val_crops": config.val_crops,
        "complete": stopped is None,
        "stopped": stopped,
        "stop": cause,
        **({"early_stop": True} if state.early_stop else {}),
        **({"init": init_info} if init_info else {}),
        **collapse_record(state.history),  # a U-Net's active fraction each epoch; the collapsed epochs
    }
    no_crops = without_crops(masters)
    if no_crops:  # all no-data: read, hashed and counted, but never cropped from
        metrics["train_files_without_crops"] = recorded_files(no_crops, config.data)
    if spec.mode != "colour-noise":
        metrics["val_levels"] = level_metrics(
            best, val_clean, device, EVAL_LEVELS, seed=vseed + 10_000, pattern=spec.pattern
        )
    save_checkpoint(best_path, best, metadata, metrics, state.history)
    write_history(state.history, out)
    write_json(out / "metrics.json", metrics)
    if stopped is None:  # recorded last: a run killed before its final files resumes to write them
        state.complete = True
        loop.save()
    # debug: `edgeae train cae` prints the fuller line (parameters, per-level PSNR) from the returned metrics
    log.debug("best epoch %d, val loss %.5f -> %s", metrics["best_epoch"], metrics["val_loss"], best_path)
    return metrics

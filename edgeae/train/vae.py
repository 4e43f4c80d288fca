"""Train the anomaly β-VAE on 64×64 patches (grey orbital, RGB rover or a folder), then set λ and the threshold.

Data (named, never the evaluation patches; :func:`edgeae.train.vae_data.training_files`), or a folder of images:

- ``data="orbital_gray"`` / ``"orbital_gray_v2"`` (grey): random crops of that registration's train split
  (``_v2`` adds 7 CTX tiles and a HiRISE strip of ``train_extra/``) plus, with ``hirise``, the class-0
  HiRISE landmark crops of the training products (:func:`edgeae.anomaly.labels.hirise_training_products`);
- ``data="rover_rgb"`` / ``"rover_rgb_v2"`` (RGB): that registration's train split (``_v2`` adds 32 Mastcam
  panoramas) plus, with ``msl_ground``, the MSL surface images of class ``ground`` from the *train* sols
  (:func:`edgeae.datasets.msl_split_of_sol`); the MSL val sols are the rover validation benchmark;
- ``data=FOLDER`` (``channels`` 1 or 3): the folder split by file as the CAE trainer splits it
  (:func:`edgeae.train.cae_config.split_data`: sorted, every fifth file to validation); both lists are recorded
  in the model metadata. Without labels λ is not tuned (:func:`edgeae.train.vae_calibrate.calibrate_folder`).

No-data patches are skipped, light augmentation (:mod:`edgeae.train.crops`), fresh crops every epoch drawn from
``(seed, epoch)``. Loss validation: crops of the registration's val split.

Calibration of λ and the alarm threshold on validation data: :func:`calibrate`
(:mod:`edgeae.train.vae_calibrate`).

Loss: L1 reconstruction (sum over pixels) + β·KL, β = 1/4; Adam 1e-3 (as in the paper). On a CPU the forward
pass runs under bfloat16 autocast with channels-last tensors (5-8× faster on AVX-512 BF16 machines); the loss
is computed in float32. ``bf16=False`` is float32 everywhere, CUDA included. The device defaults to ``cpu``
(the zoo's VAEs were trained there; the CAE trainer's default is ``auto``).

Each epoch trains whole batches: ``crops`` rounded down to a multiple of ``batch_size``, at least one batch
(:attr:`VAETrainConfig.crops_per_epoch`, the CAE trainer's rule).

Resumable (in the spirit of :mod:`edgeae.train.resume`): ``out/last.pt`` holds the model, optimiser, epoch
and batch reached, loss sums, history, config, data-manifest hash, kind and completion; it is
written at every epoch end, every few minutes and when ``time_budget`` or SIGINT/SIGTERM stops the run.
``out/best_state.pt`` holds the best weights so far. :func:`train_vae` with ``resume=True`` continues exactly where
it stopped: the batches of an epoch and the reparameterisation noise of a batch derive from ``(seed, epoch, batch)``
only.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgeae._optional import require
from edgeae.train.common import bf16_autocast as _autocast  # tests reach it here
from edgeae.train.vae_calibrate import LAMBDA_CRATER_MIN as LAMBDA_CRATER_MIN
from edgeae.train.vae_calibrate import LAMBDA_FILES as LAMBDA_FILES
from edgeae.train.vae_calibrate import MSL_CALIBRATION_IMAGES as MSL_CALIBRATION_IMAGES
from edgeae.train.vae_calibrate import MSL_CALIBRATION_STRIDE as MSL_CALIBRATION_STRIDE
from edgeae.train.vae_calibrate import THRESHOLD_MAX_PATCHES as THRESHOLD_MAX_PATCHES
from edgeae.train.vae_calibrate import _rgb_lambda as _rgb_lambda  # tests reach it here
from edgeae.train.vae_calibrate import calibrate as calibrate  # train_vae looks it up here: tests patch it here
from edgeae.train.vae_calibrate import calibrate_folder as calibrate_folder
from edgeae.train.vae_config import DATASETS as DATASETS
from edgeae.train.vae_config import RESUMABLE as RESUMABLE
from edgeae.train.vae_config import VAETrainConfig as VAETrainConfig
from edgeae.train.vae_config import load_config as load_config
from edgeae.train.vae_data import data_files as data_files
from edgeae.train.vae_data import training_files as training_files

# train_vae looks these up in this module: tests patch edgeae.train.vae._losses and _save_best_weights
from edgeae.train.vae_steps import (
    _ap_text,
    _best_model,
    _holds_weights_of,
    _losses,
    _save_best_weights,
    _seed,
    _warn_best_weights,
    _warn_crop_count,
)

__all__ = [
    "DATASETS",
    "LAMBDA_FILES",
    "VAETrainConfig",
    "calibrate",
    "calibrate_folder",
    "data_files",
    "load_config",
    "train_vae",
    "training_files",
]

log = logging.getLogger(__name__)


def train_vae(config: VAETrainConfig, resume: bool = False, command: str | None = None) -> dict[str, Any]:
    """Train (or, with ``resume``, continue) and calibrate; write ``best.pt``, ``metrics.json`` and loss curves.

    Returns the metrics, or ``{"complete": False, "stopped": ..., "stop": ...}`` when the time budget or a signal
    stopped the run first (continue it with ``resume=True``). A refused resume (a CAE run, a complete one, fewer
    epochs than it did, other data or config) writes nothing. The run folder is held for the whole run
    (:func:`edgeae.train.cae.held_run_folder`): a second run on it is refused with
    :class:`~edgeae.folder_lock.FolderBusy` and writes nothing. A new run is refused where ``out`` holds an earlier
    run's model, and any run whose memory estimate (images, crops, model) exceeds the memory available, as by
    :func:`edgeae.train.cae.train_cae` (the steps both trainers share are :mod:`edgeae.train.run_start`'s);
    ``command``: the command line its segment records."""
    from edgeae.train.run_start import held_run

    with held_run(Path(config.out), "vae", config.epochs, resume):
        return _train_vae(config, resume, command)


def _train_vae(config: VAETrainConfig, resume: bool, command: str | None = None) -> dict[str, Any]:
    """:func:`train_vae` once the run folder is held."""
    torch = require("torch")
    from edgeae import __version__
    from edgeae.checkpoint import save_checkpoint
    from edgeae.data import data_root
    from edgeae.metadata import ModelMetadata
    from edgeae.models.vae import VAE, VAEConfig, count_macs, count_parameters
    from edgeae.train.channels import conversion_note
    from edgeae.train.common import progress, select_device, stderr_is_terminal, write_history, write_json
    from edgeae.train.crops import Augment, check_masters, check_sizes, load_masters, sample_crops, without_crops
    from edgeae.train.run_memory import read_headers
    from edgeae.train.run_start import RunStart

    out = Path(config.out)
    # the whole config, as the CAE trainer records it: a damaged config.json resumes with it (common.read_config);
    # the keys a resume may change are left out of the comparison (resume.RESUMABLE_CHANGES, RESUMABLE here)
    start = RunStart(config, "vae", resume, log)
    start.check_resume()  # before any work: nothing is written when it refuses
    if not resume:
        config.check_new_run()
    start.check_new_out()
    device = select_device(config.device)
    channels = config.n_channels
    vae_cfg = VAEConfig(channels=channels, widths=config.widths, latent=config.latent, patch=config.patch)
    root = data_root(config.data_root) if not config.is_folder else Path(config.data)
    train_files, val_files = data_files(config, root)
    shapes = read_headers([*train_files, *val_files])
    converted = conversion_note(shapes, channels) if config.is_folder else None
    if converted:  # --channels on a folder that mixes grey and colour images (without it: refused by the CLI)
        log.info("channels: %d (--channels): %s", channels, converted)
    aug = Augment() if config.augment else Augment.none()
    # too-small training and validation images named together, before any is decoded
    check_sizes(train_files, val_files, shapes, config.patch, aug, config.is_folder)
    start.check_fits(device, lambda: VAE(vae_cfg), (channels, config.patch), shapes, model_flags="--widths, --latent")
    data = start.read_data([*train_files, *val_files])  # other data or config: refused before any image is decoded
    n_batches = config.crops_per_epoch // config.batch_size

    t0 = time.perf_counter()
    masters = load_masters(train_files, channels)
    check_masters(masters, config.patch, aug)  # before anything is written, not at the first epoch's crops
    val_rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0x7A1]))
    val_masters = load_masters(val_files, channels)
    val = sample_crops(val_masters, config.val_crops, config.patch, val_rng, Augment.none(), role="validation")
    del val_masters
    log.info(
        "%s: %d training images, %d val crops in %.1fs", config.data, len(masters), len(val), time.perf_counter() - t0
    )
    if not resume:  # the data checks passed: a refused new run leaves no config.json (nor its folder)
        start.write_config()

    torch_seed = _seed(config.seed, 0x70)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(torch_seed)  # weight init only, never the caller's state
        model = VAE(vae_cfg).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    use_bf16 = start.precision(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    state = start.restore(model, optimizer, None, n_batches)
    if resume:
        _warn_crop_count(config, state, out)
    start.begin(state, device, use_bf16, command)

    def to_device(x: np.ndarray) -> Any:
        t = torch.from_numpy(x).to(device)
        return t.contiguous(memory_format=torch.channels_last) if config.channels_last else t

    def val_loss() -> float:
        model.eval()
        total = 0.0
        with torch.no_grad():
            for i in range(0, len(val), 256):
                xb = to_device(val[i : i + 256])
                # the same ε for every evaluation: comparable epochs
                total += float(_losses(torch, model, xb, config.beta, _seed(config.seed, 0xE7, i), ac())) * len(xb)
        model.train()
        return total / len(val)

    def ac() -> Any:
        return _autocast(torch, device, use_bf16)

    def recorded(files: list[Path]) -> list[str]:  # as edgeae.train.cae.recorded_files
        return [p.relative_to(config.data).as_posix() if config.is_folder else p.name for p in files]

    metadata = ModelMetadata(
        kind="vae",
        architecture=vae_cfg.to_dict(),
        input_shape=(-1, channels, config.patch, config.patch),
        channels=channels,
        training_data_hash=data.hash_of(train_files),
        edgeae_version=__version__,
        extra={
            "data": config.data,
            # a folder's split is recorded file by file, by path relative to it, as the CAE trainer records it; a
            # named split's train files by count, its val files by name
            "train_files": recorded(train_files) if config.is_folder else len(train_files),
            "val_files": recorded(val_files),
            "beta": config.beta,
            "seed": config.seed,
            "crops_per_epoch": config.crops_per_epoch,
            "score": "sum over pixels of (x - x_hat)^2 + lambda * sum(mu^2), x_hat decoded from mu",
        },
    )
    best_state = out / "best_state.pt"
    if start.at_best_epoch_end(state):
        # last.pt came first at its best epoch's end: a kill before best_state.pt left another one, or none; rewritten
        # only then (a resume stopped at each epoch end used to rewrite it every time: a full disk failed the resume)
        if not _holds_weights_of(torch, model, best_state):
            _save_best_weights(torch, model, best_state)
    elif resume and start.was_complete:
        _warn_best_weights(torch, model, state, best_state, out)
    loop = start.loop(model, optimizer, None, state)
    try:
        for epoch in loop.epochs_left():
            desc = loop.begin_epoch()
            rng = np.random.default_rng(np.random.SeedSequence([config.seed, epoch]))
            crops = sample_crops(masters, config.crops_per_epoch, config.patch, rng, aug)
            order = rng.permutation(len(crops))
            model.train()
            bar = progress(
                range(state.batch, n_batches), desc, total=n_batches,
                enabled=config.progress and stderr_is_terminal(), initial=state.batch,
            )  # fmt: skip
            for b in bar:
                idx = order[b * config.batch_size : (b + 1) * config.batch_size]
                loss = _losses(torch, model, to_device(crops[idx]), config.beta, _seed(config.seed, epoch, b), ac())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if loop.batch_done(float(loss.detach()), len(idx), epoch, b):
                    break
            if loop.stopped_in_epoch(n_batches):
                break
            va = val_loss()
            row = loop.epoch_row(va, "lower the learning rate or beta")
            improved = va < state.best_val
            log.info(
                "epoch %d/%d  train %.2f  val %.2f  %.0fs%s%s", epoch, config.epochs, row["train_loss"], va,
                row["seconds"], "  (best)" if improved else "", loop.time_left(),
            )  # fmt: skip
            if improved:
                state.best_val, state.best_epoch = va, epoch
            loop.end_epoch()  # last.pt before best_state.pt: a first last.pt that fails leaves no model behind
            if improved:
                _save_best_weights(torch, model, best_state)
            write_history(state.history, out)
            loop.check_deadline()
    finally:
        loop.close()
    stopped, cause = loop.finish()
    if stopped is not None:  # `edgeae train vae` prints the line, with how to continue
        return {"stopped": stopped, "stop": cause, "epoch": state.epoch, "batch": state.batch, "complete": False}

    # the best epoch's weights in a model of their own: `model` keeps the last epoch's for the complete last.pt,
    # which a resume to more epochs trains on from (it used to get the best epoch's, with the last epoch's Adam state)
    best = _best_model(torch, lambda: VAE(vae_cfg), best_state)
    if config.is_folder:
        log.info("setting λ and the threshold on the folder's val files (no labels: λ is not tuned)")
        score = calibrate_folder(best, metadata, val_files, config.patch, config.threshold_quantile,
                                 config.score_lambda)  # fmt: skip
        log.info("λ %.4g from %s (not tuned: a folder has no labels)", score["lambda"], score["lambda_source"])
    else:
        log.info("calibrating λ and threshold on validation data (a minute or so)")
        score = calibrate(best, metadata, root, config.patch, config.threshold_quantile, data=config.data,
                          seed=config.seed)  # fmt: skip
        log.info(
            "λ %.4g: AP %.3f (in-sample: λ was chosen on these images; patch-std baseline AP %s) on %s",
            score["lambda"], score["lambda_ap"], _ap_text(score.get("baseline_patch_std_ap")),
            score.get("lambda_feature", "?"),
        )  # fmt: skip
    vae_cfg = best.config
    metadata = metadata.replace(
        architecture=vae_cfg.to_dict(), score={"lambda": score["lambda"], "threshold": score["threshold"]}
    )
    if "lambda_source" in score:  # folder data: λ was given or defaulted, not tuned; the model says which
        metadata = metadata.replace(extra={**metadata.extra, "lambda_source": score["lambda_source"]})
    metrics: dict[str, Any] = {
        **loop.metrics(count_parameters(best), device, use_bf16, channels),
        "channels": channels,
        "macs_per_patch": count_macs(vae_cfg),
        "data": config.data,
        "train_files": len(train_files),
        **({"train_files_without_crops": recorded(no_crops)} if (no_crops := without_crops(masters)) else {}),
        "complete": True,
        "calibration": score,
    }
    path = save_checkpoint(out / "best.pt", best, metadata, metrics, state.history)
    write_history(state.history, out)
    write_json(out / "metrics.json", metrics)
    state.complete = True  # recorded last: a run killed before its final files resumes to write them
    loop.save()
    # debug: `edgeae train vae` prints the fuller line (parameters, how λ was set) from the returned metrics
    log.debug(
        "best epoch %d, val loss %.2f, λ %.4g, threshold %.4g -> %s", state.best_epoch, state.best_val,
        score["lambda"], score["threshold"], path,
    )  # fmt: skip
    return metrics

"""Train the anomaly β-VAE on 64×64 patches (grey orbital or RGB rover), then tune λ and the alarm threshold.

Data (named, never the evaluation patches; :func:`training_files`):

- ``data="orbital_gray"`` / ``"orbital_gray_v2"`` (grey): random crops of that registration's train split
  (``_v2`` adds 7 CTX tiles and a HiRISE strip of ``train_extra/``) plus, with ``hirise``, the class-0
  HiRISE landmark crops of the training products (:func:`edgeae.anomaly.labels.hirise_training_products`);
- ``data="rover_rgb"`` / ``"rover_rgb_v2"`` (RGB): that registration's train split (``_v2`` adds 32 Mastcam
  panoramas) plus, with ``msl_ground``, the MSL surface images of class ``ground`` from the *train* sols
  (:func:`edgeae.datasets.msl_split_of_sol`); the MSL val sols are the rover validation benchmark.

No-data patches are skipped, light augmentation (:mod:`edgeae.train.crops`), fresh crops every epoch drawn from
``(seed, epoch)``. Loss validation: crops of the registration's val split.

Calibration (:func:`calibrate`), on validation data only:

- grey: λ on two LROC NAC crater mosaics kept apart from every reported figure (:data:`LAMBDA_FILES`), AP of
  "patch holds a crater centre ≥ 32 px", among the λ for which planted textured blocks rank in the top 2% of the
  orbital_gray val frames (:func:`edgeae.anomaly.planted.select_lambda`); threshold: the 99th percentile of
  the val split's patch scores;
- RGB: λ on MSL images of the *train* sols (hardware and targets vs ground, an image scored by its highest
  patch; the training used only their ``ground`` images), threshold on the rover val split.

The AP reported beside λ (``lambda_ap``) is in-sample: λ is chosen to maximise it on the same images
(``lambda_ap_in_sample``), so it flatters the model; ``baseline_patch_std_ap`` is the AP of a trivial score, the
patches' standard deviation, on the same patches and labels, the figure to read it against.

Loss: L1 reconstruction (sum over pixels) + β·KL, β = 1/4; Adam 1e-3 (as in the paper). On a CPU the forward
pass runs under bfloat16 autocast with channels-last tensors (5-8× faster on AVX-512 BF16 machines); the loss
is computed in float32. ``bf16=False`` is float32 everywhere, CUDA included. The device defaults to ``cpu``
(the zoo's VAEs were trained there; the CAE trainer's default is ``auto``).

Each epoch trains whole batches: ``crops`` rounded down to a multiple of ``batch_size``, at least one batch
(:attr:`VAETrainConfig.crops_per_epoch`, the CAE trainer's rule).

Resumable (in the spirit of :mod:`edgeae.train.resume`): ``out/last.pt`` holds the model, optimiser, epoch
and batch reached, loss sums, history, torch RNG state, config, data-manifest hash, kind and completion; it is
written at every epoch end, every few minutes and when ``time_budget`` or SIGINT/SIGTERM stops the run.
``out/best_state.pt`` holds the best weights so far. :func:`train_vae` with ``resume=True`` continues exactly where
it stopped: the batches of an epoch and the reparameterisation noise of a batch derive from ``(seed, epoch, batch)``
only.
"""

from __future__ import annotations

import contextlib
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
from edgeae.train.common import check_zoo_fields, drop_zoo_defaults

__all__ = [
    "DATASETS",
    "LAMBDA_FILES",
    "VAETrainConfig",
    "calibrate",
    "load_config",
    "train_vae",
    "training_files",
]

log = logging.getLogger(__name__)

# LROC NAC mosaics used only to choose λ (never reported); the other 10 are the evaluation set.
LAMBDA_FILES: tuple[str, ...] = (
    "orbital_gray/lroc_nac_craters/M1266003170_mosaic_train_small.png",
    "orbital_gray/lroc_nac_craters/M1275410097_mosaic_train_small.png",
)
LAMBDA_CRATER_MIN = 32.0  # px: the "large crater" feature λ is tuned for
HIRISE_DIR = "hirise_landmarks"
DATASETS: dict[str, int] = {"orbital_gray": 1, "orbital_gray_v2": 1, "rover_rgb": 3, "rover_rgb_v2": 3}
MSL_MIN_SIDE = 128  # MSL browse images narrower than this cannot give augmented 64-px crops
MSL_CALIBRATION_IMAGES = 100  # per class (ground, hardware) of the train sols, for λ of the RGB model
MSL_CALIBRATION_STRIDE = 64
THRESHOLD_MAX_PATCHES = 2000  # the threshold uses the val files in order until this many patches
# Config keys that may change when a run is resumed (they do not change what is learned).
RESUMABLE = ("epochs", "time_budget", "progress", "threads", "device", "data_root", "out", "zoo_name", "zoo_force")


@dataclass(frozen=True)
class VAETrainConfig:
    """One VAE training run; written to ``out/config.json``."""

    out: str
    data: str = "orbital_gray"
    channels: int | None = None  # None: from ``data`` (1 grey orbital, 3 RGB rover)
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
    hirise: bool = True  # grey: add the class-0 HiRISE landmark crops of the training products
    msl_ground: bool = False  # RGB: add the MSL ``ground`` images of the train sols
    augment: bool = True
    threshold_quantile: float = 0.99
    bf16: bool | None = None  # bfloat16 autocast; None = on a CPU with hardware bfloat16, off elsewhere
    channels_last: bool = True
    time_budget: float | None = None  # seconds of wall time before a clean, resumable stop
    device: str = "cpu"
    threads: int | None = None
    data_root: str | None = None
    progress: bool = True
    zoo_name: str | None = None  # --zoo-name: the command line installs the run here once it is complete
    zoo_force: bool = False  # --force: that install may replace a registered model of another architecture

    def __post_init__(self) -> None:
        """The checks every config passes, a saved run's included; :meth:`new_run_problems` adds those a new run
        must pass (introduced after runs were saved that break them: such a run still loads and resumes)."""
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        if self.data not in DATASETS:
            raise ValueError(f"unknown VAE training data {self.data!r}; choose from {sorted(DATASETS)}")
        if self.channels is not None and int(self.channels) != DATASETS[self.data]:
            raise ValueError(f"{self.data} has {DATASETS[self.data]} channel(s), not {self.channels}")
        for name in ("batch_size", "epochs", "crops", "val_crops", "latent", "patch"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not (self.beta >= 0 and math.isfinite(self.beta)):
            raise ValueError(f"beta must be finite and >= 0, got {self.beta}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be positive and finite, got {self.lr}")
        if self.time_budget is not None and not self.time_budget > 0:
            raise ValueError(f"time_budget must be positive seconds, got {self.time_budget}")
        check_zoo_fields(self.zoo_name, self.zoo_force)

    def new_run_problems(self) -> list[str]:
        """What a new run may not have, though a saved run may (it started before the rule and still resumes):
        an ``lr`` of 1 or more, ``msl_ground`` with grey data (the trainer adds no MSL image to grey data)."""
        problems = []
        if not self.lr < 1:
            problems.append(f"lr must be in (0, 1), got {self.lr}")
        if self.msl_ground and DATASETS[self.data] != 3:
            problems.append(f"msl_ground adds RGB MSL images: it needs RGB data (rover_*), not {self.data}")
        return problems

    def check_new_run(self) -> None:
        """Raise a ValueError for the first of :meth:`new_run_problems`."""
        problems = self.new_run_problems()
        if problems:
            raise ValueError(problems[0])

    @property
    def n_channels(self) -> int:
        return DATASETS[self.data]

    @property
    def crops_per_epoch(self) -> int:
        """The crops an epoch trains on: whole batches, ``crops`` rounded down to a multiple of ``batch_size``
        (at least one batch), as in the CAE trainer."""
        return max(1, self.crops // self.batch_size) * self.batch_size

    def use_bf16(self, device_type: str) -> bool:
        from edgeae.train.common import default_bf16

        return default_bf16(device_type, cuda=False) if self.bf16 is None else bool(self.bf16)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return drop_zoo_defaults(d)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VAETrainConfig:
        """The config of a ``config.json`` (its ``kind`` must be ``vae`` where present; unknown keys refused:
        they would be dropped silently, as a CAE run's ``mode`` once was)."""
        from edgeae.train.common import config_fields

        d = config_fields(cls, d, "vae")
        d["widths"] = tuple(d.get("widths", (16, 32, 64, 32)))
        return cls(**d)


def msl_ground_files(root: Path, split: str = "train") -> list[Path]:
    """MSL surface images of class ``ground`` of one sol split, at least :data:`MSL_MIN_SIDE` px on each side."""
    from edgeae.datasets import MSL_GROUND_CLASS, msl_surface_items
    from edgeae.imageio import image_shape

    out = []
    for path, cls, _ in msl_surface_items(split, root):
        if cls == MSL_GROUND_CLASS:
            h, w, _c = image_shape(path)
            if min(h, w) >= MSL_MIN_SIDE:
                out.append(path)
    return out


def training_files(root: Path, hirise: bool = True, data: str = "orbital_gray", msl_ground: bool = False) -> list[Path]:
    """The training images of ``data``: its train split, plus HiRISE class-0 crops of the training products
    (grey, ``hirise``) or MSL ``ground`` images of the train sols (RGB, ``msl_ground``)."""
    from edgeae.anomaly.labels import hirise_product, hirise_training_products, read_hirise_labels
    from edgeae.datasets import split_files

    files = split_files(data, "train", root)
    if hirise and DATASETS[data] == 1:
        labels = read_hirise_labels(root / HIRISE_DIR / "labels.txt")
        products = hirise_training_products(labels)
        files += [root / HIRISE_DIR / "images" / f for f, c in labels if c == 0 and hirise_product(f) in products]
    if msl_ground and DATASETS[data] == 3:
        files += msl_ground_files(root, "train")
    return files


def _autocast(torch: Any, device: Any, bf16: bool) -> Any:
    """bfloat16 autocast, or float32 (no autocast) on every device: float16 would need a gradient scaler."""
    if bf16:
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _losses(torch: Any, model: Any, x: Any, beta: float, eps_seed: int, autocast: Any) -> Any:
    """L1 (sum over pixels) + β·KL, batch mean; the network under ``autocast``, the loss in float32.

    The same as :meth:`edgeae.models.vae.VAE.training_losses` with ε drawn from ``eps_seed``."""
    with autocast:
        mu, logvar = model.encode(x)
    mu, logvar = mu.float(), logvar.float().clamp(-10.0, 10.0)
    g = torch.Generator().manual_seed(int(eps_seed))
    eps = torch.randn(mu.shape, generator=g, dtype=mu.dtype).to(mu.device)
    z = mu + torch.exp(0.5 * logvar) * eps
    with autocast:
        x_hat = model.decode(z)
    x_hat = x_hat.float()
    l1 = (x.float() - x_hat).abs().flatten(1).sum(dim=1).mean()
    kl = (-0.5 * (1.0 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)).mean()
    return l1 + beta * kl


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


class _WithPatchStd:
    """A patch scorer that also returns each patch's standard deviation (``patch_std``): the trivial baseline
    the in-sample λ-tuning AP is reported against."""

    def __init__(self, scorer: Any) -> None:
        self.scorer = scorer
        self.channels = scorer.channels

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        out = dict(self.scorer(x))
        out["patch_std"] = np.asarray(x, np.float64).reshape(len(x), -1).std(axis=1)
        return out


def _planted_frames(scorer: Any, root: Path, patch: int, batch: int) -> list[tuple[Any, ...]]:
    """(rec, mu2 of the grid patches; rec, mu2 of each planted block) of every orbital_gray val frame."""
    from edgeae.anomaly.planted import BLOCKS, block, grid
    from edgeae.datasets import split_files
    from edgeae.imageio import read_image

    blocks = np.stack([block(k, patch)[None] for k in BLOCKS]).astype(np.float32)
    b = scorer(blocks)
    frames = []
    for f in split_files("orbital_gray", "val", root):
        img = read_image(f, channels=1)
        h, w = img.valid.shape[:2]
        pos = [(y, x) for y, x in grid(h, w, patch) if img.valid[y : y + patch, x : x + patch].mean() >= 0.9]
        tiles = np.stack([img.pixels[y : y + patch, x : x + patch].transpose(2, 0, 1) for y, x in pos])
        rec, mu2 = [], []
        for i in range(0, len(tiles), batch):
            o = scorer(tiles[i : i + batch])
            rec.append(o["rec"])
            mu2.append(o["mu2"])
        frames.append((np.concatenate(rec), np.concatenate(mu2), b["rec"], b["mu2"]))
    return frames


def _calibrate_grey(scorer: Any, root: Path, patch: int, batch: int) -> dict[str, Any]:
    from edgeae.anomaly.calibrate import RELATIVE_GRID
    from edgeae.anomaly.labels import crater_file_for, patch_labels, read_craters
    from edgeae.anomaly.metrics import average_precision
    from edgeae.anomaly.planted import select_lambda
    from edgeae.anomaly.score import score_array
    from edgeae.imageio import read_image

    rec, mu2, std, labels = [], [], [], []
    with_std = _WithPatchStd(scorer)
    for rel in LAMBDA_FILES:
        img = read_image(root / rel, channels=1)
        r = score_array(img.pixels, with_std, patch, patch // 2, valid=img.valid, batch=batch, file=rel)
        rec.append(r.extras["rec"])
        mu2.append(r.extras["mu2"])
        std.append(r.extras["patch_std"])
        labels.append(patch_labels(r.xy, patch, read_craters(crater_file_for(root / rel)), LAMBDA_CRATER_MIN))
    rec_a, mu2_a, lab = np.concatenate(rec), np.concatenate(mu2), np.concatenate(labels)
    scale = float(np.median(rec_a) / max(float(np.median(mu2_a)), 1e-12))
    chosen = select_lambda(
        rec_a, mu2_a, lab, _planted_frames(scorer, root, patch, batch), [r * scale for r in RELATIVE_GRID]
    )
    return {
        "lambda": float(chosen["lambda"]),  # type: ignore[arg-type]
        "lambda_ap": float(chosen["ap"]),  # type: ignore[arg-type]
        "lambda_ap_in_sample": True,  # λ was chosen on these same patches
        "baseline_patch_std_ap": float(average_precision(np.concatenate(std), lab)),
        "lambda_grid": chosen["grid"],
        "lambda_planted_constraint_met": chosen["constraint_met"],
        "lambda_files": [Path(r).name for r in LAMBDA_FILES],
        "lambda_feature": f"craters >= {LAMBDA_CRATER_MIN:g} px (planted checker/noise blocks in the top 2%)",
    }


def _calibrate_rgb(scorer: Any, root: Path, patch: int, batch: int, seed: int) -> dict[str, Any]:
    from edgeae.anomaly.calibrate import RELATIVE_GRID
    from edgeae.anomaly.metrics import average_precision
    from edgeae.anomaly.msl import score_msl_images
    from edgeae.datasets import MSL_GROUND_CLASS, MSL_HARDWARE_CLASSES, msl_surface_items

    items = msl_surface_items("train", root)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x315]))
    chosen: list[tuple[Path, int, int]] = []
    for want in (lambda c: c == MSL_GROUND_CLASS, lambda c: c in MSL_HARDWARE_CLASSES):
        pool = [it for it in items if want(it[1])]
        pick = rng.choice(len(pool), size=min(MSL_CALIBRATION_IMAGES, len(pool)), replace=False)
        chosen += [pool[i] for i in sorted(pick)]
    paths = [p for p, _, _ in chosen]
    per_image = score_msl_images(paths, _WithPatchStd(scorer), patch=patch, stride=MSL_CALIBRATION_STRIDE, batch=batch)
    y = np.array([c in MSL_HARDWARE_CLASSES for _, c, _ in chosen])
    rec = np.concatenate([r.extras["rec"] for r in per_image])
    mu2 = np.concatenate([r.extras["mu2"] for r in per_image])
    std = np.concatenate([r.extras["patch_std"] for r in per_image])
    bounds = np.cumsum([0] + [len(r) for r in per_image])
    return {
        **_rgb_lambda(rec, mu2, std, bounds, y, RELATIVE_GRID, average_precision),
        "lambda_files": f"{len(chosen)} MSL images of the train sols ({MSL_CALIBRATION_IMAGES} ground, "
        f"{MSL_CALIBRATION_IMAGES} hardware/targets), seed {seed}, patches at stride {MSL_CALIBRATION_STRIDE}",
        "lambda_feature": "MSL hardware and targets vs ground (image score = highest patch)",
    }


def _rgb_lambda(
    rec: np.ndarray,
    mu2: np.ndarray,
    std: np.ndarray,
    bounds: np.ndarray,
    y: np.ndarray,
    relative_grid: Any,
    average_precision: Any,
) -> dict[str, Any]:
    """λ of the RGB model: of ``relative_grid`` × median(rec)/median(μ²), the one whose image scores (highest patch
    of rec + λ·μ², images delimited by ``bounds``) give the best AP for the labels ``y``; that AP is in-sample.
    ``baseline_patch_std_ap``: the AP of the highest patch standard deviation ``std`` on the same images."""
    scale = float(np.median(rec) / max(float(np.median(mu2)), 1e-12))
    grid, best = [], (0.0, -1.0)
    for rel in relative_grid:
        lam = rel * scale
        s = np.maximum.reduceat(rec + lam * mu2, bounds[:-1])
        ap = average_precision(s, y)
        grid.append((float(lam), float(ap)))
        if ap > best[1] + 1e-12:
            best = (float(lam), float(ap))
    return {
        "lambda": best[0],
        "lambda_ap": best[1],
        "lambda_ap_in_sample": True,  # λ was chosen for this AP on these same images
        "baseline_patch_std_ap": float(average_precision(np.maximum.reduceat(std, bounds[:-1]), y)),
        "lambda_grid": grid,
    }


def calibrate(
    model: Any,
    metadata: Any,
    root: Path,
    patch: int,
    quantile: float,
    batch: int = 256,
    data: str = "orbital_gray",
    seed: int = 0,
) -> dict[str, Any]:
    """Tune λ on validation data (sets it in the model), then the threshold on the val split of ``data``."""
    from edgeae.anomaly.calibrate import threshold
    from edgeae.anomaly.score import make_scorer, score_array
    from edgeae.datasets import split_files
    from edgeae.imageio import read_image
    from edgeae.predictor import TorchPredictor

    model.eval()
    scorer = make_scorer(TorchPredictor(model, metadata, "training"))
    if DATASETS[data] == 1:
        tuned = _calibrate_grey(scorer, root, patch, batch)
    else:
        tuned = _calibrate_rgb(scorer, root, patch, batch, seed)
    model.set_lambda(tuned["lambda"])
    normal: list[np.ndarray] = []
    for f in split_files(data, "val", root):
        if sum(len(n) for n in normal) >= THRESHOLD_MAX_PATCHES:
            break
        img = read_image(f, channels=DATASETS[data])
        normal.append(score_array(img.pixels, scorer, patch, patch, valid=img.valid, batch=batch).score)
    scores = np.concatenate(normal)
    return {**tuned, "threshold": threshold(scores, quantile), "threshold_quantile": quantile,
            "threshold_patches": int(scores.size)}  # fmt: skip


def train_vae(config: VAETrainConfig, resume: bool = False) -> dict[str, Any]:
    """Train (or, with ``resume``, continue) and calibrate; write ``best.pt``, ``metrics.json`` and loss curves.

    Returns the metrics, or ``{"complete": False, "stopped": ..., "stop": ...}`` when the time budget or a signal
    stopped the run first (continue it with ``resume=True``). A refused resume (a CAE run, a complete one, fewer
    epochs than it did, other data or config) writes nothing."""
    torch = require("torch")
    from edgeae import __version__
    from edgeae.checkpoint import save_checkpoint
    from edgeae.data import data_root
    from edgeae.datasets import split_files
    from edgeae.metadata import ModelMetadata, manifest_hash
    from edgeae.models.vae import VAE, VAEConfig, count_macs, count_parameters
    from edgeae.train.common import check_memory, progress, select_device, write_history, write_json
    from edgeae.train.crops import Augment, load_masters, sample_crops
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
        check_resume(out, "vae", config.epochs)  # before any work: nothing is written when it refuses
    else:
        config.check_new_run()
        if (out / "last.pt").exists():
            raise FileExistsError(f"{out} already holds a run (last.pt): resume it or choose another --out")
    device = select_device(config.device)
    channels = config.n_channels
    crop_bytes = channels * config.patch * config.patch * 4
    check_memory({"crops": (config.crops_per_epoch, crop_bytes), "val_crops": (config.val_crops, crop_bytes)})
    if config.threads:
        torch.set_num_threads(config.threads)
    root = data_root(config.data_root)
    train_files = training_files(root, config.hirise, config.data, config.msl_ground)
    val_files = split_files(config.data, "val", root)
    data_hash = manifest_hash([*train_files, *val_files])
    cfg_dict = {k: v for k, v in config.to_dict().items() if k not in RESUMABLE}
    out.mkdir(parents=True, exist_ok=True)
    if not resume:
        write_json(out / "config.json", {"kind": "vae", **config.to_dict()})
    n_batches = config.crops_per_epoch // config.batch_size
    if config.crops_per_epoch != config.crops:
        log.info(
            "each epoch trains %d batches of %d = %d crops (crops %d rounded to whole batches)", n_batches,
            config.batch_size, config.crops_per_epoch, config.crops,
        )  # fmt: skip

    t0 = time.perf_counter()
    masters = load_masters(train_files, channels)
    val_rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0x7A1]))
    val = sample_crops(load_masters(val_files, channels), config.val_crops, config.patch, val_rng, Augment.none())
    log.info("%d training images, %d val crops in %.1fs", len(masters), len(val), time.perf_counter() - t0)
    aug = Augment() if config.augment else Augment.none()

    torch_seed = _seed(config.seed, 0x70)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(torch_seed)  # weight init only, never the caller's state
        vae_cfg = VAEConfig(channels=channels, widths=config.widths, latent=config.latent, patch=config.patch)
        model = VAE(vae_cfg).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    use_bf16 = config.use_bf16(device.type)
    log.info(
        "precision: %s%s",
        "bfloat16 autocast" if use_bf16 else "float32",
        "" if config.bf16 is not None else " (chosen for this CPU: --bf16 / --no-bf16 to force)",
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    state = TrainState()
    if resume:
        state = load_state(out, model, optimizer, None, cfg_dict, data_hash)
        state.complete = False  # a complete run resumes only to more epochs (check_resume)
        write_json(out / "config.json", {"kind": "vae", **config.to_dict()})  # the checks passed: --epochs applies
        if state.early_stop:  # no early stopping here, but a state that records one is finished: no more epochs
            log.info("resumed %s: it stopped early after epoch %d; writing its final files", out, state.epochs_done)
        else:
            log.info("resumed %s at epoch %d/%d, batch %d/%d", out, state.epoch, config.epochs, state.batch, n_batches)
        _warn_crop_count(config, state, out)
    state.crops_per_epoch = config.crops_per_epoch
    state.segments.append({"start_epoch": state.epoch, "start_batch": state.batch, "started": time.time()})

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

    metadata = ModelMetadata(
        kind="vae",
        architecture=vae_cfg.to_dict(),
        input_shape=(-1, channels, config.patch, config.patch),
        channels=channels,
        training_data_hash=manifest_hash(list(train_files)),
        edgeae_version=__version__,
        extra={
            "data": config.data,
            "train_files": len(train_files),
            "val_files": [p.name for p in val_files],
            "beta": config.beta,
            "seed": config.seed,
            "crops_per_epoch": config.crops_per_epoch,
            "score": "sum over pixels of (x - x_hat)^2 + lambda * sum(mu^2), x_hat decoded from mu",
        },
    )
    best_state = out / "best_state.pt"
    deadline = Deadline(config.time_budget)

    def save() -> Path:
        return save_state(out, model, optimizer, None, state, cfg_dict, data_hash, kind="vae")

    autosave = Autosave(state, save)
    stopped: str | None = None
    cause: str | None = None
    try:
        while state.epoch <= config.epochs and stopped is None and not state.early_stop:
            epoch = state.epoch
            autosave.start_epoch()
            rng = np.random.default_rng(np.random.SeedSequence([config.seed, epoch]))
            crops = sample_crops(masters, config.crops_per_epoch, config.patch, rng, aug)
            order = rng.permutation(len(crops))
            model.train()
            bar = progress(
                range(state.batch, n_batches), f"epoch {epoch}/{config.epochs}", total=n_batches,
                enabled=config.progress, initial=state.batch,
            )  # fmt: skip
            for b in bar:
                idx = order[b * config.batch_size : (b + 1) * config.batch_size]
                loss = _losses(torch, model, to_device(crops[idx]), config.beta, _seed(config.seed, epoch, b), ac())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                account_batch(state, float(loss.detach()), len(idx), epoch, b)
                if deadline.expired:
                    stopped, cause = deadline.reason, deadline.cause
                    break
                autosave.batch_done()
            autosave.bank_time()
            if stopped is not None and state.batch < n_batches:
                break
            va = val_loss()
            if not math.isfinite(va):
                raise TrainingDiverged(f"training diverged: the validation loss became {va} after epoch {epoch}; "
                                       "lower the learning rate or beta")  # fmt: skip
            row = {
                "epoch": epoch,
                "train_loss": state.loss_sum / max(state.loss_count, 1),
                "val_loss": va,
                "seconds": round(state.seconds, 1),
            }
            state.history.append(row)
            improved = va < state.best_val
            log.info(
                "epoch %d/%d  train %.2f  val %.2f  %.0fs%s", epoch, config.epochs, row["train_loss"], va,
                row["seconds"], "  (best)" if improved else "",
            )  # fmt: skip
            if improved:
                state.best_val, state.best_epoch = va, epoch
                torch.save({k: v.detach().cpu().clone() for k, v in model.state_dict().items()}, best_state)
            state.epoch, state.batch, state.loss_sum, state.loss_count, state.seconds = epoch + 1, 0, 0.0, 0, 0.0
            autosave.save_now()
            write_history(state.history, out)
            if stopped is None and deadline.expired and state.epoch <= config.epochs:
                stopped, cause = deadline.reason, deadline.cause
    finally:
        deadline.close()
    if stopped is not None and (state.epoch > config.epochs or state.early_stop):  # every epoch done: not a stop
        stopped = cause = None
    state.segments[-1].update(end_epoch=state.epoch, end_batch=state.batch, ended=time.time(), stop=stopped)
    save()
    if stopped is not None:
        log.info("%s: state saved to %s; continue with: %s", stopped, out / "last.pt",
                 resume_command("vae", out, config.zoo_name, config.zoo_force))  # fmt: skip
        return {"stopped": stopped, "stop": cause, "epoch": state.epoch, "batch": state.batch, "complete": False}

    model.load_state_dict(torch.load(best_state, map_location="cpu", weights_only=True))
    model = model.to(memory_format=torch.contiguous_format).cpu().eval()  # type: ignore[call-overload]
    log.info("calibrating λ and threshold on validation data (a minute or so)")
    score = calibrate(model, metadata, root, config.patch, config.threshold_quantile, data=config.data,
                      seed=config.seed)  # fmt: skip
    log.info(
        "λ %.4g: AP %.3f (in-sample: λ was chosen on these images; patch-std baseline AP %s) on %s",
        score["lambda"], score["lambda_ap"], _ap_text(score.get("baseline_patch_std_ap")),
        score.get("lambda_feature", "?"),
    )  # fmt: skip
    vae_cfg = model.config
    metadata = metadata.replace(
        architecture=vae_cfg.to_dict(), score={"lambda": score["lambda"], "threshold": score["threshold"]}
    )
    metrics: dict[str, Any] = {
        "best_epoch": state.best_epoch,
        "val_loss": state.best_val,
        "epochs_run": len(state.history),
        "parameters": count_parameters(model),
        "macs_per_patch": count_macs(vae_cfg),
        "train_seconds": round(sum(h["seconds"] for h in state.history), 1),
        "device": str(device),
        "bf16": use_bf16,
        "data": config.data,
        "train_files": len(train_files),
        "crops_per_epoch": config.crops_per_epoch,
        "segments": state.segments,
        "complete": True,
        "calibration": score,
    }
    path = save_checkpoint(out / "best.pt", model, metadata, metrics, state.history)
    write_history(state.history, out)
    write_json(out / "metrics.json", metrics)
    state.complete = True  # recorded last: a run killed before its final files resumes to write them
    save()
    log.info(
        "best epoch %d, val loss %.2f, λ %.4g, threshold %.4g -> %s", state.best_epoch, state.best_val,
        score["lambda"], score["threshold"], path,
    )  # fmt: skip
    return metrics


def _warn_crop_count(config: VAETrainConfig, state: Any, out: Path) -> None:
    """Warn when a resumed run started before an epoch was rounded down to whole batches (its ``last.pt`` records
    no crops per epoch) and its ``crops`` is no multiple of ``batch_size``: its earlier epochs drew all ``crops``,
    the last batch partial; the rest draw :attr:`VAETrainConfig.crops_per_epoch`, whole batches only."""
    if state.crops_per_epoch is not None or config.crops % config.batch_size == 0:
        return
    bs = config.batch_size
    log.warning(
        "%s started before an epoch was rounded down to whole batches: its epochs so far drew %d crops (%d batches, "
        "the last of %d), the rest of its epochs draw %d (%d batches of %d): a different crop count, so it will not "
        "end as an uninterrupted run of either version would", out, config.crops, -(-config.crops // bs),
        config.crops % bs, config.crops_per_epoch, config.crops_per_epoch // bs, bs,
    )  # fmt: skip


def _ap_text(ap: Any) -> str:
    return f"{ap:.3f}" if isinstance(ap, float) else "n/a"


def load_config(path: str | os.PathLike[str]) -> VAETrainConfig:
    """Read a ``config.json`` written by :func:`train_vae` (a damaged one: a ValueError naming the file)."""
    try:
        d = json.loads(Path(path).read_text())
        if not isinstance(d, dict):
            raise TypeError("not a JSON object")
        config = VAETrainConfig.from_dict(d)
    except (ValueError, TypeError, KeyError) as exc:  # not JSON, another trainer's, or not this trainer's fields
        raise ValueError(f"{path}: not a readable training config ({type(exc).__name__}: {exc})") from None
    for problem in config.new_run_problems():  # a saved run keeps what it started with
        log.warning("%s: %s (a new run would be refused; this run resumes as it started)", path, problem)
    return config

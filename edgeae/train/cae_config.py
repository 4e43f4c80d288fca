"""The CAE trainer's configuration: :class:`CAETrainConfig` (validated on construction, written to a run's
``config.json``), the train/val file split of its ``data`` (:func:`split_data`) and reading a ``config.json`` back
(:func:`load_config`)."""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgeae.imageio import READ_EXTENSIONS
from edgeae.train.common import check_zoo_fields, drop_zoo_defaults, read_config
from edgeae.train.corrupt import MODES, Corruption

# a folder's training images. Not .pnm, which the reader reads too: adding it would change the split and the data
# hash of every earlier run on a folder holding one (refused on resume; review s33), so such files are named in a
# warning instead (rename them .ppm or .pgm to train on them)
log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".pgm", ".ppm")
FRAME_SUFFIXES = (".npy",)  # frames firmware-sim flies but training does not read: named in the warning too
_WARNED: set[str] = set()  # folders whose unused images were named already
DATASET_CHANNELS = {
    "rover_rgb": 3,
    "orbital_gray": 1,
    "rover_rgb_v2": 3,
    "orbital_gray_v2": 1,
    "rover_rgb_msl": 3,
    "rover_rgb_msl_all": 3,
    "orbital_gray_lunar": 1,
}


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
        """``channels``, else the dataset's, else 3 when ``first_file`` is colour and 1 when grey (the rule before
        session 37, which a run checks the whole folder against: :meth:`channels_for`)."""
        if self.channels is not None:
            return self.channels
        if self.data in DATASET_CHANNELS:
            return DATASET_CHANNELS[self.data]
        if first_file is not None:
            from edgeae.imageio import image_shape

            return 3 if image_shape(first_file)[2] >= 3 else 1
        raise ValueError(f"channels not given and {self.data!r} is not a named dataset: pass channels 1 or 3")

    def channels_for(
        self, files: list[Path], shapes: list[tuple[int, int, int]], resume: bool = False
    ) -> tuple[int, str | None]:
        """(channels, the line saying why; None for a named dataset) of a run on ``files`` (its train then val
        files) whose headers give ``shapes``: ``channels``, the dataset's, else the one every image of the folder
        has; a folder that mixes grey and colour images needs ``channels`` (:func:`edgeae.train.channels.
        folder_channels`; ``resume``: a run started before that rule keeps its first image's count)."""
        if self.data in DATASET_CHANNELS:
            return self.resolved_channels(), None
        from edgeae.train.channels import folder_channels

        return folder_channels(self.data, files, shapes, self.channels, resume)

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


def _not_used(files: list[Path], suffixes: tuple[str, ...], noun: str = "image") -> str:
    """``files`` named (by suffix when they have several) as not used for training, what is, and what to do."""
    by: dict[str, list[str]] = {}
    for p in files:
        by.setdefault(p.suffix.lower() or "no suffix", []).append(p.name)
    groups = sorted(by.items(), key=lambda kv: -len(kv[1]))
    if len(groups) == 1:
        listing = ", ".join(files[i].name for i in range(min(5, len(files)))) + (" ..." if len(files) > 5 else "")
    else:
        shown = "; ".join(f"{len(n)} {sfx}: {', '.join(n[:3])}{' ...' if len(n) > 3 else ''}" for sfx, n in groups[:6])
        rest = sum(len(n) for _, n in groups[6:])  # 300 numbered suffixes (x.001 ...) made a 5 KB line
        listing = shown + (f"; {rest} more with {len(groups) - 6} other suffixes" if rest else "")
    advice = "; rename them to train on them" if set(by) & set(READ_EXTENSIONS) else ""
    if ".npy" in by:  # frames firmware-sim flies: say how to train on them
        advice += "; .npy frames (which firmware-sim flies) are not read for training: write them as 16-bit PNG or TIFF"
        advice += " with edgeae.write_image"
    return (
        f"{len(files)} {noun}(s) not used for training ({listing}): a folder's training images are "
        f"{' '.join(suffixes)}{advice}"
    )


def split_data(config: CAETrainConfig, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> tuple[list[Path], list[Path]]:
    """(train files, val files) for ``config.data``: a named dataset split or a folder split by file (the files
    with one of ``suffixes``)."""
    from edgeae.datasets import SPLITS, split_files

    if config.data in SPLITS:
        return (
            split_files(config.data, "train", root=config.data_root),
            split_files(config.data, "val", root=config.data_root),
        )
    folder = Path(config.data)
    if not folder.is_dir():
        raise FileNotFoundError(f"--data {config.data!r} is neither a dataset ({sorted(SPLITS)}) nor a folder")
    every = sorted(p for p in folder.rglob("*") if p.is_file())
    files = [p for p in every if p.suffix.lower() in suffixes]
    others = [p for p in every if p.suffix.lower() not in suffixes and not p.name.startswith(".")]
    if len(files) < 2:  # every other file named: a folder of .npy frames was "found 0" without a word
        why = (
            f"; {_not_used(others, suffixes, 'file')}" if others else f"; its training images are {' '.join(suffixes)}"
        )
        raise ValueError(f"{folder}: need at least 2 images to split train/val by file, found {len(files)}{why}")
    unread = [p for p in others if p.suffix.lower() in (*READ_EXTENSIONS, *FRAME_SUFFIXES)]
    if unread and str(folder.resolve()) not in _WARNED:  # once a folder and process (a run splits it twice)
        _WARNED.add(str(folder.resolve()))
        log.warning("%s: %s", folder, _not_used(unread, suffixes))
    val = files[::5]
    train = [f for f in files if f not in val]
    return train, val


def load_config(path: str | os.PathLike[str]) -> CAETrainConfig:
    """Read a ``config.json`` written by :func:`edgeae.train.cae.train_cae` (a damaged one: a ValueError naming
    the file)."""
    config: CAETrainConfig = read_config(path, CAETrainConfig)
    return config

"""The VAE trainer's configuration: :class:`VAETrainConfig` (validated on construction, written to a run's
``config.json``), the named training data it knows with their channels (:data:`DATASETS`; any other ``data`` is a
folder of images), the keys a resume may change (:data:`RESUMABLE`) and reading a ``config.json`` back
(:func:`load_config`)."""

from __future__ import annotations

import logging
import math
import os
from dataclasses import asdict, dataclass
from typing import Any

from edgeae.train.common import check_zoo_fields, drop_zoo_defaults, read_config

log = logging.getLogger("edgeae.train.vae")  # the trainer's logger: its warnings keep the name they always had

DATASETS: dict[str, int] = {"orbital_gray": 1, "orbital_gray_v2": 1, "rover_rgb": 3, "rover_rgb_v2": 3}
# Config keys that may change when a run is resumed (they do not change what is learned).
RESUMABLE = ("epochs", "time_budget", "progress", "threads", "device", "data_root", "out", "zoo_name", "zoo_force")


@dataclass(frozen=True)
class VAETrainConfig:
    """One VAE training run; written to ``out/config.json``."""

    out: str
    data: str = "orbital_gray"  # a name of DATASETS, or a folder of images (split by file as the CAE trainer does)
    channels: int | None = None  # None: from ``data`` (1 grey orbital, 3 RGB rover); a folder needs 1 or 3
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
    # λ of the anomaly score for folder data (no labels to tune it on); None: median(rec) / median(mu2) of its val
    # patches. Named data tunes λ on labelled validation images (edgeae.train.vae_calibrate).
    score_lambda: float | None = None

    def __post_init__(self) -> None:
        """The checks every config passes, a saved run's included; :meth:`new_run_problems` adds those a new run
        must pass (introduced after runs were saved that break them: such a run still loads and resumes)."""
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        if self.data not in DATASETS and self.channels not in (1, 3):
            raise ValueError(
                f"unknown VAE training data {self.data!r}; choose from {sorted(DATASETS)}, or a folder of images "
                f"with channels 1 or 3 (got {self.channels})"
            )
        if self.data in DATASETS and self.channels is not None and int(self.channels) != DATASETS[self.data]:
            raise ValueError(f"{self.data} has {DATASETS[self.data]} channel(s), not {self.channels}")
        if self.score_lambda is not None and not (self.score_lambda >= 0 and math.isfinite(self.score_lambda)):
            raise ValueError(f"score_lambda must be finite and >= 0, got {self.score_lambda}")
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
        an ``lr`` of 1 or more, ``msl_ground`` with grey data (the trainer adds no MSL image to grey data),
        ``hirise`` or ``msl_ground`` with a folder, ``score_lambda`` with named data (its λ is tuned on labels)."""
        problems = []
        if not self.lr < 1:
            problems.append(f"lr must be in (0, 1), got {self.lr}")
        if self.msl_ground and DATASETS.get(self.data) != 3:
            problems.append(f"msl_ground adds RGB MSL images: it needs named RGB data (rover_*), not {self.data}")
        if self.is_folder and self.hirise:
            problems.append(f"hirise adds HiRISE crops to named grey data (orbital_*): a folder ({self.data}) needs "
                            "hirise=False")  # fmt: skip
        if not self.is_folder and self.score_lambda is not None:
            problems.append(f"score_lambda applies to folder data: {self.data}'s λ is tuned on labelled images")
        return problems

    def check_new_run(self) -> None:
        """Raise a ValueError for the first of :meth:`new_run_problems`."""
        problems = self.new_run_problems()
        if problems:
            raise ValueError(problems[0])

    @property
    def is_folder(self) -> bool:
        """Whether ``data`` is a folder of images rather than a named dataset."""
        return self.data not in DATASETS

    @property
    def n_channels(self) -> int:
        return DATASETS[self.data] if self.data in DATASETS else int(self.channels or 0)

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
        if d["score_lambda"] is None:  # absent from runs started before it existed: they still resume
            del d["score_lambda"]
        return drop_zoo_defaults(d)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VAETrainConfig:
        """The config of a ``config.json`` (its ``kind`` must be ``vae`` where present; unknown keys refused:
        they would be dropped silently, as a CAE run's ``mode`` once was)."""
        from edgeae.train.common import config_fields

        d = config_fields(cls, d, "vae")
        d["widths"] = tuple(d.get("widths", (16, 32, 64, 32)))
        return cls(**d)


def load_config(path: str | os.PathLike[str]) -> VAETrainConfig:
    """Read a ``config.json`` written by :func:`edgeae.train.vae.train_vae` (a damaged one: a ValueError naming
    the file)."""
    config: VAETrainConfig = read_config(path, VAETrainConfig)
    for problem in config.new_run_problems():  # a saved run keeps what it started with
        log.warning("%s: %s (a new run would be refused; this run resumes as it started)", path, problem)
    return config

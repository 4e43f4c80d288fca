"""Tiny training inputs shared by the training tests: smooth random images written as PNGs and the configs of tiny
CAE and VAE runs (test_train_s32, test_train_resume, test_train_s35, test_train_folder_s31, test_train_s36_f3 and
test_train_s37_j1 each wrote their own copies until session 38).

cv2 and torch are imported inside the functions, so a test module's ``pytest.importorskip`` runs first."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from edgeae.train.cae import CAETrainConfig
    from edgeae.train.vae import VAETrainConfig

# a CAE of widths 4, 8 on 32-px tiles, 2 epochs of 8 crops in batches of 4, one thread, seed 3, no bfloat16
TINY_CAE: dict[str, Any] = dict(
    widths=(4, 8), tile=32, epochs=2, crops=8, val_crops=4, batch_size=4, threads=1, progress=False, seed=3, bf16=False
)
# an RGB VAE of widths 4,4,4,4 and latent 8, 2 epochs of 32 crops in batches of 16, one thread, seed 3, no bfloat16
TINY_VAE: dict[str, Any] = dict(
    channels=3, widths=(4, 4, 4, 4), latent=8, epochs=2, crops=32, val_crops=16, batch_size=16, threads=1,
    progress=False, seed=3, bf16=False, hirise=False,
)  # fmt: skip


def smooth_image(
    rng: np.random.Generator, shape: tuple[int, ...], sigma: float = 2, low: float = 40, span: float = 160
) -> np.ndarray:
    """uint8 noise of ``shape`` (H, W, C) blurred by a Gaussian of ``sigma`` px, stretched to ``low`` ..
    ``low + span``."""
    import cv2

    img = cv2.GaussianBlur(rng.random(shape).astype(np.float32), (0, 0), sigma)
    img = low + span * (img - img.min()) / (img.max() - img.min())
    return img.astype(np.uint8)


def smooth_images(
    folder: Path,
    n: int,
    shape: tuple[int, ...],
    seed: int = 0,
    prefix: str = "im",
    **look: float,
) -> Path:
    """``folder`` (created) holding ``n`` PNGs ``{prefix}0.png`` ... of :func:`smooth_image` (``look``: its
    ``sigma``, ``low``, ``span``), drawn in turn from one generator of ``seed``."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        cv2.imwrite(str(folder / f"{prefix}{i}.png"), smooth_image(rng, shape, **look))
    return folder


def cae_config(data: Path, out: Path, **kw: Any) -> CAETrainConfig:
    """The ``CAETrainConfig`` of a :data:`TINY_CAE` run on ``data`` into ``out``, ``kw`` replacing its fields."""
    from edgeae.train.cae import CAETrainConfig

    return CAETrainConfig(**{**TINY_CAE, "data": str(data), "out": str(out), **kw})


def vae_config(data: Path, out: Path, **kw: Any) -> VAETrainConfig:
    """The ``VAETrainConfig`` of a :data:`TINY_VAE` run on ``data`` into ``out``, ``kw`` replacing its fields."""
    from edgeae.train.vae import VAETrainConfig

    return VAETrainConfig(**{**TINY_VAE, "data": str(data), "out": str(out), **kw})

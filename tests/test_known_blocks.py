"""Do no harm next to known blocks: the prioritised downlink hands the ground CAE whole full-resolution patches
inside a sparse context (``edgeae.ground.science.receive``), a mask no training crop looked like. A shipped
ground model must not paint artefacts around them (a 60-99 % fine-tune of the grey model did: 23× the error
within 16 px of the blocks, whole-frame PSNR 26.6 → 22.0 dB in the science benchmark; docs/training.md)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("scipy")

CROP = 384
BLOCK = 64


def _crop(path: Path, channels: int) -> np.ndarray:
    from edgeae.imageio import read_image

    img = read_image(path, channels=channels)
    pix = np.asarray(img.pixels, np.float32)
    h, w = pix.shape[:2]
    y0, x0 = (h - CROP) // 2, (w - CROP) // 2  # the middle of the frame: no margins
    return pix[y0 : y0 + CROP, x0 : x0 + CROP]


def ring_harm(model: str | os.PathLike[str], img: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """MSE within 16 px around 4 known 64×64 blocks, reconstructed with and without the blocks known
    (uniform keep 0.05 elsewhere). Returns (with blocks, sparse only), over the same pixels."""
    from scipy.ndimage import binary_dilation

    from edgeae.masks import make_mask
    from edgeae.predictor import load_predictor
    from edgeae.reconstruct import reconstruct

    predictor = load_predictor(model, threads=1)
    sparse = make_mask(seed, img.shape[:2], 0.05, "uniform")
    blocks = np.zeros_like(sparse)
    for y, x in ((48, 48), (48, 256), (256, 64), (240, 240)):
        blocks[y : y + BLOCK, x : x + BLOCK] = True
    ring = binary_dilation(blocks, iterations=16) & ~blocks & ~sparse
    out = {}
    for name, known in (("blocks", sparse | blocks), ("sparse", sparse)):
        rec = np.asarray(reconstruct(img, known, "cae", predictor=predictor, progress=False), np.float32)
        out[name] = float(((rec - img) ** 2)[ring].mean())
    return out["blocks"], out["sparse"]


@pytest.mark.parametrize(
    ("model", "channels", "where"),
    [
        ("orbital-gray-unet2-ground", 1, "orbital_gray/hirise_browse/ESP_073481_1350_RED.NOMAP.browse.jpg"),
        ("rover-rgb-unet2-ground", 3, "rover_rgb/marsscapes/image"),
    ],
)
def test_known_blocks_add_no_error_around_them(data_root: Path, model: str, channels: int, where: str) -> None:
    path = data_root / where
    if path.is_dir():
        files = sorted(path.glob("*.png"))
        if not files:
            pytest.skip(f"no images under {path}")
        path = files[0]
    if not path.is_file():
        pytest.skip(f"{path} not found")
    with_blocks, sparse_only = ring_harm(model, _crop(path, channels))
    # known pixels nearby should help, or at worst cost a little; the rejected fine-tune gave 23x
    assert with_blocks <= 1.5 * sparse_only, (model, with_blocks, sparse_only)

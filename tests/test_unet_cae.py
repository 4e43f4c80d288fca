"""The U-Net CAE variant: its fixed pre-fill equals the numpy ``normconv`` baseline, and it starts there."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgeae.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from edgeae.inpaint import inpaint  # noqa: E402
from edgeae.masks import make_mask  # noqa: E402
from edgeae.metadata import ModelMetadata  # noqa: E402
from edgeae.models.cae import CAEConfig, build, count_parameters  # noqa: E402
from edgeae.models.unet_cae import NormConvFill  # noqa: E402


def _crop(moon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    img = (moon[100:228, 200:328].astype(np.float32) / 255.0)[..., None]
    return img, make_mask(11, img.shape[:2], 0.1)


def test_prefill_matches_numpy_normconv(moon: np.ndarray) -> None:
    img, known = _crop(moon)
    x = torch.from_numpy((img * known[..., None]).transpose(2, 0, 1)[None].copy())
    with torch.no_grad():
        fill, m = NormConvFill(1)(x)
    np.testing.assert_array_equal(m.numpy()[0, 0].astype(bool), known)
    ref = inpaint(img, known, "normconv")
    np.testing.assert_allclose(fill.numpy()[0].transpose(1, 2, 0), ref, atol=1e-5)


def test_untrained_model_is_the_prefill_and_beats_nothing_else(moon: np.ndarray) -> None:
    img, known = _crop(moon)
    model = build(CAEConfig(channels=1, variant="unet")).eval()
    x = torch.from_numpy((img * known[..., None]).transpose(2, 0, 1)[None].copy())
    with torch.no_grad():
        out = model(x).numpy()[0].transpose(1, 2, 0)
    np.testing.assert_allclose(out, inpaint(img, known, "normconv"), atol=1e-5)


def test_variant_checkpoint_round_trip(tmp_path: Path) -> None:
    cfg = CAEConfig(channels=3, widths=(8, 16, 16, 16), variant="unet")
    model = build(cfg)
    assert count_parameters(model) > 0
    meta = ModelMetadata(kind="cae", architecture=cfg.to_dict(), input_shape=(-1, 3, 128, 128), channels=3)
    ck = load_checkpoint(save_checkpoint(tmp_path / "u.pt", model, meta))
    assert ck.metadata.architecture["variant"] == "unet"
    assert type(ck.model).__name__ == "UNetCAE"


def test_unknown_variant_is_refused() -> None:
    with pytest.raises(ValueError, match="variant"):
        CAEConfig(variant="transformer")


def test_black_kept_pixels_are_not_taken_for_holes(moon: np.ndarray) -> None:
    """A truly black region (panorama margins, shadows) must be rebuilt from its black samples."""
    from edgeae.predictor import TorchPredictor
    from edgeae.reconstruct import reconstruct

    img, known = _crop(moon)
    img = img.copy()
    img[:, :64] = 0.0  # left half black, as in the black margins of stitched rover panoramas
    model = build(CAEConfig(channels=1, variant="unet")).eval()  # untrained: exactly the normconv pre-fill
    meta = ModelMetadata(kind="cae", architecture=model.config.to_dict(), input_shape=(-1, 1, 128, 128), channels=1)
    out = reconstruct(img, known, "cae", TorchPredictor(model, meta, source="test"), overlap=0)
    # black stays black beyond the largest kernel radius (12 px); a hole fill would pull in the bright half
    assert float(np.abs(out[:, :48]).max()) < 0.05
    # equal to the classical fill up to the kept-pixel floor (one 8-bit step, edgeae.reconstruct.KNOWN_FLOOR)
    np.testing.assert_allclose(out, inpaint(img, known, "normconv"), atol=1.5 / 255)

"""Session 29's audit of `edgeae reconstruct` and the Python API: what a fill, the cross-check, the metrics and
the model resolver refuse or say instead of returning a broken result."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from edgeae.crosscheck import CrossCheckConfig, cross_checked_fill
from edgeae.inpaint import inpaint
from edgeae.masks import make_mask
from edgeae.metadata import ModelMetadata
from edgeae.metrics import compare, psnr, ssim
from edgeae.reconstruct import ChannelMismatchError, reconstruct


class MeanPredictor:
    """A stand-in CAE: every output pixel is the tile's mean of the non-zero inputs (no torch needed)."""

    def __init__(self, channels: int, tile: int = 32) -> None:
        self.metadata = ModelMetadata(
            kind="cae", architecture={}, input_shape=(-1, channels, tile, tile), channels=channels
        )
        self.source = "mean-predictor"

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        nz = (batch > 0).sum(axis=(2, 3), keepdims=True)
        mean = batch.sum(axis=(2, 3), keepdims=True) / np.maximum(nz, 1)
        return np.broadcast_to(mean, batch.shape).astype(np.float32)


def _scene(size: int = 96, channels: int = 1) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size] / size
    grey = 0.2 + 0.5 * y + 0.2 * np.sin(6 * x)
    return np.stack([grey * (1 - 0.1 * c) for c in range(channels)], axis=-1).astype(np.float32)


@pytest.mark.parametrize("method", ["cae", "linear", "normconv"])
def test_a_fill_refuses_integer_and_0_255_images_and_says_how_to_convert(method: str) -> None:
    """uint8 or 0-255 float input made a mix (known pixels 0..255, filled ones clipped to <= 1)."""
    img = _scene()
    known = make_mask(0, img.shape[:2], 0.2)
    pred = MeanPredictor(1) if method == "cae" else None
    with pytest.raises(ValueError, match=r"uint8.*float images in \[0, 1\].*read_image.*divide by 255"):
        reconstruct(np.round(img * 255).astype(np.uint8), known, method, predictor=pred)
    with pytest.raises(ValueError, match=r"uint16.*divide by 65535"):
        reconstruct(np.round(img * 4095).astype(np.uint16), known, method, predictor=pred)
    with pytest.raises(ValueError, match=r"span \[.*\], outside \[0, 1\].*divide by 255"):
        reconstruct(img * 255, known, method, predictor=pred)
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        reconstruct(img - 0.5, known, method, predictor=pred)
    # a tiny overshoot (resampling, rounding) is taken, and the known samples are kept as given
    out = reconstruct(img * 1.005, known, method, predictor=pred)
    assert np.array_equal(out[known], (img * 1.005)[known])
    with pytest.raises(ValueError, match="uint8"):  # the classical fills' own entry point too
        inpaint(np.round(img * 255).astype(np.uint8), known, "linear")


def test_empty_or_all_nan_images_say_so_not_raise_the_keep_fraction() -> None:
    with pytest.raises(ValueError, match="image is empty"):
        reconstruct(np.zeros((0, 0), np.float32), np.zeros((0, 0), bool), "linear")
    nan = np.full((16, 16), np.nan, np.float32)
    known = make_mask(0, (16, 16), 0.3)
    with pytest.raises(ValueError, match="no finite sample") as exc:
        reconstruct(nan, known, "linear")
    assert "keep fraction" not in str(exc.value)
    some = _scene(16)[..., 0]
    some[known] = np.nan  # finite only where nothing was received
    with pytest.raises(ValueError, match=r"all \d+ known pixels hold NaN"):
        reconstruct(some, known, "nearest")
    with pytest.raises(ValueError, match=r"no known pixels.*keep fraction"):  # the keep fraction is the cause here
        reconstruct(_scene(16), np.zeros((16, 16), bool), "linear")


def test_the_cae_refuses_channel_counts_it_has_no_conversion_for_in_one_message() -> None:
    """A 4-channel image was told convert_channels=True, which then said to convert explicitly."""
    img4 = np.concatenate([_scene(64, 3), np.ones((64, 64, 1), np.float32)], axis=2)
    known = make_mask(1, (64, 64), 0.2)
    for img, conv in ((img4, False), (img4, True), (img4[..., :2], True)):
        with pytest.raises(ChannelMismatchError, match=r"grey \(1\) or RGB \(3\) images only") as exc:
            reconstruct(img, known, "cae", predictor=MeanPredictor(3), convert_channels=conv)
        assert "convert_channels" not in str(exc.value)
    with pytest.raises(ChannelMismatchError, match="use an RGB model"):
        reconstruct(_scene(64, 3), known, "cae", predictor=MeanPredictor(1))
    with pytest.raises(ChannelMismatchError, match="use a grey model"):
        reconstruct(_scene(64, 1), known, "cae", predictor=MeanPredictor(3))


def test_cross_check_treats_nan_known_samples_as_destroyed(caplog: pytest.LogCaptureFixture) -> None:
    """NaN at 124 known pixels spread to thousands of output pixels on the CLI's default path."""
    img = _scene(128)
    known = make_mask(2, img.shape[:2], 0.2)
    bad = img.copy()
    ys, xs = np.nonzero(known)
    bad[ys[:124], xs[:124]] = np.nan
    with caplog.at_level(logging.WARNING, logger="edgeae.crosscheck"):
        out = cross_checked_fill(bad, known, MeanPredictor(1), CrossCheckConfig(sigma=32))
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    assert "124 known pixels hold NaN or inf samples: treated as destroyed" in caplog.text
    rest = known.copy()
    rest[ys[:124], xs[:124]] = False
    assert np.array_equal(out[rest], img[rest])  # the finite known samples are kept bit for bit
    with pytest.raises(ValueError, match="uint8"):
        cross_checked_fill(np.round(img * 255).astype(np.uint8), known, MeanPredictor(1))


def test_metrics_refuse_integer_images_and_count_non_finite_samples(caplog: pytest.LogCaptureFixture) -> None:
    """uint8 pairs gave PSNR -8.2 dB with SSIM 0.999; a NaN turned every metric NaN with no word."""
    a = _scene(32)[..., 0]
    b = np.clip(a + 0.01, 0, 1)
    a8, b8 = (np.round(x * 255).astype(np.uint8) for x in (a, b))
    for fn in (psnr, ssim, compare):
        with pytest.raises(ValueError, match=r"float images in \[0, 1\].*uint8.*divide by 255"):
            fn(a8, b8)
    assert compare(a8 / 255.0, b8 / 255.0)["psnr"] > 35  # converted as the message says
    bad = b.copy()
    bad[:3, :2] = np.nan
    with caplog.at_level(logging.WARNING, logger="edgeae.metrics"):
        m = compare(a, bad)
    assert np.isnan(m["psnr"])
    assert "0 NaN/inf samples in the original and 6 in the reconstruction" in caplog.text
    assert caplog.text.count("NaN/inf samples") == 1  # one line per call, not one per metric
    caplog.clear()
    valid = np.ones(a.shape, bool)
    valid[:3] = False  # the NaN lie outside the valid pixels: nothing to say, and finite metrics
    with caplog.at_level(logging.WARNING, logger="edgeae.metrics"):
        assert np.isfinite(compare(a, bad, valid=valid)["psnr"])
    assert "NaN/inf" not in caplog.text
    with pytest.raises(ValueError, match=r"span \[.*outside \[0, 1\].*divide by 255"):  # refused, as a fill does
        compare(a * 255, b * 255)
    with caplog.at_level(logging.WARNING, logger="edgeae.metrics"):  # the single metrics still only warn
        psnr(a * 255, b * 255)
    assert "spans [" in caplog.text and "data range 1" in caplog.text


def test_load_predictor_says_a_folder_is_a_folder(tmp_path: Path) -> None:
    from edgeae.resolve import NameNotFound, model_path

    (tmp_path / "m.onnx").write_bytes(b"")
    with pytest.raises(NameNotFound, match=r"is a folder, not a model file.*\(in it: m\.onnx\)") as exc:
        model_path(str(tmp_path))
    assert "does not exist" not in str(exc.value)
    with pytest.raises(NameNotFound, match="does not exist"):
        model_path(str(tmp_path / "nope.onnx"))

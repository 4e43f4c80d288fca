"""Session 29's audit of score_array / score_file: no NaN scores in silence, a valid mask of the image's shape and
dtype, and score_file saying what score_array refuses (a patch larger than the image, a channel conversion)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from edgeae.anomaly.score import score_array, score_file


def _mean_scorer(batch: np.ndarray) -> dict[str, np.ndarray]:
    """A model stand-in: the score of a patch is its mean (NaN in, NaN out, as a real model's would be)."""
    return {"score": batch.reshape(len(batch), -1).astype(np.float64).mean(axis=1)}


class _Scorer:
    """A stand-in PatchScorer for score_file: ``channels`` and a mean score."""

    def __init__(self, channels: int) -> None:
        self.channels = channels

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        return _mean_scorer(batch)


def _image(h: int = 200, w: int = 200) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return (0.3 + 0.4 * ((x + 2 * y) % 53) / 53).astype(np.float32)


def test_nan_pixels_are_no_data_and_never_make_a_nan_score(caplog: pytest.LogCaptureFixture) -> None:
    """A NaN block gave NaN scores, and scores.score.argmax() then picked the NaN patch."""
    img = _image()
    img[10:20, 10:20] = np.nan  # inside patch (0, 0) of a 64-px grid
    with caplog.at_level(logging.WARNING, logger="edgeae.anomaly.score"):
        whole = score_array(img, _mean_scorer, 64, 64, min_valid=1.0)
    assert "100 NaN/inf pixels are no-data" in caplog.text
    assert (0, 0) not in set(zip(whole.x.tolist(), whole.y.tolist(), strict=True))  # follows min_valid
    assert len(whole) == 15 and np.isfinite(whole.score).all()
    part = score_array(img, _mean_scorer, 64, 64, min_valid=0.5, fill=True)  # filled like other no-data
    first = int(np.flatnonzero((part.x == 0) & (part.y == 0))[0])
    assert part.valid_frac[first] == pytest.approx(1 - 100 / 64**2)
    assert part.score[first] == pytest.approx(np.nanmean(img[:64, :64]), rel=1e-5)
    assert np.isfinite(score_array(img, _mean_scorer, 64, 64, min_valid=0.0).score).all()  # as read: 0
    # a model that returns NaN on finite pixels is said, not ranked in silence
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="edgeae.anomaly.score"):
        r = score_array(_image(), lambda b: {"score": np.full(len(b), np.nan)}, 64, 64)
    assert "16 of 16 patch scores are NaN or inf" in caplog.text and np.isnan(r.score).all()


def test_valid_must_be_a_bool_mask_of_the_image_shape() -> None:
    """valid (10, 10) on 200×200 scored 15 of 16 patches with valid_frac NaN; (400, 400) was cropped; a float
    mask of 0.2 counted as True."""
    img = _image()
    for bad in (np.ones((10, 10), bool), np.ones((400, 400), bool), np.full((200, 200), 0.2)):
        with pytest.raises(ValueError, match=r"valid must be a bool mask of the image's shape \(200, 200\)"):
            score_array(img, _mean_scorer, 64, 64, valid=bad)
    assert len(score_array(img, _mean_scorer, 64, 64, valid=np.ones((200, 200), bool))) == 16


def test_score_file_says_what_score_array_refuses(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A patch larger than the image scored 0 patches in silence; RGB was turned to grey for a grey model in
    silence."""
    from edgeae.imageio import write_image

    small = write_image(tmp_path / "grey128.png", _image(128, 128))
    with pytest.raises(ValueError, match="smaller than the 256×256 patch"):
        score_array(_image(128, 128), _mean_scorer, 256, 256)
    with caplog.at_level(logging.INFO, logger="edgeae.anomaly.score"):
        assert len(score_file(small, _Scorer(1), 256, 256)) == 0  # type: ignore[arg-type]
    assert "image 128×128 is smaller than the 256×256 patch" in caplog.text and "min_valid <= 0.25" in caplog.text
    assert len(score_file(small, _Scorer(1), 256, 256, min_valid=0.25)) == 1  # type: ignore[arg-type]
    caplog.clear()
    rgb = write_image(tmp_path / "rgb.png", np.stack([_image(), _image()[::-1], 1 - _image()], axis=-1))
    with caplog.at_level(logging.INFO, logger="edgeae.anomaly.score"):
        score_file(rgb, _Scorer(1), 64, 64)  # type: ignore[arg-type]
    assert "3 channel(s) scored by a 1-channel model: RGB converted to BT.601 luminance" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="edgeae.anomaly.score"):
        score_file(rgb, _Scorer(3), 64, 64)  # type: ignore[arg-type]
    assert "channel" not in caplog.text

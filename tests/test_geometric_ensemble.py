"""The geometric self-ensemble study (benchmarks/geometric_ensemble.py): every view is turned back exactly, so a
loss it measures is the model's, not the bookkeeping's."""

from __future__ import annotations

import numpy as np

from benchmarks.geometric_ensemble import VIEWS, GeometricEnsemble


class _Copy:
    metadata = None

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return batch.copy()


class _VerticalRamp:
    """Not equivariant: adds a top-to-bottom ramp, as a model that knows where the sky is would."""

    metadata = None

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return batch + np.linspace(0, 1, batch.shape[2], dtype=np.float32)[None, None, :, None]


def test_each_view_is_turned_back_exactly() -> None:
    x = np.random.default_rng(0).random((3, 2, 16, 16)).astype(np.float32)
    for g in range(8):
        np.testing.assert_array_equal(GeometricEnsemble(_Copy(), (g,))(x), x)
    for views in VIEWS.values():
        np.testing.assert_allclose(GeometricEnsemble(_Copy(), views)(x), x, atol=1e-7)


def test_a_mirror_keeps_an_up_down_prior_and_rotations_break_it() -> None:
    x = np.zeros((1, 1, 16, 16), np.float32)
    ramp = _VerticalRamp()(x)
    np.testing.assert_allclose(GeometricEnsemble(_VerticalRamp(), VIEWS["+ left-right flip"])(x), ramp, atol=1e-6)
    assert np.abs(GeometricEnsemble(_VerticalRamp(), VIEWS["8 views"])(x) - ramp).max() > 0.2


def test_the_model_mean_is_the_mean_of_the_two_outputs() -> None:
    from benchmarks.geometric_ensemble import ModelMean

    x = np.random.default_rng(1).random((2, 1, 16, 16)).astype(np.float32)
    out = ModelMean(_Copy(), _VerticalRamp())(x)
    np.testing.assert_allclose(out, (x + _VerticalRamp()(x)) / 2, atol=1e-6)
    assert out.dtype == np.float32

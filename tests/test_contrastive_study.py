"""The contrastive-encoder study (benchmarks/hirise_contrastive.py): its input, loss and options."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from benchmarks.hirise_contrastive import INPUT, WINDOW, _duration, encoder_input, standardise


def test_encoder_input_is_the_window_averaged_and_standardised() -> None:
    rng = np.random.default_rng(0)
    w = rng.random((5, WINDOW, WINDOW)).astype(np.float32) * 0.3 + 0.2
    x = encoder_input(w)
    assert x.shape == (5, 1, INPUT, INPUT) and x.dtype == np.float32
    np.testing.assert_allclose(x.mean(axis=(1, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(x.std(axis=(1, 2, 3)), 1, atol=1e-4)
    # brightness and contrast are gone: a window and its gain/offset copy give the same input
    np.testing.assert_allclose(encoder_input(w * 0.5 + 0.1), x, atol=1e-4)
    # a flat window is not blown up (deviation floored at 2/255)
    assert np.abs(standardise(np.full((1, 8, 8), 0.4, np.float32))).max() < 1e-4


def test_the_loss_prefers_matching_views() -> None:
    torch = pytest.importorskip("torch")
    from benchmarks.hirise_contrastive import nt_xent

    z = torch.randn(32, 16, generator=torch.Generator().manual_seed(0))
    same = float(nt_xent(z, z + 0.01 * torch.randn_like(z)))
    shuffled = float(nt_xent(z, z[torch.randperm(32, generator=torch.Generator().manual_seed(1))]))
    assert same < 1.0 < shuffled


def test_the_time_budget_reads_units_and_refuses_nonsense() -> None:
    assert _duration("90m") == 5400 and _duration("2h") == 7200 and _duration("45") == 45
    with pytest.raises(argparse.ArgumentTypeError, match="not a duration"):
        _duration("soon")


def test_fixed_input_keeps_brightness_and_unknown_modes_are_refused() -> None:
    from benchmarks.hirise_contrastive import normalise

    w = np.full((2, 8, 8), 0.25, np.float32)
    w[1] = 0.75
    x = encoder_input(np.repeat(np.repeat(w, 8, axis=1), 8, axis=2), "fixed")
    assert x[0].max() == -1.0 and x[1].min() == 1.0  # (v - 0.5) / 0.25: the brighter window stays brighter
    with pytest.raises(ValueError, match="'window' or 'fixed'"):
        normalise(w, "per-frame")


def test_export_keeps_the_encoder_and_drops_what_only_training_needs(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from benchmarks.hirise_contrastive import build_encoder, checkpoint_path, main

    enc, head = build_encoder()
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"encoder": enc.state_dict(), "head": head.state_dict(), "optimizer": {"state": {}}, "step": 7,
                "history": [], "config": {"input_norm": "window"}, "numpy_rng": {}}, run / "checkpoint.pt")  # fmt: skip
    out = tmp_path / "enc.pt"
    assert main(["export", "--run", str(run), "--out", str(out)]) == 0
    ck = torch.load(out, weights_only=False)
    assert set(ck) == {"encoder", "config", "step", "history"}
    assert all(torch.equal(ck["encoder"][k], v) for k, v in enc.state_dict().items())
    assert checkpoint_path(run) == run / "checkpoint.pt" and checkpoint_path(out) == out
    with pytest.raises(SystemExit, match="no such checkpoint"):
        checkpoint_path(tmp_path / "missing")

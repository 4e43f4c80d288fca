"""The tail of the anomaly score survives int8 (issue 12): float score head, tail calibration, tail gate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from edgeae.export import calibration as cal  # noqa: E402
from edgeae.export.api import ExportConfig, export_checkpoint  # noqa: E402
from edgeae.export.parity import tail_failures, tail_metrics  # noqa: E402
from edgeae.firmware_sim.runtime import load_artifact  # noqa: E402

from edgeae.metadata import ModelMetadata  # noqa: E402


def test_tail_metrics_catch_a_saturated_score() -> None:
    rng = np.random.default_rng(0)
    frames = [rng.gamma(2.0, 100.0, 300) for _ in range(3)]
    same = tail_metrics(frames, [f * 1.0001 for f in frames], (np.arange(5.0), np.arange(5.0)))
    assert same["tail_spearman"] > 0.999 and same["overlap_16"] == 1.0 and same["overlap_64"] == 1.0
    assert same["ties"] == 0 and tail_failures(same, "int8") == []
    ceiling = [np.minimum(f, np.quantile(f, 0.9)) for f in frames]  # an int8 output clipped at its max
    bad = tail_metrics(frames, ceiling, (np.arange(5.0), np.minimum(np.arange(5.0), 2.0)))
    assert bad["ties"] > 0 and bad["overlap_16"] < 1.0
    names = " ".join(tail_failures(bad, "int8"))
    assert "ties" in names and "overlap_16" in names and "extremes_spearman" in names


def _tiny_vae() -> tuple[Any, ModelMetadata]:
    from edgeae.models.vae import VAE, VAEConfig

    torch.manual_seed(0)
    cfg = VAEConfig(channels=1, widths=(4, 8, 8, 8), latent=16, patch=64, score_lambda=5.0)
    meta = ModelMetadata(
        kind="vae", architecture=cfg.to_dict(), input_shape=(-1, 1, 64, 64), channels=1, score={"lambda": 5.0}
    )
    return VAE(cfg).eval(), meta


def test_int8_vae_score_head_stays_float(data_root: Path, tmp_path: Path) -> None:
    """Calibrated on plain patches only, an int8 score output would saturate at their maximum; the float
    head computes a(x) from dequantised x̂ and μ, so an all-white or checkerboard patch scores like fp32."""
    model, meta = _tiny_vae()
    calib = cal.model_patches(meta, cal.split_images(meta, "val"), 16, seed=0)
    test = cal.model_patches(meta, cal.split_images(meta, "test"), 12, seed=1)
    frames = [(f.name, cal.frame_patches(f, 1, 64)) for f in cal.split_images(meta, "test")[:3]]
    config = ExportConfig(formats=("onnx",), precisions=("int8",), n_calib=16, n_test=12, latency=False)
    report = export_checkpoint(model, meta, tmp_path, "vae", calib, test, config, tail_frames=frames)
    a = report.artifacts[0]
    assert a.parity["tail"]["passed"] and a.parity["tail"]["ties"] == 0, a.parity["tail"]
    tm = a.parity["tail_terms_max"]  # the terms-max flight score (edgeae.anomaly.terms) is gated too
    assert tm["passed"] and tm["ties"] == 0 and tm["overlap_16"] >= 0.85, tm
    md = (tmp_path / "parity.md").read_text()
    assert "Tail of the anomaly score" in md and "terms-max score" in md
    ext = cal.extreme_patches(1, 64)
    with torch.inference_mode():
        ref = model(torch.from_numpy(ext))["score"].numpy()
    got = load_artifact(a.path)(ext)["score"]
    assert got.max() > calib_max(model, calib)  # above anything the calibration saw: no ceiling
    np.testing.assert_allclose(got, ref, rtol=0.1)
    assert tail_metrics([ref], [got])["tail_spearman"] > 0.95


def calib_max(model: Any, calib: np.ndarray) -> float:
    with torch.inference_mode():
        return float(model(torch.from_numpy(calib))["score"].max())


def test_tail_calibration_set_holds_extremes_and_busy_patches(data_root: Path) -> None:
    _, meta = _tiny_vae()
    files = cal.split_images(meta, "val")
    plain = cal.model_patches(meta, files, 64, seed=0)
    tail = cal.model_patches(meta, files, 64, seed=0, tail=0.25)
    assert tail.shape == plain.shape == (64, 1, 64, 64)
    assert tail.max(axis=(1, 2, 3)).min() < 0.06 and (tail.min(axis=(1, 2, 3)) == 1.0).any()  # black, white
    assert tail.std(axis=(1, 2, 3)).max() > plain.std(axis=(1, 2, 3)).max()

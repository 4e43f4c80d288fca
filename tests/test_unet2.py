"""The second-generation reconstruction CAE (unet2): budgets, the pre-fill start and the do-no-harm gate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgeae.models.cae import CAEConfig, build, count_parameters  # noqa: E402
from edgeae.models.unet_cae import macs_per_pixel  # noqa: E402

FLIGHT = (8, 16, 32, 64, 64)
GROUND = (24, 48, 96, 192)


def _sparse(seed: int, flat: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.full((2, 3, 64, 64), 0.4) if flat else torch.rand(2, 3, 64, 64, generator=g) * 0.8 + 0.1
    keep = torch.rand(2, 1, 64, 64, generator=g) < 0.1
    return x * keep


def test_budgets() -> None:
    flight = build(CAEConfig(3, FLIGHT, 128, "unet2"))
    ground = build(CAEConfig(3, GROUND, 128, "unet2"))
    seed = build(CAEConfig(3, (16, 32, 64, 128), 128, "seed"))
    assert count_parameters(flight) <= 350_000
    assert count_parameters(ground) <= 3_000_000
    # the flight model's compute stays within 2× the seed CAE's (latency is measured in benchmarks/model_costs.py)
    assert macs_per_pixel(flight, 3) <= 2 * macs_per_pixel(seed, 3)


def test_untrained_model_is_the_normconv_prefill() -> None:
    model = build(CAEConfig(3, (4, 8), 64, "unet2")).eval()
    x = _sparse(0)
    with torch.no_grad():
        prefill, _ = model.fill(x)
        out = model(x)
    torch.testing.assert_close(out, prefill.clamp(0, 1))


def test_gate_keeps_the_prefill_where_the_known_samples_are_flat() -> None:
    model = build(CAEConfig(3, (4, 8), 64, "unet2", gate_tau=0.01)).eval()
    with torch.no_grad():
        for p in model.head.parameters():
            p.normal_(0, 0.5)  # a residual that would paint texture everywhere
        flat = _sparse(1, flat=True)
        prefill, _m = model.fill(flat)
        ungated = build(CAEConfig(3, (4, 8), 64, "unet2")).eval()
        ungated.load_state_dict(model.state_dict())
        assert float((ungated(flat) - prefill).abs().max()) > 0.1  # without the gate: texture in a flat region
        assert float((model(flat) - prefill).abs().max()) < 2e-3  # with it: the classical fill, within 0.5 DN
        busy = _sparse(2)
        assert float(model.gate(*model.fill(busy)).mean()) > 0.5  # texture passes the gate


def test_gate_validation() -> None:
    with pytest.raises(ValueError, match="unet2"):
        CAEConfig(3, (16, 32, 64, 128), 128, "unet", gate_tau=0.01)
    with pytest.raises(ValueError, match="gate_tau"):
        CAEConfig(3, (4, 8), 64, "unet2", gate_tau=-1.0)
    assert "gate_tau" not in CAEConfig(3).to_dict()  # older metadata unchanged


def test_with_gate_rewrites_metadata_only(tmp_path: Path) -> None:
    from edgeae import __version__
    from edgeae.checkpoint import load_checkpoint, save_checkpoint
    from edgeae.metadata import ModelMetadata
    from edgeae.train.gate import with_gate

    cfg = CAEConfig(3, (4, 8), 64, "unet2")
    model = build(cfg)
    meta = ModelMetadata(
        kind="cae", architecture=cfg.to_dict(), input_shape=(-1, 3, 64, 64), channels=3, mask={},
        training_data_hash="0" * 64, edgeae_version=__version__,
    )  # fmt: skip
    save_checkpoint(tmp_path / "a.pt", model, meta)
    with_gate(tmp_path / "a.pt", 0.004, tmp_path / "b.pt")
    b = load_checkpoint(tmp_path / "b.pt")
    assert b.metadata.architecture["gate_tau"] == 0.004 and b.model.gate_tau == 0.004
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), b.model.state_dict()[k].numpy())


def _gradient_frame(seed: int, keep: float = 0.1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A sky-like linear gradient (no texture) sampled at ``keep``: (truth, sparse input, mask)."""
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    truth = (0.3 + 0.004 * xx + 0.002 * yy).expand(1, 3, 64, 64).clone()
    truth[:, 1] += 0.05
    g = torch.Generator().manual_seed(seed)
    m = (torch.rand(1, 1, 64, 64, generator=g) < keep).float()
    return truth, truth * m, m


def test_plane_fill_is_exact_on_gradients_where_normconv_is_biased() -> None:
    from edgeae.models.unet_cae import NormConvFill, PlaneFill

    truth, x, m = _gradient_frame(3)
    plane, conf = PlaneFill()(x, m)
    zeroth, _ = NormConvFill(3)(x)
    hole = (m == 0).expand_as(truth)
    inner = torch.zeros_like(hole)
    inner[..., 8:-8, 8:-8] = True  # away from the border, where the window is one-sided
    err_plane = (plane - truth)[hole & inner].abs()
    err_zeroth = float((zeroth - truth)[hole & inner].abs().mean())
    assert float(err_plane.max()) < 1e-3  # a plane is fitted (exactly but for the small ridge on its slopes)
    assert err_zeroth > 10 * float(err_plane.mean())  # the zeroth-order fill is biased towards denser samples
    assert float(conf[..., 8:-8, 8:-8].min()) > 0.5  # ~10 samples under a sigma = 4 px window at keep 0.1


def test_plane_gate_falls_back_to_the_plane_fit_on_gradients() -> None:
    # an untrained model (residual 0) and a gate that trusts nothing: the output is the fallback fill
    model = build(CAEConfig(3, (4, 8), 64, "unet2", gate_tau=1.0, smooth_fill="plane")).eval()
    zeroth = build(CAEConfig(3, (4, 8), 64, "unet2", gate_tau=1.0)).eval()
    truth, x, m = _gradient_frame(4)
    with torch.no_grad():
        out, ref = model(x), zeroth(x)
    assert float((out - x)[(m > 0).expand_as(x)].abs().max()) < 1e-6  # known samples kept
    inner = (slice(None), slice(None), slice(8, -8), slice(8, -8))
    # the gradient, within 0.75 DN (the plane's confidence is < 1 where samples are few)
    assert float((out - truth)[inner].abs().max()) < 3e-3
    assert float((ref - truth)[inner].abs().mean()) > 3 * float((out - truth)[inner].abs().mean())
    assert CAEConfig.from_dict(model.config.to_dict()).smooth_fill == "plane"
    assert "smooth_fill" not in CAEConfig(3, (4, 8), 64, "unet2", gate_tau=0.01).to_dict()
    with pytest.raises(ValueError, match="smooth_fill"):
        CAEConfig(3, (4, 8), 64, "seed", smooth_fill="plane")


def test_collapse_check_sees_dead_relus(caplog: pytest.LogCaptureFixture) -> None:
    from edgeae.train.cae import _active_fraction

    torch.manual_seed(0)  # an unseeded init left this to chance: some inits start with <10% active features
    model = build(CAEConfig(1, (4, 8), 64, "unet2"))
    x = np.random.default_rng(0).random((4, 1, 64, 64)).astype(np.float32)
    assert _active_fraction(torch, model, x, torch.device("cpu"), False) > 0.1  # a fresh model is alive
    with torch.no_grad():
        model.up[-1][2].bias.fill_(-100.0)  # every last feature below zero: the ReLUs are dead
    assert _active_fraction(torch, model, x, torch.device("cpu"), False) == 0.0
    assert _active_fraction(torch, build(CAEConfig(1, (4, 8), 64, "seed")), x, torch.device("cpu"), False) is None


# --- unet2h: the half-resolution flight form ---------------------------------------------------------------


def test_half_resolution_flight_budget() -> None:
    half = build(CAEConfig(3, (16, 32, 64, 64), 128, "unet2h"))
    seed = build(CAEConfig(3, (16, 32, 64, 128), 128, "seed"))
    assert count_parameters(half) <= 350_000
    assert macs_per_pixel(half, 3) <= 1.25 * macs_per_pixel(seed, 3)
    # no learned layer sees the full-resolution frame: the first convolution reads 2×2 blocks of (fill, mask)
    assert half.down[0][0].in_channels == 16 and half.head.out_channels == 12


def test_pyramid_fill_keeps_samples_and_fills_like_normconv(moon: np.ndarray) -> None:
    from edgeae.masks import make_mask
    from edgeae.models.unet_cae import NormConvFill, PyramidFill

    img = torch.from_numpy(moon[100:228, 200:328].astype(np.float32) / 255.0)[None, None]
    known = torch.from_numpy(make_mask(11, (128, 128), 0.1))[None, None].float()
    x = img * known
    with torch.no_grad():
        pyr, m = PyramidFill(1)(x)
        ref, _ = NormConvFill(1)(x)
        flat, _ = PyramidFill(1)(torch.full((1, 1, 64, 64), 0.4) * known[..., :64, :64])
    torch.testing.assert_close(m, known)
    assert float((pyr - img)[known > 0].abs().max()) == 0.0  # known pixels pass through unchanged
    assert float((flat - 0.4).abs().max()) < 1e-5  # a constant is filled exactly
    hole = known == 0
    err_pyr = float((pyr - img)[hole].pow(2).mean())
    err_ref = float((ref - img)[hole].pow(2).mean())
    assert err_pyr < 1.1 * err_ref  # within 10% of the multi-scale fill's error in the holes (~0.4 dB)


@pytest.mark.parametrize("variant", ["unet2", "unet2h"])
def test_untrained_gated_variants_are_their_prefill(variant: str) -> None:
    model = build(CAEConfig(3, (4, 8), 64, variant, gate_tau=0.05)).eval()
    x = _sparse(5)
    with torch.no_grad():
        prefill, _ = model.fill(x)
        torch.testing.assert_close(model(x), prefill.clamp(0, 1))


def test_half_resolution_gate_keeps_the_prefill_where_flat() -> None:
    model = build(CAEConfig(3, (4, 8), 64, "unet2h", gate_tau=0.01)).eval()
    with torch.no_grad():
        for p in model.head.parameters():
            p.normal_(0, 0.5)
        flat = _sparse(1, flat=True)
        prefill, m = model.fill(flat)
        assert float((model(flat) - prefill).abs().max()) < 2e-3
        assert float(model.gate(*model.fill(_sparse(2))).mean()) > 0.5
        assert model.gate(prefill, m).shape == (2, 1, 64, 64)


def test_half_resolution_onnx_int8_export_matches_torch(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    import onnxruntime as ort
    from edgeae.export.graphs import graphs_for
    from edgeae.export.onnx_export import export_onnx
    from edgeae.export.quantize import quantize_onnx_int8

    from edgeae import __version__
    from edgeae.metadata import ModelMetadata

    cfg = CAEConfig(3, (4, 8), 64, "unet2h", gate_tau=0.02)
    torch.manual_seed(0)
    model = build(cfg).eval()
    with torch.no_grad():
        for p in model.head.parameters():
            p.normal_(0, 0.05)
    meta = ModelMetadata(
        kind="cae", architecture=cfg.to_dict(), input_shape=(-1, 3, 64, 64), channels=3, mask={},
        training_data_hash="0" * 64, edgeae_version=__version__,
    )  # fmt: skip
    graph = graphs_for(model, meta, ("cae",))[0]
    assert graph.learned_modules == ("down", "up", "head")  # pre-fill and gate stay float in int8 files
    x = _sparse(7).numpy()
    fp32 = export_onnx(graph, tmp_path / "h.fp32.onnx")
    int8 = quantize_onnx_int8(fp32, tmp_path / "h.int8.onnx", x, learned_modules=graph.learned_modules)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    for path, atol in ((fp32, 1e-5), (int8, 0.02)):
        out = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
        np.testing.assert_allclose(out, ref, atol=atol)


def test_tflite_export_of_gated_variants_is_refused_clearly(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from edgeae.export.api import ExportConfig, export_checkpoint

    from edgeae.metadata import ModelMetadata

    cfg = CAEConfig(3, (4, 8), 64, "unet2h")
    meta = ModelMetadata(kind="cae", architecture=cfg.to_dict(), input_shape=(-1, 3, 64, 64), channels=3)
    x = torch.cat([_sparse(8), _sparse(9), _sparse(10), _sparse(11)]).numpy()
    fast = {"n_calib": 8, "n_test": 8, "latency": False, "tail_check": False}
    with pytest.raises(ValueError, match="no TFLite export for a unet2h CAE"):
        export_checkpoint(build(cfg), meta, tmp_path, "h", x, x, ExportConfig(formats=("tflite",), **fast))
    report = export_checkpoint(build(cfg), meta, tmp_path, "h", x, x, ExportConfig(formats=("onnx", "tflite"), **fast))
    assert {a.format for a in report.artifacts} == {"onnx"}  # TFLite skipped with a warning, ONNX made

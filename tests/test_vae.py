"""The β-VAE: shapes, score formula, determinism, λ buffer, config round trip, checkpoint round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgeae.models.vae import VAE, VAEConfig, build_from_architecture, count_macs, count_parameters  # noqa: E402


def _model(seed: int = 0, **kw: object) -> VAE:
    torch.manual_seed(seed)
    return VAE(VAEConfig(**kw)).eval()  # type: ignore[arg-type]


def test_forward_shapes_and_score_formula() -> None:
    m = _model(widths=(8, 8, 8, 8), latent=16, score_lambda=0.5)
    x = torch.rand(3, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = m(x)
    assert set(out) == {"score", "x_hat", "mu"}
    assert out["score"].shape == (3,)
    assert out["x_hat"].shape == (3, 1, 64, 64)
    assert out["mu"].shape == (3, 16)
    assert float(out["x_hat"].min()) >= 0.0 and float(out["x_hat"].max()) <= 1.0
    want = ((x - out["x_hat"]) ** 2).sum(dim=(1, 2, 3)) + 0.5 * (out["mu"] ** 2).sum(dim=1)
    np.testing.assert_allclose(out["score"].numpy(), want.numpy(), rtol=1e-5)


def test_score_is_deterministic_in_eval() -> None:
    m = _model(widths=(8, 8, 8, 8), latent=16)
    x = torch.rand(4, 1, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        a = m(x)["score"].numpy()
        b = m(x)["score"].numpy()
        c = m(x[2:3])["score"].numpy()  # batch composition does not matter in eval
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(c, a[2:3], rtol=1e-5)


def test_set_lambda_changes_buffer_and_config() -> None:
    m = _model(widths=(8, 8, 8, 8), latent=16, score_lambda=0.0)
    x = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        s0 = m(x)
        m.set_lambda(2.0)
        s2 = m(x)
    np.testing.assert_allclose(
        s2["score"].numpy(), s0["score"].numpy() + 2.0 * (s0["mu"] ** 2).sum(1).numpy(), rtol=1e-5
    )
    assert "score_lambda" in m.state_dict()
    assert m.config.score_lambda == 2.0
    with pytest.raises(ValueError):
        m.set_lambda(-1.0)


def test_training_losses_backprop_and_rgb() -> None:
    m = VAE(VAEConfig(channels=3, widths=(4, 4, 4, 4), latent=8)).train()
    x = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    losses = m.training_losses(x, beta=0.25, generator=torch.Generator().manual_seed(0))
    assert torch.isclose(losses["loss"], losses["l1"] + 0.25 * losses["kl"])
    assert float(losses["kl"].detach()) >= 0.0
    losses["loss"].backward()
    assert m.fc_mu.weight.grad is not None


def test_config_validation_and_round_trip() -> None:
    cfg = VAEConfig(channels=3, widths=(8, 16, 32, 16), latent=64, score_lambda=0.1)
    assert VAEConfig.from_dict(cfg.to_dict()) == cfg
    assert build_from_architecture(cfg.to_dict()).config == cfg
    with pytest.raises(ValueError):
        VAEConfig(channels=2)
    with pytest.raises(ValueError):
        VAEConfig(patch=60)
    with pytest.raises(ValueError):
        VAEConfig(latent=0)


def test_default_size_fits_the_zoo_budget() -> None:
    cfg = VAEConfig()
    n = count_parameters(VAE(cfg))
    assert n == 477_985
    assert n * 4 < 2_000_000  # committed zoo weights must stay under 2 MB in fp32
    assert count_macs(cfg) == 14_270_464


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    from edgeae.checkpoint import load_checkpoint, save_checkpoint
    from edgeae.metadata import ModelMetadata

    m = _model(widths=(8, 8, 8, 8), latent=16)
    m.set_lambda(0.3)
    meta = ModelMetadata(
        kind="vae",
        architecture=m.config.to_dict(),
        input_shape=(-1, 1, 64, 64),
        channels=1,
        score={"lambda": 0.3, "threshold": 1.0},
    )
    p = save_checkpoint(tmp_path / "v.pt", m, meta)
    ck = load_checkpoint(p)
    x = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        np.testing.assert_array_equal(ck.model(x)["score"].numpy(), m(x)["score"].numpy())
    assert float(ck.model.score_lambda) == pytest.approx(0.3)

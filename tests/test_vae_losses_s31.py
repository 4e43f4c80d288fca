"""Session 31 audit, items 1 and 4: one VAE training loss (the model's, which the trainer calls), and randomness
that never comes from the global torch generator (the loss's ε, the U-Net MAC counter's input)."""

from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch")

from edgeae.models.vae import VAE, VAEConfig  # noqa: E402


def _vae() -> Any:
    torch.manual_seed(0)
    return VAE(VAEConfig(channels=1, widths=(4, 4, 4, 4), latent=8, patch=32)).train()


def test_training_losses_need_a_generator_and_never_move_the_global_rng() -> None:
    """``generator=None`` drew ε from the global torch RNG (the caller's state moved; two calls differed)."""
    m, x = _vae(), torch.rand(3, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    with pytest.raises(TypeError, match="generator"):
        m.training_losses(x)
    before = torch.get_rng_state()
    a = m.training_losses(x, 0.25, generator=torch.Generator().manual_seed(7))
    b = m.training_losses(x, 0.25, generator=torch.Generator().manual_seed(7))
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(a["loss"], b["loss"]) and a["loss"].dtype == torch.float32
    assert torch.equal(a["loss"], a["l1"] + 0.25 * a["kl"])


def test_the_trainer_backpropagates_the_models_own_training_losses(monkeypatch: pytest.MonkeyPatch) -> None:
    """The trainer had its own copy of the loss (``edgeae.train.vae._losses``): now it calls
    :meth:`VAE.training_losses` with ε from a CPU generator seeded by ``(seed, epoch, batch)``, bit for bit."""
    import contextlib

    from edgeae.train import vae as trainer

    m, x = _vae(), torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    calls: list[float] = []
    method = VAE.training_losses

    def spy(self: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        out = method(self, *args, **kwargs)
        calls.append(float(out["loss"].detach()))
        return out

    expected = m.training_losses(x, 0.25, generator=torch.Generator().manual_seed(1234))["loss"]
    monkeypatch.setattr(VAE, "training_losses", spy)
    got = trainer._losses(torch, m, x, 0.25, 1234, contextlib.nullcontext())
    assert calls == [float(got.detach())] and torch.equal(got, expected)
    got.backward()  # what the trainer does with it
    assert m.fc_logvar.weight.grad is not None


def test_macs_per_pixel_leaves_the_global_rng_alone() -> None:
    """``macs_per_pixel`` ran the model on ``torch.rand`` of the global generator (the caller's RNG moved)."""
    from edgeae.models.unet_cae import macs_per_pixel

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Conv2d(4, 2, 1))
    before = torch.get_rng_state()
    assert macs_per_pixel(model, 3, tile=16) == 3 * 9 * 4 + 4 * 2
    assert torch.equal(torch.get_rng_state(), before)


def test_training_losses_keep_a_float64_model_in_float64() -> None:
    """The float32 upcast is for bf16/half under autocast: a float64 model trains in float64 (it failed with a
    dtype mismatch after the losses were merged; review, session 31)."""
    import torch

    from edgeae.models.vae import VAE, VAEConfig

    model = VAE(VAEConfig(channels=1, widths=(4, 4, 4, 4), latent=8, patch=32)).double()
    x = torch.rand(2, 1, 32, 32, dtype=torch.float64)
    out = model.training_losses(x, generator=torch.Generator().manual_seed(0))
    assert out["loss"].dtype == torch.float64 and torch.isfinite(out["loss"])

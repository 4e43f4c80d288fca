"""The seed CAE: shapes, parameter counts, configurable widths, output range, rebuild from metadata."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from edgeae.models.cae import CAE, CAEConfig, build_from_architecture, count_parameters  # noqa: E402


def test_rgb_parameter_count_matches_the_paper_architecture() -> None:
    assert count_parameters(CAE(CAEConfig(channels=3))) == 342_339


def test_grey_parameter_count() -> None:
    # only the first conv (9*16 weights per input channel) and the last conv (9*16 weights + 1 bias per
    # output channel) depend on the channel count: 289 parameters per channel
    assert count_parameters(CAE(CAEConfig(channels=1))) == 342_339 - 2 * 289 == 341_761


@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_and_output_range(channels: int) -> None:
    torch.manual_seed(0)
    model = CAE(CAEConfig(channels=channels)).eval()
    x = torch.rand(2, channels, 128, 128)
    with torch.no_grad():
        z = model.encoder(x)
        y = model(x)
    assert z.shape == (2, 128, 8, 8)
    assert y.shape == x.shape
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0


def test_configurable_widths_make_smaller_models() -> None:
    cfg = CAEConfig(channels=3, widths=(8, 16, 32, 64))
    small = CAE(cfg)
    assert count_parameters(small) < count_parameters(CAE(CAEConfig())) / 3
    assert cfg.latent_shape == (64, 8, 8)
    three = CAEConfig(channels=1, widths=(4, 8, 16))
    assert three.latent_shape == (16, 16, 16)
    with torch.no_grad():
        assert CAE(three)(torch.zeros(1, 1, 128, 128)).shape == (1, 1, 128, 128)


def test_rebuild_from_architecture_dict() -> None:
    cfg = CAEConfig(channels=1, widths=(8, 16, 32, 64))
    model = build_from_architecture(cfg.to_dict())
    assert model.config == cfg
    assert CAEConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"channels": 2}, "channels"),
        ({"widths": ()}, "widths"),
        ({"widths": (8, 0)}, "widths"),
        ({"tile": 100}, "divisible"),
    ],
)
def test_invalid_configs_are_rejected(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CAEConfig(**kwargs)

"""The seed CAE of Scharf 2025, "The model is the message" (Icarus).

128×128 input; encoder 3×3 convs with 16, 32, 64, 128 filters, ReLU, each followed by 2×2 max pooling
(latent 8×8×128); decoder 3×3 convs 128, 64, 32, 16, ReLU, each followed by 2× nearest upsampling, then a
3×3 conv to the input channels and a sigmoid (output in [0, 1]). RGB: 342,339 parameters.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

VARIANTS = ("seed", "unet", "unet2", "unet2h")
GATED_VARIANTS = ("unet2", "unet2h")  # variants with a do-no-harm gate and a smooth fill


@dataclass(frozen=True)
class CAEConfig:
    """Architecture of a CAE. ``widths`` are the encoder widths; the decoder mirrors them."""

    channels: int = 3
    widths: tuple[int, ...] = (16, 32, 64, 128)
    tile: int = 128
    # "seed": the published CAE; "unet" / "unet2" / "unet2h": edgeae.models.unet_cae (pre-fill + U-Net
    # residual; "unet2h" runs its U-Net at half resolution, the flight-budget form)
    variant: str = "seed"
    gate_tau: float = 0.0  # unet2 only: do-no-harm gate on the residual (0 = off), see UNet2CAE.gate
    # unet2 with a gate only: the fill smooth regions fall back to ("normconv", or "plane": first-order
    # normalised convolution, exact on gradients; see docs/training.md for its measured trade-off)
    smooth_fill: str = "normconv"

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if not (math.isfinite(self.gate_tau) and self.gate_tau >= 0):
            raise ValueError(f"gate_tau must be finite and >= 0, got {self.gate_tau}")
        if self.gate_tau and self.variant not in GATED_VARIANTS:
            raise ValueError(f"gate_tau applies to the {GATED_VARIANTS} variants only, not {self.variant!r}")
        from edgeae.models.unet_cae import SMOOTH_FILLS

        if self.smooth_fill not in SMOOTH_FILLS:
            raise ValueError(f"smooth_fill must be one of {SMOOTH_FILLS}, got {self.smooth_fill!r}")
        if self.smooth_fill != "normconv" and self.variant not in GATED_VARIANTS:
            raise ValueError(f"smooth_fill applies to the {GATED_VARIANTS} variants only, not {self.variant!r}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {self.channels}")
        if not self.widths or any(int(w) <= 0 for w in self.widths):
            raise ValueError(f"widths must be positive integers, got {self.widths}")
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        if self.tile % (2 ** len(self.widths)) != 0:
            raise ValueError(f"tile {self.tile} must be divisible by 2**{len(self.widths)}")

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of the latent for one tile."""
        s = self.tile // 2 ** len(self.widths)
        return (self.widths[-1], s, s)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["widths"] = list(self.widths)
        if not self.gate_tau:
            del d["gate_tau"]  # older artifacts' metadata stays byte-identical
        if self.smooth_fill == "normconv":
            del d["smooth_fill"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CAEConfig:
        return cls(
            channels=int(d["channels"]),
            widths=tuple(d["widths"]),
            tile=int(d.get("tile", 128)),
            variant=str(d.get("variant", "seed")),
            gate_tau=float(d.get("gate_tau", 0.0)),
            smooth_fill=str(d.get("smooth_fill", "normconv")),
        )


def _conv(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, padding=1)


class CAEEncoder(nn.Module):
    """Pixels (N, C, H, W) in [0, 1] -> latent (N, widths[-1], H/16, W/16)."""

    def __init__(self, config: CAEConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = config.channels
        for w in config.widths:
            layers += [_conv(cin, w), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            cin = w
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class CAEDecoder(nn.Module):
    """Latent -> pixels in [0, 1]."""

    def __init__(self, config: CAEConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = config.widths[-1]
        for w in reversed(config.widths):
            layers += [_conv(cin, w), nn.ReLU(inplace=True), nn.Upsample(scale_factor=2, mode="nearest")]
            cin = w
        layers += [_conv(cin, config.channels), nn.Sigmoid()]
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z)


class CAE(nn.Module):
    """Convolutional autoencoder: ``forward(x) -> x_hat`` with x, x_hat of shape (N, C, H, W) in [0, 1].

    H and W must be multiples of 16 (128 in training). Masked pixels are given as zeros, as in the paper.
    """

    def __init__(self, config: CAEConfig | None = None) -> None:
        super().__init__()
        self.config = config or CAEConfig()
        self.encoder = CAEEncoder(self.config)
        self.decoder = CAEDecoder(self.config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def build(config: CAEConfig) -> nn.Module:
    """The module a config describes: the seed CAE, or the U-Net variant for ground reconstruction."""
    if config.variant == "unet":
        from edgeae.models.unet_cae import UNetCAE

        model: nn.Module = UNetCAE(config.channels, config.widths)
        model.config = config  # type: ignore[assignment]
        return model
    if config.variant in GATED_VARIANTS:
        from edgeae.models.unet_cae import UNet2CAE, UNet2HalfCAE

        cls = UNet2HalfCAE if config.variant == "unet2h" else UNet2CAE
        model = cls(config.channels, config.widths, config.gate_tau, config.smooth_fill)
        model.config = config  # type: ignore[assignment]
        return model
    return CAE(config)


def build_from_architecture(architecture: dict[str, Any]) -> nn.Module:
    """Build a CAE from the ``architecture`` dict stored in model metadata."""
    return build(CAEConfig.from_dict(architecture))

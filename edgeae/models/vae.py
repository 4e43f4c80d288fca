"""The convolutional β-VAE of Lesnikowski, Bickel & Angerhausen 2024 (JSTARS) for patch anomaly detection.

Encoder: four 3×3 convolutions with stride 2, each followed by batch-norm and ReLU (64×64 -> 4×4), then
fully connected layers to μ and log σ² (latent size 256 by default). Decoder (mirrored): a fully
connected layer back to the 4×4 grid, then four stages of 2× nearest upsampling + 3×3 convolution
(batch-norm and ReLU, the last a sigmoid), which exports to ONNX and TFLite without transposed convolutions.

The anomaly score is computed inside the module so that every exported graph carries it::

    a(x) = Σ_pixels (x − x̂)²  +  λ · Σ_latent μ²

with x̂ decoded from μ (deterministic, no sampling at evaluation) and λ stored as a buffer. The squared
error is a **sum** over channels and pixels (not a mean): for a 64×64 grey patch it is 4096 × the MSE.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from .subpixel import fold_nearest_upsampling


@dataclass(frozen=True)
class VAEConfig:
    """Architecture of a β-VAE. ``widths`` are the four encoder conv widths; the decoder mirrors them.

    ``score_lambda`` is the weight λ of ||μ||² in the anomaly score (tuned after training, stored in the
    checkpoint metadata and in a buffer of the module).
    """

    channels: int = 1
    widths: tuple[int, ...] = (16, 32, 64, 32)
    latent: int = 256
    patch: int = 64
    score_lambda: float = 1.0

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {self.channels}")
        if not self.widths or any(int(w) <= 0 for w in self.widths):
            raise ValueError(f"widths must be positive integers, got {self.widths}")
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        if self.latent <= 0:
            raise ValueError(f"latent size must be positive, got {self.latent}")
        if self.patch % (2 ** len(self.widths)) != 0 or self.patch < 2 ** len(self.widths):
            raise ValueError(f"patch {self.patch} must be a positive multiple of 2**{len(self.widths)}")
        if not self.score_lambda >= 0.0:
            raise ValueError(f"score_lambda must be >= 0, got {self.score_lambda}")

    @property
    def grid(self) -> int:
        """Side of the encoder's last feature map (4 for 64×64 patches and four stride-2 convs)."""
        return self.patch // 2 ** len(self.widths)

    @property
    def flat(self) -> int:
        """Size of the flattened encoder feature map feeding the fc layers."""
        return self.widths[-1] * self.grid * self.grid

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VAEConfig:
        return cls(
            channels=int(d.get("channels", 1)),
            widths=tuple(int(w) for w in d.get("widths", (16, 32, 64, 32))),
            latent=int(d.get("latent", 256)),
            patch=int(d.get("patch", 64)),
            score_lambda=float(d.get("score_lambda", 1.0)),
        )


class ScoreHead(nn.Module):
    """a(x) = Σ (x − x̂)² + λ·Σ μ² per patch, from the decoder's x̂ and the encoder's μ.

    A module of its own (no parameters, nothing in the state dict) so exporters can keep it in float32 when
    the rest of the graph is quantised: an int8 score output saturates at its calibrated maximum and ties the
    very patches that matter (the tail), while the score computed in float from dequantised x̂ and μ keeps
    the order of the fp32 model over its whole range.
    """

    def forward(self, x: torch.Tensor, x_hat: torch.Tensor, mu: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        rec = (x - x_hat).pow(2).flatten(1).sum(dim=1)
        return rec + lam * mu.pow(2).sum(dim=1)


#: module names (within :class:`VAE`) that exporters must leave unquantised
FLOAT_MODULES = ("score_head",)


def _down(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


def _up(cin: int, cout: int) -> list[nn.Module]:
    return [
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
    ]


def _is_nearest2x(layer: nn.Module) -> bool:
    return (
        isinstance(layer, nn.Upsample)
        and layer.mode == "nearest"
        and layer.size is None
        and layer.scale_factor in (2, 2.0, (2, 2), (2.0, 2.0))
    )


def _nearest2x(h: torch.Tensor) -> torch.Tensor:
    """2x nearest upsampling of (N, C, H, W) as a broadcast copy: the values of ``nn.Upsample(scale_factor=2)``
    bit for bit, 2x faster than its kernel on the CPU (it was 22 % of ``edgeae score`` with a VAE)."""
    n, c, hh, ww = h.shape
    return h[:, :, :, None, :, None].expand(n, c, hh, 2, ww, 2).reshape(n, c, 2 * hh, 2 * ww)


def _eager_inference(h: torch.Tensor) -> bool:
    """Whether :meth:`VAE.decode` may take its fast path: a plain contiguous tensor run eagerly without
    gradients. Exporters and tracers (ONNX, torch.export, dynamo, jit, fx) see the modules as they are, so an
    exported graph keeps its resize (or the folded sub-pixel form); training keeps the upsampling's own
    backward."""
    return (
        type(h) is torch.Tensor
        and h.is_contiguous()
        and not (h.requires_grad and torch.is_grad_enabled())
        and not torch.jit.is_tracing()
        and not torch.jit.is_scripting()
        and not torch.onnx.is_in_onnx_export()
        and not torch.compiler.is_exporting()
        and not torch.compiler.is_compiling()
    )


class VAE(nn.Module):
    """β-VAE on (N, C, P, P) patches in [0, 1].

    ``forward(x)`` returns ``{"score": (N,), "x_hat": (N, C, P, P), "mu": (N, D)}`` (deterministic).
    Training uses :meth:`training_losses`, which samples z = μ + σ·ε (reparameterisation trick, ε from a generator).
    """

    score_lambda: torch.Tensor

    def __init__(self, config: VAEConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or VAEConfig()
        layers: list[nn.Module] = []
        cin = c.channels
        for w in c.widths:
            layers += _down(cin, w)
            cin = w
        self.encoder = nn.Sequential(*layers, nn.Flatten())
        self.fc_mu = nn.Linear(c.flat, c.latent)
        self.fc_logvar = nn.Linear(c.flat, c.latent)
        self.fc_dec = nn.Linear(c.latent, c.flat)
        dec: list[nn.Module] = []
        rev = list(reversed(c.widths))
        for cin, cout in itertools.pairwise(rev):
            dec += _up(cin, cout)
        dec += [
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(rev[-1], c.channels, 3, padding=1),
            nn.Sigmoid(),
        ]
        self.decoder = nn.Sequential(*dec)
        self.register_buffer("score_lambda", torch.tensor(float(c.score_lambda)))
        self.score_head = ScoreHead()

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Patches -> (μ, log σ²), each (N, D)."""
        h = self.encoder(x)
        return self.fc_mu(h), self.fc_logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latent (N, D) -> patches (N, C, P, P) in [0, 1]."""
        c = self.config
        h = F.relu(self.fc_dec(z)).reshape(-1, c.widths[-1], c.grid, c.grid)
        if not _eager_inference(h):
            out: torch.Tensor = self.decoder(h)
            return out
        for layer in self.decoder:  # the same modules, each 2x nearest upsampling as a copy (bit-identical)
            h = _nearest2x(h) if _is_nearest2x(layer) else layer(h)
        return h

    def set_lambda(self, value: float) -> None:
        """Set λ in the anomaly score (the buffer that exported graphs carry)."""
        if not value >= 0.0:
            raise ValueError(f"λ must be >= 0, got {value}")
        self.score_lambda.fill_(float(value))
        self.config = VAEConfig(**{**self.config.to_dict(), "score_lambda": float(value)})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        mu, _ = self.encode(x)
        x_hat = self.decode(mu)
        return {"score": self.score_head(x, x_hat, mu, self.score_lambda), "x_hat": x_hat, "mu": mu}

    def training_losses(
        self,
        x: torch.Tensor,
        beta: float = 0.25,
        *,
        generator: torch.Generator,
        autocast: contextlib.AbstractContextManager[Any] | None = None,
    ) -> dict[str, torch.Tensor]:
        """L1 reconstruction (sum over pixels) + β·KL (sum over latent), both averaged over the batch: the loss
        the trainer (:mod:`edgeae.train.vae`) backpropagates.

        ε of z = μ + σ·ε is drawn from ``generator`` (on its device, then moved to μ's), never the global RNG.
        The network runs under ``autocast`` (e.g. bfloat16; none by default), the loss in float32 (float64 for a
        float64 model). Returns
        ``{"loss", "l1", "kl"}``; ``loss`` is what to backpropagate.
        """
        ctx = contextlib.nullcontext() if autocast is None else autocast
        with ctx:
            mu, logvar = self.encode(x)
        dt = torch.promote_types(mu.dtype, torch.float32)  # bf16/half under autocast up to float32; float64 kept
        mu, logvar = mu.to(dt), logvar.to(dt).clamp(-10.0, 10.0)
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=generator.device).to(mu.device)
        z = mu + torch.exp(0.5 * logvar) * eps
        with ctx:
            x_hat = self.decode(z)
        l1 = (x.to(dt) - x_hat.to(dt)).abs().flatten(1).sum(dim=1).mean()
        kl = (-0.5 * (1.0 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)).mean()
        return {"loss": l1 + beta * kl, "l1": l1, "kl": kl}


def export_form(model: VAE) -> VAE:
    """A copy of ``model`` (eval mode) whose decoder runs each upsample → conv → batch-norm → activation as one exact
    sub-pixel convolution (:mod:`edgeae.models.subpixel`): the graph exporters convert; the original stays the
    reference that parity is checked against."""
    form = copy.deepcopy(model).eval()
    form.decoder, _ = fold_nearest_upsampling(form.decoder)
    return form


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_macs(config: VAEConfig) -> int:
    """Multiply-accumulates of one forward pass (eval: encoder, μ head, decoder) for one patch."""
    c = config
    macs = 0
    side, cin = c.patch, c.channels
    for w in c.widths:
        side //= 2
        macs += side * side * w * cin * 9
        cin = w
    macs += c.flat * c.latent  # μ head (log σ² is unused at evaluation)
    macs += c.latent * c.flat
    rev = list(reversed(c.widths))
    side = c.grid
    for cin, cout in zip(rev, [*rev[1:], c.channels], strict=True):
        side *= 2
        macs += side * side * cout * cin * 9
    return macs


def build_from_architecture(architecture: dict[str, Any]) -> VAE:
    """Build a VAE from the ``architecture`` dict stored in model metadata."""
    return VAE(VAEConfig.from_dict(architecture))

"""An exact, faster export form of "2× nearest upsampling, then a 3×3 convolution": a sub-pixel convolution.

Upsampling by 2 (nearest) and convolving with a 3×3 kernel (stride 1, zero padding 1) gives, at each of the four
output phases (a, b) ∈ {0, 1}², a 2×2 convolution of the *low-resolution* input whose taps are sums of the
original taps (rows: phase 0 reads offsets (−1, 0) with taps (w₀, w₁ + w₂), phase 1 reads (0, +1) with
(w₀ + w₁, w₂); columns alike). Zero padding at high resolution is zero padding at low resolution, so the
identity holds at the borders too. :class:`SubpixelConv2d` computes all four phases with one 3×3 convolution
at low resolution (4 × C_out channels, each phase's unused row and column of taps zero), applies the
following batch-norm (folded into the weights) and activation (ReLU or sigmoid commute with the shuffle), and
interleaves the phases with one reshape-transpose-reshape ("depth to space") written channels-last, which
litert-torch converts to a single rank-6 TRANSPOSE.

Why it matters: LiteRT runs RESIZE_NEAREST_NEIGHBOR with its reference kernel outside the XNNPACK delegate,
which splits the VAE's graph into five delegate partitions with float/int8 hand-offs between them. The
sub-pixel form delegates as one partition. Measured (``python -m benchmarks --only vae_form``, both forms of
the zoo VAEs, int8, 1 thread): 2.5-2.8× less CPU per 64 × 64 patch in LiteRT and onnxruntime (docs/export.md).

The original module stays the reference: exporters convert :func:`fold_nearest_upsampling`'s output and check
parity against the original (equal to float rounding, ~1e-7 on x̂; tested).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

#: activations that commute with the phase interleaving (elementwise) and are folded into the block
ACTIVATIONS = (nn.ReLU, nn.Sigmoid)


def _two_taps(w: torch.Tensor, phase: int, axis: int) -> torch.Tensor:
    """3 taps of a nearest-upsampled axis -> the 2 low-resolution taps of output ``phase`` (0 or 1)."""
    w0, w1, w2 = w.unbind(axis)
    taps = (w0, w1 + w2) if phase == 0 else (w0 + w1, w2)
    return torch.stack(taps, axis)


def is_foldable(up: nn.Module, conv: nn.Module) -> bool:
    """Whether ``up`` → ``conv`` is a 2× nearest upsampling followed by a plain 3×3, stride-1, pad-1 convolution."""
    return (
        isinstance(up, nn.Upsample)
        and up.mode == "nearest"
        and up.size is None
        and up.scale_factor in (2, 2.0, (2, 2), (2.0, 2.0))
        and isinstance(conv, nn.Conv2d)
        and tuple(conv.kernel_size) == (3, 3)
        and tuple(conv.stride) == (1, 1)
        and tuple(conv.dilation) == (1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
        and tuple(conv.padding) == (1, 1)
    )


class SubpixelConv2d(nn.Module):
    """``act(bn(conv3x3(upsample2_nearest(x))))`` computed at low resolution, then interleaved (exact)."""

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d | None = None, act: nn.Module | None = None) -> None:
        super().__init__()
        w = conv.weight.detach().double()  # (O, I, 3, 3)
        out_ch, in_ch = int(w.shape[0]), int(w.shape[1])
        b = conv.bias.detach().double() if conv.bias is not None else torch.zeros(out_ch, dtype=torch.float64)
        if bn is not None:  # eval-mode batch-norm folded into the weights
            assert bn.running_var is not None and bn.running_mean is not None
            scale = torch.ones(out_ch, dtype=torch.float64) if bn.weight is None else bn.weight.detach().double()
            scale = scale / torch.sqrt(bn.running_var.double() + bn.eps)
            shift = torch.zeros(out_ch, dtype=torch.float64) if bn.bias is None else bn.bias.detach().double()
            w = w * scale[:, None, None, None]
            b = (b - bn.running_mean.double()) * scale + shift
        k = torch.zeros(2, 2, out_ch, in_ch, 3, 3, dtype=torch.float64)
        for a in (0, 1):
            for c in (0, 1):  # phase (a, c) reads low-res rows a-1..a and columns c-1..c of a 3×3 window
                k[a, c, :, :, a : a + 2, c : c + 2] = _two_taps(_two_taps(w, a, 2), c, 3)
        self.out_channels = out_ch
        self.conv = nn.Conv2d(in_ch, 4 * out_ch, 3, padding=1)  # channels phase-major: (a, c, out)
        self.conv.weight.data = k.reshape(4 * out_ch, in_ch, 3, 3).to(conv.weight.dtype)
        assert self.conv.bias is not None
        self.conv.bias.data = b.repeat(4).to(conv.weight.dtype)
        self.act = act if act is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.conv(x))
        n, _, h, w = y.shape
        o = self.out_channels
        # channels-last depth-to-space: (n, h, w, a, c, o) -> (n, h, a, w, c, o) -> (n, 2h, 2w, o)
        y = y.permute(0, 2, 3, 1).reshape(n, h, w, 2, 2, o).permute(0, 1, 3, 2, 4, 5).reshape(n, 2 * h, 2 * w, o)
        return y.permute(0, 3, 1, 2)


def fold_nearest_upsampling(seq: nn.Sequential) -> tuple[nn.Sequential, int]:
    """A copy of ``seq`` (eval mode) with every foldable upsample → conv [→ batch-norm] [→ ReLU/sigmoid] run as a
    :class:`SubpixelConv2d`; returns (new sequential, number of blocks folded)."""
    mods = list(copy.deepcopy(seq).eval())
    out: list[nn.Module] = []
    folded = 0
    i = 0
    while i < len(mods):
        if i + 1 < len(mods) and is_foldable(mods[i], mods[i + 1]):
            conv = mods[i + 1]
            assert isinstance(conv, nn.Conv2d)
            j = i + 2
            bn = None
            candidate = mods[j] if j < len(mods) else None
            if isinstance(candidate, nn.BatchNorm2d) and candidate.track_running_stats:
                bn = candidate
                j += 1
            act = None
            if j < len(mods) and isinstance(mods[j], ACTIVATIONS):
                act = mods[j]
                j += 1
            out.append(SubpixelConv2d(conv, bn, act))
            folded += 1
            i = j
        else:
            out.append(mods[i])
            i += 1
    return nn.Sequential(*out).eval(), folded

"""Operation counts computed from a model's layers (multiply-accumulates of convs and linear layers)."""

from __future__ import annotations

from typing import Any


def count_macs(model: Any, input_shape: tuple[int, ...]) -> int:
    """MACs for one forward pass of a batch-1 input, from Conv2d/ConvTranspose2d/Linear layers.

    Pooling, activations and upsampling are not counted (they are not multiply-accumulates). One MAC is
    two operations (a multiply and an add) when converting to FLOP/s.
    """
    import torch
    from torch import nn

    total = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            total += output.numel() * (module.in_channels // module.groups) * k
        elif isinstance(module, nn.ConvTranspose2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            total += inputs[0].numel() * module.out_channels * k // module.groups
        elif isinstance(module, nn.Linear):
            total += output.numel() * module.in_features

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear)
    ]
    try:
        with torch.inference_mode():
            model.eval()(torch.zeros((1, *input_shape[1:]), dtype=torch.float32))
    finally:
        for h in handles:
            h.remove()
    return int(total)


def layer_macs(model: Any, input_shape: tuple[int, ...]) -> list[tuple[str, str, int]]:
    """``(layer name, layer type, MACs)`` per Conv2d/ConvTranspose2d/Linear layer for one batch-1 forward pass,
    in execution order: where a model's arithmetic goes (the counts :func:`count_macs` sums)."""
    import torch
    from torch import nn

    rows: list[tuple[str, str, int]] = []

    def hook(name: str) -> Any:
        def inner(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            k = module.kernel_size[0] * module.kernel_size[1] if hasattr(module, "kernel_size") else 1
            if isinstance(module, nn.Conv2d):
                macs = output.numel() * (module.in_channels // module.groups) * k
            elif isinstance(module, nn.ConvTranspose2d):
                macs = inputs[0].numel() * module.out_channels * k // module.groups
            else:
                macs = output.numel() * module.in_features
            rows.append((name, type(module).__name__, int(macs)))

        return inner

    handles = [
        m.register_forward_hook(hook(n))
        for n, m in model.named_modules()
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear)
    ]
    try:
        with torch.inference_mode():
            model.eval()(torch.zeros((1, *input_shape[1:]), dtype=torch.float32))
    finally:
        for h in handles:
            h.remove()
    return rows

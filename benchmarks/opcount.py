"""Operation counts computed from a model's layers (multiply-accumulates of convs and linear layers)."""

from __future__ import annotations

from typing import Any


def _macs(module: Any, inputs: tuple[Any, ...], output: Any) -> int:
    """MACs of one call of a Conv2d / ConvTranspose2d / Linear layer (0 for any other layer)."""
    from torch import nn

    if isinstance(module, nn.Conv2d):
        k = module.kernel_size[0] * module.kernel_size[1]
        return int(output.numel() * (module.in_channels // module.groups) * k)
    if isinstance(module, nn.ConvTranspose2d):
        k = module.kernel_size[0] * module.kernel_size[1]
        return int(inputs[0].numel() * module.out_channels * k // module.groups)
    if isinstance(module, nn.Linear):
        return int(output.numel() * module.in_features)
    return 0


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
        total += _macs(module, inputs, output)

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
            rows.append((name, type(module).__name__, _macs(module, inputs, output)))

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

"""What a training run needs in memory, estimated before anything is read or written: the decoded master images
(from their headers), the crops of an epoch and of validation, and the model (its weights, gradients, Adam's two
moments and a batch's activations). A run that would not fit is refused with the estimate
(:class:`~edgeae.train.common.MemoryEstimateError`), not killed by the kernel or a numpy allocation error hours in.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

ADAM_COPIES = 4  # float32 weights, their gradients and Adam's two moments
ACTIVATION_COPIES = 2  # a layer's output kept for the backward pass, and its gradient there
_LIST = 10  # files named in a message, then a count


@dataclass(frozen=True)
class Need:
    """One part of a run's memory: ``count`` things (crops, files, parameters) taking ``nbytes`` in all."""

    count: int
    nbytes: int
    what: str  # e.g. "files, decoded as float32"


def read_headers(files: Sequence[str | os.PathLike[str]]) -> list[tuple[int, int, int]]:
    """(H, W, C) of every file from its header alone (:func:`edgeae.imageio.image_shape`). Every file whose header
    cannot be read is named in one :class:`~edgeae._headers.ImageReadError` (at most ten, then a count), not the
    first one alone: a folder with several bad images is fixed in one go."""
    from edgeae._headers import ImageReadError
    from edgeae.imageio import image_shape

    shapes, bad = [], []
    for f in files:
        try:
            shapes.append(image_shape(f))
        except ImageReadError as exc:
            bad.append(str(exc))
    if bad:
        more = f"; and {len(bad) - _LIST} more" if len(bad) > _LIST else ""
        raise ImageReadError(
            f"{len(bad)} of {len(files)} image files cannot be read: {'; '.join(bad[:_LIST])}{more}; fix or remove them"
        )
    return shapes


def image_bytes(shapes: Sequence[tuple[int, int, int]], channels: int) -> Need:
    """Bytes the master images of ``shapes`` (:func:`read_headers`) take once read
    (:func:`edgeae.train.crops.load_masters`): float32 pixels of ``channels`` channels and a bool validity mask per
    pixel, plus the largest image's decode (its stored samples, up to 16 bits, and their float32 copy)."""
    total = sum(h * w * (4 * channels + 1) for h, w, _ in shapes)
    peak = max((h * w * c * (2 + 4) for h, w, c in shapes), default=0)
    return Need(len(shapes), total + peak, "files, decoded as float32")


def model_bytes(build: Callable[[], Any], input_shape: tuple[int, ...], batch: int, forward: Any = None) -> Need:
    """Bytes the model ``build()`` takes in training: ``ADAM_COPIES`` float32 copies of its parameters plus
    ``ACTIVATION_COPIES`` of every layer's output for a batch of ``batch`` inputs of ``input_shape`` (C, H, W).
    The model is built and run on torch's ``meta`` device: nothing is allocated, however large it would be.
    ``forward(model, x)``: how to run it (default ``model(x)``)."""
    from edgeae._optional import require

    torch = require("torch")
    with torch.device("meta"):
        model = build()
    params = sum(int(p.numel()) for p in model.parameters())
    outputs = [0]

    def count(module: Any, inputs: Any, output: Any) -> None:
        for t in output if isinstance(output, (tuple, list)) else [output]:
            if torch.is_tensor(t):
                outputs[0] += int(t.numel())

    hooks = [m.register_forward_hook(count) for m in model.modules() if not list(m.children())]
    try:
        x = torch.empty((1, *input_shape), device="meta")
        (forward or (lambda m, t: m(t)))(model, x)
    except Exception:  # an op without a meta kernel: a rough figure from the input instead
        outputs[0] = 0
    finally:
        for hk in hooks:
            hk.remove()
    per_sample = outputs[0] or 8 * int(torch.Size(input_shape).numel())
    nbytes = 4 * (ADAM_COPIES * params + ACTIVATION_COPIES * per_sample * batch)
    return Need(params, nbytes, "parameters, with gradients, Adam state and a batch's activations")


def check_run_memory(
    crops: dict[str, tuple[int, int]],
    batch: tuple[int, int],
    images: Need | None = None,
    model: Need | None = None,
    model_flags: str = "--widths",
) -> None:
    """Refuse, before anything is read or written, a run whose arrays need more memory than is available
    (:func:`edgeae.ground.limits.available_memory`; not checked where it is unknown).

    ``crops``: config field -> (number of crops, bytes per crop); ``batch``: the run's (``crops``, ``batch_size``):
    where ``batch_size`` is the larger an epoch trains one batch of it. ``images``, ``model``: :func:`image_bytes`,
    :func:`model_bytes` (``model_flags``: the flags that make it smaller). The message names every part, and what
    to change for the largest."""
    from edgeae.ground import limits
    from edgeae.train.common import MemoryEstimateError

    parts: dict[str, tuple[str, int]] = {}
    raised = batch[1] > batch[0]
    for name, (n, size) in crops.items():
        why = f": {batch[0]:,} raised to one batch of batch_size {batch[1]:,}" if name == "crops" and raised else ""
        parts[name] = (f"{name} {n:,} ({n * size / 2**30:.1f} GiB{why})", n * size)
    if images is not None:
        parts["images"] = (f"images {images.count:,} {images.what} ({images.nbytes / 2**30:.1f} GiB)", images.nbytes)
    if model is not None:
        parts["model"] = (f"model {model.count:,} {model.what} ({model.nbytes / 2**30:.1f} GiB)", model.nbytes)
    need = sum(b for _, b in parts.values())
    have = limits.available_memory()
    if have is None or need <= have:
        return
    largest = max(parts, key=lambda k: parts[k][1])
    fix = {
        "images": "train on fewer or smaller images (each is kept decoded, 4 bytes a sample, for the whole run)",
        "model": f"a smaller model ({model_flags}) or a smaller --batch-size",
        "crops": "lower batch_size (--batch-size): an epoch trains at least one whole batch"
        if raised
        else "lower the number of crops (--crops, --val-crops)",
    }.get(largest, "lower the number of crops (--crops, --val-crops)")
    raise MemoryEstimateError(
        f"this run needs about {need / 2**30:.1f} GiB of memory ({', '.join(t for t, _ in parts.values())}) but "
        f"{have / 2**30:.1f} GiB is available: {fix}"
    )


def check_device_memory(device: Any, model: Need) -> None:
    """On CUDA, refuse a model whose training state (:func:`model_bytes`) exceeds the device's free memory."""
    if getattr(device, "type", None) != "cuda":
        return
    from edgeae._optional import require
    from edgeae.train.common import MemoryEstimateError

    torch = require("torch")
    try:
        free, _total = torch.cuda.mem_get_info(device)
    except (RuntimeError, AssertionError):  # no driver answer: not checked
        return
    if model.nbytes > free:
        raise MemoryEstimateError(
            f"the model needs about {model.nbytes / 2**30:.1f} GiB on {device} (model {model.count:,} {model.what}) "
            f"but {free / 2**30:.1f} GiB is free there: a smaller model or a smaller --batch-size"
        )

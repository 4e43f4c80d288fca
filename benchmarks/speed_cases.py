"""The cases of the speed suite, shared by ``benchmarks/test_speed.py`` (pytest-benchmark, one case after
another) and ``benchmarks/runtime_ratios.py`` (interleaved rounds): which zoo model each kind runs, the
runtimes, batches and thread counts, one cached predictor per (kind, runtime, threads), the NCHW item shape
and the operation count."""

from __future__ import annotations

from typing import Any

# model kind -> zoo model (the seed CAE: the model a spacecraft would carry)
MODELS = {"cae": ("rover-rgb-gtcae",), "cae-encoder": ("rover-rgb-gtcae",), "vae": ("orbital-gray-vae",)}
RUNTIMES = ("torch-fp32", "onnx-fp32", "onnx-int8", "tflite-fp32", "tflite-int8")
BATCHES = (1, 32)
THREADS = (1, 2)


_cache: dict[tuple[str, str, int], Any] = {}


def case_predictor(kind: str, runtime: str, threads: int) -> Any:
    key = (kind, runtime, threads)
    if key not in _cache:
        if runtime == "torch-fp32":
            import torch

            from edgeae.checkpoint import load_checkpoint
            from edgeae.predictor import TorchPredictor, resolve_model_path

            torch.set_num_threads(threads)
            ck = load_checkpoint(resolve_model_path(MODELS[kind][0]))
            module = ck.model.encoder if kind == "cae-encoder" else ck.model
            _cache[key] = TorchPredictor(module, ck.metadata.replace(kind=kind), source=f"zoo:{kind}")
        else:
            from edgeae.firmware_sim.runtime import load_artifact

            from benchmarks.artifacts import zoo_artifact

            fmt, precision = runtime.split("-")
            _cache[key] = load_artifact(zoo_artifact(MODELS[kind][0], kind, fmt, precision), threads=threads)
    return _cache[key]


def item_shape(meta: Any) -> tuple[int, int, int]:
    """(C, H, W) of one input item: the calling convention of every predictor is NCHW (an NHWC artifact's
    wrapper transposes), so an NHWC file's ``input_shape`` must not be used as is."""
    s = tuple(int(v) for v in meta.input_shape)
    return (s[1], s[2], s[3]) if meta.layout == "NCHW" else (s[3], s[1], s[2])


def model_macs(kind: str) -> int:
    from benchmarks.opcount import count_macs
    from edgeae.checkpoint import load_checkpoint
    from edgeae.predictor import resolve_model_path

    ck = load_checkpoint(resolve_model_path(MODELS[kind][0]))
    module = ck.model.encoder if kind == "cae-encoder" else ck.model
    return count_macs(module, tuple(ck.metadata.input_shape))

"""Tiny stand-in artifacts (ONNX graphs built with ``onnx.helper``, no torch) for tests and board self-checks.

They follow the artifact contract exactly (embedded :class:`~edgeae.metadata.ModelMetadata`, output names and
order per kind) so the runtime cannot tell them from exported models; their numbers mean nothing:

- ``vae``: x̂ = 3×3 local mean of x, μ = per-channel mean, score = ||x − x̂||² + λ·||μ||² (texture-rich patches
  score high);
- ``cae``: normalised convolution (5×5 mean of known pixels over 5×5 mean of the known mask), a crude
  inpainter of sparse samples.

Needs the ``onnx`` package (``pip install 'edgeae[export]'``); never imported by the flight loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeae._optional import require
from edgeae.metadata import METADATA_KEY, ModelMetadata

OPSET = 17


def _save(graph: Any, meta: ModelMetadata, path: str | Path) -> Path:
    onnx = require("onnx")
    helper = onnx.helper
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="edgeae-testing")
    model.ir_version = 8
    helper.set_model_props(model, {METADATA_KEY: meta.to_json()})
    onnx.checker.check_model(model)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(p))
    return p


def tiny_vae_onnx(
    path: str | Path, channels: int = 1, patch: int = 32, lam: float = 0.1, threshold: float | None = None
) -> Path:
    """Write a VAE-kind stand-in artifact taking (N, channels, patch, patch)."""
    onnx = require("onnx")
    h, tp = onnx.helper, onnx.TensorProto
    x = h.make_tensor_value_info("x", tp.FLOAT, ["N", channels, patch, patch])
    outs = [
        h.make_tensor_value_info("score", tp.FLOAT, ["N"]),
        h.make_tensor_value_info("x_hat", tp.FLOAT, ["N", channels, patch, patch]),
        h.make_tensor_value_info("mu", tp.FLOAT, ["N", channels]),
    ]
    inits = [
        h.make_tensor("axes_chw", tp.INT64, [3], [1, 2, 3]),
        h.make_tensor("axes_c", tp.INT64, [1], [1]),
        h.make_tensor("lam", tp.FLOAT, [], [lam]),
    ]
    nodes = [
        h.make_node("AveragePool", ["x"], ["x_hat"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=0),
        h.make_node("Sub", ["x", "x_hat"], ["d"]),
        h.make_node("Mul", ["d", "d"], ["d2"]),
        h.make_node("ReduceSum", ["d2", "axes_chw"], ["rec"], keepdims=0),
        h.make_node("ReduceMean", ["x"], ["mu"], axes=[2, 3], keepdims=0),
        h.make_node("Mul", ["mu", "mu"], ["mu2"]),
        h.make_node("ReduceSum", ["mu2", "axes_c"], ["kl"], keepdims=0),
        h.make_node("Mul", ["kl", "lam"], ["lkl"]),
        h.make_node("Add", ["rec", "lkl"], ["score"]),
    ]
    graph = h.make_graph(nodes, "tiny_vae", [x], outs, initializer=inits)
    score: dict[str, Any] = {"lambda": lam}
    if threshold is not None:
        score["threshold"] = threshold
    meta = ModelMetadata(
        kind="vae",
        architecture={"name": "tiny-test-vae"},
        input_shape=(-1, channels, patch, patch),
        channels=channels,
        score=score,
    )
    return _save(graph, meta, path)


def tiny_cae_onnx(path: str | Path, channels: int = 1, tile: int = 32, padding_bytes: int = 0) -> Path:
    """Write a CAE-kind stand-in (normalised-convolution inpainter) taking (N, channels, tile, tile).

    ``padding_bytes`` adds an unused initializer so the file is as large as a real model's weights.
    """
    onnx = require("onnx")
    h, tp = onnx.helper, onnx.TensorProto
    x = h.make_tensor_value_info("x", tp.FLOAT, ["N", channels, tile, tile])
    y = h.make_tensor_value_info("x_hat", tp.FLOAT, ["N", channels, tile, tile])
    inits = [h.make_tensor("zero", tp.FLOAT, [], [0.0]), h.make_tensor("eps", tp.FLOAT, [], [1e-3])]
    pool = {"kernel_shape": [5, 5], "pads": [2, 2, 2, 2], "count_include_pad": 0}
    nodes = [
        h.make_node("Greater", ["x", "zero"], ["known_b"]),
        h.make_node("Cast", ["known_b"], ["known"], to=tp.FLOAT),
        h.make_node("AveragePool", ["x"], ["num"], **pool),
        h.make_node("AveragePool", ["known"], ["den0"], **pool),
        h.make_node("Add", ["den0", "eps"], ["den"]),
        h.make_node("Div", ["num", "den"], ["q"]),
        h.make_node("Clip", ["q", "zero"], ["x_hat"]),
    ]
    if padding_bytes > 0:
        n = padding_bytes // 4
        pad = np.random.default_rng(0).standard_normal(n).astype(np.float32)
        inits.append(onnx.numpy_helper.from_array(pad, "unused_weights"))
    graph = h.make_graph(nodes, "tiny_cae", [x], [y], initializer=inits)
    meta = ModelMetadata(
        kind="cae",
        architecture={"name": "tiny-test-cae"},
        input_shape=(-1, channels, tile, tile),
        channels=channels,
        mask={"mode": "zero-fill"},
    )
    return _save(graph, meta, path)


def tiny_encoder_onnx(path: str | Path, channels: int = 1, tile: int = 32) -> Path:
    """Write a CAE-encoder-kind stand-in: the latent is the 8×8 block mean, (N, channels, tile/8, tile/8)."""
    onnx = require("onnx")
    h, tp = onnx.helper, onnx.TensorProto
    x = h.make_tensor_value_info("x", tp.FLOAT, ["N", channels, tile, tile])
    y = h.make_tensor_value_info("latent", tp.FLOAT, ["N", channels, tile // 8, tile // 8])
    node = h.make_node("AveragePool", ["x"], ["latent"], kernel_shape=[8, 8], strides=[8, 8])
    graph = h.make_graph([node], "tiny_encoder", [x], [y])
    meta = ModelMetadata(
        kind="cae-encoder",
        architecture={"name": "tiny-test-encoder"},
        input_shape=(-1, channels, tile, tile),
        channels=channels,
    )
    return _save(graph, meta, path)


def tiny_models(folder: str | Path, channels: int = 1, patch: int = 32) -> dict[str, Path]:
    """Both stand-ins in ``folder``: ``{"vae": ..., "cae": ...}`` (the CAE padded to 20 kB of weights)."""
    d = Path(folder)
    return {
        "vae": tiny_vae_onnx(d / "vae.onnx", channels, patch),
        "cae": tiny_cae_onnx(d / "cae.onnx", channels, patch, 20_000),
        "encoder": tiny_encoder_onnx(d / "encoder.onnx", channels, patch),
    }


def small_mission(models: dict[str, Path], patch: int = 32, **sections: dict[str, Any]) -> Any:
    """A grey test mission on the stand-in models; ``sections`` update single fields of the defaults."""
    from .mission import mission_from_dict

    doc: dict[str, Any] = {
        "name": "test",
        "camera": {"channels": 1, "strip_rows": 64},
        "sampling": {"keep": 0.1, "seed": 5, "min_keep": 0.01},
        "anomaly": {"model": str(models["vae"]), "patch": patch, "stride": patch, "batch": 8, "top_k": 2},
        "reconstruction": {"mode": "check", "model": str(models["cae"]), "tile": patch},
        "budget": {"frame_ms": 5000.0, "downlink_bytes_per_pass": 1 << 20},
    }
    for k, v in sections.items():
        doc[k] = {**doc.get(k, {}), **v}
    return mission_from_dict(doc)


def textured_frame(
    seed: int = 0, h: int = 128, w: int = 192, spot: tuple[int, int] | None = (64, 96), patch: int = 32
) -> np.ndarray:
    """A smooth grey uint8 frame with one patch of strong texture at ``spot`` (y, x): the planted anomaly."""
    rng = np.random.default_rng(seed)
    img = (60 + rng.random((h, w)) * 20).astype(np.uint8)
    if spot:
        y, x = spot
        img[y : y + patch, x : x + patch] = rng.integers(0, 250, (patch, patch))
    return img

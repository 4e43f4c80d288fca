"""ONNX static int8 quantisation (QDQ, per-channel weights, MinMax over the whole calibration set).

Activations are uint8 and weights int8 (the fast pair for x86 VNNI and fine on ARM). The graph input's
range is pinned to exactly [0, 1] (scale 1/255, zero point 0): every 8-bit pixel value is represented
exactly and no calibration set can clip the input range (TOOLCHAIN.md trap). :func:`onnx_input_range`
reads the range back from the file so tests and the parity report can check it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeae._optional import require


class _Reader:
    """onnxruntime CalibrationDataReader over a float32 NCHW array, in batches."""

    def __init__(self, name: str, data: np.ndarray, batch: int = 16) -> None:
        self.name = name
        self.data = data
        self.batch = batch
        self._it: Iterator[dict[str, np.ndarray]] = self._batches()

    def _batches(self) -> Iterator[dict[str, np.ndarray]]:
        for i in range(0, len(self.data), self.batch):
            yield {self.name: np.ascontiguousarray(self.data[i : i + self.batch], dtype=np.float32)}

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = self._batches()


def head_nodes(model: Any, outputs: Sequence[str]) -> list[str]:
    """Names of the nodes that only ``outputs`` depend on: the nodes feeding those graph outputs that feed no
    other graph output (for the VAE: the score head after x̂ and μ)."""
    producer = {o: n for n in model.graph.node for o in n.output}

    def ancestors(names: Sequence[str]) -> set[int]:
        seen: set[int] = set()
        todo = [producer[t] for t in names if t in producer]
        while todo:
            node = todo.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            todo += [producer[t] for t in node.input if t in producer]
        return seen

    graph_outputs = [o.name for o in model.graph.output]
    others = ancestors([o for o in graph_outputs if o not in outputs])
    head = ancestors([o for o in graph_outputs if o in outputs]) - others
    nodes = [n for n in model.graph.node if id(n) in head]
    unnamed = [n.op_type for n in nodes if not n.name]
    if unnamed:
        raise ValueError(f"cannot keep {list(outputs)} in float: unnamed nodes {unnamed}")
    return [n.name for n in nodes]


# Ops between learned layers that int8 handles exactly (no arithmetic on values): quantised with them.
SHAPE_OPS = frozenset({"MaxPool", "Resize", "Concat", "Relu", "Identity", "Reshape", "Transpose"})


def fixed_nodes(model: Any, learned: Sequence[str]) -> list[str]:
    """Names of the nodes outside the ``learned`` top-level submodules (by the exporter's name scopes): the
    fixed numerical layers (normalised-convolution pre-fill, do-no-harm gate) that stay float32 in an int8
    file. Their local variances and divisions span ranges one uint8 scale cannot hold; they have no weights
    and cost little."""
    import ast

    out = []
    for node in model.graph.node:
        scopes = {p.key: p.value for p in node.metadata_props}.get("pkg.torch.onnx.name_scopes")
        try:
            top = [s for s in ast.literal_eval(scopes) if s][:1] if scopes else []
        except (ValueError, SyntaxError):
            top = []
        learned_node = bool(top) and top[0].split(".")[0] in learned
        if not learned_node and node.op_type not in SHAPE_OPS and node.name:
            out.append(node.name)
    return out


def quantize_onnx_int8(
    fp32_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    calibration: np.ndarray,
    input_range: tuple[float, float] | None = (0.0, 1.0),
    float_outputs: Sequence[str] = (),
    learned_modules: Sequence[str] = (),
    reduce_range: bool = False,
) -> Path:
    """Write a static int8 QDQ model calibrated on ``calibration`` (float32, the model's input layout).

    ``input_range`` pins the input quantisation range (None: take it from the calibration data, as for a
    decoder whose input is a latent). ``float_outputs``: graph outputs whose own head (:func:`head_nodes`)
    stays float32, computed from the dequantised tensors it reads (the VAE's ``score``). ``learned_modules``:
    when given, only the nodes of these top-level submodules are quantised (:func:`fixed_nodes`).
    ``reduce_range``: 7-bit weights, so onnxruntime's u8s8 kernels cannot saturate on x86 without VNNI.
    """
    onnx = require("onnx")
    q = require("onnxruntime.quantization")
    model = onnx.load_model(str(fp32_path))
    name = model.graph.input[0].name
    extra: dict[str, object] = {"ActivationSymmetric": False, "WeightSymmetric": True}
    exclude = head_nodes(model, float_outputs) if float_outputs else []
    if learned_modules:
        exclude = sorted(set(exclude) | set(fixed_nodes(model, learned_modules)))
    if input_range is not None:
        lo, hi = (np.array(v, dtype=np.float32) for v in input_range)
        extra["TensorQuantOverrides"] = {name: [{"rmin": lo, "rmax": hi}]}
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    q.quantize_static(
        str(fp32_path),
        str(out),
        _Reader(name, calibration),
        quant_format=q.QuantFormat.QDQ,
        per_channel=True,
        reduce_range=reduce_range,
        activation_type=q.QuantType.QUInt8,
        weight_type=q.QuantType.QInt8,
        calibrate_method=q.CalibrationMethod.MinMax,
        extra_options=extra,
        nodes_to_exclude=exclude,
    )
    return out


def onnx_input_range(path: str | os.PathLike[str]) -> tuple[float, float] | None:
    """The float range [lo, hi] the int8 input quantiser represents, or None for a float input path."""
    onnx = require("onnx")
    numpy_helper = require("onnx.numpy_helper")
    model = onnx.load_model(str(path))
    graph = model.graph
    name = graph.input[0].name
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] == name:
            scale = float(np.asarray(inits[node.input[1]]).reshape(-1)[0])
            zp_arr = np.asarray(inits[node.input[2]]) if len(node.input) > 2 else np.zeros((), np.uint8)
            info = np.iinfo(zp_arr.dtype)
            zp = float(zp_arr.reshape(-1)[0])
            return ((info.min - zp) * scale, (info.max - zp) * scale)
    return None

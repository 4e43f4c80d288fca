"""ONNX static int8 quantisation (QDQ, per-channel weights, MinMax over the whole calibration set).

Activations are uint8 and weights int8 (the fast pair for x86 VNNI and fine on ARM). The graph input's
range is pinned to exactly [0, 1] (scale 1/255, zero point 0): every 8-bit pixel value is represented
exactly and no calibration set can clip the input range (TOOLCHAIN.md trap). :func:`onnx_input_range`
reads the range back from the file so tests and the parity report can check it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

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


def quantize_onnx_int8(
    fp32_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    calibration: np.ndarray,
    input_range: tuple[float, float] | None = (0.0, 1.0),
) -> Path:
    """Write a static int8 QDQ model calibrated on ``calibration`` (float32, the model's input layout).

    ``input_range`` pins the input quantisation range (None: take it from the calibration data, as for a
    decoder whose input is a latent).
    """
    onnx = require("onnx")
    q = require("onnxruntime.quantization")
    model = onnx.load_model(str(fp32_path))
    name = model.graph.input[0].name
    extra: dict[str, object] = {"ActivationSymmetric": False, "WeightSymmetric": True}
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
        activation_type=q.QuantType.QUInt8,
        weight_type=q.QuantType.QInt8,
        calibrate_method=q.CalibrationMethod.MinMax,
        extra_options=extra,
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

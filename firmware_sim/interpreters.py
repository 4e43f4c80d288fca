"""The two interpreters an artifact runs in, behind one ``run(x) -> [outputs]`` interface: an onnxruntime
session (``.onnx``/``.ort``) and an ai-edge-litert interpreter (``.tflite``, int8 inputs and outputs quantised
with the TFLite affine rule, static batches run in chunks).

Both are opened with an explicit thread count (:func:`interpreter_threads`: the caller's, else one).
:class:`.runtime.ArtifactPredictor` wraps one of them; never imports torch.
"""

from __future__ import annotations

import numbers
import threading
from pathlib import Path
from typing import Any

import numpy as np

from edgeae._optional import require
from edgeae.metadata import METADATA_KEY

from .artifact_file import ArtifactError, tflite_metadata_entries

DEFAULT_THREADS = 1
"""Threads an interpreter runs on where its caller names none (``load_artifact(path)``, ``threads=None``): one, as
LiteRT runs (ai-edge-litert passes ``num_threads or 1`` to its interpreter). onnxruntime's own default is a thread
per core of the machine, so every session opened without a count took all the cores: two pytest workers, or a
board's other work, ran on oversubscribed cores. The flight names its count: each interpreter gets the mission's
``[runtime] threads`` (the VAE scoring engine, by default, that many interpreters of one thread each, :mod:`.onboard`).
"""


def interpreter_threads(threads: int | None) -> int:
    """The thread count an interpreter is opened with: ``threads``, or :data:`DEFAULT_THREADS` for None."""
    if threads is None:
        return DEFAULT_THREADS
    if isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or threads < 1:
        raise ValueError(f"interpreter threads must be a whole number >= 1 or None, got {threads!r}")
    return int(threads)


def session_options(threads: int | None) -> Any:
    """onnxruntime session options with both thread pools sized: intra-op (the threads one node's kernel runs on)
    :func:`interpreter_threads`, inter-op 1 (nodes run in sequence on the calling thread: no inter-op pool starts)."""
    ort = require("onnxruntime")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = interpreter_threads(threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    return opts


def _onnx_session(source: Path | bytes, threads: int | None, name: str) -> Any:
    ort = require("onnxruntime")
    opts = session_options(threads)
    try:
        arg = str(source) if isinstance(source, Path) else source
        return ort.InferenceSession(arg, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types (Fail, InvalidProtobuf, ...)
        raise ArtifactError(f"{name}: cannot be loaded by onnxruntime ({type(exc).__name__}: {exc})") from exc


# ------------------------------------------------------------------------------------------ quantisation


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype: np.dtype[Any]) -> np.ndarray:
    """Float -> int8/uint8 with the TFLite affine rule q = round(x / scale) + zero_point, saturated."""
    info = np.iinfo(dtype)
    q = np.divide(x, scale)  # one temporary, rounded, shifted and clipped in place (same values)
    np.round(q, out=q)
    q += zero_point
    np.clip(q, info.min, info.max, out=q)
    return q.astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """int8/uint8 -> float32: (q - zero_point) * scale."""
    return ((q.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)).astype(np.float32)


# ---------------------------------------------------------------------------------------------- runners


class _OnnxRunner:
    def __init__(self, path: Path, threads: int | None) -> None:
        self.session = _onnx_session(path, threads, str(path))
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.custom = self.session.get_modelmeta().custom_metadata_map

    def metadata_text(self) -> str | None:
        return self.custom.get(METADATA_KEY)

    def input_shape(self) -> tuple[int | None, ...]:
        """The graph's real input shape; None for a dynamic axis."""
        dims = self.session.get_inputs()[0].shape
        return tuple(int(d) if isinstance(d, int) and d > 0 else None for d in dims)

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        return list(self.session.run(self.output_names, {self.input_name: x}))


class _TFLiteRunner:
    def __init__(self, path: Path, threads: int | None) -> None:
        content = path.read_bytes()
        self.entries = tflite_metadata_entries(content, str(path))
        litert = require("ai_edge_litert.interpreter")
        from edgeae.logs import native_stderr_to_log

        n_threads = interpreter_threads(threads)  # refused here, not reported as a file LiteRT cannot load
        try:
            with native_stderr_to_log():  # LiteRT's "Created TensorFlow Lite XNNPACK delegate" INFO line
                self.interp = litert.Interpreter(model_content=content, num_threads=n_threads)
                self.interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ArtifactError(f"{path}: cannot be loaded by ai-edge-litert ({exc})") from exc
        self.path = path
        sigs = self.interp._get_full_signature_list()
        if len(sigs) == 1:  # follow the signature's output names ("output_0", ...), not tensor order
            sig = next(iter(sigs.values()))
            self.input_index = next(iter(sig["inputs"].values()))
            outs = sig["outputs"]
            self.output_indices = [outs[k] for k in sorted(outs, key=_natural_key)]
        else:
            self.input_index = self.interp.get_input_details()[0]["index"]
            self.output_indices = [d["index"] for d in self.interp.get_output_details()]
        self.batch = -1
        sig0 = int(self._detail(self.input_index)["shape_signature"][0])
        self.static_batch: int | None = sig0 if sig0 > 0 else None
        # one call at a time: LiteRT's interpreter keeps its tensors between set_tensor, invoke and get_tensor, and
        # two threads on one runner raised "at least 1 reference to internal data" (audit s32-a7); the flight gives
        # each scoring thread its own interpreter, so this lock is never contended there
        self._lock = threading.Lock()

    def metadata_text(self) -> bytes | None:
        return self.entries.get(METADATA_KEY)

    def input_shape(self) -> tuple[int | None, ...]:
        """The graph's real input shape; None for a dynamic axis."""
        dims = self._detail(self.input_index)["shape_signature"]
        return tuple(int(d) if int(d) > 0 else None for d in dims)

    def _detail(self, index: int) -> dict[str, Any]:
        for d in self.interp.get_input_details() + self.interp.get_output_details():
            if d["index"] == index:
                return dict(d)
        raise ArtifactError(f"{self.path}: tensor {index} is not an input or output")

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        if self.static_batch is None or x.shape[0] == self.static_batch:
            return self._run(x)
        # a file converted with a static batch: run in chunks of that size, padding the last one
        b = self.static_batch
        parts: list[list[np.ndarray]] = []
        for i in range(0, x.shape[0], b):
            chunk = x[i : i + b]
            n = chunk.shape[0]
            if n < b:
                chunk = np.concatenate([chunk, np.zeros((b - n, *chunk.shape[1:]), chunk.dtype)])
            parts.append([y[:n] for y in self._run(chunk)])
        return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        with self._lock:
            return self._run_locked(x)

    def _run_locked(self, x: np.ndarray) -> list[np.ndarray]:
        if x.shape[0] != self.batch:
            shape = list(self._detail(self.input_index)["shape"])
            if shape[0] != x.shape[0]:
                self.interp.resize_tensor_input(self.input_index, [x.shape[0], *x.shape[1:]], strict=False)
            self.interp.allocate_tensors()
            self.batch = x.shape[0]
        d_in = self._detail(self.input_index)
        if d_in["dtype"] in (np.int8, np.uint8):
            scale, zp = d_in["quantization"]
            x = quantize(x, scale, zp, d_in["dtype"])
        self.interp.set_tensor(self.input_index, x)
        self.interp.invoke()
        outs = []
        for idx in self.output_indices:
            d = self._detail(idx)
            y = self.interp.get_tensor(idx)
            if d["dtype"] in (np.int8, np.uint8):
                scale, zp = d["quantization"]
                y = dequantize(y, scale, zp)
            outs.append(np.array(y, dtype=np.float32))
        return outs


def _natural_key(name: str) -> tuple[int, str]:
    tail = name.rsplit("_", 1)[-1]
    return (int(tail), name) if tail.isascii() and tail.isdigit() else (1 << 30, name)  # int('²') raises

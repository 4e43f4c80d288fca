"""Flight-side artifact loader: run an exported edgeae model with numpy and one light interpreter.

``load_artifact(path, threads)`` opens an ``.onnx``/``.ort`` file in onnxruntime or a ``.tflite`` file in
ai-edge-litert, reads the edgeae metadata embedded in the file, and returns an :class:`ArtifactPredictor`
with the one calling convention of :mod:`edgeae.predictor`: the input is always a float32 NCHW batch in
[0, 1]; the wrapper transposes to NHWC and quantises to int8 when the artifact wants that, and returns

- ``cae`` / ``cae-decoder``: float32 NCHW pixels in [0, 1];
- ``cae-encoder``: the float32 latent (N, C, h, w);
- ``vae``: a dict with ``score`` (N,), ``x_hat`` (N, C, H, W) and ``mu`` (N, D).

This module never imports torch (a test proves it): it is the code that would run on the spacecraft.
"""

from __future__ import annotations

import logging
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from edgeae._optional import require
from edgeae.metadata import METADATA_KEY, MetadataError, ModelMetadata

ONNX_SUFFIXES = (".onnx", ".ort")
TFLITE_SUFFIXES = (".tflite",)
# Logical output names per model kind, in graph order (exporters name the graph outputs this way).
OUTPUT_NAMES: dict[str, tuple[str, ...]] = {
    "cae": ("x_hat",),
    "cae-encoder": ("latent",),
    "cae-decoder": ("x_hat",),
    "vae": ("score", "x_hat", "mu"),
}


class ArtifactError(ValueError):
    """An artifact file is missing, unreadable, or not what its suffix says."""


# flatbuffer file identifiers (bytes 4-8) and what they mean
IDENTIFIERS = {b"TFL3": ("tflite", "a TFLite flatbuffer (TFL3)"), b"ORTM": ("ort", "an ORT-format model (ORTM)")}


def sniff(head: bytes) -> str:
    """The format the first bytes of a file show: ``tflite``, ``ort``, ``onnx`` (a protobuf whose first field is
    ``ir_version``), ``empty`` or ``unknown`` (the export tools use it too: ``edgeae.export.filetype``)."""
    if not head:
        return "empty"
    if head[4:8] in IDENTIFIERS:
        return IDENTIFIERS[head[4:8]][0]
    return "onnx" if head[:1] == b"\x08" else "unknown"


def check_artifact_file(path: Path) -> None:
    """Refuse, from its first bytes and without loading it, a file that is missing, empty or not the artifact
    its suffix says (a TFLite flatbuffer named ``.onnx``, an ``.ort`` or ONNX file named ``.tflite``)."""
    if not path.is_file():
        raise FileNotFoundError(f"model artifact {path} does not exist")
    if path.suffix not in ONNX_SUFFIXES + TFLITE_SUFFIXES:
        raise ArtifactError(f"{path}: unknown artifact type {path.suffix!r}; expected .onnx, .ort or .tflite")
    with path.open("rb") as f:
        got = sniff(f.read(8))
    if got == "empty":
        raise ArtifactError(f"{path}: empty file (0 bytes): not a model artifact")
    if got == "tflite" and path.suffix in ONNX_SUFFIXES:
        raise ArtifactError(f"{path}: this is a TFLite flatbuffer (TFL3), not {path.suffix}: name it .tflite")
    if path.suffix == ".ort" and got != "ort":
        raise ArtifactError(f"{path}: not an ONNX Runtime (.ort) file (no ORTM identifier)")
    if got != "tflite" and path.suffix in TFLITE_SUFFIXES:
        what = " (an ONNX Runtime .ort file: name it .ort)" if got == "ort" else ""
        raise ArtifactError(f"{path}: not a TFLite flatbuffer (no TFL3 identifier){what}")


# ---------------------------------------------------------------------------------------------- metadata


# Field slots of the TFLite schema (tensorflow/compiler/mlir/lite/schema/schema.fbs) this reader needs: the
# vtable offset of field i is 4 + 2 i. The generated schema module costs ~4 MiB of RSS in the flight process
# for three tables, so the runtime reads them through flatbuffers' own table accessor instead; a test checks
# it against ai_edge_litert.schema_py_generated on every zoo artifact.
_MODEL_BUFFERS, _MODEL_METADATA = 12, 16  # Model.buffers: [Buffer], Model.metadata: [Metadata]
_METADATA_NAME, _METADATA_BUFFER = 4, 6  # Metadata.name: string, Metadata.buffer: uint32
_BUFFER_DATA, _BUFFER_OFFSET, _BUFFER_SIZE = 4, 6, 8  # Buffer.data: [ubyte], offset, size: uint64


def tflite_metadata_entries(content: bytes, source: str = "model") -> dict[str, bytes]:
    """All ``metadata`` entries (name -> bytes) of a TFLite flatbuffer, parsed without TensorFlow."""
    if len(content) < 8 or content[4:8] != b"TFL3":
        raise ArtifactError(f"{source}: not a TFLite flatbuffer (no TFL3 identifier)")
    fb = require("flatbuffers")
    from flatbuffers import number_types as nt
    from flatbuffers.table import Table

    def table(pos: int) -> Table:
        if not 0 <= pos < len(content):
            raise IndexError(f"table offset {pos} outside the {len(content)}-byte file")
        return Table(content, pos)

    def vector(t: Table, slot: int) -> tuple[int, int]:
        """(start, length) of a vector of offsets, (0, 0) when the field is absent."""
        o = t.Offset(slot)
        if not o:
            return 0, 0
        start, n = t.Vector(o), t.VectorLen(o)
        if start + 4 * n > len(content):  # bounded before any entry is read
            raise IndexError(f"a vector of {n} offsets at byte {start} runs past the end of the file")
        return start, n

    try:
        model = table(fb.encode.Get(nt.UOffsetTFlags.packer_type, content, 0))
        buffers, n_buffers = vector(model, _MODEL_BUFFERS)
        meta, n_meta = vector(model, _MODEL_METADATA)
        out: dict[str, bytes] = {}
        for i in range(n_meta):
            entry = table(model.Indirect(meta + 4 * i))
            o = entry.Offset(_METADATA_NAME)
            name = (entry.String(o + entry.Pos) if o else b"").decode("utf-8", "replace")
            o = entry.Offset(_METADATA_BUFFER)
            index = entry.Get(nt.Uint32Flags, o + entry.Pos) if o else 0
            if not 0 <= index < n_buffers:
                raise IndexError(f"metadata {name!r} names buffer {index} of {n_buffers}")
            b = table(model.Indirect(buffers + 4 * index))
            o_off, o_size = b.Offset(_BUFFER_OFFSET), b.Offset(_BUFFER_SIZE)
            offset = b.Get(nt.Uint64Flags, o_off + b.Pos) if o_off else 0
            if offset > 1:  # large models keep buffers after the flatbuffer
                size = b.Get(nt.Uint64Flags, o_size + b.Pos) if o_size else 0
                if offset + size > len(content):
                    raise IndexError(f"buffer {index} ({size} bytes at {offset}) runs past the end of the file")
                out[name] = bytes(content[offset : offset + size])
                continue
            o = b.Offset(_BUFFER_DATA)
            if o:
                start, n = b.Vector(o), b.VectorLen(o)
                if start + n > len(content):
                    raise IndexError(f"buffer {index} runs past the end of the file")
                out[name] = bytes(content[start : start + n])
            else:
                out[name] = b""
    except (IndexError, ValueError, TypeError, AttributeError, struct.error) as exc:
        raise ArtifactError(f"{source}: corrupted TFLite flatbuffer ({type(exc).__name__}: {exc})") from exc
    return out


def _onnx_session(source: Path | bytes, threads: int | None, name: str) -> Any:
    ort = require("onnxruntime")
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    try:
        arg = str(source) if isinstance(source, Path) else source
        return ort.InferenceSession(arg, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types (Fail, InvalidProtobuf, ...)
        raise ArtifactError(f"{name}: cannot be loaded by onnxruntime ({type(exc).__name__}: {exc})") from exc


def _parse(text: str | bytes | None, source: str) -> ModelMetadata:
    if text is None:
        raise MetadataError(
            f"{source}: artifact has no edgeae metadata (key {METADATA_KEY!r}); re-export it with edgeae export"
        )
    return ModelMetadata.from_json(text, source=source)


def read_metadata(path: str | os.PathLike[str]) -> ModelMetadata:
    """Read only the embedded :class:`ModelMetadata` of an artifact (raises MetadataError if absent)."""
    p = Path(path)
    check_artifact_file(p)
    if p.suffix in TFLITE_SUFFIXES:
        entries = tflite_metadata_entries(p.read_bytes(), str(p))
        return _parse(entries.get(METADATA_KEY), str(p))
    sess = _onnx_session(p, 1, str(p))
    return _parse(sess.get_modelmeta().custom_metadata_map.get(METADATA_KEY), str(p))


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


def _to_layout(x: np.ndarray, layout: str) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if layout == "NHWC" and x.ndim == 4 else x


def _from_layout(x: np.ndarray, layout: str) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if layout == "NHWC" and x.ndim == 4 else x


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

        try:
            with native_stderr_to_log():  # LiteRT's "Created TensorFlow Lite XNNPACK delegate" INFO line
                self.interp = litert.Interpreter(model_content=content, num_threads=int(threads) if threads else None)
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
    return (int(tail), name) if tail.isdigit() else (1 << 30, name)


class ArtifactPredictor:
    """Calls an artifact with float32 NCHW batches in [0, 1]; see the module docstring for the outputs."""

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None) -> None:
        self.path = Path(path)
        self.source = str(self.path)
        check_artifact_file(self.path)
        self.format = "tflite" if self.path.suffix in TFLITE_SUFFIXES else "onnx"
        self.threads = threads
        self._runner: _OnnxRunner | _TFLiteRunner
        if self.format == "tflite":
            self._runner = _TFLiteRunner(self.path, threads)
        else:
            self._runner = _OnnxRunner(self.path, threads)
        self.metadata = _parse(self._runner.metadata_text(), self.source)
        check_graph_input(self.metadata, self._runner.input_shape(), self.source)
        if self.format == "onnx" and self.metadata.precision == "int8":
            _warn_if_int8_saturates(self.source, self.metadata)
        self.output_names = OUTPUT_NAMES[self.metadata.kind]

    @property
    def layout(self) -> str:
        return self.metadata.layout

    def check_input(self, batch: np.ndarray) -> None:
        """Refuse a batch whose dimensions or channels do not match the artifact's metadata."""
        if batch.ndim != 4:
            raise MetadataError(f"{self.source}: expected a 4-D NCHW batch, got shape {batch.shape}")
        if batch.shape[0] == 0:
            raise MetadataError(f"{self.source}: the batch is empty (shape {batch.shape}): give at least one patch")
        shape = (batch.shape[0], *_to_layout(batch[:0], self.layout).shape[1:])  # batch[:0]: no copy of the data
        self.metadata.check_input(shape, self.source)

    def __call__(self, batch: np.ndarray) -> Any:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        self.check_input(x)
        outs = self._runner.run(_to_layout(x, self.layout))
        if len(outs) != len(self.output_names):
            raise ArtifactError(
                f"{self.source}: artifact has {len(outs)} outputs, a {self.metadata.kind} needs "
                f"{len(self.output_names)} {self.output_names}"
            )
        named = {k: _from_layout(v, self.layout) for k, v in zip(self.output_names, outs, strict=True)}
        if "x_hat" in named:
            named["x_hat"] = self._pixels_nchw(named["x_hat"])
        if self.metadata.kind == "vae":
            named["score"] = named["score"].reshape(-1)
            named["mu"] = named["mu"].reshape(named["mu"].shape[0], -1)
            return named
        return named[self.output_names[0]]

    def _pixels_nchw(self, y: np.ndarray) -> np.ndarray:
        """Pixels as NCHW even where the converter emitted NHWC (litert-torch does for some graphs)."""
        channels = int(self.metadata.architecture.get("channels", self.metadata.channels))
        if y.ndim == 4 and y.shape[1] != channels and y.shape[3] == channels:
            return np.ascontiguousarray(y.transpose(0, 3, 1, 2))
        return y

    def __repr__(self) -> str:
        m = self.metadata
        return f"ArtifactPredictor({self.source!r}, kind={m.kind}, precision={m.precision}, layout={m.layout})"


MAX_INPUT_SIDE = 16384
"""Largest input height/width an artifact's metadata may state where the graph leaves that axis dynamic."""


def check_graph_input(meta: ModelMetadata, graph: tuple[int | None, ...], source: str) -> None:
    """Refuse metadata that disagrees with the graph's real input (rank, channels, height, width).

    The metadata travels inside the file and sizes every buffer the callers allocate (tiles, patches, batches),
    so an edited value (tile 100000, 1 channel for an RGB graph) must fail here, clearly, not as a MemoryError
    or an interpreter traceback later. The batch axis is not compared (a static batch runs in chunks).
    """
    want = tuple(meta.input_shape)
    if len(graph) != len(want):
        raise MetadataError(f"{source}: the graph takes a {len(graph)}-D input, the metadata says {want}")
    c_axis = 1 if meta.layout == "NCHW" else 3
    for axis in range(1, len(want)):
        g = graph[axis]
        if want[axis] < 1:
            raise MetadataError(f"{source}: metadata input_shape {want} has a non-positive size on axis {axis}")
        if g is not None and g != want[axis]:
            raise MetadataError(
                f"{source}: metadata input_shape {want} ({meta.layout}) disagrees with the graph's input "
                f"{tuple(-1 if d is None else d for d in graph)} on axis {axis}; the metadata was edited or "
                "belongs to another model"
            )
        if g is None and axis != c_axis and want[axis] > MAX_INPUT_SIDE:
            raise MetadataError(f"{source}: metadata input side {want[axis]} is over {MAX_INPUT_SIDE}")
    if meta.kind != "cae-decoder" and meta.channels != want[c_axis]:
        raise MetadataError(
            f"{source}: metadata says {meta.channels} channels but its input_shape {want} has {want[c_axis]}"
        )


_WARNED_SATURATION: set[str] = set()


def _warn_if_int8_saturates(source: str, meta: ModelMetadata) -> None:
    """Warn once per artifact when a full-range int8 ONNX file runs on a CPU whose int8 kernels saturate."""
    from edgeae.firmware_sim.cpu import int8_saturates

    full_range = str(meta.extra.get("int8_weights", "8-bit")).startswith("8-bit")  # no entry: made before 7-bit
    if not full_range or source in _WARNED_SATURATION or not int8_saturates():
        return
    _WARNED_SATURATION.add(source)
    logging.getLogger(__name__).warning(
        "%s: full-range int8 ONNX on an x86 CPU without VNNI: onnxruntime's int8 kernels can saturate here "
        "(scores may hit a ceiling and reorder); re-export it with `edgeae export` (7-bit weights, the default) "
        "or use the fp32 artifact (docs/export.md)", source,
    )  # fmt: skip


def load_artifact(path: str | os.PathLike[str], threads: int | None = None) -> ArtifactPredictor:
    """Open an ``.onnx``/``.ort``/``.tflite`` artifact; refuses files without valid edgeae metadata.
    ``threads``: the interpreter's thread count (a whole number >= 1; None: the runtime's default)."""
    if threads is not None and (isinstance(threads, bool) or int(threads) < 1):
        raise ValueError(f"threads must be a whole number >= 1, got {threads!r}")
    return ArtifactPredictor(path, threads=threads)

"""Flight-side artifact loader: run an exported edgeae model with numpy and one light interpreter.

``load_artifact(path, threads)`` opens an ``.onnx``/``.ort`` file in onnxruntime or a ``.tflite`` file in
ai-edge-litert, reads the edgeae metadata embedded in the file, and returns an :class:`ArtifactPredictor`
with the one calling convention of :mod:`edgeae.predictor`: the input is always a float32 NCHW batch in
[0, 1]; the wrapper transposes to NHWC and quantises to int8 when the artifact wants that, and returns

- ``cae`` / ``cae-decoder``: float32 NCHW pixels in [0, 1];
- ``cae-encoder``: the float32 latent (N, C, h, w);
- ``vae``: a dict with ``score`` (N,), ``x_hat`` (N, C, H, W) and ``mu`` (N, D).

This module never imports torch (a test proves it): it is the code that would run on the spacecraft. The checks
of the file itself are in :mod:`.artifact_file`, the onnxruntime and LiteRT runners in :mod:`.interpreters`.
"""

from __future__ import annotations

import logging
import numbers
import os
from pathlib import Path
from typing import Any

import numpy as np

from edgeae.metadata import METADATA_KEY, MetadataError, ModelMetadata

# the file checks and the interpreters, re-exported: callers (and edgeae.export) import them from here
from .artifact_file import IDENTIFIERS as IDENTIFIERS
from .artifact_file import ONNX_SUFFIXES as ONNX_SUFFIXES
from .artifact_file import TFLITE_SUFFIXES as TFLITE_SUFFIXES
from .artifact_file import ArtifactError as ArtifactError
from .artifact_file import check_artifact_file as check_artifact_file
from .artifact_file import sniff as sniff
from .artifact_file import tflite_metadata_entries as tflite_metadata_entries
from .interpreters import _onnx_session, interpreter_threads
from .interpreters import _OnnxRunner as _OnnxRunner  # score.py reaches into the runners
from .interpreters import _TFLiteRunner as _TFLiteRunner
from .interpreters import dequantize as dequantize
from .interpreters import quantize as quantize

# Logical output names per model kind, in graph order (exporters name the graph outputs this way).
OUTPUT_NAMES: dict[str, tuple[str, ...]] = {
    "cae": ("x_hat",),
    "cae-encoder": ("latent",),
    "cae-decoder": ("x_hat",),
    "vae": ("score", "x_hat", "mu"),
}


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


def _to_layout(x: np.ndarray, layout: str) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if layout == "NHWC" and x.ndim == 4 else x


def _from_layout(x: np.ndarray, layout: str) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if layout == "NHWC" and x.ndim == 4 else x


class ArtifactPredictor:
    """Calls an artifact with float32 NCHW batches in [0, 1]; see the module docstring for the outputs."""

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None) -> None:
        self.path = Path(path)
        self.source = str(self.path)
        check_artifact_file(self.path)
        self.format = "tflite" if self.path.suffix in TFLITE_SUFFIXES else "onnx"
        self.threads = interpreter_threads(threads)  # None: DEFAULT_THREADS, what the interpreter is opened with
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
        """Refuse a batch whose dimensions or channels do not match the artifact's metadata (named as passed:
        NCHW, whatever the file's layout)."""
        if batch.ndim != 4:
            raise MetadataError(f"{self.source}: expected a 4-D NCHW batch, got shape {batch.shape}")
        if batch.shape[0] == 0:
            raise MetadataError(f"{self.source}: the batch is empty (shape {batch.shape}): give at least one patch")
        self.metadata.check_input(batch.shape, self.source, layout="NCHW")

    def __call__(self, batch: np.ndarray) -> Any:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        self.check_input(x)
        check_finite(x, self.source)
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


def check_finite(x: np.ndarray, source: str) -> None:
    """Refuse a float batch holding NaN or ±inf: the int8 quantiser would cast them to arbitrary codes and the
    model would answer as if they were pixels. About 12 µs for a 16 × 1 × 64 × 64 float32 batch."""
    if not np.isfinite(x).all():
        bad = int(x.size - np.count_nonzero(np.isfinite(x)))
        raise ValueError(
            f"{source}: the input batch (shape {x.shape}) holds {bad} non-finite value{'s' * (bad != 1)} (NaN or "
            f"inf) of {x.size}; give pixels in [0, 1] (fill no-data pixels first)"
        )


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
    from edgeae._optional import source_ref

    logging.getLogger(__name__).warning(
        "%s: full-range int8 ONNX on an x86 CPU without VNNI: onnxruntime's int8 kernels can saturate here "
        "(scores may hit a ceiling and reorder); re-export it with `edgeae export` (7-bit weights, the default) "
        "or use the fp32 artifact (%s)", source, source_ref("docs/export.md", "int8 on different CPUs"),
    )  # fmt: skip


def load_artifact(path: str | os.PathLike[str], threads: int | None = None) -> ArtifactPredictor:
    """Open an ``.onnx``/``.ort``/``.tflite`` artifact; refuses files without valid edgeae metadata.
    ``threads``: the interpreter's thread count (a whole number >= 1; None: :data:`.interpreters.DEFAULT_THREADS`,
    one, in onnxruntime as in LiteRT; until session 39 onnxruntime then took a thread per core)."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or threads < 1):
        raise ValueError(f"threads must be a whole number >= 1, got {threads!r}")
    return ArtifactPredictor(path, threads=threads)

"""Building one artifact file in the export's work folder: convert, quantise, embed the metadata, check.

:func:`build` writes a ``.tflite`` or ``.onnx`` file (ONNX files once per graph: the fp32 file is the source of the
int8 file and of both ORT files), :func:`ort_with_metadata` converts one to ``.ort``, :func:`artifact_metadata` is
what each file carries. A converter's failure is a :class:`ConversionError` with a one-line message that the
report records as that artifact's failure.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from edgeae.metadata import ModelMetadata

from .graphs import Graph

log = logging.getLogger(__name__)

# what an int8 ONNX or ORT artifact's metadata says of its weights (``extra["int8_weights"]``), by ``reduce_range``;
# files made before session 19 have no such entry and are full range (ORT files made before December 2026 lack it
# too, though converted from 7-bit ONNX files)
INT8_WEIGHTS = {True: "7-bit (reduce_range)", False: "8-bit (full range)"}


def finalise(path: Path, fmt: str, meta: ModelMetadata) -> None:
    """Rewrite the artifact's embedded metadata (precision, calibration facts)."""
    if fmt == "tflite":
        from .tflite_metadata import write_tflite_metadata

        write_tflite_metadata(path, meta.to_json())
    else:
        from .onnx_export import check_onnx, write_onnx_metadata

        write_onnx_metadata(path, meta)
        check_onnx(path)


class ConversionError(RuntimeError):
    """A converter (or the checker right after it) failed on a graph; recorded as that artifact's failure."""


def error_text(exc: BaseException) -> str:
    """One line for the report: the exception type and the first line of its message (converters raise long ones)."""
    if isinstance(exc, ConversionError):
        return str(exc)
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first[:300]}{'…' if len(first) > 300 else ''}"


def build(
    graph: Graph,
    fmt: str,
    precision: str,
    stem: Path,
    calib: np.ndarray,
    done: dict[str, Path | str],
    reduce_range: bool = False,
) -> Path:
    """Write one ``.tflite`` or ``.onnx`` file at ``stem.<precision>.<ext>`` (a work folder, never ``--out``).

    ONNX files are built once per graph and kept in ``done`` (the fp32 file is the source of the int8 file and
    of both ORT files); a failed ONNX conversion is kept there as its message and raised as
    :class:`ConversionError` for every artifact that needs it.
    """
    from . import onnx_export, quantize, tflite_export

    pin = None if graph.kind == "cae-decoder" else (0.0, 1.0)
    if fmt == "tflite":
        path = stem.with_name(f"{stem.name}.{precision}.tflite")
        if precision == "fp32":
            return tflite_export.export_tflite_fp32(graph, path)
        return tflite_export.export_tflite_int8(graph, path, calib, input_range=pin)
    key = f"onnx-{precision}"
    if key not in done:
        onnx_path = stem.with_name(f"{stem.name}.{precision}.onnx")
        try:
            if precision == "fp32":
                onnx_export.export_onnx(graph, onnx_path)
            else:
                fp32 = build(graph, "onnx", "fp32", stem, calib, done)
                quantize.quantize_onnx_int8(
                    fp32, onnx_path, calib, input_range=pin, float_outputs=graph.float_outputs,
                    learned_modules=graph.learned_modules, reduce_range=reduce_range,
                )  # fmt: skip
                onnx_export.check_onnx(onnx_path)
            done[key] = onnx_path
        except ConversionError as exc:
            done[key] = f"{precision} ONNX not made: {exc}"
        except Exception as exc:  # torch.onnx / onnxruntime.quantization / onnx.checker: any type
            log.debug("%s ONNX conversion of %s failed", precision, graph.kind, exc_info=True)
            done[key] = f"{precision} ONNX conversion failed: {error_text(exc)}"
    made = done[key]
    if isinstance(made, str):
        raise ConversionError(made)
    return made


def ort_with_metadata(onnx_path: Path, meta: ModelMetadata, out_dir: Path) -> Path:
    """Convert a copy of ``onnx_path`` carrying ``meta`` to ``<stem>.ort`` in ``out_dir``."""
    import shutil
    import tempfile

    from .onnx_export import write_onnx_metadata
    from .ort import convert_to_ort

    with tempfile.TemporaryDirectory(prefix="edgeae-ort-src-") as tmp:
        src = Path(tmp) / onnx_path.name
        shutil.copy2(onnx_path, src)
        write_onnx_metadata(src, meta)
        return convert_to_ort(src, out_dir)


def input_range(path: Path, fmt: str) -> tuple[float, float] | None:
    if fmt == "tflite":
        from .tflite_export import tflite_input_range

        return tflite_input_range(path)
    from .quantize import onnx_input_range

    return onnx_input_range(path)


# what the "checker" field of a record says was run on the file besides loading it in its flight runtime
CHECKER = {
    "onnx": "onnx.checker full_check",
    "ort": "onnx.checker full_check of the ONNX it was converted from; the .ort loaded by onnxruntime",
    "tflite": "ai-edge-litert load + allocate",
}


def artifact_metadata(
    graph: Graph,
    fmt: str,
    precision: str,
    in_range: tuple[float, float] | None,
    calibration: dict[str, Any],
    reduce_range: bool,
) -> ModelMetadata:
    """The metadata embedded in one artifact: the graph's, with format, outputs and for int8 the calibration
    facts (``calibration``: source, files_sha256, n_patches, tail share), the weight width and the versions of the
    packages that built it (:func:`edgeae.export.producer.toolchain`)."""
    from .producer import toolchain

    extra = {**graph.metadata.extra, "format": fmt, "outputs": list(graph.output_names), "toolchain": toolchain(fmt)}
    if precision == "int8" and fmt in ("onnx", "ort"):  # an ORT file runs the same onnxruntime int8 kernels
        extra["int8_weights"] = INT8_WEIGHTS[reduce_range]
    if fmt == "tflite" and graph.tflite_static_batch:
        extra["static_batch"] = graph.tflite_static_batch  # the loader runs bigger batches in chunks
    if precision == "int8":
        extra["calibration"] = {
            **calibration,
            "float_outputs": list(graph.float_outputs),
            "method": "minmax over the whole set",
            "input_range": list(in_range) if in_range else None,
        }
    base = graph.tflite_metadata() if fmt == "tflite" else graph.metadata
    return base.replace(precision=precision, extra=extra)

"""PyTorch -> ONNX with the dynamo exporter (opset 18, dynamic batch), checked, metadata inside.

The edgeae metadata JSON goes into the model's ``metadata_props`` under the key ``edgeae``; onnxruntime
exposes it as ``custom_metadata_map`` (also after conversion to the ORT format).
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import Any

from edgeae._optional import require
from edgeae.metadata import METADATA_KEY, ModelMetadata

from .graphs import Graph

OPSET = 18  # >= 17 (LayerNorm etc.); 18 is what torch 2.13's dynamo exporter emits natively


def set_onnx_metadata(model: Any, metadata: ModelMetadata) -> None:
    """Store ``metadata`` (JSON) in an ``onnx.ModelProto``'s ``metadata_props``, replacing an old entry."""
    keep = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    entry = model.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = metadata.to_json()
    model.producer_name = "edgeae"
    model.producer_version = metadata.edgeae_version


def check_onnx(path: str | os.PathLike[str]) -> None:
    """Run ``onnx.checker`` (full check with shape inference); raise ValueError naming the file."""
    onnx = require("onnx")
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ValueError(f"{path}: onnx.checker rejected the model: {exc}") from exc


def export_onnx(graph: Graph, path: str | os.PathLike[str], opset: int = OPSET) -> Path:
    """Export ``graph`` to ONNX with a dynamic batch axis, embed its metadata and run the checker."""
    torch = require("torch")
    onnx = require("onnx")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sample = torch.from_numpy(graph.sample(2))
    batch = torch.export.Dim("batch", min=1, max=65536)
    with contextlib.redirect_stdout(io.StringIO()):  # the exporter prints progress lines
        program = torch.onnx.export(
            graph.converted,
            (sample,),
            dynamo=True,
            opset_version=opset,
            input_names=[graph.input_name],
            output_names=list(graph.output_names),
            dynamic_shapes=({0: batch},),
            optimize=True,
            verify=False,
        )
    model = program.model_proto
    set_onnx_metadata(model, graph.metadata.replace(precision="fp32"))
    onnx.save_model(model, str(path))
    check_onnx(path)
    return path


def write_onnx_metadata(path: str | os.PathLike[str], metadata: ModelMetadata) -> Path:
    """Rewrite the metadata of an existing ONNX file (used after quantisation)."""
    onnx = require("onnx")
    model = onnx.load_model(str(path))
    set_onnx_metadata(model, metadata)
    onnx.save_model(model, str(path))
    return Path(path)

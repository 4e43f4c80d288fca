"""PyTorch -> TFLite with litert-torch (no TensorFlow): fp32, and int8 via PT2E static quantisation.

Traps handled here (TOOLCHAIN.md): the sample input has batch 2 and a dynamic batch dimension, otherwise
the batch specialises to 1; activations are calibrated with MinMax observers over the whole calibration
set (the histogram default can clip), and the input observer is widened to [0, 1] so that no pixel value is
clipped. The PT2E route yields full-integer int8 input/output tensors; the flight loader quantises and
dequantises at the boundary with the scales stored in the file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from edgeae._optional import require

from .graphs import Graph
from .tflite_metadata import write_tflite_metadata

log = logging.getLogger(__name__)


def _dynamic(graph: Graph, wrapped: bool = True) -> Any:
    """``dynamic_shapes`` for a batch axis, or None for a graph converted with a static batch.

    The channels-last wrapper takes ``*args``, which needs one more level of nesting than the flat
    graph module that PT2E quantisation returns.
    """
    if graph.tflite_static_batch:
        return None
    torch = require("torch")
    dim = {0: torch.export.Dim("batch", min=1, max=65536)}
    return ((dim,),) if graph.tflite_layout == "NHWC" and wrapped else (dim,)


def _nhwc(x: np.ndarray, graph: Graph) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if graph.tflite_layout == "NHWC" else x


def _sample(graph: Graph) -> Any:
    torch = require("torch")
    return torch.from_numpy(_nhwc(graph.sample(graph.tflite_static_batch or 2), graph))


def _module(graph: Graph) -> Any:
    """The graph's module, wrapped for channels-last input/output when the TFLite layout is NHWC."""
    if graph.tflite_layout != "NHWC":
        return graph.converted
    litert_torch = require("litert_torch")
    return litert_torch.to_channel_last_io(graph.converted, args=[0], outputs=[0]).eval()


def _convert(graph: Graph, module: Any, path: Path, quant_config: Any = None, wrapped: bool = True) -> None:
    """Convert ``module`` (the wrapper when ``wrapped``, else an exported graph module) and write ``path``."""
    litert_torch = require("litert_torch")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        model = litert_torch.convert(
            module, (_sample(graph),), dynamic_shapes=_dynamic(graph, wrapped), quant_config=quant_config
        )
        model.export(str(path))


def export_tflite_fp32(graph: Graph, path: str | os.PathLike[str]) -> Path:
    """Convert ``graph`` to a float32 ``.tflite`` with a dynamic batch and embed its metadata."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _convert(graph, _module(graph), path)
    write_tflite_metadata(path, graph.tflite_metadata().replace(precision="fp32").to_json())
    return path


def _minmax_config() -> Any:
    """litert-torch's symmetric per-channel int8 config with MinMax activation observers."""
    pt2e = require("litert_torch.quantize.pt2e_quantizer")
    observers = require("torchao.quantization.pt2e")
    cfg = pt2e.get_symmetric_quantization_config(is_per_channel=True)
    act = dataclasses.replace(
        cfg.input_activation, observer_or_fake_quant_ctr=observers.MinMaxObserver.with_args(eps=2**-12)
    )
    return dataclasses.replace(cfg, input_activation=act, output_activation=act)


def _in_modules(node: Any, names: tuple[str, ...]) -> bool:
    """Whether an exported node was traced inside one of the submodules ``names`` (dotted paths)."""
    for value in node.meta.get("nn_module_stack", {}).values():
        path = str(value[0] if isinstance(value, tuple) else value)
        path = path.replace("L['self'].", "").replace("['", ".").replace("']", "")
        if any(path == n or path.endswith("." + n) for n in names):
            return True
    return False


def _quantizer(float_modules: tuple[str, ...]) -> Any:
    """litert-torch's PT2E quantizer that leaves the nodes of ``float_modules`` unannotated (float32: they
    read dequantised tensors). Its own ``set_module_name(name, None)`` refuses a None config."""
    pt2e = require("litert_torch.quantize.pt2e_quantizer")
    if not float_modules:
        return pt2e.PT2EQuantizer()

    class FloatHeadQuantizer(pt2e.PT2EQuantizer):  # type: ignore[name-defined]
        def _annotate_for_static_quantization_config(self, model: Any) -> Any:
            self._annotate_all_static_patterns(model, self.global_config, lambda n: not _in_modules(n, float_modules))
            return model

    return FloatHeadQuantizer()


LAYOUT_OPS = ("permute", "transpose", "view", "reshape", "clone", "contiguous")


def _widen_input_observers(prepared: Any, lo: float, hi: float) -> int:
    """Make every observer reading a graph input (directly or through layout ops) cover [lo, hi].

    Returns how many observers were widened.
    """
    torch = require("torch")
    n = 0
    todo = [node for node in prepared.graph.nodes if node.op == "placeholder"]
    seen = set()
    while todo:
        node = todo.pop()
        for user in node.users:
            if user in seen:
                continue
            seen.add(user)
            if user.op == "call_module":
                observer = prepared.get_submodule(user.target)
                if hasattr(observer, "min_val") and hasattr(observer, "max_val"):  # skip e.g. _guards_fn
                    observer(torch.tensor([lo, hi], dtype=torch.float32))
                    n += 1
            elif user.op == "call_function" and any(k in str(user.target) for k in LAYOUT_OPS):
                todo.append(user)
    return n


def export_tflite_int8(
    graph: Graph,
    path: str | os.PathLike[str],
    calibration: np.ndarray,  # float32 NCHW
    input_range: tuple[float, float] | None = (0.0, 1.0),
    batch: int = 16,
) -> Path:
    """PT2E static int8 (per-channel weights, MinMax activations over ``calibration``) -> ``.tflite``."""
    torch = require("torch")
    qcfg = require("litert_torch.quantize.quant_config")
    quantize_pt2e = require("torchao.quantization.pt2e.quantize_pt2e")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    exported = torch.export.export(_module(graph), (_sample(graph),), dynamic_shapes=_dynamic(graph)).module()
    quantizer = _quantizer(graph.float_modules).set_global(_minmax_config())
    prepared = quantize_pt2e.prepare_pt2e(exported, quantizer)
    batch = graph.tflite_static_batch or batch
    with torch.no_grad():
        for i in range(0, len(calibration), batch):
            chunk = np.asarray(calibration[i : i + batch], dtype=np.float32)
            prepared(torch.from_numpy(_nhwc(chunk, graph)))
    if input_range is not None and _widen_input_observers(prepared, *input_range) == 0:
        log.warning("%s: no input observer found; the int8 input range comes from calibration only", path)
    converted = quantize_pt2e.convert_pt2e(prepared, fold_quantize=False)
    with contextlib.suppress(AttributeError, ImportError):
        require("torchao.quantization.pt2e").move_exported_model_to_eval(converted)
    _convert(graph, converted, path, quant_config=qcfg.QuantConfig(pt2e_quantizer=quantizer), wrapped=False)
    write_tflite_metadata(path, graph.tflite_metadata().replace(precision="int8").to_json())
    return path


def tflite_input_range(path: str | os.PathLike[str]) -> tuple[float, float] | None:
    """Float range [lo, hi] of an int8/uint8 TFLite input tensor, or None for a float input."""
    interpreter = require("ai_edge_litert.interpreter")
    it = interpreter.Interpreter(model_path=str(path))
    d = it.get_input_details()[0]
    if d["dtype"] not in (np.int8, np.uint8):
        return None
    scale, zp = d["quantization"]
    info = np.iinfo(d["dtype"])
    return ((info.min - zp) * scale, (info.max - zp) * scale)

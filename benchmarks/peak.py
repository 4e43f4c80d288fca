"""The machine's physical limit: large fp32 and int8 matrix products in the runtimes the models run in.

onnxruntime runs both an fp32 ``MatMul`` and an int8 ``MatMulInteger`` (uint8 × int8 -> int32, the kernel
behind QDQ int8 convolutions on x86); torch runs an fp32 ``matmul``. Each is timed as the best of several
repeats (peak, not typical) and reported in GOP/s (one multiply-accumulate = 2 operations).

Also measured, as context for the TFLite scorer: LiteRT's own int8 peak, an int8 FULLY_CONNECTED of the same
size run by XNNPACK (``tflite_int8_gops``; the file is converted once with litert-torch and cached under
$EDGEAE_BENCH_ARTIFACTS/peak). On session 5's Intel Xeon (AMX tile units) both exceed 1 TOP/s per thread
(onnxruntime 1.0-1.1, LiteRT 2.1-2.2) while the VAE's small convolutions run at ~0.2 in either runtime.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import numpy as np


def _best_seconds(fn: Any, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _ort_matmul(n: int, integer: bool, threads: int) -> Any:
    import onnxruntime as ort
    from onnx import TensorProto, helper

    if integer:
        a = helper.make_tensor_value_info("a", TensorProto.UINT8, [n, n])
        b = helper.make_tensor_value_info("b", TensorProto.INT8, [n, n])
        y = helper.make_tensor_value_info("y", TensorProto.INT32, [n, n])
        node = helper.make_node("MatMulInteger", ["a", "b"], ["y"])
    else:
        a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n])
        b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [n, n])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, n])
        node = helper.make_node("MatMul", ["a", "b"], ["y"])
    graph = helper.make_graph([node], "peak", [a, b], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds: dict[str, np.ndarray]
    if integer:
        feeds = {
            "a": rng.integers(0, 255, (n, n), dtype=np.uint8),
            "b": rng.integers(-127, 127, (n, n), dtype=np.int8),
        }
    else:
        feeds = {"a": rng.random((n, n), dtype=np.float32), "b": rng.random((n, n), dtype=np.float32)}
    return lambda: sess.run(None, feeds)


def tflite_fc_file(n: int) -> Any:
    """An int8 (per-channel weights) n×n fully-connected layer with a static batch of n, as a ``.tflite``."""
    import io
    import os
    from pathlib import Path

    path = Path(os.environ.get("EDGEAE_BENCH_ARTIFACTS", "runs/bench-artifacts")) / "peak" / f"fc_int8_{n}.tflite"
    if path.is_file():
        return path
    import litert_torch
    import torch
    from litert_torch.quantize import pt2e_quantizer, quant_config
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    # seed 0's draws for the layer, its input and anything the conversion draws, as before, without touching the
    # caller's generator (STYLE: seeds passed in, never global)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        layer = torch.nn.Linear(n, n, bias=False).eval()
        x = torch.rand(n, n)
        quantizer = pt2e_quantizer.PT2EQuantizer().set_global(
            pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True)
        )
        prepared = prepare_pt2e(torch.export.export(layer, (x,)).module(), quantizer)
        prepared(x)
        converted = convert_pt2e(prepared, fold_quantize=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            model = litert_torch.convert(
                converted, (x,), quant_config=quant_config.QuantConfig(pt2e_quantizer=quantizer)
            )
            model.export(str(path))
    return path


def _tflite_fc(n: int, threads: int) -> Any:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(tflite_fc_file(n)), num_threads=threads)
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    if inp["dtype"] != np.int8:  # the converter keeps float I/O around the int8 layer: time the layer anyway
        x = np.random.default_rng(0).random(inp["shape"], dtype=np.float32)
    else:
        x = np.random.default_rng(0).integers(-127, 127, inp["shape"], dtype=np.int8)
    it.set_tensor(inp["index"], x)
    return it.invoke


def measure_peak(threads: int, n: int = 2048, repeats: int = 5) -> dict[str, float]:
    """GOP/s of fp32 and int8 matrix products of size n×n×n with ``threads`` threads."""
    ops = 2.0 * n**3
    out = {
        "ort_fp32_gops": ops / _best_seconds(_ort_matmul(n, False, threads), repeats) / 1e9,
        "ort_int8_gops": ops / _best_seconds(_ort_matmul(n, True, threads), repeats) / 1e9,
    }
    try:
        import torch

        torch.set_num_threads(threads)
        gen = torch.Generator().manual_seed(0)  # the values do not matter to the timing; the caller's RNG is left alone
        a = torch.rand(n, n, generator=gen)
        b = torch.rand(n, n, generator=gen)
        out["torch_fp32_gops"] = ops / _best_seconds(lambda: a @ b, repeats) / 1e9
    except ImportError:
        pass
    with contextlib.suppress(ImportError):  # LiteRT or litert-torch not installed
        out["tflite_int8_gops"] = ops / _best_seconds(_tflite_fc(n, threads), repeats) / 1e9
    return {k: round(v, 1) for k, v in out.items()}


if __name__ == "__main__":
    import json

    print(json.dumps({t: measure_peak(t) for t in (1, 2)}, indent=1))

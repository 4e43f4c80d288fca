"""ONNX -> ORT format (onnxruntime's flatbuffer format for minimal builds) plus its required-operators list.

``onnxruntime.tools.convert_onnx_models_to_ort`` writes ``<name>.ort`` and ``required_operators.config``;
the config lists exactly the operators a minimal onnxruntime build needs to run the model
(``build.sh --minimal_build --include_ops_by_config required_operators.config``). The edgeae metadata
survives the conversion (ORT keeps ``metadata_props``).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from pathlib import Path

from edgeae._optional import require


def convert_to_ort(onnx_path: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None) -> Path:
    """Write ``<stem>.ort`` and ``<stem>.required_operators.config`` next to the ONNX file (or in ``out_dir``).

    Uses the "Fixed" optimisation style: the graph is optimised once at conversion time, so the ORT file
    runs on a minimal build without runtime graph optimisations.
    """
    tool = require("onnxruntime.tools.convert_onnx_models_to_ort")
    src = Path(onnx_path)
    if not src.is_file():
        raise FileNotFoundError(f"ONNX model {src} does not exist")
    dest = Path(out_dir) if out_dir is not None else src.parent
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edgeae-ort-") as tmp:
        work = Path(tmp)
        shutil.copy2(src, work / src.name)
        with contextlib.redirect_stdout(io.StringIO()):
            tool.convert_onnx_models_to_ort(
                work / src.name,
                output_dir=work / "out",
                optimization_styles=[tool.OptimizationStyle.Fixed],
            )
        made = sorted((work / "out").glob("*.ort"))
        if not made:
            raise RuntimeError(f"{src}: convert_onnx_models_to_ort wrote no .ort file")
        ort_path = dest / f"{src.stem}.ort"
        shutil.copy2(made[0], ort_path)
        configs = sorted((work / "out").glob("*.config"))
        if configs:
            shutil.copy2(configs[0], dest / f"{src.stem}.required_operators.config")
    return ort_path

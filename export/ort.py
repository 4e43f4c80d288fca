"""ONNX -> ORT format (onnxruntime's flatbuffer format for minimal builds) plus its required-operators list.

``onnxruntime.tools.convert_onnx_models_to_ort`` writes ``<name>.ort`` and ``required_operators.config``;
the config lists exactly the operators a minimal onnxruntime build needs to run the model
(``build.sh --minimal_build --include_ops_by_config required_operators.config``). The edgeae metadata
survives the conversion (ORT keeps ``metadata_props``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from edgeae._optional import require

# the Python loggers of onnxruntime.tools that the conversion writes to (their names carry no package prefix)
TOOL_LOGGERS = ("ort_format_model", "convert_onnx_models_to_ort")


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
        with contextlib.redirect_stdout(io.StringIO()), _quiet_tool_loggers():
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
        if configs:  # its header names the model by the temporary path it was made at: name the file instead
            lines = configs[0].read_text().splitlines(keepends=True)
            named = [f"# - {ort_path.name}\n" if ln.startswith("# - ") else ln for ln in lines]
            (dest / f"{src.stem}.required_operators.config").write_text("".join(named))
    return ort_path


@contextlib.contextmanager
def _quiet_tool_loggers() -> Iterator[None]:
    """Keep the converter's INFO lines ("Created config in /tmp/...") out of a quiet run: its loggers set
    themselves to DEBUG (``onnxruntime.tools.logger.get_logger``); shown with ``-v`` (edgeae at DEBUG)."""
    if logging.getLogger("edgeae").isEnabledFor(logging.DEBUG):
        yield
        return
    names = [n for n in list(logging.root.manager.loggerDict) if n.startswith(TOOL_LOGGERS)]
    saved = {n: logging.getLogger(n).level for n in names}
    try:
        for n in names:
            logging.getLogger(n).setLevel(logging.WARNING)
        yield
    finally:
        for n, level in saved.items():
            logging.getLogger(n).setLevel(level)

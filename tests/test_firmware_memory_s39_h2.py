"""What the boot predicts of a scored frame's memory (session 39, h2), on a real HiRISE browse strip: a real boot of the
orbital mission and one frame scored at nominal grow the RSS by no more than the boot's prediction (what the loaded
models hold, measured after the interpreters ran, plus the frame's planned buffers) and the remaining error
docs/firmware_sim.md states ("What the boot predicts"): at most 3.0 MiB more in any run measured there (a TIFF at
sparse_only). This strip at nominal grew up to 3.1 MiB more while the plan counted its strips (h2); since it counts
the JPEG decoded whole (h6) it grows less than predicted, 3.8 MiB in onnxruntime and 5.2 in LiteRT (h9)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

STRIP = "orbital_gray/hirise_browse/ESP_073496_0985_RED.NOMAP.browse.jpg"  # 4559 x 2048 grey JPEG: the largest
# under-prediction measured
UNDER_MIB = 4.0  # the stated remaining error (3.1 MiB measured) with room for the allocator's rounding
MIB = 2**20


@pytest.mark.parametrize(("fmt", "module"), [("onnx", "onnxruntime"), ("tflite", "ai_edge_litert")])
def test_boot_and_one_scored_frame_stay_within_the_prediction(
    tmp_path: Path, data_root: Path, fmt: str, module: str
) -> None:
    pytest.importorskip(module)
    frame = data_root / STRIP
    if not frame.is_file():
        pytest.skip(f"the HiRISE browse strip is not in the data: {frame}")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "edgeae.firmware_sim.cli", "run", "--mission", "orbital_nac", "--frames", str(frame),
           "--out", str(out), "--set", "camera.width=2048", "--set", "camera.height=4559",
           "--set", f'anomaly.prefer=["{fmt}"]', "--set", "budget.memory_bytes=268435456"]  # fmt: skip
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [json.loads(x) for x in (out / "telemetry.jsonl").read_text().splitlines()]
    loaded = next(x for x in lines if x.get("kind") == "memory_loaded")
    (rec,) = [x for x in lines if "status" in x and "source" in x]
    assert rec["status"] == "processed" and rec["level"]["name"] == "nominal", rec
    predicted, growth = int(rec["memory_predicted"]), int(rec["memory"]["rss_growth_peak"])
    # the prediction is what the boot held (the interpreters' arenas included) plus the nominal plan
    assert abs(predicted - int(rec["memory_plan"]) - int(loaded["held"])) < 2 * MIB, (loaded, rec)
    assert growth <= predicted + UNDER_MIB * MIB, (fmt, growth / MIB, predicted / MIB)

"""The boot's memory advice for a fixed camera (session 39, fixer h9; review r3 #1): the boot starts the sample codec
(libaec) before it measures what the models hold, and its "N MiB to score every patch" adds what the loop's heap grows
by over the first frames. Until then the held RSS rose 1.0-2.4 MiB during the first frame (the codec imported, the
first decode's heap) and at the advised budget only the first frame was scored."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _helpers_firmware import frame_records, run_flight

MIB = 2**20
ENV = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
ROWS = 1024  # the NAC-like frames' height: 2048 in the flight-install benchmark (the same advice, 4 s more)


def test_the_boot_starts_the_sample_codec_before_it_measures_what_the_models_hold(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("imagecodecs")
    code = f"""
import argparse, sys
from edgeae.firmware_sim.cli_overrides import _mission_with_overrides
from edgeae.firmware_sim.loop import FlightRuntime
sets = ['anomaly.prefer=["onnx"]', "downlink.codec=ccsds121", "camera.height=2048", "budget.memory_bytes=268435456"]
ns = argparse.Namespace(mission="orbital_nac", set=sets,
                        anomaly_model=None, recon_model=None, threads=None, frame_ms=None)
rt = FlightRuntime(_mission_with_overrides(ns), {str(tmp_path / "out")!r}, frame_types={{".jpg"}})
print(sorted(m for m in ("imagecodecs._aec", "edgeae.bayer", "mmap") if m in sys.modules))
rt.release()
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=ENV)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split("\n")[-2] == str(["edgeae.bayer", "imagecodecs._aec", "mmap"]), r.stdout


def test_at_the_budget_the_boot_advises_for_scoring_every_frame_is_scored(tmp_path: Path) -> None:
    """The orbital mission in onnxruntime on a NAC-like strip camera 5064 px wide (the flight-install benchmark's
    frames, shorter): the JPEG, then the PNG, whose plan is the larger, once the first frame grew the loop's heap
    (0.6-1.2 MiB; until session 39 the advice was what the boot held and the nominal plan, rounded up to whole MiB,
    and at it the second frame went to sparse_only whenever the rounding left less than that rise)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("imagecodecs")
    from PIL import Image

    y, x = np.mgrid[0:ROWS, 0:5064]
    img = np.clip(127 + 64 * np.sin(x / 37.0) * np.cos(y / 23.0) + np.random.default_rng(0).normal(0, 13, y.shape),
                  5, 247).astype(np.uint8)  # fmt: skip
    frames = [tmp_path / "nac.jpg", tmp_path / "nac.png"]
    Image.fromarray(img).save(frames[0], quality=95)
    Image.fromarray(img).save(frames[1], compress_level=1)
    sets = (f"camera.height={ROWS}", "camera.width=5064")
    refused = run_flight(tmp_path, "orbital_nac", frames, *sets, "budget.memory_bytes=40000000")
    said = re.search(r"holds ([\d,]+) B over .* (\d+) MiB to score every patch \(([\d,]+) B of buffers", refused.stderr)
    assert refused.returncode == 2 and said, refused.stderr[-2000:]
    held, advised, plan = (int(v.replace(",", "")) for v in said.groups())
    assert advised * MIB - held - plan >= MIB  # the heap's rise over the first frames, whatever the rounding left
    r = run_flight(tmp_path, "orbital_nac", frames, *sets, f"budget.memory_bytes={advised * MIB}")
    assert r.returncode == 0, r.stderr[-2000:]
    levels = [(f["status"], f.get("level", {}).get("name")) for f in frame_records(tmp_path)]
    assert levels == [("processed", "nominal")] * 2, (advised, levels)

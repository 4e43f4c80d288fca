"""Session 40, fixer h7 (review r1 #1, #3, #4): the memory figures the boot and ``check`` advise for frames decoded
whole (PNG, JPEG, PNM) let those frames fly.

1. The boot planned their decode with the file's bytes 0, the frame check counts them (a PNG's twice): at the
   advised floor every PNG frame of the orbital mission was dropped ``memory_budget``. A run tells the boot the
   largest file of each such type among its --frames (``stat`` only); ``check`` plans a stated bound, or
   ``--frame-bytes``, and prints which.
2. ``HELD_RISE`` (2 MiB, measured on TIFF strips) was under a JPEG run's 2.3-2.7 MiB: at the floor frames after the
   second were dropped. Measured on JPEG, PNG and TIFF: 3.5 MiB.
3. ``check`` said "every frame ... would be dropped" where the first frame fits (it flies, the next are dropped), and
   so told nothing (every decoder loaded) where a run of one type holds less.
4. A run of PNG and JPEG frames was advised the JPEG's figures (the type that takes least).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _helpers_firmware import ADVICE_HELD, advice_mission, advice_runtime

pytest.importorskip("onnx")

MIB = 2**20
HELD = ADVICE_HELD


_mission, _rt = advice_mission, advice_runtime  # tests/_helpers_firmware.py


def _refusal(m: Any, types: set[str], sizes: dict[str, int] | None = None) -> str:
    from edgeae.firmware_sim.frame_intake import check_loaded_memory
    from edgeae.firmware_sim.mission import MissionError

    with pytest.raises(MissionError) as err:
        check_loaded_memory(_rt(m, types, sizes))
    return str(err.value)


def _floor(text: str) -> int:
    found = re.search(r"at least (\d+) MiB for frames with no patch scored", text) or re.search(
        r"raise \[budget\] memory_bytes to at least (\d+) MiB", text
    )
    assert found, text
    return int(found.group(1))


def test_the_boot_plans_the_largest_file_a_run_names_a_png_twice(tmp_path: Path) -> None:
    from edgeae.firmware_sim.boot_memory import HELD_RISE, largest_files

    for name, size in (("a.png", 3 * MIB), ("b.PNG", 5 * MIB), ("c.jpg", 2 * MIB), ("d.tif", 50 * MIB)):
        (tmp_path / name).write_bytes(b"\0" * size)
    sizes = largest_files([tmp_path / n for n in ("a.png", "b.PNG", "c.jpg", "d.tif", "gone.png")])
    assert sizes == {".png": 5 * MIB, ".jpg": 2 * MIB}  # stat only; a TIFF is read in strips; a missing file: none
    m = _mission(tmp_path, MIB)
    decoded = m.camera.height * m.camera.width  # 8 MiB, grey 8-bit
    small, large = _floor(_refusal(m, {".png"}, {".png": MIB})), _floor(_refusal(m, {".png"}, sizes))
    assert large - small == 8  # 4 MiB more file bytes, twice at a PNG's decode peak
    assert large == -(-(HELD + HELD_RISE + decoded + 2 * 5 * MIB) // MIB)  # the decode peak is the frame's need
    # not told the sizes: the stated bound (the image's bytes + 1/64 + 64 KiB), above any of those files
    assert _floor(_refusal(m, {".png"})) > large


def test_a_run_of_png_and_jpeg_is_advised_the_png_s_figure_and_refused_by_the_jpeg_s(tmp_path: Path) -> None:
    """Review r1 #4: the boot planned the type that takes least (the JPEG) for every figure."""
    m = _mission(tmp_path, MIB)
    sizes = {".png": 6 * MIB, ".jpg": MIB}
    both, jpeg, png = (_refusal(m, t, sizes) for t in ({".png", ".jpg"}, {".jpg"}, {".png"}))
    assert _floor(both) == _floor(jpeg) < _floor(png)  # no frame can fly: judged by the type that takes least
    scored = re.search(r"(\d+) MiB to score every patch", both)
    assert scored and int(scored.group(1)) >= _floor(png), both  # scoring every frame: the PNG's need


def test_check_says_frames_after_the_first_where_the_first_fits(tmp_path: Path) -> None:
    """Review r1 #3: at a budget the first frame fits but not the heap's rise, check said every frame would be
    dropped; the run flew the first and dropped the next."""
    from edgeae.firmware_sim.boot_memory import HELD_RISE, frame_plans
    from edgeae.firmware_sim.budget import LADDER
    from edgeae.firmware_sim.cli_advice import _memory_level_lines
    from edgeae.firmware_sim.frame_intake import level_plan

    m = _mission(tmp_path, MIB)
    sizes = {".jpg": MIB}
    [(_, plan, note)] = frame_plans(_rt(m, {".jpg"}, sizes), m.camera.width, m.camera.height)
    assert note == "its file's bytes 1,048,576 B (the largest .jpg)"
    least = level_plan(plan, LADDER[-1]).total
    m = dataclasses.replace(m, budget=dataclasses.replace(m.budget, memory_bytes=HELD + least + HELD_RISE // 2))
    [line] = _memory_level_lines(_rt(m, {".jpg"}, sizes), plan, HELD)
    assert "frames of this size after the first may be dropped (memory_budget)" in line, line
    assert line.endswith(f"at least {-(-(HELD + HELD_RISE + least) // MIB)} MiB"), line
    # under the first frame's need too: every frame
    m = dataclasses.replace(m, budget=dataclasses.replace(m.budget, memory_bytes=HELD + least - MIB))
    [line] = _memory_level_lines(_rt(m, {".jpg"}, sizes), plan, HELD)
    assert "every frame of this size would be dropped (memory_budget)" in line, line


SETS = ["--set", "camera.width=2048", "--set", "camera.height=4559", "--set", 'anomaly.prefer=["onnx"]',
        "--set", "budget.board_memory=budget-only"]  # fmt: skip
BROWSE = "orbital_gray/hirise_browse/ESP_073496_0985_RED.NOMAP.browse.jpg"  # 4559 x 2048 grey, 3,586,015 B


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "edgeae.firmware_sim.cli", *args]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)


def test_check_prints_the_file_bytes_it_plans(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    base = ["check", "--mission", "orbital_nac", *SETS, "--set", f"budget.memory_bytes={2**30}", "--frame-type", "png"]
    told, bound = _cli(*base, "--frame-bytes", "5882972"), _cli(*base)
    assert told.returncode == 0 and bound.returncode == 0, told.stderr + bound.stderr
    assert "its file's bytes 5,882,972 B (the largest .png)" in told.stdout, told.stdout
    assert "decoding it whole peaks at 21,102,776 B" in told.stdout  # 9,336,832 decoded + 2 x the file: the run's
    assert "its file's bytes assumed at most 9,548,256 B (the decoded image's + 1/64 + 64 KiB" in bound.stdout
    bad = _cli(*base, "--frame-bytes", "-1")
    assert bad.returncode == 2 and "--frame-bytes -1: a frame file's bytes, at least 1" in bad.stderr, bad.stderr


def test_real_jpeg_frames_at_the_boots_sparse_only_floor_are_none_dropped(tmp_path: Path) -> None:
    """Review r1 #1: at the floor the boot advised (63 MiB then) the first two frames of four ran sparse_only and the
    next were dropped memory_budget. The floor is the boot's own (refused at 32 MiB), never this machine's figure:
    a machine whose onnxruntime holds more is advised more."""
    pytest.importorskip("onnxruntime")
    from edgeae.data import find_data_root

    root = find_data_root()
    frame = root / BROWSE if root is not None else None
    if frame is None or not frame.is_file():
        pytest.skip(f"the real HiRISE browse JPEG is not here ({BROWSE} under the data root): no real-data check")
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(4):  # copies of one frame, as links: no data copied
        (frames / f"f{i}.jpg").symlink_to(frame)
    run = ["run", "--mission", "orbital_nac", *SETS, "--frames", str(frames)]
    refused = _cli(*run, "--set", f"budget.memory_bytes={32 * MIB}", "--out", str(tmp_path / "refused"))
    assert refused.returncode == 2, refused.stderr[-2000:]
    floor = _floor(refused.stderr)
    out = tmp_path / "out"
    r = _cli(*run, "--set", f"budget.memory_bytes={floor * MIB}", "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    recs = [json.loads(x) for x in (out / "telemetry.jsonl").read_text().splitlines()]
    recs = [x for x in recs if "status" in x and "source" in x]
    assert len(recs) == 4 and all(x["status"] == "processed" for x in recs), [
        (x["status"], x.get("detail")) for x in recs
    ]

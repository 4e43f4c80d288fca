"""Session 40: ``firmware-sim check --frame-type`` tells the check the frame types a run will read (a run takes them
from --frames): only their decoders load and the plan is theirs, so a JPEG strip camera's verdict is the decoded-whole
plan the run will use, not the strips' plan (fixer h1 added both verdicts for a check told nothing)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("onnxruntime")

SETS = ["--set", "camera.width=2048", "--set", "camera.height=4559", "--set", 'anomaly.prefer=["onnx"]',
        "--set", "budget.board_memory=budget-only", "--set", f"budget.memory_bytes={2**30}"]  # fmt: skip


def _check(*extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "edgeae.firmware_sim.cli", "check", "--mission", "orbital_nac", *SETS, *extra]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)


def test_a_jpeg_run_is_checked_by_its_decoded_whole_plan_alone() -> None:
    told, untold = _check("--frame-type", "JPG"), _check()
    assert told.returncode == 0 and untold.returncode == 0, told.stderr + untold.stderr
    assert "frame_decoded 9,336,832" in told.stdout and "reader_band" not in told.stdout, told.stdout
    assert "PNG, JPEG or PNM frames (decoded whole)" not in told.stdout  # one verdict: the run's
    assert "every frame type's decoder loaded" not in told.stdout + told.stderr
    both = untold.stdout + untold.stderr
    assert "reader_band" in both and "PNG, JPEG or PNM frames (decoded whole)" in both


def test_an_unknown_frame_type_is_a_user_error_naming_the_known_ones() -> None:
    r = _check("--frame-type", ".bmp", "--frame-type", "tif")
    assert r.returncode == 2 and "--frame-type .bmp: not a frame type; expected one of" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and ".tif" in r.stderr


def test_packet_advice_names_the_product_from_the_refusal_itself() -> None:
    """Review r1 of session 40: reading ``.packets`` lost the product's number ("sparse product needs ..."); the
    refusal carries its kind and frame id too."""
    from edgeae.firmware_sim.mission import load_mission
    from edgeae.firmware_sim.packet_check import packet_advice

    from edgeae.wire.sparse_plan import TooManyPackets, too_many_packets

    m = load_mission("orbital_nac")
    exc = TooManyPackets("front end: " + too_many_packets("sparse", 7, 70000), 70000, "sparse", 7)
    got = packet_advice(m, exc)
    assert got.startswith("sparse product 7 needs 70,000 packets, over the 65,535 a product can have, after coding")
    assert "lower [sampling] keep" in got
    assert packet_advice(m, too_many_packets("patch", 3, 66000)).startswith("patch product 3 needs 66,000 packets")


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--frame-bytes", "0"], "--frame-bytes 0: a frame file's bytes, at least 1"),
        (["--frame-bytes", str(10**14)], "twice the most a frame decodes to"),
        (["--frame-type", ".tif", "--frame-bytes", "100"], "the --frame-type .tif frames are read in strips"),
    ],
)
def test_frame_bytes_that_cannot_apply_are_refused(extra: list[str], says: str) -> None:
    """Review r3 #5 of session 40: 0, absurd sizes and a TIFF-only run's --frame-bytes were taken silently."""
    r = _check(*extra)
    assert r.returncode == 2 and says in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_the_runs_boot_plans_a_tiffs_reader_by_what_its_header_states(tmp_path: Path) -> None:
    """Since session 40 a frame's plan takes its TIFF reader's own figure (``reader_bytes``); the run's boot now does
    too, from the headers of its largest TIFF frames (it planned 2.5 bands: under a big-endian LZW strip's 3.4)."""
    import numpy as np
    import tifffile
    from edgeae.firmware_sim.boot_memory import boot_plan, tiff_reader_bytes
    from edgeae.firmware_sim.frames import TiffFrame
    from edgeae.firmware_sim.mission import load_mission

    a = np.random.default_rng(0).integers(0, 255, (256, 512), np.uint16)
    tifffile.imwrite(tmp_path / "raw.tif", a, rowsperstrip=64)
    tifffile.imwrite(tmp_path / "be_lzw.tif", a, rowsperstrip=64, compression="lzw", byteorder=">")
    (tmp_path / "broken.tif").write_bytes(b"II*\x00garbage")
    (tmp_path / "f.png").write_bytes(b"not read")
    paths = sorted(tmp_path.iterdir())
    want = max(TiffFrame(tmp_path / n).reader_bytes for n in ("raw.tif", "be_lzw.tif"))
    assert tiff_reader_bytes(paths) == want and tiff_reader_bytes([tmp_path / "f.png"]) is None
    m = load_mission("orbital_nac")
    rt = SimpleNamespace(m=m, _model_bytes=lambda: 0, frame_types={".tif"}, frame_bytes=None, reader_bytes=want)
    plan, mixed = boot_plan(rt, 512, 256)  # type: ignore[arg-type]
    assert mixed is None and dict(plan.items)["reader_band"] == want
    rt.reader_bytes = None  # not told: the bands as before
    assert dict(boot_plan(rt, 512, 256)[0].items)["reader_band"] != want  # type: ignore[arg-type]

"""Session-36 fixer g3 in the flight runtime (audit a3): a camera size is bounded when the mission is read, and the
reconstruction check's tiles are computed without listing the tile grid (item 1); the small items (a boot that takes
no frame saves its recovery, the machine on the start line, the bench table's machine and p50 throughput, the no-data
mask's stage, frame_costs' frame lines). Items 2-4 (memory) are in test_firmware_memory_s36_g3.py."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeae.tiling import axis_starts


# ------------------------------------------------------------ item 1: a huge camera is refused in one line
@pytest.mark.parametrize(
    ("sets", "says"),
    [
        (["camera.height=99999999999", "camera.width=99999999999"], "height must be in 0..1,048,576 px"),
        (["camera.width=1048577"], "width must be in 0..1,048,576 px"),
        (["camera.height=1048576", "camera.width=1048576"], "is over 4,294,967,296 px (2^32) for one frame"),
        (["camera.strip_rows=99999999999"], "strip_rows must be in 1..1,048,576"),
    ],
)
def test_a_huge_camera_is_refused_in_one_line_before_anything_loads(sets: list[str], says: str) -> None:
    """``check --set camera.height=99999999999`` grew to 22.6 GB and was killed (no output): the sides were
    only checked to be >= 0, and the recon warm-up listed the whole tile grid. Run in a child process capped at 2 GiB
    of address space (RLIMIT_AS), so that a regression fails with MemoryError instead of taking the test host down
    (review r9 of session 36: in-process it was killed, rc 137, with no result)."""
    import resource
    import subprocess
    import sys

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    args = ["check", "--mission", "rover_mastcamz"]
    for s in sets:
        args += ["--set", s]
    # "before anything loads": no interpreter imported when the refusal exits (review r13 of session 36: only a
    # 60 s timeout was left, so a regression that loaded the models first, 1.3 s here, passed)
    child = (
        "import atexit, sys\n"
        "atexit.register(lambda: print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('onnxruntime', 'tflite_runtime', 'ai_edge_litert', 'torch'))))\n"
        f"from edgeae.firmware_sim.cli import main\nsys.exit(main({args!r}))\n"
    )
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60, preexec_fn=cap)
    took = time.perf_counter() - t0
    err = done.stderr.strip()
    assert done.returncode == 2, err
    assert len(err.splitlines()) == 1 and "[camera]" in err and says in err, err
    assert done.stdout.strip() == "[]", done.stdout  # no interpreter loaded
    assert took < 15.0  # the child's interpreter start included (0.6 s here)


def test_the_largest_camera_accepted_is_one_the_plan_handles() -> None:
    from edgeae.firmware_sim.budget import plan_memory
    from edgeae.firmware_sim.mission import mission_from_dict

    m = mission_from_dict(
        {
            "name": "big",
            "camera": {"height": 2**20, "width": 4096, "channels": 3},
            "anomaly": {"model": "m.onnx"},
            "reconstruction": {"mode": "check", "model": "c.onnx", "check_tiles": 10**9},
        }
    )
    t = time.perf_counter()
    plan = dict(plan_memory(m, 4096, 2**20, 0, 3).items)
    assert time.perf_counter() - t < 0.5
    every_cell = (2**20 // 128) * (4096 // 128) * 128 * 128 * 3 * 17  # counted, with the engine's batches beside
    assert plan["recon_tiles_f32"] - plan["patch_batch_f32"] == every_cell


def _listed(rows: int, width: int, tile: int, n: int) -> list[tuple[int, int]]:
    """The positions as they were computed until session 36 (both axes listed)."""
    if rows < tile or width < tile or n < 1:
        return []
    ys, xs = axis_starts(rows, tile, tile), axis_starts(width, tile, tile)
    cells = len(ys) * len(xs)
    picks = np.unique(np.rint(np.linspace(0, cells - 1, min(n, cells))).astype(np.int64))
    return [(ys[int(i) // len(xs)], xs[int(i) % len(xs)]) for i in picks]


def test_recon_check_positions_are_computed_without_the_grid() -> None:
    """The same positions as listing both axes, on many sizes; a 2^20 x 4096 camera's take no time or memory."""
    from edgeae.firmware_sim.budget import recon_check_count, recon_check_positions

    rng = np.random.default_rng(3)
    for _ in range(300):
        rows, width = (int(v) for v in rng.integers(1, 2000, 2))
        tile, n = int(rng.choice([8, 32, 64, 128, 300])), int(rng.integers(0, 40))
        got = recon_check_positions(rows, width, tile, n)
        assert got == _listed(rows, width, tile, n), (rows, width, tile, n)
        assert recon_check_count(rows, width, tile, n) == len(got)
    t = time.perf_counter()
    big = recon_check_positions(2**20, 4096, 8, 3)
    assert big == [(0, 0), (2**19, 0), (2**20 - 8, 4096 - 8)]  # the middle cell is 33,554,432 of 512 a row
    assert recon_check_count(2**20, 4096, 8, 10**12) == (2**20 // 8) * (4096 // 8)
    assert time.perf_counter() - t < 0.5


# ------------------------------------------------------------ helpers
@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from edgeae.firmware_sim.testing import tiny_models

    return tiny_models(tmp_path_factory.mktemp("models"))


def _lines(out: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (out / "telemetry.jsonl").read_text().splitlines() if x.strip()]


def _mission(models: dict[str, Path], **sections: dict[str, Any]) -> Any:
    from edgeae.firmware_sim.testing import small_mission

    return small_mission(models, reconstruction={"mode": "off"}, **sections)


# ------------------------------------------------------------ item 5: the small ones
def test_a_boot_that_takes_no_frame_saves_what_its_recovery_found(tmp_path: Path, models: dict[str, Path]) -> None:
    """An item file gone at boot was marked evicted in memory only: a boot that took no frame never saved the index,
    so the item stayed pending on disk until a later boot saved it."""
    from edgeae.firmware_sim.loop import FlightRuntime
    from edgeae.firmware_sim.testing import textured_frame

    mission = _mission(models, budget={"downlink_bytes_per_pass": 0})
    out = tmp_path / "out"
    np.save(tmp_path / "f.npy", textured_frame(0))
    FlightRuntime(mission, out).run([tmp_path / "f.npy"])
    index = out / "queue" / "index.json"
    gone = next(it for it in json.loads(index.read_text())["items"] if it["status"] == "pending")
    (out / "queue" / "items" / f"{gone['id']:08d}.pkt").unlink()
    FlightRuntime(mission, out).close()  # boots, takes no frame, writes no summary
    saved = {it["id"]: it for it in json.loads(index.read_text())["items"]}
    assert gone["id"] not in saved or saved[gone["id"]]["status"] == "evicted", saved.get(gone["id"])
    FlightRuntime(mission, out).close()
    assert [x["lost"] for x in _lines(out) if x["type"] == "recovery"] == [[gone["id"]], []]


def test_the_start_line_records_the_machine_and_versions(tmp_path: Path, models: dict[str, Path]) -> None:
    """A frame time could not be judged afterwards: no CPU, cores, load or versions anywhere in a run's outputs."""
    from edgeae.firmware_sim.loop import FlightRuntime

    FlightRuntime(_mission(models), tmp_path / "out").close()
    (start,) = [x for x in _lines(tmp_path / "out") if x["type"] == "start"]
    machine = start["machine"]
    assert machine["cpus"] >= 1 and "cpu_model" in machine["cpu"] and "loadavg_1min" in machine
    assert machine["versions"]["numpy"] == np.__version__ and "python" in machine["versions"]


def test_the_bench_table_names_the_machine_and_its_throughput_follows_the_p50_rows() -> None:
    """The table's throughput used the mean while its rows show p50s (a bimodal infer: 6.25 ms p50, 4.58 mean, so
    3,493 patches/s did not follow from 16 patches in 6.25 ms); CPU model and versions were only in --json."""
    from edgeae.firmware_sim.bench import STAGES, format_table

    stages = {s: {"p50": 0.0, "p90": 0.0, "p99": 0.0, "mean": 0.0, "n": 30} for s in STAGES}
    stages["infer"] = {"p50": 6.25, "p90": 6.3, "p99": 6.4, "mean": 4.58, "n": 30}
    run = {"threads": 1, "stages_ms": stages, "patches_per_s": 16 / 4.58e-3, "patches_per_s_p50": 16 / 6.25e-3,
           "patches_per_cpu_s": 3000.0, "batch": 16, "patch": 64, "load_ms": 3.0}  # fmt: skip
    result = {
        "artifact": "/m/vae.tflite", "runtime": "litert", "runs": [run],
        "memory": {"traced_peak_bytes": 1, "rss_peak_bytes": 2},
        "machine": {"cpu": {"cpu_model": "AMD EPYC", "machine": "x86_64", "vnni": True}, "cpus": 2,
                    "loadavg_1min": 0.4},
        "versions": {"python": "3.11.7", "numpy": "2.4.6", "edgeae": "0.1.0"},
    }  # fmt: skip
    text = format_table(result)
    assert "machine: AMD EPYC (x86_64, 2 CPUs, VNNI), python 3.11.7, numpy 2.4.6, edgeae 0.1.0" in text
    line = next(x for x in text.splitlines() if "throughput" in x)
    assert "2560.0 patches/s wall (normalise + infer + score) at the p50s above, 3493.4 at their mean" in line, line


def test_the_no_data_mask_is_timed_as_a_stage_of_its_own(tmp_path: Path, models: dict[str, Path]) -> None:
    """``frame_work._valid`` ran outside every timer: 15-30 % of a rover frame in no named stage."""
    from edgeae.firmware_sim.loop import FlightRuntime
    from edgeae.firmware_sim.testing import textured_frame

    rt = FlightRuntime(_mission(models, budget={"frame_ms": 1e6}), tmp_path / "out")
    np.save(tmp_path / "f.npy", textured_frame(0))
    rec = rt.process(tmp_path / "f.npy")
    rt.finish()
    t = rec["timing_ms"]
    assert rec["level"]["name"] == "nominal" and t["nodata"] > 0, t
    assert set(t) >= {"read", "validate", "sample", "nodata", "score", "products", "total"}


def test_frame_costs_reads_the_frame_lines(tmp_path: Path) -> None:
    """It filtered on "timings_ms", a key no line has, so per_frame_cpu_ms was the first five lines of any type."""
    from benchmarks.frame_costs import _summary

    summary = {
        "frames": {"dropped": 0}, "timing_ms": {"p50": 1000.0, "deadline_missed": 0}, "budgets": {"memory_bytes": 1},
        "memory": {"rss_peak_bytes": 1},
    }  # fmt: skip
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    lines = [{"type": "start"}, {"type": "event", "kind": "memory_plan"}, {"type": "frame", "frame_id": 0,
             "timing_ms": {"total": 9.0}, "cpu_ms": 714.1}, {"type": "pass"}]  # fmt: skip
    (tmp_path / "telemetry.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert _summary(tmp_path, 10, 1)["per_frame_cpu_ms"] == [714.1]

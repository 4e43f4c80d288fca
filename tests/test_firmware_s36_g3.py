"""Session-36 fixer g3 in the flight runtime (audit a3): a camera size is bounded when the mission is read, and
the reconstruction check's tiles are computed without listing the tile grid."""

from __future__ import annotations

import time

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
def test_a_huge_camera_is_refused_in_one_line_before_anything_loads(
    sets: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``check --set camera.height=99999999999`` grew to 22.6 GB and was killed (no output): the sides were
    only checked to be >= 0, and the recon warm-up listed the whole tile grid."""
    from edgeae.firmware_sim.cli import main

    argv = ["check", "--mission", "rover_mastcamz"]
    for s in sets:
        argv += ["--set", s]
    t = time.perf_counter()
    assert main(argv) == 2
    assert time.perf_counter() - t < 5
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "[camera]" in err and says in err, err


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
    assert plan["recon_tiles_f32"] == (2**20 // 128) * (4096 // 128) * 128 * 128 * 3 * 17  # every cell, counted


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

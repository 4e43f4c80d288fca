"""Session 39 (h10): ``edgeae downlink simulate --compare j2k-tiled`` and ``downlink plan``'s j2k-tiled method had no
way to set the tile side (``--j2k-tile``), and the science_oracle stage ran no j2k-tiled rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("imagecodecs")
pytest.importorskip("cv2")

from edgeae.cli import main


def _png(tmp_path: Path, h: int = 128, w: int = 192) -> Path:
    from PIL import Image

    y, x = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(0)
    a = np.stack([(x + y) % 200 + 20 + 10 * c for c in range(3)], -1) + rng.integers(0, 30, (h, w, 3))
    path = tmp_path / "scene.png"
    Image.fromarray(a.clip(0, 255).astype(np.uint8)).save(path)
    return path


def _simulate(tmp_path: Path, *extra: str) -> int:
    argv = ["downlink", "simulate", "--image", str(_png(tmp_path)), "--keep", "0.3", "--out", str(tmp_path / "rx.bin"),
            "--no-progress", "--force", *extra]  # fmt: skip
    return main(argv)


def test_compare_j2k_tile_sets_the_tile_side(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _simulate(tmp_path, "--compare", "jpeg2000,j2k-tiled", "--j2k-tile", "64") == 0
    rep = json.loads((tmp_path / "rx.json").read_text())
    row = next(r for r in rep["compare"] if r["method"] == "j2k-tiled")
    assert (row["tile"], row["tiles"]) == (64, 6) and row["wire_bytes"] <= rep["wire_bytes"]
    assert row["packets"] == 6 * 3  # its ~2,990-byte share is three whole packets a tile
    capsys.readouterr()
    assert _simulate(tmp_path, "--compare", "j2k-tiled") == 0  # default: a tile per packet
    row = json.loads((tmp_path / "rx.json").read_text())["compare"][1]
    assert row["tile"] == 32 and row["tiles"] == row["packets"] == 24


@pytest.mark.parametrize(
    ("extra", "said"),
    [(("--compare", "jpeg2000", "--j2k-tile", "32"),
      "--j2k-tile sets the tile side of --compare j2k-tiled, which --compare does not name"),
     (("--j2k-tile", "32",), "--j2k-tile sets the tile side of --compare j2k-tiled"),
     (("--compare", "j2k-tiled", "--j2k-tile", "8"), "--j2k-tile 8: a JPEG 2000 tile side is at least 16 px")],
)  # fmt: skip
def test_compare_refuses_a_j2k_tile_it_cannot_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: tuple[str, ...], said: str
) -> None:
    assert _simulate(tmp_path, *extra) == 2
    assert said in capsys.readouterr().err and not (tmp_path / "rx.bin").exists()


class _Planned(Exception):
    pass


def test_plan_j2k_tile_reaches_the_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import edgeae.cli.downlink_plan as dp

    def stop(args, cfg, *rest):  # the plan's config, before any model is loaded
        raise _Planned(cfg)

    monkeypatch.setattr(dp, "_plan_image", stop)
    base = ["downlink", "plan", "--image", str(_png(tmp_path)), "--links", "perfect"]
    with pytest.raises(_Planned) as got:
        main([*base, "--j2k-tile", "48"])
    assert got.value.args[0].j2k_tile == 48
    with pytest.raises(_Planned) as got:
        main(base)
    assert got.value.args[0].j2k_tile == 0  # a tile per packet
    assert main([*base, "--j2k-tile", "8"]) == 2
    assert "--j2k-tile: j2k_tile must be 0 (one tile per packet) or at least 16 px, got 8" in capsys.readouterr().err
    assert main([*base, "--methods", "jpeg2000,sparse", "--j2k-tile", "48"]) == 2
    assert "--j2k-tile sets the tile side of the j2k-tiled method" in capsys.readouterr().err


def test_science_oracle_stage_runs_j2k_tiled() -> None:
    from benchmarks.stages import STAGES

    stage = STAGES["science_oracle"]
    for cmd in (*stage.quick, *stage.full):
        methods = cmd[cmd.index("--methods") + 1].split(",")
        assert "j2k-tiled" in methods and "jpeg2000" in methods

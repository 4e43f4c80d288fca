"""The flight install can fly: a fresh venv with only a flight extra runs both missions and the bench.

Slow (a pip install per extra, 1-4 minutes each); ``python -m benchmarks.flight_install`` is the same
measurement as a benchmark and writes the sizes to ``benchmarks/results/flight_install``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.mark.slow
@pytest.mark.parametrize("extra", ["flight-tflite", "flight-onnx"])
def test_flight_extra_runs_both_missions_without_opencv(tmp_path: Path, extra: str) -> None:
    from benchmarks.flight_install import BUDGET_MB, main

    rc = main(["--extras", extra, "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out")])
    r = json.loads((tmp_path / "out" / "flight_install.json").read_text())["results"][0]
    assert r["pip_ok"], r.get("pip_error")
    assert r["heavy_modules_present"] == []  # no OpenCV, torch or Pillow came with it
    for mission, run in r["missions"].items():
        if extra == "flight-onnx" and mission == "orbital_nac":
            # a stated shortfall (README, docs/firmware_sim.md): onnxruntime's sessions hold ~52 MiB of the orbital
            # mission's 64 MiB. Where no frame fits (a machine whose interpreters hold more: the CI machine's held 7 MiB
            # more) the boot is refused (exit 2, one line naming the budget to raise, no frame taken); here since
            # session 40 the TIFF flies sparse_only and the PNG and JPEG, decoded whole, are dropped memory_budget
            # under a boot WARNING naming the budget they need. LiteRT flies all three
            assert run["stated_shortfall"], run
            if run["rc"] == 2:
                assert run.get("boot_refused") == "memory" and "frames" not in run, run
                assert "raise [budget] memory_bytes to at least" in run["stderr"], run
            else:
                assert run["rc"] == 0 and run["per_frame"]["orbital_nac.tif"] == "processed", run
                assert run["drop_reasons"] == {"memory_budget": 2}, run
                assert any("they will be dropped memory_budget" in w for w in run["boot_warnings"]), run
            continue
        assert run["rc"] == 0, (mission, run.get("stderr"))
        f = run["frames"]
        assert f["acquired"] == 3 and f["downlinked"] + f["queued"] + f["dropped"] == 3, (mission, run)
        assert f["dropped"] == 0, (mission, run)
    assert r["bench"]["rc"] == 0, r["bench"]
    assert rc == 0
    # session 41: the zoo's PyTorch checkpoints (20.3 MB) left the edgeae wheel for their own distribution,
    # edgeae-weights; until then both installs were over the target (session 40: 202.1 and 206.5 MB)
    assert r["checkpoints"] == [], r["checkpoints"]
    assert r["venv_mb"] <= BUDGET_MB, (r["venv_mb"], r["largest_mb"])

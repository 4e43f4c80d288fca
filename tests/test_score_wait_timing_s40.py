"""Session 40: ``benchmarks/score_wait_timing.py`` re-times the wait for the scoring engine (fixers h12, h13 of session
39) in interleaved rounds; its summary takes each mode's ratio to ``never`` within a round."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import score_wait_timing as swt


def _run(k: int, mode: str, rt: str, total: float, waited: bool) -> dict:
    return {"round": k, "mode": mode, "runtime": rt, "timing_ms": {"total": total}, "score_wait": waited,
            "scored": 10, "ranked": [[0, 0, 1.0]], "rss_growth_peak": 40 * 2**20}  # fmt: skip


def test_the_summary_is_the_median_of_per_round_ratios() -> None:
    runs = []
    for k, (never, always) in enumerate([(100.0, 110.0), (200.0, 210.0), (100.0, 90.0)]):  # a noisy middle round
        runs += [_run(k, "never", "onnx", never, False), _run(k, "always", "onnx", always, True)]
        runs += [_run(k, "auto", "onnx", never, False)]
    got = swt.summarise(runs, ["onnx"], 3)["onnx"]
    assert got["never"]["median_ratio_to_never"] == 1.0 and got["never"]["rounds_slower_than_never"] == 0
    assert got["always"]["median_ratio_to_never"] == 1.05 and got["always"]["rounds_slower_than_never"] == 2
    assert got["always"]["median_total_ms"] == 110.0 and got["always"]["waited"] == [True]
    assert got["auto"]["waited"] == [False] and got["auto"]["median_rss_growth_peak_mib"] == 40.0


def test_bad_arguments_are_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv, says in ([["--rounds", "0"], "--rounds must be at least 1"], [["--runtimes", "tvm"], "--runtimes"],
                       [["--frame", str(tmp_path / "none.jpg")], "the frame is not there"]):  # fmt: skip
        with pytest.raises(SystemExit) as e:
            swt.main(["--out", str(tmp_path / "o"), *argv])
        assert e.value.code == 2 and says in capsys.readouterr().err
    assert not (tmp_path / "o").exists()

"""The benchmark plumbing: operation counts from layers, and RESULTS.md generated from the JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.report import speed_table, write_results


def test_cae_operation_count_from_layers() -> None:
    pytest.importorskip("torch")
    from benchmarks.opcount import count_macs
    from edgeae.models.cae import CAE, CAEConfig

    # 3×3 convs only: Σ H·W·Cout·Cin·9 over the 9 conv layers of the seed CAE at 128×128 RGB
    assert count_macs(CAE(CAEConfig(channels=3)), (1, 3, 128, 128)) == 136_839_168  # 273.7 MFLOP (TOOLCHAIN.md)


def _bench(runtime: str, median: float) -> dict:
    return {
        "stats": {"median": median, "iqr": median / 10},
        "extra_info": {
            "model": "cae", "runtime": runtime, "batch": 1, "threads": 2, "items_per_s": 1 / median,
            "mpix_per_s": 0.016384 / median, "peak_rss_mb": 300.0, "achieved_gops": 0.27 / median,
            "machine_peak_gops": 100.0 if "fp32" in runtime else 250.0, "fraction_of_peak": 0.0027 / median,
        },
    }  # fmt: skip


def test_speed_table_ratio_to_torch_of_the_same_run(tmp_path: Path) -> None:
    f = tmp_path / "benchmark.json"
    f.write_text(json.dumps({"benchmarks": [_bench("torch-fp32", 0.004), _bench("onnx-int8", 0.001)]}))
    table = speed_table(f)
    assert "| cae | onnx-int8 | 1 | 2 | 1.000 |" in table
    assert "4.00×" in table and "1.00×" in table
    assert "fp32 100.0 GOP/s, int8 250.0 GOP/s" in table


def test_results_page_is_generated_from_stage_outputs(tmp_path: Path) -> None:
    out = tmp_path / "results"
    (out / "link").mkdir(parents=True)
    (out / "link" / "results.md").write_text("| method | PSNR |\n|---|---|\n| sparse | 26.9 |\n")
    stage = {"title": "Link", "commands": ["python x.py"], "returncode": 0, "seconds": 1.0, "size": "quick"}
    (out / "stages.json").write_text(json.dumps({"link": stage}))
    page = write_results(out, tmp_path / "RESULTS.md").read_text()
    assert "## Link" in page and "python x.py" in page and "| sparse | 26.9 |" in page
    assert "Run before stages recorded their machine" in page  # an old record: no machine claimed
    where = {"date": "2026-12-03T08:23:14+00:00", "commit": "abc1234", "cpu": "Some CPU", "logical_cores": 2,
             "gpu": None, "amx": False}  # fmt: skip
    (out / "stages.json").write_text(json.dumps({"link": {**stage, "machine": where}}))
    page = write_results(out, tmp_path / "RESULTS.md").read_text()
    assert "Run 2026-12-03T08:23:14+00:00 at commit `abc1234` on Some CPU (2 logical cores, AMX no, GPU none)." in page


def test_a_run_into_another_folder_writes_its_own_results_page(tmp_path: Path) -> None:
    """`python -m benchmarks --out /tmp/x` crashed composing the page (a figure outside benchmarks/) and would have
    overwritten the published benchmarks/RESULTS.md with a partial run: its page now goes into --out."""
    from benchmarks.__main__ import main

    published = Path("benchmarks/RESULTS.md")
    before = published.read_bytes() if published.is_file() else None
    out = tmp_path / "check"
    (out / "scan" / "topk").mkdir(parents=True)
    (out / "scan" / "topk" / "000_x.png").write_bytes(b"png")
    (out / "stages.json").write_text(json.dumps({"scan": {"title": "Scan", "commands": [], "returncode": 0}}))
    assert main(["--report-only", "--out", str(out)]) == 0
    page = (out / "RESULTS.md").read_text()
    assert "](scan/topk/000_x.png)" in page
    assert (published.read_bytes() if published.is_file() else None) == before

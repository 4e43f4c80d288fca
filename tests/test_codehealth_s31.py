"""Session 31 code-health audit: config types, the one PSNR, the one memory probe, no private re-exports."""

from __future__ import annotations

import ast
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeae.scan.quality import QualityFilter
from edgeae.wire.layout import WireConfig

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_packet_size", 1000.7), ("band_rows", 2.5), ("layout", True), ("max_packet_size", True), ("layout", "2")],
)
def test_wire_config_refuses_non_integers(field: str, value: object) -> None:
    # were accepted, then packetise() failed with a TypeError deep in the packet code
    with pytest.raises(ValueError, match=f"WireConfig.{field} must be a whole number"):
        WireConfig(**{field: value})  # type: ignore[arg-type]


def test_wire_config_takes_numpy_integers_as_ints() -> None:
    cfg = WireConfig(max_packet_size=np.int64(512), band_rows=np.uint16(8))  # type: ignore[arg-type]
    assert (cfg.max_packet_size, cfg.band_rows) == (512, 8) and type(cfg.max_packet_size) is int
    with pytest.raises(ValueError, match="codec must be one of"):
        WireConfig(codec=["none"])  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [True, False, "30", [30]])
def test_quality_filter_refuses_bools_and_non_numbers(value: object) -> None:
    with pytest.raises(ValueError, match="quality threshold max_incidence must be a number or None"):
        QualityFilter(max_incidence=value)  # type: ignore[arg-type]
    assert QualityFilter(max_incidence=30).max_incidence == 30  # ints and floats still pass
    assert QualityFilter(max_incidence=np.float64(30.5)).active


def test_one_psnr_keeps_each_callers_numbers() -> None:
    from edgeae.export.parity import compare_outputs

    from edgeae.ground import science
    from edgeae.metrics import psnr, psnr_db

    rng = np.random.default_rng(0)
    a = rng.random((24, 20)).astype(np.float32)
    b = (a + rng.normal(0, 0.03, a.shape)).astype(np.float32)
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    # metrics.psnr: data range 1, inf when identical
    assert psnr(a, b) == psnr_db(a, b) == 10.0 * math.log10(1.0 / mse)
    assert psnr(a, a) == psnr_db(a, a) == math.inf
    # ground/science: capped at MAX_PSNR (100 dB) for an exact or near-exact rebuild
    assert science._psnr(a, b) == 10 * math.log10(1.0 / mse)
    assert science._psnr(a, a) == science.MAX_PSNR == psnr_db(a, a + np.float32(1e-6), cap=100.0) == 100.0
    # export parity: a peak (the reference's range for latents), inf when identical
    peak = float(np.ptp(a))
    assert psnr_db(a, b, peak) == 10.0 * math.log10(peak * peak / mse)
    out = compare_outputs({"x_hat": a, "mu": a}, {"x_hat": b, "mu": a})
    assert out["x_hat"]["psnr_db"] == psnr_db(a, b) and out["mu"]["psnr_db"] == math.inf
    with pytest.raises(ValueError, match="same non-empty shape"):
        psnr_db(a, b[:, :5])
    with pytest.raises(ValueError, match="peak must be"):
        psnr_db(a, b, peak=0.0)


def test_reconstruct_cli_memory_check_uses_the_ground_probe_not_training_code() -> None:
    code = (
        "import argparse, sys\n"
        "from edgeae.ground import limits\n"
        "from edgeae.cli import CLIError\n"
        "import edgeae.cli.reconstruct\n"  # the command's module itself: no training import either (review s33)
        "from edgeae.cli.reconstruct_memory import check_memory\n"
        "limits.available_memory = lambda: 100_000\n"
        "try:\n"
        "    check_memory(argparse.Namespace(method='linear', image='x.png'), (512, 512, 1), False)\n"
        "except CLIError as e:\n"
        "    print('refused', 'GiB available' in str(e))\n"
        "print('edgeae.train' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.stdout.split() == ["refused", "True", "False"], out.stdout + out.stderr


def test_training_memory_check_uses_the_ground_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeae.ground import limits
    from edgeae.train import common, run_memory

    monkeypatch.setattr(limits, "available_memory", lambda: 1 << 20)
    with pytest.raises(common.MemoryEstimateError, match="crops 10"):
        run_memory.check_run_memory({"crops": (10, 1 << 20)}, batch=(10, 5))
    monkeypatch.setattr(limits, "available_memory", lambda: None)  # unknown: not checked
    run_memory.check_run_memory({"crops": (10, 1 << 20)}, batch=(10, 5))
    for module in (common, run_memory):  # one probe: edgeae.ground.limits.available_memory
        assert not hasattr(module, "available_memory")


def test_evaluate_reexports_no_private_names() -> None:
    from edgeae.anomaly import evaluate

    leaked = [
        n
        for n, obj in vars(evaluate).items()
        if n.startswith("_")
        and not n.startswith("__")
        and getattr(obj, "__module__", evaluate.__name__) != evaluate.__name__
    ]
    assert leaked == [], f"private names re-exported by edgeae.anomaly.evaluate: {leaked}"
    tree = ast.parse((ROOT / "benchmarks" / "context_bank.py").read_text())
    via_evaluate = [
        a.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "edgeae.anomaly.evaluate"
        for a in node.names
    ]
    assert via_evaluate and not [n for n in via_evaluate if n.startswith("_")], via_evaluate

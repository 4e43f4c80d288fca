"""A real interruption: ``edgeae scan`` killed with SIGKILL half-way, then rerun, equals an uninterrupted scan."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pyarrow")
pytest.importorskip("torch")
import pyarrow.parquet as pq
from test_scan_support import build_small_archive, tiny_cae

pytestmark = pytest.mark.slow


def _finished(out: Path) -> int:
    try:
        return sum(line.endswith("}") for line in (out / "manifest.jsonl").read_text().splitlines())
    except OSError:
        return 0


def test_sigkilled_scan_resumes_to_the_uninterrupted_result(moon: np.ndarray, tmp_path: Path) -> None:
    root = tmp_path / "archive"
    names = build_small_archive(root, moon, n=24)
    total = len(names["good"]) + len(names["corrupt"])
    model = tiny_cae(tmp_path / "tiny.pt")
    base = [sys.executable, "-m", "edgeae", "scan", str(root), "--model", str(model), "--no-progress"]
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    done = subprocess.run([*base, "--out", str(ref), "--workers", "0"], capture_output=True, text=True)
    assert done.returncode == 1, done.stderr  # status 1: the archive's corrupt files failed, as documented
    proc = subprocess.Popen([*base, "--out", str(cut), "--workers", "1"], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    while proc.poll() is None and _finished(cut) < total // 2:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the scan and its worker, both started by this test
    proc.wait()
    killed_at = _finished(cut)
    assert 0 < killed_at < total, "the scan was not interrupted half-way"
    assert not (cut / "results.parquet").exists()
    resumed = subprocess.run([*base, "--out", str(cut), "--workers", "1"], capture_output=True, text=True)
    assert resumed.returncode == 1, resumed.stderr
    assert pq.read_table(cut / "results.parquet").equals(pq.read_table(ref / "results.parquet"))
    report = json.loads((cut / "report.json").read_text())
    assert report["images_scanned"] <= total - killed_at + 1 and report["pending"] == 0

"""Session 37, fixer i1 (audit a4): the command lines as tools in a shell pipeline. onnxruntime's telemetry off on
every import path; firmware-sim's stdout failures, interrupts and statuses; a console that cannot encode non-ASCII;
the downlink / ground error lines and statuses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ZOO_ONNX = REPO / "edgeae" / "zoo" / "artifacts" / "orbital-gray-vae" / "orbital-gray-vae.int8.onnx"


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    env.update(HOME=str(home), **extra)
    return env


@pytest.mark.parametrize("package", ["edgeae.firmware_sim", "firmware_sim"])
def test_loading_an_onnx_artifact_writes_nothing_under_home(tmp_path: Path, package: str) -> None:
    """Until session 37 onnxruntime's import wrote a device id and a telemetry event database under
    $HOME/.cache/Microsoft (firmware-sim check "writes nothing"); also by the folder's top-level name."""
    pytest.importorskip("onnxruntime")
    home = tmp_path / "home"
    home.mkdir()
    code = (
        f"import os, {package}.runtime as r\n"
        f"p = r.load_artifact({str(ZOO_ONNX)!r})\n"
        "print(type(p).__name__, os.environ['ORT_DISABLE_TELEMETRY'])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=_env(home), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ArtifactPredictor", "1"]
    assert sorted(str(p.relative_to(home)) for p in home.rglob("*")) == []
    assert "telemetry" not in done.stderr


def test_a_telemetry_setting_of_the_user_is_kept(tmp_path: Path) -> None:
    code = "import edgeae, os; print(os.environ['ORT_DISABLE_TELEMETRY'])"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=_env(tmp_path, ORT_DISABLE_TELEMETRY="0"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and done.stdout.strip() == "0", done.stderr

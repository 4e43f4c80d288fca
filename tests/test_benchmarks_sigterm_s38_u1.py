"""Session 38, fixer u1 (audit a1 #5): SIGTERM to ``python -m benchmarks`` (``timeout``, ``kill``, a CI job's cancel)
stops the running stage command, and what it started, as Ctrl-C does; it is held back while a stage is published,
and a SIGTERM the caller set to be ignored stays ignored."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from _helpers_benchmarks import WRITE, fake_stages

import benchmarks.__main__ as bm
from benchmarks.__main__ import PY, Stage, main

ROOT = Path(__file__).resolve().parents[1]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


SILENT_STAGE = textwrap.dedent("""
    import os, subprocess, sys, time
    from pathlib import Path
    out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
    kid = subprocess.Popen(["sleep", "120"])  # something the stage started (a worker, a tool)
    Path(sys.argv[2]).write_text(f"{os.getpid()} {kid.pid}")
    time.sleep(120)  # silent, as msl_full is with --no-progress: no write to fail on a closed pipe
""")

DRIVER = textwrap.dedent("""
    import sys
    import benchmarks.__main__ as bm
    from benchmarks.stages import PY, Stage
    fake = {"date": "2026-12-08T00:00:00+00:00", "commit": "abc1234", "cpu": "Test CPU", "logical_cores": 2,
            "gpu": None, "cpu_flags": [], "versions": {}}
    bm.machine_info = lambda: fake
    cmd = (PY, "-c", sys.argv[1], "{out}", sys.argv[2])
    bm.STAGES = {"demo": Stage("Demo stage", (cmd,), (cmd,))}
    sys.exit(bm.main(["--only", "demo", "--out", sys.argv[3]]))
""")


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads process states from /proc")
def test_sigterm_stops_the_running_stage_and_what_it_started(tmp_path: Path) -> None:
    """`timeout 480 python -m benchmarks --only msl_full` left the stage command running, orphaned (audit a1 #5)."""
    pids = tmp_path / "pids"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_WAIT_POLICY": "PASSIVE"}
    harness = subprocess.Popen([sys.executable, "-c", DRIVER, SILENT_STAGE, str(pids), str(tmp_path / "out")],
                               cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)  # fmt: skip
    started: list[int] = []
    try:
        deadline = time.monotonic() + 30
        while not (pids.is_file() and pids.read_text().count(" ") == 1) and time.monotonic() < deadline:
            assert harness.poll() is None, harness.communicate()
            time.sleep(0.05)
        started = [int(p) for p in pids.read_text().split()]
        assert all(_alive(p) for p in started)
        harness.send_signal(signal.SIGTERM)
        _, err = harness.communicate(timeout=20)
        assert harness.returncode == 130, err
        text = err.decode()
        assert "Traceback" not in text
        assert (
            text.strip()
            .splitlines()[-1]
            .startswith("interrupted (SIGTERM) during stage demo: its published results and record are unchanged")
        )
        deadline = time.monotonic() + 5
        while any(_alive(p) for p in started) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [p for p in started if _alive(p)] == []  # the stage command and its own child are gone
        assert not (tmp_path / "out" / "demo").exists() and not (tmp_path / "out" / "stages.json").exists()
    finally:
        for p in started:
            if _alive(p):
                os.kill(p, signal.SIGKILL)
        if harness.poll() is None:
            harness.kill()
            harness.wait()


@pytest.fixture
def stages(monkeypatch: pytest.MonkeyPatch):
    return fake_stages(monkeypatch)


def test_sigterm_while_a_stage_is_published_publishes_it_whole_and_stops(
    tmp_path: Path, stages, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGTERM is held back while a stage is published, as Ctrl-C is: its files and record go together. The test
    holds a guard on SIGTERM of its own, so a main that installs no handler fails this test instead of killing the
    test run (review r3 #5: it ended with status 143 and no test listed as failed)."""
    real = bm.update_record

    def sigterm_first(*args: object) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # arrives between the files and the record
        real(*args)  # type: ignore[arg-type]

    stages(demo=Stage("d", ((PY, "-c", WRITE, "{out}", "| t |"),), ()),
           later=Stage("l", ((PY, "-c", WRITE, "{out}", "| l |"),), ()))  # fmt: skip
    monkeypatch.setattr("benchmarks.stage_run.update_record", sigterm_first)
    hits: list[int] = []

    def guard(signum: int, frame: object) -> None:
        hits.append(signum)

    old = signal.signal(signal.SIGTERM, guard)
    try:
        assert main(["--out", str(tmp_path)]) == 130
        assert hits == []  # main's handler took the SIGTERM, not the test's guard
        assert signal.getsignal(signal.SIGTERM) is guard  # main put the caller's handler back
    finally:
        signal.signal(signal.SIGTERM, old)
    assert capsys.readouterr().err.splitlines()[-1] == (
        "interrupted (SIGTERM) while stage demo was being published: it was published whole; the stages after it "
        "were not run"
    )
    assert json.loads((tmp_path / "stages.json").read_text())["demo"]["files"] == ["results.md"]
    assert (tmp_path / "demo" / "results.md").read_text() == "| t |" and not (tmp_path / "later").exists()


def test_an_ignored_sigterm_stays_ignored(tmp_path: Path, stages) -> None:
    """A caller that set SIGTERM to be ignored (a supervisor's `trap '' TERM`) keeps it ignored."""
    stages(demo=Stage("d", ((PY, "-c", WRITE, "{out}", "| t |"),), ()))
    old = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        assert main(["--only", "demo", "--out", str(tmp_path)]) == 0
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, old)

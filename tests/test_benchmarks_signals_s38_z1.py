"""Session 38, fixer z1 (review r3 #1 and #3 of ace69cb): the stage command of ``python -m benchmarks`` runs in its
own process group, so a hang-up or a SIGKILL aimed at the job's group must still stop it (the harness takes SIGHUP
as SIGTERM; a guard process in the stage's group kills the group when the harness dies); what the command started is
killed once the command ends, even a process that ignores SIGINT. Real subprocesses: tiny fake stages in
``tmp_path``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest
from _helpers_benchmarks import WRITE, fake_stages

import benchmarks.__main__ as bm
from benchmarks.__main__ import PY, Stage, main

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process groups and /proc (Linux)")

STAGE = textwrap.dedent("""
    import os, signal, subprocess, sys, time
    from pathlib import Path
    out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
    ignore = sys.argv[3] == "kid-ignores-sigint"  # a worker or tool that ignores Ctrl-C
    kid = subprocess.Popen(["sleep", "120"],
                           preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignore else None)
    Path(sys.argv[2]).write_text(f"{os.getpid()} {kid.pid} {os.getpgid(0)}")
    time.sleep(120)  # silent, as msl_full is with --no-progress
""")

DRIVER = textwrap.dedent("""
    import sys
    import benchmarks.__main__ as bm
    from benchmarks.stages import PY, Stage
    fake = {"date": "2026-12-08T00:00:00+00:00", "commit": "abc1234", "cpu": "Test CPU", "logical_cores": 2,
            "gpu": None, "cpu_flags": [], "versions": {}}
    bm.machine_info = lambda: fake
    cmd = (PY, "-c", sys.argv[1], "{out}", sys.argv[2], sys.argv[4])
    bm.STAGES = {"demo": Stage("Demo stage", (cmd,), (cmd,))}
    sys.exit(bm.main(["--only", "demo", "--out", sys.argv[3]]))
""")


def _live(pids: set[int], pgid: int | None) -> list[int]:
    """The processes among ``pids``, or in process group ``pgid``, that still run (zombies are gone)."""
    found = []
    for p in psutil.process_iter():
        try:
            if p.status() == psutil.STATUS_ZOMBIE:
                continue
            if p.pid in pids or (pgid is not None and os.getpgid(p.pid) == pgid):
                found.append(p.pid)
        except (psutil.NoSuchProcess, ProcessLookupError, psutil.AccessDenied):
            continue
    return found


@contextmanager
def _harness(tmp_path: Path, mode: str = "plain") -> Iterator[tuple[subprocess.Popen[bytes], list[int]]]:
    """The harness running the fake stage, in a session of its own (its process group is "the job"); yields it and
    [stage pid, its child's pid, the stage's pgid] once the stage runs. On the way out: nothing may be left."""
    pids = tmp_path / "pids"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_WAIT_POLICY": "PASSIVE"}
    harness = subprocess.Popen([sys.executable, "-c", DRIVER, STAGE, str(pids), str(tmp_path / "out"), mode],
                               cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)  # fmt: skip
    started: list[int] = []
    try:
        deadline = time.monotonic() + 20
        while not (pids.is_file() and pids.read_text().count(" ") == 2) and time.monotonic() < deadline:
            assert harness.poll() is None, harness.communicate()
            time.sleep(0.02)
        started = [int(p) for p in pids.read_text().split()]
        assert started[2] != os.getpgid(harness.pid)  # the stage runs in a group of its own
        yield harness, started
        deadline = time.monotonic() + 5
        while _live(set(started[:2]), started[2]) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _live(set(started[:2]), started[2]) == []  # the stage, its child and the guard are all gone
        assert not (tmp_path / "out" / "demo").exists() and not (tmp_path / "out" / "stages.json").exists()
    finally:
        if harness.poll() is None:
            harness.kill()
            harness.communicate()
        if started:
            for p in _live(set(started[:2]), started[2]):
                os.kill(p, signal.SIGKILL)


def test_a_hang_up_of_the_job_stops_the_stage_as_sigterm_does(tmp_path: Path) -> None:
    """ssh dropped or the terminal closed: the shell sends SIGHUP to the job's group, which the stage is not in;
    the harness died at once and left the stage running with PPID 1 (review r3 #1)."""
    with _harness(tmp_path) as (harness, _):
        os.killpg(harness.pid, signal.SIGHUP)
        _, err = harness.communicate(timeout=15)
        assert harness.returncode == 130, err
        text = err.decode()
        assert "Traceback" not in text
        last = text.strip().splitlines()[-1]
        assert last.startswith("interrupted (SIGHUP) during stage demo: its published results and record are unchanged")


def test_a_sigkill_of_the_job_takes_the_stage_and_what_it_started(tmp_path: Path) -> None:
    """`kill -9 %1`, `timeout -s KILL`: the harness cannot act; its guard in the stage's group kills the group."""
    with _harness(tmp_path) as (harness, _):
        os.killpg(harness.pid, signal.SIGKILL)
        harness.communicate(timeout=15)
        assert harness.returncode == -signal.SIGKILL


def test_a_child_that_ignores_sigint_is_killed_when_the_stage_command_exits(tmp_path: Path) -> None:
    """The stage command died on the SIGINT at once; its child, ignoring SIGINT, slept on with PPID 1 (review r3 #3)."""
    with _harness(tmp_path, "kid-ignores-sigint") as (harness, started):
        assert psutil.Process(started[1]).status() != psutil.STATUS_ZOMBIE
        harness.send_signal(signal.SIGTERM)
        _, err = harness.communicate(timeout=15)
        assert harness.returncode == 130, err


@pytest.fixture
def stages(monkeypatch: pytest.MonkeyPatch):
    return fake_stages(monkeypatch)


def _two_stages(stages) -> None:
    stages(demo=Stage("d", ((PY, "-c", WRITE, "{out}", "| t |"),), ()),
           later=Stage("l", ((PY, "-c", WRITE, "{out}", "| l |"),), ()))  # fmt: skip


def test_a_hang_up_while_a_stage_is_published_publishes_it_whole_and_stops(
    tmp_path: Path, stages, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGHUP is held back while a stage is published, as Ctrl-C and SIGTERM are."""
    real = bm.update_record

    def sighup_first(*args: object) -> None:
        os.kill(os.getpid(), signal.SIGHUP)  # arrives between the files and the record
        real(*args)  # type: ignore[arg-type]

    hits: list[int] = []
    guard = signal.signal(signal.SIGHUP, lambda signum, frame: hits.append(signum))  # never pytest's death
    try:
        _two_stages(stages)
        monkeypatch.setattr("benchmarks.stage_run.update_record", sighup_first)
        assert main(["--out", str(tmp_path)]) == 130
        assert hits == []  # main's handler took it, not the test's guard
    finally:
        signal.signal(signal.SIGHUP, guard)
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "interrupted (SIGHUP) while stage demo was being published: it was published whole; the stages after it "
        "were not run"
    )
    assert json.loads((tmp_path / "stages.json").read_text())["demo"]["files"] == ["results.md"]
    assert not (tmp_path / "later").exists()


def test_an_ignored_hang_up_stays_ignored(tmp_path: Path, stages, monkeypatch: pytest.MonkeyPatch) -> None:
    """`nohup python -m benchmarks &`: the run outlives the terminal, as before."""
    seen: list[object] = []
    real = bm.run_stage

    def watching(*args: object) -> str:
        seen.append(signal.getsignal(signal.SIGHUP))
        return real(*args)  # type: ignore[arg-type]

    stages(demo=Stage("d", ((PY, "-c", WRITE, "{out}", "| t |"),), ()))
    monkeypatch.setattr(bm, "run_stage", watching)
    old = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        assert main(["--only", "demo", "--out", str(tmp_path)]) == 0
        assert seen == [signal.SIG_IGN] and signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, old)

"""Session 39, fixer h3: shortfalls of ``python -m benchmarks`` that the session-38 review found. (a) A process the
stage's command started that kept the stage's output pipe open made the harness wait for it after the command had
ended (15 s with a fake stage, ~77 s on a failing planted_blocks run). Fake stages, real subprocesses."""

from __future__ import annotations

import json
import os
import signal
import textwrap
import time
from contextlib import suppress
from pathlib import Path

import pytest
from _helpers_benchmarks import fake_stages

from benchmarks.__main__ import PY, Stage, main

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="process groups and /proc (Linux)")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def _gone(pid: int, within_s: float = 2.0) -> bool:
    """``pid`` ended (within ``within_s``: a SIGKILLed process takes a moment to become a zombie)."""
    deadline = time.monotonic() + within_s
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    return not _alive(pid)


def _kill(pids: list[int]) -> None:
    for pid in pids:
        if _alive(pid):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def stages(monkeypatch: pytest.MonkeyPatch):
    return fake_stages(monkeypatch)


# ------------------------------------------------------------------------------------------ (a)
KEEPS_THE_PIPE = textwrap.dedent("""
    import subprocess, sys
    from pathlib import Path
    out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text("| t |")
    # a worker, a tool or a server it started and did not wait for: it inherits the stage's stdout (the pipe)
    kid = subprocess.Popen(["sleep", "8"], start_new_session=sys.argv[3] == "own-session")
    Path(sys.argv[2]).write_text(str(kid.pid))
    print("stage done", flush=True)
    sys.exit(int(sys.argv[4]))
""")


@pytest.mark.parametrize("status", [0, 3])
def test_what_the_command_left_holding_its_pipe_is_killed_when_it_ends(
    tmp_path: Path, stages, capsys: pytest.CaptureFixture[str], status: int
) -> None:
    """The harness read the pipe until every writer closed it: until the stage's leftover ended (8 s here)."""
    kid_file, out = tmp_path / "kid", tmp_path / "out"
    stages(demo=Stage("d", ((PY, "-c", KEEPS_THE_PIPE, "{out}", str(kid_file), "same-group", str(status)),), ()))
    t0 = time.monotonic()
    try:
        assert main(["--only", "demo", "--out", str(out)]) == (1 if status else 0)
        took = time.monotonic() - t0
        kid = int(kid_file.read_text())
        assert took < 3.0, f"{took:.1f} s: the harness waited for the command's leftover"
        assert _gone(kid)
    finally:
        _kill([int(kid_file.read_text())] if kid_file.is_file() else [])
    said = capsys.readouterr().out
    assert "stage done" in said  # the command's own output, all of it
    note = f"killed what the command left running in its process group when it ended: pid {kid} (sleep 8)"
    assert f"== {note}" in said
    record = json.loads((out / "stages.json").read_text())["demo"]
    assert record["returncode"] == status and record["leftovers"] == [note]  # recorded, and in its log
    assert note in Path(record["log"]).read_text()


def test_a_process_outside_the_group_holding_the_pipe_is_named_and_no_longer_read(
    tmp_path: Path, stages, capsys: pytest.CaptureFixture[str]
) -> None:
    """A daemon the command started in a session of its own (``setsid``) is not the harness's to kill; it stops
    reading the pipe at once and says who holds it."""
    kid_file, out = tmp_path / "kid", tmp_path / "out"
    stages(demo=Stage("d", ((PY, "-c", KEEPS_THE_PIPE, "{out}", str(kid_file), "own-session", "0"),), ()))
    t0 = time.monotonic()
    try:
        assert main(["--only", "demo", "--out", str(out)]) == 0
        took = time.monotonic() - t0
        kid = int(kid_file.read_text())
        assert took < 3.0, f"{took:.1f} s: the harness waited for the command's leftover"
        assert _alive(kid)  # left running: outside the stage's group
    finally:
        _kill([int(kid_file.read_text())] if kid_file.is_file() else [])
    note = f"stopped reading the command's output: still held open by pid {kid} (sleep 8), outside its process group"
    assert f"== {note}" in capsys.readouterr().out
    assert json.loads((out / "stages.json").read_text())["demo"]["leftovers"] == [note]
    assert (out / "demo" / "results.md").read_text() == "| t |"

"""Session 39, fixer h3: shortfalls of ``python -m benchmarks`` that the session-38 review found. (a) A process the
stage's command started that kept the stage's output pipe open made the harness wait for it after the command had
ended (15 s with a fake stage, ~77 s on a failing planted_blocks run); (b) a caller that ignores SIGINT (a background
shell) left the stage command ignoring the SIGINT it was stopped with: 10 s of waiting, then SIGKILL; (c) with its
terminal gone (EPIPE, EIO) the harness died with a traceback, exit 1, whatever the stage did; (e) a Ctrl-C that a
library swallowed (``import torch``) was not recorded, so the run went on. Fake stages, real subprocesses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from _helpers_benchmarks import WRITE, fake_stages

import benchmarks.__main__ as bm
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
    reading the pipe a second (LINGER_S) after the command ended and says who holds it."""
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


# ------------------------------------------------------------------------------------------ harness subprocesses
DRIVER = textwrap.dedent("""
    import signal, sys
    # as the shell that started it left it: a background shell's job ignores SIGINT, and so does what it starts
    signal.signal(signal.SIGINT, signal.SIG_IGN if sys.argv[1] == "ignore-sigint" else signal.default_int_handler)
    import benchmarks.__main__ as bm
    from benchmarks.stages import PY, Stage
    fake = {"date": "2026-12-08T00:00:00+00:00", "commit": "abc1234", "cpu": "Test CPU", "logical_cores": 2,
            "gpu": None, "cpu_flags": [], "versions": {}}
    bm.machine_info = lambda: fake
    cmd = (PY, "-c", sys.argv[2], "{out}", *sys.argv[4:])
    bm.STAGES = {"demo": Stage("Demo stage", (cmd,), (cmd,))}
    sys.exit(bm.main(["--only", "demo", "--out", sys.argv[3]]))
""")


@contextmanager
def _harness(
    tmp_path: Path, stage: str, *extra: str, sigint: str = "default", output: str = "pipe"
) -> Iterator[tuple[subprocess.Popen[bytes], int, Path, int | None]]:
    """The harness (in a session of its own) running ``stage``, which is given its folder, a file for its pid, a go
    file and ``extra``; yields the harness, the stage's pid (once it wrote it), the go file, and the pty's master
    (``output`` 'pty': the harness's stdout and stderr are a terminal) or None (pipes). The stage and the harness are
    killed on the way out if still there."""
    pid_file, go = tmp_path / "pid", tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_WAIT_POLICY": "PASSIVE"}
    argv = [sys.executable, "-c", DRIVER, sigint, stage, str(tmp_path / "out"), str(pid_file), str(go), *extra]
    master = None
    if output == "pty":
        master, slave = os.openpty()
        harness = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=slave, stderr=slave, start_new_session=True)
        os.close(slave)
        os.set_blocking(master, False)
    else:
        harness = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   start_new_session=True)  # fmt: skip
    pid = 0
    try:
        deadline = time.monotonic() + 10
        while not (pid_file.is_file() and pid_file.read_text()) and time.monotonic() < deadline:
            assert harness.poll() is None
            time.sleep(0.02)
        pid = int(pid_file.read_text())
        yield harness, pid, go, master
    finally:
        if master is not None:
            with suppress(OSError):
                os.close(master)
        _kill([harness.pid, pid] if pid else [harness.pid])
        harness.wait()


def _ended(harness: subprocess.Popen[bytes], timeout: float = 15) -> tuple[int, float]:
    """The harness's exit status and how long it took to end."""
    t0 = time.monotonic()
    harness.wait(timeout=timeout)
    return harness.returncode, time.monotonic() - t0


# ------------------------------------------------------------------------------------------ (b)
STOPPABLE = textwrap.dedent("""
    import os, signal, sys, time
    from pathlib import Path
    out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
    if sys.argv[4] == "ignores-both":  # a command that takes no stop at all (a `trap '' INT TERM` wrapper)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:  # an edgeae command: SIGTERM stops it as Ctrl-C does, with its last words
        def stop(signum, frame):
            (out / "stopped-by").write_text(signal.Signals(signum).name)
            os._exit(130)
        signal.signal(signal.SIGTERM, stop)
    if sys.argv[4] == "with-worker":  # a driver with a worker of its own (a pool), in its process group
        import subprocess
        worker = ("import signal, sys, time, pathlib; p = pathlib.Path(sys.argv[1]); "
                  "signal.signal(signal.SIGTERM, lambda *a: (p / 'worker-got-SIGTERM').write_text('yes')); "
                  "(p / 'worker-ready').write_text('1'); time.sleep(60)")
        subprocess.Popen([sys.executable, "-c", worker, str(out)])
        while not (out / "worker-ready").exists():
            time.sleep(0.01)
    Path(sys.argv[2]).write_text(str(os.getpid()))
    time.sleep(60)
""")


def test_a_stage_that_inherited_an_ignored_sigint_is_stopped_with_sigterm_at_once(tmp_path: Path) -> None:
    """`python -m benchmarks &` in a script, then `kill %1`: the stage ignored the SIGINT it was sent, was SIGKILLed
    10 s later and never saw the stop."""
    with _harness(tmp_path, STOPPABLE, "sigterm-stops", sigint="ignore-sigint") as (harness, pid, _, _):
        harness.send_signal(signal.SIGTERM)
        status, took = _ended(harness)
        assert status == 130 and _gone(pid)
        assert took < 3.0, f"{took:.1f} s: the harness waited out a SIGINT the stage ignores"
    assert (tmp_path / "out" / ".work" / "staging" / "demo" / "stopped-by").read_text() == "SIGTERM"
    log = next((tmp_path / "out" / ".work" / "logs").glob("demo-*.log")).read_text()
    assert "== the command ignores SIGINT (as started from a background shell): stopping it with SIGTERM" in log
    assert not (tmp_path / "out" / "stages.json").exists() and not (tmp_path / "out" / "demo").exists()


def test_sigterm_goes_to_the_command_alone_so_its_workers_are_its_to_stop(tmp_path: Path) -> None:
    """Review r1 #4 (session 39): the SIGTERM sent to a command that ignores SIGINT went to its whole process group,
    so a driver's pool workers got it too; now the command alone gets it (its group is killed afterwards anyway)."""
    with _harness(tmp_path, STOPPABLE, "with-worker", sigint="ignore-sigint") as (harness, pid, _, _):
        harness.send_signal(signal.SIGTERM)
        status, _took = _ended(harness)
        assert status == 130 and _gone(pid)
    staging = tmp_path / "out" / ".work" / "staging" / "demo"
    assert (staging / "stopped-by").read_text() == "SIGTERM"
    assert (staging / "worker-ready").exists() and not (staging / "worker-got-SIGTERM").exists()


def test_a_stage_that_ignores_every_stop_is_killed_without_a_pointless_wait(tmp_path: Path) -> None:
    with _harness(tmp_path, STOPPABLE, "ignores-both", sigint="ignore-sigint") as (harness, pid, _, _):
        harness.send_signal(signal.SIGTERM)
        status, took = _ended(harness)
        assert status == 130 and _gone(pid)
        assert took < 3.0, f"{took:.1f} s: the harness waited for a stage that cannot act on any stop"
    log = next((tmp_path / "out" / ".work" / "logs").glob("demo-*.log")).read_text()
    assert "== the command ignores SIGINT and SIGTERM: killing its process group" in log


# ------------------------------------------------------------------------------------------ (c)
CHATTY = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
    Path(sys.argv[2]).write_text(str(os.getpid()))
    (out / "results.md").write_text("| chatty |")
    for i in range(600):  # progress lines, shown by the harness as they come
        print(f"step {i}", flush=True)
        time.sleep(0.01)
        if Path(sys.argv[3]).exists():  # written whole (_go): never read while still empty
            sys.exit(int(Path(sys.argv[3]).read_text()))
""")


def _go(go: Path, status: str) -> None:
    """Tell the stage to end with ``status``: the go file appears whole (a plain write_text creates it empty first,
    and a stage that read it in between exited 1 on int(''): session 41, a clean-clone run at a load of 5)."""
    tmp = go.with_name(go.name + ".tmp")
    tmp.write_text(status)
    os.replace(tmp, go)


def _terminal_gone(harness: subprocess.Popen[bytes], master: int | None) -> None:
    """The reader of the harness's output goes away: a closed terminal (EIO) or a pipe's reader (EPIPE)."""
    if master is not None:
        with suppress(OSError):
            os.read(master, 1 << 16)
        os.close(master)
    else:
        assert harness.stdout is not None and harness.stderr is not None
        harness.stdout.close()
        harness.stderr.close()
    time.sleep(0.3)  # the stage's progress lines meet the closed terminal


@pytest.mark.parametrize("output", ["pipe", "pty"])
def test_a_stop_after_the_terminal_closed_exits_130_and_publishes_nothing(tmp_path: Path, output: str) -> None:
    """The terminal closed: its output gone (EIO on a terminal, EPIPE on a pipe), then SIGHUP. The harness died on
    the write with a traceback, exit 1."""
    with _harness(tmp_path, CHATTY, output=output) as (harness, pid, _, master):
        _terminal_gone(harness, master)
        assert harness.poll() is None, "the harness died when its output went away"
        assert os.readlink(f"/proc/{harness.pid}/fd/1") == os.devnull  # it met the closed terminal, and went on
        harness.send_signal(signal.SIGHUP)
        status, _ = _ended(harness)
        assert status == 130 and _gone(pid)
    out = tmp_path / "out"
    assert not (out / "stages.json").exists() and not (out / "demo").exists()
    assert (out / ".work" / "staging" / "demo" / "results.md").is_file()  # what it wrote, left for inspection


@pytest.mark.parametrize("output", ["pipe", "pty"])
def test_a_failed_stage_after_the_terminal_closed_is_recorded_and_exits_1(tmp_path: Path, output: str) -> None:
    with _harness(tmp_path, CHATTY, output=output) as (harness, pid, go, master):
        _terminal_gone(harness, master)
        _go(go, "4")
        status, _ = _ended(harness)
        assert status == 1 and _gone(pid)
    out = tmp_path / "out"
    record = json.loads((out / "stages.json").read_text())["demo"]
    assert record["returncode"] == 4 and record["files"] == [] and not (out / "demo").exists()
    assert "step 1" in Path(record["log"]).read_text()  # the output went on into the log


def test_a_good_stage_after_the_terminal_closed_is_published_and_exits_0(tmp_path: Path) -> None:
    """No stop came (``nohup``, or a pipe's reader gone): the run goes on, its output into the log."""
    with _harness(tmp_path, CHATTY) as (harness, _, go, master):
        _terminal_gone(harness, master)
        _go(go, "0")
        status, _ = _ended(harness)
        assert status == 0
    out = tmp_path / "out"
    assert (out / "demo" / "results.md").read_text() == "| chatty |"
    assert json.loads((out / "stages.json").read_text())["demo"]["returncode"] == 0


# ------------------------------------------------------------------------------------------ (e)
def _swallowed_ctrl_c() -> None:
    """What ``import torch`` sometimes does: the SIGINT handler runs, the KeyboardInterrupt it raises is lost. No
    real signal: the handler in place is called as the signal would call it."""
    handler = signal.getsignal(signal.SIGINT)
    assert callable(handler)
    with suppress(KeyboardInterrupt):
        handler(signal.SIGINT, None)


@pytest.fixture
def ctrl_c_default():
    """SIGINT as a terminal's shell leaves it (a background shell ignores it)."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


def test_a_ctrl_c_lost_while_the_machine_is_read_stops_before_any_stage(
    tmp_path: Path, stages, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], ctrl_c_default
) -> None:
    fake = bm.machine_info()

    def losing() -> dict:
        _swallowed_ctrl_c()
        return fake

    stages(demo=Stage("d", ((PY, "-c", WRITE, "{out}", "| t |"),), ()))
    monkeypatch.setattr(bm, "machine_info", losing)
    assert main(["--out", str(tmp_path)]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "interrupted: no stage was running; published results are unchanged"
    )
    assert not (tmp_path / "demo").exists() and not (tmp_path / "stages.json").exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back


def test_a_ctrl_c_lost_after_a_command_stops_the_stage_unpublished(
    tmp_path: Path, stages, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], ctrl_c_default
) -> None:
    import benchmarks.stage_run as sr

    real = sr.run_command

    def losing(*args: object) -> int:
        rc = real(*args)  # type: ignore[arg-type]
        _swallowed_ctrl_c()
        return rc

    stages(demo=Stage("d", ((PY, "-c", WRITE, "{out}", "| t |"),), ()))
    monkeypatch.setattr(sr, "run_command", losing)
    assert main(["--out", str(tmp_path)]) == 130
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("interrupted during stage demo: its published results and record are unchanged")
    assert not (tmp_path / "demo").exists() and not (tmp_path / "stages.json").exists()


def test_an_ignored_sigint_stays_ignored(tmp_path: Path, stages, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[object] = []
    real = bm.run_stage

    def watching(*args: object) -> str:
        seen.append(signal.getsignal(signal.SIGINT))
        return real(*args)  # type: ignore[arg-type]

    stages(demo=Stage("d", ((PY, "-c", WRITE, "{out}", "| t |"),), ()))
    monkeypatch.setattr(bm, "run_stage", watching)
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        assert main(["--only", "demo", "--out", str(tmp_path)]) == 0
        assert seen == [signal.SIG_IGN] and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, old)

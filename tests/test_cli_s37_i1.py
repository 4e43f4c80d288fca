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


# ------------------------------------------------------------------------------------------------ firmware-sim
@pytest.fixture
def frame(tmp_path: Path) -> Path:
    import numpy as np
    from edgeae.firmware_sim.testing import textured_frame

    path = tmp_path / "frame.npy"
    np.save(path, textured_frame(h=128, w=128, spot=(32, 32)))
    return path


def _run_args(frame: Path, out: Path) -> list[str]:
    # one thread: on a 1-core machine the boot warns of threads = 2 (session 40 audit h5), a third stderr line
    return ["run", "--mission", "orbital_nac", "--frames", str(frame), "--set", "camera.height=0", "--set",
            "camera.width=0", "--set", "runtime.threads=1", "--out", str(out)]  # fmt: skip


class _DeadStdout:
    """A stdout whose reader stopped (``| true``) or whose disk is full (``> /dev/full``)."""

    def __init__(self, error: OSError) -> None:
        self.error = error
        self.errors = "strict"

    def write(self, text: str) -> int:
        raise self.error

    def flush(self) -> None:
        raise self.error


@pytest.mark.parametrize(
    ("error", "said"),
    [(BrokenPipeError(32, "Broken pipe"), "stdout closed"), (OSError(28, "No space left on device"), "cannot write")],
)
def test_firmware_sim_with_a_dead_stdout_says_so_in_one_line_with_status_1(
    tmp_path: Path, frame: Path, capsys, monkeypatch, error: OSError, said: str
) -> None:
    """Until session 37 `check | true` gave 1 ("boots degraded") with nothing said, and `run > /dev/full` 2 (a user
    error) after a complete run: now edgeae's one line and status for it; the run's files are written first."""
    from edgeae.firmware_sim.cli import main

    out = tmp_path / "fw"
    monkeypatch.setattr(sys, "stdout", _DeadStdout(error))
    assert main(_run_args(frame, out)) == 1
    monkeypatch.setattr(sys, "stdout", _DeadStdout(error))
    assert main(["missions"]) == 1
    monkeypatch.undo()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(said in line for line in err), err
    assert err[0].startswith("firmware-sim run: error: ") and err[1].startswith("firmware-sim missions: error: ")
    assert (out / "report.html").is_file() and (out / "summary.json").is_file()


def test_bench_json_is_written_before_its_table(tmp_path: Path, capsys, monkeypatch) -> None:
    from edgeae.firmware_sim.cli import main

    pytest.importorskip("onnxruntime")
    monkeypatch.setattr(sys, "stdout", _DeadStdout(BrokenPipeError(32, "Broken pipe")))
    argv = ["bench", "--model", str(ZOO_ONNX), "--threads", "1", "--iters", "1", "--frame-height", "64",
            "--frame-width", "64", "--json", str(tmp_path / "b.json")]  # fmt: skip
    assert main(argv) == 1
    monkeypatch.undo()
    assert (tmp_path / "b.json").is_file()
    assert "stdout closed" in capsys.readouterr().err


def test_an_interrupt_while_the_report_is_written_keeps_the_summary_and_names_the_command_that_writes_it(
    tmp_path: Path, frame: Path, capsys, monkeypatch
) -> None:
    """Until session 37 a SIGTERM while report.html was written (every frame done) printed only "firmware-sim run:
    interrupted", the pre-boot message: no console summary, no word of `firmware-sim report`."""
    import edgeae.firmware_sim.report as report
    from edgeae.firmware_sim.cli import main

    real = report.write_report

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt("SIGTERM")  # where the SIGTERM handler raises it

    out = tmp_path / "fw"
    monkeypatch.setattr(report, "write_report", stopped)
    assert main(_run_args(frame, out)) == 130
    got = capsys.readouterr()
    assert "mission orbital_nac: 1 frame acquired" in got.out
    err = got.err.strip().splitlines()
    assert any(f"{out / 'report.html'} was not written: interrupted by SIGTERM" in line for line in err), err
    assert err[-1].startswith("firmware-sim: interrupted by SIGTERM while report.html was written")
    assert f"firmware-sim report {out} writes the page" in err[-1]
    assert not (out / "report.html").exists() and (out / "summary.json").is_file()
    monkeypatch.setattr(report, "write_report", real)
    assert main(["report", str(out)]) == 0  # what the line says writes it
    assert (out / "report.html").is_file()


@pytest.mark.parametrize("command", ["check", "bench"])
def test_sigterm_stops_every_firmware_sim_command_as_ctrl_c_does(command: str, capsys, monkeypatch) -> None:
    """Until session 37 only run turned SIGTERM into Ctrl-C: check and bench died silently with 143, where the
    epilog promises 130 and the "interrupted" line."""
    import signal

    from edgeae.firmware_sim import cli

    def killed(args) -> int:
        signal.raise_signal(signal.SIGTERM)
        return 0

    def callers(signum, frame) -> None:  # without firmware-sim's own handler the signal would end pytest
        raise AssertionError("SIGTERM reached the caller's handler")

    before = signal.signal(signal.SIGTERM, callers)
    try:
        monkeypatch.setattr(cli, f"_{command}", killed)  # the parser takes it when built
        argv = ["check", "--mission", "orbital_nac"] if command == "check" else ["bench", "--model", "orbital-gray-vae"]
        assert cli.main(argv) == 130
        assert capsys.readouterr().err.strip() == f"firmware-sim {command}: interrupted (SIGTERM)"
        assert signal.getsignal(signal.SIGTERM) is callers  # in-process: the caller's handler back
    finally:
        signal.signal(signal.SIGTERM, before)


def test_firmware_sim_version(capsys) -> None:
    from edgeae.firmware_sim.cli import main

    from edgeae._version import __version__

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"firmware-sim (edgeae {__version__})"


# ------------------------------------------------------------------------------------------------ both CLIs
_AFTER_THE_RESULT = """
import os, signal, sys, time
from {module} import main
sys.argv = [{prog!r}, {command!r}]
code = main()
print("decided", code, flush=True)
os.kill(os.getpid(), signal.{sig})  # lands after the result: while the interpreter shuts down, say
time.sleep(2)
sys.exit(99)
"""


@pytest.mark.parametrize(
    ("module", "prog", "command"),
    [("edgeae.firmware_sim.cli", "firmware-sim", "missions"), ("edgeae.cli", "edgeae", "links")],
)
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_signal_after_the_result_keeps_the_status(tmp_path: Path, module: str, prog: str, command: str, sig: str):
    """Until session 37 a signal after the work gave 130 with no line (SIGINT) or 143 (SIGTERM)."""
    code = _AFTER_THE_RESULT.format(module=module, prog=prog, command=command, sig=sig)
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert "decided 0" in done.stdout
    assert done.returncode == 0, (done.returncode, done.stderr)


_AT_EXIT = """
import atexit, signal, sys

def last() -> None:  # runs after the CLI's own exit function, just before Python puts SIG_DFL back
    ignored = [signal.getsignal(s) is signal.SIG_IGN for s in (signal.SIGINT, signal.SIGTERM)]
    print("ignored at exit", ignored, flush=True)

atexit.register(last)
from {module} import main
sys.argv = [{prog!r}, {command!r}]
sys.exit(main())
"""


@pytest.mark.parametrize(
    ("module", "prog", "command"),
    [("edgeae.firmware_sim.cli", "firmware-sim", "missions"), ("edgeae.cli", "edgeae", "links")],
)
def test_signals_are_ignored_once_the_interpreter_ends(tmp_path: Path, module: str, prog: str, command: str) -> None:
    """Python puts SIG_DFL back for a signal with a Python handler as it finalises: a Ctrl-C landing there ended a
    finished `edgeae reconstruct` with a silent 130 (audit a4, sigrec/t6). An ignored signal stays ignored."""
    code = _AT_EXIT.format(module=module, prog=prog, command=command)
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "ignored at exit [True, True]" in done.stdout, done.stderr


def test_an_ascii_console_writes_escapes(tmp_path: Path) -> None:
    """Until session 37 `edgeae --help` (β) ended in a UnicodeEncodeError traceback on an ASCII console and
    `firmware-sim missions` (×) exited 2."""
    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    for argv, escape in (
        (["-m", "edgeae", "--help"], "\\u03b2"),
        (["-m", "edgeae.firmware_sim.cli", "missions"], "\\xd7"),
    ):
        done = subprocess.run([sys.executable, *argv], cwd=tmp_path, env=env, capture_output=True, timeout=60)
        assert done.returncode == 0 and escape.encode() in done.stdout, done.stderr


# ------------------------------------------------------------------------------------------------ downlink, ground
def test_a_packet_file_with_no_packet_is_a_data_error_in_downlink_and_ground(tmp_path: Path, capsys) -> None:
    """README's table: a corrupt input is status 1; until session 37 downlink simulate gave 2, ground decode 1."""
    from edgeae.cli import main

    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"hello\n")
    assert main(["downlink", "simulate", "--products", str(garbage), "--out", str(tmp_path / "rx.bin")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgeae downlink simulate: error: --products") and "no packets found" in err
    assert not (tmp_path / "rx.bin").exists()
    assert main(["ground", "decode", str(garbage), "--out", str(tmp_path / "g")]) == 1
    assert "no product could be assembled" in capsys.readouterr().out


def test_downlink_send_names_a_host_it_cannot_send_to(tmp_path: Path, capsys) -> None:
    """Until session 37: "edgeae downlink: error: [Errno -2] Name or service not known" (neither the host nor the
    option, and argparse's prefix for the same command is "edgeae downlink send")."""
    from edgeae.cli import main

    assert main(["downlink", "send", str(tmp_path / "p.bin"), "--port", "9", "--host", "::1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgeae downlink send: error: --host ::1: no IPv4 address") and "nothing sent" in err

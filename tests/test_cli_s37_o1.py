"""Session 37, fixer o1 (review r4): a stdout (or stderr) that fails keeps the command's own status and its status
line (130 / 3 / 4, "state kept ... run the same command again"); a signal anywhere at the end of `firmware-sim run`
gives the summary and the line that says what is left; a SIGTERM the caller set to be ignored stays ignored; the
README's exit-status table."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def frames(tmp_path: Path) -> list[Path]:
    import numpy as np
    from edgeae.firmware_sim.testing import textured_frame

    paths = []
    for k in range(2):
        path = tmp_path / f"frame{k}.npy"
        np.save(path, textured_frame(k, h=128, w=128, spot=(32, 32)))
        paths.append(path)
    return paths


def _run_args(frames: list[Path], out: Path, *extra: str) -> list[str]:
    return ["run", "--mission", "orbital_nac", "--frames", *map(str, frames), "--set", "camera.height=0", "--set",
            "camera.width=0", "--out", str(out), *extra]  # fmt: skip


class _Dead:
    """A stream whose reader stopped (``| tee log`` killed by the same Ctrl-C) or whose disk is full; ``buffered``:
    its writes fail only when flushed (a pipe's or a file's stdout, block-buffered)."""

    def __init__(self, error: OSError, buffered: bool = False) -> None:
        self.error, self.buffered = error, buffered
        self.errors = "strict"

    def write(self, text: str) -> int:
        if self.buffered:
            return len(text)
        raise self.error

    def flush(self) -> None:
        raise self.error


CLOSED = BrokenPipeError(32, "Broken pipe")
FULL = OSError(28, "No space left on device")


def _stop_at_the_second_frame(monkeypatch, error: BaseException) -> None:
    """The second frame's processing raises ``error`` (KeyboardInterrupt: Ctrl-C; OSError: the index's disk full)."""
    from edgeae.firmware_sim import loop

    real, calls = loop.FlightRuntime.process, []

    def process(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise error
        return real(self, *args, **kwargs)

    monkeypatch.setattr(loop.FlightRuntime, "process", process)


# ------------------------------------------------------------------------ 1. a failed stdout keeps the status
@pytest.mark.parametrize("error", [CLOSED, FULL], ids=["closed", "full"])
def test_ctrl_c_with_a_dead_stdout_keeps_130_and_the_state_kept_line(
    tmp_path: Path, frames: list[Path], capsys, monkeypatch, error: OSError
) -> None:
    """Review r4 #1: Ctrl-C on `firmware-sim run ... | tee log` (tee dies too) exited 1, "stdout closed", and the
    "state kept ... run the same command again" line was never printed."""
    from edgeae.firmware_sim.cli import main

    out = tmp_path / "fw"
    _stop_at_the_second_frame(monkeypatch, KeyboardInterrupt())
    monkeypatch.setattr(sys, "stdout", _Dead(error))
    assert main(_run_args(frames, out)) == 130
    monkeypatch.setattr(sys, "stdout", sys.__stdout__)
    err = capsys.readouterr().err.strip().splitlines()
    state = [line for line in err if line.startswith("firmware-sim: interrupted after 1 frame(s) of this run")]
    assert len(state) == 1 and "run the same command again to go on" in state[0], err
    said = "stdout closed" if error is CLOSED else "cannot write to stdout"
    assert err[-1].startswith(f"firmware-sim run: error: {said}"), err
    assert (out / "summary.json").is_file() and (out / "report.html").is_file()


def test_a_simulated_reboot_with_stdout_on_a_full_disk_keeps_3(tmp_path: Path, frames, capsys, monkeypatch) -> None:
    """Review r4 #1: `--inject reboot@frame1 > /dev/full` exited 1 (its "run again with the same --out" line was on
    stdout, lost); now 3, and that line is on stderr."""
    from edgeae.firmware_sim.cli import main

    out = tmp_path / "fw"
    monkeypatch.setattr(sys, "stdout", _Dead(FULL))
    assert main(_run_args(frames, out, "--inject", "reboot@frame1")) == 3
    monkeypatch.setattr(sys, "stdout", sys.__stdout__)
    err = capsys.readouterr().err
    assert f"state kept in {out}: run again with the same --out to recover" in err, err


def test_a_storage_stop_with_a_closed_stdout_keeps_4(tmp_path: Path, frames, capsys, monkeypatch) -> None:
    from edgeae.firmware_sim.cli import main

    out = tmp_path / "fw"
    _stop_at_the_second_frame(monkeypatch, OSError(28, "No space left on device", str(out / "queue" / "index.json")))
    monkeypatch.setattr(sys, "stdout", _Dead(CLOSED))
    assert main(_run_args(frames, out)) == 4
    monkeypatch.setattr(sys, "stdout", sys.__stdout__)
    err = capsys.readouterr().err
    assert "firmware-sim: stopped after 1 frame(s) of this run" in err and "run the same command again" in err, err
    assert "firmware-sim run: error: stdout closed" in err


def test_a_complete_run_with_a_dead_stdout_still_warns_of_a_file_not_written(
    tmp_path: Path, frames, capsys, monkeypatch
) -> None:
    """The console summary failing on its first line no longer cuts off the WARNINGs (stderr) that follow it."""
    import edgeae.firmware_sim.report as report
    from edgeae.firmware_sim.cli import main

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    out = tmp_path / "fw"
    monkeypatch.setattr(report, "write_report", full)
    monkeypatch.setattr(sys, "stdout", _Dead(CLOSED))
    assert main(_run_args(frames, out)) == 1  # the run itself succeeded: stdout's status
    monkeypatch.setattr(sys, "stdout", sys.__stdout__)
    err = capsys.readouterr().err.strip().splitlines()
    assert any(f"WARNING: {out / 'report.html'} was not written: [Errno 28]" in line for line in err), err
    assert err[-1].startswith("firmware-sim run: error: stdout closed")


def test_ctrl_c_with_stdout_and_stderr_both_closed_keeps_130(tmp_path: Path, frames, monkeypatch) -> None:
    """`firmware-sim run ... 2>&1 | tee log` and Ctrl-C: nothing can be said, the status still can."""
    from edgeae.firmware_sim.cli import main

    _stop_at_the_second_frame(monkeypatch, KeyboardInterrupt())
    monkeypatch.setattr(sys, "stdout", _Dead(CLOSED))
    monkeypatch.setattr(sys, "stderr", _Dead(CLOSED))
    assert main(_run_args(frames, tmp_path / "fw")) == 130


def test_a_failed_stdout_keeps_check_s_degraded_and_gives_1_to_a_success(monkeypatch, capsys) -> None:
    from edgeae.firmware_sim import cli

    def printed_then(code: int):
        def command(args) -> int:
            print("the plan")
            return code

        return command

    for code, want in ((0, 1), (1, 1), (3, 3), (130, 130)):
        monkeypatch.setattr(cli, "_check", printed_then(code))
        monkeypatch.setattr(sys, "stdout", _Dead(FULL, buffered=True))
        assert cli.main(["check", "--mission", "orbital_nac"]) == want
        monkeypatch.setattr(sys, "stdout", sys.__stdout__)
        assert capsys.readouterr().err.strip().startswith("firmware-sim check: error: cannot write to stdout")


def test_ground_decode_interrupted_with_a_closed_stdout_keeps_130_and_its_line(tmp_path: Path, capsys, monkeypatch):
    """Review r4 #1: ground decode's "interrupted ..." line is on stdout; with stdout closed the status was 1."""
    from test_ground_storage_s31 import _frames

    from edgeae.cli import main
    from edgeae.ground.station import GroundStation

    pk = _frames(tmp_path / "p.bin", [(8, 8, 1)] * 4)
    decode_one, calls = GroundStation._decode_one, []

    def stop_at_the_third(self, asm, rep):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return decode_one(self, asm, rep)

    monkeypatch.setattr(GroundStation, "_decode_one", stop_at_the_third)
    monkeypatch.setattr(sys, "stdout", _Dead(CLOSED))
    assert main(["ground", "decode", str(pk), "--out", str(tmp_path / "g")]) == 130
    monkeypatch.setattr(sys, "stdout", sys.__stdout__)
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("interrupted (SIGINT): 2 products written to"), err
    assert err[-1].startswith("edgeae ground decode: error: stdout closed"), err
    assert json.loads((tmp_path / "g" / "stream.json").read_text())["stream"]["interrupted"] == "SIGINT"


def test_edgeae_keeps_a_command_s_own_status_when_stdout_fails(monkeypatch, capsys) -> None:
    import edgeae.cli.links as links
    from edgeae.cli import main

    def printed_then_3(args) -> int:
        print("a line")
        return 3

    monkeypatch.setattr(links, "run", printed_then_3)
    monkeypatch.setattr(sys, "stdout", _Dead(FULL, buffered=True))
    assert main(["links"]) == 3
    monkeypatch.setattr(sys, "stdout", sys.__stdout__)
    assert capsys.readouterr().err.strip().startswith("edgeae links: error: cannot write to stdout")


# ------------------------------------------------------------------------ 2. a signal at the end of a run
def _signal_in(monkeypatch, module, name: str, sig: signal.Signals) -> None:
    """``module.name`` gets ``sig`` (a real signal, to the handlers then in place) before it runs."""
    real = getattr(module, name)

    def signalled(*args, **kwargs):
        signal.raise_signal(sig)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, signalled)


@pytest.fixture
def callers_sigterm():
    """Without firmware-sim's own handler a SIGTERM would end pytest."""

    def callers(signum, frame) -> None:
        raise AssertionError("SIGTERM reached the caller's handler")

    before = signal.signal(signal.SIGTERM, callers)
    yield callers
    signal.signal(signal.SIGTERM, before)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_while_the_advice_is_worked_out_gives_the_summary_and_names_firmware_sim_report(
    tmp_path: Path, frames, capsys, monkeypatch, callers_sigterm, sig: signal.Signals
) -> None:
    """Review r4 #3: "firmware-sim run: interrupted", the line of a stop before the boot, 130, no summary, no
    report.html and no word of what writes it."""
    import edgeae.firmware_sim.cli as cli

    out = tmp_path / "fw"
    _signal_in(monkeypatch, cli, "advice_lines", sig)
    assert cli.main(_run_args(frames, out)) == 130
    got = capsys.readouterr()
    assert "mission orbital_nac: 2 frames acquired" in got.out
    by = " by SIGTERM" if sig == signal.SIGTERM else ""
    err = got.err.strip().splitlines()
    assert any(f"{out / 'report.html'} was not written: interrupted{by};" in line for line in err), err
    assert err[-1].startswith(f"firmware-sim: interrupted{by} before report.html was written, after every frame")
    assert f"firmware-sim report {out} writes the page" in err[-1]
    assert not (out / "report.html").exists() and (out / "summary.json").is_file()
    assert signal.getsignal(signal.SIGTERM) is callers_sigterm


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_while_the_summary_prints_lets_it_end_and_says_every_output_is_written(
    tmp_path: Path, frames, capsys, monkeypatch, callers_sigterm, sig: signal.Signals
) -> None:
    """Review r4 #3: a signal in the console summary (report.html written) cut it short with the plain line."""
    import edgeae.firmware_sim.cli_outputs as co
    from edgeae.firmware_sim.cli import main

    out = tmp_path / "fw"
    _signal_in(monkeypatch, co, "_print_summary", sig)
    assert main(_run_args(frames, out)) == 130
    got = capsys.readouterr()
    assert "mission orbital_nac: 2 frames acquired" in got.out and f"  report: {out / 'report.html'}" in got.out
    by = " by SIGTERM" if sig == signal.SIGTERM else ""
    err = got.err.strip().splitlines()
    assert err[-1].startswith(f"firmware-sim: interrupted{by} as the run ended, after every frame of this run"), err
    assert "summary.json and report.html are written" in err[-1]
    assert (out / "report.html").is_file() and (out / "summary.json").is_file()
    assert signal.getsignal(signal.SIGTERM) is callers_sigterm


# ------------------------------------------------------------------------ 3. an ignored SIGTERM stays ignored
_IGNORED = """
import os, signal, sys, time
from {module} import main
import {patched} as target

def command(*args) -> int:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.2)
    print("went on", flush=True)
    return 0

target.{name} = command
sys.exit(main({argv!r}))
"""


@pytest.mark.parametrize(
    ("module", "patched", "name", "argv"),
    [
        ("edgeae.firmware_sim.cli", "edgeae.firmware_sim.cli", "_missions", ["missions"]),
        (
            "edgeae.firmware_sim.cli",
            "edgeae.firmware_sim.cli",
            "_run",
            ["run", "--mission", "m", "--frames", "f", "--out", "o"],
        ),
        ("edgeae.cli", "edgeae.cli.ground", "_decode", ["ground", "decode", "p.bin", "--out", "g"]),
    ],
    ids=["firmware-sim missions", "firmware-sim run", "edgeae ground decode"],
)
def test_a_sigterm_the_caller_ignores_stays_ignored(tmp_path: Path, module, patched, name, argv) -> None:
    """Review r4 #4: firmware-sim put its own SIGTERM handler over an inherited SIG_IGN (a supervisor's "ignore
    SIGTERM" for its children): check and bench then stopped with 130; edgeae keeps it ignored."""
    if name == "_decode":
        from test_ground_storage_s31 import _frames

        _frames(tmp_path / "p.bin", [(8, 8, 1)])
    code = _IGNORED.format(module=module, patched=patched, name=name, argv=argv)
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_IGN),
    )
    assert done.returncode == 0 and "went on" in done.stdout, (done.returncode, done.stderr)


# ------------------------------------------------------------------------ 4. README's exit-status table
def test_readme_s_status_table_names_downlink_send_and_check_s_stdout() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    row1 = next(line for line in text.splitlines() if line.startswith("| 1 | a data error"))
    assert "`downlink send`" in row1, row1
    check = next(line for line in text.splitlines() if line.startswith("| `firmware-sim check --mission"))
    assert "1 boots degraded" in check and "stdout" in check, check


def test_the_epilog_and_docs_say_the_command_s_status_comes_before_stdout_s() -> None:
    from edgeae.firmware_sim.cli import build_parser

    epilog = " ".join((build_parser().epilog or "").split())
    assert "a status of its own (3, 4, 130) stays" in epilog, epilog
    docs = " ".join((REPO / "docs" / "firmware_sim.md").read_text(encoding="utf-8").split())
    assert "a status of its own (3, 4, 130) stays" in docs
    guide = " ".join((REPO / "docs" / "guide.md").read_text(encoding="utf-8").split())  # the README's until s46
    assert guide.count("a status of its own (3, 4, 130) stays") >= 1

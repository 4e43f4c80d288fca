"""Session 38, fixer s1: one SIGTERM installer (``firmware_sim.cli_preflight._sigterm_as_ctrl_c``) holds the check
that a SIGTERM the caller ignores stays ignored, for firmware-sim and ``edgeae scan`` alike (until then a wrapper
in firmware_sim/cli.py and a copy in edgeae/cli/scan.py each held it). An ignored SIGINT, as a background shell
starts its jobs, changes nothing: SIGTERM still stops the command as Ctrl-C does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest
from edgeae.firmware_sim import cli_preflight


@pytest.fixture
def handlers() -> Iterator[None]:
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before[0])
        signal.signal(signal.SIGTERM, before[1])


def test_an_ignored_sigterm_stays_ignored(handlers: None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    got: list[str] = []
    restore = cli_preflight._sigterm_as_ctrl_c(got)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    restore()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN and got == []


def test_an_ignored_sigint_still_lets_sigterm_stop(handlers: None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    got: list[str] = []
    restore = cli_preflight._sigterm_as_ctrl_c(got)
    handler = signal.getsignal(signal.SIGTERM)
    assert callable(handler)
    with pytest.raises(KeyboardInterrupt):
        handler(signal.SIGTERM, None)
    assert got == ["SIGTERM"]
    restore()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_scan_and_firmware_sim_install_through_the_one_installer(
    handlers: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import edgeae.firmware_sim.cli as fcli

    from edgeae.cli.scan import _sigterm_as_interrupt

    calls: list[list[str]] = []

    def recording(received: list[str]):
        calls.append(received)
        return lambda: None

    monkeypatch.setattr(cli_preflight, "_sigterm_as_ctrl_c", recording)
    _sigterm_as_interrupt()()
    assert len(calls) == 1
    monkeypatch.setattr(fcli, "_sigterm_as_ctrl_c", recording)
    monkeypatch.setattr(fcli, "_missions", lambda *a: 0)
    assert fcli.main(["missions"]) == 0
    assert len(calls) == 2


_SCAN_STOPS = """
import os, signal, sys, time
assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
from edgeae.cli.scan import _sigterm_as_interrupt
restore = _sigterm_as_interrupt()
try:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)
    print("went on")
except KeyboardInterrupt:
    print("stopped")
finally:
    restore()
"""


def test_scan_started_with_sigint_ignored_stops_on_sigterm() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _SCAN_STOPS],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    assert done.returncode == 0 and done.stdout.strip() == "stopped", (done.returncode, done.stderr)

"""Session 38, fixer t1: every ``edgeae`` entry point that takes SIGTERM as a stop installs its handler through the
one installer, ``firmware_sim.cli_preflight._sigterm_as_ctrl_c``, which holds the check that a SIGTERM the caller
ignores stays ignored (until then ``edgeae``'s main, ``ground decode`` and ``train`` each held a copy of it). Each
entry point still stops with its documented status and line, and ``edgeae scan`` and ``ground decode`` stopped by
SIGTERM now say so (``interrupted (SIGTERM)``: they said ``interrupted``, as for Ctrl-C)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from edgeae.firmware_sim import cli_preflight


@pytest.fixture
def handlers() -> Iterator[None]:
    before = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


# -- the installer ----------------------------------------------------------------------------------------------------
class _Stop(KeyboardInterrupt):
    pass


def test_the_installer_raises_the_given_stop_and_records_the_signal(handlers: None) -> None:
    got: list[str] = []
    restore = cli_preflight._sigterm_as_ctrl_c(got, _Stop)
    try:
        with pytest.raises(_Stop, match="SIGTERM"):  # train's _Terminated: its own line and 143, not Ctrl-C's
            signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)  # type: ignore[operator]
    finally:
        restore()
    assert got == ["SIGTERM"] and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_the_installer_puts_back_only_its_own_handler(handlers: None) -> None:
    """A handler set since (the console's keep_status, installed after the result) is not replaced by the restore:
    edgeae's main relied on that in its own copy."""
    restore = cli_preflight._sigterm_as_ctrl_c([])

    def later(signum: int, frame: object) -> None:
        pass

    signal.signal(signal.SIGTERM, later)
    restore()
    assert signal.getsignal(signal.SIGTERM) is later


def test_every_entry_point_installs_through_the_one_installer(
    handlers: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import argparse

    from edgeae.cli import _sigterm_as_interrupt as main_installer
    from edgeae.cli.ground import _sigterm_as_interrupt as ground_installer
    from edgeae.cli.train_run import stop_on_sigterm

    calls: list[tuple[list[str], type[BaseException]]] = []

    def recording(received: list[str], stop: type[BaseException] = KeyboardInterrupt) -> Callable[[], object]:
        calls.append((received, stop))
        return lambda: None

    monkeypatch.setattr(cli_preflight, "_sigterm_as_ctrl_c", recording)
    got: list[str] = []
    main_installer("score", got)()
    assert calls[-1] == (got, KeyboardInterrupt)
    main_installer("scan", got)()  # scan, ground and train install their own
    assert len(calls) == 1
    ground_installer(got)()
    assert len(calls) == 2 and calls[-1][0] is got
    args = argparse.Namespace(resume=None, out=str(tmp_path / "r"))
    assert stop_on_sigterm("cae", args, lambda: 7) == 7
    assert len(calls) == 3 and issubclass(calls[-1][1], KeyboardInterrupt) and calls[-1][1] is not KeyboardInterrupt


# -- each entry point, SIGTERM'd and with SIGTERM ignored ---------------------------------------------------------
_COMMAND = """
import os, signal, sys, time
import {module} as target
from edgeae.cli import main

def command(*args, **kw):
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.5)  # a handled SIGTERM raises at once; an ignored one lets the command go on
    print("went on", flush=True)
    sys.exit(0)  # what the command returns does not matter here (scan's report would be checked)

target.{name} = command
sys.exit(main({argv!r}))
"""

_ENTRY_POINTS = {  # name: (patched module, its function the command calls, argv, status, the line)
    "zoo": ("edgeae.cli.zoo", "run", ["zoo"], 130, "edgeae zoo: interrupted (SIGTERM)\n"),
    "scan": (
        "edgeae.scan.run",
        "scan_archive",
        ["scan", "arc", "--out", "out", "--no-progress"],
        130,
        "edgeae scan: interrupted (SIGTERM) (run the same command again to resume)\n",
    ),
    "ground decode": (
        "edgeae.cli.ground",
        "_decode",
        ["ground", "decode", "p.bin", "--out", "g"],
        130,
        "edgeae ground decode: interrupted (SIGTERM)\n",
    ),
    "ground decode checks": (  # SIGTERM while the packet files and --original are checked (review r2, session 38)
        "edgeae.cli.ground",
        "_check_original",
        ["ground", "decode", "p.bin", "--out", "g"],
        130,
        "edgeae ground decode: interrupted (SIGTERM)\n",
    ),
    "train cae": (
        "edgeae.cli.train_cae",
        "_run_cae",
        ["train", "cae", "--data", "d", "--out", "r"],
        143,
        "edgeae train cae: stopped by SIGTERM outside the training loop; nothing was saved to resume: run the same "
        "command again\n",
    ),
}


def _run(tmp_path: Path, entry: str, sigterm: object) -> subprocess.CompletedProcess[str]:
    module, name, argv, _, _ = _ENTRY_POINTS[entry]
    if entry.startswith("ground decode"):
        from test_ground_storage_s31 import _frames

        _frames(tmp_path / "p.bin", [(8, 8, 1)])
    return subprocess.run(
        [sys.executable, "-c", _COMMAND.format(module=module, name=name, argv=argv)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(Path(__file__).parents[1])},
        preexec_fn=lambda: signal.signal(signal.SIGTERM, sigterm),  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("entry", list(_ENTRY_POINTS))
def test_sigterm_stops_each_entry_point_with_its_status_and_line(tmp_path: Path, entry: str) -> None:
    status, line = _ENTRY_POINTS[entry][3:]
    done = _run(tmp_path, entry, signal.SIG_DFL)
    assert done.returncode == status, (done.returncode, done.stderr)
    said = done.stdout if entry.startswith("train") else done.stderr
    assert said.endswith(line), said
    assert "went on" not in done.stdout and "Traceback" not in done.stderr


@pytest.mark.parametrize("entry", list(_ENTRY_POINTS))
def test_an_ignored_sigterm_stays_ignored_in_each_entry_point(tmp_path: Path, entry: str) -> None:
    done = _run(tmp_path, entry, signal.SIG_IGN)
    assert done.returncode == 0 and done.stdout.strip().endswith("went on"), (done.returncode, done.stderr)

"""Session 38, fixer z1 (review r3 #2 of ace69cb): a SIGTERM whose Ctrl-C was lost inside a library (``import
torch`` sometimes swallows the KeyboardInterrupt its handler raises, about 1 s after the start) ran the stage,
published it and exited 0. The signal main recorded is what counts: it is checked after the machine is read, before
each stage, before each command of a stage and before anything of it is recorded or published. No real signal: the
handler main installed is called as the signal would call it, and its Ctrl-C dropped."""

from __future__ import annotations

import json
import signal
from contextlib import suppress
from pathlib import Path

import pytest
from _helpers_benchmarks import WRITE, fake_stages

import benchmarks.__main__ as bm
from benchmarks.__main__ import PY, Stage, main


@pytest.fixture
def stages(monkeypatch: pytest.MonkeyPatch):
    return fake_stages(monkeypatch)


def _swallowed_sigterm() -> None:
    """What ``import torch`` sometimes does with a SIGTERM (review r3 #2): the handler runs (and records it), the
    Ctrl-C it raises is lost. No real signal: the handler main installed is called as the signal would call it."""
    handler = signal.getsignal(signal.SIGTERM)
    assert callable(handler)
    with suppress(KeyboardInterrupt):
        handler(signal.SIGTERM, None)


def _two_stages(stages) -> None:
    stages(demo=Stage("d", ((PY, "-c", WRITE, "{out}", "| t |"),), ()),
           later=Stage("l", ((PY, "-c", WRITE, "{out}", "| l |"),), ()))  # fmt: skip


def test_a_sigterm_lost_while_the_machine_is_read_stops_before_any_stage(
    tmp_path: Path, stages, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = bm.machine_info()
    _two_stages(stages)

    def losing() -> dict:
        _swallowed_sigterm()
        return fake

    monkeypatch.setattr(bm, "machine_info", losing)
    assert main(["--out", str(tmp_path)]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "interrupted (SIGTERM): no stage was running; published results are unchanged"
    )
    assert not (tmp_path / "demo").exists() and not (tmp_path / "stages.json").exists()


def test_a_sigterm_lost_while_a_command_runs_stops_the_stage_unpublished(
    tmp_path: Path, stages, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import benchmarks.stage_run as sr

    real = sr.run_command

    def losing(*args: object) -> int:
        rc = real(*args)  # type: ignore[arg-type]
        _swallowed_sigterm()
        return rc

    _two_stages(stages)
    monkeypatch.setattr(sr, "run_command", losing)
    assert main(["--out", str(tmp_path)]) == 130
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("interrupted (SIGTERM) during stage demo: its published results and record are unchanged")
    assert not (tmp_path / "demo").exists() and not (tmp_path / "later").exists()
    assert not (tmp_path / "stages.json").exists()  # no record either: the command's exit status was not judged


def test_a_sigterm_lost_between_two_stages_runs_no_further_stage(
    tmp_path: Path, stages, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = bm.run_stage

    def losing(*args: object) -> str:
        got = real(*args)  # type: ignore[arg-type]
        _swallowed_sigterm()
        return got

    _two_stages(stages)
    monkeypatch.setattr(bm, "run_stage", losing)
    assert main(["--out", str(tmp_path)]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "interrupted (SIGTERM) before stage later: it and the stages after it were not run; the stages before it "
        "are recorded as they ended"
    )
    assert (tmp_path / "demo" / "results.md").read_text() == "| t |" and not (tmp_path / "later").exists()
    assert json.loads((tmp_path / "machine.json").read_text())["commit"] == "abc1234"  # a stage was published

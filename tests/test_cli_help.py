"""Every command and flag of ``edgeae`` and ``firmware-sim`` has a plain-text help (no RST backticks)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import numpy as np
import pytest


def _walk(parser: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                assert helps.get(name), f"{path} {name}: the subcommand has no help line"
                assert "`" not in str(helps[name]), f"{path} {name}: backtick in the help line {helps[name]!r}"
                yield from _walk(sub, f"{path} {name}")


def _problems(prog: str, parser: argparse.ArgumentParser) -> list[str]:
    out = []
    for path, p in _walk(parser, prog):
        if not (p.description or "").strip():
            out.append(f"{path}: no description")
        if "`" in (p.description or "") + (p.epilog or ""):
            out.append(f"{path}: backtick in the description")
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction | argparse._HelpAction | argparse._VersionAction):
                continue
            name = "/".join(a.option_strings) or a.dest
            if not (a.help or "").strip() or a.help == argparse.SUPPRESS:
                out.append(f"{path} {name}: no help")
            elif "`" in a.help:
                out.append(f"{path} {name}: backtick in {a.help!r}")
        try:
            text = p.format_help()
        except Exception as exc:  # a % in a help string that argparse cannot format
            out.append(f"{path}: help does not format ({exc})")
            continue
        if "`" in text:
            out.append(f"{path}: backtick in --help output")
    return out


def test_edgeae_help_is_complete_and_plain() -> None:
    from edgeae.cli import build_parser

    assert _problems("edgeae", build_parser()) == []


def test_firmware_sim_help_is_complete_and_plain() -> None:
    from edgeae.firmware_sim.cli import build_parser

    assert _problems("firmware-sim", build_parser()) == []


def test_every_edgeae_command_is_registered() -> None:
    from edgeae.cli import COMMANDS, build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    # every command module ships with the package: build_parser skipping one (its module missing) is a bug
    missing = set(COMMANDS) - set(sub.choices)
    assert not missing, f"commands in COMMANDS that build_parser did not register: {sorted(missing)}"


@pytest.mark.parametrize(
    "argv",
    [
        ["scan", "ARCHIVE", "--out", "OUT", "--max-images", "-1"],  # was: every image but the last
        ["scan", "ARCHIVE", "--out", "OUT", "--stride", "0"],  # was: silently the patch size
        ["evaluate", "--dataset", "msl_surface", "--out", "OUT", "--limit", "0"],  # was: the whole dataset
        ["reconstruct", "IMG", "-o", "x.png", "--threads", "0"],  # refused when the model loads
    ],
)
def test_counts_below_one_are_refused(argv: list[str], tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgeae.cli import main

    argv = [str(tmp_path / a) if a in ("ARCHIVE", "OUT", "IMG") else a for a in argv]
    (tmp_path / "ARCHIVE").mkdir()
    code = None
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's refusal
        code = exc.code
    assert code == 2
    assert "at least 1" in capsys.readouterr().err or "threads must be" in capsys.readouterr().err


def test_ctrl_c_is_a_message_not_a_traceback(
    tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import edgeae.scan.run as scan_run
    from edgeae.cli import main

    def interrupted(*a: object, **k: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(scan_run, "scan_archive", interrupted)
    (tmp_path / "a").mkdir()
    assert main(["scan", str(tmp_path / "a"), "--out", str(tmp_path / "o"), "--no-progress"]) == 130
    err = capsys.readouterr().err
    assert "interrupted (run the same command again to resume)" in err and "Traceback" not in err


def test_a_dead_worker_process_is_a_message_not_a_traceback(
    tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from concurrent.futures.process import BrokenProcessPool

    import edgeae.scan.run as scan_run
    from edgeae.cli import main

    def killed(*a: object, **k: object) -> None:
        raise BrokenProcessPool("A process in the process pool was terminated abruptly")

    monkeypatch.setattr(scan_run, "scan_archive", killed)
    (tmp_path / "a").mkdir()
    assert main(["scan", str(tmp_path / "a"), "--out", str(tmp_path / "o"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "a worker process died" in err and "resume" in err and "Traceback" not in err


def test_outputs_that_cannot_be_written_are_refused_before_the_work(
    tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgeae.cli import main

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    img = tmp_path / "i.png"
    cv2 = pytest.importorskip("cv2")
    cv2.imwrite(str(img), np.zeros((32, 32), np.uint8))
    assert main(["reconstruct", str(img), "--method", "linear", "-o", str(blocker / "r.png")]) == 2
    assert "cannot write in" in capsys.readouterr().err
    assert main(["score", str(img), "-o", str(blocker / "s.csv"), "--no-progress"]) == 2
    assert "-o" in capsys.readouterr().err

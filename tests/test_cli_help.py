"""Every command and flag of ``edgeae`` and ``firmware-sim`` has a plain-text help (no RST backticks)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

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
    missing = set(COMMANDS) - set(sub.choices)
    if missing:
        pytest.skip(f"commands not available in this install: {sorted(missing)}")

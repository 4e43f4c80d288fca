"""Every option that ``--help`` lists for the documented commands is in the docs, where that command's users look.

The parsers come from the library itself (``edgeae.cli.build_parser``; the ``main`` of the ``python -m`` tools, whose
``parse_args`` is intercepted so that nothing runs), never from a subprocess. An option counts as documented when its
literal string (not part of a longer option: ``--data`` is not ``--data-root``) appears in docs/*.md or README.md.
"""

from __future__ import annotations

import argparse
import importlib
import re
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

# options that no doc needs to name, each with the reason (argparse's own -h/--help is skipped everywhere)
INTERNAL: dict[str, str] = {}


class _Captured(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        super().__init__(parser.prog)
        self.parser = parser


def _sub(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[name]


def _edgeae(*names: str) -> argparse.ArgumentParser:
    from edgeae.cli import build_parser

    parser = build_parser()
    for name in names:
        parser = _sub(parser, name)
    return parser


def _tool(module: str, sub: str | None, monkeypatch: pytest.MonkeyPatch) -> argparse.ArgumentParser:
    """The parser a ``python -m`` tool's ``main`` builds, taken at its ``parse_args`` (so nothing runs)."""

    def capture(self: argparse.ArgumentParser, *args: object, **kwargs: object) -> argparse.Namespace:
        raise _Captured(self)

    main = importlib.import_module(module).main
    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    with pytest.raises(_Captured) as info:
        main([])
    monkeypatch.undo()
    return _sub(info.value.parser, sub) if sub else info.value.parser


def _parser(command: str, monkeypatch: pytest.MonkeyPatch) -> argparse.ArgumentParser:
    if command == "python -m edgeae.export.latency":
        return _tool("edgeae.export.latency", None, monkeypatch)
    if command == "python -m edgeae.train.gate":
        pytest.importorskip("torch")  # its main imports the model module for the --smooth-fill choices
        return _tool("edgeae.train.gate", None, monkeypatch)
    if command == "python -m edgeae.export.board bundle":
        return _tool("edgeae.export.board", "bundle", monkeypatch)
    return _edgeae(*command.split()[1:])


COMMANDS = (
    "edgeae export",
    "python -m edgeae.export.latency",
    "python -m edgeae.export.board bundle",
    "edgeae train vae",
    "edgeae train cae",
    "python -m edgeae.train.gate",
    "edgeae score",
    "edgeae scan",
)


def _options(parser: argparse.ArgumentParser) -> list[list[str]]:
    """Each optional argument's option strings (-o and --output together), without -h/--help."""
    return [list(a.option_strings) for a in parser._actions if a.option_strings and a.dest != "help"]


def _names(text: str, option: str) -> bool:
    return re.search(r"(?<![\w-])" + re.escape(option) + r"(?![\w-])", text) is not None


def _all_docs() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in [*sorted(DOCS.glob("*.md")), ROOT / "README.md"])


def _section(doc: str, heading: str) -> str:
    """The text of the section whose heading line starts with ``heading``, up to the next heading of its level or
    higher (``#`` lines inside fenced code blocks are not headings)."""
    level = len(heading) - len(heading.lstrip("#"))
    out: list[str] = []
    fenced = False
    for line in (DOCS / doc).read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        depth = len(line) - len(line.lstrip("#"))
        is_heading = not fenced and depth > 0 and line[depth : depth + 1] == " "
        if out and is_heading and depth <= level:
            break
        if out or (is_heading and line.startswith(heading)):
            out.append(line)
    assert out, f"docs/{doc}: no heading {heading!r}"
    return "\n".join(out)


def _paragraph(doc: str, opening: str) -> str:
    """The paragraph (up to a blank line) of ``doc`` that opens with ``opening``."""
    text = (DOCS / doc).read_text(encoding="utf-8")
    start = text.find(opening)
    assert start >= 0, f"docs/{doc}: no paragraph opening {opening!r}"
    end = text.find("\n\n", start)
    return text[start : end if end >= 0 else len(text)]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_help_option_is_in_some_doc(command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = _all_docs()
    missing = [
        "/".join(strings)
        for strings in _options(_parser(command, monkeypatch))
        if not any(_names(docs, s) for s in strings) and not any(s in INTERNAL for s in strings)
    ]
    assert not missing, f"{command} --help lists {missing}, which no doc (docs/*.md, README.md) names"


def test_export_synopsis_lists_every_option(monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/export.md opens with the command's synopsis: it names every option of ``edgeae export --help``."""
    text = (DOCS / "export.md").read_text(encoding="utf-8")
    block = text[text.index("```") : text.index("```", text.index("```") + 3)]
    synopsis = block[block.index("edgeae export ") :].split("python -m")[0]  # its lines up to the next command
    missing = [
        s for strings in _options(_parser("edgeae export", monkeypatch)) for s in strings if not _names(synopsis, s)
    ]
    assert not missing, f"docs/export.md synopsis leaves out {missing}"


@pytest.mark.parametrize(
    ("command", "where", "text_of"),
    [
        ("edgeae export", "docs/export.md", lambda: (DOCS / "export.md").read_text(encoding="utf-8")),
        (
            "python -m edgeae.export.latency",
            "docs/export.md, its latency paragraph",
            lambda: _paragraph("export.md", "Latency of existing artifacts"),
        ),
        (
            "python -m edgeae.export.board bundle",
            "docs/export.md, its board section",
            lambda: _section("export.md", "## int8 on different CPUs"),
        ),
    ],
)
def test_export_tools_options_in_their_section(
    command: str, where: str, text_of: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    text = text_of()
    missing = [s for strings in _options(_parser(command, monkeypatch)) for s in strings if not _names(text, s)]
    assert not missing, f"{command}: {missing} not in {where}"


@pytest.mark.parametrize(
    ("doc", "options"),
    [
        # train vae (its trainer paragraph) and train cae, the gate's tolerance
        ("training.md", ("--latent", "--beta", "--no-augment", "--channels", "--lambda", "--max-loss-db")),
        ("anomaly.md", ("--cae-keep", "--cae-seed")),  # edgeae score's CAE options
        ("scan.md", ("--max-images",)),
    ],
)
def test_audited_options_in_their_commands_doc(doc: str, options: tuple[str, ...]) -> None:
    """The options the session-31 audit found undocumented (or documented only elsewhere), in their command's doc."""
    text = (DOCS / doc).read_text(encoding="utf-8")
    assert not [o for o in options if not _names(text, o)], f"docs/{doc} does not name {options}"


def test_score_cae_options_in_the_scoring_section() -> None:
    section = _section("anomaly.md", "## Scoring")
    assert _names(section, "--cae-keep") and _names(section, "--cae-seed"), "docs/anomaly.md, Scoring: no CAE options"
    # --cae-keep's default, stated in neither its help nor the docs before session 31
    assert re.search(r"--cae-keep[^;]*default 0\.5", section), "docs/anomaly.md, Scoring: no --cae-keep default"


def test_train_options_in_their_trainers_text() -> None:
    """train cae's --channels and --no-augment where its data are described; train vae's in its trainer paragraph."""
    data = _section("training.md", "## Training data")
    assert _names(data, "--channels") and _names(data, "--no-augment"), "docs/training.md, Training data: no options"
    vae = _paragraph("training.md", "**The VAE trainer**")
    missing = [o for o in ("--latent", "--beta", "--no-augment", "--channels", "--lambda") if not _names(vae, o)]
    assert not missing, f"docs/training.md, the VAE trainer paragraph, does not name {missing}"


@pytest.mark.parametrize(
    ("command", "options"),
    [
        ("edgeae export", ("--seed", "--repeats")),
        ("python -m edgeae.export.latency", ("--repeats",)),
        ("python -m edgeae.train.gate", ("--taus", "--max-loss-db", "--threads")),
    ],
)
def test_help_states_the_default(command: str, options: tuple[str, ...], monkeypatch: pytest.MonkeyPatch) -> None:
    helps = {s: a.help or "" for a in _parser(command, monkeypatch)._actions for s in a.option_strings}
    assert not [o for o in options if "default" not in helps[o]], f"{command}: the help of {options} omits the default"

"""Session-37 fixer l1 (review r2 #4): messages a package user reads cited files of the source repository that an
installed package does not hold (the demo's "benchmarks/RESULTS.md measures JPEG 2000 over the same links", the
downlink section's docs/wire-format.md, `--help` texts citing docs/*.md, `edgeae zoo --commands`'
scripts/gpu_pack.py, the flight's int8 warning). They cite them through edgeae._optional.source_ref now: "FILE of
the edgeae source"."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REPO_FILE = re.compile(r"\b(?:docs/[\w-]+\.md|benchmarks/RESULTS\.md|scripts/[\w-]+\.(?:py|sh))")
FILES = (
    "edgeae/cli/export.py",
    "edgeae/cli/ground.py",
    "edgeae/cli/reconstruct_flags.py",
    "edgeae/demo/conclusion.py",
    "edgeae/demo/downlink.py",
    "firmware_sim/runtime.py",
)


def _bare_citations(path: Path) -> list[str]:
    """The string literals of ``path`` (not docstrings, not source_ref's own arguments) naming a repository file."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            skip.add(id(body[0].value))  # a docstring
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "source_ref":
            skip.update(id(a) for a in node.args)
    return [
        f"{path.name}:{node.lineno}: {node.value[:80]!r}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip
        if REPO_FILE.search(node.value)
    ]


@pytest.mark.parametrize("name", FILES)
def test_user_facing_texts_cite_repository_files_through_source_ref(name: str) -> None:
    assert _bare_citations(ROOT / name) == []


def test_the_zoo_entries_say_their_scripts_are_in_a_source_checkout() -> None:
    """`edgeae zoo --commands` and `--json`: the GPU steps run scripts/gpu_pack.py and scripts/gpu_train.sh."""
    from edgeae.zoo import ZOO

    seen = 0
    for name, entry in ZOO.items():
        for key in ("training_data", "description", "command"):
            text = entry[key]
            for m in REPO_FILE.finditer(text):
                seen += 1
                cited = text[m.end() :].startswith(" of the edgeae source")
                after = "in a source checkout (scripts/ of the edgeae source): " in text[: m.start()]
                assert cited or after, f"{name} {key}: {text[max(0, m.start() - 80) : m.end() + 40]!r}"
    assert seen == 7  # the two GPU fine-tuned models: training data (2) and commands (5)


def test_the_help_texts_read_as_files_of_the_source(capsys: pytest.CaptureFixture[str]) -> None:
    from edgeae.cli import main

    with pytest.raises(SystemExit):
        main(["export", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(docs/export.md of the edgeae source, int8 on different CPUs)" in out

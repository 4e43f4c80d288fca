"""Session-36 fixer i1 in the flight runtime: the docs name every module of edgeae the flight imports (commit
1ea7db8 added ``edgeae.printable`` to the test's list and not to docs/firmware_sim.md), ..."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "firmware_sim.md"


def _section(text: str, title: str) -> str:
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_the_docs_name_every_module_of_edgeae_the_flight_may_import() -> None:
    """``tests/test_firmware_cli.py`` fails on any module of edgeae the flight imports outside its list; the docs'
    list of what a board copy needs beside ``firmware_sim/`` must hold the same modules."""
    block = (ROOT / "tests" / "test_firmware_cli.py").read_text().split("FLIGHT_IMPORTS_FROM_EDGEAE = {", 1)[1]
    allowed = set(re.findall(r'"(edgeae\.[a-z_.]+)"', block.split("\n}\n", 1)[0]))
    assert "edgeae.printable" in allowed
    section = " ".join(_section(DOCS.read_text(), "What the flight runtime imports").split())
    missing = sorted(m for m in allowed if f"`{m}`" not in section and f"`{m}." not in section)
    assert missing == [], missing

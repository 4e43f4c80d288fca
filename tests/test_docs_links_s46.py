"""The README and docs/*.md link to files that exist, and to headings that exist (session 46 moved the README's tour
of the parts to docs/guide.md and its long headline cells to docs/results.md; links were rewritten for the move)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)  # not inside code blocks
    text = re.sub(r"``.*?``|`[^`\n]*`", "", text)  # nor code spans (docs/scan.md quotes a hostile `![x](https:...)`)
    return [t for t in re.findall(r"\]\(([^)\s]+)\)", text) if not t.startswith(("http://", "https://", "mailto:"))]


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (letters of any script kept), spaces to '-'."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return {_slug(h) for h in re.findall(r"^#+ (.*)$", text, flags=re.M)}


def test_every_relative_link_names_a_file_that_exists() -> None:
    missing = [
        (p.relative_to(ROOT).as_posix(), t)
        for p in PAGES
        for t in _links(p)
        if t.split("#")[0] and not (p.parent / t.split("#")[0]).exists()
    ]
    assert not missing, missing


def test_links_into_the_guide_and_results_pages_name_their_headings() -> None:
    targets = {name: _anchors(ROOT / "docs" / name) for name in ("guide.md", "results.md")}
    wrong = []
    for p in PAGES:
        for t in _links(p):
            path, _, anchor = t.partition("#")
            name = Path(path).name
            if anchor and name in targets and anchor not in targets[name]:
                wrong.append((p.name, t))
    assert not wrong, wrong
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme.count("](docs/guide.md#") >= 9  # one per part


def test_the_readme_headline_table_is_short_and_its_long_form_is_kept() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("## Headline results") :].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| question")]
    assert len(rows) >= 12 and max(map(len, rows)) < 800, max(map(len, rows))
    full = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    for figure in ("28.92 dB", "0.804", "13,175", "23 of 24"):  # the same figures, whole rows there
        assert figure in full and figure in table

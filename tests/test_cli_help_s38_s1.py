"""Session 38, fixer s1: ``edgeae score --help`` cited docs/anomaly.md twice as a bare path, which a user of the
installed wheel does not have; it now cites it once, as "docs/anomaly.md of the edgeae source" (as every other
help text since session 37), and no string of the CLI or the anomaly package cites a repository file bare."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_packaging_s37_l1 import _bare_citations

ROOT = Path(__file__).resolve().parents[1]


def test_score_help_cites_the_anomaly_doc_as_a_file_of_the_source(capsys: pytest.CaptureFixture[str]) -> None:
    from edgeae.cli import main

    with pytest.raises(SystemExit):
        main(["score", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert len(re.findall(r"docs/anomaly\.md", text)) == 1
    assert "docs/anomaly.md of the edgeae source" in text


@pytest.mark.parametrize("folder", ["edgeae/cli", "edgeae/anomaly"])
def test_no_user_facing_text_cites_a_repository_file_bare(folder: str) -> None:
    bare = [c for p in sorted((ROOT / folder).glob("*.py")) for c in _bare_citations(p)]
    assert bare == []

"""Benchmark report fixes of the session-33 audit (a1 items 5-7): RESULTS.md depends only on files a clean clone
has, --report-only refuses the options it would ignore, embedded reports keep the page's heading outline."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from benchmarks.__main__ import main
from benchmarks.report import demote_headings, git_ignored, write_results


def _nac_stage(out: Path) -> None:
    """A stage folder like nac/: a scan report with thumbnails under topk/ (git-ignored) and 13 report plots."""
    scan = out / "nac" / "scan-lite"
    (scan / "topk").mkdir(parents=True)
    (scan / "report.md").write_text("# edgeae scan: x\n\n| a |\n|---|\n| 1 |\n")
    for i in range(5):
        (scan / "topk" / f"{i:03d}_patch.png").write_bytes(b"png")
    (out / "nac" / "report_img").mkdir()
    for i in range(13):
        (out / "nac" / "report_img" / f"p{i:02d}.png").write_bytes(b"png")
    (out / "stages.json").write_text(json.dumps({"nac": {"title": "NAC", "commands": [], "returncode": 0}}))


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


# ------------------------------------------------------------------------------------------ item 5: clean clone
def test_the_page_neither_links_nor_counts_files_git_ignores(tmp_path: Path) -> None:
    """RESULTS.md counted 17 thumbnails per scan under the git-ignored topk/ folders, which only the author's machine
    has: a clean clone's --report-only changed the committed page."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "clone"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / ".gitignore").write_text("results/**/topk/\n")
    out = repo / "results"
    _nac_stage(out)
    page = write_results(out, repo / "RESULTS.md").read_text()
    assert "topk/" not in page
    assert "1 more plot(s) not linked here (the first 12 are): 1 in `results/nac/report_img/`." in page
    # a tracked file is in every clone even where a pattern ignores its folder: it is shown
    _git(repo, "add", "-f", "results/nac/scan-lite/topk/000_patch.png")
    page = write_results(out, repo / "RESULTS.md").read_text()
    assert "1 in `results/nac/scan-lite/topk/`" in page and "001_patch" not in page


def test_without_git_every_file_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "results"
    _nac_stage(out)
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))  # git cannot be found
    assert git_ignored(sorted(out.rglob("*.png"))) == set()
    page = write_results(out, tmp_path / "RESULTS.md").read_text()
    assert "6 more plot(s) not linked here" in page and "5 in `results/nac/scan-lite/topk/`" in page


# ------------------------------------------------------------------------------------------ item 6: --report-only
@pytest.mark.parametrize(
    ("extra", "said"),
    [
        (["--only", "speed"], "drop --only\n"),
        (["--full"], "drop --full\n"),
        (["--only", "speed", "--full"], "drop --only and --full\n"),
    ],
)
def test_report_only_refuses_the_options_it_would_ignore(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], said: str
) -> None:
    (tmp_path / "stages.json").write_text("{}")
    with pytest.raises(SystemExit) as e:
        main(["--report-only", "--out", str(tmp_path), *extra])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.endswith(said)
    assert err.splitlines()[-1].startswith("python -m benchmarks: error: --report-only runs no stage")
    assert not (tmp_path / "RESULTS.md").exists()


# ------------------------------------------------------------------------------------------ item 7: headings
def test_demote_headings_keeps_nesting_and_skips_code() -> None:
    text = "# Title\n\n## Part\n\n```\n# a comment\n```\n\n#not-a-heading\n###### deep"
    assert demote_headings(text, 2) == "### Title\n\n#### Part\n\n```\n# a comment\n```\n\n#not-a-heading\n###### deep"
    assert demote_headings("#### already low\n", 2) == "#### already low\n"  # never promoted
    assert demote_headings("no headings", 3) == "no headings"


def test_embedded_reports_sit_below_the_section_heading(tmp_path: Path) -> None:
    """A scan's report.md put its `# edgeae scan` title and `## Top 16 patches` inside RESULTS.md's ## sections."""
    out = tmp_path / "results"
    (out / "scan" / "local").mkdir(parents=True)
    report = "# edgeae scan: local\n\n| a |\n|---|\n| 1 |\n\n## Failures\n\n- none\n"
    (out / "scan" / "local" / "report.md").write_text(report)
    (out / "scan" / "scan_throughput.md").write_text("### Throughput\n\n| x |\n|---|\n| 2 |\n")
    (out / "stages.json").write_text(json.dumps({"scan": {"title": "Scan", "commands": [], "returncode": 0}}))
    page = write_results(out, tmp_path / "RESULTS.md").read_text()
    outline = [line for line in page.splitlines() if re.match(r"#+ ", line)]
    assert outline == [
        "# edgeae benchmark results",
        "## Scan",
        "### local",
        "#### edgeae scan: local",
        "##### Failures",
        "### Throughput",
    ]

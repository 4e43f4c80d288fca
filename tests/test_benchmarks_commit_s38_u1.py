"""Session 38, fixer u1 (audit a1 #4): a stage record's ``+dirty`` mark leaves out the benchmarks' own result files,
so a stage run after another on a clean checkout is not marked dirty by the first one's results."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from benchmarks.machine import COMMIT_ENV, _commit


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
                   check=True, capture_output=True)  # fmt: skip


def test_the_dirty_mark_ignores_the_benchmarks_own_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stage run after another on a clean checkout recorded `+dirty` from the first stage's result files."""
    monkeypatch.delenv(COMMIT_ENV, raising=False)
    repo = tmp_path / "repo"
    (repo / "benchmarks" / "results" / "lossless").mkdir(parents=True)
    (repo / "benchmarks" / "stages.py").write_text("x = 1\n")
    (repo / "benchmarks" / "RESULTS.md").write_text("# old\n")
    (repo / "benchmarks" / "results" / "lossless" / "results.json").write_text("{}\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "first")
    clean = _commit(repo)
    assert len(clean) >= 7 and not clean.endswith("+dirty")
    # what a stage writes: its results (changed and new), the regenerated page, the staging folder
    (repo / "benchmarks" / "results" / "lossless" / "results.json").write_text('{"new": 1}\n')
    (repo / "benchmarks" / "results" / "lossless" / "results.md").write_text("| t |\n")
    (repo / "benchmarks" / "results" / ".work" / "staging" / "x").mkdir(parents=True)
    (repo / "benchmarks" / "results" / ".work" / "staging" / "x" / "a.md").write_text("a")
    (repo / "benchmarks" / "RESULTS.md").write_text("# new\n")
    assert _commit(repo) == clean
    (repo / "benchmarks" / "stages.py").write_text("x = 2\n")  # the code changed: dirty
    assert _commit(repo) == clean + "+dirty"
    _git(repo, "checkout", "-q", "--", "benchmarks/stages.py")
    (repo / "benchmarks" / "new_script.py").write_text("")  # an untracked source file: dirty
    assert _commit(repo) == clean + "+dirty"
    (repo / "benchmarks" / "new_script.py").unlink()
    (repo / "benchmarks" / "RESULTS.md").unlink()  # deleting the page is a results change too
    assert _commit(repo) == clean

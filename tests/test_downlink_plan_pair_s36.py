"""``downlink plan``'s report.json and report.md: a JSON commit that fails after the markdown's leaves the earlier pair
(review s36 r15 #7: it left the earlier report.json with no report.md)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgeae.cli import downlink_plan


def _fail_json_rename(monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.replace

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if Path(dst).name == "report.json":
            raise OSError(28, "No space left on device", str(dst))
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)


def test_a_failed_json_commit_leaves_the_earlier_pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    downlink_plan._write_reports(tmp_path, {"run": 1}, "# run 1\n")
    _fail_json_rename(monkeypatch)
    with pytest.raises(OSError, match="No space left"):
        downlink_plan._write_reports(tmp_path, {"run": 2}, "# run 2\n")
    assert (tmp_path / "report.md").read_text() == "# run 1\n"
    assert '"run": 1' in (tmp_path / "report.json").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json", "report.md"]  # nothing left aside


def test_a_failed_first_commit_leaves_neither(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fail_json_rename(monkeypatch)
    with pytest.raises(OSError):
        downlink_plan._write_reports(tmp_path, {"run": 1}, "# run 1\n")
    assert list(tmp_path.iterdir()) == []


def test_a_clean_commit_replaces_both(tmp_path: Path) -> None:
    downlink_plan._write_reports(tmp_path, {"run": 1}, "# run 1\n")
    downlink_plan._write_reports(tmp_path, {"run": 2}, "# run 2\n")
    assert (tmp_path / "report.md").read_text() == "# run 2\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json", "report.md"]


def test_without_hard_links_the_earlier_markdown_is_copied_aside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    downlink_plan._write_reports(tmp_path, {"run": 1}, "# run 1\n")

    def no_link(src: object, dst: object) -> None:
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_link)
    _fail_json_rename(monkeypatch)
    with pytest.raises(OSError, match="No space left"):
        downlink_plan._write_reports(tmp_path, {"run": 2}, "# run 2\n")
    assert (tmp_path / "report.md").read_text() == "# run 1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json", "report.md"]


def test_a_killed_runs_earlier_copy_is_removed(tmp_path: Path) -> None:
    import subprocess
    import sys

    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)  # fmt: skip
    (tmp_path / f".report.md.earlier-{dead}").write_text("# old\n")
    live = tmp_path / f".report.md.earlier-{os.getppid()}"  # a running process's: kept
    live.write_text("# other\n")
    downlink_plan._write_reports(tmp_path, {"run": 1}, "# run 1\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["report.json", "report.md", live.name])

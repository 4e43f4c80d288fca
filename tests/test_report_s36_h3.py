"""edgeae.report (session 36, fixer h3): a failed write leaves the earlier page's images, not only the page."""

from __future__ import annotations

from pathlib import Path

import pytest
from _helpers_report import files, no_space_for_the_page, sections

from edgeae.report import stage_images, write_report


def test_a_failed_page_write_leaves_the_earlier_images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_report(tmp_path, "earlier", sections(10, ("a", "b")))
    before = files(tmp_path)
    assert {"img/00-a.png", "img/00-b.png", "img/bar.png", "index.html"} == set(before)
    no_space_for_the_page(monkeypatch)
    with pytest.raises(OSError, match="No space left"):
        write_report(tmp_path, "new", sections(200, ("a", "b")))
    monkeypatch.undo()
    assert files(tmp_path) == before  # the earlier page with its own images, no staging folder left
    assert sorted(p.name for p in (tmp_path / "img").iterdir()) == ["00-a.png", "00-b.png", "bar.png"]

    write_report(tmp_path, "new", sections(200, ("a", "b")))  # and a write that succeeds replaces them all
    after = files(tmp_path)
    assert set(after) == set(before) and all(after[n] != before[n] for n in before)


def test_a_staging_folder_left_by_a_dead_process_is_removed(tmp_path: Path) -> None:
    dead = tmp_path / "img" / ".new-999999999"
    dead.mkdir(parents=True)
    (dead / "00-a.png").write_bytes(b"half")
    mine = tmp_path / "img" / ".new-x"  # not a staging folder's name: kept
    mine.mkdir()
    staged = stage_images(tmp_path)
    assert staged.parent == tmp_path / "img" and not any(staged.iterdir())
    assert {p.name for p in (tmp_path / "img").iterdir()} == {".new-x", staged.name}

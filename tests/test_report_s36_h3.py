"""edgeae.report (session 36, fixer h3): a failed write leaves the earlier page's images, not only the page."""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
import pytest

from edgeae.report import Figure, Section, stage_images, write_report


def _report(value: int) -> list[Section]:
    pix = np.full((4, 6), value, np.uint8)
    return [Section("S", figures=[Figure("a", pix, "a"), Figure("b", pix, "b")], images={"bar": pix})]


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_failed_page_write_leaves_the_earlier_images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_report(tmp_path, "earlier", _report(10))
    before = _files(tmp_path)
    assert {"img/00-a.png", "img/00-b.png", "img/bar.png", "index.html"} == set(before)
    real = Path.write_text

    def full_disk(self: Path, data: str, *args: object, **kwargs: object) -> int:
        if "index.html" in self.name:
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, data, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "write_text", full_disk)
    with pytest.raises(OSError, match="No space left"):
        write_report(tmp_path, "new", _report(200))
    monkeypatch.undo()
    assert _files(tmp_path) == before  # the earlier page with its own images, no staging folder left
    assert sorted(p.name for p in (tmp_path / "img").iterdir()) == ["00-a.png", "00-b.png", "bar.png"]

    write_report(tmp_path, "new", _report(200))  # and a write that succeeds replaces them all
    after = _files(tmp_path)
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

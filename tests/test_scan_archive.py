"""Archive walking: folders, manifests, globs; stable names and keys; clear errors."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from edgeae.scan.archive import entry_key, walk_archive


def _touch(root: Path, *names: str) -> None:
    for n in names:
        (root / n).parent.mkdir(parents=True, exist_ok=True)
        (root / n).write_bytes(b"x")


def test_folder_walk_is_sorted_recursive_and_filters_suffixes(tmp_path: Path, caplog) -> None:
    _touch(tmp_path, "b/2.png", "a/1.JPG", "a/notes.txt", "c.tif", ".hidden.png", "d.pnm", "e.tab", "f.tab")
    with caplog.at_level(logging.WARNING, logger="edgeae.scan.archive"):
        names = [e.name for e in walk_archive(tmp_path)]
    assert names == ["a/1.JPG", "b/2.png", "c.tif", "d.pnm"]
    # what is not scanned is said, by type (hidden files are not counted)
    assert "3 file(s) of other types" in caplog.text and ".tab 2, .txt 1" in caplog.text


def test_manifest_relative_paths_comments_and_missing_files_kept(tmp_path: Path) -> None:
    _touch(tmp_path, "imgs/1.png")
    m = tmp_path / "list.txt"
    m.write_text("# archive\nimgs/1.png\n\nimgs/missing.png\n")
    entries = walk_archive(m)
    assert [e.name for e in entries] == ["imgs/1.png", "imgs/missing.png"]
    assert entries[0].path == tmp_path / "imgs/1.png"


def test_csv_manifest_skips_header(tmp_path: Path) -> None:
    _touch(tmp_path, "1.png")
    m = tmp_path / "list.csv"
    m.write_text("file,site\n1.png,apollo\n")
    assert [e.name for e in walk_archive(m)] == ["1.png"]


def test_glob_names_relative_to_glob_root_and_dedup(tmp_path: Path) -> None:
    _touch(tmp_path, "x/1.png", "x/y/2.png", "x/3.txt")
    entries = walk_archive([f"{tmp_path}/x/**/*.png", f"{tmp_path}/x/*.png"])
    assert [e.name for e in entries] == ["1.png", "y/2.png"]


def test_keys_are_stable_unique_and_safe() -> None:
    assert entry_key("a/b c.png") == entry_key("a/b c.png")
    assert entry_key("a/1.png") != entry_key("b/1.png")
    assert "/" not in entry_key("a/b c.png") and " " not in entry_key("a/b c.png")


def test_errors_name_the_spec(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope"):
        walk_archive(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="matches no image"):
        walk_archive(f"{tmp_path}/*.png")
    _touch(tmp_path, "p/1.png", "q/1.png")
    with pytest.raises(ValueError, match="share the name"):
        walk_archive([tmp_path / "p", tmp_path / "q"])


def test_a_data_file_named_alone_is_scanned_through_its_label(tmp_path: Path) -> None:
    """A PDS3 data file in a manifest (or given as the archive) is read through the label beside it; it was
    dropped without a word. Named together with its label, the product is scanned once."""
    d = tmp_path / "p"
    d.mkdir()
    (d / "x.img").write_bytes(b"\0" * 16)
    (d / "x.lbl").write_text('PDS_VERSION_ID = PDS3\n^IMAGE = "x.img"\nEND\n')
    (d / "y.png").write_bytes(b"")
    m = tmp_path / "list.txt"
    m.write_text(f"{d / 'x.img'}\n{d / 'y.png'}\n")
    entries = walk_archive(m)
    assert [e.path.name for e in entries] == ["x.lbl", "y.png"]
    assert [e.path.name for e in walk_archive(d / "x.img")] == ["x.lbl"]
    assert [e.path.name for e in walk_archive([d / "x.img", d / "x.lbl"])] == ["x.lbl"]
    assert [e.path.name for e in walk_archive(d)] == ["x.lbl", "y.png"]  # a folder: the label, once


def test_a_manifest_line_given_twice_is_scanned_once_and_said(tmp_path: Path, caplog) -> None:
    """A file listed twice under the same name was merged without a word (under two names it was warned)."""
    _touch(tmp_path, "imgs/1.png", "imgs/2.png")
    m = tmp_path / "list.txt"
    m.write_text("imgs/1.png\nimgs/2.png\nimgs/1.png\nimgs/1.png\n")  # one file, given three times
    with caplog.at_level(logging.WARNING, logger="edgeae.scan.archive"):
        assert [e.name for e in walk_archive(m)] == ["imgs/1.png", "imgs/2.png"]
    assert "1 archive file(s) listed more than once are scanned once (e.g. 'imgs/1.png')" in caplog.text

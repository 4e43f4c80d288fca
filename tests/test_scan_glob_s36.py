"""A ``**`` glob with a wildcard before it walks only the folders that wildcard names (review s36 r17 #2:
``arc*/**`` walked the whole parent folder, and a link from ``arc`` to a sibling folder was not followed as
``arc/**`` follows it)."""

from __future__ import annotations

import glob
import os
from pathlib import Path

import pytest

from edgeae.scan import archive_walk as archive


def _tree(tmp_path: Path) -> Path:
    for rel in ("arc1/a.png", "arc1/s/b.png", "arc2/c.png", "other/big/d.png", "side/e.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    return tmp_path


def test_a_wildcard_before_the_double_star_is_matched_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _tree(tmp_path)
    walked: list[str] = []
    real_walk = os.walk

    def walk(top: str, *a: object, **k: object):  # type: ignore[no-untyped-def]
        walked.append(os.path.basename(os.path.normpath(top)))
        return real_walk(top, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "walk", walk)
    pattern = f"{root}/arc*/**/*.png"
    found = archive._glob_tree(pattern)
    assert sorted(walked) == ["arc1", "arc2"]  # not the parent folder (other/big was walked before)
    assert sorted(found) == sorted(glob.glob(pattern, recursive=True))


def test_a_link_to_a_sibling_is_followed_as_with_a_plain_root(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    (root / "arc1" / "to_side").symlink_to(root / "side")
    plain = archive._glob_tree(f"{root}/arc1/**/*.png")
    wild = archive._glob_tree(f"{root}/arc[1]/**/*.png")
    assert any(p.endswith("to_side/e.png") for p in plain)
    assert sorted(wild) == sorted(plain)


@pytest.mark.parametrize("pattern", ["**/*.png", "arc1/**", "*/**/*.png", "arc?/s/**", "a**/*.png"])
def test_the_same_paths_as_glob_on_a_tree_without_links(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pattern: str
) -> None:
    _tree(tmp_path)
    monkeypatch.chdir(tmp_path)
    files = [p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p)]  # the folders: not images
    assert sorted(p for p in archive._glob_tree(pattern) if os.path.isfile(p)) == sorted(files)

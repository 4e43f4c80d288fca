"""The synthetic archive builder: real orbital crops, a tiled strip, corrupt files; reproducible from a seed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from edgeae.scan.archive import walk_archive
from edgeae.scan.synth import build_archive, main


def test_build_archive_is_reproducible_and_marks_corrupt_files(data_root: Path, tmp_path: Path) -> None:
    from edgeae.imageio import ImageReadError, image_shape

    kw: dict[str, Any] = {"data": data_root, "n_huge": 1, "huge_shape": (600, 300), "n_corrupt": 2, "progress": False,
          "source_globs": ("orbital_gray/lroc_nac_craters/*.png",)}  # fmt: skip
    info = build_archive(tmp_path / "a", 8, **kw)
    build_archive(tmp_path / "b", 8, **kw)
    entries = walk_archive(tmp_path / "a")
    assert info["n"] == len(entries) == 8
    assert [e.name for e in entries] == [e.name for e in walk_archive(tmp_path / "a" / "manifest.txt")]
    for e in entries:
        assert (tmp_path / "b" / e.name).read_bytes() == e.path.read_bytes(), e.name
    corrupt = json.loads((tmp_path / "a" / "SYNTH.json").read_text())["corrupt"]
    assert sorted(corrupt) == ["corrupt/bad_00.png", "corrupt/bad_01.png"]
    for name in corrupt:
        with pytest.raises((ImageReadError, ValueError)):
            image_shape(tmp_path / "a" / name)
    assert image_shape(tmp_path / "a" / "strips" / "huge_00.tif")[:2] == (600, 300)


def test_cli_rejects_a_bad_shape(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--huge-shape", "big"])

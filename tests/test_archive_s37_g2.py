"""Session 37 audit a1, finding 7 (first half): `python -m edgeae.archive DIR` without the [archive] extra ended in a
traceback (`edgeae._optional.MissingDependencyError: 'rasterio' is needed here ...`, exit 1). It is one line with the
pip line to run, exit 2, before any product is read."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edgeae.archive.__main__ import main


def test_without_rasterio_it_is_one_line_and_status_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "dawn.cub").write_bytes(b"not read: the check comes first")
    monkeypatch.setitem(sys.modules, "rasterio", None)  # as if not installed
    assert main([str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith("python -m edgeae.archive: error: python -m edgeae.archive needs 'rasterio', which is not")
    assert "pip install 'edgeae[archive]'" in err
    # no product under the paths: said as before, whatever is installed
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([str(empty)]) == 1
    assert "no planetary product under" in capsys.readouterr().err


def test_a_dependency_missing_while_reading_is_one_line_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """pyproj (georeferencing) is imported only for a map-projected product: its absence is met while reading."""
    import edgeae.archive.reader as reader
    from edgeae._optional import MissingDependencyError

    (tmp_path / "x.cub").write_bytes(b"x")

    def missing(path: object) -> None:
        raise MissingDependencyError("'pyproj' is needed here but is not installed: run  pip install 'edgeae[archive]'")

    monkeypatch.setattr(reader.ProductReader, "__init__", lambda self, path: missing(path))
    monkeypatch.setattr("edgeae.archive.__main__.check_extras", lambda *a: None)
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == "python -m edgeae.archive: error: 'pyproj' is needed here but is not installed: run  pip install " \
        "'edgeae[archive]'\n"  # fmt: skip


def test_the_module_runs_as_a_command_without_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "x.cub").write_bytes(b"x")
    block = "import sys, runpy; sys.modules['rasterio'] = None; runpy.run_module('edgeae.archive', run_name='__main__')"
    r = subprocess.run(
        [sys.executable, "-c", block, str(tmp_path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr and "pip install 'edgeae[archive]'" in r.stderr

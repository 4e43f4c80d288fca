"""Session 41: the zoo's PyTorch checkpoints are their own distribution, ``edgeae-weights``.

The flight installs were over their 200 MB budget (202.0 / 206.5 MB) because the edgeae wheel carried 20.3 MB of
``.pt`` files a board cannot use. The edgeae wheel now holds their metrics (``NAME.json``) and the flight artifacts,
``packaging/edgeae-weights`` builds the checkpoints' wheel, and :func:`edgeae.zoo.weights_path` finds them in either
place (the package's own folder first: a source checkout and an editable install need nothing more).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from edgeae import __version__, zoo
from edgeae.zoo import checkpoints

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS_PROJECT = ROOT / "packaging" / "edgeae-weights"


def _tracked_copy(dest: Path) -> Path:
    """The tracked files of this checkout as they are in the working tree (no build/ or egg-info leftovers, which
    setuptools would put back into a wheel): the flight-install benchmark's copy."""
    from benchmarks.flight_install import tracked_copy

    if tracked_copy(dest) != dest:
        pytest.skip("not a git checkout: the wheels are built from its tracked files")
    return dest


def _wheel(project: Path, out: Path) -> list[str]:
    code = f"import setuptools.build_meta as b; print(b.build_wheel({str(out)!r}))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with zipfile.ZipFile(out / proc.stdout.split()[-1]) as z:
        return z.namelist()


def test_the_edgeae_wheel_leaves_the_checkpoints_to_edgeae_weights(tmp_path: Path) -> None:
    src = _tracked_copy(tmp_path / "src")
    main = _wheel(src, tmp_path / "main")
    weights = _wheel(src / "packaging" / "edgeae-weights", tmp_path / "weights")
    shipped = {e["file"] for e in zoo.ZOO.values()}
    assert not [n for n in main if n.endswith(".pt")], "the edgeae wheel carries PyTorch checkpoints"
    # the metrics stay with edgeae (edgeae zoo lists them on any install), and so do the flight artifacts
    assert {f"edgeae/zoo/weights/{Path(f).stem}.json" for f in shipped} <= set(main)
    assert any(n.startswith("edgeae/zoo/artifacts/") and n.endswith(".tflite") for n in main)
    data = {n for n in weights if ".dist-info/" not in n}
    assert data == {f"edgeae_weights/{f}" for f in shipped}  # every registered checkpoint, nothing else


def test_the_two_distributions_share_a_version() -> None:
    project = tomllib.loads((WEIGHTS_PROJECT / "pyproject.toml").read_text())["project"]
    assert project["name"] == checkpoints.WEIGHTS_DISTRIBUTION and project["version"] == __version__


def _as_wheel_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, with_weights: bool) -> Path:
    """edgeae installed from its wheel: the package's weights folder holds the metrics only; ``edgeae_weights``
    is installed (importable from ``tmp_path/site``) when ``with_weights``."""
    ours = tmp_path / "edgeae_zoo_weights"
    ours.mkdir()
    for f in zoo.WEIGHTS_DIR.glob("*.json"):
        shutil.copy2(f, ours / f.name)
    monkeypatch.setattr(zoo, "WEIGHTS_DIR", ours)
    site = tmp_path / "site"
    (site / checkpoints.WEIGHTS_PACKAGE).mkdir(parents=True)
    if with_weights:
        for e in zoo.ZOO.values():
            (site / checkpoints.WEIGHTS_PACKAGE / e["file"]).symlink_to(ROOT / "edgeae/zoo/weights" / e["file"])
        monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("EDGEAE_ZOO", str(tmp_path / "user"))
    return site / checkpoints.WEIGHTS_PACKAGE


def test_a_wheel_install_reads_the_checkpoints_from_edgeae_weights(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pkg = _as_wheel_install(monkeypatch, tmp_path, with_weights=True)
    assert checkpoints.weights_package_dir() == pkg
    path = zoo.resolve("orbital-gray-vae")
    assert path == pkg / "orbital-gray-vae.pt" and path.is_file()
    assert (
        zoo.metrics("orbital-gray-vae")["best_epoch"]
        == json.loads((ROOT / "edgeae/zoo/weights/orbital-gray-vae.json").read_text())["best_epoch"]
    )
    assert all(m["available"] for m in zoo.list_models() if not m["user_installed"])


def test_a_wheel_install_without_them_says_how_to_get_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _as_wheel_install(monkeypatch, tmp_path, with_weights=False)
    assert checkpoints.weights_package_dir() is None
    with pytest.raises(FileNotFoundError) as err:
        zoo.resolve("orbital-gray-vae")
    assert "pip install ./packaging/edgeae-weights" in str(err.value) and "reproduce them with" in str(err.value)
    models = zoo.list_models()
    assert not any(m["available"] for m in models if not m["user_installed"])
    assert zoo.metrics("orbital-gray-vae")  # the metrics ship with edgeae itself
    from edgeae.cli import main

    assert main(["zoo"]) == 0
    out = capsys.readouterr().out
    assert "* weights not in this install yet" in out and "pip install edgeae-weights" in out


def test_the_package_folder_wins_over_edgeae_weights(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A checkout (or an install that replaced a registered model with --zoo-name) keeps its own checkpoint even
    where edgeae-weights is installed too."""
    _as_wheel_install(monkeypatch, tmp_path, with_weights=True)
    own = zoo.WEIGHTS_DIR / "orbital-gray-vae.pt"
    own.symlink_to(ROOT / "edgeae/zoo/weights/orbital-gray-vae.pt")
    assert zoo.resolve("orbital-gray-vae") == own

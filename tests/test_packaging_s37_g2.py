"""Session 37 audit a1, findings 2 and 6: what a package user gets from the install instructions and the
distributions. (2) The README said `torch==2.13.0` was "pinned exactly: any range pulls CUDA wheels", as if the pin
kept CUDA out; on Linux PyPI's only torch==2.13.0 wheel is the CUDA one (several GB). The Install section now gives
the command that takes the CPU build from the PyTorch CPU index first, for the version the extras pin. (6) No licence
text shipped (the metadata said Apache-2.0); the sdist carried tests/test_*.py that could not run from it (64
collection errors: no conftest.py, benchmarks/, docs/); messages cited docs/ paths a package user does not have."""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _torch_pin() -> str:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["train"]
    return next(d for d in deps if d.startswith("torch=="))


def _install_section() -> str:
    text = (ROOT / "README.md").read_text()
    return text[text.index("\n## Install\n") :].split("\n## ", 2)[1]


def test_the_readme_installs_the_cpu_build_of_the_pinned_torch_first() -> None:
    install = _install_section()
    pin = _torch_pin()
    cpu = f"pip install {pin} --index-url https://download.pytorch.org/whl/cpu"
    assert cpu in install, f"the Install section must give: {cpu}"
    assert install.index(cpu) < install.index("pip install -e '.[train]'")  # first, then the extra
    assert "CUDA" in install and "several GB" in install
    assert not re.search(r"any range pulls CUDA", install)  # the pin alone does not keep CUDA out
    comment = (ROOT / "pyproject.toml").read_text().split("\ntrain = ")[0].rsplit("]\n", 1)[1]
    assert "download.pytorch.org/whl/cpu" in comment and "not the" in comment


def test_the_apache_licence_text_ships_with_both_distributions() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]  # the standard text, unchanged
    assert "END OF TERMS AND CONDITIONS" in text and len(text.splitlines()) == 202
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]


def test_the_sdist_leaves_out_the_tests_it_cannot_run(tmp_path: Path) -> None:
    """The sdist built (setuptools.build_meta.build_sdist, as pip and `python -m build` call it) from the tracked
    files of this checkout, as they are in the working tree: LICENSE and PKG-INFO's License-File, the packages, no
    tests/ file (they fail to collect from the unpacked sdist: no conftest.py, benchmarks/, docs/). Checked by hand
    too (s37 g2): `pytest --co -q` in the unpacked copy collects nothing, its wheel adds .dist-info/licenses/LICENSE.
    Until review r2 of session 37 this test read MANIFEST.in's text only."""
    from benchmarks.flight_install import tracked_copy

    src, out = tmp_path / "src", tmp_path / "dist"
    if tracked_copy(src) != src:  # a tracked file deleted in the working tree is not in the sdist
        pytest.skip("not a git checkout: the sdist is built from its tracked files")
    code = f"import setuptools.build_meta as b; print(b.build_sdist({str(out)!r}))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=src, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with tarfile.open(out / proc.stdout.split()[-1]) as tar:
        names = [n.split("/", 1)[1] for n in tar.getnames() if "/" in n]
        pkg_info = tar.extractfile(next(m for m in tar.getmembers() if m.name.endswith("/PKG-INFO")))
        assert pkg_info is not None
        meta = pkg_info.read().decode()
    assert "LICENSE" in names and "License-File: LICENSE" in meta and "License-Expression: Apache-2.0" in meta
    assert {"pyproject.toml", "README.md", "edgeae/zoo/user.py", "firmware_sim/frame_decoders.py"} <= set(names)
    assert not [n for n in names if n.startswith("tests/")], "the sdist carries tests/"


def test_messages_cite_docs_as_files_of_the_edgeae_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeae import zoo
    from edgeae._optional import source_ref

    assert source_ref("docs/export.md", "Zoo artifacts") == "docs/export.md of the edgeae source, Zoo artifacts"
    assert source_ref("benchmarks/RESULTS.md") == "benchmarks/RESULTS.md of the edgeae source"
    (tmp_path / "orbital-gray-vae").mkdir()
    (tmp_path / "orbital-gray-vae" / "orbital-gray-vae.int8.onnx").write_bytes(b"x")
    monkeypatch.setattr(zoo, "ARTIFACTS_DIR", tmp_path)
    line = zoo.stale_artifacts_warning("orbital-gray-vae")
    assert line is not None and line.endswith("(docs/export.md of the edgeae source, Zoo artifacts)")

"""The install layout: export/ and firmware_sim/ ship as edgeae.export / edgeae.firmware_sim only."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAPPED = {"edgeae": "edgeae", "edgeae.export": "export", "edgeae.firmware_sim": "firmware_sim"}


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_package_folder_is_listed() -> None:
    listed = set(_pyproject()["tool"]["setuptools"]["packages"])
    found = set()
    for name, folder in MAPPED.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([name, *rel.parts]) if rel.parts else name)
    # data-only folders (zoo weights, link presets, missions) are listed too, so setuptools does not warn
    data_only = {name for name in listed - found if _folder(name).is_dir() and not any(_folder(name).glob("*.py"))}
    assert found == listed - data_only, f"add to / remove from [tool.setuptools] packages: {found ^ listed}"


def _folder(package: str) -> Path:
    for name, folder in sorted(MAPPED.items(), key=lambda kv: -len(kv[0])):
        if package == name or package.startswith(name + "."):
            rest = package[len(name) :].strip(".")
            return ROOT / folder / Path(*rest.split(".")) if rest else ROOT / folder
    return ROOT / package


def test_no_generic_top_level_names() -> None:
    cfg = _pyproject()["tool"]["setuptools"]
    assert cfg["package-dir"] == MAPPED
    assert all(p.startswith("edgeae") for p in cfg["packages"])


def test_import_edgeae_is_light() -> None:
    code = (
        "import sys, edgeae, edgeae.metadata, edgeae.data, edgeae.datasets, edgeae.cli;"
        "heavy = {'torch', 'cv2', 'onnxruntime', 'ray', 'scipy', 'matplotlib'} & set(sys.modules);"
        "print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_exact_torch_pin() -> None:
    deps = _pyproject()["project"]["optional-dependencies"]["train"]
    assert "torch==2.13.0" in deps, "torch must be pinned exactly (an unpinned torch pulls CUDA wheels)"

"""The base install (pyproject's ``dependencies`` alone) can import the wire format, as pyproject promises."""

from __future__ import annotations

import importlib.metadata as md
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Runs in a fresh interpreter: refuses every top-level import that is neither stdlib, edgeae, nor allowed.
_BLOCKER = """
import importlib.abc, json, pkgutil, sys
allowed = set(json.loads(sys.argv[1])) | set(sys.stdlib_module_names) | {"edgeae"}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top not in allowed and not top.startswith("_"):
            raise ModuleNotFoundError(f"No module named {top!r} (not a base dependency)", name=top)
        return None
sys.meta_path.insert(0, Block())
import edgeae.wire
for m in pkgutil.iter_modules(edgeae.wire.__path__, "edgeae.wire."):
    __import__(m.name)
print("ok")
"""


def _dist_name(req: str) -> str:
    return re.split(r"[\s\[<>=!~;(]", req, maxsplit=1)[0].lower().replace("_", "-")


def _base_closure() -> set[str]:
    """Distribution names of pyproject's base dependencies and everything they require (no extras)."""
    from packaging.requirements import Requirement

    todo = [_dist_name(r) for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            reqs = md.distribution(name).requires or []
        except md.PackageNotFoundError:
            continue  # not installed here: the import below then fails and says which
        for r in map(Requirement, reqs):
            if r.marker is None or r.marker.evaluate({"extra": ""}):
                todo.append(_dist_name(r.name))
    return seen


def test_wire_format_imports_with_base_dependencies_only() -> None:
    pytest.importorskip("spacepackets")  # the dev venv has it; without it the import would fail for that reason
    dists = _base_closure()
    top_level = {
        top
        for top, owners in md.packages_distributions().items()
        if any(o.lower().replace("_", "-") in dists for o in owners)
    }
    assert "numpy" in top_level
    out = subprocess.run(
        [sys.executable, "-c", _BLOCKER, json.dumps(sorted(top_level))],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", (
        f"edgeae.wire needs more than the base dependencies {sorted(dists)}: {out.stderr.strip().splitlines()[-1:]}"
    )


def test_a_missing_base_dependency_says_reinstall_not_an_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """spacepackets is a base dependency since session 31: its absence means a broken install, not a missing
    extra (the hint named flight-onnx)."""
    import sys

    from edgeae._optional import MissingDependencyError, require

    monkeypatch.setitem(sys.modules, "spacepackets", None)  # import of it raises ModuleNotFoundError
    with pytest.raises(MissingDependencyError, match="reinstall edgeae") as e:
        require("spacepackets")
    assert "[" not in str(e.value)  # no extra named


def test_the_cli_says_reinstall_when_a_base_dependency_is_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path
) -> None:
    """edgeae.wire imports spacepackets at top level: a command that reaches it names the broken install, not a
    bare "No module named" (review, session 31)."""
    import sys

    from edgeae.cli import main

    for name in [m for m in sys.modules if m == "spacepackets" or m.startswith(("spacepackets.", "edgeae.wire"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "spacepackets", None)
    img = tmp_path / "a.png"
    import numpy as np

    from edgeae.imageio import write_image

    write_image(img, np.zeros((32, 32), np.uint8))
    rc = main(["downlink", "simulate", "--image", str(img), "--codec", "none", "--out", str(tmp_path / "p.bin")])
    err = capsys.readouterr().err
    assert rc == 2 and "reinstall edgeae" in err, err

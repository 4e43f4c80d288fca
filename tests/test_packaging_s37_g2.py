"""Session 37 audit a1, findings 2 and 6: what a package user gets from the install instructions and the
distributions. (2) The README said `torch==2.13.0` was "pinned exactly: any range pulls CUDA wheels", as if the pin
kept CUDA out; on Linux PyPI's only torch==2.13.0 wheel is the CUDA one (several GB). The Install section now gives
the command that takes the CPU build from the PyTorch CPU index first, for the version the extras pin."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

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

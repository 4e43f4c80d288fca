"""The pip line for a missing ``imagecodecs`` names the smallest extra that installs it (session 37, fixer p1): it said
``edgeae[ground]`` (OpenCV, scipy, scikit-image, scikit-learn, matplotlib, onnxruntime...), where
``edgeae[flight-ccsds121]`` installs imagecodecs alone, as the flight runtime's TIFF codec drop says (f6ff639)."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_a_missing_imagecodecs_names_the_smallest_extra_that_brings_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeae.firmware_sim.frame_decoders import TIFF_CODECS_EXTRA

    from edgeae._optional import MissingDependencyError, require

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    bringing = [name for name, deps in extras.items() if any(d.startswith("imagecodecs") for d in deps)]
    smallest = min(bringing, key=lambda name: len(extras[name]))
    assert smallest == TIFF_CODECS_EXTRA == "flight-ccsds121" and extras[smallest] == ["imagecodecs>=2024.1"]
    monkeypatch.setitem(sys.modules, "imagecodecs", None)  # not installed
    with pytest.raises(MissingDependencyError) as got:
        require("imagecodecs")
    assert (
        str(got.value)
        == "'imagecodecs' is needed here but is not installed: run  pip install 'edgeae[flight-ccsds121]'"
    )

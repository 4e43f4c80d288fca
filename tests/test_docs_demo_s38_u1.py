"""Session 38, fixer u1 (audit a1 #3): docs/demo.md quoted the HiRISE GeoTIFF's CAE figure (23.43 dB) without the
classical fill that beats it on the same samples (normconv, 23.59 dB)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_demo_md_puts_the_best_classical_fill_beside_the_cae_on_the_hirise_geotiff() -> None:
    """`edgeae demo --image ESP_037156_1800_RED.byte.tif`: normconv 23.59 dB, CAE 23.43, cross-checked 23.48."""
    text = re.sub(r"\s+", " ", (ROOT / "docs" / "demo.md").read_text())
    at = text.index("against 23.43 dB")
    near = text[at - 400 : at + 400]
    assert "normconv" in near and "23.59 dB" in near and "23.48" in near

"""Archives of products with no valid pixel and ``edgeae score`` on one of them with the zoo's int8 ONNX VAE (no
torch): shared by the session-37 scan tests q1 and v1 (each wrote its own copy until session 38)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# the orbital grey VAE's int8 ONNX artifact, as the zoo ships it: scores without torch
GRAY_ONNX = Path(__file__).parents[1] / "edgeae/zoo/artifacts/orbital-gray-vae/orbital-gray-vae.int8.onnx"


def nan_archive(root: Path) -> Path:
    """``root`` holding ``good.png`` (random grey) and ``nan.tif`` (128² float32, all NaN)."""
    import numpy as np
    import tifffile
    from test_scan_support import noise_archive

    noise_archive(root, ["good.png"])
    tifffile.imwrite(root / "nan.tif", np.full((128, 128), np.nan, np.float32))
    return root


def score_log(image: Path, csv: Path, caplog: Any, *extra: str) -> str:
    """What ``edgeae score IMAGE`` with :data:`GRAY_ONNX` into ``csv`` (``extra``: more flags) logged; its status
    must be 0. ``caplog`` is cleared after, for the next call."""
    from edgeae.cli import main

    assert main(["score", str(image), "--model", str(GRAY_ONNX), "-o", str(csv), "--no-progress", *extra]) == 0
    text: str = caplog.text
    caplog.clear()
    return text

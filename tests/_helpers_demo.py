"""The demo's session-36 tests (g1, h3, j1) each wrote these out until session 37: a PNG written by its bytes, a
small RGB frame and the demo's stages that need no model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeae.demo import stage_frame, stage_metrics
from edgeae.demo.rebuild import stage_reconstruct

FAST = [stage_frame, stage_reconstruct, stage_metrics]  # no model, no codec: well under a second


def write_png(path: Path, pixels: np.ndarray) -> Path:
    """``pixels`` as a PNG at ``path``, written by bytes: OpenCV cannot open every name Python can."""
    cv2 = pytest.importorskip("cv2")
    ok, data = cv2.imencode(".png", pixels)
    assert ok
    path.write_bytes(data.tobytes())
    return path


def small_frame() -> np.ndarray:
    """A 40×48 RGB uint8 frame of three ramps."""
    y, x = np.mgrid[0:40, 0:48]
    return np.stack([(x * 5 + y * 3) % 256, (x * 2) % 256, (y * 6) % 256], axis=2).astype(np.uint8)

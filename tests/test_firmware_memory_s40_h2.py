"""Session 40, fixer h2: flight memory the plan did not count (firmware_sim/memory_plan.py decides whether a frame
flies, goes down the ladder or is dropped: it must not under-predict).

1. A stripped TIFF's reader held 7 bands beside the strip (tifffile read two strips' bytes at a time and cut them
   apart), 4 planned (``reader_band``): a TIFF frame at ``sparse_only`` grew 1.3-2.8 MiB over its plan.
"""

from __future__ import annotations

import dataclasses
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

MIB = 2**20


def _orbital(width: int, height: int) -> Any:
    """The orbital mission on a camera of ``width`` (``height`` 0: any)."""
    from edgeae.firmware_sim.mission import load_mission

    m = load_mission("orbital_nac")
    return dataclasses.replace(m, camera=dataclasses.replace(m.camera, width=width, height=height))


@pytest.mark.parametrize(
    "layout",
    [
        {"rowsperstrip": 256},  # the mission's strip rows: two strips read at a time, 7 bands held
        {"rowsperstrip": 64},  # bands of a quarter strip
        {"rowsperstrip": 256, "compression": "zlib"},  # decoded segments beside their compressed bytes
        {"tile": (256, 256)},
    ],
    ids=["strips256", "strips64", "deflate256", "tiles256"],
)
def test_a_tiff_reader_holds_no_more_than_its_planned_bands(tmp_path: Path, layout: dict[str, Any]) -> None:
    """Traced peak of reading a TIFF frame's strips: the reader's output strip and the bands it decodes, within the
    plan's ``frame_strip_raw`` share for the reader (one strip) and its ``reader_band``. Before session 40 a TIFF of
    256-row strips read in 256-row strips held strip + 7.0 bands (4 planned: 1.5 MiB over on this 2048-px frame)."""
    tifffile = pytest.importorskip("tifffile")
    from edgeae.firmware_sim.frame_intake import band_rows, stored_layout
    from edgeae.firmware_sim.frames import TiffFrame
    from edgeae.firmware_sim.memory_plan import plan_memory

    h, w = 1024, 2048
    img = (80 + 60 * np.random.default_rng(1).random((h, w))).astype(np.uint8)
    path = tmp_path / "f.tif"
    tifffile.imwrite(path, img, **layout)
    reader = TiffFrame(path)
    plan = dict(plan_memory(_orbital(w, 0), w, h, 0, 1, stored_layout(reader), band_rows(reader)).items)
    strip = 256 * w
    got = np.empty_like(img)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        for r0, s in reader.strips(256):
            got[r0 : r0 + s.shape[0]] = s[:, :, 0]
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert np.array_equal(got, img)  # every row, as stored
    assert peak <= strip + plan["reader_band"], (peak / MIB, (strip + plan["reader_band"]) / MIB)

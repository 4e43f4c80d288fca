"""Streaming an ISIS3 cube much larger than the strip size keeps peak RSS flat (GDAL windows, capped cache).

Peak RSS is measured in a fresh subprocess (GDAL's block cache is C memory that tracemalloc cannot see), as
VmHWM of /proc/self/status: getrusage's ru_maxrss survives exec on Linux and would report pytest's own peak.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio", reason="the archive extra is not installed: pip install 'edgeae[archive]'")

WIDTH = 2000

PROBE = r"""
import json, sys
import numpy as np
from edgeae.strips import iter_patches
from edgeae.archive.reader import ProductReader
with ProductReader(sys.argv[1]) as r:  # imports, GDAL and the label: the baseline
    r.read_raw(0, 1)
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
base = hwm()
n, total = 0, 0.0
for p in iter_patches(sys.argv[1], 128, band_rows=256):
    n += 1
    total += float(p.pixels.mean())
peak = hwm()
print(json.dumps({"patches": n, "base_mb": base, "peak_mb": peak, "mean": total / n}))
"""


def _cube(path: Path, rows: int) -> Path:
    """A signed 16-bit ISIS3 cube written by GDAL, band by band in row blocks (never held whole)."""
    rng = np.random.default_rng(rows)
    profile = {"driver": "ISIS3", "height": rows, "width": WIDTH, "count": 1, "dtype": "int16", "nodata": -32768}
    from rasterio.windows import Window

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        ds = rasterio.open(path, "w", **profile)
    with ds:
        for y in range(0, rows, 1000):
            h = min(1000, rows - y)
            block = rng.integers(-2000, 6000, (h, WIDTH), dtype=np.int16)
            block[:, :40] = -32768  # an ISIS null margin, as on a NAC strip
            ds.write(block, 1, window=Window(0, y, WIDTH, h))
    return path


def _stream(path: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_streaming_an_isis3_cube_keeps_peak_rss_flat(tmp_path: Path) -> None:
    small = _stream(_cube(tmp_path / "small.cub", 5000))  # 20 MB of samples, 40 MB as float32
    big = _stream(_cube(tmp_path / "big.cub", 20000))  # 80 MB of samples, 160 MB as float32
    assert small["patches"] == 40 * 16 and big["patches"] == 157 * 16
    grow_small = small["peak_mb"] - small["base_mb"]
    grow_big = big["peak_mb"] - big["base_mb"]
    # 4× the rows: the streaming cost stays within 8 MB of the small cube's, far below the 60 MB of samples
    # (120 MB as float32) added; the range pass reads 8 MB windows and GDAL's cache is capped at 16 MB
    assert grow_big < grow_small + 8, (small, big)
    assert grow_big < 60, (small, big)

"""Plain TIFF through tifffile vs through GDAL (rasterio): why edgeae.imageio keeps tifffile for plain TIFFs.

    python -m benchmarks.archive_paths

Writes a seeded 4096×4096 uint8 tiled TIFF to a temporary folder and reads it whole five times each way
(best time). Prints JSON with both times, their ratio and the 1-minute load.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


def _best(f: Callable[[], object], n: int = 5) -> float:
    best = float("inf")
    for _ in range(n):
        t0 = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> dict[str, float]:
    import tifffile

    from edgeae.archive.reader import read_product
    from edgeae.imageio import read_image

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "plain.tif"
        arr = (np.random.default_rng(0).random((4096, 4096)) * 255).astype(np.uint8)
        tifffile.imwrite(p, arr, tile=(256, 256))
        tiff = _best(lambda: read_image(p, detect_nodata=False))
        gdal = _best(lambda: read_product(p))
    out = {
        "tifffile_s": round(tiff, 4), "gdal_s": round(gdal, 4), "gdal_over_tifffile": round(gdal / tiff, 2),
        "load_1min": float(Path("/proc/loadavg").read_text().split()[0]),
    }  # fmt: skip
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()

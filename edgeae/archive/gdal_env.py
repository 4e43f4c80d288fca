"""edgeae's access to GDAL (through rasterio): the capped block cache every open and read runs under, opening a
dataset without per-file georeferencing warnings, GDAL's own words for a failed open or read, and the byte limit
of one read window (``EDGEAE_MAX_IMAGE_BYTES``).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from edgeae._optional import require

GDAL_CACHE_MB = 16  # GDAL's default is 5 % of RAM: RSS would grow with every block a stream reads


def gdal_message(exc: BaseException) -> str:
    """GDAL's own words for a rasterio error: "Read failed. See previous exception..." carries them in its cause."""
    top = str(exc).strip()
    cause = exc.__cause__ or exc.__context__
    if "See previous exception" in top and cause is not None:
        return f"{top.split('.')[0]}: {str(cause).strip() or type(cause).__name__}"
    return top or type(exc).__name__


def max_window_bytes() -> int:
    """The most bytes one read window may take: ``EDGEAE_MAX_IMAGE_BYTES`` (the decode limit, 2 GiB by default)."""
    try:
        from edgeae.imagedecode import ImageLimits
    except ImportError:  # an edgeae without decode limits
        return 2 << 30
    return ImageLimits.from_env().max_bytes


def _open_env(**extra: Any) -> Any:
    rasterio = require("rasterio")
    return rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB * 1024**2, CPL_DEBUG=False, **extra)  # bytes in rasterio


def _open(rasterio: Any, target: Path, opts: dict[str, Any]) -> Any:
    with _open_env(**opts), warnings.catch_warnings():
        # camera-geometry products have no geotransform: that is expected, not worth a warning per file
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        return rasterio.open(target)

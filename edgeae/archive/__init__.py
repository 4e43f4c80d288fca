"""Planetary archive products read as they are: PDS3, PDS4, ISIS3, VICAR, JPEG 2000 and GeoTIFF.

Everything goes through GDAL via ``rasterio`` (the ``archive`` extra: ``pip install 'edgeae[archive]'``),
imported lazily, so ``import edgeae.archive`` is cheap and works without it. Modules:

- ``formats``: which files are archive products, label <-> data file pairing, the truncation checks;
- ``pds3``: PDS3 labels scanned with their nesting; where an image starts when a pointer is stale or nested;
- ``label``: :class:`ProductLabel` (instrument, product id, target, angles, resolution, special values);
- ``reader``: :class:`ProductReader` (windowed reads, bounded sizes, no-data) and :func:`read_product`;
- ``scaling``: :class:`Scaling`, the rule that maps stored samples to [0, 1];
- ``geo``: :class:`GeoRef` (pixel <-> map <-> planetocentric lon/lat) and the aligned score-map GeoTIFF;
- ``__main__``: ``python -m edgeae.archive PATH...`` prints what the reader makes of each product.

The map layers of a scan are written by :mod:`edgeae.scan.geo`. See docs/archive.md.
"""

from __future__ import annotations

__all__ = ["ARCHIVE_EXTRA"]

ARCHIVE_EXTRA = "pip install 'edgeae[archive]'"

"""Which CRS a product's detections are written in, in the ``--geo`` layer (:func:`edgeae.scan.geo.write_layer`).

A GIS puts a layer's features on a product by reprojecting them with PROJ from the layer's CRS into the product's
(QGIS on the fly). Each product's features go to the first of these that PROJ converts exactly, checked on the
product's own patch centres (each must land back within :data:`LAYER_TOLERANCE_PX` of itself; one transformer per
layer CRS and product CRS, cached, its refusal too), and in a polygon layer on every outline vertex
(:func:`outline_placement`):

1. a product on a sphere: its body's planetocentric longitude/latitude layer (the IAU 2015 sphere, e.g.
   ``IAU_2015:49900`` for Mars: ``anomalies_mars``), with the products of every projection on that body; on a sphere
   planetocentric and geodetic latitude are one, and PROJ relates a sphere of the same body number for number;
2. a product on an ellipsoid (the Map-a-Planet MOLA products: 3,396,190 / 3,376,200 m): a longitude/latitude layer
   on its ellipsoid (``anomalies_mars_geodetic0``, one per body and ellipsoid), latitude geodetic, as a geographic
   CRS means it. In the body's sphere layer its planetocentric latitudes were taken by PROJ as geodetic ones on the
   ellipsoid (a "ballpark geographic offset"): 0.34° off at 45°, 4.6-7 px on the MOLA samples (audit s38 a3 #1).
   The IAU 2015 planetocentric ellipsoid CRSs (``IAU_2015:49902``) are not used: their spherical coordinate system
   puts latitude first, which pyproj keeps under ``always_xy`` while GDAL reads such a layer longitude first;
   a lon/lat grid running past 180° E goes to 3: its points at -174° would not overlay its grid at 186°;
3. otherwise map x/y in a layer of the product's own CRS (``anomalies_<body>_crs<i>``), with the reason: PROJ refuses
   (GDAL's local-radius Vesta sphere of ``dawnEqui1.cub`` is no body PROJ knows, so it will not relate it to the IAU
   Vesta sphere: "Source and target ellipsoid do not belong to the same celestial body"; audit s38 a3 #2) or misplaces
   the centres or outline vertices (an outline across 180° E on a grid with central meridian 0: review s38 r4 #2),
   a centre or outline vertex lies off the body, or the body is unknown. ``i`` counts from 0 for each body.

``--geo-crs product`` (``layer_crs="product"``) writes every product in its own CRS.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeae._optional import require

__all__ = ["BODY_CRS", "LAYER_TOLERANCE_PX", "Placement", "outline_placement", "placement"]

# planetocentric longitude/latitude CRS of each body (IAU 2015 sphere, "ocentric"), for the per-body layers
BODY_CRS = {
    "MERCURY": "IAU_2015:19900", "VENUS": "IAU_2015:29900", "EARTH": "IAU_2015:39900", "MOON": "IAU_2015:30100",
    "MARS": "IAU_2015:49900", "VESTA": "IAU_2015:200000400", "CERES": "IAU_2015:200000100",
    "EUROPA": "IAU_2015:50200", "GANYMEDE": "IAU_2015:50300", "CALLISTO": "IAU_2015:50400",
    "TITAN": "IAU_2015:60600",
}  # fmt: skip

LAYER_TOLERANCE_PX = 0.01  # a patch centre through the layer's CRS and back: the samples land within 1e-8 px


@dataclass(frozen=True)
class Placement:
    """Where a product's features go: ``kind`` ``"body"`` (the body's IAU lon/lat CRS, planetocentric latitude),
    ``"geodetic"`` (the product's geographic CRS, geodetic latitude) or ``"crs"`` (the product's CRS, map x/y);
    ``crs`` the layer's CRS (an IAU code or WKT); ``why`` a product-CRS placement's reason (empty when asked for)."""

    kind: str
    crs: str
    why: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.crs)

    @property
    def lonlat(self) -> bool:
        return self.kind != "crs"


@functools.lru_cache(maxsize=64)
def _geodetic_wkt(wkt: str, body: str) -> str:
    """The longitude/latitude CRS on the ellipsoid of the CRS ``wkt`` (east longitude, geodetic latitude, its prime
    meridian): one per body and ellipsoid, so the products of one ellipsoid share a layer whatever their datum is
    named (the MOLA Mercator and polar samples name theirs "D_MARS" and "unknown"); PROJ relates it to each of them
    number for number, which on the same ellipsoid and prime meridian is exact (checked per product all the same)."""
    g = require("pyproj").CRS.from_wkt(wkt).geodetic_crs
    if g is None or g.ellipsoid is None:
        return wkt
    a, b = float(g.ellipsoid.semi_major_metre), float(g.ellipsoid.semi_minor_metre)
    pm = g.prime_meridian
    lon0 = float(pm.longitude) * float(pm.unit_conversion_factor) / math.radians(1.0) if pm else 0.0  # degrees
    name = body.title()
    return (
        f'GEOGCS["{name} geodetic ({a:.0f} / {b:.0f} m)",DATUM["D_{name}_{a:.0f}_{b:.0f}",SPHEROID["{name}",{a!r},'
        f'{a / (a - b)!r}]],PRIMEM["Reference_Meridian",{lon0!r}],UNIT["degree",0.0174532925199433]]'
    )


@functools.lru_cache(maxsize=64)
def _transformer(layer: str, product_wkt: str) -> tuple[Any, str]:
    """(PROJ's transformer from ``layer`` to the product's CRS, or None; PROJ's refusal, else "")."""
    pyproj = require("pyproj")
    try:
        dst = pyproj.CRS.from_wkt(product_wkt)
        return pyproj.Transformer.from_crs(pyproj.CRS.from_user_input(layer), dst, always_xy=True), ""
    except pyproj.exceptions.ProjError as exc:
        text = str(exc).split("proj_create_operations: ")[-1].split(". You may override")[0]
        while text.endswith(")") and text.count(")") > text.count("("):  # pyproj's "(Internal Proj Error: ...)"
            text = text[:-1]
        return None, text.rstrip(".")


def _misplaced(
    layer: str, geo: Any, lon: np.ndarray, lat: np.ndarray, mx: np.ndarray, my: np.ndarray, what: str = "patch centres"
) -> str:
    """Why PROJ does not put (lon, lat) in ``layer`` back at map (mx, my) of ``geo``'s CRS; "" when it does.
    ``what`` the points are, for the reason."""
    t, refused = _transformer(layer, geo.crs_wkt)
    if t is None:
        return f"PROJ cannot relate its CRS to {layer} ({refused})"
    col0, row0 = geo.map_to_pixel(mx, my)

    def errors(lon: np.ndarray) -> np.ndarray:
        x, y = t.transform(lon, lat, errcheck=False)
        col, row = geo.map_to_pixel(np.asarray(x, np.float64), np.asarray(y, np.float64))
        return np.where(np.isfinite(err := np.hypot(col - col0, row - row0)), err, np.inf)

    err = errors(lon)
    off = float(np.max(err))
    if off <= LAYER_TOLERANCE_PX:
        return ""
    if float(np.max(errors(np.where(lon < 0, lon + 360.0, lon)))) <= LAYER_TOLERANCE_PX:  # a lon/lat grid of 0..360°
        return f"its grid runs past 180° E, where {layer}'s longitudes in [-180, 180) do not overlay it"
    if (np.abs(lon[err > LAYER_TOLERANCE_PX]) >= 180.0).all():  # an outline round ±180° on a grid PROJ wraps there
        return f"its grid runs past 180° E, where PROJ puts its {what} past ±180° in {layer} up to {off:.3g} px off"
    return f"PROJ puts its {what} up to {off:.3g} px off through {layer}"


def placement(geo: Any, mx: np.ndarray, my: np.ndarray, layer_crs: str = "body") -> Placement:
    """Where the features of the product ``geo`` (a :class:`edgeae.archive.geo.GeoRef`) with patch centres at map
    (mx, my) go (see the module docstring). Their outlines are checked by the caller: a vertex off the body sends
    the product to its CRS's layer too, as does one :func:`outline_placement` finds PROJ misplaces."""
    own = Placement("crs", geo.crs_wkt)
    if layer_crs == "product":
        return own
    if geo.body not in BODY_CRS:
        why = "its body is unknown" if geo.body is None else f"no IAU CRS for {geo.body}"
        return Placement("crs", geo.crs_wkt, why)
    sphere = geo.semi_minor == geo.semi_major
    if sphere:
        cand = Placement("body", BODY_CRS[geo.body])
    else:
        cand = Placement("geodetic", _geodetic_wkt(geo.crs_wkt, geo.body))
    lon, lat = geo.map_to_lonlat(mx, my, centric=sphere)
    if not (np.isfinite(lon).all() and np.isfinite(lat).all()):
        return Placement("crs", geo.crs_wkt, "a patch centre lies off the body")
    why = _misplaced(cand.crs, geo, lon, lat, np.asarray(mx, np.float64), np.asarray(my, np.float64))
    return Placement("crs", geo.crs_wkt, why) if why else cand


def outline_placement(
    place: Placement,
    geo: Any,
    rings: list[tuple[np.ndarray, np.ndarray]],
    outlines: list[tuple[np.ndarray, np.ndarray]],
) -> Placement:
    """``place`` (a lon/lat layer) when PROJ puts every vertex of the ``rings``, as written in that layer, back on
    the map x/y ``outlines`` of ``geo``; else the product's CRS layer, saying why. A ring round ±180° on a grid
    with central meridian 0 (150..210° E) misses: PROJ takes its 183° as -177°, 360° away (review s38 r4 #2)."""
    lon, lat = (np.concatenate([r[i] for r in rings]).astype(np.float64) for i in (0, 1))
    mx, my = (np.concatenate([o[i] for o in outlines]).astype(np.float64) for i in (0, 1))
    why = _misplaced(place.crs, geo, lon, lat, mx, my, "outline vertices")
    return Placement("crs", geo.crs_wkt, why) if why else place

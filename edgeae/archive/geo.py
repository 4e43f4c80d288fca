"""Where a pixel is: pixel <-> map (the product's CRS) <-> planetocentric longitude/latitude.

Map coordinates use GDAL's geotransform and CRS exactly as GDAL reports them. For ISIS3 Equirectangular
cubes GDAL reports a sphere of the *local radius* at the centre latitude (e.g. 3,392,594 m for a Mars cube
whose Mapping group says 3,396,190 / 3,376,200 m): that is how ISIS itself defines the projection
(x = R_local · Δlon · cos(clat), y = R_local · lat, latitudes planetocentric), so inverting with GDAL's
sphere returns the cube's own planetocentric latitudes. We keep GDAL's CRS for map x/y and lon/lat and
record the Mapping group's radii beside it; rebuilding the CRS from those radii would shift latitudes by
~0.1 % (tested against the Mapping group's Minimum/MaximumLatitude in tests/test_archive_geo.py).

Longitude/latitude come from pyproj: map -> the CRS's own geographic CRS (lon, geodetic lat), then the
latitude is converted to planetocentric on that ellipsoid (tan φc = (b/a)² tan φg; a no-op on a sphere).
Longitudes are east-positive in [-180, 180). They are given only when the body is known (from the CRS's
datum/ellipsoid name, the label's target, or the radius of a known body).
"""

from __future__ import annotations

import functools
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeae._optional import require

__all__ = ["BODY_RADII", "GeoRef", "body_of_target", "write_score_geotiff"]

# equatorial radius in metres of the bodies we name when a CRS does not (IAU 2015 / PDS values)
BODY_RADII: dict[str, tuple[float, ...]] = {
    "MERCURY": (2439400.0, 2440000.0),
    "VENUS": (6051800.0, 6051000.0),
    "EARTH": (6378137.0, 6378136.6),
    "MOON": (1737400.0, 1737150.0),
    "MARS": (3396190.0, 3396000.0, 3397000.0, 3376200.0),
    "VESTA": (289000.0, 286300.0),
    "CERES": (470000.0, 487300.0),
    "EUROPA": (1560800.0,),
    "GANYMEDE": (2631200.0,),
    "CALLISTO": (2410300.0,),
    "TITAN": (2575000.0,),
}


@functools.lru_cache(maxsize=64)
def _crs(wkt: str) -> Any:
    """pyproj CRS of a WKT (building one costs ~50 ms: cached per process)."""
    return require("pyproj").CRS.from_wkt(wkt)


@functools.lru_cache(maxsize=64)
def _transformer_for(wkt: str, inverse: bool) -> Any:
    """map -> the CRS's own geographic CRS (lon, geodetic lat), or back; cached per process."""
    pyproj = require("pyproj")
    crs = _crs(wkt)
    src, dst = (crs.geodetic_crs, crs) if inverse else (crs, crs.geodetic_crs)
    return pyproj.Transformer.from_crs(src, dst, always_xy=True)


def _body_from_name(name: str) -> str | None:
    text = name.upper()
    for body in BODY_RADII:
        if re.search(rf"(^|[^A-Z]){body}([^A-Z]|$)", text):
            return body
    return None


def body_of_target(target: str | None) -> str | None:
    """The body (a :data:`BODY_RADII` name) a label's target names (``MARS``, ``Moon``, ``4 VESTA``), else None:
    what the body of a product without georeferencing is taken from."""
    return _body_from_name(target) if target else None


# the warning for a product whose CRS was repaired (GeoRef.note; edgeae.archive.reader gives it once per product):
# what edgeae writes of it uses the repaired CRS, what GDAL reads from the file does not (until session 38 said in
# parts/*.meta.json only: audit s38 a3 #3)
CORRECTED = (
    "georeferencing corrected ({note}): its map x/y, lon/lat, layer features and score maps use the corrected CRS, "
    "while GDAL and QGIS read the file's own; give the product the corrected CRS (e.g. a .aux.xml beside it: "
    "docs/archive.md) to overlay them"
)

MARS_AXES = (3396190.0, 3376200.0)  # IAU 2015 equatorial and polar radii (m)
# a latitude beyond this is off the body; the slack is rounding: the global LOLA grids' poles come out at
# 90.0000284° (their pixel size is written to the centimetre)
LAT_LIMIT = 90.01


def _wkt_param(wkt: str, name: str) -> float | None:
    m = re.search(rf'PARAMETER\["{name}",\s*(-?[0-9.eE+-]+)\]', wkt)
    return float(m.group(1)) if m else None


def _hirise_equirectangular(wkt: str) -> tuple[str, str]:
    """Repair the HiRISE GeoJP2 Equirectangular CRS (GDAL ticket 2706; USGS ``HiRISE_fix_jp2``): the product's
    centre latitude is written as ``latitude_of_origin`` instead of ``standard_parallel_1``, which moves the
    product by that many degrees of latitude (PSP_001892_1715, near 8.5° S, read at 13.25° S). Recognised only
    when the sphere's radius is Mars's local radius at that latitude (what the HiRISE pipeline writes, to the
    metre) and the standard parallel is 0; returns (WKT, note), the note empty when nothing was changed."""
    if 'PROJECTION["Equirectangular"]' not in wkt:
        return wkt, ""
    lat0, sp1 = _wkt_param(wkt, "latitude_of_origin"), _wkt_param(wkt, "standard_parallel_1")
    m = re.search(r'SPHEROID\["[^"]*",\s*([0-9.eE+]+),\s*0\]', wkt)  # a sphere (inverse flattening 0)
    if not lat0 or sp1 != 0.0 or m is None:
        return wkt, ""
    a, b = MARS_AXES
    phi = math.radians(lat0)
    local = a * b / math.hypot(b * math.cos(phi), a * math.sin(phi))
    if abs(float(m.group(1)) - local) > 2.0:
        return wkt, ""
    wkt = re.sub(r'PARAMETER\["latitude_of_origin",\s*-?[0-9.eE+-]+\]', 'PARAMETER["latitude_of_origin",0]', wkt)
    wkt = re.sub(
        r'PARAMETER\["standard_parallel_1",\s*-?[0-9.eE+-]+\]', f'PARAMETER["standard_parallel_1",{lat0:g}]', wkt
    )
    note = (f"HiRISE GeoJP2 CRS repaired: latitude_of_origin {lat0:g} read as standard_parallel_1 (the centre "
            "latitude; GDAL ticket 2706)")  # fmt: skip
    return wkt, note


@dataclass(frozen=True)
class GeoRef:
    """A product's georeferencing: GDAL affine ``transform`` (6 floats), CRS WKT, body and radii."""

    transform: tuple[float, float, float, float, float, float]  # a, b, c, d, e, f (x = a·col + b·row + c)
    crs_wkt: str
    width: int
    height: int
    body: str | None
    semi_major: float
    semi_minor: float
    label_radii: tuple[float, float] | None = None  # ISIS Mapping group radii when they differ from the CRS
    note: str = ""  # repairs made to the CRS GDAL reported

    @classmethod
    def from_dataset(cls, ds: Any, target: str | None = None, mapping: dict[str, Any] | None = None) -> GeoRef | None:
        """From an open rasterio dataset; None when it has no CRS, only the identity transform, or a transform
        that places nothing (see :meth:`read`, which also says why)."""
        return cls.read(ds, target, mapping)[0]

    @classmethod
    def read(
        cls, ds: Any, target: str | None = None, mapping: dict[str, Any] | None = None
    ) -> tuple[GeoRef | None, str | None]:
        """(georeferencing or None, a warning or None) of an open rasterio dataset.

        A transform with a non-finite or zero-determinant matrix places every pixel nowhere or at one point:
        ignored, with a warning. So is one that puts the whole footprint off the body (latitudes beyond ±90°); a
        footprint partly off it is kept, with a warning, and :meth:`map_to_lonlat` gives null lon/lat there.
        """
        if ds.crs is None or ds.transform.is_identity:
            return None, None
        t = ds.transform
        coeffs = (t.a, t.b, t.c, t.d, t.e, t.f)
        det = t.a * t.e - t.b * t.d
        if not all(math.isfinite(v) for v in coeffs) or not math.isfinite(det) or det == 0.0:
            why = "not finite" if not all(math.isfinite(v) for v in coeffs) else "degenerate (determinant 0)"
            return None, (
                f"its geotransform {tuple(float(v) for v in coeffs)} is {why}: the product is read as not "
                "georeferenced (no map x/y or lon/lat)"
            )
        geo = cls._build(ds, target, mapping)
        if geo.body is None:
            return geo, None
        u = np.linspace(0.0, 1.0, 5)  # the footprint's corners, edges and centre
        col, row = np.meshgrid(u * geo.width, u * geo.height)
        lat = geo._geodetic(*geo.pixel_to_map(col.ravel(), row.ravel()))[1]
        off = np.isfinite(lat) & (np.abs(lat) > LAT_LIMIT)
        if not off.any():
            return geo, None
        lats = f"latitudes {float(np.nanmin(lat)):.6g}..{float(np.nanmax(lat)):.6g}°"
        if not (np.isfinite(lat) & ~off).any():
            return None, f"its georeferencing puts it off the body ({lats}): the product is read as not georeferenced"
        return geo, f"part of it lies off the body ({lats}): lon/lat are null there"

    @classmethod
    def _build(cls, ds: Any, target: str | None, mapping: dict[str, Any] | None) -> GeoRef:
        wkt = ds.crs.to_wkt()
        note = ""
        bad_k = 'PARAMETER["scale_factor",0]'
        if bad_k in wkt:  # USGS Map-a-Planet Mercator WKT: k = 0 is no projection; the grid fits k = 1
            wkt = wkt.replace(bad_k, 'PARAMETER["scale_factor",1]')
            note = "scale_factor 0 in the product's WKT read as 1"
        wkt, fixed = _hirise_equirectangular(wkt)
        if fixed:
            note = (note + "; " if note else "") + fixed
        crs = _crs(wkt)
        ell = crs.ellipsoid
        a = float(ell.semi_major_metre) if ell else float("nan")
        b = float(ell.semi_minor_metre) if ell else a
        body = None
        for name in (crs.datum.name if crs.datum else "", ell.name if ell else "", crs.name):
            body = body or _body_from_name(name or "")
        body = body or (_body_from_name(target) if target else None)
        if body is None and math.isfinite(a):
            body = next((k for k, rs in BODY_RADII.items() if any(abs(a - r) <= 0.002 * r for r in rs)), None)
        radii = None
        if mapping:
            from edgeae.archive.label import parse_number

            eq, po = parse_number(mapping.get("EquatorialRadius")), parse_number(mapping.get("PolarRadius"))
            if eq and po and (abs(eq - a) > 0.5 or abs(po - b) > 0.5):
                radii = (eq, po)
        t = ds.transform
        return cls((t.a, t.b, t.c, t.d, t.e, t.f), wkt, int(ds.width), int(ds.height), body, a, b, radii, note)

    # -- pixel <-> map ---------------------------------------------------------------------------------
    def pixel_to_map(self, col: np.ndarray, row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Map x, y of pixel positions (col, row in pixel units; the corner of pixel (0, 0) is (0, 0))."""
        a, b, c, d, e, f = self.transform
        col = np.asarray(col, np.float64)
        row = np.asarray(row, np.float64)
        return a * col + b * row + c, d * col + e * row + f

    def map_to_pixel(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Inverse of :meth:`pixel_to_map`."""
        a, b, c, d, e, f = self.transform
        det = a * e - b * d
        x = np.asarray(x, np.float64) - c
        y = np.asarray(y, np.float64) - f
        return (e * x - b * y) / det, (-d * x + a * y) / det

    # -- map <-> lon/lat -------------------------------------------------------------------------------
    def _transformer(self, inverse: bool = False) -> Any:
        return _transformer_for(self.crs_wkt, inverse)

    def map_to_lonlat(self, x: np.ndarray, y: np.ndarray, *, centric: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Planetocentric east longitude [-180, 180) and latitude in degrees; NaN when the body is unknown and
        where the point lies off the body (a latitude beyond ±90°, or none). ``centric=False``: the latitude is
        geodetic, on the CRS's own ellipsoid (what its geographic CRS holds; the same on a sphere)."""
        lon, lat = self._geodetic(x, y)
        off = ~np.isfinite(lat) | (np.abs(lat) > LAT_LIMIT) | ~np.isfinite(lon)
        if off.any():  # checked before the conversion below, which would fold 200° back into ±90°
            lon, lat = np.where(off, np.nan, lon), np.where(off, np.nan, lat)
        if centric and self.semi_minor != self.semi_major:
            ratio = (self.semi_minor / self.semi_major) ** 2
            lat = np.degrees(np.arctan(ratio * np.tan(np.radians(lat))))
        return (lon + 180.0) % 360.0 - 180.0, lat

    def _geodetic(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Longitude and geodetic latitude (degrees, as PROJ gives them) of map x, y; NaN without a body."""
        x = np.asarray(x, np.float64)
        if self.body is None:
            nan = np.full(x.shape, np.nan)
            return nan, nan.copy()
        try:
            lon, lat = self._transformer().transform(x, np.asarray(y, np.float64), errcheck=False)
        except require("pyproj").exceptions.ProjError:  # a CRS PROJ cannot invert: map x/y only
            nan = np.full(x.shape, np.nan)
            return nan, nan.copy()
        return np.asarray(lon, np.float64), np.asarray(lat, np.float64)

    def lonlat_to_map(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Inverse of :meth:`map_to_lonlat` (planetocentric latitude in)."""
        lat = np.asarray(lat, np.float64)
        if self.semi_minor != self.semi_major:
            ratio = (self.semi_minor / self.semi_major) ** 2
            lat = np.degrees(np.arctan(np.tan(np.radians(lat)) / ratio))
        x, y = self._transformer(inverse=True).transform(np.asarray(lon, np.float64), lat)
        return np.asarray(x, np.float64), np.asarray(y, np.float64)

    def pixel_size(self) -> float:
        """Mean pixel side in CRS units (metres for projected CRSs)."""
        a, b, _, d, e, _ = self.transform
        return float(math.sqrt(abs(a * e - b * d)))

    def resolution_m(self) -> float | None:
        """Pixel side in metres (degrees converted on the body's radius for geographic CRSs)."""
        crs = _crs(self.crs_wkt)
        if crs.is_geographic:
            return self.pixel_size() * math.pi / 180.0 * self.semi_major if self.body else None
        unit = crs.axis_info[0].unit_conversion_factor if crs.axis_info else 1.0
        return self.pixel_size() * (unit or 1.0)

    def patch_columns(self, xs: np.ndarray, ys: np.ndarray, patch: int) -> dict[str, np.ndarray]:
        """map_x, map_y (patch centre, product CRS) and lon, lat (planetocentric) of patch top-lefts.

        The centre is that of the patch clipped to the product (a padded patch of a product smaller than the
        patch still lands on the product).
        """
        x0 = np.asarray(xs, np.float64)
        y0 = np.asarray(ys, np.float64)
        cx = (x0 + np.minimum(x0 + patch, self.width)) / 2.0
        cy = (y0 + np.minimum(y0 + patch, self.height)) / 2.0
        mx, my = self.pixel_to_map(cx, cy)
        lon, lat = self.map_to_lonlat(mx, my)
        return {"map_x": mx, "map_y": my, "lon": lon, "lat": lat}

    def to_dict(self) -> dict[str, Any]:
        return {
            "transform": list(self.transform), "crs_wkt": self.crs_wkt, "width": self.width,
            "height": self.height, "body": self.body, "semi_major": self.semi_major,
            "semi_minor": self.semi_minor, "label_radii": list(self.label_radii) if self.label_radii else None,
            "note": self.note,
        }  # fmt: skip


def write_score_geotiff(
    path: str | os.PathLike[str],
    heat: np.ndarray,
    geo: GeoRef | None,
    *,
    downsample: int = 1,
) -> Path:
    """Write a float32 score map (H/d, W/d; NaN = not scored) as a GeoTIFF aligned with its product.

    The map's geotransform is the product's with pixels ``downsample`` times larger, so each map pixel
    covers exactly ``d × d`` product pixels; without georeferencing the file is a plain float TIFF.
    """
    rasterio = require("rasterio")
    from rasterio.transform import Affine

    h, w = heat.shape
    d = max(1, int(downsample))
    profile: dict[str, Any] = {
        "driver": "GTiff", "height": h, "width": w, "count": 1, "dtype": "float32", "nodata": float("nan"),
        "compress": "deflate", "tiled": h >= 256 and w >= 256,
    }  # fmt: skip
    if geo is not None:
        a, b, c, dd, e, f = geo.transform
        profile["transform"] = Affine(a * d, b * d, c, dd * d, e * d, f)
        profile["crs"] = rasterio.crs.CRS.from_wkt(geo.crs_wkt)
    p = Path(os.fspath(path))
    p.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.Env(), rasterio.open(p, "w", **profile) as dst:
        dst.write(np.asarray(heat, np.float32), 1)
        dst.update_tags(EDGEAE="anomaly score map: max score of the patches covering each pixel; NaN = not scored")
    return p


def stamp_georef(path: str | os.PathLike[str], georef: dict[str, Any] | None) -> bool:
    """Give a TIFF written at the product's own size the product's map georeferencing (``GeoRef.to_dict``).

    ``edgeae reconstruct`` of a map-projected product writes pixels aligned with the product's grid; this adds
    the CRS and affine transform so a GIS places the rebuilt image where the product lies. Returns False (and
    changes nothing) when there is no georeferencing or the file's size is not the product's.
    """
    if not georef:
        return False
    rasterio = require("rasterio")
    from rasterio.transform import Affine

    with rasterio.Env(), rasterio.open(os.fspath(path), "r+") as dst:
        if (dst.width, dst.height) != (int(georef["width"]), int(georef["height"])):
            return False
        dst.crs = rasterio.crs.CRS.from_wkt(str(georef["crs_wkt"]))
        dst.transform = Affine(*[float(v) for v in georef["transform"]])
    return True

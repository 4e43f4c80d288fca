"""Detections on the map: per-patch map/lon/lat columns and the GeoPackage/GeoJSON layer of a scan.

Every patch row of a map-projected product gets ``map_x``, ``map_y`` (the patch centre in the product's
CRS) and ``lon``, ``lat`` (planetocentric degrees, east-positive; NaN when the body is unknown); rows of
other images get nulls. Columns are computed by the driver from each product's georeferencing when it
writes the image's part, so the local and Ray engines produce identical tables.

``write_layer`` turns each map-projected product's best patches (its own top-k) into features with
score, product, product id, instrument and thumbnail path. A layer has one CRS: by default one layer per
body in its planetocentric lon/lat CRS (IAU 2015, e.g. ``IAU_2015:49900`` for Mars), so the detections of
products in any projection land in one layer QGIS reprojects on the fly; ``layer_crs="product"`` keeps
map x/y with one layer per product CRS. One GeoPackage holds every layer; GeoJSON gets one file per
layer (the first at the path given). GeoPackage goes through ``pyogrio`` (maintained, on PyPI, with its
own GDAL/OGR); GeoJSON is plain JSON with the legacy ``crs`` member naming the CRS (an IAU code or WKT),
which GDAL and QGIS read (RFC 7946 assumes WGS 84 lon/lat, which a planetary layer is not).
"""

from __future__ import annotations

import json
import os
import re
import struct
from pathlib import Path
from typing import Any

import numpy as np

from edgeae._optional import require
from edgeae.printable import printable
from edgeae.scan.layer_crs import BODY_CRS, Placement, outline_placement, placement
from edgeae.scan.out_checks import check_utf8_path

__all__ = [
    "GEO_COLUMNS",
    "check_layer",
    "geo_columns",
    "georef_of",
    "remove_stale_layer_files",
    "save_score_geotiff",
    "write_layer",
    "write_scores_csv",
]

GEO_COLUMNS = ("map_x", "map_y", "lon", "lat")
LAYER_SUFFIXES = (".gpkg", ".geojson", ".json")


def georef_of(path: str | os.PathLike[str]) -> tuple[Any, dict[str, Any]]:
    """(GeoRef or None, product metadata) of an image; plain images and missing GDAL give (None, {}). The metadata's
    ``body`` is the georeferencing's, else the one the label's target names (a frame without a map). A plain TIFF (no
    GeoTIFF or GDAL no-data tags: :func:`edgeae.archive.formats.is_archive_path`) is a plain image, read by tifffile,
    even with georeferencing in sidecar files (``.tfw``, ``.prj``, ``.aux.xml``): (None, {})."""
    from edgeae.archive.formats import is_archive_path
    from edgeae.archive.geo import body_of_target

    p = Path(os.fspath(path))
    try:
        if not is_archive_path(p):
            return None, {}
        from edgeae.archive.reader import ProductReader

        with ProductReader(p) as r:
            lab = r.label
            meta = {
                "product_id": lab.product_id, "instrument": lab.instrument, "target": lab.target,
                "format": lab.format, "incidence_deg": lab.incidence_deg, "emission_deg": lab.emission_deg,
                "body": r.geo.body if r.geo else body_of_target(lab.target),
                "georef": r.geo.to_dict() if r.geo else None,
            }  # fmt: skip
            return r.geo, meta
    except ImportError:
        return None, {}


def geo_columns(geo: Any, xs: np.ndarray, ys: np.ndarray, patch: int) -> dict[str, np.ndarray]:
    """The four :data:`GEO_COLUMNS` for patches with top-left (xs, ys); NaN without georeferencing."""
    n = len(xs)
    if geo is None or n == 0:
        return {c: np.full(n, np.nan) for c in GEO_COLUMNS}
    return geo.patch_columns(np.asarray(xs), np.asarray(ys), patch)


def _wkb_point(x: float, y: float) -> bytes:
    return struct.pack("<BIdd", 1, 1, x, y)


def _wkb_polygon(ring: list[tuple[float, float]]) -> bytes:
    return struct.pack("<BIII", 1, 3, 1, len(ring)) + b"".join(struct.pack("<dd", x, y) for x, y in ring)


def _georef(g: dict[str, Any]) -> Any:
    from edgeae.archive.geo import GeoRef

    radii = tuple(g["label_radii"]) if g.get("label_radii") else None
    return GeoRef(
        tuple(g["transform"]), g["crs_wkt"], g["width"], g["height"], g["body"], g["semi_major"],
        g["semi_minor"], radii, g.get("note", ""),
    )  # fmt: skip


def _features(
    store: Any, entries: list[Any], thumbs_dir: Path, geometry: str, k: int, layer_crs: str
) -> tuple[dict[tuple[str, str], list[dict]], dict[tuple[str, str], str]]:
    """Features grouped by layer (:class:`edgeae.scan.layer_crs.Placement` keys: a body's planetocentric lon/lat, a
    product's geographic CRS, or a product's CRS in map x/y), and what each layer's note says (its CRS, and why a
    product went to its own CRS's layer; "" for none)."""
    from edgeae.imageio import write_image

    patch = store.config.patch
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    why: dict[tuple[str, str], list[str]] = {}
    for e in entries:
        meta_path = store.meta_path(e.key)
        if not meta_path.exists() or not store.top_path(e.key).exists():
            continue
        meta = json.loads(meta_path.read_text())
        if not meta.get("georef"):
            continue
        geo = _georef(meta["georef"])
        top = store.load_top(e.key)
        n = min(k, len(top.scores))
        if n == 0:
            continue
        cols = geo.patch_columns(top.xs[:n], top.ys[:n], patch)
        place = placement(geo, cols["map_x"], cols["map_y"], layer_crs)
        if geometry != "point":
            place, outlines = _outlines(geo, top.xs[:n], top.ys[:n], patch, cols["lon"], place)
        xy = (cols["map_x"], cols["map_y"]) if not place.lonlat else (cols["lon"], cols["lat"])
        if place.kind == "geodetic":
            xy = geo.map_to_lonlat(cols["map_x"], cols["map_y"], centric=False)
        key = place.key
        if place.why:
            why.setdefault(key, []).append(f"{printable(e.name)}: {place.why}")
        for rank in range(n):
            x, y = int(top.xs[rank]), int(top.ys[rank])
            fn = f"{e.key}_{rank:02d}_x{x}_y{y}.png"
            thumbs_dir.mkdir(parents=True, exist_ok=True)
            write_image(thumbs_dir / fn, top.thumbs[rank].transpose(1, 2, 0))
            if geometry == "point":
                shape: dict[str, Any] = {"type": "Point", "coordinates": [float(xy[0][rank]), float(xy[1][rank])]}
            else:  # the patch's part on the product, as a ring
                ring = [[float(a), float(b)] for a, b in zip(*outlines[rank], strict=True)]
                shape = {"type": "Polygon", "coordinates": [ring]}
            props = {
                "score": float(top.scores[rank]), "rank_in_product": rank, "product": printable(e.name),
                "product_id": meta.get("product_id") or "", "instrument": meta.get("instrument") or "",
                "body": geo.body or "", "x_px": x, "y_px": y, "patch_px": patch,
                "map_x": float(cols["map_x"][rank]), "map_y": float(cols["map_y"][rank]),
                "lon": float(cols["lon"][rank]), "lat": float(cols["lat"][rank]),
                "thumbnail": f"{thumbs_dir.name}/{fn}",
            }  # fmt: skip
            groups.setdefault(key, []).append({"geometry": shape, "properties": props})
    for feats in groups.values():
        feats.sort(key=lambda f: (-f["properties"]["score"], f["properties"]["product"], f["properties"]["y_px"]))
    return groups, {key: _note(key, groups[key], why.get(key, [])) for key in groups}


def _note(key: tuple[str, str], feats: list[dict], why: list[str]) -> str:
    """What a layer's line in the report adds: a geodetic layer's CRS, a product-CRS layer's reasons."""
    if key[0] == "geodetic":
        body = feats[0]["properties"]["body"]
        crs = m.group(1) if (m := re.match(r'GEOGCS\["([^"]+)"', key[1])) else "their ellipsoid's lon/lat CRS"
        return (
            f"longitude and geodetic latitude in {crs}: products on that ellipsoid, which PROJ would misplace from "
            f"the {BODY_CRS[body]} sphere of anomalies_{body.lower()}; the lat field stays planetocentric"
        )
    if key[0] == "crs" and why:
        more = f"; and {len(why) - 3} more products" if len(why) > 3 else ""
        return "map x/y in the product's CRS: " + "; ".join(why[:3]) + more
    return ""


def _lonlat_ring(
    geo: Any, mx: np.ndarray, my: np.ndarray, lon_centre: float, centric: bool
) -> tuple[np.ndarray, np.ndarray] | None:
    """The outline at map (mx, my) in longitude/latitude (planetocentric when ``centric``, else geodetic), or None
    when a vertex is off the body. Continuous across ±180° (a 24° patch on the antimeridian spans 24°, not 336°
    round the planet), shifted by 360° to lie round its centre's longitude ``lon_centre`` in [-180, 180), as its
    point and ``lon`` field (174..198° is written -186..-162°); latitudes within ±90° (the global LOLA grids' pole
    rows come out at 90.0000284°, rounding, and PROJ gives inf for them)."""
    lon, lat = geo.map_to_lonlat(mx, my, centric=centric)
    if not (np.isfinite(lon).all() and np.isfinite(lat).all()):
        return None
    lon = np.degrees(np.unwrap(np.radians(lon)))
    lon = lon - 360.0 * np.round(((lon.min() + lon.max()) / 2.0 - lon_centre) / 360.0)
    return lon, np.clip(lat, -90.0, 90.0)


def _outlines(
    geo: Any, xs: np.ndarray, ys: np.ndarray, patch: int, lon: np.ndarray, place: Placement
) -> tuple[Placement, list[tuple[np.ndarray, np.ndarray]]]:
    """The layer and outlines of the patches at (xs, ys): lon/lat in ``place``'s layer when every vertex is on the
    body (else null lon/lat: not JSON, a broken GeoPackage polygon) and PROJ puts each back on its outline
    (:func:`edgeae.scan.layer_crs.outline_placement`), else map x/y in the product CRS's layer. A global grid past
    ±180° by rounding (LOLA's, by 0.84 m) has its edge vertices put 360° away: its outlines 0.005 px inside fit."""
    outlines = [_ring(geo, int(x), int(y), patch) for x, y in zip(xs, ys, strict=True)]
    got = place
    for inset in (0.0, 0.005) if place.lonlat else ():
        rings = [_lonlat_ring(geo, *_ring(geo, int(x), int(y), patch, inset), float(c), place.kind == "body")
                 for x, y, c in zip(xs, ys, lon, strict=True)]  # fmt: skip
        if len(lonlat := [r for r in rings if r is not None]) < len(rings):
            return Placement("crs", geo.crs_wkt, "a patch outline reaches past a pole, off the body"), outlines
        if (got := outline_placement(place, geo, lonlat, outlines)).lonlat:
            return got, lonlat
    return got, outlines


RING_STEPS = 8  # points per patch edge in polygon geometry


def _ring(geo: Any, x: int, y: int, patch: int, inset: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Map x, y of the outline of the patch at (x, y)'s part on the product, ``inset`` px inside it: RING_STEPS
    points along each edge (a straight edge in map x/y is a curve in lon/lat), closed."""
    x0, y0, x1, y1 = x + inset, y + inset, min(x + patch, geo.width) - inset, min(y + patch, geo.height) - inset
    t = np.linspace(0.0, 1.0, RING_STEPS, endpoint=False)
    cx = np.concatenate([x0 + (x1 - x0) * t, np.full_like(t, x1), x1 - (x1 - x0) * t, np.full_like(t, x0), [x0]])
    cy = np.concatenate([np.full_like(t, y0), y0 + (y1 - y0) * t, np.full_like(t, y1), y1 - (y1 - y0) * t, [y0]])
    return geo.pixel_to_map(cx, cy)


def _layer_names(groups: dict[tuple[str, str], list[dict]]) -> dict[tuple[str, str], str]:
    """``anomalies_<body>`` for body layers; ``anomalies_<body>_geodetic<i>`` for products' geographic CRSs and
    ``anomalies_<body>_crs<i>`` for product CRSs, ``i`` from 0 for each body and kind, by best score."""
    names: dict[tuple[str, str], str] = {}
    order = sorted(groups, key=lambda key: -groups[key][0]["properties"]["score"])
    counts: dict[tuple[str, str], int] = {}
    for key in order:
        body = (groups[key][0]["properties"]["body"] or "unknown").lower()
        if key[0] == "body":
            names[key] = f"anomalies_{body}"
        else:
            i = counts[(key[0], body)] = counts.get((key[0], body), -1) + 1
            names[key] = f"anomalies_{body}_{key[0]}{i}"
    return names


def check_layer(out: str | os.PathLike[str], geometry: str = "point", layer_crs: str = "body") -> Path:
    """``out`` as a Path when :func:`write_layer` can write it with these options, else :class:`ValueError` naming
    what is wrong (a scan checks this before it scores anything)."""
    if geometry not in ("point", "polygon"):
        raise ValueError(f"geometry must be 'point' or 'polygon', got {geometry!r}")
    if layer_crs not in ("body", "product"):
        raise ValueError(f"layer_crs must be 'body' or 'product', got {layer_crs!r}")
    p = Path(os.fspath(out))
    check_utf8_path(p, "--geo")  # pyogrio and the writers after it take UTF-8 paths only
    ext = p.suffix.lower()
    if ext not in LAYER_SUFFIXES:
        raise ValueError(f"{p}: the layer must be .gpkg or .geojson, got {ext or 'no extension'!r}")
    return p


def write_layer(
    store: Any,
    entries: list[Any],
    out: str | os.PathLike[str],
    *,
    geometry: str = "point",
    k: int | None = None,
    layer_crs: str = "body",
) -> list[dict[str, Any]]:
    """Write the detection layer(s) of a finished scan to ``out`` (.gpkg or .geojson); returns what was written.
    ``entries``: the images to map, done ones only (``scan_archive`` passes those; this reads their files, it
    writes nothing into the results folder).

    ``layer_crs="body"``: one layer per body in its planetocentric lon/lat CRS (IAU 2015 sphere, e.g.
    ``IAU_2015:49900`` for Mars), products of any projection together, except those PROJ would misplace there
    (:mod:`edgeae.scan.layer_crs`: a product on an ellipsoid goes to a layer in its own geographic CRS, one PROJ
    cannot relate to the body's CRS to a layer in its own CRS, each said in its entry's ``note``); ``"product"``: one
    layer per product CRS in map x/y. ``k``: best patches per product (default: the scan's top_k). Products without
    a map projection have no place on a map and are left out. Once something is written, what an earlier run wrote
    beside it and this run did not (GeoJSON files of other layers, thumbnails) is removed.
    """
    p = check_layer(out, geometry, layer_crs)
    ext = p.suffix.lower()
    thumbs = p.with_name(f"{p.stem}_thumbs")
    groups, notes = _features(store, entries, thumbs, geometry, store.config.top_k if k is None else k, layer_crs)
    names = _layer_names(groups)
    p.parent.mkdir(parents=True, exist_ok=True)
    written: list[dict[str, Any]] = []
    ordered = sorted(groups, key=lambda key: names[key])
    if ext == ".gpkg" and ordered:  # an earlier layer file is replaced only when there is something to write
        p.unlink(missing_ok=True)
        for key in ordered:
            _write_gpkg(p, names[key], key[1], groups[key], geometry)
            written.append({"path": str(p), "layer": names[key], "features": len(groups[key])})
    else:
        for i, key in enumerate(ordered):
            path = p if i == 0 else p.with_name(f"{p.stem}_{names[key]}{p.suffix}")
            doc = {
                "type": "FeatureCollection", "name": names[key],
                "crs": {"type": "name", "properties": {"name": key[1]}},
                "features": [{"type": "Feature", **f, "properties": _null_nan(f["properties"])} for f in groups[key]],
            }  # fmt: skip
            path.write_text(json.dumps(doc, allow_nan=False))
            written.append({"path": str(path), "layer": names[key], "features": len(groups[key])})
    for w, key in zip(written, ordered, strict=True):
        if notes[key]:
            w["note"] = notes[key]
    if written:
        thumbnails = {Path(f["properties"]["thumbnail"]).name for feats in groups.values() for f in feats}
        remove_stale_layer_files(p, {Path(w["path"]).name for w in written}, thumbs, thumbnails)
    return written


_LAYER_THUMB = re.compile(r"^.+_\d{2,}_x-?\d+_y-?\d+\.png$")  # a layer thumbnail's name: parts key, rank, x, y


def remove_stale_layer_files(p: Path, written: set[str], thumbs: Path, thumbnails: set[str]) -> list[str]:
    """Remove what an earlier run wrote beside the layer ``p`` and this run did not write (``written``: file names;
    ``thumbnails``: names in ``thumbs``): GeoJSON files of other layers, ``STEM_anomalies_*.geojson``, that begin as
    this writer writes them (a FeatureCollection named as the layer in their name), and layer thumbnails unless a
    layer of the same stem in the other format is there (its thumbnails share the folder). Other files are kept.
    Returns the paths removed. (Until session 38 a rerun without the Moon products left the earlier
    ``det_anomalies_moon.geojson`` beside the new ``det.geojson``: audit s38 a3 #5.)"""
    removed: list[Path] = []
    head = f"{p.stem}_anomalies_"
    if p.suffix.lower() != ".gpkg":
        for f in p.parent.iterdir():
            if f.name in written or not (f.name.startswith(head) and f.name.endswith(p.suffix)) or not f.is_file():
                continue
            layer = f.name[len(p.stem) + 1 : len(f.name) - len(p.suffix)]
            try:
                with open(f, "rb") as fh:
                    start = fh.read(200)
            except OSError:
                continue
            if start.startswith(f'{{"type": "FeatureCollection", "name": "{layer}"'.encode("utf-8", "surrogateescape")):
                removed.append(f)
    # det.gpkg and det.geojson share det_thumbs/: with the other one there its thumbnails may be in use (review r4)
    shared = any(p.with_suffix(s).exists() for s in (".gpkg", ".geojson", ".json") if s != p.suffix.lower())
    if thumbs.is_dir() and not shared:
        removed += [f for f in thumbs.iterdir() if f.name not in thumbnails and _LAYER_THUMB.match(f.name)]
    for f in removed:
        f.unlink(missing_ok=True)
    return [str(f) for f in removed]


def _null_nan(props: dict[str, Any]) -> dict[str, Any]:
    """``props`` with NaN values as None (JSON null: lon/lat of a point off the body; NaN is not JSON)."""
    return {k: None if isinstance(v, float) and not np.isfinite(v) else v for k, v in props.items()}


def _write_gpkg(path: Path, layer: str, wkt: str, feats: list[dict], geometry: str) -> None:
    raw = require("pyogrio.raw")
    props = [f["properties"] for f in feats]
    fields = list(props[0]) if props else []
    data = [np.asarray([d[c] for d in props]) for c in fields]
    data = [a.astype(object) if a.dtype.kind == "U" else a for a in data]
    geoms = []
    for f in feats:
        g = f["geometry"]
        geoms.append(
            _wkb_point(*g["coordinates"]) if g["type"] == "Point"
            else _wkb_polygon([tuple(c) for c in g["coordinates"][0]])
        )  # fmt: skip
    raw.write(
        str(path), np.array(geoms, dtype=object), data, fields, layer=layer, driver="GPKG",
        geometry_type="Point" if geometry == "point" else "Polygon", crs=wkt, append=path.exists(),
    )  # fmt: skip


def write_scores_csv(path: str | os.PathLike[str], results: list[Any]) -> int | None:
    """``edgeae score``'s CSV with ``map_x,map_y,lon,lat`` appended (empty cells where not map-projected) when
    any image is map-projected, even one with no scored patch (the header says what the columns are); returns
    the rows written, or None (and writes nothing) when no image is map-projected."""
    geos = [georef_of(r.file)[0] for r in results]
    if all(g is None for g in geos):
        return None
    import csv

    n = 0
    with open(path, "w", encoding="utf-8", newline="") as f:
        out = csv.writer(f, lineterminator="\n")  # a file name with a comma is quoted
        out.writerow(["file", "x", "y", "score", "valid_frac", *GEO_COLUMNS])
        for r, g in zip(results, geos, strict=True):
            cols = geo_columns(g, r.x, r.y, r.patch)
            for i, (x, y, s, v) in enumerate(zip(r.x, r.y, r.score, r.valid_frac, strict=True)):
                geo = ["" if np.isnan(cols[c][i]) else f"{cols[c][i]:.10g}" for c in GEO_COLUMNS]
                out.writerow([printable(str(r.file)), int(x), int(y), f"{s:.6g}", f"{v:.4f}", *geo])
                n += 1
    return n


def save_score_geotiff(path: str | os.PathLike[str], scores: Any, product: str | os.PathLike[str]) -> Path:
    """The max-score map of one product as a float32 GeoTIFF aligned with it (NaN = not scored).

    Full resolution up to 8192 px a side; larger products get map pixels of d × d product pixels (d the
    smallest integer that fits), with the geotransform scaled to match.
    """
    from edgeae.anomaly.score import score_map
    from edgeae.archive.geo import write_score_geotiff

    h, w = scores.shape
    d = max(1, -(-max(h, w) // 8192))
    geo, _ = georef_of(product)
    return write_score_geotiff(path, score_map(scores, "max", downsample=d).astype(np.float32), geo, downsample=d)

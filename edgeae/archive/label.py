"""What a product's label says: instrument, product id, target, viewing angles, resolution, special values.

GDAL exposes the label of a PDS3, ISIS3 or VICAR product as JSON (metadata domains ``json:PDS``,
``json:ISIS3``, ``json:VICAR``); a PDS4 label is the XML file itself. Both are searched by key name
(case-insensitive, ``INCIDENCE_ANGLE`` / ``IncidenceAngle`` / ``incidence_angle`` alike), because the
same quantity sits in different groups per mission. Values with units come as ``{"value", "unit"}``.

Special values (no-data and saturation markers) come from the label, not from GDAL's single no-data
value: GDAL 3.10 reads a PDS3 based integer such as HiRISE's ``MISSING_CONSTANT = 16#FF#`` as 16 (it is
255), which would mark every real pixel of value 16 invalid. ISIS3 cubes get ISIS's five special
pixel values for their pixel type (:data:`ISIS_SPECIALS`).
"""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ISIS_SPECIALS", "ProductLabel", "flatten", "label_from_dataset", "parse_number", "pds4_array", "pds4_root"]

# ISIS special pixel values (isis/src/base/objs/SpecialPixel/SpecialPixel.h): Null, Lrs, Lis, His, Hrs
ISIS_SPECIALS: dict[str, tuple[float, ...]] = {
    "uint8": (0.0, 255.0),
    "int16": (-32768.0, -32767.0, -32766.0, -32765.0, -32764.0),
    "uint16": (0.0, 1.0, 2.0, 65534.0, 65535.0),
}
# every ISIS real special (0xFF7FFFFB..0xFF7FFFFF) and -FLT_MAX lie at or below this
FLOAT_SPECIAL_BELOW = -3.4028e38

_PDS3_SPECIAL_KEYS = (
    "CORE_NULL", "MISSING_CONSTANT", "INVALID_CONSTANT", "NULL_CONSTANT", "CORE_LOW_REPR_SATURATION",
    "CORE_LOW_INSTR_SATURATION", "CORE_HIGH_REPR_SATURATION", "CORE_HIGH_INSTR_SATURATION", "INVALID_VALUE",
)  # fmt: skip
_PDS4_SPECIAL_KEYS = (
    "missing_constant", "invalid_constant", "unknown_constant", "not_applicable_constant", "error_constant",
    "saturated_constant", "high_instrument_saturation", "high_representation_saturation",
    "low_instrument_saturation", "low_representation_saturation",
)  # fmt: skip


def parse_number(value: Any) -> float | None:
    """A label value as a float: numbers, ``{"value": ..}``, numeric strings, PDS based integers (16#FF#)."""
    if isinstance(value, dict):
        value = value.get("value")
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip().strip("\"'")
    m = re.fullmatch(r"([+-]?)(\d+)#([0-9A-Fa-f]+)#", text)
    if m:  # PDS3 based integer: radix#digits#
        return float(int(m.group(3), int(m.group(2))) * (-1 if m.group(1) == "-" else 1))
    m = re.match(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", text)
    return float(m.group(0)) if m else None


def _unit(value: Any) -> str:
    return str(value.get("unit", "")).lower() if isinstance(value, dict) else ""


def flatten(obj: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, leaf value) of a GDAL JSON label; ``{"value", "unit"}`` pairs stay whole."""
    if isinstance(obj, dict) and not ("value" in obj and "unit" in obj):
        for k, v in obj.items():
            if not k.startswith("_"):
                yield from flatten(v, f"{prefix}.{k}" if prefix else k)
    elif isinstance(obj, list) and obj and all(isinstance(v, (dict, list)) for v in obj):
        for i, v in enumerate(obj):
            yield from flatten(v, f"{prefix}[{i}]")
    else:
        yield prefix, obj


def _norm(key: str) -> str:
    return re.sub(r"[^a-z0-9]", "", key.lower())


@dataclass(frozen=True)
class ProductLabel:
    """Label facts used for metadata, quality filters and the map; None where the label does not say."""

    format: str
    product_id: str
    instrument: str | None = None
    spacecraft: str | None = None
    target: str | None = None
    incidence_deg: float | None = None
    emission_deg: float | None = None
    phase_deg: float | None = None
    resolution_m: float | None = None
    special_values: tuple[float, ...] = ()
    bit_mask_bits: int | None = None
    misread_nodata: float | None = None  # what GDAL makes of a based-integer null constant (16#FF# -> 16)
    mapping: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["special_values"] = list(self.special_values)
        return d


class _Keys:
    """Case/underscore-insensitive lookup over a flattened label (first hit in label order wins)."""

    def __init__(self, items: list[tuple[str, Any]]) -> None:
        self.items = items
        self.by_leaf: dict[str, list[tuple[str, Any]]] = {}
        for path, v in items:
            leaf = re.sub(r"\[\d+\]$", "", path.rsplit(".", 1)[-1])
            self.by_leaf.setdefault(_norm(leaf), []).append((path, v))

    def first(self, *names: str, skip: tuple[str, ...] = ("history", "originallabel", "table")) -> Any:
        for name in names:
            for path, v in self.by_leaf.get(_norm(name), []):
                low = path.lower().replace("_", "")
                if any(s in low for s in skip) or v in (None, "", "N/A", "NULL", "UNK"):
                    continue
                return v
        return None

    def text(self, *names: str) -> str | None:
        v = self.first(*names)
        if v is None:
            return None
        if isinstance(v, list):
            v = v[0] if v else None
        s = re.sub(r"\s+", " ", str(v)).strip().strip("\"'")
        return s or None

    def number(self, *names: str) -> float | None:
        v = self.first(*names)
        n = parse_number(v[0] if isinstance(v, list) and v else v)
        return n if n is not None and math.isfinite(n) else None


def _metres(value: Any, default_unit: str = "m") -> float | None:
    n = parse_number(value)
    if n is None or n <= 0:
        return None
    unit = _unit(value) or default_unit
    return n * 1000.0 if unit.startswith("km") else n


def _gdal_json(ds: Any) -> tuple[str, dict[str, Any]] | None:
    """The label of a PDS3/ISIS3/VICAR dataset as a dict (rasterio splits the one JSON item at ':')."""
    for ns in ds.tag_namespaces():
        if not ns.startswith("json:"):
            continue
        items = ds.tags(ns=ns)
        for sep in (":", "="):
            text = sep.join(next(iter(items.items()))) if len(items) == 1 else ""
            try:
                return ns[5:], json.loads(text)
            except ValueError:
                continue
    return None


def pds4_root(path: Path) -> ET.Element:
    """The root element of a PDS4 label (parsed once per open and shared by the checks and the label facts)."""
    return ET.parse(path).getroot()


def pds4_array(root: ET.Element) -> tuple[str, int] | None:
    """(``file_name``, byte ``offset``) of the array GDAL's PDS4 driver reads: the first ``Array_2D*`` or
    ``Array_3D*`` of a ``File_Area_Observational``, in document order; None when the label has none."""
    for area in root.iter():
        if area.tag.rsplit("}", 1)[-1] != "File_Area_Observational":
            continue
        name = None
        for el in area:
            local = el.tag.rsplit("}", 1)[-1]
            if local == "File":
                name = next(((k.text or "").strip() for k in el if k.tag.rsplit("}", 1)[-1] == "file_name"), None)
            elif local.startswith(("Array_2D", "Array_3D")) and name is not None:
                off = next((parse_number(k.text) for k in el if k.tag.rsplit("}", 1)[-1] == "offset"), None)
                return name, int(off) if off is not None and math.isfinite(off) else 0
    return None


def _pds4_items(root: ET.Element) -> list[tuple[str, Any]]:
    """PDS4 XML as (path, value) pairs by local element names; a unit attribute gives {value, unit}."""
    items: list[tuple[str, Any]] = []

    def walk(el: ET.Element, prefix: str) -> None:
        name = el.tag.rsplit("}", 1)[-1]
        here = f"{prefix}.{name}" if prefix else name
        kids = list(el)
        if kids:
            for k in kids:
                walk(k, here)
        elif el.text and el.text.strip():
            text = el.text.strip()
            items.append((here, {"value": text, "unit": el.get("unit", "")} if el.get("unit") else text))

    walk(root, "")
    return items


def _pds4_instrument(root: ET.Element) -> str | None:
    for el in root.iter():
        if el.tag.endswith("Observing_System_Component"):
            kind = name = None
            for k in el:
                tag = k.tag.rsplit("}", 1)[-1]
                if tag == "type":
                    kind = (k.text or "").strip().lower()
                elif tag == "name":
                    name = (k.text or "").strip()
            if kind == "instrument" and name:
                return name
    return None


def label_from_dataset(ds: Any, path: Path, root: ET.Element | None = None) -> ProductLabel:
    """Read the :class:`ProductLabel` of an open rasterio dataset whose label (or file) is ``path``.

    ``root``: a PDS4 label already parsed (:func:`pds4_root`), so the XML is not parsed again."""
    driver = str(ds.driver)
    fmt = {"PDS": "PDS3", "PDS4": "PDS4", "ISIS3": "ISIS3", "VICAR": "VICAR", "GTiff": "GeoTIFF"}.get(driver, driver)
    specials: list[float] = []
    mapping: dict[str, Any] = {}
    bits = None
    misread = None
    if driver == "PDS4":
        root = pds4_root(path) if root is None else root
        items = _pds4_items(root)
        keys = _Keys(items)
        for path_, v in items:
            if ".Special_Constants." in f".{path_}." and path_.rsplit(".", 1)[-1] in _PDS4_SPECIAL_KEYS:
                n = parse_number(v)
                if n is not None:
                    specials.append(n)
        lid = keys.text("logical_identifier")
        product_id = lid.rsplit(":", 1)[-1] if lid else path.stem
        instrument = _pds4_instrument(root)
        spacecraft = None
        for path_, v in items:
            if path_.endswith("Investigation_Area.name"):
                spacecraft = str(v)
                break
        target = _target_pds4(items)
        resolution = _metres(keys.first("pixel_resolution_x", "pixel_resolution"))
    else:
        found = _gdal_json(ds)
        label = found[1] if found else {}
        tags = ds.tags()
        items = list(flatten(label)) + [(k, v) for k, v in tags.items() if v not in ("", None)]
        keys = _Keys(items)
        product_id = keys.text("PRODUCT_ID", "ProductId", "IMAGE_ID") or path.stem
        instrument = keys.text("INSTRUMENT_ID", "InstrumentId", "INSTRUMENT_NAME")
        spacecraft = keys.text("INSTRUMENT_HOST_NAME", "SPACECRAFT_NAME", "SpacecraftName", "MISSION_NAME")
        target = keys.text("TARGET_NAME", "TargetName")
        resolution = _metres(keys.first("PixelResolution", "MAP_SCALE", "PIXEL_SCALE", "SAMPLE_RESOLUTION"))
        if driver == "PDS":
            for path_, v in items:
                leaf = re.sub(r"\[\d+\]$", "", path_.rsplit(".", 1)[-1])
                if leaf in _PDS3_SPECIAL_KEYS and ".IMAGE." in f".{path_}" and "HEADER" not in path_:
                    vals = v if isinstance(v, list) else [v]
                    specials += [n for n in (parse_number(x) for x in vals) if n is not None]
                    based = [str(x) for x in vals if re.fullmatch(r"\s*\d+#[0-9A-Fa-f]+#\s*", str(x))]
                    if based:
                        misread = float(based[0].strip().split("#")[0])
            mask = keys.first("SAMPLE_BIT_MASK")
            n = parse_number(mask)
            if n is not None and n > 0:
                bits = int(n).bit_length()
        if driver == "ISIS3":
            iso = label.get("IsisCube", {}).get("Mapping")
            if isinstance(iso, dict):
                mapping = {k: v for k, v in iso.items() if not k.startswith("_")}
    nbits = ds.tags(1, ns="IMAGE_STRUCTURE").get("NBITS")
    if bits is None and nbits:
        bits = int(nbits)
    return ProductLabel(
        format=fmt,
        product_id=product_id,
        instrument=instrument,
        spacecraft=spacecraft,
        target=(target.upper() if target else None),
        incidence_deg=keys.number("INCIDENCE_ANGLE", "IncidenceAngle", "INCIDENCE_ANGLE_FILTER"),
        emission_deg=keys.number("EMISSION_ANGLE", "EmissionAngle", "EMISSION_ANGLE_FILTER"),
        phase_deg=keys.number("PHASE_ANGLE", "PhaseAngle", "PHASE_ANGLE_FILTER"),
        resolution_m=resolution,
        special_values=tuple(sorted(set(specials))),
        bit_mask_bits=bits,
        misread_nodata=misread,
        mapping=mapping,
    )


def _target_pds4(items: list[tuple[str, Any]]) -> str | None:
    for path_, v in items:
        if path_.endswith("Target_Identification.name"):
            return str(v)
    return None

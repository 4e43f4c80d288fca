"""PDS3 labels as the reader needs them: top-level keywords, the IMAGE object, the label's end, ``^IMAGE``.

GDAL's PDS driver is trusted for everything but where the image starts in two cases seen in real cropped
products (``../shared/data/formats/pds3``):

- the attached label's ``^IMAGE`` byte pointer lands inside the label itself (a crop tool rewrote the
  label and left the pointer stale: ``nacl.img``, ``wac0000a1c4_cropped.img``, ``ab102401_cropped.img``,
  ``h2862_0006_sr2_cropped.img``, ``ldem_4_cropped.img``), so GDAL returns label text as pixels;
- the label also holds a ``^IMAGE`` nested in an object (``UNCOMPRESSED_FILE`` of ``ldem_4_cropped.img``),
  which GDAL follows instead of the top-level pointer.

And in one where the start is right but the line length is not: GDAL skips an IMAGE's ``LINE_PREFIX_BYTES`` but
ignores its ``LINE_SUFFIX_BYTES`` (GDAL 3.10), so each line after the first starts that many bytes per line too early
(the HiRISE EDR ``PSP_001446_1790_BG12_0.IMG``: 18 + 256 + 16 bytes a line, read with a 274-byte stride).

Then :class:`RawImage` says where the image really is and reads its rows with numpy; see
:func:`edgeae.archive.formats.check_complete` for when a start is unambiguous (else the product is refused).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

__all__ = ["OdlLabel", "RawImage", "image_bytes", "parse_pointer", "qube_suffix", "scan_label", "suffix_image"]

# objects and pointers GDAL's PDS driver reads an image from
IMAGE_OBJECTS = ("IMAGE", "QUBE", "SPECTRAL_QUBE", "UNCOMPRESSED_FILE", "COMPRESSED_FILE")
_STATEMENT = re.compile(r"[ \t]*(\^?[A-Za-z][A-Za-z0-9_:]*)[ \t]*(?:=[ \t]*(.*?))?[ \t]*")


@dataclass(frozen=True)
class OdlLabel:
    """What :func:`scan_label` found; keyword names upper-case, values as written (quotes kept)."""

    end: int | None  # byte offset just after the END line (None: no END in the text scanned)
    top: dict[str, str]  # top-level keywords, first occurrence
    objects: list[tuple[str, int, dict[str, str]]] = field(default_factory=list)  # (name, depth, own keywords)
    nested_pointers: list[tuple[str, str, str]] = field(default_factory=list)  # (object, ^KEY, value)

    def image_object(self) -> dict[str, str] | None:
        """The IMAGE object's own keywords: the top-level one, else the first nested one (LOLA LDEM)."""
        images = [(depth, kw) for name, depth, kw in self.objects if name == "IMAGE"]
        if not images:
            return None
        return min(images, key=lambda t: t[0])[1]

    def pointer(self, key: str = "^IMAGE") -> str | None:
        """The top-level pointer's value, else the first nested one (CRISM writes it inside OBJECT = FILE)."""
        if key in self.top:
            return self.top[key]
        return next((v for _, k, v in self.nested_pointers if k == key), None)

    def compressed_file(self) -> str | None:
        """FILE_NAME of a COMPRESSED_FILE object with an ENCODING_TYPE (HiRISE JP2 RDRs): what GDAL reads then (as
        :func:`file_name` gives it)."""
        for name, _, kw in self.objects:
            if name == "COMPRESSED_FILE" and kw.get("ENCODING_TYPE") and kw.get("FILE_NAME"):
                return file_name(kw["FILE_NAME"].strip().strip("\"'"))
        return None

    def has_image(self) -> bool:
        names = {name for name, _, _ in self.objects}
        pointers = set(self.top) | {k for _, k, _ in self.nested_pointers}
        return bool(names & set(IMAGE_OBJECTS)) or any(f"^{n}" in pointers for n in IMAGE_OBJECTS)


def _strip_comment(line: str) -> str:
    """``line`` without ``/* ... */`` comments outside double quotes."""
    if "/*" not in line:
        return line
    out, i, quoted = [], 0, False
    while i < len(line):
        c = line[i]
        if c == '"':
            quoted = not quoted
        elif not quoted and line.startswith("/*", i):
            j = line.find("*/", i + 2)
            i = len(line) if j < 0 else j + 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _open(value: str) -> bool:
    """Does a value continue on the next line (an open string, sequence or set)?"""
    return value.count('"') % 2 == 1 or value.count("(") > value.count(")") or value.count("{") > value.count("}")


def scan_label(head: bytes) -> OdlLabel:
    """Scan a PDS3 label (the first bytes of the file) up to its ``END`` line, in any letter case.

    Tracks ``OBJECT``/``GROUP`` nesting and joins values that continue over lines (quoted text, sequences),
    so a ``DESCRIPTION`` that quotes ``END_OBJECT`` or a nested ``^IMAGE`` is not taken for the top level.
    """
    text = head.decode("latin-1")
    top: dict[str, str] = {}
    objects: list[tuple[str, int, dict[str, str]]] = []
    nested: list[tuple[str, str, str]] = []
    stack: list[tuple[str, dict[str, str]]] = []
    pos, n = 0, len(text)
    while pos < n:
        nl = text.find("\n", pos)
        stop = n if nl < 0 else nl + 1
        m = _STATEMENT.fullmatch(_strip_comment(text[pos:stop].rstrip("\r\n")))
        pos = stop
        if m is None:
            continue
        key, value = m.group(1).upper(), m.group(2)
        if key == "END" and value is None:
            return OdlLabel(pos, top, objects, nested)
        if key in ("END_OBJECT", "END_GROUP"):
            if stack:
                name, kw = stack.pop()
                objects.append((name, len(stack), kw))
            continue
        if value is None:
            continue
        while _open(value) and pos < n:  # a value over several lines
            nl = text.find("\n", pos)
            stop = n if nl < 0 else nl + 1
            value = f"{value} {text[pos:stop].strip()}"
            pos = stop
        if key in ("OBJECT", "GROUP"):
            stack.append((value.strip().strip("\"'").upper(), {}))
        elif stack:
            stack[-1][1].setdefault(key, value)
            if key.startswith("^"):
                nested.append((stack[-1][0], key, value))
        else:
            top.setdefault(key, value)
    return OdlLabel(None, top, objects, nested)


def int_value(kw: dict[str, str], key: str, default: int = 0) -> int:
    """The leading integer of a label value (``RECORD_BYTES = 512``, ``LINES = 15 <...>``), else ``default``."""
    m = re.match(r"\s*([+-]?\d+)", kw.get(key, ""))
    return int(m.group(1)) if m else default


def file_name(name: str) -> str:
    """A file name from a label's text (decoded as Latin-1 by :func:`scan_label`) as the file system names it: the
    label's own bytes, as GDAL takes them. A byte that is not UTF-8 (``t\\xe9.img``, Latin-1 é) stays that byte
    (``os.fsdecode``: a lone surrogate), not the UTF-8 "té.img", which is another file; a UTF-8 name is itself."""
    try:
        return os.fsdecode(name.encode("latin-1"))
    except UnicodeEncodeError:  # not text from scan_label: as given
        return name


def parse_pointer(value: str, record_bytes: int) -> tuple[str | None, int] | None:
    """(file name or None for this file, byte offset) of a pointer value; quotes of either kind accepted; the name
    as the file system names it (:func:`file_name`).

    ``("F.IMG", 12)`` (records), ``("F.IMG", 2905 <BYTES>)``, ``"F.IMG"``, ``F.IMG``, ``("F.IMG")`` (the start of
    the file, as GDAL reads it), ``12``, ``2905 <BYTES>``. None when the value is none of these.
    """
    val = value.strip()
    t = re.fullmatch(r"\(\s*[\"']?([^\"',]+?)[\"']?\s*,\s*(\d+)\s*(<BYTES>)?\s*\)", val, re.I)
    if t:
        name, where, in_bytes = t.group(1).strip(), int(t.group(2)), bool(t.group(3))
    else:
        n = re.fullmatch(r"(\d+)\s*(<BYTES>)?", val, re.I)
        if n:
            name, where, in_bytes = None, int(n.group(1)), bool(n.group(2))
        else:
            bare = val[1:-1].strip() if val.startswith("(") and val.endswith(")") else val  # ("F.IMG"): no offset
            q = re.fullmatch(r"[\"']([^\"']+)[\"']|([^\s\"'(),<>]*[A-Za-z_.][^\s\"'(),<>]*)", bare)
            if not q:
                return None
            name, where, in_bytes = (q.group(1) or q.group(2)).strip(), 1, True
    offset = max(where - 1, 0) if in_bytes else max(where - 1, 0) * record_bytes
    return (None if name is None else file_name(name)), offset


@dataclass(frozen=True)
class ImageLayout:
    """The IMAGE object's sample layout (PDS3 keywords)."""

    lines: int
    samples: int
    bands: int
    bits: int
    sample_type: str
    prefix: int
    suffix: int
    storage: str  # BAND_STORAGE_TYPE, "BAND_SEQUENTIAL" when not given

    @property
    def line_bytes(self) -> int:
        return self.prefix + self.samples * self.bits // 8 + self.suffix

    @property
    def nbytes(self) -> int:
        return self.lines * self.bands * self.line_bytes


def image_bytes(label: OdlLabel) -> ImageLayout | None:
    """The layout of the label's IMAGE object, or None without one (or without LINES / LINE_SAMPLES)."""
    kw = label.image_object()
    if kw is None:
        return None
    lines, samples = int_value(kw, "LINES"), int_value(kw, "LINE_SAMPLES")
    if lines <= 0 or samples <= 0:
        return None
    return ImageLayout(
        lines=lines,
        samples=samples,
        bands=max(int_value(kw, "BANDS", 1), 1),
        bits=int_value(kw, "SAMPLE_BITS", 8),
        sample_type=kw.get("SAMPLE_TYPE", "").strip().strip("\"'").upper(),
        prefix=max(int_value(kw, "LINE_PREFIX_BYTES"), 0),
        suffix=max(int_value(kw, "LINE_SUFFIX_BYTES"), 0),
        storage=kw.get("BAND_STORAGE_TYPE", "BAND_SEQUENTIAL").strip().strip("\"'").upper(),
    )


def byte_order(sample_type: str, bits: int) -> Literal["<", ">", "|"] | None:
    """numpy byte-order character of a PDS3 SAMPLE_TYPE ('<', '>', '|'), or None when not IEEE/two's complement."""
    if bits == 8:
        return "|"
    t = sample_type.upper()
    if t.startswith("VAX_REAL") or t.startswith("VAX_COMPLEX"):
        return None  # VAX floats are not IEEE
    if t.startswith(("LSB_", "PC_", "VAX_")):
        return "<"
    if t.startswith(("MSB_", "SUN_", "MAC_", "IEEE_")) or t in ("INTEGER", "UNSIGNED_INTEGER", "REAL", "FLOAT"):
        return ">"
    return None


@dataclass(frozen=True)
class RawImage:
    """Where a PDS3 image really starts, when GDAL would read it elsewhere; rows read here with numpy."""

    path: Path
    offset: int
    layout: ImageLayout
    note: str  # why the reader reads it itself (recorded in the product's metadata)
    warn: bool = True  # the label misleads (a stale or nested pointer): the note is a warning, not just the route

    def dtype(self, gdal_dtype: np.dtype) -> np.dtype | str:
        """GDAL's sample type with the label's byte order, or the reason this layout is not read here."""
        lay = self.layout
        if gdal_dtype.itemsize * 8 != lay.bits:
            return f"GDAL reads {gdal_dtype} samples, the label says SAMPLE_BITS = {lay.bits}"
        if lay.bands > 1 and lay.storage != "BAND_SEQUENTIAL":
            return f"{lay.bands} bands stored {lay.storage} (only band-sequential images are read directly)"
        order = byte_order(lay.sample_type, lay.bits)
        if order is None:
            return f"SAMPLE_TYPE = {lay.sample_type or '(none)'} is not one read directly"
        return gdal_dtype if order == "|" else gdal_dtype.newbyteorder(order)

    def read(self, y0: int, y1: int, bands: list[int], dtype: np.dtype) -> np.ndarray:
        """Rows [y0, y1) of the 1-based ``bands`` as (rows, W, C) in native byte order.

        Whole lines are read at once while their prefix and suffix are at most the samples' size (so a window reads
        at most twice its samples); lines with longer ones are read sample run by sample run."""
        lay, rows = self.layout, y1 - y0
        width = lay.samples * dtype.itemsize
        planes = []
        with open(self.path, "rb") as fh:
            for b in bands:
                start = self.offset + ((b - 1) * lay.lines + y0) * lay.line_bytes
                if lay.line_bytes <= 2 * width:
                    fh.seek(start)
                    buf = fh.read(rows * lay.line_bytes)
                    if len(buf) != rows * lay.line_bytes:
                        raise OSError(f"{len(buf)} of {rows * lay.line_bytes} bytes at the end of the file")
                    lines = np.frombuffer(buf, np.uint8).reshape(rows, lay.line_bytes)
                    rec = np.ascontiguousarray(lines[:, lay.prefix : lay.prefix + width])
                else:
                    rec = np.empty((rows, width), np.uint8)
                    for i in range(rows):
                        fh.seek(start + i * lay.line_bytes + lay.prefix)
                        got = fh.readinto(memoryview(rec[i]))
                        if got != width:
                            raise OSError(f"{got} of {width} bytes of line {y0 + i + 1} at the end of the file")
                planes.append(rec.view(dtype).reshape(rows, lay.samples))
        return np.stack(planes, axis=-1).astype(dtype.newbyteorder("="), copy=False)


def qube_suffix(label: OdlLabel) -> str | None:
    """Why GDAL's PDS driver would misread the label's QUBE or SPECTRAL_QUBE, else None: suffix items (sideplanes,
    backplanes) along its fastest axis, or along its middle one unless it is band-sequential, which GDAL does not
    skip (it steps over suffix lines after a band's core only), so its lines would be read shifted."""
    for name, _, kw in label.objects:
        if name not in ("QUBE", "SPECTRAL_QUBE") or "SUFFIX_ITEMS" not in kw:
            continue
        items = [int(x) for x in re.findall(r"[+-]?\d+", kw["SUFFIX_ITEMS"])]
        axes = [a.strip(" \"'").upper() for a in kw.get("AXIS_NAME", "").strip(" ()").split(",")]
        bsq = axes == ["SAMPLE", "LINE", "BAND"]
        if (items[:1] and items[0] > 0) or (len(items) > 1 and items[1] > 0 and not bsq):
            fast = axes[0].lower() if axes[0] else "first"
            return (
                f"its {name} has SUFFIX_ITEMS = {kw['SUFFIX_ITEMS'].strip()} (suffix items after each {fast} run "
                "of its core), which GDAL does not skip (its PDS driver reads them as samples), so its lines would "
                "be read shifted: not read"
            )
    return None


def suffix_image(data: Path, offset: int, layout: ImageLayout) -> RawImage | None:
    """The image read here when its lines end in ``LINE_SUFFIX_BYTES``, which GDAL's PDS driver ignores (its line
    stride is the prefix plus the samples), so it would start each line after the first ``suffix`` bytes per line too
    early; None without a suffix (GDAL's layout is the label's)."""
    if layout.suffix <= 0:
        return None
    size = layout.bits // 8
    note = (
        f"its IMAGE has LINE_SUFFIX_BYTES = {layout.suffix}, which GDAL's PDS driver ignores (it would read each line "
        f"after the first {layout.suffix} bytes a line too early): read here from the label's layout, "
        f"{layout.prefix} + {layout.samples} × {size} + {layout.suffix} = {layout.line_bytes} bytes a line from byte "
        f"{offset + 1}"
    )
    return RawImage(data, offset, layout, note, warn=False)

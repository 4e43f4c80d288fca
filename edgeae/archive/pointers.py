"""Where a label's pointers may lead: a PDS3 pointer parsed (a malformed or negative one refused), a named file
kept to the label's own folder and to regular files (:func:`.formats.check_complete`, :func:`pds4_files`), and never
into the label another file carries at its start (:func:`not_in_label`: a PDS3 image or qube pointer, a PDS4 array's
``<offset>``)."""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from edgeae._headers import ImageReadError
from edgeae.archive.files import (
    LINK_REMEDY,
    _check_label_size,
    _head,
    _open_regular,
    _same_file,
    follow_links,
    not_regular,
)
from edgeae.archive.pds3 import OdlLabel, int_value, parse_pointer, scan_label
from edgeae.printable import printable


def _said(name: str) -> str:
    """``name`` quoted as ``repr`` quotes it, but a byte that is not UTF-8 (a lone surrogate from ``os.fsdecode``) as
    ``\\xe9`` (:func:`edgeae.printable.printable`), as the console and the scan's records write it, not ``\\udce9``."""
    return "'" + "".join(printable(c) if "\udc80" <= c <= "\udcff" else repr(c)[1:-1] for c in name) + "'"


def _in_label_dir(label: Path, name: str, what: str) -> Path:
    """The file ``name`` that ``label`` points to, in the label's own folder (as written, upper or lower case).

    Refuses, naming the label and the pointer, a name with a path separator or one that is not a file name
    (``..``, an absolute path), a link whose real path leaves the label's folder (the one it is in, or, for a
    label that is itself a link, the one it links to: a folder of links to products) unless
    ``EDGEAE_ARCHIVE_FOLLOW_LINKS=1`` and it leads to a regular file (:func:`.files.follow_links`), and anything
    that is not a regular file (a FIFO, ``/dev/urandom``), always: a label must not send the reader to files
    outside its product's folder, nor to a file that never ends. A name that does not exist is returned as
    written (the caller says so).
    """
    if not name or "/" in name or "\\" in name or "\0" in name or name in (".", ".."):
        raise ImageReadError(
            f"{label}: its {what} names {_said(name)}, not a file beside the label: a pointer must stay in the "
            "label's folder (no path separators)"
        )
    for cand in dict.fromkeys((name, name.upper(), name.lower())):
        p = label.with_name(cand)
        if p.exists():
            real = os.path.realpath(p)
            kind = not_regular(p)
            # beside the label as given, or beside the file the label links to (a folder of links to products)
            homes = (os.path.realpath(label.parent), os.path.dirname(os.path.realpath(label)))
            if os.path.dirname(real) not in homes and (kind is not None or not follow_links()):
                why = LINK_REMEDY if kind is None else f"it is {kind}, not a regular file: never read"
                raise ImageReadError(
                    f"{label}: its {what} names {_said(name)}, a link to {printable(real)}, outside the label's "
                    f"folder: a pointer must stay in the label's folder ({why})"
                )
            if kind is not None:
                raise ImageReadError(
                    f"{label}: its {what} names {_said(name)}, which is {kind}, not a regular file: not read"
                )
            return p
    return label.with_name(name)


def _pointer(p: Path, key: str, value: str, record_bytes: int, obj: str = "") -> tuple[str | None, int]:
    """(file name or None, byte offset) of the pointer ``key = value``; a malformed or negative one is refused."""
    ptr = parse_pointer(value, record_bytes)
    where = f"{key} pointer" + (f" (in {obj})" if obj else "")
    if ptr is None:
        why = "a negative position" if re.search(r"-\s*\d", value) else "not a pointer PDS3 defines"
        raise ImageReadError(
            f"{p}: its {where} = {_said(value.strip())} is {why}: where the image starts is unknown"
        )  # fmt: skip
    if ptr[1] < 0:  # a record pointer times a negative RECORD_BYTES
        raise ImageReadError(
            f"{p}: its {where} = {_said(value.strip())} with RECORD_BYTES = {record_bytes} is a negative position: "
            "where the image starts is unknown"
        )
    return ptr


def record_bytes(lab: OdlLabel, obj: str = "", key: str = "^IMAGE", value: str | None = None) -> int:
    """RECORD_BYTES as GDAL's PDS driver counts the records of a pointer (``pdsdataset.cpp`` ParseImage): the
    RECORD_BYTES of the IMAGE object beside the pointer, else of the pointer's own object (``obj``, the one holding
    ``key = value``; ``""``: the label's top level), else 0 (none given: GDAL counts 1-byte records). A pointer nested
    in ``OBJECT = FILE`` never counts the top level's RECORD_BYTES (GDAL reads ``FILE.RECORD_BYTES``)."""
    if not obj:
        image = next((kw for name, depth, kw in lab.objects if name == "IMAGE" and depth == 0), {})
        return int_value(image, "RECORD_BYTES") or int_value(lab.top, "RECORD_BYTES")
    for i, (name, depth, kw) in enumerate(lab.objects):  # objects are listed at their END_OBJECT: children first
        if name != obj or (value is not None and kw.get(key) != value):
            continue
        children, j = [], i - 1
        while j >= 0 and lab.objects[j][1] > depth:
            children.append(lab.objects[j])
            j -= 1
        image = next((k for n, d, k in children if n == "IMAGE" and d == depth + 1), {})
        return int_value(image, "RECORD_BYTES") or int_value(kw, "RECORD_BYTES")
    return 0


def unsized_record(value: str, record_bytes: int, obj: str = "") -> str:
    """``record N with no RECORD_BYTES (GDAL counts 1-byte records: byte N)`` for a pointer to record N > 1 where
    :func:`record_bytes` finds none (``in OBJ`` for a pointer nested in an object), else ``""``: for
    :func:`not_in_label`'s message."""
    one = parse_pointer(value, 1)
    if record_bytes or one is None or one == parse_pointer(value, 2):  # equal unless in records, past record 1
        return ""
    where = f" in {obj}" if obj else ""
    return f"record {one[1] + 1} with no RECORD_BYTES{where} (GDAL counts 1-byte records: byte {one[1] + 1})"


def not_in_label(label: Path, data: Path, offset: int, what: str = "^IMAGE pointer", at: str = "") -> None:
    """Refuse a detached label's pointer (``what``: ``^IMAGE pointer``, ``^QUBE pointer``, a PDS4 array) that lands
    inside the label its data file carries at its start (a PDS3 label up to its END line, a VICAR label up to LBLSIZE,
    or a VICAR label after the PDS3 one): that label's text would be read as rows 0..n (a stale pointer, or a pointer
    naming another product's file). Names both files, and the position as ``at`` says it (default: ``byte N``)."""
    head = _head(data, 65536)
    text = head.lstrip()
    start = len(head) - len(text)
    kind, end = None, 0
    if text.startswith((b"PDS_VERSION_ID", b"CCSD", b"ODL_VERSION_ID")):
        kind, end = "PDS3", scan_label(head).end or len(head)  # no END in the first 64 KiB: all of it is label
        vicar = re.compile(rb"LBLSIZE=\s*(\d+)").search(head, end)
        if vicar and head[end : vicar.start()].strip(b" \t\r\n\0") == b"":
            kind, end = "PDS3 and VICAR", vicar.start() + int(vicar.group(1))
    elif text.startswith(b"LBLSIZE="):
        m = re.match(rb"LBLSIZE=\s*(\d+)", text)
        kind, end = "VICAR", start + (int(m.group(1)) if m else len(text))
    if kind is not None and offset < end:
        name = printable(data.name)
        raise ImageReadError(
            f"{label}: its {what} names {name} at {at or f'byte {offset + 1}'}, inside {name}'s own {kind} label "
            f"(which ends at byte {end}): its text would be read as pixels (a stale pointer, or the file of another "
            "product)"
        )


def _local(el: ET.Element) -> str:
    return el.tag.rpartition("}")[2]


def _pds4_root(label: Path) -> ET.Element:
    """The root of a PDS4 label (refused over :data:`.files.MAX_LABEL_BYTES`, or when it is not XML)."""
    _check_label_size(label)
    try:
        with _open_regular(label) as fh:
            return ET.parse(fh).getroot()
    except (ET.ParseError, OSError) as exc:
        raise ImageReadError(f"{label}: not a readable PDS4 label ({exc})") from exc


def _pds4_files(label: Path, root: ET.Element) -> list[Path]:
    out = []
    for el in root.iter():
        ns, _, local = el.tag.rpartition("}")
        if local != "File" or not (ns == "" or ns.startswith("{http://pds.nasa.gov/pds4/pds/")):
            continue  # pds:File only (psa:file_name and the like name documents, not data GDAL reads)
        for k in el:
            if k.tag == (f"{ns}}}file_name" if ns else "file_name"):
                out.append(_in_label_dir(label, (k.text or "").strip(), "<file_name>"))
    return out


def pds4_files(label: Path) -> list[Path]:
    """The data files of a PDS4 label (``File/file_name``), each checked to be in the label's folder."""
    return _pds4_files(label, _pds4_root(label))


def check_pds4(label: Path) -> None:
    """A PDS4 label's data files (:func:`pds4_files`) must exist and not be the label itself, and no array of a
    ``File_Area_Observational`` may start inside the label its file carries at its start (:func:`not_in_label`: an
    ``<offset>`` of 0 into a PDS3 product's file read its label's text as rows)."""
    root = _pds4_root(label)
    for f in _pds4_files(label, root):
        if not f.exists():
            raise ImageReadError(f"{label}: the data file {printable(f.name)} named by its <file_name> does not exist")
        if _same_file(f, label):  # its own XML would be read as pixels
            raise ImageReadError(
                f"{label}: its <file_name> names the label itself ({printable(f.name)}): a PDS4 label must name its "
                "data file"
            )
    for area in root.iter():
        if not _local(area).startswith("File_Area_Observational"):
            continue
        names = [(k.text or "").strip() for f in area if _local(f) == "File" for k in f if _local(k) == "file_name"]
        if not names:
            continue
        data = _in_label_dir(label, names[0], "<file_name>")
        for arr in area:
            if not _local(arr).startswith("Array"):
                continue
            at = pds4_offset(arr)
            if at < 0:  # GDAL casts it to an unsigned offset, far past the file's end
                text = next((k.text or "" for k in arr if _local(k) == "offset"), "").strip()
                raise ImageReadError(
                    f"{label}: its {_local(arr)} has <offset> {_said(text)}, a negative position: where the array "
                    "starts is unknown"
                )
            if data.is_file() and not _same_file(data, label):
                not_in_label(label, data, at, f"{_local(arr)} ({_offset_said(arr, at)})")


def _offset_said(arr: ET.Element, at: int) -> str:
    """The array's ``<offset>`` as the label writes it, and GDAL's reading where that differs: ``<offset> 3649``,
    ``<offset> '0x10', which GDAL reads as 0``, ``no <offset>, which GDAL reads as 0``."""
    el = next((k for k in arr if _local(k) == "offset"), None)
    if el is None:
        return f"no <offset>, which GDAL reads as {at}"
    text = (el.text or "").strip()
    return f"<offset> {at}" if text == str(at) else f"<offset> {_said(text)}, which GDAL reads as {at}"


def pds4_offset(arr: ET.Element) -> int:
    """An array's ``<offset>`` as GDAL's PDS4 driver reads it (``CPLAtoGIntBig``): its leading integer, so ``4e3`` is
    byte 4, ``0x10`` and an absent or empty ``<offset>`` byte 0, and ``1e400`` byte 1 (not 4000, 16 or infinity)."""
    text = next((k.text or "" for k in arr if _local(k) == "offset"), "")
    m = re.match(r"\s*([+-]?\d+)", text)
    return int(m.group(1)) if m else 0

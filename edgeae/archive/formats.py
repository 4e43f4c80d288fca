"""Which files are archive products, how a label finds its data (and back), and the truncation checks.

A product is opened by its label or by its data file: a data file without an attached label (``.img``,
``.dat``, ``.fits``, ``.qub``) is opened through the label of the same stem beside it (``.lbl``, ``.xml``,
``.lblx``, any case). GeoTIFFs go through GDAL when they carry GeoTIFF or GDAL no-data tags (and rasterio is installed);
plain TIFFs stay on the tifffile path of :mod:`edgeae.imageio`, which reads them faster (measured in
docs/archive.md).

Truncated products are refused before any pixel is read, naming the file and the byte counts: the data
must hold what the PDS3 ``^IMAGE`` pointer and IMAGE object promise, and a VICAR label (a file of its own,
or embedded in the data file after a PDS3 label) must be followed by its NL × NB records. FILE_RECORDS is
not used: several real products were cropped upstream with LINES edited and FILE_RECORDS left as it was.

Labels are not trusted blindly: a file a PDS3, PDS4 or ISIS3 label points to must be a plain name in the
label's own folder whose real path (links followed) stays there, and a regular file (``../../etc/passwd``, a
link to ``/etc/passwd`` or ``/dev/urandom``, a FIFO are refused, naming the label and the pointer); a
negative or malformed PDS3 pointer, a label naming itself as its data and a label over
:data:`MAX_LABEL_BYTES` are refused; a PDS3 label without an IMAGE object is refused as such, and a PDS3
``^IMAGE`` that lands inside its own label (a stale pointer left by a crop) is either relocated, when exactly
one placement of the image fits, or refused (:func:`check_complete`, :mod:`edgeae.archive.pds3`). Nothing
but a regular file is ever opened here (a FIFO would block ``open`` forever).

What may be opened lives in :mod:`.files`, where a label's pointers may lead in :mod:`.pointers`, and the VICAR
checks in :mod:`.vicar`; this module ties them together per format.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from edgeae import _headers
from edgeae._headers import ImageReadError
from edgeae.archive.files import (
    MAX_LABEL_BYTES,
    _check_label_size,
    _head,
    _read_at,
    _same_file,
    not_regular,
)
from edgeae.archive.pds3 import (
    IMAGE_OBJECTS,
    ImageLayout,
    OdlLabel,
    RawImage,
    image_bytes,
    parse_pointer,
    qube_suffix,
    scan_label,
    suffix_image,
)
from edgeae.archive.pointers import (
    _in_label_dir,
    _pointer,
    check_pds4,
    not_in_label,
    pds4_files,
    record_bytes,
    unsized_record,
)
from edgeae.archive.vicar import _check_vicar, _vicar_extent
from edgeae.printable import printable

__all__ = [
    "ARCHIVE_SUFFIXES",
    "DATA_SUFFIXES",
    "LABEL_SUFFIXES",
    "MAX_LABEL_BYTES",
    "check_complete",
    "is_archive_path",
    "label_for",
    "not_regular",
    "open_target",
    "pds4_files",
    "product_files",
    "sniff_tiff_needs_gdal",
]

# defined with the other readable suffixes (the error for an unsupported file lists them too)
LABEL_SUFFIXES = _headers.ARCHIVE_LABEL_SUFFIXES
DATA_SUFFIXES = _headers.ARCHIVE_DATA_SUFFIXES
# files that only GDAL reads (the scan walks these; .xml only when it is a PDS4 label)
ARCHIVE_SUFFIXES = _headers.ARCHIVE_SUFFIXES


def is_pds4_label(p: Path) -> bool:
    try:
        head = _head(p)
    except (OSError, ImageReadError):  # not a regular file (a FIFO): not a label, and never opened
        return False
    return b"pds.nasa.gov/pds4" in head.lower() or b"<product_" in head.lower()


def sniff_tiff_needs_gdal(p: Path) -> bool:
    """True for a TIFF with GeoTIFF tags or a GDAL no-data tag (read through GDAL).

    Only the first IFD's tag numbers are looked at (tifffile, already a ``ground`` dependency). A plain
    float TIFF without them stays on the tifffile path and its [0, 1] contract (see :mod:`edgeae.imageio`).
    Without rasterio installed, georeferenced integer TIFFs stay on the tifffile path (pixels, no map).
    """
    try:
        import tifffile
    except ImportError:
        return False
    log = logging.getLogger("tifffile")
    level = log.level
    log.setLevel(logging.ERROR)  # tifffile warns about GDAL_NODATA values it cannot cast; GDAL reads them
    try:
        with tifffile.TiffFile(p) as tif:
            page = tif.pages.first
            geo = any(t in page.tags for t in (33550, 33922, 34264, 34735, 42113))
            is_float = page.sampleformat == 3
    except Exception:  # a broken TIFF is refused by the TIFF path with its own message
        return False
    finally:
        log.setLevel(level)
    if not geo:
        return False
    try:
        import rasterio  # noqa: F401
    except ImportError:
        return bool(is_float)  # a georeferenced float DEM needs GDAL: the reader names the extra to install
    return True


def is_archive_path(p: Path) -> bool:
    """Does ``p`` go through GDAL (an archive product) rather than OpenCV/tifffile?"""
    ext = p.suffix.lower()
    if ext in (".img", ".lbl", ".cub", ".lblx", ".vic", ".jp2", ".j2k", ".jpx", ".qub"):
        return True
    if ext == ".xml":  # one that is not a regular file goes to the reader, which refuses it by name
        return is_pds4_label(p) or not_regular(p) not in (None, "a directory")
    if ext in (".dat", ".fits", ".fit"):
        return label_for(p) is not None
    if ext in (".tif", ".tiff") and p.is_file():
        return sniff_tiff_needs_gdal(p)
    return False


def label_for(data: Path) -> Path | None:
    """The detached label beside a data file (same stem; .lbl/.xml/.lblx in lower or upper case), or None.

    Looks up a fixed set of names (no directory listing: archives hold millions of files per folder).
    """
    for stem in dict.fromkeys((data.stem, data.stem.upper(), data.stem.lower())):
        for ext in LABEL_SUFFIXES:
            for e in dict.fromkeys((ext, ext.upper())):
                cand = data.with_name(stem + e)
                if cand != data and cand.is_file() and (ext != ".xml" or is_pds4_label(cand)):
                    return cand
    return None


def has_attached_label(p: Path) -> bool:
    """A PDS3 or VICAR label at the start of the file (a FITS header does not count: PDS4 wraps FITS)."""
    head = _head(p, 64).lstrip()
    return head.startswith((b"PDS_VERSION_ID", b"LBLSIZE=", b"CCSD", b"ODL_VERSION_ID"))


def open_target(p: Path) -> Path:
    """The file GDAL should open for ``p``: the detached label of a bare data file, else ``p`` itself."""
    if not p.exists():
        raise ImageReadError(f"{p}: no such file")
    if p.is_dir():
        raise ImageReadError(f"{p}: is a directory, not a product")
    kind = not_regular(p)
    if kind is not None:  # a FIFO would block the first read forever (it also reports 0 bytes: not "empty")
        raise ImageReadError(f"{p}: {kind}, not a regular file: not read")
    if p.stat().st_size == 0:
        raise ImageReadError(f"{p}: file is empty (0 bytes)")
    if p.suffix.lower() in DATA_SUFFIXES and not has_attached_label(p):
        lab = label_for(p)
        if lab is None:
            raise ImageReadError(
                f"{p}: no attached label and no detached label ({p.stem}.lbl / .xml / .lblx) beside it"
            )
        return lab
    return p


# -- truncation checks ------------------------------------------------------------------------------


_PAD = frozenset(b" \t\r\n\0")


def _stale_start(p: Path, lab: OdlLabel, layout: ImageLayout, offset: int, size: int) -> RawImage:
    """Where the image of an attached label whose ``^IMAGE`` lands inside the label really starts.

    Unambiguous only when exactly one placement fits: right after the END line with at most padding (blanks,
    NULs, newlines; less than one line) after it, or flush with the end of the file with only padding between
    the label and it. Anything else is refused: where the pixels start is then a guess.
    """
    assert lab.end is not None
    end, need = lab.end, layout.nbytes
    if end + need > size:
        n = layout.lines
        raise ImageReadError(
            f"{p}: truncated: its label promises {n} line{'s' if n != 1 else ''} ({need} bytes), the file holds "
            f"{size - end} bytes after its label (which ends at byte {end}; its stale ^IMAGE pointer, byte "
            f"{offset + 1}, lies inside it)"
        )
    starts = set()
    tail = size - (end + need)
    if 0 <= tail < max(layout.line_bytes, 2) and set(_read_at(p, end + need, tail)) <= _PAD:
        starts.add(end)
    gap = size - need - end
    if 0 < gap <= 65536 and set(_read_at(p, end, gap)) <= _PAD:
        starts.add(size - need)
    if len(starts) != 1:
        raise ImageReadError(
            f"{p}: its ^IMAGE pointer (byte {offset + 1}) lies inside its label, which ends at byte {end}: a stale "
            f"pointer, and the {need}-byte image does not fill the {size - end} bytes after the label "
            "unambiguously, so where its pixels start is unknown"
        )
    start = starts.pop()
    note = (
        f"the label's ^IMAGE pointer (byte {offset + 1}) lies inside the label, which ends at byte {end} (a stale "
        f"pointer left by an edit of the label); the {need}-byte image fills the file after the label, so it is "
        f"read from byte {start + 1}"
    )
    return RawImage(p, start, layout, note)


def _check_core(p: Path, value: str, obj: str) -> None:
    """An ISIS3 ``^Core`` file beside the label must be a regular file whose real path stays in the label's folder.

    A name with a path (``../x``) is left to the reader's check of every file GDAL opened (ISIS3 labels are not
    PDS3: GDAL resolves it as a path), except that it must not be a FIFO or device, which GDAL would block on.
    """
    name = _pointer(p, "^CORE", value, 0, obj)[0]
    if name is None:
        return
    if "/" in name or "\\" in name:
        kind = not_regular(p.parent / name)
        if kind is not None:
            raise ImageReadError(
                f"{p}: its ^CORE pointer (in {obj}) names {name!r}, which is {kind}, not a regular file"
            )
        return
    _in_label_dir(p, name, f"^CORE pointer (in {obj})")


def _pds3_checks(p: Path, head: bytes) -> tuple[Path, RawImage | None]:
    """(data file, relocated image or None) of a PDS3 label; refuses a label GDAL would misread."""
    lab = scan_label(head)
    if not lab.has_image() and b"PDS_VERSION_ID" in head[:4096] and b"LBLSIZE=" not in head:
        found = [name for name, depth, _ in lab.objects if depth == 0]
        what = f" (it describes {', '.join(dict.fromkeys(found))})" if found else ""
        raise ImageReadError(f"{p}: the label has no IMAGE object{what}: not an image product")
    for obj, key, value in [("", k, v) for k, v in lab.top.items()] + lab.nested_pointers:
        # every image pointer GDAL might follow (an ISIS3 detached label's ^Core too) stays in the label's folder
        if key == "^CORE":  # an ISIS3 detached label
            _check_core(p, value, obj)
        elif key[1:] in IMAGE_OBJECTS:
            rb = record_bytes(lab, obj, key, value)  # as GDAL counts them: never the top level's for a nested one
            name, at = _pointer(p, key, value, rb or 1, obj)
            what = f"{key} pointer" + (f" (in {obj})" if obj else "")
            data = _in_label_dir(p, name, what) if name is not None else p
            if key != "^IMAGE" and data.is_file() and not _same_file(data, p):  # ^IMAGE: below, as GDAL takes it
                not_in_label(p, data, at, what, unsized_record(value, rb, obj))  # a ^QUBE into another file's own label
    packed = lab.compressed_file()
    if packed is not None:  # GDAL reads the compressed file (a JP2), not the IMAGE object's raw layout
        data = _in_label_dir(p, packed, "COMPRESSED_FILE FILE_NAME")
        if not data.is_file():
            raise ImageReadError(f"{p}: the data file {data.name} named by its COMPRESSED_FILE does not exist")
        return data, None
    misread = qube_suffix(lab)
    if misread is not None:
        raise ImageReadError(f"{p}: {misread}")
    pointer = lab.pointer()
    if pointer is None:
        return p, None
    obj = "" if "^IMAGE" in lab.top else next(o for o, k, _ in lab.nested_pointers if k == "^IMAGE")
    rb = record_bytes(lab, obj, "^IMAGE", pointer)  # a ^IMAGE in OBJECT = FILE: FILE's RECORD_BYTES, as GDAL
    name, offset = _pointer(p, "^IMAGE", pointer, rb or 1, obj)
    data = p if name is None else _in_label_dir(p, name, "^IMAGE pointer")
    if not data.exists():
        raise ImageReadError(f"{p}: the data file {printable(data.name)} named by its ^IMAGE pointer does not exist")
    if not data.is_file():
        raise ImageReadError(f"{p}: the data file {printable(data.name)} named by its ^IMAGE pointer is not a file")
    if name is not None and not _same_file(data, p):
        not_in_label(p, data, offset, at=unsized_record(pointer, rb, obj))
    layout = image_bytes(lab)
    if layout is None:
        return data, None
    size = data.stat().st_size
    moved = None
    inside = name is not None and lab.end is not None and offset < lab.end
    if inside and p.suffix.lower() in LABEL_SUFFIXES and _same_file(data, p):  # its own text would be the pixels
        raise ImageReadError(
            f"{p}: its ^IMAGE pointer names the label itself ({name}, byte {offset + 1}, inside the label, which "
            f"ends at byte {lab.end}): a detached label must name its data file"
        )
    if data == p and lab.end is not None and offset < lab.end:
        moved = _stale_start(p, lab, layout, offset, size)
    elif "^IMAGE" in lab.top and any(
        k == "^IMAGE" and parse_pointer(v, 0) != parse_pointer(lab.top["^IMAGE"], 0) for _, k, v in lab.nested_pointers
    ):
        obj = next(o for o, k, _ in lab.nested_pointers if k == "^IMAGE")
        moved = RawImage(
            data, offset, layout, f"the label also holds a ^IMAGE nested in {obj}, which GDAL would follow; the "
            f"top-level ^IMAGE is read (byte {offset + 1})"
        )  # fmt: skip
    if moved is None:
        moved = suffix_image(data, offset, layout)
    start = moved.offset if moved else offset
    if start + layout.nbytes > size:
        n = layout.lines
        raise ImageReadError(
            f"{p}: truncated: its label promises {n} line{'s' if n != 1 else ''} ({start + layout.nbytes} bytes "
            f"up to the end of the image in {data.name}), the file holds {size} bytes"
        )
    return data, moved


def check_complete(p: Path) -> RawImage | None:
    """Refuse a truncated or misleading product with :class:`ImageReadError` naming the file and the bytes.

    Returns where a PDS3 image really starts when GDAL would read it from elsewhere (see :mod:`.pds3`), else
    None. Every file a PDS3 or PDS4 label points to must be in the label's folder.
    """
    if p.suffix.lower() in LABEL_SUFFIXES:  # a detached label: GDAL (and ElementTree) parse all of it
        _check_label_size(p)
    head = _head(p, 65536)
    data_path, data_head, is_pds3, moved = p, head, False, None
    if p.suffix.lower() in (".xml", ".lblx") and is_pds4_label(p):
        check_pds4(p)
    elif b"PDS_VERSION_ID" in head[:1024] or p.suffix.lower() == ".lbl":  # after an SFDU header too, as GDAL
        is_pds3 = True
        data_path, moved = _pds3_checks(p, head)
        data_head = head if data_path == p else _head(data_path, 65536)
    elif b"isiscube" in head[:4096].lower():  # an ISIS3 label (a .cub) may name a detached ^Core too
        for obj, key, value in scan_label(head).nested_pointers:
            if key == "^CORE":
                _check_core(p, value, obj)
    size = data_path.stat().st_size
    # a VICAR label: the file itself, or embedded after the PDS3 label (MER, MSL, Mars 2020 EDRs)
    starts = [0] if data_head.startswith(b"LBLSIZE=") else []
    if is_pds3 and data_path == p:
        m = re.search(rb"LBLSIZE=\s*\d+", data_head)
        if m:
            starts.append(m.start())
    for start in starts:
        ext = _vicar_extent(data_head, start)
        if ext is not None:
            _check_vicar(p, data_path, data_head, ext, size)
    return moved


def product_files(p: Path) -> list[Path]:
    """The other files ``p`` is read with: its detached label, or the data files its label names (no GDAL).

    For the resume stamps of a scan, so a product whose data file changed is scanned again. Cheap: a file
    with an attached label (or a cube, VICAR file, JPEG 2000) costs one 64-byte read. Best effort: a product
    whose files cannot be worked out gives [] (reading it then fails with the reason).
    """
    ext = p.suffix.lower()
    if ext not in LABEL_SUFFIXES + DATA_SUFFIXES:
        return []
    try:
        target = open_target(p)  # the detached label of a bare data file, else p
        files = [] if target == p else [target]
        if target.suffix.lower() in (".xml", ".lblx"):
            files += pds4_files(target) if is_pds4_label(target) else []
        elif target.suffix.lower() == ".lbl":
            lab = scan_label(_head(target, 65536))
            packed = lab.compressed_file()
            if packed is not None:
                files.append(_in_label_dir(target, packed, "COMPRESSED_FILE FILE_NAME"))
            for key in ("^IMAGE", "^QUBE", "^SPECTRAL_QUBE", "^CORE"):
                value = lab.pointer(key)
                ptr = parse_pointer(value, 0) if value is not None else None
                if ptr is not None and ptr[0] is not None:
                    files.append(_in_label_dir(target, ptr[0], f"{key} pointer"))
    except (ImageReadError, OSError):
        return []
    return [f for f in dict.fromkeys(files) if f != p and f.is_file()]

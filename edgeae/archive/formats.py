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
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from edgeae._headers import ImageReadError

__all__ = [
    "ARCHIVE_SUFFIXES",
    "DATA_SUFFIXES",
    "LABEL_SUFFIXES",
    "check_complete",
    "is_archive_path",
    "label_for",
    "open_target",
    "sniff_tiff_needs_gdal",
]

LABEL_SUFFIXES = (".lbl", ".xml", ".lblx")
DATA_SUFFIXES = (".img", ".dat", ".fits", ".fit", ".qub")
# files that only GDAL reads (the scan walks these; .xml only when it is a PDS4 label)
ARCHIVE_SUFFIXES = (".img", ".lbl", ".cub", ".xml", ".lblx", ".vic", ".jp2", ".j2k", ".jpx", ".qub")


def _head(p: Path, n: int = 4096) -> bytes:
    with open(p, "rb") as fh:
        return fh.read(n)


def is_pds4_label(p: Path) -> bool:
    try:
        head = _head(p)
    except OSError:
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
    if ext == ".xml":
        return is_pds4_label(p)
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


def _vicar_extent(data: bytes, start: int) -> tuple[int, int, int] | None:
    """(bytes the VICAR label at ``start`` promises, NL, RECSIZE), or None when it is not a VICAR label."""
    text = data[start : start + 65536].decode("latin-1")
    if not text.startswith("LBLSIZE="):
        return None

    def num(key: str, default: int = 0) -> int:
        m = re.search(rf"(?:^|\s){key}=\s*(\d+)", text)
        return int(m.group(1)) if m else default

    lblsize, recsize, nl, nb, nlb = num("LBLSIZE"), num("RECSIZE"), num("NL"), num("NB", 1), num("NLB")
    if not (lblsize and recsize and nl):
        return None
    return start + lblsize + recsize * (nlb + nl * max(nb, 1)), nl, recsize


_PDS3_KV = re.compile(r"^\s*(\^?[A-Z0-9_:]+)\s*=\s*(.+?)\s*$", re.M)


def _pds3_pointer(label_text: str, label_path: Path) -> tuple[Path, int] | None:
    """(data file, byte offset) of the ``^IMAGE`` pointer of a PDS3 label; quotes of either kind accepted."""
    m = re.search(r"^\s*\^IMAGE\s*=\s*(.+?)\s*$", label_text, re.M)
    if not m:
        return None
    val = m.group(1).strip()
    rec = re.search(r"RECORD_BYTES\s*=\s*(\d+)", label_text)
    record_bytes = int(rec.group(1)) if rec else 0
    name, where = None, None
    t = re.fullmatch(r"\(\s*[\"']?([^\"',]+)[\"']?\s*,\s*(\d+)\s*(<BYTES>)?\s*\)", val)
    if t:
        name, where, in_bytes = t.group(1), int(t.group(2)), bool(t.group(3))
    else:
        q = re.fullmatch(r"[\"']([^\"']+)[\"']", val)
        if q:
            name, where, in_bytes = q.group(1), 1, True
        else:
            n = re.fullmatch(r"(\d+)\s*(<BYTES>)?", val)
            if not n:
                return None
            where, in_bytes = int(n.group(1)), bool(n.group(2))
    if name is None:
        data = label_path
    else:
        data = label_path.with_name(name)
        if not data.exists():  # case differs between label and file system (FOO.IMG vs foo.img)
            lower = {c.name.lower(): c for c in label_path.parent.iterdir()}
            data = lower.get(name.lower(), data)
    offset = where - 1 if in_bytes else (where - 1) * record_bytes
    return data, offset


def _pds3_image_bytes(label_text: str) -> tuple[int, int] | None:
    """(bytes of the IMAGE object, LINES) from its LINES, LINE_SAMPLES, SAMPLE_BITS, BANDS, prefix/suffix."""
    # keywords in any case (Kaguya writes Object = IMAGE ... End_Object), END_OBJECT with or without the name
    m = re.search(r"^\s*OBJECT\s*=\s*IMAGE\s*$(.*?)^\s*END_OBJECT(?:\s*=\s*IMAGE)?\s*$", label_text, re.M | re.S | re.I)
    if not m:
        return None
    body = m.group(1)

    def num(key: str, default: int = 0) -> int:
        k = re.search(rf"^\s*{key}\s*=\s*(\d+)", body, re.M | re.I)
        return int(k.group(1)) if k else default

    lines, samples, bits = num("LINES"), num("LINE_SAMPLES"), num("SAMPLE_BITS", 8)
    bands = num("BANDS", 1)
    prefix, suffix = num("LINE_PREFIX_BYTES"), num("LINE_SUFFIX_BYTES")
    if not lines or not samples:
        return None
    return lines * bands * (prefix + samples * bits // 8 + suffix), lines


def check_complete(p: Path) -> None:
    """Refuse a truncated PDS3 / VICAR product with :class:`ImageReadError` naming the file and the bytes."""
    head = _head(p, 65536)
    data_path, data_head, label_text = p, head, ""
    if head.lstrip().startswith(b"PDS_VERSION_ID") or p.suffix.lower() == ".lbl":
        label_text = head.decode("latin-1").split("\nEND\r", 1)[0].split("\nEND\n", 1)[0]
        ptr = _pds3_pointer(label_text, p)
        if ptr is not None:
            data_path, offset = ptr
            if not data_path.exists():
                raise ImageReadError(f"{p}: the data file {data_path.name} named by its ^IMAGE pointer does not exist")
            size = data_path.stat().st_size
            need = _pds3_image_bytes(label_text)
            if need is not None and offset + need[0] > size:
                raise ImageReadError(
                    f"{p}: truncated: its label promises {need[1]} lines ({offset + need[0]} bytes up to the end of "
                    f"the image in {data_path.name}), the file holds {size} bytes"
                )
            data_head = head if data_path == p else _head(data_path, 65536)
    size = data_path.stat().st_size
    # a VICAR label: the file itself, or embedded after the PDS3 label (MER, MSL, Mars 2020 EDRs)
    starts = [0] if data_head.startswith(b"LBLSIZE=") else []
    if label_text and data_path == p:
        m = re.search(rb"LBLSIZE=\s*\d+", data_head)
        if m:
            starts.append(m.start())
    for start in starts:
        ext = _vicar_extent(data_head, start)
        if ext is not None and ext[0] > size:
            full = max(0, (size - (ext[0] - ext[1] * ext[2])) // ext[2])
            where = f"{p}: the data file {data_path.name}" if data_path != p else str(p)
            raise ImageReadError(
                f"{where} is truncated: its VICAR label promises {ext[1]} lines of {ext[2]}-byte records "
                f"({ext[0]} bytes), the file holds {size} bytes (about {full} complete lines)"
            )

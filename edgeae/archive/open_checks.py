"""The checks :class:`.reader.ProductReader` makes at open, before any pixel is read: every file GDAL reads stays in
the label's folder and is a regular file, a PDS3 SAMPLE_TYPE is one GDAL reads right, a raw product's declared
samples fit in its data file, and a JPEG 2000 or GeoTIFF file is not cut short."""

from __future__ import annotations

import math
import os
import stat
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeae._headers import ImageReadError
from edgeae.archive.files import LINK_REMEDY, _head, follow_links
from edgeae.archive.gdal_env import dataset_files
from edgeae.archive.label import _gdal_json, pds4_array
from edgeae.archive.pds3 import scan_label
from edgeae.printable import printable

if TYPE_CHECKING:
    from edgeae.archive.reader import ProductReader

__all__ = [
    "PDS3_SAMPLE_TYPES",
    "RAW_DRIVERS",
    "check_declared_size",
    "check_files",
    "check_jp2",
    "check_sample_type",
    "check_tiff",
    "data_extent",
]

RAW_DRIVERS = ("PDS", "PDS4", "ISIS3", "VICAR")  # uncompressed layouts: reading the last line is cheap
# data files that hold compressed samples although a raw driver opened them (ISIS3 GeoTIFF cores, PDS3 JP2)
_COMPRESSED_SUFFIXES = (".tif", ".tiff", ".jp2", ".j2k", ".jpx", ".jpg", ".jpeg", ".png", ".gz", ".zip")
_SIDECAR_SUFFIXES = (".aux.xml", ".ovr", ".msk")  # GDAL's own files beside a product (QGIS writes .aux.xml)
# PDS3 SAMPLE_TYPEs (PDS3 Standards, Appendix C) GDAL reads as IEEE floats or two's complement integers; spaces as _
PDS3_SAMPLE_TYPES = frozenset(
    f"{order}{kind}"
    for order in ("", "MSB_", "LSB_", "SUN_", "MAC_", "PC_", "VAX_", "IEEE_")
    for kind in ("INTEGER", "UNSIGNED_INTEGER", "SIGNED_INTEGER", "REAL", "BIT_STRING")
) | {"FLOAT"}
_VAX_FLOATS = ("VAX_REAL", "VAX_DOUBLE", "VAXG_REAL", "VAX_COMPLEX", "VAXG_COMPLEX")  # not IEEE: GDAL misreads them


def check_files(r: ProductReader, target: Path) -> None:
    """Every file GDAL reads for the product is a regular file whose real path (links resolved) lies in the
    label's folder: the folder it was named in, or the label's own when the label itself is a link. With
    ``EDGEAE_ARCHIVE_FOLLOW_LINKS=1`` a link in that folder to a regular file elsewhere is read too (a path that
    leaves the folder, ``../x``, never is)."""
    homes = {os.path.realpath(target.parent), os.path.dirname(os.path.realpath(target))}
    for f in dataset_files(r.ds):
        real = os.path.realpath(f)
        said = printable(f)  # a name that is not UTF-8: \xe9, not \udce9
        try:
            mode = os.stat(real).st_mode
        except OSError as exc:
            raise ImageReadError(f"{r.path}: its label points to {said}, which cannot be read ({exc})") from None
        kind = None
        if not stat.S_ISREG(mode):
            kinds = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a device", stat.S_IFBLK: "a device",
                     stat.S_IFDIR: "a folder", stat.S_IFSOCK: "a socket"}  # fmt: skip
            kind = kinds.get(stat.S_IFMT(mode), "not a file")
        if os.path.dirname(real) not in homes:
            linked = real != os.path.abspath(f)
            beside = os.path.dirname(os.path.abspath(f)) in {os.path.abspath(target.parent), *homes}
            if kind is None and linked and beside and follow_links():
                continue
            link = f" (a link to {printable(real)})" if linked else ""
            why = ""
            if kind is not None:
                why = f" (it is {kind}, not a regular file: never read)"
            elif linked and beside:
                why = f" ({LINK_REMEDY})"
            raise ImageReadError(
                f"{r.path}: its label points to {said}{link}, outside the label's folder: a pointer must stay in "
                f"the label's folder{why}"
            )
        if kind is not None:
            raise ImageReadError(f"{r.path}: its label points to {said}, which is {kind}, not a regular file")


def check_sample_type(r: ProductReader, target: Path) -> None:
    """A raw PDS3 image's SAMPLE_TYPE must be one GDAL reads right: an unknown one (GDAL guesses MSB) or a
    VAX float (not IEEE; GDAL reads it as one) is refused, naming the value."""
    if r.driver != "PDS" or r._opts or r.ds.tags(ns="IMAGE_STRUCTURE").get("COMPRESSION"):
        return
    if any(Path(f).suffix.lower() in _COMPRESSED_SUFFIXES for f in dataset_files(r.ds)):
        return  # GDAL reads a COMPRESSED_FILE (JP2): the IMAGE object describes the uncompressed one
    kw = scan_label(_head(target, 65536)).image_object()
    value = (kw or {}).get("SAMPLE_TYPE")
    if value is None:
        return
    st = "_".join(value.strip().strip("\"'").upper().split())
    if st in _VAX_FLOATS:
        raise ImageReadError(
            f"{r.path}: SAMPLE_TYPE = {st}: VAX floating point is not IEEE and is not read (GDAL would read "
            "the bytes as IEEE floats); convert the product first (e.g. ISIS pds2isis)"
        )
    if st not in PDS3_SAMPLE_TYPES:
        raise ImageReadError(
            f"{r.path}: SAMPLE_TYPE = {value.strip()} is not a PDS3 sample type (e.g. MSB_INTEGER, "
            "LSB_UNSIGNED_INTEGER, PC_REAL): its byte order and sign are unknown"
        )


def data_extent(r: ProductReader, target: Path, root: Any) -> tuple[Path, int]:
    """(the file that holds the samples, the byte where they start) as the label says; the start is 0 where
    :func:`edgeae.archive.formats.check_complete` checks it (PDS3, VICAR)."""
    real = os.path.realpath(target)
    others = [
        Path(f) for f in dataset_files(r.ds)
        if os.path.realpath(f) != real and not f.lower().endswith(_SIDECAR_SUFFIXES)
    ]  # fmt: skip
    name, offset = None, 0
    if r.driver == "PDS4" and root is not None:
        name, offset = pds4_array(root) or (None, 0)
    elif r.driver == "ISIS3":
        found = _gdal_json(r.ds)
        cube = found[1].get("IsisCube") if found else None
        core = cube.get("Core") if isinstance(cube, dict) else None
        core = core if isinstance(core, dict) else {}
        start = core.get("StartByte", 1)
        offset = max(int(start) - 1, 0) if isinstance(start, (int, float)) and math.isfinite(start) else 0
        name = core.get("^Core") if isinstance(core.get("^Core"), str) else None
        if not name:  # an attached label: the cube holds its samples
            return target, offset
    if name:
        match = [f for f in others if f.name.lower() == name.lower()]
        if match:
            return match[0], offset
        if "/" not in name and "\\" not in name and name not in (".", ".."):
            return target.with_name(name), offset
    # the largest of the other files (a PDS3 ^IMAGE file), else the labelled file itself
    return max(others, key=lambda f: f.stat().st_size) if others else target, offset


def check_declared_size(r: ProductReader, target: Path, root: Any = None) -> None:
    """A raw product's declared samples must fit in its data file from where they start (the label's
    offset): refused before any line is allocated. GDAL's PDS4 reader fills a short file with zeros."""
    if r.driver not in RAW_DRIVERS or r.ds.tags(ns="IMAGE_STRUCTURE").get("COMPRESSION"):
        return
    files = [Path(f) for f in dataset_files(r.ds)]
    if not files or any(f.suffix.lower() in _COMPRESSED_SUFFIXES for f in files):
        return
    data, offset = data_extent(r, target, root)
    nbytes = r.height * r.width * r.count * r.raw_dtype.itemsize
    try:
        have = data.stat().st_size
    except OSError as exc:
        raise ImageReadError(f"{r.path}: its data file {data.name} cannot be read ({exc})") from None
    if offset + nbytes > have:
        at = f" starting at byte {offset + 1}" if offset else ""
        where = "the file" if data == target else f"its data file {data.name}"
        raise ImageReadError(
            f"{r.path}: truncated or corrupt: its label declares {r.height} × {r.width} × {r.count} "
            f"{r.raw_dtype} samples ({nbytes} bytes){at}, more than {where} holds ({have} bytes)"
        )


def check_jp2(path: Path, jp2: Path, max_parts: int = 1 << 20) -> None:
    """Refuse a JPEG 2000 file cut short (GDAL says only "opj_decode() failed" at the first read): the JP2 boxes,
    the codestream's main-header segments and its tile-parts (``Psot``) must all end within the file."""
    size = jp2.stat().st_size

    def cut(what: str, end: int) -> ImageReadError:
        where = "" if jp2.name == path.name else f" (in {jp2.name})"
        return ImageReadError(
            f"{path}: truncated: its JPEG 2000 {what}{where} ends at byte {end}, the file holds {size} bytes"
        )

    with open(jp2, "rb") as fh:

        def at(pos: int, n: int) -> bytes:
            fh.seek(pos)
            return fh.read(n)

        pos, end = 0, size
        if at(0, 12) == b"\x00\x00\x00\x0cjP  \r\n\x87\n":  # a JP2 file: boxes up to the codestream box
            while True:
                head = at(pos, 16)
                if len(head) < 8:
                    return  # no codestream box: GDAL says what is wrong
                length, kind = struct.unpack(">I4s", head[:8])
                hl = 16 if length == 1 else 8
                length = struct.unpack(">Q", head[8:16])[0] if length == 1 else length or size - pos
                if pos + length > size:
                    raise cut(f"{kind.decode('latin-1')!r} box", pos + length)
                if kind == b"jp2c":
                    pos, end = pos + hl, pos + length
                    break
                if length < hl:
                    return
                pos += length
        if at(pos, 2) != b"\xff\x4f":  # SOC: not a codestream this check knows
            return
        pos += 2
        while True:  # main header: marker segments, each with its length, up to the first tile-part (SOT)
            seg = at(pos, 4)
            if len(seg) < 4:
                raise cut("codestream main header", pos + 4)
            marker, length = struct.unpack(">HH", seg)
            if marker == 0xFF90:
                break
            if marker >> 8 != 0xFF or length < 2:
                return
            pos += 2 + length
        for part in range(1, max_parts + 1):  # tile-parts: SOT, Lsot, Isot, Psot (bytes from the SOT marker)
            sot = at(pos, 10)
            if len(sot) < 2 or sot[:2] != b"\xff\x90":  # EOC (or none after a whole tile-part): complete
                return
            if len(sot) < 10:
                raise cut(f"tile-part {part} header", pos + 10)
            psot = struct.unpack(">I", sot[6:10])[0]
            if psot == 0:  # the last tile-part, running to the end of the codestream
                return
            if pos + psot > end:
                raise cut(f"codestream tile-part {part}", pos + psot)
            pos += psot


def check_tiff(r: ProductReader) -> None:
    """Refuse a GeoTIFF cut short: every strip or tile of its first image (the one GDAL reads; sparse ones, of 0
    bytes, aside) must end inside the file. GDAL opens such a file and fails only at the first read of a missing
    block (``TIFFReadEncodedStrip() failed``), after a scan has listed the product as read. The offsets come from
    the TIFF's directory (tifffile, no pixel decoded). Skipped without tifffile (it comes with the ``[ground]`` and
    ``[scan]`` extras, not ``[archive]``): GDAL's read error then names the missing block."""
    if r.driver != "GTiff":
        return
    try:
        import tifffile
    except ImportError:
        return
    import numpy as np

    tif = Path(dataset_files(r.ds)[0])
    size = tif.stat().st_size
    try:
        with tifffile.TiffFile(tif) as t:
            page = t.pages.first
            offsets, counts, tiled = page.dataoffsets, page.databytecounts, page.is_tiled
    except Exception:  # a directory tifffile cannot parse: GDAL opened it, and its read errors say what is wrong
        return
    ends = np.asarray(offsets, np.int64) + np.asarray(counts, np.int64)
    short = np.flatnonzero((ends > size) & (np.asarray(counts, np.int64) > 0))
    if short.size:
        i = int(short[0])
        raise ImageReadError(
            f"{r.path}: truncated: its TIFF {'tile' if tiled else 'strip'} {i + 1} of {len(ends)} ends at byte "
            f"{int(ends[i])}, the file holds {size} bytes ({short.size} of its {'tiles' if tiled else 'strips'} "
            "lie past its end)"
        )

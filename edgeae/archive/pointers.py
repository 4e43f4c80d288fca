"""Where a label's pointers may lead: a PDS3 pointer parsed (a malformed or negative one refused), a named file
kept to the label's own folder and to regular files (:func:`.formats.check_complete`, :func:`.formats.pds4_files`),
and never into the label another file carries at its start (:func:`not_in_label`)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from edgeae._headers import ImageReadError
from edgeae.archive.files import LINK_REMEDY, _head, follow_links, not_regular
from edgeae.archive.pds3 import parse_pointer, scan_label
from edgeae.printable import printable


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
            f"{label}: its {what} names {name!r}, not a file beside the label: a pointer must stay in the "
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
                    f"{label}: its {what} names {name!r}, a link to {real}, outside the label's folder: a pointer "
                    f"must stay in the label's folder ({why})"
                )
            if kind is not None:
                raise ImageReadError(
                    f"{label}: its {what} names {name!r}, which is {kind}, not a regular file: not read"
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
            f"{p}: its {where} = {value.strip()!r} is {why}: where the image starts is unknown"
        )  # fmt: skip
    if ptr[1] < 0:  # a record pointer times a negative RECORD_BYTES
        raise ImageReadError(
            f"{p}: its {where} = {value.strip()!r} with RECORD_BYTES = {record_bytes} is a negative position: "
            "where the image starts is unknown"
        )
    return ptr


def not_in_label(label: Path, data: Path, offset: int) -> None:
    """Refuse a detached label's ``^IMAGE`` that lands inside the label its data file carries at its start (a PDS3
    label up to its END line, a VICAR label up to LBLSIZE, or a VICAR label after the PDS3 one): that label's text
    would be read as rows 0..n (a stale pointer, or a pointer naming another product's file). Names both files."""
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
            f"{label}: its ^IMAGE pointer names {name} at byte {offset + 1}, inside {name}'s own {kind} label (which "
            f"ends at byte {end}): its text would be read as pixels (a stale pointer, or the file of another product)"
        )

"""The VICAR checks: the extent a VICAR label declares (LBLSIZE, RECSIZE, NL × NB records), refused when the label
is larger than its LBLSIZE says or the file holds fewer bytes than it promises (:func:`.formats.check_complete`), and
a layout GDAL's VICAR driver misreads: binary prefixes (NBB) on a line-interleaved image of several bands or on a
pixel-interleaved one, where GDAL skips one prefix a line instead of one a record (each band's line; each pixel's
bands), so every line after the first reads shifted (GDAL 3.10; band-sequential prefixes are read right, as on the
Cassini samples)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

from edgeae._headers import ImageReadError
from edgeae.archive.files import _read_at


class _Vicar(NamedTuple):
    """The extent a VICAR label at byte ``start`` declares (its keywords as written)."""

    start: int
    lblsize: int
    recsize: int
    nl: int
    nb: int
    nlb: int
    nbb: int = 0
    org: str = "BSQ"
    ns: int = 0

    @property
    def records(self) -> int:
        """Image records (N2 × N3): a line of one band each (BSQ, BIL), or the bands of one pixel each (BIP)."""
        return self.nl * (max(self.ns, 1) if self.org == "BIP" else self.nb)

    @property
    def end(self) -> int:
        """Byte offset just after the last image record the label promises."""
        return self.start + self.lblsize + self.recsize * (self.nlb + self.records)


def _vicar_extent(data: bytes, start: int) -> _Vicar | None:
    """The extent the VICAR label at ``start`` declares, or None when it is not a VICAR label."""
    text = data[start : start + 65536].decode("latin-1")
    if not text.startswith("LBLSIZE="):
        return None

    def num(key: str, default: int = 0) -> int:
        m = re.search(rf"(?:^|\s){key}=\s*(\d+)", text)
        return int(m.group(1)) if m else default

    lblsize, recsize, nl, nb, nlb = num("LBLSIZE"), num("RECSIZE"), num("NL"), num("NB", 1), num("NLB")
    if not (lblsize and recsize and nl):
        return None
    org = re.search(r"(?:^|\s)ORG=\s*'?\s*([A-Za-z]+)", text)
    org_name = org.group(1).upper() if org else "BSQ"
    return _Vicar(start, lblsize, recsize, nl, max(nb, 1), nlb, num("NBB"), org_name, num("NS"))


# VICAR label items (KEY=VALUE, separated by two or more spaces): a value is a quoted string ('' inside it is a
# quote), a parenthesised list or a number
_VALUE = rb"(?:'(?:[\x20-\x26\x28-\x7e]|'')*'|\([\x20-\x27\x2a-\x7e]*\)|[+-]?(?:\d+\.?\d*|\.\d+)(?:[EeDd][+-]?\d+)?)"
_ITEM = rb"(?<![A-Za-z0-9_])[A-Z][A-Z0-9_]{0,31}=[ ]*" + _VALUE
# keywords of the system label and of the history and property labels (VICAR File Format, sections 2-3)
_KNOWN = (
    b"LBLSIZE|FORMAT|TYPE|BUFSIZ|DIM|EOL|RECSIZE|ORG|NL|NS|NB|N1|N2|N3|N4|NBB|NLB|HOST|INTFMT|REALFMT|BHOST|"
    b"BINTFMT|BREALFMT|BLTYPE|COMPRESS|EOCI1|EOCI2|TASK|USER|DAT_TIM|PROPERTY"
)
# label text right after LBLSIZE bytes, a printable run reaching real label syntax within its first 80 bytes: two
# complete items separated by two spaces, or one complete item of a known keyword; pixel bytes that happen to
# read KEY=digit ("FB=8" from the dark gradient 70, 66, 61, 56) are neither. Only looked for when the label's
# text runs up to LBLSIZE (no NUL padding)
_VICAR_MORE = re.compile(
    rb"[\x20-\x7e]{0,80}?(?:" + _ITEM + rb"[ ]{2,}" + _ITEM
    + rb"|(?<![A-Za-z0-9_])(?:" + _KNOWN + rb")=[ ]*" + _VALUE + rb"(?![^ \0]))"
)  # fmt: skip


def _check_vicar(p: Path, data_path: Path, head: bytes, v: _Vicar, size: int) -> None:
    """Refuse a VICAR label whose LBLSIZE is smaller than the label (its text would be read as image rows) or
    which promises more records than the file holds."""
    where = f"{p}: the data file {data_path.name}" if data_path != p else str(p)
    label_end = v.start + v.lblsize
    tail = (
        head[label_end - 1 : label_end + 256]
        if label_end + 256 <= len(head)
        else _read_at(data_path, label_end - 1, 257)
    )
    # a label padded with NULs up to LBLSIZE is whole; one whose text runs up to it may go on past it
    more = _VICAR_MORE.match(tail, 1) if tail[:1] not in (b"", b"\0") else None
    if more:
        shown = re.sub(rb"[^ -~].*", b"", tail[1:41], flags=re.S).decode()  # the text after LBLSIZE, as written
        raise ImageReadError(
            f"{where}: its VICAR label says LBLSIZE={v.lblsize}, but the label's text goes on after byte {label_end} "
            f"({shown!r}…): the label is larger than it says, so its text would be read as image "
            "rows"
        )
    if v.nbb > 0 and ((v.org == "BIL" and v.nb > 1) or v.org == "BIP"):
        record = "band's line" if v.org == "BIL" else "pixel's bands"
        raise ImageReadError(
            f"{where}: its VICAR label says ORG='{v.org}', NB={v.nb}, with NBB={v.nbb} bytes of binary prefix before "
            f"each record (each {record}); GDAL's VICAR driver skips one prefix a line, so its samples would be read "
            "shifted: not read"
        )
    if v.end > size:
        s = "s" if v.nl != 1 else ""
        lines = f"{v.nl} line{s}" + (f" × {v.nb} bands" if v.nb > 1 else "")
        if v.org == "BIP":
            lines = f"{v.nl} line{s} × {v.ns} pixels"
        full = max(0, (size - (v.start + v.lblsize + v.nlb * v.recsize)) // v.recsize)
        unit = "lines" if v.nb == 1 and v.org != "BIP" else "records"
        raise ImageReadError(
            f"{where} is truncated: its VICAR label promises {lines} of {v.recsize}-byte records ({v.end} "
            f"bytes), the file holds {size} bytes (about {full} complete {unit})"
        )

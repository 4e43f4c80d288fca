"""Session 37 fixer f2: the archive scan's left items (one escaper for names that are not UTF-8; glob sets read as
``glob.glob`` reads them; report.md's paths with ``_`` and ``~``; scan.json's model as a user can give it again;
georeferencing of real map-projected products under any name)."""

from __future__ import annotations

import os
import random

import edgeae.scan.archive as archive
from edgeae.printable import printable


def test_scan_writes_names_with_the_one_escaper_and_the_same_text_as_before() -> None:
    # edgeae.scan.archive.as_text was a second escaper (UTF-8 with backslashreplace of the name's bytes): gone, scan
    # uses edgeae.printable; for every name a file system can give, the text is the one as_text wrote
    assert not hasattr(archive, "as_text")
    rng = random.Random(0)
    names = [b"x\xfe.png", b"caf\xc3\xa9.png", b"\xe9\x80a.tif", b"d\xff/\xc3(.cub", b"plain_name.png", b"\xed\xa0\x80"]
    names += [bytes(rng.randrange(1, 256) for _ in range(rng.randrange(1, 12))).replace(b"/", b"") for _ in range(2000)]
    for raw in names:
        name = os.fsdecode(raw)
        assert printable(name) == raw.decode("utf-8", "backslashreplace"), raw

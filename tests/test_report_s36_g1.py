"""edgeae.report (session 36, fixer g1): names that are not UTF-8, an atomic index.html."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest

from edgeae.report import Figure, Section, printable, write_report

BAD = os.fsdecode(b"t\xff\xfe.png")  # a Linux file name that is not UTF-8, as Python hands it over: 't\udcff\udcfe.png'


def test_printable_shows_bad_bytes_as_backslash_escapes() -> None:
    assert printable(BAD) == "t\\xff\\xfe.png"
    assert printable("moon ∞ <b>") == "moon ∞ <b>"  # valid text is left alone
    assert printable("x\ud800y") == "x\\ud800y"  # a lone surrogate that is no escaped byte either
    assert printable(printable(BAD)) == printable(BAD)


def test_report_with_a_name_that_is_not_utf8_is_written_with_the_bytes_escaped(tmp_path: Path) -> None:
    sec = Section(
        BAD,
        paragraphs=[f"frame {BAD}"],
        figures=[Figure(f"caption {BAD}", np.zeros((4, 4), np.float32), "original")],
        tables=[[{"file": BAD, "PSNR": 30.0}]],
        html_extra=f"<p>{BAD}</p>",
    )
    path = write_report(tmp_path / f"out{BAD}", f"title {BAD}", [sec], intro=f"intro {BAD}")
    text = path.read_text(encoding="utf-8")  # strict: every byte on the page is UTF-8
    # <title> and <h1>, the intro, the section title, the paragraph, the caption and its alt text, the table, the HTML
    assert text.count("t\\xff\\xfe.png") == 9
    assert "\udcff" not in text


def test_a_failed_page_write_leaves_the_earlier_page_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_report(tmp_path, "earlier", [Section("S", paragraphs=["old"])])
    old = (tmp_path / "index.html").read_bytes()
    real = Path.write_text

    def full_disk(self: Path, data: str, *args: object, **kwargs: object) -> int:
        real(self, data[:100], encoding="utf-8")  # part of the page, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_text", full_disk)
    with pytest.raises(OSError, match="No space left"):
        write_report(tmp_path, "new", [Section("S", paragraphs=["new " * 100])])
    monkeypatch.undo()
    assert (tmp_path / "index.html").read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img", "index.html"]  # no temporary file left

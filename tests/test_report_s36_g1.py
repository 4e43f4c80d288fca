"""edgeae.report (session 36, fixer g1): names that are not UTF-8, an atomic index.html, one format per column."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

import numpy as np
import pytest

from edgeae.report import Figure, Section, printable, table_html, write_report

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


def _cells(html: str) -> list[str]:
    return re.findall(r"<td>([^<]*)</td>", html)


def test_a_number_column_has_one_format() -> None:
    # the demo's error variance: 0.0011 and 6.933e-04 in one column before (review s36 a1 #8.6)
    rows = [{"m": "a", "v": 0.0011, "t": 2.1}, {"m": "b", "v": 0.0006933, "t": 0.0004}, {"m": "c", "v": 0.0, "t": 1.0}]
    assert _cells(table_html(rows)) == ["0.00110", "2.10000", "0.00069", "0.00040", "0.00000", "1.00000"]
    # a column whose values are all at or above 0.001 keeps four decimals, as before
    assert _cells(table_html([{"v": 31.25}, {"v": 0.0035}])) == ["31.2500", "0.0035"]
    # values too small or too large for a readable fixed column: the whole column in scientific notation
    assert _cells(table_html([{"v": 2e-8}, {"v": 0.5}])) == ["2.000e-08", "5.000e-01"]
    assert _cells(table_html([{"v": 123456.0}, {"v": 0.5}])) == ["1.235e+05", "5.000e-01"]
    # ∞ (an exact rebuild), NaN, ints and text are not counted and shown as before
    assert _cells(table_html([{"v": float("inf")}, {"v": float("nan")}, {"v": 0.0002}, {"v": 3}])) == [
        "∞",
        "–",
        "0.00020",
        "3",
    ]

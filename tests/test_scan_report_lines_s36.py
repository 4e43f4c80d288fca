"""report.md keeps a file name with a line break on one line (review s36 r17 #1: ``bad\\n<script>...`` put a raw HTML
block into the rendered report, ``x\\n# h`` a heading)."""

from __future__ import annotations

from edgeae.scan.report_text import _code, _text


def test_a_line_break_in_a_name_stays_in_its_code_span() -> None:
    span = _code("bad\n<script>alert(1).png", cell=True)
    assert "\n" not in span and span == "`bad\\x0a<script>alert(1).png`"
    assert _code("x\r\n# h\x7f\x00.png") == "`x\\x0d\\x0a# h\\x7f\\x00.png`"


def test_a_line_break_in_text_is_written_not_kept() -> None:
    assert _text("x\n# h.png") == "x\\\\x0a# h.png"  # the backslash escaped: renders as x\x0a# h.png
    assert "\n" not in _text("a\n<script>") and "\\<script>" in _text("a\n<script>")
    assert _text("plain name_1.png") == "plain name\\_1.png"  # escaped since session 37 (renders as written)

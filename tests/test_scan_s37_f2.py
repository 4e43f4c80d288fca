"""Session 37 fixer f2: the archive scan's left items (one escaper for names that are not UTF-8; glob sets read as
``glob.glob`` reads them; report.md's paths with ``_`` and ``~``; scan.json's model as a user can give it again;
georeferencing of real map-projected products under any name)."""

from __future__ import annotations

import os
import random

import pytest

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


def _minimal_report(**kw: object) -> dict:
    r = {
        "out": "runs/_raw_/scan~~old~~", "archive": ["arc/_a_"], "model": "m", "artifact": "m.pt", "artifact_hash": "0" * 64,
        "engine": "local", "images": 2, "done": 1, "failed": 1, "skipped": 1, "pending": 0, "top": [],
        "failures": [{"file": "x_1_.png", "error": "/data/_tmp_/x_1_.png: cannot read ~~it~~ (~one~)"}],
        "skipped_products": [{"file": "y.img", "reason": "incidence ~80 > 60 in /a/_b_/y.img"}],
        "geo_layers": [{"layer": "anomalies_mars", "features": 3, "path": "maps/_new_/l~~a~~.gpkg"}],
        "geo_note": "no map layer written to maps/_x_.gpkg",
    }
    r.update(kw)
    return r


def test_report_md_paths_with_underscores_and_tildes_render_as_written() -> None:
    # /data/_tmp_/x rendered "tmp" in italics and ~~it~~ struck through (report.md is read in GitHub/GitLab viewers)
    markdown_it = pytest.importorskip("markdown_it", reason="markdown-it-py renders report.md here")
    from edgeae.scan.report_text import _text, report_markdown

    assert _text("runs/_raw_/a~b") == "runs/\\_raw\\_/a\\~b"
    md = report_markdown(_minimal_report())
    html = markdown_it.MarkdownIt("commonmark").enable(["strikethrough", "table"]).render(md)
    assert "<em>" not in html and "<s>" not in html and "<del>" not in html, html
    for shown in ("runs/_raw_/scan~~old~~", "/data/_tmp_/x_1_.png: cannot read ~~it~~ (~one~)", "/a/_b_/y.img",
                  "maps/_new_/l~~a~~.gpkg", "maps/_x_.gpkg"):  # fmt: skip
        assert shown in html, shown

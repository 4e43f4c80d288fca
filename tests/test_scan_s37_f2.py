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
        "out": "runs/_raw_/scan~~old~~", "archive": ["arc/_a_"], "model": "m", "artifact": "m.pt",
        "artifact_hash": "0" * 64, "engine": "local", "images": 2, "done": 1, "failed": 1, "skipped": 1, "pending": 0,
        "top": [],
        "failures": [{"file": "x_1_.png", "error": "/data/_tmp_/x_1_.png: cannot read ~~it~~ (~one~)"}],
        "skipped_products": [{"file": "y.img", "reason": "incidence ~80 > 60 in /a/_b_/y.img"}],
        "geo_layers": [{"layer": "anomalies_mars", "features": 3, "path": "maps/_new_/l~~a~~.gpkg"}],
        "geo_note": "no map layer written to maps/_x_.gpkg",
    }  # fmt: skip
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


# -- globs: the guarded walk lists what glob.glob lists ----------------------------------------------------------------
_GLOB_TREE = (
    "a.png", "^b.png", "[c.png", "]d.png", "!e.png", "-f.png", "x/y.png", "xay.png", "x-y.png", "sub/a.png",
    "sub/^b.png", "sub/[c.png", "sub/deep/]d.png", ".hid/a.png", "sub/.h.png", "z.png/inner.png", "[ab/q.png",
)  # fmt: skip
# set forms glob reads its own way: ^ first is a literal (not negation), [[] a set holding [, ] first is in the set,
# a reversed range matches nothing, an unclosed [ is a literal; and a set never matches the / between two names
_GLOB_PATTERNS = (
    "**/[^a]*.png", "**/[[]*.png", "**/[]]*.png", "**/[!]a]*.png", "**/[!^]*.png", "**/[a-c]*.png", "**/[c-a]*.png",
    "**/[-!]*.png", "**/x[!a]y.png", "**/x[/]y.png", "**/x?y.png", "**/[ab/q.png", "**/[[]ab/*.png", "**/.h*",
    "**/[.]h*.png", "**", "sub/**", "sub/**/", "**/deep", "*/**/*.png", "sub/**/[]^]*.png", "**/*.png/**",
)  # fmt: skip


@pytest.mark.parametrize("pattern", _GLOB_PATTERNS)
def test_a_double_star_glob_lists_what_glob_lists(tmp_path, monkeypatch, pattern: str) -> None:  # type: ignore[no-untyped-def]
    import glob
    import warnings

    from edgeae.scan.archive_walk import _glob_tree

    for rel in _GLOB_TREE:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    for p in (pattern, f"{tmp_path}/{pattern}"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # [[] made re warn "Possible nested set" (FutureWarning)
            got = _glob_tree(p)
        assert sorted(got) == sorted(glob.glob(p, recursive=True)), p


def test_a_glob_set_read_as_glob_reads_it_still_stops_at_a_link_loop(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from edgeae.scan.archive import walk_archive

    arc = tmp_path / "arc"
    for rel in ("^x.png", "ay.png", "bz.png", "sub/^w.png", "[v.png"):
        (arc / rel).parent.mkdir(parents=True, exist_ok=True)
        (arc / rel).write_bytes(b"x")
    (arc / "sub" / "up").symlink_to(arc, target_is_directory=True)  # a loop: glob.glob lists each image 40 times
    assert [e.name for e in walk_archive(f"{arc}/**/[^a]*.png")] == ["^x.png", "ay.png", "sub/^w.png"]
    assert [e.name for e in walk_archive(f"{arc}/**/[[]*.png")] == ["[v.png"]

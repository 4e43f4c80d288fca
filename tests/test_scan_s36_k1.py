"""Archive scan items of session 36 (fixer k1, review s36 r6): an ``--out`` or ``--geo`` path that is not UTF-8 is
refused before any image is read (it ended the scan after the first image naming no file); report.md writes no
Markdown link or image from a file's path; two files whose names are written as one text (``x\\xfe.png`` and the
byte 0xFE) stay apart in the Parquet outputs (their ``key`` column); the console shows paths as they are."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pyarrow")

import pyarrow.parquet as pq
from test_scan_support import mean_scorer_factory, noise_archive, scan_report, tiny_cae

from edgeae.scan.archive import entry_key
from edgeae.scan.report_text import report_markdown, report_summary

BAD = os.fsdecode(b"x\xfe.png")  # a legal Linux file name whose bytes are not UTF-8 ('x\udcfe.png' in Python)
LITERAL = "x\\xfe.png"  # a UTF-8 name: a backslash, then 'xfe': written as the same text as BAD


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_cae(tmp_path_factory.mktemp("model") / "tiny.pt")


# -- an --out or --geo that is not UTF-8 -------------------------------------------------------------------------------
def test_an_out_that_is_not_utf8_is_refused_before_any_image_is_read(
    tmp_path: Path, model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: the first part's write ended the scan with "'utf-8' codec can't encode character '\\udcfe' ..." (status
    2, no file named), leaving a folder that claimed a scan (scan.json, parts/)."""
    from edgeae.cli import main

    arc = noise_archive(tmp_path / "arc", ["a.png"])
    out = tmp_path / os.fsdecode(b"o\xfe")
    argv = ["scan", str(arc), "--model", str(model), "--out", str(out), "--workers", "0", "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "o\\xfe" in err and "not UTF-8" in err and "choose" in err and "\\udcfe" not in err
    assert len(err.strip().splitlines()) == 1
    assert not os.path.lexists(out)  # nothing made


def test_a_geo_layer_path_that_is_not_utf8_is_refused_before_scoring(tmp_path: Path, model: Path) -> None:
    from edgeae.scan.run import EngineOptions, scan_archive

    arc = noise_archive(tmp_path / "arc", ["a.png"])
    geo = tmp_path / os.fsdecode(b"l\xfe.geojson")
    with pytest.raises(ValueError, match=r"l\\xfe\.geojson.*not UTF-8"):
        scan_archive(arc, model, tmp_path / "out", engine=EngineOptions(workers=0), progress=False, geo=geo)
    assert not (tmp_path / "out").exists()


# -- report.md: no Markdown link or image from a path ------------------------------------------------------------------
def test_report_md_writes_no_link_or_image_from_an_error_or_reason() -> None:
    """Before: a failing file named ``![x](https:evil.example/p.png).png`` put a live Markdown image in its error (only
    ``<`` was escaped): a viewer fetched it when report.md was previewed."""
    evil = "![x](https:evil.example/p.png).png"
    r = scan_report(
        failed=1, failures=[{"file": evil, "error": f"ImageReadError: arc/{evil}: not a PNG *bold* `c` a\\b <i>"}],
        skipped_products=[{"file": "p.img", "reason": "[link](http://e.example) &amp; _u_"}],
        geo_note="layer [x](y) not written",
    )  # fmt: skip
    md = report_markdown(r)
    assert "arc/!\\[x\\](https:evil.example/p.png).png: not a PNG \\*bold\\* \\`c\\` a\\\\b \\<i>" in md
    assert "- `p.img`: \\[link\\](http://e.example) \\&amp; \\_u\\_" in md  # ``_`` escaped too since s37
    assert "- layer \\[x\\](y) not written" in md
    outside_code = "".join(md.split("`")[::2])
    assert "![" not in outside_code and "](" not in outside_code.replace("\\](", "")


# -- the console -------------------------------------------------------------------------------------------------------
def test_the_console_summary_shows_layer_paths_and_notes_as_they_are() -> None:
    """Before: ``- map layer `anomalies_mars`: 3 detections -> maps/\\<site>.geojson`` (report.md's escape)."""
    r = scan_report(
        geo_layers=[{"layer": "anomalies_mars", "features": 3, "path": "maps/<site>_[1].geojson"}],
        geo_note="2 products <not> map-projected",
    )
    text = report_summary(r, "out")
    assert "- map layer `anomalies_mars`: 3 detections -> maps/<site>_[1].geojson" in text
    assert "- 2 products <not> map-projected" in text
    assert "maps/\\<site>\\_\\[1\\].geojson" in report_markdown(r)  # report.md still escapes them


@pytest.mark.parametrize("verbose", [False, True])
def test_the_console_takes_a_name_that_is_not_utf8_on_a_strict_stdout(
    tmp_path: Path, model: Path, monkeypatch: pytest.MonkeyPatch, verbose: bool
) -> None:
    """A terminal's stdout takes UTF-8 only: the summary (and ``-v``'s report.md) name such a file ``x\\xfe.png``."""
    from edgeae.cli import main

    arc = noise_archive(tmp_path / "arc", [BAD])
    raw = io.BytesIO()
    strict = io.TextIOWrapper(raw, encoding="utf-8", errors="strict")
    monkeypatch.setattr(sys, "stdout", strict)
    argv = ["scan", str(arc), "--model", str(model), "--out", str(tmp_path / "o"), "--workers", "0", "--no-progress"]
    assert main(["-v", *argv] if verbose else argv) == 0
    strict.flush()
    printed = raw.getvalue().decode("utf-8")
    assert "`x\\xfe.png`" in printed


# -- two names written as one text -------------------------------------------------------------------------------------
def test_two_files_written_as_one_name_stay_apart_by_their_key(tmp_path: Path, model: Path) -> None:
    """``x\\xfe.png`` (UTF-8, a backslash) and the file whose name holds the byte 0xFE are both written ``x\\xfe.png``
    in the ``file`` column: a ``groupby('file')`` merged the two images. Each row now carries its image's ``key``."""
    from edgeae.scan.run import EngineOptions, scan_archive

    arc = noise_archive(tmp_path / "arc", [BAD, LITERAL, "good.png"])
    out = tmp_path / "out"
    kw = dict(engine=EngineOptions(workers=0), progress=False, scorer_factory=mean_scorer_factory, stride=16)
    r = scan_archive(arc, model, out, **kw)
    assert r["done"] == 3
    keys = {entry_key(BAD), entry_key(LITERAL), entry_key("good.png")}
    images = pq.read_table(out / "images.parquet").to_pylist()
    assert {i["key"] for i in images} == keys and len(images) == 3
    assert {i["file"] for i in images} == {LITERAL, "good.png"}  # the text is unchanged
    results = pq.read_table(out / "results.parquet")
    per_key = results.group_by("key").aggregate([("x", "count")]).to_pylist()
    assert {d["key"]: d["x_count"] for d in per_key} == dict.fromkeys(keys, 9)  # 32-px patches, stride 16, 64 px
    assert set(zip(results.column("file").to_pylist(), results.column("key").to_pylist(), strict=True)) == {
        (LITERAL, entry_key(BAD)), (LITERAL, entry_key(LITERAL)), ("good.png", entry_key("good.png"))
    }  # fmt: skip
    again = scan_archive(arc, model, out, **kw)  # a rerun keeps or rewrites the same columns
    assert again["images_scanned"] == 0
    assert pq.read_table(out / "results.parquet").equals(results)
    assert pq.read_table(out / "images.parquet").column_names == list(images[0])


# -- context-knn's rewritten parts -------------------------------------------------------------------------------------
def test_the_parts_context_knn_rewrites_carry_page_checksums(tmp_path: Path, moon: np.ndarray) -> None:
    """--score context-knn writes every part again with the set's scores: a byte flipped in one of its pages is an
    error naming the part (never other scores), as in the parts the scan wrote first (no test covered the rewrite)."""
    from edgeae.imageio import write_image
    from edgeae.scan.out_checks import PartDamagedError, read_part
    from edgeae.scan.run import EngineOptions, scan_archive

    arc = tmp_path / "arc"
    for i, (y, x) in enumerate([(0, 0), (300, 300)]):
        write_image(arc / f"c_{i}.png", np.ascontiguousarray(moon[y : y + 128, x : x + 128]))
    kw = dict(engine=EngineOptions(workers=0), stride=32, progress=False, score="context-knn", top_k=2)
    report = scan_archive(arc, "orbital-gray-vae", tmp_path / "out", **kw)
    assert report["context_knn"]["images"] == 2
    part = tmp_path / "out" / "parts" / f"{entry_key('c_0.png')}.parquet"
    raw, want = part.read_bytes(), read_part(part)
    meta = pq.ParquetFile(part).metadata.row_group(0)
    col = next(meta.column(i) for i in range(meta.num_columns) if meta.column(i).path_in_schema == "score")
    start = col.dictionary_page_offset or col.data_page_offset
    wrong = failed = 0
    for i in range(start, start + col.total_compressed_size, 3):
        part.write_bytes(raw[:i] + bytes([raw[i] ^ 0xFF]) + raw[i + 1 :])
        try:
            wrong += not read_part(part).equals(want)
        except PartDamagedError as exc:
            failed += "CRC checksum verification failed" in str(exc)
    assert wrong == 0 and failed > 0


# -- ArchiveEntry.key --------------------------------------------------------------------------------------------------
def test_an_entrys_key_is_hashed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """ArchiveEntry.key hashed the name at each use: 18,832 SHA-1s in one end of a run of 3,122 images."""
    import pickle

    from edgeae.scan import archive

    calls: list[str] = []
    real = archive.entry_key
    monkeypatch.setattr(archive, "entry_key", lambda name: calls.append(name) or real(name))
    e = archive.ArchiveEntry(Path("arc/a.png"), "a.png")
    assert e.key == e.key == e.key == real("a.png") and calls == ["a.png"]
    back = pickle.loads(pickle.dumps(e))  # to worker processes and Ray actors
    assert back == e and hash(back) == hash(e) and back.key == e.key and calls == ["a.png"]
    assert archive.ArchiveEntry(Path("arc/a.png"), "a.png") == e  # equality and hashing by path and name only


# -- a glob's ** and folder links --------------------------------------------------------------------------------------
def test_a_recursive_glob_follows_folder_links_without_looping(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``arc/**/*.png`` followed every link to a folder, a link back up the tree too, until the system's 40 links
    (ELOOP): each image was listed 40 times under longer names (two such links: 2^40 names, the walk never ended).
    It now follows links as the folder walk does: a link out of the tree once, a link back into it or a loop never."""
    import logging

    from edgeae.scan.archive import walk_archive

    arc = noise_archive(tmp_path / "arc", ["a.png", "sub/b.png", ".hidden/h.png", "sub/c.jpg"])
    other = noise_archive(tmp_path / "other", ["o.png"])
    (arc / "sub" / "up").symlink_to(arc, target_is_directory=True)  # a loop
    (arc / "out").symlink_to(other, target_is_directory=True)  # a folder outside: named through the link
    (other / "back").symlink_to(other, target_is_directory=True)  # a loop outside
    with caplog.at_level(logging.WARNING):
        entries = walk_archive(str(arc / "**" / "*.png"))
    assert [e.name for e in entries] == ["a.png", "out/o.png", "sub/b.png"]  # hidden folders: not matched by **
    assert not caplog.records  # no file listed under two names
    assert [e.name for e in walk_archive(str(arc / "**" / "sub" / "*"))] == ["sub/b.png", "sub/c.jpg"]
    assert [e.name for e in walk_archive(str(arc / "s*" / "**"))] == ["sub/b.png", "sub/c.jpg"]
    assert [e.name for e in walk_archive(str(arc / "**" / ".hidden" / "*.png"))] == [".hidden/h.png"]
    assert [e.name for e in walk_archive(str(arc / "**" / "[ab].png"))] == ["a.png", "sub/b.png"]


def test_a_warning_names_a_file_that_is_not_utf8_escaped(
    tmp_path: Path, model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The scan's warnings logged such a name raw: stderr showed ``x\\udcfe.png``, not the ``x\\xfe.png`` of every
    other output (review s36 r6 nits)."""
    import logging

    from edgeae.scan.run import EngineOptions, scan_archive

    kw = dict(engine=EngineOptions(workers=0), progress=False, scorer_factory=mean_scorer_factory)
    out = tmp_path / "out"
    scan_archive(noise_archive(tmp_path / "one", [BAD]), model, out, **kw)
    with caplog.at_level(logging.WARNING):
        scan_archive(noise_archive(tmp_path / "two", ["b.png"]), model, out, **kw)  # x\xfe.png: recorded, not given
    said = "\n".join(r.getMessage() for r in caplog.records)
    assert "that this archive does not give (x\\xfe.png)" in said and "\udcfe" not in said

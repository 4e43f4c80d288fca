"""Archive scan items of session 36 (fixer g2): a file name that is not UTF-8 (legal on Linux) no longer ends the
whole scan with an encoding error naming no file: it is keyed by its bytes and written escaped (``\\xfe``) in every
output; report.md writes no file name or error as raw Markdown/HTML."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pyarrow")

import pyarrow.parquet as pq
from test_scan_support import noise_archive, scan_report, tiny_cae

from edgeae.printable import printable
from edgeae.scan.archive import entry_key, walk_archive
from edgeae.scan.report_text import report_markdown

BAD = os.fsdecode(b"x\xfe.png")  # a legal Linux file name whose bytes are not UTF-8 ('x\udcfe.png' in Python)
HOSTILE = "a <script>alert(1)<!--.png"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_cae(tmp_path_factory.mktemp("model") / "tiny.pt")


# -- keys --------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("a/crop_00.png", "crop_00-77dd69b635b0"),
        ("strip.tif", "strip-1924975a4559"),
        ("Mars/ESP_011_RED.IMG", "ESP_011_RED-c41b7031eebe"),
        ("ünïcode/кратер 7.png", "_7-6bdd30b0c0e9"),
        (HOSTILE, "a_script_alert_1_---541d6d63bb55"),
    ],
)
def test_the_keys_of_utf8_names_are_those_of_earlier_versions(name: str, key: str) -> None:
    """Pinned from the version before this fix: a results folder of an earlier scan resumes (its parts are found)."""
    assert entry_key(name) == key


def test_a_name_that_is_not_utf8_is_keyed_by_its_bytes() -> None:
    assert entry_key(BAD) == "x_-" + hashlib.sha1(b"x\xfe.png").hexdigest()[:12]
    assert entry_key(BAD) != entry_key(os.fsdecode(b"x\xff.png"))  # two such names: two keys
    assert printable(BAD) == "x\\xfe.png" and printable(HOSTILE) == HOSTILE  # shown escaped; UTF-8 names as they are


def test_a_manifest_listing_a_name_that_is_not_utf8_lists_that_file(tmp_path: Path) -> None:
    """Before, reading such a manifest ended the scan with "'utf-8' codec can't decode byte 0xfe" naming no file."""
    root = noise_archive(tmp_path / "arc", [BAD, "good.png"])
    (tmp_path / "list.txt").write_bytes(b"arc/x\xfe.png\narc/good.png\n")
    entries = walk_archive(tmp_path / "list.txt")
    assert [e.name for e in entries] == ["arc/good.png", "arc/" + BAD]
    assert entries[1].path == root / BAD and entries[1].path.exists()


# -- a scan ------------------------------------------------------------------------------------------------------------
def test_a_scan_of_an_archive_holding_a_name_that_is_not_utf8_scans_every_image_and_resumes(
    tmp_path: Path, model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: ``edgeae scan: error: 'utf-8' codec can't encode character '\\udcfe' ...`` (status 2), nothing
    scanned, no file named. Now the image is scanned and every output names it escaped; a rerun finds it done."""
    from edgeae.cli import main

    arc = noise_archive(tmp_path / "arc", [BAD, "good.png"])
    (arc / os.fsdecode(b"bad\xff.png")).write_bytes(b"not an image")  # a failure naming such a file
    out = tmp_path / "out"
    argv = ["scan", str(arc), "--model", str(model), "--out", str(out), "--workers", "0", "--no-progress"]
    assert main(argv) == 1  # the one unreadable file; the two images are scanned
    printed = capsys.readouterr()
    assert "x\\xfe.png" in printed.out and "could not be read" in printed.err
    report = json.loads((out / "report.json").read_text(encoding="ascii"))
    assert (report["done"], report["failed"], report["pending"]) == (2, 1, 0)
    assert report["failures"][0]["file"] == "bad\\xff.png"
    md = (out / "report.md").read_bytes().decode("utf-8")  # strict: valid UTF-8
    assert "`x\\xfe.png`" in md and "`bad\\xff.png`" in md
    files = set(pq.read_table(out / "results.parquet").column("file").to_pylist())
    assert files == {"good.png", "x\\xfe.png"}
    images = pq.read_table(out / "images.parquet").to_pydict()
    assert dict(zip(images["file"], images["status"], strict=True)) == {
        "bad\\xff.png": "failed", "good.png": "done", "x\\xfe.png": "done"
    }  # fmt: skip
    thumbs = [t["thumbnail"] for t in report["top"] if t["file"] == "x\\xfe.png"]
    assert thumbs and all((out / "topk" / t).is_file() and t.isascii() for t in thumbs)
    assert (out / "parts" / f"{entry_key(BAD)}.parquet").is_file()
    assert main(argv) == 1  # the resume: the manifest's names are the walk's, so nothing is scanned again
    assert json.loads((out / "report.json").read_text())["images_scanned"] == 0
    capsys.readouterr()


# -- report.md: no raw Markdown/HTML -----------------------------------------------------------------------------------
def test_report_md_writes_the_thumbnail_column_as_a_code_span() -> None:
    """Before: ``| topk/000_a <script>alert(1)<!--_x192_y128.png |`` raw: a viewer that passes inline HTML through
    ran the script, and ``<!--`` hid the rest of the report."""
    top = [{"rank": 0, "file": HOSTILE, "x": 192, "y": 128, "score": 1.5,
            "thumbnail": "000_a <script>alert(1)<!--|x_x192_y128.png"}]  # fmt: skip
    md = report_markdown(scan_report(top=top))
    row = next(line for line in md.splitlines() if line.startswith("| 0 |"))
    assert row.endswith("| `topk/000_a <script>alert(1)<!--\\|x_x192_y128.png` |")
    assert row.count("`") == 4  # two code spans (file, thumbnail): no "<" outside them


def test_report_md_escapes_html_in_errors_reasons_and_paths() -> None:
    r = scan_report(
        out="o <b>ut", failed=1, failures=[{"file": HOSTILE, "error": "cannot read /a/<script>x.png"}],
        skipped_products=[{"file": "p.img", "reason": "label says <!-- x"}],
    )  # fmt: skip
    md = report_markdown(r)
    assert "# edgeae scan: o \\<b>ut" in md
    assert f"- `{HOSTILE}`: cannot read /a/\\<script>x.png" in md
    assert "- `p.img`: label says \\<!-- x" in md
    outside_code = "".join(md.split("`")[::2])  # the text outside code spans
    assert "<" not in outside_code.replace("\\<", "")


def test_a_product_whose_path_is_not_utf8_is_scanned_and_named_escaped(
    tmp_path: Path, model: Path, formats: Path
) -> None:
    """GDAL's readers (rasterio) open UTF-8 paths only: the product was recorded as failed ("its path is not UTF-8
    ... rename it"; before that, the whole scan ended naming no file). Since fixer h4 (session 36) it is opened through
    a link of a UTF-8 name (edgeae.archive.gdal_env) and scanned, named escaped in the results."""
    import shutil

    from test_scan_support import mean_scorer_factory

    from edgeae.scan.run import EngineOptions, scan_archive

    arc = noise_archive(tmp_path / "arc", ["good.png"])
    try:
        shutil.copy(formats / "isis3" / "ldem_4_reduced.cub", arc / os.fsdecode(b"z\xfe.cub"))
    except (OSError, UnicodeError) as exc:
        pytest.skip(f"this file system does not take a file name that is not UTF-8: {exc}")
    kw = dict(engine=EngineOptions(workers=0), progress=False, scorer_factory=mean_scorer_factory, min_valid=0.0)
    r = scan_archive(arc, model, tmp_path / "out", geo=tmp_path / "l.geojson", **kw)
    assert (r["done"], r["failed"]) == (2, 0) and not r["failures"]
    files = set(pq.read_table(tmp_path / "out" / "results.parquet").column("file").to_pylist())
    assert files == {"good.png", "z\\xfe.cub"}
    layer = json.loads((tmp_path / "l.geojson").read_text(encoding="utf-8"))  # the cube is map-projected
    assert {f["properties"]["product"] for f in layer["features"]} == {"z\\xfe.cub"}


# -- part page checksums -----------------------------------------------------------------------------------------------
def _part_table(n: int = 16):
    import pyarrow as pa

    rng = np.random.default_rng(1)
    return pa.table(
        {
            "file": pa.array(["a.png"] * n, pa.string()),
            "x": pa.array(rng.integers(0, 4096, n), pa.int32()),
            "y": pa.array(rng.integers(0, 4096, n), pa.int32()),
            "score": pa.array(rng.random(n), pa.float64()),
        }
    )


def _chunk(path: Path, column: str) -> range:
    """The byte range of ``column``'s pages (dictionary and data) in the part at ``path``."""
    meta = pq.ParquetFile(path).metadata.row_group(0)
    col = next(meta.column(i) for i in range(meta.num_columns) if meta.column(i).path_in_schema == column)
    start = col.dictionary_page_offset or col.data_page_offset
    return range(start, start + col.total_compressed_size)


def _flips(path: Path, column: str, read) -> tuple[int, int, int]:
    """Flip every other byte of ``column``'s pages in turn and read the part: (reads with other numbers and no error,
    reads that raised, bytes flipped)."""
    raw, want = path.read_bytes(), pq.read_table(path)
    wrong = failed = 0
    for i in _chunk(path, column)[::2]:
        path.write_bytes(raw[:i] + bytes([raw[i] ^ 0xFF]) + raw[i + 1 :])
        try:
            wrong += not read(path).equals(want)
        except Exception:
            failed += 1
    path.write_bytes(raw)
    return wrong, failed, len(_chunk(path, column)[::2])


def test_a_byte_flipped_in_a_parts_pages_is_an_error_naming_the_part_never_other_numbers(tmp_path: Path) -> None:
    """Parts were written without page checksums: a byte flipped inside a page (storage, a bad copy) was mostly read
    back as other scores or positions with no error. Now each page carries a CRC-32 that reading verifies."""
    from edgeae.scan.out_checks import PartDamagedError, read_part, write_part

    old, new = tmp_path / "old.parquet", tmp_path / "new.parquet"
    pq.write_table(_part_table(), old)  # as parts were written before
    write_part(_part_table(), new)
    for column in ("x", "score"):
        wrong, _, flipped = _flips(old, column, read_part)
        assert wrong > flipped // 3  # the old parts: about half the flips give other numbers, silently
        wrong, failed, flipped = _flips(new, column, read_part)
        assert wrong == 0 and failed > flipped // 2  # the rest: bytes no number depends on (page statistics)
    raw = new.read_bytes()
    i = _chunk(new, "score")[-3]  # a byte of the last score page's values
    new.write_bytes(raw[:i] + bytes([raw[i] ^ 0xFF]) + raw[i + 1 :])
    with pytest.raises(PartDamagedError) as info:
        read_part(new)
    assert str(info.value) == (
        f"{new} is damaged (OSError: could not verify page integrity, CRC checksum verification failed for "
        "page_ordinal 0): delete it and run the same command again to scan its image again"
    )
    assert read_part(old).equals(_part_table())  # a part written without checksums still reads


def test_a_scan_whose_part_has_a_flipped_byte_stops_the_report_naming_the_part(tmp_path: Path, model: Path) -> None:
    """Before: the report was written from the damaged part's other numbers (results.parquet and the ranking)."""
    from test_scan_support import mean_scorer_factory

    from edgeae.scan.run import EngineOptions, scan_archive
    from edgeae.scan.state import ScanStateError

    arc, out = noise_archive(tmp_path / "arc", ["a.png", "b.png"]), tmp_path / "out"
    kw = dict(engine=EngineOptions(workers=0), progress=False, scorer_factory=mean_scorer_factory, stride=8)
    first = scan_archive(arc, model, out, **kw)
    assert first["done"] == 2
    for name in ("results.parquet", "images.parquet"):  # the merged results carry page checksums too
        raw = (out / name).read_bytes()
        i = _chunk(out / name, "file")[-3]
        (tmp_path / "flipped.parquet").write_bytes(raw[:i] + bytes([raw[i] ^ 0xFF]) + raw[i + 1 :])
        with pytest.raises(OSError, match="CRC checksum verification failed"):
            pq.read_table(tmp_path / "flipped.parquet", page_checksum_verification=True)
    (tmp_path / "flipped.parquet").unlink()
    part = out / "parts" / f"{entry_key('b.png')}.parquet"
    raw = part.read_bytes()
    i = _chunk(part, "score")[-3]
    part.write_bytes(raw[:i] + bytes([raw[i] ^ 0xFF]) + raw[i + 1 :])
    with pytest.raises(ScanStateError, match="CRC checksum verification failed") as info:
        scan_archive(arc, model, out, **kw)
    assert str(info.value).startswith(f"{part} is damaged (OSError: could not verify page integrity")
    part.unlink()  # what the message says: the image is scanned again, to the same numbers
    again = scan_archive(arc, model, out, **kw)
    assert (again["images_scanned"], again["done"], again["top"]) == (1, 2, first["top"])

"""Session 37 fixer f2: the archive scan's left items (one escaper for names that are not UTF-8; glob sets read as
``glob.glob`` reads them; report.md's paths with ``_`` and ``~``; scan.json's model as a user can give it again;
georeferencing of real map-projected products under any name)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
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


# -- scan.json: the model as a user can give it again ------------------------------------------------------------------
def _strings(obj: object) -> list[str]:
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, dict):
        return [s for v in obj.values() for s in _strings(v)]
    if isinstance(obj, list):
        return [s for v in obj for s in _strings(v)]
    return []


def test_a_results_folder_moved_elsewhere_names_its_model_as_given_and_resumes(tmp_path, moon, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """scan.json held the model's absolute path (/home/alice/... or the site-packages of an installed edgeae): in a
    folder moved to another machine it named a file that is not there."""
    import json
    import shutil

    from test_scan_support import mean_scorer_factory

    from edgeae.imageio import write_image
    from edgeae.metadata import sha256_file
    from edgeae.scan.config import ScanConfig
    from edgeae.scan.run import EngineOptions, scan_archive

    here = tmp_path / "alice" / "project"
    for i in range(2):
        write_image(here / "arc" / f"c{i}.png", moon[64 * i : 64 * i + 96, :96].copy())
    (here / "models").mkdir()
    zoo_file = Path(archive.__file__).parents[1] / "zoo/artifacts/orbital-gray-vae/orbital-gray-vae.int8.onnx"
    shutil.copy(zoo_file, here / "models" / "vae.onnx")  # a model file of the user's (onnxruntime: no torch import)
    monkeypatch.chdir(here)
    kw = dict(engine=EngineOptions(workers=0), progress=False, scorer_factory=mean_scorer_factory)
    first = scan_archive("arc", "models/vae.onnx", "out", **kw)
    saved = json.loads((here / "out" / "scan.json").read_text())
    model = saved["config"]["model"]
    assert model["given"] == "models/vae.onnx" and model["zoo"] is False and model["file"] == "vae.onnx"
    assert model["artifact_hash"] == sha256_file(here / "models" / "vae.onnx")
    assert model["options"] == "--model models/vae.onnx" and "path" not in model
    assert not [s for s in _strings(saved) if str(tmp_path) in s]  # no absolute path of this machine
    assert ScanConfig.from_dict(saved["config"]).model.given == "models/vae.onnx"  # read back

    there = tmp_path / "bob" / "copy"
    shutil.copytree(here, there, symlinks=True, copy_function=shutil.copy2)  # times kept: the images are unchanged
    shutil.rmtree(tmp_path / "alice")
    monkeypatch.chdir(there)
    again = scan_archive("arc", "models/vae.onnx", "out", **kw)
    assert again["images_scanned"] == 0 and again["done"] == first["done"] > 0  # resumed: nothing scanned again


def test_a_zoo_model_is_kept_by_name_with_the_options_that_pick_its_file() -> None:
    from edgeae.scan.scoring import ModelSpec, resolve_model

    spec = resolve_model("orbital-gray-vae", runtime="onnx")
    rec = spec.record()
    assert rec["given"] == "orbital-gray-vae" and rec["zoo"] is True and rec["file"] == "orbital-gray-vae.int8.onnx"
    assert rec["options"] == "--model orbital-gray-vae --runtime onnx" and "path" not in rec
    assert not any(os.sep in s for s in _strings(rec))  # no site-packages path
    back = ModelSpec.from_record(rec)
    assert (back.given, back.zoo, back.artifact_hash) == ("orbital-gray-vae", True, spec.artifact_hash)
    name = "orbital-gray-vae"
    fp32 = ModelSpec(f"/s/{name}.pt", name, "0" * 64, "vae", 64, 1, given=name, zoo=True)
    assert fp32.options() == "--model orbital-gray-vae --precision fp32"


def test_a_scan_json_written_before_session_37_is_read_and_resumed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from edgeae.scan.config import ScanConfig
    from edgeae.scan.scoring import ModelSpec
    from edgeae.scan.state import ScanStore

    old_model = {
        "path": "/home/alice/edgeae/zoo/artifacts/orbital-gray-vae/orbital-gray-vae.int8.tflite",
        "model_id": "orbital-gray-vae", "artifact_hash": "ab" * 32, "kind": "vae", "patch": 64, "channels": 1,
        "latent": 256,
    }  # fmt: skip
    now = ModelSpec("/opt/x/orbital-gray-vae.int8.tflite", "orbital-gray-vae", "ab" * 32, "vae", 64, 1, 256,
                    "orbital-gray-vae", True)  # fmt: skip
    cfg = ScanConfig(now, stride=64)
    (tmp_path / "scan.json").write_text(json.dumps({"config": {**cfg.to_dict(), "model": old_model}}))
    old = ScanConfig.from_dict(json.loads((tmp_path / "scan.json").read_text())["config"])
    assert old.model.given == old_model["path"] and old.result_fingerprint() == cfg.result_fingerprint()
    ScanStore(tmp_path, cfg)  # resumed into, not refused
    model = json.loads((tmp_path / "scan.json").read_text())["config"]["model"]
    assert model["given"] == "orbital-gray-vae" and model["options"] == "--model orbital-gray-vae --runtime tflite"
    assert "path" not in model and "/opt/x" not in json.dumps(model)


# -- georeferencing of real map-projected products under any name -----------------------------------------------------
def test_scan_gives_lon_lat_of_a_real_geotiff_under_any_name(tmp_path, formats) -> None:  # type: ignore[no-untyped-def]
    """A session-36 probe had georef_of give None for every name it tried; its TIFF's georeferencing was in sidecar
    files only (.tfw, .aux.xml), which a plain TIFF does not read (docs/archive.md). On the real GeoTIFF basemap of
    Mars (IAU_2015:49900, 0.3515625°/px from -180°, 90°) every patch row has the lon/lat of its centre, whatever the
    file's name: UTF-8 with spaces and accents, bytes that are not UTF-8, a link."""
    import contextlib
    import shutil

    pq = pytest.importorskip("pyarrow.parquet")
    pytest.importorskip("rasterio")
    from test_scan_support import mean_scorer_factory

    from edgeae.scan.run import EngineOptions, scan_archive

    src = formats / "geotiff" / "mars.tif"
    arc = tmp_path / "arc"
    (arc / "é ü").mkdir(parents=True)
    (arc / "link.tif").symlink_to(src)
    shutil.copy(src, arc / "é ü" / "mars é.tif")
    with contextlib.suppress(OSError, UnicodeError):  # a file system that takes UTF-8 names only: left out
        shutil.copy(src, arc / os.fsdecode(b"m\xfe.tif"))
    zoo_file = Path(archive.__file__).parents[1] / "zoo/artifacts/orbital-gray-vae/orbital-gray-vae.int8.onnx"
    kw = dict(engine=EngineOptions(workers=0), progress=False, scorer_factory=mean_scorer_factory, stride=64)
    r = scan_archive(arc, zoo_file, tmp_path / "out", **kw)
    assert r["failed"] == 0 and r["done"] == len(list(arc.rglob("*.tif")))
    images = {i["file"]: i for i in pq.read_table(tmp_path / "out" / "images.parquet").to_pylist()}
    assert all(i["map_projected"] and i["body"] == "MARS" for i in images.values()), images
    t = pq.read_table(tmp_path / "out" / "results.parquet").to_pydict()
    assert set(t["file"]) == set(images) and len(t["file"]) == 16 * 8 * len(images)  # 1024 x 512 at 64 px
    x, y = np.asarray(t["x"]), np.asarray(t["y"])
    np.testing.assert_allclose(t["lon"], -180 + (x + 32) * 0.3515625)
    np.testing.assert_allclose(t["lat"], 90 - (y + 32) * 0.3515625)


# -- scripts/scan_finalize_cost.py -------------------------------------------------------------------------------------
def test_the_finalize_cost_script_finalizes_k_copies_of_a_scans_parts(tmp_path, moon) -> None:  # type: ignore[no-untyped-def]
    import importlib.util
    import json
    import shutil

    from test_scan_support import mean_scorer_factory

    from edgeae.imageio import write_image
    from edgeae.scan.archive import walk_archive
    from edgeae.scan.run import EngineOptions, scan_archive

    root = Path(archive.__file__).parents[2]
    spec = importlib.util.spec_from_file_location("scan_finalize_cost", root / "scripts" / "scan_finalize_cost.py")
    assert spec is not None and spec.loader is not None
    cost = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cost)

    arc = tmp_path / "arc"
    for i in range(2):
        write_image(arc / "sub" / f"c{i}.png", moon[64 * i : 64 * i + 128, :160].copy())
    model = tmp_path / "vae.onnx"
    shutil.copy(root / "edgeae/zoo/artifacts/orbital-gray-vae/orbital-gray-vae.int8.onnx", model)
    kw = dict(engine=EngineOptions(workers=0), progress=False, scorer_factory=mean_scorer_factory, stride=32)
    base = scan_archive(arc, model, tmp_path / "base", **kw)
    assert cost.build_copies(tmp_path / "base", tmp_path / "k3", 3) == 6
    paths = {e.name: str(e.path) for e in walk_archive(arc)}
    got = cost.finalize_once(tmp_path / "k3", paths)
    assert got["parts"] == 6 and got["patches"] == 3 * base["patches_in_results"] > 0
    assert got["peak_rss_mib"] >= got["rss_before_finalize_mib"] > 0 and got["seconds"] >= 0
    report = json.loads((tmp_path / "k3" / "report.json").read_text())
    assert report["done"] == 6 and {t["file"].split("/")[0] for t in report["top"]} <= {"c0000", "c0001", "c0002"}

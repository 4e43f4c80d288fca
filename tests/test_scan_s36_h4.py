"""Archive scan items of session 36 (fixer h4): a folder archive's linked sub-folders are walked (before: skipped in
silence, exit 0); a part that cannot be read for an access or I/O reason is not called damaged; a model the
spawned local workers cannot load ends the command in one line; planetary products at a path that is not UTF-8 are
read (GDAL through rasterio opens UTF-8 paths only)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pyarrow")

from edgeae.scan.archive import walk_archive

needs_links = pytest.mark.skipif(os.name == "nt", reason="symlinks need privileges on Windows")


def _images(root: Path, names: list[str]) -> Path:
    from edgeae.imageio import write_image

    rng = np.random.default_rng(0)
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        write_image(root / name, rng.integers(0, 256, (64, 64), dtype=np.uint8))
    return root


# -- a2 #2: linked sub-folders -----------------------------------------------------------------------------------------
@needs_links
def test_a_linked_sub_folder_is_walked_and_loops_end(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """``ln -s /mnt/lroc arch/lroc``: before, its images were left out with no word (a folder of links only: "holds
    no image files"). A link back up the tree, or into the archive, is not walked twice (the walk ends)."""
    mnt = _images(tmp_path / "mnt", ["lroc/a.png", "lroc/deep/b.png", "other/c.png"])
    arc = _images(tmp_path / "arc", ["real/x.png"])
    (arc / "lroc").symlink_to(mnt / "lroc")
    (arc / "loop").symlink_to(arc)  # back to the archive itself
    (arc / "alias").symlink_to(arc / "real")  # into the archive: its files keep their own names
    (mnt / "lroc" / "deep" / "up").symlink_to(mnt)  # from the linked folder back above it
    (arc / "gone").symlink_to(tmp_path / "missing")  # a dangling link: a file of no type, as before
    caplog.set_level(logging.WARNING, "edgeae")
    names = [e.name for e in walk_archive(arc)]
    assert names == [
        "lroc/a.png", "lroc/deep/b.png", "lroc/deep/up/other/c.png", "real/x.png",
    ]  # fmt: skip
    assert "1 file(s) of other types" in caplog.text  # the dangling link, counted as before


@needs_links
def test_an_archive_of_linked_folders_only_is_scanned(tmp_path: Path) -> None:
    """Before: ``archive ... holds no image files`` (status 2), though its linked folders hold images."""
    mnt = _images(tmp_path / "mnt", ["a.png", "b.png"])
    arc = tmp_path / "arc"
    arc.mkdir()
    (arc / "one").symlink_to(mnt)
    (arc / "two").symlink_to(mnt)  # the same folder again: its files are scanned once
    assert [e.name for e in walk_archive(arc)] == ["one/a.png", "one/b.png"]


# -- a2 #3: edgeae score given a file twice ----------------------------------------------------------------------------
@needs_links
@pytest.mark.filterwarnings("ignore")
def test_score_scores_a_file_given_twice_once(
    tmp_path: Path, moon: np.ndarray, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """Before: the file's rows twice in the CSV (and with --score context-knn its copy was each patch's nearest
    neighbour, changing every image's scores); now each file once, by its first name, with a warning."""
    pytest.importorskip("torch")
    import csv

    from edgeae.cli import main
    from edgeae.imageio import write_image

    a, b = tmp_path / "a.png", tmp_path / "b.png"
    write_image(a, np.ascontiguousarray(moon[:96, :96]))
    write_image(b, np.ascontiguousarray(moon[96:192, :96]))
    (tmp_path / "link.png").symlink_to(a)
    out = tmp_path / "s.csv"
    argv = ["--model", "orbital-gray-vae", "--no-progress", "--threads", "1", "-o", str(out)]
    caplog.set_level(logging.WARNING, "edgeae")
    assert main(["score", str(a), str(b), str(a), str(tmp_path / "link.png"), *argv]) == 0
    with out.open() as fh:
        rows = [(r["file"], r["x"], r["y"]) for r in csv.DictReader(fh)]
    assert len(rows) == len(set(rows)) and {r[0] for r in rows} == {str(a), str(b)}
    assert (
        f"2 image(s) given again (the same name, or another name of a file given before) are scored once (e.g. "
        f"{a}, scored as {a})" in caplog.text
    )
    assert "from 2 image(s)" in capsys.readouterr().out


# -- r2 #3: a part that cannot be read is not called damaged -----------------------------------------------------------
def _scan_two(tmp_path: Path) -> tuple[Path, Path, dict]:
    from test_scan_support import mean_scorer_factory

    from edgeae.scan.run import EngineOptions, scan_archive

    arc, out = _images(tmp_path / "arc", ["a.png", "b.png"]), tmp_path / "o"
    kw = dict(engine=EngineOptions(workers=0), progress=False, scorer_factory=mean_scorer_factory)
    assert scan_archive(arc, "orbital-gray-vae", out, **kw)["done"] == 2
    return arc, out, kw


@pytest.mark.parametrize(
    "error",
    [PermissionError(13, "Permission denied"), OSError(5, "Input/output error"), FileNotFoundError("gone")],
    ids=["permission", "eio", "missing"],
)
def test_a_part_the_file_system_cannot_give_is_kept_not_called_damaged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: OSError
) -> None:
    """Before: every OSError was "<part> is damaged (PermissionError: ...): delete it and run the same command again",
    advice that throws a good result away; a resume finding such a part without its manifest line scanned its image
    again over it. Now an OSError naming the part and saying it is kept (the command's one line, status 2)."""
    import pyarrow.parquet as pq

    from edgeae.scan.out_checks import PartDamagedError, PartUnreadableError, read_part
    from edgeae.scan.run import scan_archive

    arc, out, kw = _scan_two(tmp_path)
    part = next((out / "parts").glob("b-*.parquet"))
    good = part.read_bytes()
    real_table, real_meta = pq.read_table, pq.read_metadata

    def refuse(real):  # the file system refuses this part only
        def read(path, *a, **k):
            if Path(path) == part:
                raise error
            return real(path, *a, **k)

        return read

    monkeypatch.setattr(pq, "read_table", refuse(real_table))
    monkeypatch.setattr(pq, "read_metadata", refuse(real_meta))
    monkeypatch.setattr(pq, "ParquetFile", refuse(pq.ParquetFile))  # read_part's reader since fixer k1 (faster)
    for rows in (False, True):
        with pytest.raises(PartUnreadableError) as info:
            read_part(part, rows=rows)
        assert not isinstance(info.value, PartDamagedError) and isinstance(info.value, OSError)
        assert str(info.value).startswith(f"cannot read {part} ({type(error).__name__}: ")
        kept = "it is gone: run the same command again" if type(error) is FileNotFoundError else "the part is kept"
        assert kept in str(info.value) and "delete" not in str(info.value)
    # a resume that finds the part without its manifest line (a crash between the two writes) stops, keeping it
    manifest = out / "manifest.jsonl"
    manifest.write_text("".join(line + "\n" for line in manifest.read_text().splitlines() if '"b.png"' not in line))
    with pytest.raises(PartUnreadableError):
        scan_archive(arc, "orbital-gray-vae", out, **kw)
    assert part.read_bytes() == good


def test_a_part_whose_bytes_are_wrong_is_still_called_damaged(tmp_path: Path) -> None:
    from edgeae.scan.out_checks import PartDamagedError, read_part

    _, out, _ = _scan_two(tmp_path)
    part = next((out / "parts").glob("b-*.parquet"))
    data = bytearray(part.read_bytes())
    data[4:34] = b"\xab" * 30  # its first page header, its ends kept
    part.write_bytes(bytes(data))
    with pytest.raises(PartDamagedError, match=r"is damaged .*: delete it and run the same command again"):
        read_part(part)


def test_the_resume_check_of_a_part_the_file_system_cannot_give_keeps_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cheap check a resume makes (its first and last bytes) counted "cannot be read (Permission denied)" as
    damage: the image was scanned again over a part that may be whole. A part gone since it was listed is missing."""
    from edgeae.scan.out_checks import PartUnreadableError, part_damage
    from edgeae.scan.run import scan_archive

    arc, out, kw = _scan_two(tmp_path)
    part = next((out / "parts").glob("b-*.parquet"))
    real_open = Path.open

    def refuse(self: Path, *a, **k):
        if self == part:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *a, **k)

    monkeypatch.setattr(Path, "open", refuse)
    with pytest.raises(PartUnreadableError, match=r"\(PermissionError: Permission denied\); the part is kept"):
        part_damage(part)
    with pytest.raises(PartUnreadableError):
        scan_archive(arc, "orbital-gray-vae", out, **kw)
    monkeypatch.undo()
    assert part_damage(tmp_path / "never.parquet") == "is gone"


# -- r2 #4: a model the spawned local workers cannot load, through the command ---------------------------------------
def unloadable(spec: object, *args: object) -> object:
    """A model loader that always fails (module level: the spawned workers unpickle the factory by name)."""
    raise RuntimeError("cannot create the interpreter\n(the runtime's details)")


def test_the_command_says_in_one_line_that_the_spawned_workers_cannot_load_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """2 images on --workers 2: one spawned process per worker (test_scan_s36_f2 covers the threads of one image).
    The error pickled back from a worker, the workers stopped, and the folder the command made removed again."""
    import re

    import edgeae.scan.run as scan_run
    from edgeae.cli import main

    monkeypatch.setattr(scan_run, "load_scorer", unloadable)
    arc, out = _images(tmp_path / "arc", ["a.png", "b.png"]), tmp_path / "o"
    assert main(["scan", str(arc), "--out", str(out), "--workers", "2", "--no-progress"]) == 2
    err = capsys.readouterr().err
    line = re.fullmatch(
        r"edgeae scan: error: cannot load the model (\S+): RuntimeError: cannot create the interpreter \(the "
        r"runtime's details\)\n",
        err,
    )
    assert line is not None, err
    assert Path(line.group(1)).is_file() and not out.exists()


# -- a2 #5, #6: a Ray node lost, the head node lost -------------------------------------------------------------------
def test_a_lost_ray_node_is_said_as_such_with_the_actors_left(moon, tmp_path, monkeypatch, caplog) -> None:
    """Before: only "1 Ray worker process(es) died during the scan; ...", with Ray's "marked dead" line under -v
    alone, and nothing said of the actor that could no longer be placed (the scan went on at half speed)."""
    from test_scan_ray_s34 import SPEC, _crops, _FakeRayModule
    from test_scan_support import mean_scorer_factory

    from edgeae.scan import ray_engine
    from edgeae.scan.pipeline import ScanConfig

    entries = walk_archive(_crops(tmp_path / "arc", moon, ("a.png", "b_once.png", "c.png", "d.png")))
    fake = _FakeRayModule(tmp_path)
    states = iter([[True, True], [True, False]])  # at the start, then at the end: the second node is gone
    fake.nodes = lambda: [  # type: ignore[attr-defined]
        {"NodeID": nid, "NodeManagerAddress": addr, "Alive": alive}
        for (nid, addr), alive in zip((("aa" * 28, "10.0.0.1"), ("bb" * 28, "10.0.0.2")), next(states), strict=True)
    ]
    monkeypatch.setattr(ray_engine, "require", lambda name: fake)
    caplog.set_level(logging.WARNING, "edgeae")
    out = list(ray_engine.iter_ray(entries, ScanConfig(SPEC, 32), mean_scorer_factory))
    assert all(r is not None and not err for _, r, err in out) and len(out) == 4
    warned = [r.getMessage() for r in caplog.records if r.name == "edgeae.scan.ray_engine"]
    assert warned == [
        "1 Ray node(s) were lost during the scan (10.0.0.2 (node bbbbbbbb); Ray marked them dead): the images their "
        "actors held were scanned again on the actors left"
    ]


def test_rays_marked_dead_line_names_the_node_and_the_pool_says_how_many_actors_are_left(caplog) -> None:
    from edgeae.scan import ray_engine

    worker = type("W", (), {"print_to_stdstream": staticmethod(lambda data, ignore_prefix: None)})
    ray = type("R", (), {"_private": type("P", (), {"worker": worker})})
    quiet = ray_engine._RayMessages(ray, verbose=False)
    line = (
        "\x1b[33m(raylet)\x1b[0m The node with node id: d7ca5abf7b32 and address: 192.0.2.2 and node name: 192.0.2.2 "
        "has been marked dead because the detector has missed too many heartbeats from it."
    )
    worker.print_to_stdstream({"lines": [line]}, ignore_prefix=False)
    quiet.close()
    assert quiet.dead_nodes == {"d7ca5abf7b32": "192.0.2.2"}
    pool = ray_engine._Pool.__new__(ray_engine._Pool)  # the state a scan leaves: 2 places, one replacement not placed
    pool.size, pool.actors, pool.up = 2, [object(), object()], [True, False]
    pool.deaths, pool.lost, pool.failed_starts, pool.empty = 1, 0, 0, 0
    caplog.set_level(logging.WARNING, "edgeae")
    pool.warn(1, quiet.dead_nodes)
    assert [r.getMessage() for r in caplog.records] == [
        "1 Ray node(s) were lost during the scan (192.0.2.2 (node d7ca5abf); Ray marked them dead): the images their "
        "actors held were scanned again on the actors left; the scan went on with 1 of 2 actors"
    ]


def test_the_head_node_lost_is_said_in_one_line_before_ray_ends_the_process_silently(caplog) -> None:
    """Before: status 1 and no word at all, 61-62 s after the GCS was killed (Ray's core worker ends the process from
    native code, and meanwhile may block the driver inside ray.wait). A thread probes the GCS every HEAD_PROBE_S and
    says the loss once it has refused connections for HEAD_LOST_S; the driver's loop then raises."""
    from edgeae.scan import ray_connect
    from edgeae.scan.errors import ClusterLostError

    now, up = [0.0], [True]
    watch = ray_connect.HeadWatch("10.0.0.1:6379", accepts=lambda address: up[0], clock=lambda: now[0])
    caplog.set_level(logging.ERROR, "edgeae")
    for t in (5.0, 10.0):
        now[0] = t
        watch.poll()
        watch.check()
    up[0] = False
    for t in (15.0, 20.0, 25.0, 30.0):  # refused since 15 s: not yet lost
        now[0] = t
        watch.poll()
        watch.check()
    now[0] = 15.0 + ray_connect.HEAD_LOST_S
    watch.poll()
    watch.poll()  # said once
    line = (
        "the Ray cluster's head node stopped answering during the scan (stopped, or its machine lost): its GCS at "
        "10.0.0.1:6379 refused connections for 20 s; the images finished before are kept: run the same command again "
        "once the cluster is back"
    )
    assert [r.getMessage() for r in caplog.records] == [
        line
    ] and ray_connect.HEAD_LOST_S + ray_connect.HEAD_PROBE_S < 60
    with pytest.raises(ClusterLostError) as info:
        watch.check()
    assert str(info.value) == line and info.value.said


def test_a_ray_call_that_fails_while_the_gcs_refuses_is_the_lost_cluster(caplog) -> None:
    """Seen with the head's raylet killed: ray.wait raised "Broken pipe" 13 s later, and the command ended with
    "edgeae scan: error: Broken pipe", status 2. While the GCS still answers, the error is left as it is."""
    from edgeae.scan import ray_connect
    from edgeae.scan.errors import ClusterLostError

    up = [True]
    watch = ray_connect.HeadWatch("10.0.0.1:6379", accepts=lambda address: up[0])
    watch.failed(BrokenPipeError(32, "Broken pipe"))  # the GCS answers: not the cluster's loss (the caller raises)
    up[0] = False
    caplog.set_level(logging.ERROR, "edgeae")
    with pytest.raises(ClusterLostError) as info:
        watch.failed(BrokenPipeError(32, "Broken pipe"))
    assert str(info.value).startswith(
        "the Ray cluster's head node stopped answering during the scan (stopped, or its machine lost): its GCS at "
        "10.0.0.1:6379 refuses connections, and a call to Ray failed (BrokenPipeError: [Errno 32] Broken pipe); the "
        "images finished before are kept"
    )
    assert [r.getMessage() for r in caplog.records] == [str(info.value)] and info.value.said
    ray_connect.HeadWatch(None).start().poll()  # no address (a stand-in Ray): no thread, nothing probed


@pytest.mark.parametrize("said", [False, True])
def test_the_command_says_the_cluster_was_lost_once_and_exits_1(tmp_path: Path, monkeypatch, capsys, said) -> None:
    import edgeae.scan.run as scan_run
    from edgeae.cli import main
    from edgeae.scan.errors import ClusterLostError

    def lost(*args: object, **kw: object) -> None:
        raise ClusterLostError("the Ray cluster's head node stopped answering during the scan (...)", said=said)

    monkeypatch.setattr(scan_run, "scan_archive", lost)
    arc = _images(tmp_path / "arc", ["a.png"])
    assert main(["scan", str(arc), "--out", str(tmp_path / "o"), "--engine", "ray", "--no-progress"]) == 1
    line = "edgeae scan: error: the Ray cluster's head node stopped answering during the scan (...)\n"
    assert capsys.readouterr().err == ("" if said else line)  # said when found: not twice


# -- g2's leftover: planetary products at a path that is not UTF-8 -----------------------------------------------------
PDS3_TC = "pds3/TC1S2B0_01_05186N225E0040_mini"
PDS3_MI = "pds3/MI_MAP_03_N51E124N50E125SC_cropped"


@pytest.mark.parametrize(
    ("folder", "copies", "target"),
    [
        (b"plain", {"isis3/ldem_4_reduced.cub": b"z\xfe.cub"}, b"z\xfe.cub"),  # the cube's own name
        (b"d\xfe", {f"{PDS3_TC}.lbl": None, f"{PDS3_TC}.img": None}, b"TC1S2B0_01_05186N225E0040_mini.lbl"),
        (b"plain", {f"{PDS3_MI}.lbl": b"mi\xfe.lbl", f"{PDS3_MI}.img": None}, b"mi\xfe.lbl"),  # the label's name
        (b"d\xfe", {"jp2/test.jp2": None}, b"test.jp2"),
    ],
    ids=["cube-name", "pds3-in-folder", "pds3-label-name", "jp2-in-folder"],
)
def test_a_product_at_a_path_that_is_not_utf8_reads_as_at_a_utf8_one(
    tmp_path: Path, formats: Path, folder: bytes, copies: dict[str, bytes | None], target: bytes
) -> None:
    """rasterio encodes paths as UTF-8: before, such a product failed ("'utf-8' codec can't encode character
    '\\udcfe' ... surrogates not allowed"; a scan recorded it as failed, "rename it"). It is opened through links of a
    UTF-8 name: read as under a UTF-8 path, georeferencing too; the files GDAL read are named as on disk, and the
    links are gone once the product is closed. A data file beside a label of such a name is found under its own."""
    import shutil

    from edgeae.archive.gdal_env import dataset_files
    from edgeae.archive.reader import ProductReader, read_product
    from edgeae.scan.geo import georef_of

    here = tmp_path / os.fsdecode(folder)
    try:
        here.mkdir()
        for src, name in copies.items():
            shutil.copy(formats / src, here / os.fsdecode(name or Path(src).name.encode()))
    except (OSError, UnicodeError) as exc:
        pytest.skip(f"this file system does not take a file name that is not UTF-8: {exc}")
    path, original = here / os.fsdecode(target), formats / next(iter(copies))
    with pytest.raises(UnicodeEncodeError):
        os.fspath(path).encode("utf-8")  # the path rasterio could not take
    np.testing.assert_array_equal(read_product(path).pixels, read_product(original).pixels)
    geo, meta = georef_of(path)
    want_geo, want_meta = georef_of(original)
    assert meta == want_meta and (geo is None) == (want_geo is None)
    if geo is not None:
        assert geo.to_dict() == want_geo.to_dict()
    with ProductReader(path) as r:
        links = r.ds._edgeae_alias.tmp
        assert os.path.isdir(links)
        assert {os.path.dirname(f) for f in dataset_files(r.ds)} == {os.fspath(here)}  # as on disk, not the links
    assert not os.path.exists(links)


def test_a_product_gdal_cannot_open_at_such_a_path_is_named_as_on_disk(tmp_path: Path) -> None:
    """GDAL's message names the link it was given: said with the product's own path (bytes not UTF-8 as \\xNN),
    never the temporary folder's."""
    from edgeae._headers import ImageReadError
    from edgeae.archive.reader import ProductReader

    try:
        here = tmp_path / os.fsdecode(b"y\xfe")
        here.mkdir()
        (here / "bad.cub").write_bytes(b"not a cube " * 50)
    except (OSError, UnicodeError) as exc:
        pytest.skip(f"this file system does not take a file name that is not UTF-8: {exc}")
    with pytest.raises(ImageReadError) as info:
        ProductReader(here / "bad.cub").close()
    assert f"GDAL cannot open it ('{tmp_path}/y\\xfe/bad.cub' not recognized as" in str(info.value)
    assert "edgeae-gdal-" not in str(info.value)


def test_the_scores_csv_and_its_settings_write_a_name_that_is_not_utf8_escaped(tmp_path: Path) -> None:
    """``edgeae score x\\xfe.png`` scored the image, then ended with "'utf-8' codec can't encode character '\\udcfe'"
    (status 2) writing the CSV, leaving it with its header only; the settings JSON beside it failed the same way.
    The name is written as ``edgeae scan`` writes it (``\\xfe``), and both files read back."""
    import json

    from edgeae.anomaly.score import PatchScores
    from edgeae.anomaly.scores_csv import read_csv, write_csv, write_settings

    name = os.fsdecode(b"/data/x\xfe.png")
    r = PatchScores(name, np.array([0, 32]), np.array([0, 0]), np.array([1.5, 2.5]), np.ones(2), 32, (32, 64))
    out = tmp_path / "s.csv"
    assert write_csv(out, [r]) == 2
    assert read_csv(out) == [("/data/x\\xfe.png", 0, 0, 1.5), ("/data/x\\xfe.png", 32, 0, 2.5)]
    write_settings(out, {"images": [name], "images_resolved": [Path(name)], "skipped": []})
    doc = json.loads((tmp_path / "s.csv.json").read_text(encoding="utf-8"))
    assert doc["images"] == doc["images_resolved"] == ["/data/x\\xfe.png"]

"""Archive scan items of session 36 (fixer f2): a model the local engine's workers cannot load ends the scan in one
line with status 2, as with the Ray engine (before: each image recorded as failed with the loader's error, or "a
worker process died" and status 1); a local scan imports nothing of the Ray engine."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pyarrow")

from edgeae.scan.archive import walk_archive
from edgeae.scan.errors import ModelLoadError
from edgeae.scan.local import iter_local
from edgeae.scan.pipeline import ScanConfig
from edgeae.scan.scoring import ModelSpec, load_scorer


def _archive(root: Path, n: int) -> Path:
    from edgeae.imageio import write_image

    rng = np.random.default_rng(0)
    for i in range(n):
        write_image(root / f"img_{i}.png", rng.integers(0, 256, (64, 64), dtype=np.uint8))
    return root


# -- 1: a model the local workers cannot load ------------------------------------------------------------------------
@pytest.mark.parametrize(("workers", "images"), [(0, 2), (2, 1), (2, 3)], ids=["this-process", "threads", "processes"])
def test_a_model_the_local_workers_cannot_load_ends_the_scan_naming_the_file_and_the_reason(
    tmp_path: Path, workers: int, images: int
) -> None:
    """The model file changed after the scan resolved it (the real loader refuses it in each worker): before, every
    image was recorded as failed with the loader's error (threads, processes), the scan went on and exited 1."""
    model = tmp_path / "m.onnx"
    model.write_bytes(b"replaced since the scan started")
    spec = ModelSpec(path=str(model), model_id="m", artifact_hash="0" * 64, kind="vae", patch=32, channels=1)
    entries = walk_archive(_archive(tmp_path / "arc", images))
    outcomes = iter_local(entries, ScanConfig(spec, 32), functools.partial(load_scorer, spec), workers=workers)
    reason = f"ValueError: {model}: model file changed since the scan started (hash mismatch)"
    with pytest.raises(ModelLoadError) as info:
        next(outcomes)  # nothing is yielded: no image is recorded as failed for the model's fault
    assert str(info.value) == f"cannot load the model {model}: {reason}"


def test_the_command_says_in_one_line_that_the_model_cannot_be_loaded_and_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """README's exit statuses: a model that cannot be loaded is status 2 with either engine (Ray's: test_scan_ray_s35);
    no image is recorded, so the results folder the command made is gone again."""
    import edgeae.scan.run as scan_run
    from edgeae.cli import main

    paths: list[str] = []

    def unloadable(spec: ModelSpec, *args: object) -> object:
        paths.append(spec.path)
        raise RuntimeError("cannot create the interpreter\n(the runtime's details)")

    monkeypatch.setattr(scan_run, "load_scorer", unloadable)
    arc, out = _archive(tmp_path / "arc", 1), tmp_path / "o"
    assert main(["scan", str(arc), "--out", str(out), "--workers", "2", "--no-progress"]) == 2
    assert capsys.readouterr().err == (
        f"edgeae scan: error: cannot load the model {paths[0]}: RuntimeError: cannot create the interpreter (the "
        "runtime's details)\n"
    )
    assert not out.exists()


# -- 2: a local scan leaves the Ray engine alone -----------------------------------------------------------------------
def test_a_local_scan_imports_neither_the_ray_engine_nor_ray(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: the command imported edgeae.scan.ray_engine on every scan (for its two errors), a cost and a
    dependency the local engine does not have. The modules are taken out of sys.modules for this test only."""
    import sys

    from edgeae.cli import main

    for name in [m for m in sys.modules if m == "ray" or m.startswith(("ray.", "edgeae.scan.ray_"))]:
        monkeypatch.delitem(sys.modules, name)
    arc = _archive(tmp_path / "arc", 2)
    assert main(["scan", str(arc), "--out", str(tmp_path / "o"), "--workers", "0", "--no-progress"]) == 0
    assert "- images: 2 (2 done, 0 failed" in capsys.readouterr().out
    loaded = sorted(m for m in sys.modules if m == "ray" or m.startswith(("ray.", "edgeae.scan.ray_")))
    assert loaded == []


# -- 3: a part that looks whole at its ends but is damaged inside ----------------------------------------------------
def _damage_inside(path: Path, where: str) -> None:
    """Overwrite bytes of a Parquet part inside (its first data page, or its footer's metadata), keeping its ends:
    ``part_damage`` (first and last bytes) still passes it."""
    from edgeae.scan.out_checks import part_damage

    data = bytearray(path.read_bytes())
    footer = int.from_bytes(data[-8:-4], "little")
    start = 4 if where == "page" else len(data) - 8 - footer + 10
    data[start : start + 30] = b"\xab" * 30
    path.write_bytes(bytes(data))
    assert part_damage(path) is None


def test_a_part_damaged_inside_stops_the_report_naming_it_and_what_to_do(tmp_path: Path) -> None:
    """Was: the scan ended with pyarrow's own error ("Couldn't deserialize thrift: ... Deserializing page header
    failed.", over two lines, naming no file). Doing what the message says scans that image again."""
    from test_scan_support import mean_scorer_factory

    from edgeae.scan.run import EngineOptions, scan_archive
    from edgeae.scan.state import ScanStateError

    arc, out = _archive(tmp_path / "arc", 2), tmp_path / "o"
    kw = dict(engine=EngineOptions(workers=0), progress=False, scorer_factory=mean_scorer_factory)
    assert scan_archive(arc, "orbital-gray-vae", out, **kw)["done"] == 2
    part = next((out / "parts").glob("img_1-*.parquet"))
    _damage_inside(part, "page")
    with pytest.raises(ScanStateError) as info:
        scan_archive(arc, "orbital-gray-vae", out, **kw)
    text = str(info.value)
    assert text.startswith(f"{part} is damaged (OSError: Couldn't deserialize thrift") and "\n" not in text
    assert text.endswith("): delete it and run the same command again to scan its image again")
    part.unlink()
    r = scan_archive(arc, "orbital-gray-vae", out, **kw)
    assert (r["images_scanned"], r["done"], r["failed"], r["patches_in_results"]) == (1, 2, 0, 2)


def test_a_part_whose_footer_is_damaged_and_has_no_record_is_scanned_again(tmp_path: Path, caplog) -> None:
    """A part written but not yet recorded (a crash between the two) is recovered from its footer's row count; a
    footer damaged inside ended the resume with pyarrow's error. It is now treated as a damaged part: its image is
    scanned again, with a warning naming the file."""
    import logging

    from test_scan_state_s35 import _done

    store, entries = _done(tmp_path)
    store.manifest.write_text(store.manifest.read_text().splitlines()[1] + "\n")  # a.png's line lost
    part = store.part_path(entries[0].key)
    _damage_inside(part, "footer")
    with caplog.at_level(logging.WARNING):
        assert store.pending(entries) == [entries[0]]
    assert f"a.png: {part} is damaged (OSError: Couldn't deserialize thrift" in caplog.text
    assert "it is scanned again" in caplog.text and "a.png" not in store.reconcile(entries)


def test_the_context_knn_ranking_records_a_part_damaged_inside_as_failed_in_one_line(tmp_path: Path) -> None:
    """Was: recorded as failed with pyarrow's two-line error, naming no file. (One patch: nothing to rank it against,
    so no kNN runs; the part is read back all the same.)"""
    from edgeae.scan.archive import ArchiveEntry
    from edgeae.scan.context import rank_set
    from edgeae.scan.pipeline import ImageResult, TopK
    from edgeae.scan.state import ScanStore

    vae = ModelSpec(path="m.pt", model_id="m", artifact_hash="0" * 64, kind="vae", patch=32, channels=1, latent=4)
    store = ScanStore(tmp_path / "out", ScanConfig(vae, stride=32, score="context-knn"))
    (tmp_path / "a.png").write_bytes(b"x")  # not an image: the ranking would keep its scores, without thumbnails
    e, xy = ArchiveEntry(tmp_path / "a.png", "a.png"), np.zeros(1, np.int32)
    lat = np.ones((1, 1, 4), np.float32)
    store.write_result(
        e, ImageResult("a.png", xy, xy, np.ones(1, np.float32), np.ones(1), TopK.empty(1, 32), 0, latents=lat)
    )
    part = store.part_path(e.key)
    _damage_inside(part, "page")
    info = rank_set(store, [e])
    assert (info["images"], info["images_failed"]) == (0, 1)
    error = store.records()["a.png"].error
    want = f"part unreadable for --score context-knn ({part} is damaged: OSError: Couldn't deserialize thrift"
    assert error.startswith(want) and error.endswith("); scan it again with --retry-failed") and "\n" not in error
    assert not part.exists()  # its outputs removed with the failure

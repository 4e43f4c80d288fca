"""Session 37 fixer t1 (review r7 #1, #2, #4): scan.json's options for ``--model zoo:NAME`` pick the same file again;
``**`` globs with a wildcard part between two ``**`` do not name files through a link loop; the finalize cost script
rescans its base when the stride or archive changed and scans with the runtime an ``edgeae[scan]`` install has."""

from __future__ import annotations

import importlib.util
import json
import shlex
from pathlib import Path

import pytest


# -- #1: scan.json's recorded options for zoo:NAME ---------------------------------------------------------------------
def test_zoo_prefixed_name_is_recorded_with_the_options_that_pick_its_file() -> None:
    """``--model zoo:NAME`` (README: another spelling of the zoo name) was recorded as ``--model zoo:NAME`` alone: the
    runtime and precision that picked the file were left out, as for ``zoo:NAME/FILE`` (one exact file)."""
    from edgeae.scan.scoring import ModelSpec, resolve_model

    name = "orbital-gray-vae"
    assert resolve_model(f"zoo:{name}", runtime="onnx").options() == f"--model zoo:{name} --runtime onnx"
    if importlib.util.find_spec("ai_edge_litert") is not None:
        assert resolve_model(f"zoo:{name}", runtime="tflite").options() == f"--model zoo:{name} --runtime tflite"
    fp32 = ModelSpec(f"/s/{name}.pt", name, "0" * 64, "vae", 64, 1, given=f"zoo:{name}", zoo=True)
    assert fp32.options() == f"--model zoo:{name} --precision fp32"
    one_file = f"zoo:{name}/{name}.int8.onnx"  # names one file: nothing else picks it
    exact = ModelSpec(f"/s/{name}.int8.onnx", name, "0" * 64, "vae", 64, 1, given=one_file, zoo=True)
    assert exact.options() == f"--model {one_file}"


def test_the_recorded_options_of_a_zoo_prefixed_name_resume_the_same_folder(tmp_path, moon) -> None:  # type: ignore[no-untyped-def]
    """Scanned with ``--model zoo:NAME --runtime R`` where ``--runtime auto`` picks the other int8 file on this CPU: the
    recorded options, rerun in the same folder, were refused ("this run would score with ...")."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("ai_edge_litert")
    from edgeae.cli import main
    from edgeae.imageio import write_image
    from edgeae.scan.scoring import shipped_int8

    name = "orbital-gray-vae"
    auto = shipped_int8(name)
    if auto is None:
        pytest.skip(f"no shipped int8 artifact of {name} that passed parity")
    other = "onnx" if auto.suffix == ".tflite" else "tflite"  # the file --runtime auto does not pick here
    for i in range(2):
        write_image(tmp_path / "arc" / f"c{i}.png", moon[64 * i : 64 * i + 64, :64].copy())
    out = tmp_path / "out"
    common = [str(tmp_path / "arc"), "--out", str(out), "--workers", "0", "--no-progress"]
    assert main(["scan", *common, "--model", f"zoo:{name}", "--runtime", other, "--max-images", "1"]) == 0
    options = json.loads((out / "scan.json").read_text())["config"]["model"]["options"]
    assert options == f"--model zoo:{name} --runtime {other}"
    assert main(["scan", *common, *shlex.split(options)]) == 0  # accepted: resumes with the same file
    report = json.loads((out / "report.json").read_text())
    assert report["done"] == 2 and report["artifact"] == f"{name}.int8.{other}"


# -- #4: scripts/scan_finalize_cost.py's base scan ---------------------------------------------------------------------
def _cost_script(path: Path | None = None):  # type: ignore[no-untyped-def]
    import importlib.util

    path = path or Path(__file__).resolve().parents[1] / "scripts" / "scan_finalize_cost.py"
    spec = importlib.util.spec_from_file_location("scan_finalize_cost_t1", path)
    assert spec is not None and spec.loader is not None
    cost = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cost)
    return cost


def test_the_finalize_cost_base_is_scanned_again_when_its_stride_or_archive_changed(tmp_path, moon) -> None:  # type: ignore[no-untyped-def]
    """``WORK/base`` was reused whatever ``--stride``/``--archive`` this run had: the JSON then gave this run's
    stride and archive for parts scanned with others."""
    from test_scan_support import mean_scorer_factory

    from edgeae.imageio import write_image
    from edgeae.scan.run import EngineOptions

    cost = _cost_script()
    for i in range(2):
        write_image(tmp_path / "a1" / f"c{i}.png", moon[64 * i : 64 * i + 128, :128].copy())
    write_image(tmp_path / "a2" / "d.png", moon[256:384, :128].copy())
    model = Path(__file__).resolve().parents[1] / "edgeae/zoo/artifacts/orbital-gray-vae/orbital-gray-vae.int8.onnx"
    kw = dict(model=str(model), engine=EngineOptions(workers=0), scorer_factory=mean_scorer_factory)
    work = tmp_path / "work"

    def base(archive: Path, stride: int) -> tuple[int, int]:
        out = cost.scan_base(archive, work, stride, **kw)
        report = json.loads((out / "report.json").read_text())
        stride_now = json.loads((out / "scan.json").read_text())["config"]["stride"]
        return report["done"], stride_now

    assert base(tmp_path / "a1", 32) == (2, 32)
    (work / "base" / "kept").write_text("")
    assert base(tmp_path / "a1", 32) == (2, 32) and (work / "base" / "kept").exists()  # the same settings: reused
    assert base(tmp_path / "a1", 64) == (2, 64)  # another stride: scanned again
    assert not (work / "base" / "kept").exists()
    assert base(tmp_path / "a2", 64) == (1, 64)  # another archive: scanned again, its image alone
    assert cost.base_settings(work)["archive"] == str((tmp_path / "a2").resolve())
    (work / "base.json").unlink()  # a base made before base.json: settings unknown, scanned again
    (work / "base" / "kept").write_text("")
    assert base(tmp_path / "a2", 64) == (1, 64) and not (work / "base" / "kept").exists()


def test_the_finalize_cost_base_scans_with_the_runtime_an_edgeae_scan_install_has(tmp_path, moon, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """It asked for ``runtime="tflite"``: ai-edge-litert comes only with the flight-tflite and export extras, so on an
    ``edgeae[scan]`` install (onnxruntime) the base scan ended in "no shipped int8 tflite artifact"."""
    import importlib.util

    from test_scan_support import mean_scorer_factory

    from edgeae.imageio import write_image
    from edgeae.scan.run import EngineOptions

    pytest.importorskip("onnxruntime")
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "ai_edge_litert" else find_spec(n, *a))
    cost = _cost_script()
    write_image(tmp_path / "arc" / "c.png", moon[:128, :128].copy())
    out = cost.scan_base(tmp_path / "arc", tmp_path / "w", 64, engine=EngineOptions(workers=0),
                         scorer_factory=mean_scorer_factory)  # fmt: skip
    assert json.loads((out / "report.json").read_text())["done"] == 1
    got = cost.base_settings(tmp_path / "w")
    assert got["runtime"] == "auto" and got["file"] == "orbital-gray-vae.int8.onnx"
    assert got["options"] == "--model orbital-gray-vae --runtime onnx"  # in the JSON: the file the parts came from


# -- #2: a wildcard part between two ** and a link loop ----------------------------------------------------------------
def test_a_wildcard_part_between_two_double_stars_does_not_name_files_through_a_link_loop(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """In ``arc/**/*/**/*.png`` the ``*`` took the loop link ``a/up -> arc`` and a fresh walk listed the archive again
    under ``a/up/...``: ``b/s/i.png`` was named ``a/up/b/s/i.png`` (the name that sorts first); ``**/**`` listed each
    file three times (a "listed more than once" warning)."""
    from edgeae.scan.archive import walk_archive
    from edgeae.scan.archive_walk import _glob_tree

    arc = tmp_path / "arc"
    for d in "ab":
        (arc / d / "s").mkdir(parents=True)
        (arc / d / "s" / "i.png").write_bytes(b"x")
    (arc / "top.png").write_bytes(b"x")
    (arc / "a" / "up").symlink_to(arc, target_is_directory=True)
    assert [e.name for e in walk_archive(f"{arc}/**/*/**/*.png")] == ["a/s/i.png", "b/s/i.png"]
    assert [e.name for e in walk_archive(f"{arc}/*/**/*.png")] == ["a/s/i.png", "b/s/i.png"]
    assert sorted(_glob_tree(f"{arc}/**/*/*.png")) == [f"{arc}/a/s/i.png", f"{arc}/b/s/i.png"]  # not a/up/top.png
    assert sorted(_glob_tree(f"{arc}/**/**/*.png")) == [f"{arc}/{n}" for n in ("a/s/i.png", "b/s/i.png", "top.png")]

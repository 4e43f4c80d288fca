"""The export audit's defects, one test each: re-exports keep the folder, failures say so everywhere, converter
errors are recorded, ORT files record their weights, names, calibration provenance, and plain error messages.

Tiny models (a few seconds per export); the zoo's lite VAE where a real checkpoint is needed (its patches only).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from edgeae.export import api  # noqa: E402
from edgeae.export import calibration as cal  # noqa: E402
from edgeae.export.api import ExportConfig, export_checkpoint  # noqa: E402
from edgeae.export.parity import ParityError  # noqa: E402
from edgeae.firmware_sim.runtime import load_artifact, read_metadata  # noqa: E402

from edgeae.metadata import ModelMetadata  # noqa: E402
from edgeae.models.cae import CAE, CAEConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FAST = {"n_calib": 16, "n_test": 12, "latency": False}
CHECKPOINT = "c0ffee" * 10 + "c0ff"  # a source checkpoint SHA-256, as export_model records it


def _tiny_cae() -> tuple[CAE, ModelMetadata]:
    torch.manual_seed(0)
    cfg = CAEConfig(channels=3, widths=(4, 8, 8, 8), tile=128)
    meta = ModelMetadata(
        kind="cae",
        architecture=cfg.to_dict(),
        input_shape=(-1, 3, 128, 128),
        channels=3,
        source_checkpoint_hash=CHECKPOINT,
    )
    return CAE(cfg).eval(), meta


@pytest.fixture(scope="module")
def cae_patches(data_root: Path) -> tuple[np.ndarray, np.ndarray]:
    _, meta = _tiny_cae()
    calib = cal.model_patches(meta, cal.split_images(meta, "val"), 16, seed=0)
    test = cal.model_patches(meta, cal.split_images(meta, "test"), 12, seed=1)
    return calib, test


def _export(out: Path, patches: tuple[np.ndarray, np.ndarray], **config: Any) -> Any:
    model, meta = _tiny_cae()
    cfg = ExportConfig(**{"kinds": ("cae",), **FAST, **config})
    return export_checkpoint(model, meta, out, "tiny", *patches, cfg)


# ---------------------------------------------------------------------------------------------- 1: --out kept


def test_reexport_into_a_folder_keeps_its_files_and_records(cae_patches: Any, tmp_path: Path) -> None:
    """Audit 1: an int8 export into a folder holding an fp32 export deleted the fp32 .onnx (the int8 file's
    intermediate was written to, and removed from, the user's folder) and replaced parity.json."""
    out = tmp_path / "x8"
    _export(out, cae_patches, formats=("onnx",), precisions=("fp32",))
    fp32 = out / "tiny.fp32.onnx"
    before = fp32.read_bytes()
    report = _export(out, cae_patches, formats=("onnx",), precisions=("int8",))
    assert fp32.read_bytes() == before  # still there, untouched
    assert sorted(p.name for p in out.glob("*.onnx")) == ["tiny.fp32.onnx", "tiny.int8.onnx"]
    data = json.loads((out / "parity.json").read_text())
    assert data["passed"] and data["failures"] == []
    recs = {Path(a["path"]).name: a for a in data["artifacts"]}
    assert set(recs) == {"tiny.fp32.onnx", "tiny.int8.onnx"}
    assert recs["tiny.fp32.onnx"]["earlier_run"]["test"]["n_patches"] == 12  # carried, with its run's facts
    assert recs["tiny.int8.onnx"]["earlier_run"] is None
    assert "yes (earlier run)" in (out / "parity.md").read_text()
    assert [a.precision for a in report.artifacts] == ["fp32", "int8"]
    # a record whose file changed since is not carried
    fp32.write_bytes(before[:-1] + b"\x00")
    _export(out, cae_patches, formats=("onnx",), precisions=("int8",))
    names = [Path(a["path"]).name for a in json.loads((out / "parity.json").read_text())["artifacts"]]
    assert names == ["tiny.int8.onnx"]


def _records_match_files(out: Path) -> None:
    """Every record of ``out``'s parity.json that names a file names one with the recorded SHA-256 (what the
    flight runtime's guard checks an artifact against)."""
    from edgeae.metadata import sha256_file

    if not (out / "parity.json").is_file():
        return
    for a in json.loads((out / "parity.json").read_text())["artifacts"]:
        if a["path"] and (out / Path(a["path"]).name).is_file():
            assert sha256_file(out / Path(a["path"]).name) == a["sha256"], a["path"]


def test_parity_json_matches_the_folder_at_every_moment(
    cae_patches: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review E4: each file was placed in --out as soon as it passed, parity.json written only after the last
    one: an export stopped in between (Ctrl-C during the next conversion) left the new file beside the old
    report's SHA-256, and the flight runtime refused the new file as damaged."""
    from edgeae.export import build, outdir

    out = tmp_path / "stop"
    _export(out, cae_patches, formats=("onnx",), precisions=("int8",))
    before = (out / "tiny.int8.onnx").read_bytes()
    place = outdir.place

    def checked_place(*args: Any, **kwargs: Any) -> Path:
        _records_match_files(out)
        placed = place(*args, **kwargs)
        _records_match_files(out)
        return placed

    def ctrl_c(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(outdir, "place", checked_place)
    monkeypatch.setattr(build, "ort_with_metadata", ctrl_c)
    calib, test = cae_patches
    with pytest.raises(KeyboardInterrupt):  # other calibration patches: another int8 file, then Ctrl-C
        _export(out, (calib[:8], test), formats=("onnx", "ort"), precisions=("int8",))
    assert (out / "tiny.int8.onnx").read_bytes() != before
    _records_match_files(out)
    data = json.loads((out / "parity.json").read_text())
    assert [Path(a["path"]).name for a in data["artifacts"]] == ["tiny.int8.onnx"]
    assert data["unfinished"] == 1 and data["passed"] is False  # the report says the run stopped
    assert "**UNFINISHED**: this export stopped with 1 artifact(s) still to make" in (out / "parity.md").read_text()
    assert sorted(p.name for p in out.iterdir()) == ["parity.json", "parity.md", "tiny.int8.onnx"]


def test_an_interrupted_copy_leaves_no_partial_file(
    cae_patches: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review E4: a copy into --out cut short by Ctrl-C left a hidden ``.NAME.partial`` file behind (so did a
    report write)."""
    from edgeae.export import outdir, report

    copyfile = shutil.copyfile

    def cut_short(src: Any, dst: Any, *args: Any, **kwargs: Any) -> Any:
        if not str(dst).endswith(".partial"):
            return copyfile(src, dst, *args, **kwargs)
        Path(dst).write_bytes(Path(src).read_bytes()[:100])
        raise KeyboardInterrupt

    monkeypatch.setattr(outdir.shutil, "copyfile", cut_short)
    out = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        _export(out, cae_patches, formats=("onnx",), precisions=("fp32",))
    assert not [p.name for p in out.iterdir() if p.name.endswith(".partial")]
    assert not list(out.glob("*.onnx"))

    def replace_cut(src: Any, dst: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(report.os, "replace", replace_cut)
    with pytest.raises(KeyboardInterrupt):
        report.write_report(report.ExportReport("m", str(out), {}, {}), out)
    assert not [p.name for p in out.iterdir() if p.name.endswith(".partial")]


def test_another_models_export_in_out_is_refused(cae_patches: Any, tmp_path: Path) -> None:
    """Review E3: exporting model B into a folder holding model A's export dropped every record of A, leaving
    A's files in --out without records. Now refused before any work, in one line naming both."""
    from edgeae.export import outdir

    from edgeae.cli import main

    out = tmp_path / "a"
    _export(out, cae_patches, formats=("onnx",), precisions=("fp32",))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    model, meta = _tiny_cae()
    cfg = ExportConfig(kinds=("cae",), formats=("onnx",), precisions=("fp32",), **FAST)
    with pytest.raises(outdir.OtherModelsExport) as err:
        export_checkpoint(model, meta, out, "other", *cae_patches, cfg)
    msg = str(err.value)
    assert "\n" not in msg and "holds the export of tiny" in msg and "exporting other there" in msg
    assert "choose another --out" in msg
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # A's export untouched
    assert main(["export", "orbital-gray-vae-lite", "--no-latency", "--out", str(out)]) == 2  # CLI: at once
    # a folder whose earlier export left no file of it behind is not refused
    for p in out.glob("*.onnx"):
        p.unlink()
    export_checkpoint(model, meta, out, "other", *cae_patches, cfg)
    assert json.loads((out / "parity.json").read_text())["model"] == "other"


# ------------------------------------------------------------------------------------------- 2: failures


def test_a_failed_check_fails_the_artifact_the_report_and_its_name(
    cae_patches: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Audit 2: an int8 input range that misses [0, 1] left ``parity.passed`` true, no top-level verdict, no
    pass/fail column in parity.md, the file under its normal name, and an ORT checker field that was not true."""
    monkeypatch.setattr("edgeae.export.artifact_check.covers_unit_range", lambda r, tol=1e-6: False)
    out = tmp_path / "fail"
    with pytest.raises(ParityError, match="does not cover") as err:
        _export(out, cae_patches, formats=("onnx", "ort"), precisions=("int8",))
    data = json.loads((out / "parity.json").read_text())
    assert data["passed"] is False and len(data["failures"]) == 2
    for a in data["artifacts"]:
        assert a["passed"] is False and a["parity"]["passed"] is False, a
        assert any("does not cover [0, 1]" in f for f in a["failures"])
    assert sorted(p.name for p in out.iterdir() if p.suffix in (".onnx", ".ort")) == [
        "tiny.int8.FAILED.onnx",
        "tiny.int8.FAILED.ort",
    ]
    assert (out / "tiny.int8.FAILED.required_operators.config").is_file()
    ort = next(a for a in data["artifacts"] if a["format"] == "ort")
    assert "converted from" in ort["checker"]
    md = (out / "parity.md").read_text()
    assert "**FAILED**: 2 of 2 artifacts" in md
    header = next(line for line in md.splitlines() if line.startswith("| artifact | kind"))
    assert "| budget | passed |" in header
    row = next(line for line in md.splitlines() if line.startswith("| tiny.int8.FAILED.onnx"))
    assert "≥ 40 dB" in row and "**NO**" in row
    assert err.value.report.passed is False


def test_cli_prints_failed_to_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Audit 2: ``FAILED ...`` went to stdout with the results."""
    from edgeae.export.report import ArtifactRecord, ExportReport

    from edgeae.cli import main

    rec = ArtifactRecord(
        "o/m.int8.FAILED.onnx", "vae", "onnx", "int8", 10, "ab", "onnx.checker full_check", {"passed": False},
        passed=False, failures=["onnx int8 conversion failed: TypeError: boom"],
    )  # fmt: skip
    report = ExportReport("m", "o", {"source": "s", "n_patches": 8}, {"source": "t", "n_patches": 8}, [rec])

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise api.ExportFailed("export failed its checks: m.int8.FAILED.onnx: boom", report)

    monkeypatch.setattr(api, "export_model", fail)
    monkeypatch.chdir(tmp_path)
    assert main(["export", "orbital-gray-vae-lite", "--no-latency", "--out", "o"]) == 1
    cap = capsys.readouterr()
    assert "edgeae export: FAILED: export failed its checks" in cap.err
    assert "edgeae export: FAILED" not in cap.out
    assert "o/m.int8.FAILED.onnx  FAILED: onnx int8 conversion failed: TypeError: boom" in cap.out


# --------------------------------------------------------------------------------------------- 3: U-Nets


@pytest.mark.parametrize("variant", ["unet", "unet2", "unet2h"])
def test_every_unet_variant_skips_tflite(variant: str) -> None:
    """Audit 3: the plain ``unet`` variant (rover-rgb-gtunet, orbital-gray-gtunet) has the same pre-fill as the
    gated ones but was sent to litert-torch, which crashed the whole export."""
    from edgeae.export.graphs import graphs_for

    from edgeae.models.cae import build

    cfg = CAEConfig(3, (4, 8), 64, variant)
    meta = ModelMetadata(kind="cae", architecture=cfg.to_dict(), input_shape=(-1, 3, 64, 64), channels=3)
    (g,) = graphs_for(build(cfg), meta)
    assert "pre-fill" in g.no_tflite and variant in g.no_tflite
    seed = CAEConfig(3, (4, 8), 64)
    (g,) = graphs_for(CAE(seed), meta.replace(architecture=seed.to_dict()), ("cae",))
    assert g.no_tflite == ""


def test_a_converter_error_is_recorded_and_the_report_written(
    cae_patches: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Audit 3: a converter exception escaped as a 90-line traceback, with no parity.json and unchecked files."""
    from edgeae.export import tflite_export

    def crash(*args: Any, **kwargs: Any) -> Any:
        raise TypeError("broadcast_in_dim shape must have every element be nonnegative, got (-2, 3, 64, 64).\nmore")

    monkeypatch.setattr(tflite_export, "export_tflite_fp32", crash)
    out = tmp_path / "crash"
    with pytest.raises(ParityError, match="broadcast_in_dim"):
        _export(out, cae_patches, formats=("onnx", "tflite"), precisions=("fp32",))
    data = json.loads((out / "parity.json").read_text())
    recs = {a["format"]: a for a in data["artifacts"]}
    assert recs["onnx"]["passed"] and (out / "tiny.fp32.onnx").is_file()
    assert recs["tflite"]["passed"] is False and recs["tflite"]["size_bytes"] == 0
    (why,) = recs["tflite"]["failures"]
    assert why == "tflite fp32 conversion failed: TypeError: broadcast_in_dim shape must have every element be " + (
        "nonnegative, got (-2, 3, 64, 64)."
    )
    assert not list(out.glob("*.tflite")) and "(not written)" in (out / "parity.md").read_text()


def test_a_converter_failure_records_no_file(
    cae_patches: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Review E5: a converter's failure was recorded at ``out/NAME.FAILED.ext`` though nothing was written, so
    the record named another run's file of that name (and hid it from the "without a record" warning)."""
    from edgeae.export import tflite_export

    from edgeae.cli import main

    def crash(*args: Any, **kwargs: Any) -> Any:
        raise TypeError("boom")

    monkeypatch.setattr(tflite_export, "export_tflite_fp32", crash)
    out = tmp_path / "left"
    out.mkdir()
    leftover = out / "tiny.fp32.FAILED.tflite"
    leftover.write_bytes(b"another run's file")
    with pytest.raises(ParityError, match="boom"):
        _export(out, cae_patches, formats=("onnx", "tflite"), precisions=("fp32",))
    data = json.loads((out / "parity.json").read_text())
    rec = next(a for a in data["artifacts"] if a["format"] == "tflite")
    assert rec["path"] == "" and rec["name"] == "tiny.fp32.tflite" and rec["sha256"] == ""
    assert data["failures"] == ["tiny.fp32.tflite: tflite fp32 conversion failed: TypeError: boom"]
    assert leftover.read_bytes() == b"another run's file"
    assert "| tiny.fp32.tflite (not written) |" in (out / "parity.md").read_text()
    warned = [r.getMessage() for r in caplog.records if "without a record" in r.getMessage()]
    assert len(warned) == 1 and warned[0].endswith("tiny.fp32.FAILED.tflite")
    # the CLI says the same
    report = api.ExportReport("tiny", str(out), {"source": "s", "n_patches": 8}, {"source": "t", "n_patches": 8})
    report.artifacts = [api.ArtifactRecord.from_dict(rec)]

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise api.ExportFailed("export failed its checks", report)

    monkeypatch.setattr(api, "export_model", fail)
    assert main(["export", "orbital-gray-vae-lite", "--no-latency", "--out", str(tmp_path / "o")]) == 1


# ------------------------------------------------------------------------------------- 4 and 13: ORT files


def test_int8_ort_records_its_weight_width_and_converts_quietly(
    cae_patches: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Audit 4: int8 .ort files had no ``int8_weights`` entry, so the runtime and the board check took them for
    full-range files. Audit 13: every ORT export logged "Created config in /tmp/edgeae-ort-…" and the operator
    config named that temporary path."""
    caplog.set_level(logging.INFO)  # what a run without -v would show, and more
    out = tmp_path / "ort"
    (rec,) = _export(out, cae_patches, formats=("ort",), precisions=("int8",)).artifacts
    assert read_metadata(rec.path).extra["int8_weights"] == "7-bit (reduce_range)"
    assert not any("Created config" in r.getMessage() for r in caplog.records)
    config = (out / "tiny.int8.required_operators.config").read_text()
    tmp = tempfile.gettempdir()  # where the converter's temporary folder was ($TMPDIR, else /tmp: audit h5, s40)
    assert "# - tiny.int8.ort\n" in config and tmp not in config and "/tmp" not in config
    assert sorted(p.name for p in out.iterdir()) == [
        "parity.json",
        "parity.md",
        "tiny.int8.ort",
        "tiny.int8.required_operators.config",
    ]  # no intermediate ONNX


# ----------------------------------------------------------------------------------- 5, 7, 9: export_model


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """export_model up to the conversion: what it would hand export_checkpoint."""
    seen: dict[str, Any] = {}

    def capture(model: Any, meta: Any, out_dir: Any, name: str, calib: Any, test: Any, config: Any, **kw: Any) -> Any:
        seen.update(kw, name=name, calib=calib)
        return None

    monkeypatch.setattr(api, "export_checkpoint", capture)
    return seen


LITE = ExportConfig(formats=("onnx",), n_calib=8, n_test=8, latency=False, tail_check=False)


def test_zoo_prefix_is_not_part_of_file_names(data_root: Path, tmp_path: Path, captured: dict[str, Any]) -> None:
    """Audit 5: ``zoo:orbital-gray-vae-lite`` wrote ``zoo:orbital-gray-vae-lite.fp32.onnx`` (no colon on FAT)."""
    api.export_model("zoo:orbital-gray-vae-lite", tmp_path, LITE)
    assert captured["name"] == "orbital-gray-vae-lite"
    assert api.artifact_stem("a:b.pt", Path("/x/a:b.pt")) == "a_b"


def test_calibrating_on_the_test_split_is_flagged(
    data_root: Path, tmp_path: Path, captured: dict[str, Any], caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Audit 7: ``--calib`` on test-split images still claimed "held-out" parity and stored the path as typed."""
    from edgeae.export.report import ExportReport, markdown_table

    from edgeae.checkpoint import load_checkpoint
    from edgeae.predictor import resolve_model_path

    meta = load_checkpoint(resolve_model_path("orbital-gray-vae-lite", want="checkpoint")).metadata
    calib = tmp_path / "calib"
    calib.mkdir()
    for f in cal.split_images(meta, "test")[:2]:  # copies: found by content, not by path
        shutil.copy(f, calib / f"copy_{f.name}")
    monkeypatch.chdir(tmp_path)
    api.export_model("orbital-gray-vae-lite", tmp_path / "out", dataclasses.replace(LITE, calib=Path("calib")))
    assert captured["calib_source"] == str(calib.resolve())
    prov = captured["provenance"]
    assert prov["test"]["held_out"] is False and len(prov["calibration"]["overlaps"]) == 2
    assert re.fullmatch(r"[0-9a-f]{64}", prov["calibration"]["files_sha256"])
    assert any("not measured on held-out data" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    report = ExportReport(
        "m", "o", {"source": "s", "n_patches": 8, **prov["calibration"]}, {"source": "t", **prov["test"]}
    )
    md = markdown_table(report)
    assert "held-out" not in md and "NOT held out" in md


def test_rgb_calibration_images_for_a_grey_model_are_counted(
    data_root: Path, tmp_path: Path, captured: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """Audit 9: an RGB --calib folder for a grey model was converted without a word."""
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"rgb{i}.png"), rng.integers(0, 255, (96, 96, 3), dtype=np.uint8))
    api.export_model("orbital-gray-vae-lite", tmp_path / "out", dataclasses.replace(LITE, calib=tmp_path))
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "channel" in r.getMessage()]
    assert len(warned) == 1 and "3 of 3 calibration images have 3 channel(s), the model takes 1" in warned[0]
    assert captured["provenance"]["calibration"]["converted_channels"] == 3


def test_calibration_provenance_reads_only_the_sampled_files(
    data_root: Path, tmp_path: Path, captured: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review E2: the calibration provenance hashed every byte of every file under --calib (minutes on a folder
    of GB-size products). Now only the files the calibration patches come from (at most n_calib) are read; the
    others are listed by path, size and modification time."""
    import edgeae.metadata

    cv2 = pytest.importorskip("cv2")
    calib = tmp_path / "calib"
    (calib / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    files = [calib / f"f{i:02d}.png" for i in range(12)] + [calib / "sub" / f"g{i}.png" for i in range(8)]
    for f in files:
        cv2.imwrite(str(f), rng.integers(0, 255, (96, 96), dtype=np.uint8))
    hashed: list[Path] = []
    read: list[Path] = []
    sha256_file, read_pixels = edgeae.metadata.sha256_file, cal.read_pixels

    def counting_sha(p: Any) -> str:
        hashed.append(Path(p))
        return sha256_file(p)

    def counting_read(p: Path, channels: int) -> Any:
        read.append(Path(p))
        return read_pixels(p, channels)

    monkeypatch.setattr(edgeae.metadata, "sha256_file", counting_sha)
    monkeypatch.setattr(cal, "read_pixels", counting_read)
    api.export_model("orbital-gray-vae-lite", tmp_path / "out", dataclasses.replace(LITE, calib=calib))
    in_calib = [p for p in read if calib in p.parents]
    sampled = cal.sampled_files(sorted(files), LITE.n_calib, LITE.calib_tail)
    assert sorted(set(in_calib)) == sampled and 0 < len(sampled) <= LITE.n_calib  # what the calibration read
    assert sorted(hashed) == sampled  # hashed: those alone (no test or tail frame has their size)
    facts = captured["provenance"]["calibration"]
    assert facts["n_files"] == 20 and facts["n_hashed"] == len(sampled)
    # contents of the sampled files, the others by name, size and time
    same = cal.provenance(sorted(files), [], [], sampled)["calibration"]
    assert same["files_sha256"] == facts["files_sha256"] and same["others_sha256"] == facts["others_sha256"]
    other = files[-1]
    st = other.stat()
    import os

    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    touched = cal.provenance(sorted(files), [], [], sampled)["calibration"]
    assert touched["files_sha256"] == facts["files_sha256"] and touched["others_sha256"] != facts["others_sha256"]
    sampled[0].write_bytes(sampled[0].read_bytes() + b"\0")
    changed = cal.provenance(sorted(files), [], [], sampled)["calibration"]
    assert changed["files_sha256"] != facts["files_sha256"]


@pytest.mark.parametrize(("count", "tail", "n_files"), [(8, 0.25, 20), (40, 0.5, 30), (16, 0.0, 4), (128, 0.25, 200)])
def test_sampled_files_are_the_files_calibration_reads(
    count: int, tail: float, n_files: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review E2: what provenance hashes is what :func:`model_patches` reads (random and busiest patches)."""
    read: list[Path] = []

    def fake_read(p: Path, channels: int) -> tuple[np.ndarray, np.ndarray]:
        read.append(Path(p))
        return np.full((16, 16, 1), int(p.stem) / 255, np.float32), np.ones((16, 16), bool)

    monkeypatch.setattr(cal, "read_pixels", fake_read)
    files = [Path(f"{i:03d}.png") for i in range(n_files)]
    meta = ModelMetadata(kind="vae", architecture={"channels": 1, "patch": 8}, input_shape=(-1, 1, 8, 8), channels=1)
    cal.model_patches(meta, files, count, tail=tail)
    assert sorted(set(read)) == cal.sampled_files(files, count, tail)


# ----------------------------------------------------------------------------------------- 8: small images


def test_calibration_image_smaller_than_a_patch_is_named(tmp_path: Path) -> None:
    """Audit 8: "need at least one array to stack" instead of the file and its size."""
    cv2 = pytest.importorskip("cv2")
    small = tmp_path / "thumb.png"
    cv2.imwrite(str(small), np.full((30, 40), 128, np.uint8))
    meta = ModelMetadata(kind="vae", architecture={"channels": 1, "patch": 64}, input_shape=(-1, 1, 64, 64), channels=1)
    with pytest.raises(ValueError, match=r"thumb\.png: image 40×30 is smaller than one 64×64 patch"):
        cal.model_patches(meta, [small], 64, tail=0.25)  # 16 tail patches: 11 synthetic, 5 busy real ones


# ------------------------------------------------------------------------------------------- 12: --out


def test_unwritable_out_is_refused_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Audit 12: a folder that cannot be written was found only after ~16 s of calibration and conversion."""
    from edgeae.cli import main

    def no_work(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("export started before --out was found unwritable")

    monkeypatch.setattr(api, "export_model", no_work)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["export", "orbital-gray-vae-lite", "--no-latency", "--out", str(blocker / "ro")]) == 2


# ------------------------------------------------------------------------------ 13: tools on broken files


def _broken(folder: Path) -> Path:
    folder.mkdir()
    (folder / "empty.onnx").write_bytes(b"")
    (folder / "tflite_as.onnx").write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(64))
    return folder


def test_latency_tool_names_broken_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Audit 13: ``python -m edgeae.export.latency bad`` printed a traceback ("No graph was found")."""
    from edgeae.export import latency

    assert latency.main([str(_broken(tmp_path / "bad"))]) == 1
    err = capsys.readouterr().err
    assert "empty.onnx: 0-byte file" in err
    assert "tflite_as.onnx: this is a TFLite flatbuffer (TFL3), not ONNX; rename it to tflite_as.tflite" in err
    assert "Traceback" not in err
    assert latency.main([str(tmp_path / "nowhere")]) == 2


def test_tail_tool_names_a_misnamed_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Audit 13: ``python -m edgeae.export.tail MODEL x.onnx`` with a TFLite file printed a protobuf traceback."""
    from edgeae.export import tail

    bad = _broken(tmp_path / "bad")
    assert tail.main(["orbital-gray-vae-lite", str(bad / "tflite_as.onnx")]) == 2
    assert "this is a TFLite flatbuffer (TFL3), not ONNX" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ 6: docs


def _tail_rows(model: str) -> dict[str, list[float]]:
    """(tail Spearman, top-16, top-64) per row of a shipped parity.md's tail table."""
    rows = {}
    for line in (ROOT / "edgeae" / "zoo" / "artifacts" / model / "parity.md").read_text().splitlines():
        m = re.match(r"\| ([^|]+) \| ([0-9.]+) \(\d+\) \| ([0-9.]+) \| ([0-9.]+) \|", line)
        if m:
            rows[m.group(1)] = [float(m.group(i)) for i in (2, 3, 4)]
    return rows


@pytest.mark.parametrize("model", ["orbital-gray-vae", "orbital-gray-vae-lite"])
def test_docs_quote_the_shipped_vae_tail_numbers(model: str) -> None:
    """Audit 6: docs/export.md gave the lite VAE's int8 ONNX terms-max tail as 0.998 / top-16 1.000 (its own
    parity.md: 0.9641 / 0.938) and stale full-VAE numbers. The docs quote ONNX / TFLite pairs per model."""
    rows = _tail_rows(model)
    docs = (ROOT / "docs" / "export.md").read_text()
    item = docs.split(f"\n- `{model}` int8 ONNX / TFLite: ")[1].split("\n- ")[0].split("\n\n")[0]
    parts = dict(zip(("score", "terms-max"), " ".join(item.split()).split("; terms-max: "), strict=True))
    for score, suffix in (("score", ""), ("terms-max", ", terms-max score")):
        onnx, tfl = rows[f"{model}.int8.onnx{suffix}"], rows[f"{model}.int8.tflite{suffix}"]
        for i, what in enumerate(("tail Spearman", "top-16 overlap", "top-64 overlap")):
            assert f"{what} {onnx[i]:.3f} / {tfl[i]:.3f}" in parts[score], (model, score, what, parts[score])


def test_docs_name_the_positional_tflite_outputs() -> None:
    """Audit 6: the docs said the VAE's outputs are named score, x_hat, mu; in TFLite files they are not."""
    interpreter = pytest.importorskip("ai_edge_litert.interpreter")
    path = ROOT / "edgeae" / "zoo" / "artifacts" / "orbital-gray-vae-lite" / "orbital-gray-vae-lite.int8.tflite"
    outputs = interpreter.Interpreter(model_path=str(path)).get_signature_list()["serving_default"]["outputs"]
    assert outputs == ["output_0", "output_1", "output_2"]
    docs = (ROOT / "docs" / "export.md").read_text()
    assert "`output_0`, `output_1`, `output_2`" in docs
    assert load_artifact(path).output_names == ("score", "x_hat", "mu")  # the loader names them by position

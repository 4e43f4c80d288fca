"""Audit a3 (exporting one's own model), session 33: one test per defect fixed.

Tiny models and generated images (no project data): each test runs in seconds and stops before any conversion.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
cv2 = pytest.importorskip("cv2")

from edgeae.export import api, outdir  # noqa: E402
from edgeae.export import calibration as cal  # noqa: E402
from edgeae.export.api import ExportConfig  # noqa: E402
from edgeae.export.report import ArtifactRecord, ExportReport, markdown_table  # noqa: E402

from edgeae.metadata import METADATA_KEY, MetadataError, ModelMetadata  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHA_A, SHA_B = "a" * 64, "b" * 64
FAST = ExportConfig(formats=("onnx",), precisions=("fp32",), n_calib=16, n_test=8, latency=False)


def _tiny_checkpoint(path: Path) -> Path:
    """A 1-channel seed CAE (tile 128) saved as ``edgeae train`` saves one."""
    from edgeae.checkpoint import save_checkpoint
    from edgeae.models.cae import CAE, CAEConfig

    torch.manual_seed(0)
    cfg = CAEConfig(channels=1, widths=(4, 8, 8, 8), tile=128)
    meta = ModelMetadata(kind="cae", architecture=cfg.to_dict(), input_shape=(-1, 1, 128, 128), channels=1)
    return save_checkpoint(path, CAE(cfg).eval(), meta)


def _images(folder: Path, n: int, h: int, w: int, channels: int = 1) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(n * h + w)
    shape = (h, w) if channels == 1 else (h, w, channels)
    for i in range(n):
        cv2.imwrite(str(folder / f"i{i}.png"), rng.integers(1, 255, shape, dtype=np.uint8))
    return folder


def _artifact(path: Path, kind: str, checkpoint: str) -> Path:
    """A small valid ONNX file with edgeae metadata (an Identity graph): what read_metadata needs."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1, 64, 64])
    y = helper.make_tensor_value_info("x_hat", TensorProto.FLOAT, [None, 1, 64, 64])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["x_hat"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    meta = ModelMetadata(
        kind=kind, architecture={"channels": 1}, input_shape=(-1, 1, 64, 64), channels=1,
        source_checkpoint_hash=checkpoint,
    )  # fmt: skip
    helper.set_model_props(model, {METADATA_KEY: meta.to_json()})
    onnx.save(model, str(path))
    return path


def _report(out: Path, model: str, files: list[Path], passed: bool = True, failures: list[str] | None = None) -> None:
    from edgeae.metadata import sha256_file

    recs = [
        {"path": str(f), "name": f.name, "sha256": sha256_file(f), "passed": passed, "failures": failures or []}
        for f in files
    ]
    (out / "parity.json").write_text(json.dumps({"model": model, "artifacts": recs}))


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any calibration or conversion is a failure: the refusals under test come before them."""

    def work(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the export started its work before refusing")

    monkeypatch.setattr(api, "export_checkpoint", work)
    monkeypatch.setattr(cal, "model_patches", work)


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """export_model up to the conversion: what it would hand export_checkpoint."""
    seen: dict[str, Any] = {}

    def capture(model: Any, meta: Any, out_dir: Any, name: str, calib: Any, test: Any, config: Any, **kw: Any) -> Any:
        seen.update(kw, name=name, calib=calib)
        return None

    monkeypatch.setattr(api, "export_checkpoint", capture)
    return seen


# ------------------------------------------------------------------ 1, 6: another model's export in --out


def test_another_checkpoints_export_of_the_same_name_is_refused(tmp_path: Path, no_work: None) -> None:
    """Item 1: runs/vae1/best.pt exported into runs/cae1/best.pt's folder replaced the CAE's best.fp32.onnx (both
    are named ``best``; only the names were compared). Now the source checkpoint decides, before any work."""
    out = tmp_path / "mix"
    out.mkdir()
    _report(out, "best", [_artifact(out / "best.fp32.onnx", "cae", SHA_A)])
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    ckpt = _tiny_checkpoint(tmp_path / "runs" / "vae1" / "best.pt")
    with pytest.raises(outdir.OtherModelsExport) as err:
        api.export_model(ckpt, out, FAST)
    msg = str(err.value)
    assert "\n" not in msg and "best from another checkpoint" in msg and "best.fp32.onnx: a cae made from aaaa" in msg
    assert "choose another --out" in msg
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    with pytest.raises(outdir.OtherModelsExport):
        outdir.refuse_other_model(out, "best", SHA_B)
    outdir.refuse_other_model(out, "best", SHA_A)  # the same checkpoint: an earlier export of it, kept


def test_an_unreadable_report_does_not_hide_another_models_files(tmp_path: Path) -> None:
    """Item 6: with ``{not json`` as parity.json the other-model refusal was skipped and a new export added its
    files beside another model's. Now the artifact files of the folder decide."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "parity.json").write_text("{not json")
    _artifact(out / "other.int8.onnx", "vae", SHA_A)
    with pytest.raises(outdir.OtherModelsExport, match=r"another model \(other\.int8\.onnx; its parity\.json cannot"):
        outdir.refuse_other_model(out, "tiny")
    (out / "other.int8.onnx").unlink()
    _artifact(out / "tiny-encoder.int8.onnx", "cae-encoder", SHA_A)
    outdir.refuse_other_model(out, "tiny", SHA_A)  # its own files, same checkpoint: carried on, with a warning
    with pytest.raises(outdir.OtherModelsExport, match="tiny from another checkpoint"):
        outdir.refuse_other_model(out, "tiny", SHA_B)


# ------------------------------------------------------------------------- 2, 12: small tail frames, --out


def test_tail_frames_of_too_few_patches_are_refused_before_any_work(tmp_path: Path, no_work: None) -> None:
    """Item 2: a folder-trained CAE without --test converted for ~24 s, then "Spearman needs at least 3 scores".
    Item 12: export_model left the --out folder it made behind, empty (the CLI leaves nothing)."""
    ckpt = _tiny_checkpoint(tmp_path / "best.pt")
    calib = _images(tmp_path / "calib", 2, 256, 256)
    test = _images(tmp_path / "test", 1, 128, 256)  # 2 tiles of 128 px
    out = tmp_path / "new" / "out"
    with pytest.raises(ValueError) as err:
        api.export_model(ckpt, out, dataclasses.replace(FAST, calib=calib, test=test))
    msg = str(err.value)
    assert "\n" not in msg and "tail frames (i0.png) give 2 patch(es) of 128 px" in msg and "--test DIR" in msg
    assert not (tmp_path / "new").exists()
    with pytest.raises(ValueError, match="tail frames"):  # the library entry point checks the same
        api.check_tail_frames([("a.png", np.zeros((2, 1, 128, 128), np.float32))], 128)


def test_a_failed_export_model_leaves_no_empty_out(tmp_path: Path) -> None:
    """Item 12: export_model left the --out folder it made behind, empty, when it failed (the CLI leaves none)."""
    ckpt = _tiny_checkpoint(tmp_path / "best.pt")
    calib = tmp_path / "calib"
    calib.mkdir()
    cv2.imwrite(str(calib / "thumb.png"), np.full((30, 40), 128, np.uint8))
    test = _images(tmp_path / "test", 1, 256, 256)
    with pytest.raises(ValueError, match=r"thumb\.png: image 40×30 is smaller than one 128×128 patch"):
        api.export_model(ckpt, tmp_path / "new" / "out", dataclasses.replace(FAST, calib=calib, test=test))
    assert not (tmp_path / "new").exists()
    kept = tmp_path / "kept"  # a folder that was there before stays
    kept.mkdir()
    with pytest.raises(ValueError):
        api.export_model(ckpt, kept, dataclasses.replace(FAST, calib=calib, test=test))
    assert kept.is_dir()


def test_export_checkpoint_leaves_no_empty_out_when_refused(tmp_path: Path) -> None:
    """Item 12, the in-memory entry point."""
    from edgeae.models.cae import CAE, CAEConfig

    cfg = CAEConfig(channels=1, widths=(4, 8, 8, 8), tile=128)
    meta = ModelMetadata(kind="cae", architecture=cfg.to_dict(), input_shape=(-1, 1, 128, 128), channels=1)
    patches = np.zeros((8, 1, 128, 128), np.float32)
    with pytest.raises(ValueError, match="tail frames"):
        api.export_checkpoint(CAE(cfg), meta, tmp_path / "a" / "b", "m", patches, patches, FAST,
                              tail_frames=[("f.png", patches[:1])])  # fmt: skip
    assert not (tmp_path / "a").exists()


# ------------------------------------------------------------------------------------- 3: NaN weights


def test_a_checkpoint_with_nan_weights_is_refused_naming_the_tensor(tmp_path: Path) -> None:
    """Item 3: NaN weights were exported (failing only at the PSNR), reconstructed black and scored highest."""
    from edgeae.checkpoint import load_checkpoint
    from edgeae.predictor import load_predictor

    path = _tiny_checkpoint(tmp_path / "ok.pt")
    blob = torch.load(path, weights_only=True)
    name = next(k for k, v in blob["state_dict"].items() if v.is_floating_point())
    blob["state_dict"][name].view(-1)[0] = float("nan")
    bad = tmp_path / "nanw.pt"
    torch.save(blob, bad)
    load_checkpoint(path)  # finite: loads
    for load in (load_checkpoint, load_predictor):
        with pytest.raises(MetadataError) as err:
            load(bad)
        msg = str(err.value)
        assert "\n" not in msg and f"weight tensor {name!r} holds 1 non-finite value(s)" in msg and "nanw.pt" in msg


# ----------------------------------------------------------------------------- 4: no-data images


def _nan_tiff(path: Path) -> Path:
    tifffile = pytest.importorskip("tifffile")
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, np.full((256, 256), np.nan, np.float32))
    return path


VAE_META = ModelMetadata(kind="vae", architecture={"channels": 1, "patch": 64}, input_shape=(-1, 1, 64, 64), channels=1)


def test_an_image_without_valid_patches_is_skipped_and_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Item 4: an all-NaN calibration image gave all-zero patches (no-data positions were taken when none was
    valid), without a word, and the int8 ranges came from them."""
    nan = _nan_tiff(tmp_path / "a_nan.tif")
    good = _images(tmp_path / "good", 1, 256, 256) / "i0.png"
    caplog.set_level(logging.WARNING)
    patches = cal.model_patches(VAE_META, [nan, good], 32, tail=0.25)
    assert len(patches) == 32  # the skipped image's share came from the other
    real = patches[:24]  # the random real patches (then 8 synthetic extremes)
    assert (real.reshape(len(real), -1).max(axis=1) > 0).all()  # none all-zero (a no-data patch)
    warned = [r.getMessage() for r in caplog.records if "a_nan.tif" in r.getMessage()]
    assert len(warned) == 1 and "no 64×64 patch with 99% valid pixels" in warned[0] and "skipped" in warned[0]
    with pytest.raises(ValueError, match=r"none of the 1 image\(s\) read .*a_nan\.tif.* has a 64×64 patch"):
        cal.model_patches(VAE_META, [nan], 16, tail=0.25)


def test_a_calibration_set_without_valid_patches_is_refused_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 4: ``--calib`` of all-NaN images exported and passed (exit 0); now refused naming the set."""

    def work(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("converted a model calibrated on no data")

    monkeypatch.setattr(api, "export_checkpoint", work)
    ckpt = _tiny_checkpoint(tmp_path / "best.pt")
    calib = _nan_tiff(tmp_path / "nanall" / "n0.tif").parent
    test = _images(tmp_path / "test", 1, 256, 256)
    with pytest.raises(ValueError) as err:
        api.export_model(ckpt, tmp_path / "out", dataclasses.replace(FAST, calib=calib, test=test))
    msg = str(err.value)
    assert (
        "\n" not in msg and msg.startswith(f"calibration set {calib.resolve()} (--calib): none of") and "n0.tif" in msg
    )


# ---------------------------------------------------------------------- 5: files that failed their export


def test_a_file_its_export_failed_is_refused_at_boot_and_warned_about_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Item 5: an ``*.FAILED.*`` file passed by path was flown, benched and used on the ground without a word."""
    from edgeae.firmware_sim import guard, runtime

    from edgeae import predictor

    out = tmp_path / "exp"
    out.mkdir()
    bad = _artifact(out / "m.int8.FAILED.onnx", "vae", SHA_A)
    good = _artifact(out / "m.fp32.onnx", "vae", SHA_A)
    (out / "parity.json").write_text(
        json.dumps(
            {
                "model": "m",
                "artifacts": [
                    {"path": str(bad), "sha256": guard.hashlib.sha256(bad.read_bytes()).hexdigest(), "passed": False,
                     "failures": ["int8 PSNR 12.0 dB (budget ≥ 40 dB)"]},
                    {"path": str(good), "sha256": guard.hashlib.sha256(good.read_bytes()).hexdigest(),
                     "parity": {"passed": True}},  # a record from before ``passed``
                ],
            }
        )
    )  # fmt: skip
    with pytest.raises(guard.ModelRefused) as err:  # the flight boot
        guard.ModelGuard("anomaly", bad, lambda p, t: object(), 1).load()
    msg = str(err.value)
    assert "\n" not in msg and str(out / "parity.json") in msg and "int8 PSNR 12.0 dB (budget ≥ 40 dB)" in msg
    assert guard.ModelGuard("anomaly", good, lambda p, t: object(), 1).load() is not None
    caplog.set_level(logging.WARNING)
    assert guard.recorded_hash_mismatch(bad) is None  # bench, the board check: go on, with a warning
    monkeypatch.setattr(runtime, "load_artifact", lambda p, threads=None: "loaded")
    assert predictor.load_predictor(bad) == "loaded"  # edgeae score / reconstruct: the same
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 2 and all("says it failed its checks (int8 PSNR" in w for w in warned)
    caplog.clear()
    predictor.load_predictor(good)
    assert guard.recorded_hash_mismatch(good) is None and not caplog.records


# --------------------------------------------------------------------------------- 7: n-calib shortfall


def test_a_calibration_set_smaller_than_asked_is_said(
    tmp_path: Path, captured: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """Item 7: 108 of 128 calibration patches without a word (the busiest-patch tail truncated per image)."""
    ckpt = _tiny_checkpoint(tmp_path / "best.pt")
    calib = _images(tmp_path / "calib", 1, 256, 256)  # 4 whole tiles; the tail asks 21 busiest real ones
    test = _images(tmp_path / "test", 1, 256, 256)
    caplog.set_level(logging.WARNING)
    api.export_model(ckpt, tmp_path / "out", dataclasses.replace(FAST, calib=calib, test=test, n_calib=128))
    assert len(captured["calib"]) == 111 and captured["provenance"]["calibration"]["n_requested"] == 128
    assert any("111 patches, not the 128 asked for (--n-calib)" in r.getMessage() for r in caplog.records)
    report = ExportReport("m", "o", {"source": "s", "n_patches": 63, "n_requested": 64}, {"source": "t"})
    assert "calibration: 63 patches (of 64 asked for" in markdown_table(report)
    report.calibration.pop("n_requested")
    assert "calibration: 63 patches from s." in markdown_table(report)


# ------------------------------------------------------------------------- 8, 9: parity.md on small runs


def _tail_record() -> ArtifactRecord:
    tail = {"tail_spearman": 1.0, "tail_n": 8.0, "overlap_16": 1.0, "overlap_64": 1.0, "ties": 0.0, "passed": True}
    parity = {"outputs": {"x_hat": {"psnr_db": 50.0, "max_abs": 0.01}}, "main_output": "x_hat", "tail": tail}
    return ArtifactRecord("o/m.int8.onnx", "vae", "onnx", "int8", 1024, "ab", "c", parity)


def test_a_top_k_overlap_over_whole_frames_is_marked_not_informative() -> None:
    """Item 8: frames of ~11 patches gave top-16 / top-64 overlap 1.000 in parity.md, as if measured."""
    report = ExportReport("m", "o", {"source": "s", "n_patches": 8}, {"source": "t"}, [_tail_record()])
    report.tail = {"frames": ["a.png", "b.png"], "patches": 20, "frame_patches": [11, 9]}
    md = markdown_table(report)
    row = next(line for line in md.splitlines() if line.startswith("| m.int8.onnx | 1.0000"))
    assert "| 1.000 † | 1.000 † |" in row
    assert "† top-16 overlap: every tail frame has at most 16 patches (11, 9)" in md and "not informative" in md
    report.tail["frame_patches"] = [11, 40]
    md = markdown_table(report)
    assert "† top-16 overlap: 1 of 2 tail frames have at most 16 patches (11)" in md
    assert "top-64 overlap: every tail frame" in md
    report.tail["frame_patches"] = [100, 80]
    assert "†" not in markdown_table(report)


def test_the_export_records_the_patches_of_each_tail_frame(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Item 8: what the note above reads (``tail.frame_patches`` in parity.json)."""
    from edgeae.models.cae import CAE, CAEConfig

    monkeypatch.setattr(api, "_export_one", lambda run, g, f, p: (_tail_record(), None))
    cfg = CAEConfig(channels=1, widths=(4, 8, 8, 8), tile=128)
    meta = ModelMetadata(kind="cae", architecture=cfg.to_dict(), input_shape=(-1, 1, 128, 128), channels=1)
    patches = np.zeros((8, 1, 128, 128), np.float32)
    frames = [("a.png", patches[:5]), ("b.png", patches[:3])]
    config = dataclasses.replace(FAST, kinds=("cae",), strict=False)
    report = api.export_checkpoint(CAE(cfg), meta, tmp_path, "m", patches, patches, config, tail_frames=frames)
    assert report.tail["frame_patches"] == [5, 3]
    assert json.loads((tmp_path / "parity.json").read_text())["tail"]["frame_patches"] == [5, 3]


def test_no_latency_says_so_instead_of_columns_of_dashes() -> None:
    """Item 9: --no-latency printed the latency header and four columns of "–" in parity.md."""
    report = ExportReport("m", "o", {"source": "s", "n_patches": 8}, {"source": "t"}, [_tail_record()])
    md = markdown_table(report)
    assert "Latency: not measured (--no-latency)." in md and "–" not in md and "b1 t1" not in md
    header, rule, row = [line for line in md.splitlines() if line.startswith("|")][:3]
    assert header.count("|") == rule.count("|") == row.count("|") == 12
    report.artifacts[0].latency = [{"batch": 1, "threads": 1, "median_ms_per_image": 0.5}]
    md = markdown_table(report)
    assert "Latency: median ms per image" in md and "| b1 t1 | b1 t2 | b32 t1 | b32 t2 |" in md and "| 0.50 |" in md


# ------------------------------------------------------------------------------------ 10: RGBA images


def test_rgba_calibration_images_are_counted_with_their_alpha(
    tmp_path: Path, captured: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """Item 10: "1 of 1 calibration images have 3 channel(s)" for a 4-channel RGBA file."""
    ckpt = _tiny_checkpoint(tmp_path / "best.pt")
    calib = _images(tmp_path / "rgba", 1, 256, 256, channels=4)
    test = _images(tmp_path / "test", 1, 256, 256)
    caplog.set_level(logging.WARNING)
    api.export_model(ckpt, tmp_path / "out", dataclasses.replace(FAST, calib=calib, test=test))
    warned = [r.getMessage() for r in caplog.records if "channel" in r.getMessage()]
    assert (
        len(warned) == 1
        and "1 of 1 calibration images have 4 (RGB + alpha) channel(s), the model takes 1" in (warned[0])
    )
    assert cal.channel_mismatches([calib / "i0.png"], 1) == [(calib / "i0.png", 3, True)]
    assert cal.channels_text(1, True) == "2 (grey + alpha)" and cal.channels_text(3, False) == "3"


# ------------------------------------------------------------------------------------------- 11: docs


def test_docs_say_what_a_vae_records_of_its_training_files() -> None:
    """Item 11: docs/export.md said a VAE records only the number of its training files; a folder-trained VAE
    records their names (edgeae.train.vae: ``recorded(train_files) if config.is_folder``)."""
    text = " ".join((ROOT / "docs" / "export.md").read_text().split())
    assert "a VAE records only their number there" not in text
    assert "a VAE trained on a named dataset records only their number" in text


def test_firmware_sim_run_refuses_a_model_its_export_rejected_before_the_boot(tmp_path: Path) -> None:
    """``--anomaly-model X.FAILED.onnx`` was warned about, then refused at boot, and the mission flew without
    scoring (exit 0): named on the command line it is refused as a damaged file is (exit 2)."""
    from edgeae.firmware_sim import cli_overrides, guard
    from edgeae.firmware_sim.mission import MissionError

    out = tmp_path / "exp"
    out.mkdir()
    bad = _artifact(out / "m.int8.FAILED.onnx", "vae", SHA_A)
    entry = {"path": str(bad), "sha256": guard.hashlib.sha256(bad.read_bytes()).hexdigest(), "passed": False,
             "failures": ["int8 PSNR 12.0 dB (budget ≥ 40 dB)"]}  # fmt: skip
    (out / "parity.json").write_text(json.dumps({"model": "m", "artifacts": [entry]}))
    with pytest.raises(MissionError, match=r"--anomaly-model .*says it failed its checks \(int8 PSNR") as err:
        cli_overrides._check_named_model("--anomaly-model", str(bad))
    assert "does not fly a file its own export rejected" in str(err.value)

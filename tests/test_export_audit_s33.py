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
INT8 = ("fp32", "int8")  # the calibration set matters to int8 artifacts only (an fp32-only export draws none)


def _tiny_checkpoint(path: Path) -> Path:
    """A 1-channel seed CAE (tile 128) saved as ``edgeae train`` saves one."""
    from edgeae.checkpoint import save_checkpoint
    from edgeae.models.cae import CAE, CAEConfig

    torch.manual_seed(0)
    cfg = CAEConfig(channels=1, widths=(4, 8, 8, 8), tile=128)
    meta = ModelMetadata(kind="cae", architecture=cfg.to_dict(), input_shape=(-1, 1, 128, 128), channels=1)
    return save_checkpoint(path, CAE(cfg).eval(), meta)


def _tiny_vae_checkpoint(path: Path) -> Path:
    """A 1-channel VAE (patch 64) saved as ``edgeae train-vae`` saves one."""
    from edgeae.checkpoint import save_checkpoint
    from edgeae.models.vae import VAE, VAEConfig

    torch.manual_seed(0)
    cfg = VAEConfig(channels=1, widths=(4, 8, 8, 8), latent=16, patch=64, score_lambda=5.0)
    meta = ModelMetadata(kind="vae", architecture=cfg.to_dict(), input_shape=(-1, 1, 64, 64), channels=1)
    return save_checkpoint(path, VAE(cfg).eval(), meta)


def _load_meta(path: Path) -> ModelMetadata:
    from edgeae.checkpoint import load_checkpoint

    return load_checkpoint(path).metadata


def _images(folder: Path, n: int, h: int, w: int, channels: int = 1) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(n * h + w)
    shape = (h, w) if channels == 1 else (h, w, channels)
    for i in range(n):
        cv2.imwrite(str(folder / f"i{i}.png"), rng.integers(1, 255, shape, dtype=np.uint8))
    return folder


def _artifact(path: Path, kind: str, checkpoint: str | None, architecture: dict[str, Any] | None = None) -> Path:
    """A small valid ONNX file with edgeae metadata (an Identity graph): what read_metadata needs."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1, 64, 64])
    y = helper.make_tensor_value_info("x_hat", TensorProto.FLOAT, [None, 1, 64, 64])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["x_hat"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    meta = ModelMetadata(
        kind=kind, architecture=architecture or {"channels": 1}, input_shape=(-1, 1, 64, 64), channels=1,
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
    are named ``best``; only the names were compared). Now another model of the same name (another kind or
    architecture, or another source checkpoint path) is refused, before any work."""
    cae = _tiny_checkpoint(tmp_path / "runs" / "cae1" / "best.pt")
    out = tmp_path / "mix"
    out.mkdir()
    arch = _load_meta(cae).architecture
    _report(out, "best", [_artifact(out / "best.fp32.onnx", "cae", SHA_A, arch)])  # from before ``source``
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    vae = _tiny_vae_checkpoint(tmp_path / "runs" / "vae1" / "best.pt")
    with pytest.raises(outdir.OtherModelsExport) as err:
        api.export_model(vae, out, FAST)
    msg = str(err.value)
    assert "\n" not in msg and "another model named best" in msg
    assert "best.fp32.onnx is a cae artifact, this checkpoint a vae" in msg and "choose another --out" in msg
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    cae_b = outdir.Origin(SHA_B, "cae", arch)
    with pytest.raises(outdir.OtherModelsExport, match=r"best\.fp32\.onnx has another architecture: widths"):
        outdir.refuse_other_model(out, "best", outdir.Origin(SHA_B, "cae", {**arch, "widths": [8, 8, 8, 8]}))
    outdir.refuse_other_model(out, "best", outdir.Origin(SHA_A, "vae", {}))  # the same checkpoint bytes: kept
    outdir.refuse_other_model(out, "best", cae_b)  # no recorded source: a CAE of this architecture is this one


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
    outdir.refuse_other_model(out, "tiny", outdir.Origin(SHA_A, "vae"))  # its own files, same checkpoint
    outdir.refuse_other_model(out, "tiny", outdir.Origin(SHA_B, "cae"))  # a retrained CAE: replaced, with a warning
    with pytest.raises(outdir.OtherModelsExport, match=r"tiny-encoder\.int8\.onnx is a cae-encoder artifact, this"):
        outdir.refuse_other_model(out, "tiny", outdir.Origin(SHA_B, "vae"))


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
        api.export_model(
            ckpt, tmp_path / "new" / "out", dataclasses.replace(FAST, calib=calib, test=test, precisions=INT8)
        )
    assert not (tmp_path / "new").exists()
    kept = tmp_path / "kept"  # a folder that was there before stays
    kept.mkdir()
    with pytest.raises(ValueError):
        api.export_model(ckpt, kept, dataclasses.replace(FAST, calib=calib, test=test, precisions=INT8))
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
        api.export_model(ckpt, tmp_path / "out", dataclasses.replace(FAST, calib=calib, test=test, precisions=INT8))
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
    int8 = dataclasses.replace(FAST, calib=calib, test=test, n_calib=128, precisions=("fp32", "int8"))
    api.export_model(ckpt, tmp_path / "out", int8)
    assert len(captured["calib"]) == 111 and captured["provenance"]["calibration"]["n_requested"] == 128
    assert any("111 patches, not the 128 asked for (--n-calib)" in r.getMessage() for r in caplog.records)
    # an fp32-only export calibrates nothing: no warning about calibration images (audit a2, session 35), none
    # looked for (review r4: a model whose val files were all gone was refused), no patches drawn
    caplog.clear()
    api.export_model(ckpt, tmp_path / "out32", dataclasses.replace(int8, precisions=("fp32",)))
    assert not [r for r in caplog.records if "calib" in r.getMessage()]
    assert len(captured["calib"]) == 0
    assert captured["provenance"]["calibration"]["files_sha256"] is None  # not the SHA-256 of nothing (audit a5)
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
    api.export_model(
        ckpt, tmp_path / "out", dataclasses.replace(FAST, calib=calib, test=test, precisions=("fp32", "int8"))
    )
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
    assert "the flight runtime does not fly it" in str(err.value)


# ------------------------------------------------------- review r3: a re-export into its own folder, FAILED files


def _fake_export_one(run: Any, graph: Any, fmt: str, precision: str) -> tuple[ArtifactRecord, Path]:
    """``api._export_one`` without the conversion: a small artifact with the graph's metadata, passed."""
    name = f"{run.name}{api.SUFFIX[graph.kind]}.{precision}.{fmt}"
    meta = graph.metadata
    path = _artifact(run.work / "final" / name, graph.kind, meta.source_checkpoint_hash, meta.architecture)
    return ArtifactRecord("", graph.kind, fmt, precision, 0, "", "c", {"passed": True}, name=name), path


def _retrain(path: Path) -> None:
    """The checkpoint trained further: the same path, other weights."""
    from edgeae.checkpoint import load_checkpoint, save_checkpoint

    ck = load_checkpoint(path)
    with torch.no_grad():
        for w in ck.model.parameters():
            w.add_(0.01)
    save_checkpoint(path, ck.model, ck.metadata)


def _records(out: Path) -> dict[str, dict[str, Any]]:
    return {d["name"]: d for d in json.loads((out / "parity.json").read_text())["artifacts"]}


def test_a_retrained_checkpoint_is_re_exported_into_its_own_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """r3 item 1: the fix of a3 item 1 refused runs/x/best.pt trained further and exported again into its own --out
    ("holds the export of best from another checkpoint"). Now it is the same model: its stale records are dropped
    with the warning, its files replaced; ``source`` is recorded. r4 item 1: the ones not rewritten (here the int8)
    stayed under their names, unrecorded, and flew; now they are moved aside as ``.STALE.`` and refused at boot."""
    from edgeae.firmware_sim import guard

    from edgeae.metadata import sha256_file

    monkeypatch.setattr(api, "_export_one", _fake_export_one)
    ckpt = _tiny_checkpoint(tmp_path / "runs" / "x" / "best.pt")
    calib, test = _images(tmp_path / "calib", 1, 256, 256), _images(tmp_path / "test", 1, 256, 256)
    cfg = dataclasses.replace(FAST, calib=calib, test=test, tail_check=False, kinds=("cae",))
    out = tmp_path / "exp"
    api.export_model(ckpt, out, dataclasses.replace(cfg, precisions=("fp32", "int8")))
    old = sha256_file(out / "best.fp32.onnx")
    _retrain(ckpt)
    caplog.set_level(logging.WARNING)
    report = api.export_model(ckpt, out, cfg)  # refused before the fix
    assert [a.name for a in report.artifacts] == ["best.fp32.onnx"]
    assert json.loads((out / "parity.json").read_text())["source"] == str(ckpt.resolve())
    assert sha256_file(out / "best.fp32.onnx") != old  # replaced by the new checkpoint's file
    assert _records(out)["best.fp32.onnx"]["sha256"] == sha256_file(out / "best.fp32.onnx")
    warned = [r.getMessage() for r in caplog.records]
    assert any("1 earlier record(s) not carried" in w and "best.int8.onnx (made from another checkpoint)" in w
               for w in warned)  # fmt: skip
    assert any("1 file(s) of best made from another checkpoint" in w and "best.int8.onnx -> best.int8.STALE.onnx" in w
               for w in warned)  # fmt: skip
    assert not (out / "best.int8.onnx").exists() and (out / "best.int8.STALE.onnx").is_file()  # nothing deleted
    assert "moved aside (named .STALE." in str(guard.parity_failure(out / "best.int8.STALE.onnx"))


def test_a_re_export_leaves_no_earlier_checkpoints_file_under_its_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """r4 item 1: runs/x/best.pt retrained and re-exported (all three CAE kinds, fp32 and int8) whose decoder int8
    failed: the new file went to ``.FAILED.``, the old checkpoint's best-decoder.int8.onnx stayed under its name
    with no record (guard: None, first-load hash), so a split flight paired latents of two checkpoints. Now every
    file under a real name is the new checkpoint's, and a third export keeps the earlier ``.STALE.`` file."""
    from edgeae.firmware_sim import guard
    from edgeae.firmware_sim.runtime import read_metadata

    from edgeae.metadata import sha256_file

    fail = {"on": False}

    def fake(run: Any, graph: Any, fmt: str, precision: str) -> tuple[ArtifactRecord, Path]:
        rec, path = _fake_export_one(run, graph, fmt, precision)
        if fail["on"] and precision == "int8" and graph.kind == "cae-decoder":
            rec.parity, rec.passed = {"passed": False}, False
        return rec, path

    monkeypatch.setattr(api, "_export_one", fake)
    ckpt = _tiny_checkpoint(tmp_path / "runs" / "x" / "best.pt")
    calib, test = _images(tmp_path / "calib", 1, 256, 256), _images(tmp_path / "test", 1, 256, 256)
    kinds = ("cae", "cae-encoder", "cae-decoder")
    cfg = dataclasses.replace(FAST, calib=calib, test=test, tail_check=False, kinds=kinds, precisions=("fp32", "int8"))
    out = tmp_path / "exp"
    api.export_model(ckpt, out, cfg)
    old = sha256_file(ckpt)
    for stale_as in ("best-decoder.int8.STALE.onnx", "", "best-decoder.int8.STALE.2.onnx"):  # "": all pass
        _retrain(ckpt)
        fail["on"] = bool(stale_as)
        caplog.clear()
        caplog.set_level(logging.WARNING)
        api.export_model(ckpt, out, dataclasses.replace(cfg, strict=False))
        new = sha256_file(ckpt)
        names = {f.name: read_metadata(f).source_checkpoint_hash for f in out.iterdir() if f.suffix == ".onnx"}
        real = {k: v for k, v in names.items() if ".FAILED." not in k and ".STALE." not in k}
        assert len(real) == 5 + (not stale_as) and set(real.values()) == {new}, names  # all of this checkpoint
        assert all(guard.parity_failure(out / k) is None for k in real)
        moved = [r.getMessage() for r in caplog.records if "moved aside" in r.getMessage()]
        if stale_as:
            stale = out / stale_as
            assert names[stale.name] == old and names["best-decoder.int8.FAILED.onnx"] == new
            assert "moved aside (named .STALE." in str(guard.parity_failure(stale)) and stale.name not in _records(out)
            with pytest.raises(guard.ModelRefused, match="moved aside"):
                guard.ModelGuard("recon", stale, lambda p, t: object(), 1).load()
            assert len(moved) == 1 and f"best-decoder.int8.onnx -> {stale.name}" in moved[0] and "\n" not in moved[0]
            assert not any("files without a record" in r.getMessage() and stale.name in r.getMessage()
                           for r in caplog.records)  # fmt: skip
        else:
            assert not moved
        old = new
    assert names["best-decoder.int8.STALE.onnx"] != names["best-decoder.int8.STALE.2.onnx"]  # the first one kept


def test_the_boot_refuses_a_file_of_the_folders_model_its_export_does_not_record(tmp_path: Path) -> None:
    """r4 item 1, the backstop: a file named as one of the model of the parity.json beside it but without a record
    there (left by an earlier checkpoint, an interrupted export, a copy) flew on a first-load hash. Now refused."""
    from edgeae.firmware_sim import guard

    out = tmp_path / "exp"
    out.mkdir()
    recorded = _artifact(out / "m.fp32.onnx", "cae", SHA_A)
    _report(out, "m", [recorded])
    loose = _artifact(out / "m-decoder.int8.onnx", "cae-decoder", SHA_B)
    other = _artifact(out / "mission-model.int8.onnx", "vae", SHA_B)  # not of model m: not the export's business
    why = guard.parity_failure(loose)
    assert why is not None and "\n" not in why
    assert why.startswith(f"{loose} is not recorded by the export beside it ({out / 'parity.json'}, model m)")
    with pytest.raises(guard.ModelRefused, match="not recorded by the export beside it"):
        guard.ModelGuard("recon", loose, lambda p, t: object(), 1).load()
    assert guard.parity_failure(recorded) is None and guard.parity_failure(other) is None
    guard.ModelGuard("anomaly", recorded, lambda p, t: object(), 1).load()
    guard.ModelGuard("anomaly", other, lambda p, t: object(), 1).load()
    (out / "parity.json").write_text("{not json")  # a parity.json that cannot be read says nothing
    assert guard.parity_failure(loose) is None


def test_a_different_model_of_the_same_name_is_still_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """r3 item 1: what a3 item 1 refused stays refused: a VAE's best.pt into a CAE's best.pt folder (another kind),
    and another CAE of the same architecture from another path (the source parity.json records)."""
    monkeypatch.setattr(api, "_export_one", _fake_export_one)
    cae1 = _tiny_checkpoint(tmp_path / "runs" / "cae1" / "best.pt")
    calib, test = _images(tmp_path / "calib", 1, 256, 256), _images(tmp_path / "test", 1, 256, 256)
    cfg = dataclasses.replace(FAST, calib=calib, test=test, tail_check=False, kinds=("cae",))
    out = tmp_path / "exp"
    api.export_model(cae1, out, cfg)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    vae1 = _tiny_vae_checkpoint(tmp_path / "runs" / "vae1" / "best.pt")
    with pytest.raises(outdir.OtherModelsExport, match=r"best\.fp32\.onnx is a cae artifact, this checkpoint a vae"):
        api.export_model(vae1, out, cfg)
    cae2 = _tiny_checkpoint(tmp_path / "runs" / "cae2" / "best.pt")
    _retrain(cae2)
    with pytest.raises(outdir.OtherModelsExport) as err:
        api.export_model(cae2, out, cfg)
    msg = str(err.value)
    assert "\n" not in msg and f"made from {cae1.resolve()}, this export is of {cae2.resolve()}" in msg
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_benchmarks_rebuild_a_stale_zoo_cache_in_its_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """r3 item 1: benchmarks.artifacts.zoo_artifact re-exports a cache built from an older zoo checkpoint into the
    same folder (its parity.json from before ``source``): refused by a3's fix, now rebuilt."""
    from edgeae.export.data_plan import DataPlan
    from edgeae.firmware_sim.runtime import read_metadata

    from benchmarks import artifacts
    from edgeae.metadata import sha256_file
    from edgeae.predictor import resolve_model_path

    name = "orbital-gray-vae-lite"
    arch = _load_meta(resolve_model_path(name, want="checkpoint")).architecture
    monkeypatch.setattr(artifacts, "ART_DIR", tmp_path)
    monkeypatch.setattr(api, "_export_one", _fake_export_one)
    images = sorted(_images(tmp_path / "img", 1, 128, 128).iterdir())
    monkeypatch.setattr(cal, "plan_data", lambda *a, **k: DataPlan(images, "c", images, "t", [], []))
    folder = tmp_path / name
    folder.mkdir()
    stale = _artifact(folder / f"{name}.int8.onnx", "vae", SHA_A, {**arch, "score_lambda": 1.0})  # older λ too
    _report(folder, name, [stale])
    path = artifacts.zoo_artifact(name, kind="vae", fmt="onnx", precision="int8")  # OtherModelsExport before
    assert path == stale and read_metadata(path).source_checkpoint_hash == sha256_file(
        resolve_model_path(name, "checkpoint")
    )
    assert _records(folder)[stale.name]["sha256"] == sha256_file(path)
    assert json.loads((folder / "parity.json").read_text())["source"] == f"zoo:{name}"
    assert artifacts.is_fresh(name)


def test_a_failed_file_stays_refused_when_the_next_export_drops_its_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """r3 item 2: the next export into the folder drops every failed record while NAME.FAILED.EXT stays; the boot
    and ``firmware-sim run --anomaly-model`` then accepted it (no record: first-load hash), as they did a FAILED file
    copied to flight media without its parity.json. Its name now refuses it."""
    from edgeae.firmware_sim import cli_overrides, guard
    from edgeae.firmware_sim.mission import MissionError

    from edgeae.metadata import sha256_file

    monkeypatch.setattr(api, "_export_one", _fake_export_one)
    ckpt = _tiny_checkpoint(tmp_path / "best.pt")
    out = tmp_path / "exp"
    out.mkdir()
    bad = _artifact(out / "best.int8.FAILED.onnx", "cae", sha256_file(ckpt), _load_meta(ckpt).architecture)
    record = {"path": str(bad), "name": bad.name, "kind": "cae", "format": "onnx", "precision": "int8", "checker": "c",
              "size_bytes": bad.stat().st_size, "sha256": sha256_file(bad), "parity": {"passed": False},
              "passed": False, "failures": ["int8 PSNR 12.0 dB"]}  # fmt: skip
    (out / "parity.json").write_text(json.dumps({"model": "best", "artifacts": [record]}))  # run 1: its int8 failed
    assert "says it failed its checks (int8 PSNR 12.0 dB)" in str(guard.parity_failure(bad))
    calib, test = _images(tmp_path / "calib", 1, 256, 256), _images(tmp_path / "test", 1, 256, 256)
    caplog.set_level(logging.WARNING)
    api.export_model(ckpt, out, dataclasses.replace(FAST, calib=calib, test=test, tail_check=False, kinds=("cae",)))
    assert bad.name not in _records(out) and bad.is_file()  # run 2 dropped its record, the file stays
    assert any(f"{bad.name} (it failed its checks in that run)" in r.getMessage() for r in caplog.records)
    media = tmp_path / "media"
    media.mkdir()
    copied = media / bad.name  # on flight media without its parity.json
    copied.write_bytes(bad.read_bytes())
    for path in (bad, copied):
        why = f"{path} is a file its export rejected (named .FAILED. by edgeae export): re-export the model"
        assert guard.parity_failure(path) == why
        with pytest.raises(guard.ModelRefused) as err:  # the flight boot
            guard.ModelGuard("anomaly", path, lambda p, t: object(), 1).load()
        assert why in str(err.value) and "\n" not in str(err.value)
        with pytest.raises(MissionError) as err2:  # firmware-sim run --anomaly-model X.FAILED.onnx (exit 2)
            cli_overrides._check_named_model("--anomaly-model", str(path))
        assert str(err2.value).startswith(f"--anomaly-model {why}")
    assert guard.parity_failure(out / "best.fp32.onnx") is None
    guard.ModelGuard("anomaly", out / "best.fp32.onnx", lambda p, t: object(), 1).load()


def test_a_default_set_without_valid_patches_names_no_flag_the_user_did_not_give(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """r3 item 3: "calibration set orbital_gray val split (--calib): none of ..." when no --calib was given. The
    flag is now the remedy (given, it still names the set: the a3 item 4 test)."""
    from edgeae.export.data_plan import DataPlan

    def work(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("converted a model calibrated on no data")

    monkeypatch.setattr(api, "export_checkpoint", work)
    ckpt = _tiny_checkpoint(tmp_path / "best.pt")
    nan = [_nan_tiff(tmp_path / "nan" / "n0.tif")]
    good = sorted(_images(tmp_path / "good", 1, 256, 256).iterdir())
    for calib, test, flag, what in ((nan, good, "--calib", "calibration"), (good, nan, "--test", "parity test")):
        plan = DataPlan(calib, "orbital_gray val split", test, "orbital_gray test split", [], [])
        monkeypatch.setattr(cal, "plan_data", lambda *a, _plan=plan, **k: _plan)
        with pytest.raises(ValueError) as err:
            api.export_model(ckpt, tmp_path / "out", dataclasses.replace(FAST, tail_check=False, precisions=INT8))
        msg = str(err.value)
        split = "val" if flag == "--calib" else "test"
        assert msg.startswith(f"{what} set orbital_gray {split} split: none of the 1 image(s) read") and "\n" not in msg
        assert f"({flag})" not in msg and msg.endswith(f"to use images of your own, give {flag} DIR")

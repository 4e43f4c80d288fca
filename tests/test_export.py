"""Export routes: parity with PyTorch on real held-out patches, metadata inside, int8 input range, refusals.

Tiny-width models keep the default suite fast (litert conversion costs ~10 s per file); the full-size
zoo export is marked slow.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("litert_torch")

from edgeae.export import calibration as cal  # noqa: E402
from edgeae.export.api import ExportConfig, covers_unit_range, export_checkpoint  # noqa: E402
from edgeae.export.parity import BUDGETS, ParityError, check_parity  # noqa: E402
from edgeae.firmware_sim.runtime import load_artifact, read_metadata  # noqa: E402

from edgeae.metadata import MetadataError, ModelMetadata  # noqa: E402
from edgeae.models.cae import CAE, CAEConfig  # noqa: E402

FAST = {"n_calib": 16, "n_test": 12, "latency": False}


def _tiny_cae() -> tuple[CAE, ModelMetadata]:
    torch.manual_seed(0)
    cfg = CAEConfig(channels=3, widths=(4, 8, 8, 8), tile=128)
    meta = ModelMetadata(
        kind="cae",
        architecture=cfg.to_dict(),
        input_shape=(-1, 3, 128, 128),
        channels=3,
        mask={"pattern": "uniform", "destroyed": [0.5, 0.99]},
        training_data_hash="abc123",
    )
    return CAE(cfg).eval(), meta


def _tiny_vae() -> tuple[Any, ModelMetadata]:
    from edgeae.models.vae import VAE, VAEConfig

    torch.manual_seed(0)
    cfg = VAEConfig(channels=1, widths=(4, 8, 8, 8), latent=16, patch=64, score_lambda=0.5)
    meta = ModelMetadata(
        kind="vae",
        architecture=cfg.to_dict(),
        input_shape=(-1, 1, 64, 64),
        channels=1,
        score={"lambda": 0.5, "threshold": 12.0},
    )
    return VAE(cfg).eval(), meta


def _patches(meta: ModelMetadata, split: str, n: int, seed: int) -> np.ndarray:
    return cal.model_patches(meta, cal.split_images(meta, split), n, seed=seed)


@pytest.fixture(scope="module")
def cae_export(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, CAE]:
    model, meta = _tiny_cae()
    out = tmp_path_factory.mktemp("cae")
    config = ExportConfig(kinds=("cae",), **FAST)
    report = export_checkpoint(
        model, meta, out, "tiny", _patches(meta, "val", 16, 0), _patches(meta, "test", 12, 1), config
    )
    return report.to_dict(), out, model


def test_every_route_and_precision_within_budget(cae_export: tuple[dict, Path, CAE]) -> None:
    report, out, _ = cae_export
    made = {(a["format"], a["precision"]) for a in report["artifacts"]}
    assert made == {(f, p) for f in ("onnx", "ort", "tflite") for p in ("fp32", "int8")}
    for a in report["artifacts"]:
        psnr = a["parity"]["outputs"]["x_hat"]["psnr_db"]
        assert psnr >= BUDGETS[a["precision"]]["psnr_db"], a["path"]
        assert a["parity"]["passed"]
        assert Path(a["path"]).stat().st_size == a["size_bytes"]
    assert (out / "parity.md").read_text().count("| tiny.") == 6
    assert json.loads((out / "parity.json").read_text())["artifacts"][0]["sha256"]
    assert (out / "tiny.fp32.required_operators.config").is_file()


def test_int8_input_range_covers_unit_interval(cae_export: tuple[dict, Path, CAE]) -> None:
    """Fails if any int8 artifact's calibrated input quantiser clips part of [0, 1] (TOOLCHAIN.md trap)."""
    report, _, _ = cae_export
    int8 = [a for a in report["artifacts"] if a["precision"] == "int8"]
    assert len(int8) == 3
    for a in int8:
        assert covers_unit_range(a["input_range"]), (a["path"], a["input_range"])
        assert read_metadata(a["path"]).extra["calibration"]["input_range"] == a["input_range"]


def test_metadata_round_trip(cae_export: tuple[dict, Path, CAE]) -> None:
    report, _, _ = cae_export
    for a in report["artifacts"]:
        meta = read_metadata(a["path"])
        assert meta.kind == "cae" and meta.precision == a["precision"]
        assert meta.training_data_hash == "abc123"
        assert meta.mask == {"pattern": "uniform", "destroyed": [0.5, 0.99]}
        assert meta.extra["format"] == a["format"]
        assert load_artifact(a["path"]).metadata == meta


def test_artifacts_match_torch_on_a_real_crop(cae_export: tuple[dict, Path, CAE], rover_image_path: Path) -> None:
    _, out, model = cae_export
    crop = cal.extract_patches([rover_image_path], 3, 128, 1, seed=5)
    crop[:, :, ::2, ::3] = 0.0  # some destroyed pixels, as in flight
    with torch.inference_mode():
        ref = model(torch.from_numpy(crop)).numpy()
    for f in sorted(out.glob("tiny.*.*")):
        if f.suffix not in (".onnx", ".ort", ".tflite"):
            continue
        got = load_artifact(f, threads=1)(crop)
        precision = f.name.split(".")[1]
        err = float(np.mean((got - ref) ** 2))
        assert 10 * np.log10(1 / max(err, 1e-30)) >= BUDGETS[precision]["psnr_db"], f.name


def test_tflite_refuses_mismatch_and_runs_without_torch(cae_export: tuple[dict, Path, CAE]) -> None:
    _, out, _ = cae_export
    path = out / "tiny.int8.tflite"
    with pytest.raises(MetadataError, match="does not match the model's NHWC input"):
        load_artifact(path)(np.zeros((1, 1, 128, 128), np.float32))
    code = (
        "import sys, numpy as np\n"
        "from edgeae.firmware_sim.runtime import load_artifact\n"
        f"p = load_artifact({str(path)!r}, threads=1)\n"
        "y = p(np.full((3, 3, 128, 128), 0.5, np.float32))\n"
        "assert y.shape == (3, 3, 128, 128) and y.dtype == np.float32\n"
        "assert 'torch' not in sys.modules\n"
        "print(p.metadata.precision)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().endswith("int8")


def test_tflite_without_metadata_is_refused(cae_export: tuple[dict, Path, CAE], tmp_path: Path) -> None:
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    _, out, _ = cae_export
    model = schema.ModelT.InitFromPackedBuf(bytearray((out / "tiny.fp32.tflite").read_bytes()), 0)
    model.metadata = [m for m in model.metadata or [] if m.name not in (b"edgeae", "edgeae")]
    b = flatbuffers.Builder(0)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    bare = tmp_path / "bare.tflite"
    bare.write_bytes(bytes(b.Output()))
    with pytest.raises(MetadataError, match=r"bare\.tflite.*no edgeae metadata"):
        load_artifact(bare)


def test_int8_onnx_weights_are_7_bit_by_default_and_say_so(data_root: Path, tmp_path: Path) -> None:
    """7-bit weights (the default, ``reduce_range``) leave onnxruntime's u8s8 kernels no room to saturate: the
    tiny encoder passes its parity gate on any x86 CPU, VNNI or not. ``reduce_range=False`` (``--full-range``)
    writes 8-bit weights and records that too (it fails the gate on x86 without VNNI, so only its label is
    asserted here)."""
    model, meta = _tiny_cae()
    calib, test = _patches(meta, "val", 16, 0), _patches(meta, "test", 12, 1)
    config = ExportConfig(kinds=("cae-encoder",), formats=("onnx",), precisions=("int8",), **FAST)
    assert config.reduce_range
    (art,) = export_checkpoint(model, meta, tmp_path / "seven", "tiny", calib, test, config).artifacts
    assert art.parity["passed"], art.parity
    # only what was asked for and checked is left: the fp32 ONNX int8 is quantised from is not
    assert sorted(p.name for p in (tmp_path / "seven").glob("*.onnx")) == [Path(art.path).name]
    assert read_metadata(art.path).extra["int8_weights"] == "7-bit (reduce_range)"
    full = dataclasses.replace(config, reduce_range=False, strict=False)
    (art,) = export_checkpoint(model, meta, tmp_path / "full", "tiny", calib, test, full).artifacts
    assert read_metadata(art.path).extra["int8_weights"] == "8-bit (full range)"


def test_a_terminal_bar_names_each_step(data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An export of one artifact drew a bar standing at 0 of 1 for a minute (session 46's audit); on a terminal the
    bar now names the step under way (converting, parity, the tail, latency)."""
    import edgeae.export.api as api

    steps: list[str] = []

    class Bar(list):
        def set_postfix_str(self, text: str) -> None:
            steps.append(text)

    monkeypatch.setattr(api, "progress_bar", lambda jobs, name: Bar(jobs))
    model, meta = _tiny_cae()
    calib, test = _patches(meta, "val", 16, 0), _patches(meta, "test", 12, 1)
    config = ExportConfig(kinds=("cae-encoder",), formats=("onnx",), precisions=("int8",), **FAST)
    (art,) = export_checkpoint(model, meta, tmp_path / "bar", "tiny", calib, test, config).artifacts
    name = Path(art.path).name
    assert steps[:2] == [f"{name}: converting", f"{name}: parity with PyTorch"], steps


def test_encoder_decoder_split_reproduces_the_cae(data_root: Path, tmp_path: Path) -> None:
    model, meta = _tiny_cae()
    config = ExportConfig(kinds=("cae-encoder", "cae-decoder"), formats=("onnx",), **FAST)
    export_checkpoint(
        model, meta, tmp_path, "tiny", _patches(meta, "val", 16, 0), _patches(meta, "test", 12, 1), config
    )
    enc = load_artifact(tmp_path / "tiny-encoder.int8.onnx")
    dec = load_artifact(tmp_path / "tiny-decoder.fp32.onnx")
    assert dec.metadata.input_shape == (-1, 8, 8, 8)
    x = _patches(meta, "test", 4, 7)
    latent = enc(x)
    assert latent.shape == (4, 8, 8, 8)
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    assert 10 * np.log10(1 / np.mean((dec(latent) - ref) ** 2)) > 40


@pytest.mark.parametrize("fmt", ["onnx", pytest.param("tflite", marks=pytest.mark.slow)])
def test_vae_scores_rank_like_torch(fmt: str, data_root: Path, tmp_path: Path) -> None:
    model, meta = _tiny_vae()
    config = ExportConfig(formats=(fmt,), n_calib=16, n_test=24, latency=False)
    calib, test = _patches(meta, "val", 16, 0), _patches(meta, "test", 24, 1)
    report = export_checkpoint(model, meta, tmp_path, "vae", calib, test, config)
    assert len(report.artifacts) == 2
    for a in report.artifacts:
        assert a.parity["spearman"] >= 0.99, a.path
        out = load_artifact(a.path)(_patches(meta, "test", 3, 2))
        assert set(out) == {"score", "x_hat", "mu"}
        assert out["score"].shape == (3,) and out["mu"].shape == (3, 16) and out["x_hat"].shape == (3, 1, 64, 64)
        assert read_metadata(a.path).score == {"lambda": 0.5, "threshold": 12.0}


def test_parity_failure_is_loud_with_numbers() -> None:
    ref = {"x_hat": np.zeros((4, 1, 8, 8), np.float32)}
    bad = {"x_hat": np.full((4, 1, 8, 8), 0.1, np.float32)}
    with pytest.raises(ParityError, match=r"20\.0 dB \(budget ≥ 40\)"):
        check_parity("cae", "int8", ref, bad, source="m.onnx")
    scores = {"score": np.arange(6.0), "x_hat": np.zeros((6, 1, 4, 4)), "mu": np.zeros((6, 2))}
    flipped = {**scores, "score": np.arange(6.0)[::-1].copy()}
    with pytest.raises(ParityError, match=r"Spearman -1\.0000"):
        check_parity("vae", "fp32", scores, flipped)


def test_clipped_input_range_is_detected(cae_export: tuple[dict, Path, CAE], tmp_path: Path) -> None:
    """Calibrating without pinning the input range on mid-grey data clips [0, 1]; the check catches it."""
    from edgeae.export.quantize import onnx_input_range, quantize_onnx_int8

    _, out, _ = cae_export
    fp32 = out / "tiny.fp32.onnx"
    meta = read_metadata(fp32)
    calib = np.clip(_patches(meta, "val", 8, 0), 0.2, 0.8)
    quantize_onnx_int8(fp32, tmp_path / "clipped.onnx", calib, input_range=None)
    quantize_onnx_int8(fp32, tmp_path / "pinned.onnx", calib)
    clipped = onnx_input_range(tmp_path / "clipped.onnx")
    assert clipped is not None and not covers_unit_range(clipped)
    assert covers_unit_range(onnx_input_range(tmp_path / "pinned.onnx"))
    assert onnx_input_range(fp32) is None


def test_cli_export_and_predictor(data_root: Path, tmp_path: Path) -> None:
    from edgeae.checkpoint import save_checkpoint
    from edgeae.cli import main
    from edgeae.metadata import sha256_file
    from edgeae.predictor import load_predictor

    model, meta = _tiny_cae()
    ckpt = save_checkpoint(tmp_path / "tiny.pt", model, meta)
    out = tmp_path / "art"
    rc = main(
        [
            "export",
            str(ckpt),
            "--format",
            "onnx",
            "--precision",
            "fp32",
            "--out",
            str(out),
            "--kinds",
            "cae",
            "--n-calib",
            "8",
            "--n-test",
            "8",
            "--repeats",
            "1",
        ]
    )
    assert rc == 0
    report = json.loads((out / "parity.json").read_text())
    lat = report["artifacts"][0]["latency"]
    assert {(r["batch"], r["threads"]) for r in lat} == {(1, 1), (32, 1), (1, 2), (32, 2)}
    art = load_predictor(out / "tiny.fp32.onnx")
    assert art.metadata.source_checkpoint_hash == sha256_file(ckpt)
    x = _patches(meta, "test", 2, 3)
    np.testing.assert_allclose(art(x), load_predictor(ckpt)(x), atol=1e-5)
    with pytest.raises(SystemExit):
        main(["export", str(ckpt), "--format", "bogus", "--out", str(out)])
    assert main(["export", str(ckpt), "--calib", str(tmp_path / "none"), "--out", str(out)]) == 2


@pytest.mark.slow
@pytest.mark.parametrize("name", ["rover-rgb-gtcae", "orbital-gray-gtcae"])
def test_zoo_export_full_size(name: str, data_root: Path, tmp_path: Path) -> None:
    from edgeae.export.api import export_model

    pytest.importorskip("edgeae.zoo")
    report = export_model(name, tmp_path, ExportConfig(n_calib=64, n_test=32, latency=False))
    assert all(a.parity["passed"] for a in report.artifacts)
    assert all(
        covers_unit_range(a.input_range) for a in report.artifacts if a.precision == "int8" and a.kind != "cae-decoder"
    )


def test_export_names_its_artifacts_after_name(data_root: Path, tmp_path: Path) -> None:
    """``edgeae export RUN/best.pt`` named every file ``best.*`` (session 46's training audit): ``--name`` sets it."""
    from edgeae.checkpoint import save_checkpoint
    from edgeae.cli import main

    model, meta = _tiny_cae()
    ck = save_checkpoint(tmp_path / "run" / "best.pt", model, meta)
    argv = ["export", str(ck), "--format", "onnx", "--precision", "fp32", "--kinds", "cae-encoder", "--no-latency",
            "--n-calib", "8", "--n-test", "8", "--out", str(tmp_path / "x")]  # fmt: skip
    assert main([*argv, "--name", "lander"]) == 0
    assert [p.name for p in (tmp_path / "x").glob("*.onnx")] == ["lander-encoder.fp32.onnx"]
    assert main([*argv, "--name", "a/b"]) == 2

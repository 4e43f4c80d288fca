"""reconstruct(): known pixels kept exactly, tiling on odd sizes, channel handling; `edgeae reconstruct` CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeae.masks import make_mask
from edgeae.metadata import ModelMetadata
from edgeae.reconstruct import METHODS, ChannelMismatchError, reconstruct, run_method


class MeanPredictor:
    """A stand-in CAE: every output pixel is the tile's mean of the non-zero inputs (no torch needed)."""

    def __init__(self, channels: int, tile: int = 32) -> None:
        self.metadata = ModelMetadata(
            kind="cae", architecture={}, input_shape=(-1, channels, tile, tile), channels=channels
        )
        self.source = "mean-predictor"
        self.calls: list[tuple[int, ...]] = []

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.calls.append(batch.shape)
        self.metadata.check_input(batch.shape)
        nz = (batch > 0).sum(axis=(2, 3), keepdims=True)
        mean = batch.sum(axis=(2, 3), keepdims=True) / np.maximum(nz, 1)
        return np.broadcast_to(mean, batch.shape).astype(np.float32)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A freshly initialised small grey CAE saved as a real checkpoint (32×32 tiles)."""
    torch = pytest.importorskip("torch")
    from edgeae.checkpoint import save_checkpoint
    from edgeae.models.cae import CAE, CAEConfig

    torch.manual_seed(0)
    cfg = CAEConfig(channels=1, widths=(4, 8), tile=32)
    meta = ModelMetadata(kind="cae", architecture=cfg.to_dict(), input_shape=(-1, 1, 32, 32), channels=1)
    return save_checkpoint(tmp_path_factory.mktemp("ck") / "tiny.pt", CAE(cfg), meta)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape", [(45, 70), (45, 70, 3)])
def test_known_pixels_kept_exactly(moon: np.ndarray, method: str, shape: tuple[int, ...]) -> None:
    grey = moon[:45, :70].astype(np.float32) / 255
    img = grey if len(shape) == 2 else np.stack([grey, grey[::-1], 1 - grey], axis=-1)
    known = make_mask(4, (45, 70), 0.1)
    pred = MeanPredictor(1 if len(shape) == 2 else 3) if method == "cae" else None
    out = reconstruct(img, known, method, predictor=pred)
    assert out.shape == img.shape and out.dtype == np.float32
    assert np.array_equal(out[known], img[known])
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


def test_cae_tiling_covers_odd_sizes_and_batches() -> None:
    img = np.full((70, 100), 0.5, np.float32)
    known = make_mask(0, img.shape, 0.2)
    pred = MeanPredictor(1, tile=32)
    out = reconstruct(img, known, "cae", predictor=pred, overlap=8, batch=4)
    assert np.allclose(out, 0.5, atol=1e-6)  # every tile sees only 0.5 -> every pixel rebuilt as 0.5
    # stride 24: 3 tiles down (0, 24, 38), 4 across (0, 24, 48, 68) -> 12 tiles in batches of 4
    assert [s[0] for s in pred.calls] == [4, 4, 4]
    small = reconstruct(img[:10, :12], known[:10, :12], "cae", predictor=MeanPredictor(1))
    assert small.shape == (10, 12)


def test_cae_with_real_checkpoint(tiny_checkpoint: Path, moon: np.ndarray) -> None:
    from edgeae.predictor import load_predictor

    pred = load_predictor(tiny_checkpoint)
    img = moon[:80, :90].astype(np.float32) / 255
    known = make_mask(1, img.shape, 0.1)
    out = reconstruct(img, known, "cae", predictor=pred)
    assert out.shape == img.shape and np.array_equal(out[known], img[known])


def test_channel_mismatch_and_conversion() -> None:
    rgb = np.random.default_rng(0).uniform(0.1, 0.9, (40, 40, 3)).astype(np.float32)
    known = make_mask(2, (40, 40), 0.3)
    with pytest.raises(ChannelMismatchError, match="expects 1"):
        reconstruct(rgb, known, "cae", predictor=MeanPredictor(1))
    per_channel = reconstruct(rgb, known, "cae", predictor=MeanPredictor(1), convert_channels=True)
    for c in range(3):
        one = reconstruct(rgb[..., c], known, "cae", predictor=MeanPredictor(1))
        assert np.allclose(per_channel[..., c], one)
    grey = reconstruct(rgb[..., 0], known, "cae", predictor=MeanPredictor(3), convert_channels=True)
    assert grey.shape == (40, 40)


def test_errors() -> None:
    img = np.zeros((8, 8), np.float32)
    known = np.ones((8, 8), bool)
    with pytest.raises(ValueError, match="needs a predictor"):
        reconstruct(img, known, "cae")
    with pytest.raises(ValueError, match="unknown reconstruction method"):
        reconstruct(img, known, "jpeg")
    with pytest.raises(ValueError, match="overlap"):
        reconstruct(img, known, "cae", predictor=MeanPredictor(1, 32), overlap=32)


def test_run_method_reports_metrics(moon: np.ndarray) -> None:
    img = moon[:64, :64].astype(np.float32) / 255
    known = make_mask(0, img.shape, 0.1)
    res = run_method(img, known, "linear")
    assert res.seconds >= 0 and res.metrics["keep_actual"] == pytest.approx(known.mean())
    assert res.metrics["mae_destroyed"] > res.metrics["mae"]  # known pixels have zero error


# --------------------------------------------------------------------------------------------------- CLI
def _cli(*argv: Any) -> int:
    from edgeae.cli import main

    return main([str(a) for a in argv])


@pytest.fixture
def moon_png(tmp_path: Path, moon: np.ndarray) -> Path:
    from edgeae.imageio import write_image

    return write_image(tmp_path / "moon.png", moon[:96, :120])


def test_cli_classical(moon_png: Path, tmp_path: Path) -> None:
    out, mj = tmp_path / "r.png", tmp_path / "m.json"
    rc = _cli("reconstruct", moon_png, "--method", "telea", "--keep", 0.2, "--seed", 3, "-o", out,
              "--metrics-json", mj, "--save-masked", "--save-error-map")  # fmt: skip
    assert rc == 0 and out.is_file()
    assert (tmp_path / "r.masked.png").is_file() and (tmp_path / "r.error.png").is_file()
    m = json.loads(mj.read_text())
    for key in ("psnr", "ssim", "mae", "error_variance", "keep", "method", "seed", "pattern", "model",
                "image", "timing"):  # fmt: skip
        assert key in m
    assert m["method"] == "telea" and m["seed"] == 3 and m["keep"] == 0.2 and m["model"] is None
    assert 25 < m["psnr"] < 60 and 0 < m["mae"] < 0.05

    from edgeae.imageio import read_image

    rec = read_image(out).pixels[..., 0]
    orig = read_image(moon_png).pixels[..., 0]
    known = make_mask(3, orig.shape, 0.2)
    assert np.array_equal(rec[known], orig[known])  # 8-bit round trip of the kept pixels is exact


def test_cli_keeps_sixteen_bit_samples(moon: np.ndarray, tmp_path: Path) -> None:
    """A 16-bit image is rebuilt into a 16-bit file whose kept samples are the source's, not cut to 8 bits."""
    from edgeae.imageio import read_image, write_image

    deep = moon[:64, :80].astype(np.float32) / np.float32(255 * 1.1) + np.float32(0.03)  # not 8-bit values
    src = write_image(tmp_path / "deep.png", deep, bit_depth=16)
    raw = read_image(src)
    assert raw.bit_depth == 16
    out = tmp_path / "r.png"
    assert _cli("reconstruct", src, "--method", "linear", "--keep", 0.2, "--seed", 1, "-o", out, "--save-masked") == 0
    rec = read_image(out)
    assert rec.bit_depth == 16 and read_image(tmp_path / "r.masked.png").bit_depth == 16
    known = make_mask(1, raw.pixels.shape[:2], 0.2)
    assert np.array_equal(rec.pixels[known], raw.pixels[known])


def test_cli_cae_checkpoint(moon_png: Path, tmp_path: Path, tiny_checkpoint: Path) -> None:
    mj = tmp_path / "m.json"
    rc = _cli("reconstruct", moon_png, "--model", tiny_checkpoint, "--method", "cae", "--keep", 0.1,
              "-o", tmp_path / "c.png", "--metrics-json", mj, "--pattern", "jittered")  # fmt: skip
    assert rc == 0
    m = json.loads(mj.read_text())
    assert m["model"] == str(tiny_checkpoint) and m["pattern"] == "jittered"
    assert m["keep_actual"] == pytest.approx(0.1, abs=0.01)


def test_cli_user_errors(moon_png: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli("reconstruct", moon_png, "--method", "magic", "-o", tmp_path / "x.png") == 2
    assert "magic" in capsys.readouterr().err
    assert _cli("reconstruct", moon_png, "--method", "ns", "--keep", 0, "-o", tmp_path / "x.png") == 2
    assert "keep fraction" in capsys.readouterr().err
    assert _cli("reconstruct", tmp_path / "missing.png", "--method", "ns", "-o", tmp_path / "x.png") == 2
    assert _cli("reconstruct", moon_png, "--model", "no-such-model", "-o", tmp_path / "x.png") == 2
    assert "no-such-model" in capsys.readouterr().err


def test_cli_line_scans_threads_and_os_errors(
    moon: np.ndarray, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 1-row image is rebuilt and written (SSIM n/a, null in the JSON) instead of failing after the work; a bad
    --threads and an output path that is a folder are clean errors, not tracebacks."""
    from edgeae.imageio import write_image

    line = write_image(tmp_path / "line.png", moon[:1, :200])
    out, mj = tmp_path / "l.png", tmp_path / "l.json"
    assert _cli("reconstruct", line, "--method", "linear", "--keep", 0.3, "-o", out, "--metrics-json", mj) == 0
    assert out.is_file() and json.loads(mj.read_text())["ssim"] is None
    assert "SSIM n/a" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:  # argparse refuses it
        _cli("reconstruct", line, "--method", "cae", "--threads", -1, "-o", out)
    assert exc.value.code == 2 and "--threads: must be at least 1" in capsys.readouterr().err
    (tmp_path / "adir").mkdir()
    assert _cli("reconstruct", line, "--method", "linear", "-o", out, "--metrics-json", tmp_path / "adir") == 2
    assert "adir" in capsys.readouterr().err
    # outputs are checked before the fill: the input image is never overwritten, no two outputs collide
    before = line.read_bytes()
    assert _cli("reconstruct", line, "--method", "linear", "-o", line) == 2
    assert "is the input image" in capsys.readouterr().err and line.read_bytes() == before
    assert _cli("reconstruct", line, "--method", "linear", "-o", out, "--save-masked", out) == 2
    assert "same file" in capsys.readouterr().err
    assert _cli("reconstruct", line, "--method", "linear", "-o", tmp_path / "x.bmp") == 2
    assert "cannot write '.bmp'" in capsys.readouterr().err


def test_zoo_cae_beats_classical_on_unseen_rover_crop(data_root: Path) -> None:
    """Acceptance on a real image the zoo model never saw: rover_rgb test split, keep 0.1, seed 0."""
    pytest.importorskip("torch")
    from edgeae import zoo
    from edgeae.datasets import split_files
    from edgeae.imageio import read_image
    from edgeae.predictor import load_predictor

    try:
        zoo.resolve("rover-rgb-gtunet")
    except (zoo.UnknownModelError, FileNotFoundError) as exc:
        pytest.skip(f"zoo model not available: {exc}")
    path = split_files("rover_rgb", "test", root=data_root)[1]  # marsdata_rocks/img_1101.png, 560x500
    img = read_image(path, channels=3).pixels[122:378, 152:408]  # centre 256x256 crop, chosen a priori
    known = make_mask(0, img.shape[:2], 0.1)
    cae = run_method(img, known, "cae", load_predictor("rover-rgb-gtunet", threads=1)).metrics["psnr"]
    classical = {m: run_method(img, known, m).metrics["psnr"] for m in ("telea", "ns", "linear", "nearest")}
    assert cae > max(classical.values()), (cae, classical)
    # the model's own pre-fill (normalised convolution) is a classical method too: the learned part must not hurt
    assert cae >= run_method(img, known, "normconv").metrics["psnr"] - 0.05

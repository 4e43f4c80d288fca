"""The zoo-artifact contract as a third party uses it (session 30 audit): the latent downlink's encoder input, the
CLI records of ``edgeae reconstruct`` and ``edgeae score``."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

ZOO = Path(__file__).resolve().parents[1] / "edgeae" / "zoo" / "artifacts"
GTCAE = ZOO / "rover-rgb-gtcae" / "rover-rgb-gtcae-{}.int8.onnx"


# ------------------------------------------------------------------------ item 1: the encoder input is masked
def test_encoder_input_keep_follows_the_training_range() -> None:
    from edgeae.cae_input import encoder_input_mask

    def meta(**mask: object) -> SimpleNamespace:
        return SimpleNamespace(mask=mask)

    assert encoder_input_mask(None) == (0.5, "uniform")  # no metadata: what the benchmarks use
    assert encoder_input_mask(meta(mode="gt", destroy_range=[0.5, 0.99], pattern="jittered")) == (0.5, "jittered")
    assert encoder_input_mask(meta(mode="gt", destroy_range=[0.7, 0.95]))[0] == pytest.approx(0.3)  # 1 - lo
    assert encoder_input_mask(meta(mode="gt", destroy_range=[0.1, 0.4]))[0] == pytest.approx(0.6)  # 1 - hi
    assert encoder_input_mask(meta(mode="fixed", destroy=0.9))[0] == pytest.approx(0.1)
    assert encoder_input_mask(meta(mode="gt", destroy_range=[0.5, 0.99]), 0.2)[0] == 0.2  # asked for: wins
    with pytest.raises(ValueError, match=r"encoder input keep must be in \(0, 1\], got 0"):
        encoder_input_mask(None, 0.0)


def test_the_encoder_sees_the_cae_input_convention() -> None:
    """Destroyed pixels 0, kept ones lifted to 1/255 (a black kept pixel is not a destroyed one), as
    :func:`edgeae.reconstruct.reconstruct_cae` feeds the CAE; the mask is the seed's, in the library and in flight."""
    from edgeae.ground.pipeline import encode_latents
    from edgeae.masks import make_mask

    seen: list[np.ndarray] = []

    def enc(x: np.ndarray) -> np.ndarray:
        seen.append(x.copy())
        return x[:, :, ::8, ::8]

    s = np.zeros((32, 48, 1), np.uint8)
    s[:, 24:] = 200
    encode_latents(s, 8, enc, tile=16, seed=7)
    x = np.concatenate(seen)  # (6, 1, 16, 16), tiles row-major
    known = make_mask(7, (32, 48), 0.5)
    img = np.concatenate([np.concatenate(list(x[r * 3 : r * 3 + 3, 0]), axis=1) for r in range(2)], axis=0)
    want = np.where(known, np.where(s[..., 0] > 0, np.float32(200 / 255), np.float32(1 / 255)), 0)
    np.testing.assert_allclose(img, want, rtol=1e-6)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((np.clip(a, 0, 1) - b) ** 2)))


def test_flight_latents_rebuild_as_well_as_the_library(data_root: Path, tmp_path: Path) -> None:
    """A Mastcam crop through the flight latent path (mode = "latent") and the library's encode_latents at
    input_keep 0.5: the same rebuild within 0.5 dB (23.5 dB), far above the encoder shown the complete frame
    (15.0 dB; the flight's input before the fix)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from edgeae.firmware_sim.loop import FlightRuntime
    from edgeae.firmware_sim.queue import split_packets
    from edgeae.firmware_sim.testing import small_mission, tiny_models

    from edgeae.ground.pipeline import downlink_latents, encode_latents
    from edgeae.ground.station import GroundStation
    from edgeae.imageio import read_image
    from edgeae.predictor import load_predictor

    path = data_root / "rover_rgb" / "marsscapes" / "image" / "344_2.png"
    if not path.is_file():
        pytest.skip(f"no Mastcam image at {path}")
    raw = np.asarray(read_image(path).pixels)[100:400, 1000:1400]
    raw = np.round(raw * 255).astype(np.uint8)  # 300 x 400 RGB, 8-bit
    truth = raw / 255.0
    enc, dec = load_predictor(str(GTCAE).format("encoder")), load_predictor(str(GTCAE).format("decoder"))
    models = tiny_models(tmp_path / "m", 3, 32)
    m = small_mission(
        models,
        camera={"channels": 3, "strip_rows": 300},
        reconstruction={"mode": "latent", "model": str(GTCAE).format("encoder"), "tile": 128},
    )
    rt = FlightRuntime(m, tmp_path / "fl")
    rec = rt.process(raw)
    rt.finish()
    assert rec["reconstruction"]["input_keep"] == 0.5 and rec["reconstruction"]["input_pattern"] == "uniform"
    gs = GroundStation(decoder=dec)
    for f in sorted((tmp_path / "fl" / "downlink").glob("pass_*.bin")):
        for p in split_packets(f.read_bytes()):
            gs.receive(p)
    gs.finish()
    flight = _psnr(gs.images[0], truth)
    lib = {k: _psnr(downlink_latents(encode_latents(raw, 8, enc, input_keep=k, seed=rec["seed"]), dec)[1], truth)
           for k in (None, 1.0)}  # fmt: skip
    assert abs(flight - lib[None]) < 0.5 and lib[None] > lib[1.0] + 5, (flight, lib)


# ------------------------------------------------------------------ items 10-12: what the CLI records and says
def _cli(*argv: object) -> int:
    from edgeae.cli import main

    return main([str(a) for a in argv])


@pytest.fixture()
def grey96(tmp_path: Path, moon: np.ndarray) -> Path:
    from edgeae.imageio import write_image

    return write_image(tmp_path / "moon.png", np.ascontiguousarray(moon[200:296, 200:296]))


def test_reconstruct_metrics_json_records_the_tiling(tmp_path: Path, grey96: Path) -> None:
    """The tile actually used (a fixed-input model's, whatever --tile asked), overlap, window and batch."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")

    from edgeae.firmware_sim.testing import tiny_cae_onnx

    model = tiny_cae_onnx(tmp_path / "cae.onnx", 1, 32)  # takes 32 x 32 tiles only
    out, js = tmp_path / "r.png", tmp_path / "r.json"
    argv = ["reconstruct", grey96, "--model", model, "--tile", 64, "--batch", 3, "--no-cross-check"]
    assert _cli(*argv, "-o", out, "--metrics-json", js) == 0
    tiling = json.loads(js.read_text())["tiling"]
    assert tiling == {"tile": 32, "tile_asked": 64, "model_input": 32, "overlap": 8, "window": "hann", "batch": 3}
    assert _cli(*argv, "--overlap", 4, "-o", out, "--metrics-json", js) == 0
    assert json.loads(js.read_text())["tiling"]["overlap"] == 4
    assert _cli("reconstruct", grey96, "--method", "linear", "-o", out, "--metrics-json", js) == 0
    assert json.loads(js.read_text())["tiling"] is None  # a classical fill has no tiles


def test_reconstruct_says_when_the_mask_sampled_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgeae.imageio import write_image

    one = write_image(tmp_path / "one.png", np.full((1, 1), 100, np.uint8))
    assert _cli("reconstruct", one, "--keep", 0.5, "--method", "linear", "-o", tmp_path / "o.png") == 2
    err = capsys.readouterr().err
    assert "the mask sampled none of its 1 pixel(s) at --keep 0.5 (seed 0)" in err and "holds data" not in err


def test_score_counts_the_patches_below_min_valid(
    tmp_path: Path, grey96: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 10-px no-data margin leaves only the centre of the 3 x 3 grid whole: the others are counted, per image in
    the settings JSON and in total on the console (they were dropped without a word)."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")

    from edgeae.firmware_sim.testing import tiny_vae_onnx

    from edgeae.anomaly.score import read_csv

    model = tiny_vae_onnx(tmp_path / "vae.onnx", 1, 32)
    out = tmp_path / "s.csv"
    twin = tmp_path / "twin.png"  # a second image (the same file given twice is scored once since session 36)
    twin.write_bytes(grey96.read_bytes())
    argv = ["score", grey96, twin, "--model", model, "--margin", 10, "-o", out, "--no-progress", "--threads", 1]
    assert _cli(*argv) == 0
    rows = len(read_csv(out))
    settings = json.loads((tmp_path / "s.csv.json").read_text())
    assert rows == 2 and settings["below_min_valid"] == [8, 8] and settings["patches_below_min_valid"] == 16
    printed = capsys.readouterr().out
    assert "2 patches from 2 image(s)" in printed and "; 16 patch(es) below --min-valid 1 not scored" in printed
    assert _cli(*argv[:-5], "--min-valid", 0, "-o", out, "--no-progress") == 0
    settings = json.loads((tmp_path / "s.csv.json").read_text())
    assert settings["below_min_valid"] == [0, 0] and len(read_csv(out)) == 18
    assert "below --min-valid" not in capsys.readouterr().out


def test_score_help_says_a_cae_scores_64_px_patches() -> None:
    import argparse

    from edgeae.cli import score

    p = score.register(argparse.ArgumentParser().add_subparsers())
    text = next(a.help for a in p._actions if "--patch" in a.option_strings)
    assert "64 for a CAE" in str(text) and "reflect-padded" in str(text)

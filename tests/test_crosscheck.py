"""The held-out cross-check (edgeae.crosscheck): it follows whichever fill predicts the set-aside samples."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from edgeae.crosscheck import CrossCheckConfig, CrossCheckError, cross_checked_fill, held_out, weight_map
from edgeae.masks import make_mask
from edgeae.metadata import ModelMetadata
from edgeae.metrics import psnr
from edgeae.reconstruct import reconstruct

TILE = 32
PERIOD = 8  # the tiling stride (32 - 8 = 24) is a multiple of it, so every tile sees the same phase
# the frames given to the zoo U-Nets: one 128-px CAE tile, so each of the cross-check's CAE passes (folds + 1) runs
# one tile, not the four of a 160-px frame (this file took ~95 s of the default suite under load)
ZOO_FRAME = 128


class PatternPredictor:
    """A stand-in CAE that outputs a fixed (tile, tile, C) pattern for every tile, whatever it is given."""

    def __init__(self, pattern: np.ndarray) -> None:
        c = pattern.shape[2]
        self.metadata = ModelMetadata(kind="cae", architecture={}, input_shape=(-1, c, TILE, TILE), channels=c)
        self.source = "pattern-predictor"
        self.pattern = pattern.transpose(2, 0, 1)[None].astype(np.float32)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.metadata.check_input(batch.shape)
        return np.broadcast_to(self.pattern, batch.shape).copy()


def stripes(size: int, channels: int = 1) -> np.ndarray:
    """(size, size, C) vertical sine stripes of PERIOD px: linear interpolation cannot follow them at keep 0.15."""
    x = np.arange(size)
    row = 0.5 + 0.35 * np.sin(2 * np.pi * x / PERIOD)
    return np.broadcast_to(row[None, :, None], (size, size, channels)).astype(np.float32)


def gradient(size: int) -> np.ndarray:
    """A smooth sky-like ramp, exact for linear interpolation."""
    y, x = np.mgrid[0:size, 0:size] / size
    return (0.3 + 0.3 * y + 0.1 * x)[..., None].astype(np.float32)


def test_follows_the_classical_fill_where_the_cae_paints_texture_into_a_gradient() -> None:
    size = 32 + 24 * 7  # 200: tiles start at multiples of 24
    img = gradient(size)
    known = make_mask(3, img.shape[:2], 0.15)
    bad = PatternPredictor(0.45 + 0.1 * stripes(TILE))  # texture where there is none
    cae = reconstruct(img, known, "cae", predictor=bad)
    lin = reconstruct(img, known, "linear")
    report: dict[str, float] = {}
    out = cross_checked_fill(img, known, bad, CrossCheckConfig(sigma=32, seed=1), report=report)
    assert psnr(img, lin) - psnr(img, cae) > 15  # the premise: the CAE does harm here
    assert psnr(img, out) > psnr(img, lin) - 0.5
    assert report["alpha_mean"] < 0.1 and report["cae_share"] < 0.05
    assert np.array_equal(out[known], img[known])  # known pixels kept bit for bit


def test_keeps_the_cae_where_it_predicts_the_held_out_samples() -> None:
    size = 32 + 24 * 7
    img = stripes(size, channels=3)
    known = make_mask(4, img.shape[:2], 0.15)
    good = PatternPredictor(stripes(TILE, channels=3))  # the truth, tile by tile
    cae = reconstruct(img, known, "cae", predictor=good)
    lin = reconstruct(img, known, "linear")
    report: dict[str, float] = {}
    out = cross_checked_fill(img, known, good, CrossCheckConfig(seed=2), report=report)
    assert psnr(img, cae) - psnr(img, lin) > 10
    assert report["alpha_mean"] > 0.95
    assert psnr(img, out) > 60  # the CAE is exact here (inf dB); the mix is within float rounding of it
    assert out.shape == img.shape and out.dtype == np.float32


def test_weight_map_prior_keeps_the_cae_when_the_fills_agree_within_noise() -> None:
    rng = np.random.default_rng(0)
    n, shape = 400, (64, 64)
    ys, xs = rng.integers(0, 64, n), rng.integers(0, 64, n)
    truth = rng.uniform(0.2, 0.8, (n, 1))
    noise = 0.05 * rng.standard_normal((n, 1))
    # the two fills differ by far less than the noise: no evidence either way -> the CAE (prior mean 1)
    cae, classical = truth + noise, truth + noise + 1e-4 * rng.standard_normal((n, 1))
    alpha, _ = weight_map(shape, ys, xs, truth + 0.05 * rng.standard_normal((n, 1)), cae, classical, 16.0, 0.5)
    assert alpha.shape == shape and alpha.dtype == np.float32
    assert alpha.min() > 0.9
    # the classical fill is the truth and the CAE is off by 0.1: the samples win
    alpha, frame = weight_map(shape, ys, xs, truth, truth + 0.1, truth, 16.0, 0.5)
    assert alpha.max() < 0.05 and frame == pytest.approx(0.0)
    # tau 0: the CAE alone
    alpha, _ = weight_map(shape, ys, xs, truth, truth + 0.1, truth, 16.0, 0.0)
    assert np.all(alpha == 1.0)


def test_too_few_samples_to_set_aside_uses_the_cae_alone(caplog: pytest.LogCaptureFixture) -> None:
    img = stripes(32)
    known = make_mask(0, img.shape[:2], 0.1)  # ~100 known pixels -> ~10 set aside
    pred = PatternPredictor(stripes(TILE))
    report: dict[str, float] = {}
    with caplog.at_level(logging.WARNING, logger="edgeae.crosscheck"):
        out = cross_checked_fill(img[..., 0], known, pred, report=report)
    assert "the CAE alone is used" in caplog.text
    assert out.shape == (32, 32) and report["alpha_mean"] == 1.0 and report["skipped"]
    assert np.array_equal(out, reconstruct(img[..., 0], known, "cae", predictor=pred))


def test_held_out_is_seeded_and_a_subset_of_the_known_pixels() -> None:
    known = make_mask(5, (100, 120), 0.2)
    a, b, c = held_out(known, 0.1, 7), held_out(known, 0.1, 7), held_out(known, 0.1, 8)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert not ((a > 0) & ~known).any()
    assert np.count_nonzero(a) == round(0.1 * known.sum())
    three = held_out(known, 0.1, 7, folds=3)  # disjoint folds of the same size
    assert not ((three > 0) & ~known).any()
    assert [int((three == f).sum()) for f in (1, 2, 3)] == [round(0.1 * known.sum())] * 3
    assert np.count_nonzero(held_out(np.eye(4, dtype=bool), 0.5, 0)) == 2  # one known pixel always stays


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "cae"}, "method must be"),
        ({"holdout": 0.0}, "holdout must be"),
        ({"holdout": 0.6}, "holdout must be"),
        ({"folds": 0}, "folds must be"),
        ({"folds": 5, "holdout": 0.2}, "folds must be"),
        ({"sigma": 2.0}, "sigma must be"),
        ({"sigma": float("nan")}, "sigma must be"),
        ({"tau": -1.0}, "tau must be"),
        ({"seed": -1}, "seed must be"),
    ],
)
def test_config_rejects_bad_settings(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(CrossCheckError, match=match):
        CrossCheckConfig(**kwargs)  # type: ignore[arg-type]


def test_rejects_a_mask_of_the_wrong_shape() -> None:
    pred = PatternPredictor(stripes(TILE))
    with pytest.raises(ValueError, match="known must be a bool array of shape"):
        cross_checked_fill(stripes(64), np.ones((63, 64), bool), pred)


def test_ground_filler_cross_checks_and_never_loses_a_frame(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import edgeae.crosscheck
    from edgeae.crosscheck import CrossCheckError
    from edgeae.ground.station import make_filler

    with pytest.raises(CrossCheckError, match="method must be"):
        make_filler("orbital-gray-unet2-ground", cross_check="cae")
    img = gradient(ZOO_FRAME)
    known = make_mask(2, (ZOO_FRAME, ZOO_FRAME), 0.1)
    fill, name = make_filler("orbital-gray-unet2-ground", threads=2, cross_check="linear")
    assert name == "cae:orbital-gray-unet2-ground+xcheck-linear"
    out = fill(img, known)
    assert out.shape == img.shape and np.array_equal(out[known], img[known])
    plain, _ = make_filler("orbital-gray-unet2-ground", threads=2)

    def broken(*args: object, **kwargs: object) -> object:
        raise MemoryError("simulated")

    monkeypatch.setattr(edgeae.crosscheck, "cross_checked_fill", broken)
    fill_broken, _ = make_filler("orbital-gray-unet2-ground", threads=2, cross_check="linear")
    with caplog.at_level(logging.WARNING, logger="edgeae.ground.station"):
        notes: dict = {}
        again = fill_broken(img, known, notes)
    assert "simulated" in caplog.text and "CAE alone" in caplog.text
    assert "simulated" in notes["cross_check_error"]  # the frame's report says the fallback happened
    assert np.array_equal(again, plain(img, known))  # the CAE alone filled the frame


def test_reconstruct_cli_cross_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from edgeae.cli import main
    from edgeae.imageio import write_image

    src = tmp_path / "ramp.png"
    write_image(src, np.repeat(gradient(ZOO_FRAME), 3, axis=2))
    out = tmp_path / "out.png"
    rc = main(["reconstruct", str(src), "-o", str(out), "--cross-check", "--metrics-json", str(out) + ".json"])
    assert rc == 0
    said = capsys.readouterr().out
    assert "mixed with linear by the held-out cross-check (CAE weight" in said
    record = json.loads(Path(str(out) + ".json").read_text())
    assert record["cross_check"]["method"] == "linear" and 0 <= record["cross_check"]["alpha_mean"] <= 1
    assert record["cross_check"]["held"] > 0
    assert main(["reconstruct", str(src), "-o", str(out), "--cross-check", "cae"]) == 2
    assert "--cross-check: method must be one of" in capsys.readouterr().err


def test_reconstruct_cli_cross_checks_by_default_up_to_a_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CAE alone loses to linear interpolation on images unlike its training frames (MSL browse thumbnails:
    benchmarks/msl_browse_fill.py), so ``edgeae reconstruct`` cross-checks by default, up to a frame size."""
    import json

    import edgeae.cli.reconstruct as cli_reconstruct
    from edgeae.cli import main
    from edgeae.imageio import read_image, write_image

    src = tmp_path / "ramp.png"
    write_image(src, np.repeat(gradient(ZOO_FRAME), 3, axis=2))

    def run(*extra: str) -> tuple[dict, np.ndarray, str]:
        out = tmp_path / f"out{len(extra)}.png"
        assert main(["reconstruct", str(src), "-o", str(out), "--metrics-json", f"{out}.json", *extra]) == 0
        return json.loads(Path(f"{out}.json").read_text()), read_image(out).pixels, capsys.readouterr().out

    record, mixed, said = run()
    assert record["cross_check"]["method"] == "linear" and "held-out cross-check" in said
    record, plain, said = run("--no-cross-check")
    assert record["cross_check"] is None and "cross-check" not in said
    assert not np.array_equal(mixed, plain)  # the mix differs from the CAE alone on a ramp the CAE paints over
    record, _, said = run("--cross-check", "linear")
    assert record["cross_check"]["method"] == "linear"
    monkeypatch.setattr(cli_reconstruct, "AUTO_CROSS_CHECK_MAX_PIXELS", 100 * 100)
    record, alone, said = run("--keep", "0.1")  # the frame is now "large": the CAE alone, with a note
    assert record["cross_check"] is None and "above the 0 Mpx the cross-check runs on by default" in said
    assert np.array_equal(alone, plain)
    record, _, _ = run("--cross-check")  # asked for: runs whatever the size
    assert record["cross_check"]["method"] == "linear"
    assert main(["reconstruct", str(src), "-o", str(tmp_path / "x.png"), "--cross-check", "--no-cross-check"]) == 2
    assert "contradict" in capsys.readouterr().err


def test_weight_map_leaves_out_non_finite_samples(caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(1)
    n = 300
    ys, xs = rng.integers(0, 64, n), rng.integers(0, 64, n)
    truth = rng.uniform(0.2, 0.8, (n, 1))
    cae = truth + 0.1
    cae[:5] = np.nan  # e.g. a corrupt received pixel the CAE propagated
    with caplog.at_level(logging.WARNING, logger="edgeae.crosscheck"):
        alpha, _ = weight_map((64, 64), ys, xs, truth, cae, truth, 16.0, 0.5)
    assert "5 of 300 set-aside samples are not finite" in caplog.text
    assert np.isfinite(alpha).all() and alpha.max() < 0.05


def test_ground_cli_cross_check_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgeae.cli import main

    pk = tmp_path / "p.bin"
    pk.write_bytes(b"\0" * 16)
    assert main(["ground", "decode", str(pk), "--out", str(tmp_path / "o"), "--cross-check"]) == 2
    assert "--cross-check needs --model" in capsys.readouterr().err
    args = ["ground", "decode", str(pk), "--out", str(tmp_path / "o"), "--model", "orbital-gray-unet2-ground"]
    assert main([*args, "--cross-check", "cae"]) == 2
    assert "--cross-check: method must be one of" in capsys.readouterr().err

"""The quality benchmarks (benchmarks/rate_distortion.py, benchmarks/quantisation_quality.py): their numeric
helpers on synthetic data, and each script end to end on one tiny real crop (skipped without the data)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/ is not an installed package
from benchmarks import quantisation_quality as qq
from benchmarks import rate_distortion as rd


def _smooth(h: int = 192, w: int = 192, c: int = 3, seed: int = 0) -> np.ndarray:
    """A smooth random uint8 image (H, W, C): low-frequency noise, like terrain."""
    rng = np.random.default_rng(seed)
    small = rng.random((h // 16 + 2, w // 16 + 2, c))
    from scipy.ndimage import zoom

    big = zoom(small, (16, 16, 1), order=3)[:h, :w]
    return np.round(np.clip(big, 0, 1) * 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------ MS-SSIM
def test_single_scale_matches_skimage_gaussian_ssim() -> None:
    from skimage.metrics import structural_similarity

    a = _smooth(c=1, seed=1)[..., 0] / 255.0
    b = np.clip(a + np.random.default_rng(2).normal(0, 0.05, a.shape), 0, 1)
    from benchmarks.rate_distortion_points import _ssim_cs

    ours, _ = _ssim_cs(a, b)
    ref = structural_similarity(a, b, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert ours == pytest.approx(ref, abs=1e-6)


def test_ms_ssim_orders_distortions_and_needs_176_pixels() -> None:
    a = _smooth() / 255.0
    rng = np.random.default_rng(3)
    assert rd.ms_ssim(a, a) == pytest.approx(1.0)
    small = rd.ms_ssim(a, np.clip(a + rng.normal(0, 0.02, a.shape), 0, 1))
    large = rd.ms_ssim(a, np.clip(a + rng.normal(0, 0.2, a.shape), 0, 1))
    assert 1.0 > small > large > 0.0
    assert math.isnan(rd.ms_ssim(a[:160, :160], a[:160, :160]))
    with pytest.raises(ValueError, match="shapes"):
        rd.ms_ssim(a, a[:-1])


# ------------------------------------------------------------------------------------------ rate points
@pytest.mark.parametrize("codec", sorted(rd.LADDERS))
def test_codecs_round_trip_rgb_and_grey(codec: str) -> None:
    for c in (3, 1):
        img = _smooth(c=c)
        lo, out_lo, _, _ = rd.codec_roundtrip(img, codec, rd.LADDERS[codec][0])
        hi, out_hi, _, _ = rd.codec_roundtrip(img, codec, rd.LADDERS[codec][-1])
        assert out_lo.shape == out_hi.shape == img.shape and out_hi.dtype == np.uint8
        assert 0 < len(lo) < len(hi)  # the ladder runs from small to large files
        assert rd.psnr(img / 255.0, out_hi / 255.0) > rd.psnr(img / 255.0, out_lo / 255.0)


def test_sparse_bytes_are_the_kept_values() -> None:
    img = _smooth()
    pts = list(rd.sparse_points(img, seed=5, keeps=(0.1, 0.3), fills={"telea": None}))
    assert [(m, k) for m, k, _ in pts] == [
        ("sparse+telea (raw)", 0.1),
        ("sparse+telea (delta-deflate)", 0.1),
        ("sparse+telea (ccsds121)", 0.1),
        ("sparse+telea (raw)", 0.3),
        ("sparse+telea (delta-deflate)", 0.3),
        ("sparse+telea (ccsds121)", 0.3),
    ]
    raw, coded = pts[0][2], pts[2][2]
    kept = int(rd.make_mask(5, img.shape[:2], 0.1).sum())
    assert raw["bytes"] == kept * 3 and raw["bpp"] == pytest.approx(8 * kept * 3 / img.shape[0] / img.shape[1])
    assert coded["bytes"] < raw["bytes"]  # CCSDS 121 prediction wins on a smooth image
    assert pts[1][2]["bytes"] < raw["bytes"]
    assert raw["psnr"] == coded["psnr"] and pts[3][2]["psnr"] > raw["psnr"]  # same recon; more pixels help


def test_latent_bytes_and_quantisation() -> None:
    img = _smooth(256, 256)

    def enc(x: np.ndarray) -> np.ndarray:  # 16× average pooling: a stand-in encoder with 3 latent channels
        n, c, h, w = x.shape
        return x.reshape(n, c, h // 16, 16, w // 16, 16).mean(axis=(3, 5)) - 0.5

    def dec(z: np.ndarray) -> np.ndarray:
        return np.repeat(np.repeat(z + 0.5, 16, axis=2), 16, axis=3)

    pts = {(m, b): r for m, b, r in rd.latent_points(img, enc, dec, (4, 8), input_keep=1.0)}
    raw = pts[("latent int8 (raw)", 8.0)]
    assert raw["bytes"] == 4 * (3 * 8 * 8) + 4 * 4  # 4 tiles × 192 int8 latents + 4 float32 scales
    assert pts[("latent intN (deflate)", 8.0)]["psnr"] == raw["psnr"]
    assert pts[("latent intN (deflate)", 4.0)]["bytes"] < pts[("latent intN (deflate)", 8.0)]["bytes"]
    assert pts[("latent intN (deflate)", 4.0)]["psnr"] < raw["psnr"]


def test_summarise_sorts_by_bpp_and_interpolates() -> None:
    def rec(bpp: float, p: float) -> rd.Record:
        return {"bytes": bpp, "bpp": bpp, "psnr": p, "ms-ssim": 0.9, "encoding_time": 0.0, "decoding_time": 0.0}

    per = {"x": {90.0: [rec(2.0, 30.0), rec(4.0, 34.0)], 10.0: [rec(1.0, 20.0), rec(1.0, 22.0)]}}
    curve = rd.summarise(per)["x"]
    assert curve["params"] == [10.0, 90.0] and curve["results"]["bpp"] == [1.0, 3.0]
    assert curve["results"]["psnr"] == [21.0, 32.0] and curve["n_images"] == 2
    assert rd.at_bpp(curve, 2.0) == pytest.approx(26.5)
    assert rd.at_bpp(curve, 3.5) is None


def test_score_agreement() -> None:
    s = np.arange(200.0)
    same = qq.score_agreement(s, s * 2 + 1)
    assert same["spearman"] == pytest.approx(1.0) and same["top1%_overlap"] == 1.0 and same["top_k"] == 2
    rev = qq.score_agreement(s, -s)
    assert rev["spearman"] == pytest.approx(-1.0) and rev["top1%_overlap"] == 0.0


# ------------------------------------------------------------------------------------------ end to end
def test_rate_distortion_script_on_one_crop(data_root: Path, tmp_path: Path) -> None:
    argv = ["--out", str(tmp_path), "--limit", "1", "--crop", "176", "--keeps", "0.1", "--codecs", "jpeg"]
    assert rd.main([*argv, "--threads", "1"]) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["n_images"] == 1 and res["target_bpp"] == pytest.approx(2.4)
    cae = json.loads((tmp_path / "sparse_cae_ccsds121.json").read_text())
    assert set(cae["results"]) >= {"bpp", "psnr", "ms-ssim", "encoding_time", "decoding_time"}
    assert cae["results"]["bpp"][0] < 2.4 < res["methods"]["sparse+cae (raw)"]["results"]["bpp"][0] + 0.1
    assert 15 < cae["results"]["psnr"][0] < 40 and 0 < cae["results"]["ms-ssim"][0] < 1
    assert {"latent intN (deflate)", "jpeg"} <= set(res["methods"])
    assert (tmp_path / "rd.png").stat().st_size > 0 and "| jpeg |" in (tmp_path / "results.md").read_text()


def test_quantisation_script_torch_only(data_root: Path, tmp_path: Path) -> None:
    argv = ["--out", str(tmp_path), "--runtimes", "torch-fp32", "--crop", "128", "--limit", "1", "--keeps", "0.1"]
    assert qq.main([*argv, "--lroc-limit", "1", "--threads", "1"]) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    cae = res["reconstruction"]["0.1"]["torch-fp32"]
    assert 15 < cae["psnr"] < 40 and "psnr_vs_torch" not in cae
    an = res["anomaly"]["torch-fp32"]
    assert an["agreement"]["spearman"] == pytest.approx(1.0) and an["n_patches"] > 100
    assert {r["feature"] for r in an["rows"]} >= {"any crater"}
    assert "| torch-fp32 |" in (tmp_path / "results.md").read_text()

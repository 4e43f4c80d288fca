"""``edgeae scan --score local-z``: each patch against its neighbours on its own image, exact per image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeae.anomaly.context import local_novelty
from edgeae.scan.pipeline import ImageAccumulator, ScanConfig, read_thumbs, score_chunk, tile_image
from edgeae.scan.scoring import ModelSpec

SPEC = ModelSpec(path="m.pt", model_id="m", artifact_hash="0" * 64, kind="vae", patch=16, channels=1)


def _rec_mu(batch: np.ndarray) -> np.ndarray:
    """Stand-in rec and latents: rec = patch variance (texture), μ = the four quadrant means (brightness, shape)."""
    b = batch.reshape(len(batch), 2, 8, 2, 8).astype(np.float64)
    mu = b.mean(axis=(2, 4)).reshape(len(batch), 4)
    return np.concatenate([batch.reshape(len(batch), -1).var(axis=1)[:, None], mu], axis=1)


@pytest.fixture
def frame(tmp_path: Path) -> Path:
    """A 160 × 192 noisy plain with a bright block and a checkerboard planted in it (16-px patches)."""
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(5)
    img = np.clip(110 + 12 * rng.standard_normal((160, 192)), 0, 255)
    img[48:64, 32:48] = 230  # bright
    img[112:128, 144:160] = np.where((np.indices((16, 16)).sum(0) // 2) % 2 == 0, 60, 190)  # texture
    path = tmp_path / "frame.png"
    cv2.imwrite(str(path), img.astype(np.uint8))
    return path


@pytest.mark.parametrize("top_k", [1, 4])
def test_local_z_is_the_whole_image_ranking_in_any_chunk_order(frame: Path, top_k: int) -> None:
    cfg = ScanConfig(SPEC, stride=16, batch_size=7, top_k=top_k, score="local-z")
    chunks = list(tile_image(frame, cfg))
    scored = [score_chunk(_rec_mu, c, top_k, latents=True) for c in chunks]
    assert all(s.scores.dtype == np.float32 and s.scores.shape[1] == 5 and s.tops == () for s in scored)
    fwd, back = ImageAccumulator("f", cfg, frame), ImageAccumulator("b", cfg, frame)
    for i, s in enumerate(scored):
        fwd.add(i, s)
    for i in reversed(range(len(scored))):
        back.add(i, scored[i])
    a, b = fwd.result(), back.result()
    held = np.concatenate([_rec_mu(c.pixels) for c in chunks]).astype(np.float32)
    xs, ys = np.concatenate([c.xs for c in chunks]), np.concatenate([c.ys for c in chunks])
    want = local_novelty(held[:, 1:], held[:, 0].astype(np.float64), np.stack([xs, ys], axis=1))
    np.testing.assert_array_equal(a.scores, want)
    np.testing.assert_array_equal(b.scores, want)
    np.testing.assert_allclose(a.terms[:, 0], held[:, 0])  # rec and mu2 kept, as for terms-max
    np.testing.assert_allclose(a.terms[:, 1], (held[:, 1:].astype(np.float64) ** 2).sum(axis=1), rtol=1e-6)
    order = np.lexsort((xs, ys, -want))[:top_k]
    pix = np.concatenate([c.pixels for c in chunks])
    for r in (a, b):
        np.testing.assert_array_equal(r.top.scores, want[order])
        assert list(zip(r.top.xs, r.top.ys, strict=True)) == list(zip(xs[order], ys[order], strict=True))
        np.testing.assert_array_equal(r.top.thumbs, np.round(np.clip(pix[order], 0, 1) * 255).astype(np.uint8))
    # both planted blocks are found: brightness through μ, texture through the error
    best = {(int(x), int(y)) for x, y in zip(a.top.xs, a.top.ys, strict=True)}
    assert (32, 48) in best
    if top_k >= 4:
        assert (144, 112) in best


def test_read_thumbs_cuts_what_the_tiler_cuts_and_refuses_off_grid_corners(frame: Path) -> None:
    cfg = ScanConfig(SPEC, stride=16, batch_size=64, score="local-z")
    chunks = list(tile_image(frame, cfg))
    xs, ys = np.concatenate([c.xs for c in chunks]), np.concatenate([c.ys for c in chunks])
    pix = np.concatenate([c.pixels for c in chunks])
    pick = np.array([len(xs) - 1, 0, 37])  # any order, the last band included
    got = read_thumbs(frame, cfg, xs[pick], ys[pick])
    np.testing.assert_array_equal(got, np.round(pix[pick] * 255).astype(np.uint8))
    with pytest.raises(ValueError, match=r"1 of 2 patch corners are off the 192x160 patch grid \(stride 16\)"):
        read_thumbs(frame, cfg, np.array([0, 5]), np.array([0, 0]))


def test_local_z_config_and_chunks_are_checked() -> None:
    cae = ModelSpec(path="c.pt", model_id="c", artifact_hash="0" * 64, kind="cae", patch=16, channels=1)
    with pytest.raises(ValueError, match=r"local-z.*cae"):
        ScanConfig(cae, stride=16, score="local-z")
    z = ScanConfig(SPEC, stride=16, score="local-z")
    assert z.latents and not z.terms
    assert z.result_fingerprint() != ScanConfig(SPEC, stride=16, score="terms-max").result_fingerprint()
    from edgeae.scan.pipeline import Chunk

    rng = np.random.default_rng(0)
    chunk = Chunk(xs=np.arange(4, dtype=np.int32) * 16, ys=np.zeros(4, np.int32), valid=np.ones(4, np.float32),
                  pixels=rng.random((4, 1, 16, 16), dtype=np.float32), n_skipped=0)  # fmt: skip
    with pytest.raises(ValueError, match=r"local-z wants \(n, 1 \+ D\)"):
        score_chunk(lambda b: b.reshape(len(b), -1).mean(axis=1), chunk, 2, latents=True)
    with pytest.raises(ValueError, match="non-finite"):
        score_chunk(lambda b: np.full((len(b), 3), np.nan), chunk, 2, latents=True)
    with pytest.raises(ValueError, match="negative reconstruction error"):
        score_chunk(lambda b: -np.ones((len(b), 3)), chunk, 2, latents=True)
    acc = ImageAccumulator("x", z)
    with pytest.raises(ValueError, match=r"wants \(n, 1 \+ D\) latents"):
        acc.add(0, score_chunk(lambda b: b.reshape(len(b), -1).mean(axis=1), chunk, 2))
    acc.add(0, score_chunk(_rec_mu, chunk, 2, latents=True))
    with pytest.raises(ValueError, match="no path was given"):
        acc.result()


def test_scan_local_z_with_the_zoo_int8_vae_matches_edgeae_score(moon: np.ndarray, tmp_path: Path) -> None:
    """End to end with the shipped int8 VAE: the scan's local-z equals ``local_novelty`` of the same model's rec
    and μ on the same patches, the threaded engine gives the in-process numbers, and the thumbnails are the image's
    pixels."""
    pq = pytest.importorskip("pyarrow.parquet")
    pytest.importorskip("ai_edge_litert")
    from test_scan_support import checkerboard_moon_archive, scan_with_both_local_paths

    from edgeae.scan.run import EngineOptions, scan_archive
    from edgeae.scan.scoring import load_scorer, resolve_model

    _, img = checkerboard_moon_archive(tmp_path / "arc", moon)
    runs = scan_with_both_local_paths(tmp_path / "arc", tmp_path, "local-z", stride=32)
    assert "(each patch's VAE latents" in (tmp_path / "out0" / "report.md").read_text()
    t = runs[0]
    assert {"rec", "mu2"} <= set(t.columns) and len(t) == 15 * 15
    spec = resolve_model("orbital-gray-vae")
    cfg = ScanConfig(spec, stride=32, score="local-z")
    scorer = load_scorer(spec, latents=True)
    held = np.concatenate([scorer(c.pixels) for c in tile_image(tmp_path / "arc" / "moon.png", cfg)])
    want = local_novelty(held[:, 1:].astype(np.float32), held[:, 0].astype(np.float32), t[["x", "y"]].to_numpy())
    np.testing.assert_allclose(t["score"], want, rtol=1e-5)
    np.testing.assert_allclose(runs[2]["score"], t["score"], rtol=1e-6)
    top = np.load(tmp_path / "out0" / "parts" / next(p.name for p in (tmp_path / "out0" / "parts").glob("*.top.npz")))
    x, y = int(top["xs"][0]), int(top["ys"][0])
    assert top["thumbs"].shape == (4, 1, 64, 64)
    np.testing.assert_array_equal(top["thumbs"][0, 0], img[y : y + 64, x : x + 64])
    # int8 latents rank as the fp32 model's do (the MAD is floored at the latents' quantisation step)
    s32 = resolve_model("orbital-gray-vae", precision="fp32")
    f32 = load_scorer(s32, latents=True)
    ref = np.concatenate([f32(c.pixels) for c in tile_image(tmp_path / "arc" / "moon.png", cfg)])
    fp32 = local_novelty(ref[:, 1:].astype(np.float32), ref[:, 0], t[["x", "y"]].to_numpy())
    assert len(set(np.argsort(-fp32)[:16]) & set(np.argsort(-want)[:16])) >= 14
    # --precision fp32 scans with the checkpoint: exactly the fp32 ranking
    r32 = scan_archive(tmp_path / "arc", "orbital-gray-vae", tmp_path / "out32", engine=EngineOptions(workers=0),
                       stride=32, top_k=4, score="local-z", progress=False, precision="fp32")  # fmt: skip
    assert r32["artifact_hash"] == s32.artifact_hash != spec.artifact_hash
    np.testing.assert_allclose(pq.read_table(tmp_path / "out32" / "results.parquet")["score"].to_numpy(), fp32,
                               rtol=1e-5)  # fmt: skip


@pytest.mark.parametrize("channels", [1, 3])
def test_read_patch_pixels_equal_the_strip_readers(moon: np.ndarray, tmp_path: Path, channels: int) -> None:
    """Read back from only the rows they cover, on a tiled BigTIFF with no-data margins (validity depends on the
    rows read before, the pixels do not) and an RGB PNG; corners off the image are refused."""
    from edgeae.imageio import write_image
    from edgeae.strips import iter_patch_blocks, read_patch_pixels, write_tiled_bigtiff

    if channels == 1:
        path = write_tiled_bigtiff(tmp_path / "strip.tif", (700, 200), [moon], tile=64, seed=1, nodata_margin=30)
    else:
        rgb = np.stack([moon[:300, :250], moon[100:400, 50:300], moon[200:500, 200:450]], axis=-1)
        path = tmp_path / "rgb.png"
        write_image(path, np.ascontiguousarray(rgb))
    xs, ys, pix, frac = [], [], [], []
    for blk in iter_patch_blocks(path, 64, 48, channels=channels):
        xs.append(blk.xs)
        ys.append(blk.ys)
        pix.append(blk.pixels(np.arange(len(blk.xs))).copy())
        frac.append(blk.valid_frac)
    x, y, p = np.concatenate(xs), np.concatenate(ys), np.concatenate(pix)
    # whole patches: the scorer's copy of a partial one has its no-data filled (fill_patches), a thumbnail not
    whole = np.flatnonzero(np.concatenate(frac) == 1.0)
    pick = np.random.default_rng(2).choice(whole, 9, replace=False)
    np.testing.assert_array_equal(read_patch_pixels(path, 64, x[pick], y[pick], channels=channels, stride=48), p[pick])
    with pytest.raises(ValueError, match="off the"):
        read_patch_pixels(path, 64, [0], [10_000], channels=channels)


@pytest.mark.parametrize("latent", [0, 4])
def test_too_large_for_local_z_fails_alone(
    frame: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, latent: int
) -> None:
    """The latents held for one image are bounded: past the limit that image is recorded as failed, saying what to
    do, and the scan goes on with the next image. With the model's latent size known (``latent``) the image is
    refused from its header, before any scoring; without it, as its chunks come in."""
    import dataclasses
    import shutil

    from edgeae.anomaly import context
    from edgeae.scan.run import EngineOptions, scan_archive

    pytest.importorskip("pyarrow")
    cv2 = pytest.importorskip("cv2")
    arc = tmp_path / "arc"
    arc.mkdir()
    shutil.copy(frame, arc / "big.png")  # 120 patches at stride 16: 2,400 bytes of (1 + 4) float32
    cv2.imwrite(str(arc / "small.png"), cv2.imread(str(frame), 0)[:48, :64])  # 12 patches: 240 bytes
    monkeypatch.setattr(context, "LOCAL_Z_MAX_BYTES", 400)
    spec = dataclasses.replace(SPEC, latent=latent)
    monkeypatch.setattr("edgeae.scan.run.resolve_model", lambda model, **kw: spec)
    scored: list[int] = []

    def scorer(batch: np.ndarray) -> np.ndarray:
        scored.append(len(batch))
        return _rec_mu(batch)

    r = scan_archive(arc, "m", tmp_path / "out", engine=EngineOptions(workers=0), stride=16, batch_size=8,
                     score="local-z", scorer_factory=lambda: scorer, progress=False)  # fmt: skip
    assert r["done"] == 1 and r["failed"] == 1
    (fail,) = r["failures"]
    assert fail["file"] == "big.png" and "larger --stride" in fail["error"] and "limit" in fail["error"]
    assert (sum(scored) == 12) == (latent > 0)  # refused up front: only the small image was scored


def test_edgeae_score_refuses_local_z_past_the_limit(
    frame: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgeae.anomaly import context
    from edgeae.cli import main

    monkeypatch.setattr(context, "LOCAL_Z_MAX_BYTES", 1000)
    code = main(["score", str(frame), "--model", "orbital-gray-vae", "--score", "local-z", "--stride", "32",
                 "-o", str(frame.with_suffix(".csv")), "--no-progress"])  # fmt: skip
    assert code == 2 and not frame.with_suffix(".csv").exists()
    assert "frame.png: --score local-z holds every patch's latents" in capsys.readouterr().err

"""Patch scoring: coordinates round trip, determinism, batching, CAE scoring, the score CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeae.anomaly.score import (
    read_csv,
    score_array,
    score_batches,
    score_file,
    score_map,
    write_csv,
)


def _mean_scorer(batch: np.ndarray) -> dict[str, np.ndarray]:
    """A model stand-in: the score of a patch is its mean, so the score names the pixels it saw."""
    return {"score": batch.reshape(len(batch), -1).astype(np.float64).mean(axis=1)}


def test_coordinates_round_trip_to_the_right_pixels(tmp_path: Path) -> None:
    from edgeae.imageio import read_image, write_image

    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, size=(200, 300), dtype=np.uint8)
    path = write_image(tmp_path / "img.png", raw)
    img = read_image(path, channels=1, detect_nodata=False).pixels[..., 0]
    res = score_array(img, _mean_scorer, patch=64, stride=48, batch=5, file="img.png")
    assert len(res) == 6 * 4  # x: 0, 48, ..., 192, 236; y: 0, 48, 96, 136
    assert res.x.max() == 300 - 64 and res.y.max() == 200 - 64
    csv = tmp_path / "s.csv"
    assert write_csv(csv, [res]) == len(res)
    for file, x, y, s in read_csv(csv):
        assert file == "img.png"
        assert s == pytest.approx(img[y : y + 64, x : x + 64].mean(), rel=1e-5)
    # a file name with a comma and a quote is quoted, so a standard CSV reader gets the five columns back
    import csv as csv_module

    res.file = 'a,b "c".png'
    write_csv(csv, [res])
    with open(csv, newline="") as f:
        rows = list(csv_module.reader(f))
    assert all(len(r) == 5 for r in rows) and rows[1][0] == 'a,b "c".png'
    assert read_csv(csv)[0][0] == 'a,b "c".png'
    csv.write_text("file,x,y,score,valid_frac\nold,name.png,0,48,0.5,1.0000\n")  # written before the quoting
    assert read_csv(csv) == [("old,name.png", 0, 48, 0.5)]
    # the streamed file path gives the same rows
    streamed = score_file(path, _StreamScorer(), 64, 48, progress=False, min_valid=0.0)  # type: ignore[arg-type]
    np.testing.assert_array_equal(streamed.x, res.x)
    np.testing.assert_array_equal(streamed.y, res.y)
    np.testing.assert_allclose(streamed.score, res.score, rtol=1e-6)


class _StreamScorer:
    channels = 1

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        return _mean_scorer(batch)


def test_batches_and_no_data_skipping() -> None:
    rng = np.random.default_rng(1)
    patches = [rng.random((1, 8, 8), dtype=np.float32) for _ in range(11)]
    a = score_batches(_mean_scorer, patches, batch=3)["score"]
    b = score_batches(_mean_scorer, patches, batch=100)["score"]
    np.testing.assert_array_equal(a, b)
    img = rng.random((128, 128), dtype=np.float32)
    valid = np.ones((128, 128), bool)
    valid[:10, :10] = False
    r = score_array(img, _mean_scorer, 64, 64, valid=valid, min_valid=1.0)
    assert sorted(zip(r.x.tolist(), r.y.tolist(), strict=True)) == [(0, 64), (64, 0), (64, 64)]
    m = score_map(r)
    assert np.isnan(m[:64, :64]).all() and np.isfinite(m[64:, :]).all()
    with pytest.raises(ValueError, match="smaller"):
        score_array(img[:32], _mean_scorer, 64, 64)


def _tiny_checkpoint(tmp_path: Path, kind: str) -> Path:
    torch = pytest.importorskip("torch")
    from edgeae.checkpoint import save_checkpoint
    from edgeae.metadata import ModelMetadata

    torch.manual_seed(0)
    if kind == "vae":
        from edgeae.models.vae import VAE, VAEConfig

        model = VAE(VAEConfig(widths=(4, 4, 4, 4), latent=8, score_lambda=0.5)).eval()
        meta = ModelMetadata(
            kind="vae",
            architecture=model.config.to_dict(),
            input_shape=(-1, 1, 64, 64),
            channels=1,
            score={"lambda": 0.5, "threshold": 100.0},
        )
    else:
        from edgeae.models.cae import CAE, CAEConfig

        cae = CAE(CAEConfig(channels=1, widths=(4, 4, 4, 4), tile=128)).eval()
        meta = ModelMetadata(kind="cae", architecture=cae.config.to_dict(), input_shape=(-1, 1, 128, 128), channels=1)
        return save_checkpoint(tmp_path / f"{kind}.pt", cae, meta)
    return save_checkpoint(tmp_path / f"{kind}.pt", model, meta)


def test_vae_scores_are_deterministic_and_batch_independent(moon: np.ndarray, tmp_path: Path) -> None:
    from edgeae.anomaly.score import make_scorer
    from edgeae.predictor import load_predictor

    scorer = make_scorer(load_predictor(_tiny_checkpoint(tmp_path, "vae")), keep_latents=True)
    img = moon[:256, :256].astype(np.float32) / 255.0
    a = score_array(img, scorer, 64, 64, batch=64)
    b = score_array(img, scorer, 64, 64, batch=5)
    np.testing.assert_allclose(a.score, b.score, rtol=1e-5)
    np.testing.assert_array_equal(a.score, score_array(img, scorer, 64, 64, batch=64).score)
    np.testing.assert_allclose(a.score, a.extras["rec"] + 0.5 * a.extras["mu2"], rtol=1e-4)
    assert a.extras["mu"].shape == (16, 8)


def test_cae_scoring_is_masked_error(moon: np.ndarray, tmp_path: Path) -> None:
    from edgeae.anomaly.score import make_scorer
    from edgeae.predictor import load_predictor

    pred = load_predictor(_tiny_checkpoint(tmp_path, "cae"))
    scorer = make_scorer(pred, cae_keep=0.25, cae_seed=3)
    assert scorer.kind == "cae" and scorer.cae_tile == 128  # 64×64 patches are reflect-padded to 128
    img = moon.astype(np.float32)[:128, :128] / 255.0
    r = score_array(img, scorer, 64, 64)
    assert len(r) == 4 and (r.score > 0).all()
    np.testing.assert_array_equal(r.score, score_array(img, scorer, 64, 64).score)


def test_score_cli_writes_csv_and_map(moon: np.ndarray, tmp_path: Path) -> None:
    from edgeae.cli import main
    from edgeae.imageio import write_image

    ck = _tiny_checkpoint(tmp_path, "vae")
    img = write_image(tmp_path / "moon.png", moon)
    out = tmp_path / "scores.csv"
    rc = main(
        [
            "score",
            str(img),
            "--model",
            str(ck),
            "--stride",
            "32",
            "-o",
            str(out),
            "--map",
            str(tmp_path / "map.png"),
            "--no-progress",
        ]
    )
    assert rc == 0
    rows = read_csv(out)
    assert len(rows) == 15 * 15
    assert {(x, y) for _, x, y, _ in rows} == {(x, y) for x in range(0, 449, 32) for y in range(0, 449, 32)}
    assert (tmp_path / "map.png").stat().st_size > 1000
    assert main(["score", str(img), "--model", str(ck), "--patch", "32", "-o", str(out)]) == 2


def test_score_cli_keeps_the_readable_images_and_every_map(
    moon: np.ndarray, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A corrupt file among good ones is skipped and reported (exit 1) instead of losing the others' scores; two
    images with the same stem get two maps; a bad --map suffix and an output folder are checked before scoring."""
    from edgeae.cli import main
    from edgeae.imageio import write_image

    ck = _tiny_checkpoint(tmp_path, "vae")
    a = write_image(tmp_path / "d1" / "img.png", moon[:128, :128])
    b = write_image(tmp_path / "d2" / "img.png", moon[128:256, :128])
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    out = tmp_path / "new" / "folder" / "s.csv"  # a missing folder is made up front
    argv = ["score", str(a), str(bad), str(b), "--model", str(ck), "-o", str(out), "--no-progress"]
    assert main([*argv, "--map", str(tmp_path / "m.png")]) == 1
    captured = capsys.readouterr()
    assert "broken.png" in captured.err and "1 image(s) could not be read" in captured.err
    rows = read_csv(out)
    assert len(rows) == 8 and len({r[0] for r in rows}) == 2 and not any("broken" in r[0] for r in rows)
    # numbered by place in the list given (a skipped image keeps its number: names do not depend on what is read)
    assert sorted(p.name for p in tmp_path.glob("m_*.png")) == ["m_0_img.png", "m_2_img.png"]
    assert "maps -> " in captured.out
    assert main([*argv[:2], *argv[4:], "--map", str(tmp_path / "m.xyz")]) == 2
    assert "--map" in capsys.readouterr().err


def test_score_cli_without_model_uses_the_zoo_vae_for_the_images_channels(
    moon: np.ndarray, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--model`` is optional, as for ``edgeae scan``: a grey image gets the orbital VAE, a colour one the rover VAE
    (RGB scored with the grey model would silently lose its colour)."""
    from edgeae.cli import main
    from edgeae.imageio import write_image

    grey = write_image(tmp_path / "grey.png", np.ascontiguousarray(moon[:128, :128]))
    rgb = write_image(tmp_path / "rgb.png", np.ascontiguousarray(np.stack([moon[:128, :128]] * 3, axis=-1)))
    for img, want in ((grey, "orbital-gray-vae"), (rgb, "rover-rgb-vae")):
        assert main(["score", str(img), "-o", str(tmp_path / "s.csv"), "--no-progress"]) == 0
        out = capsys.readouterr().out
        assert f"scored with vae {want} " in out and "highest 4 of 4:" in out  # the best patches, listed
        assert len(read_csv(tmp_path / "s.csv")) == 4


def test_score_cli_without_model_is_not_chosen_by_an_unreadable_first_image(
    moon: np.ndarray, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A truncated first image (its header cut) is skipped, and the default model comes from the first image that
    can be read (session 46: a truncated colour PNG first made the colour images after it score as grey)."""
    from edgeae.cli import main
    from edgeae.imageio import write_image

    rgb = write_image(tmp_path / "rgb.png", np.ascontiguousarray(np.stack([moon[:128, :128]] * 3, axis=-1)))
    cut = tmp_path / "cut.png"
    cut.write_bytes(rgb.read_bytes()[:300])
    assert main(["score", str(cut), str(rgb), "-o", str(tmp_path / "s.csv"), "--no-progress"]) == 1  # one skipped
    cap = capsys.readouterr()
    assert "scored with vae rover-rgb-vae " in cap.out
    assert "skipped" in cap.out + cap.err and "cut.png" in cap.out + cap.err
    assert "scored as grey" not in cap.err

"""``edgeae scan --bayer / --margin``: raw colour-filter mosaics demosaiced and fixed margins masked, as ``edgeae
score`` does (issue 12: one valid-pixel mask and the same Bayer handling everywhere)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeae.scan.pipeline import ScanConfig, read_thumbs, tile_image
from edgeae.scan.scoring import ModelSpec

RGB = ModelSpec(path="m.pt", model_id="m", artifact_hash="0" * 64, kind="vae", patch=32, channels=3)
GREY = ModelSpec(path="g.pt", model_id="g", artifact_hash="0" * 64, kind="vae", patch=32, channels=1)


@pytest.fixture
def mosaic(moon: np.ndarray, tmp_path: Path) -> Path:
    """An RGGB colour-filter mosaic (one grey plane) made from three different crops of the moon as R, G, B."""
    from edgeae.imageio import write_image

    r, g, b = moon[:160, :192], moon[100:260, 50:242], moon[300:460, 200:392]
    raw = np.empty((160, 192), np.uint8)
    raw[0::2, 0::2], raw[0::2, 1::2] = r[0::2, 0::2], g[0::2, 1::2]
    raw[1::2, 0::2], raw[1::2, 1::2] = g[1::2, 0::2], b[1::2, 1::2]
    return write_image(tmp_path / "raw.png", raw)


def test_bayer_frames_are_demosaiced_before_scoring_and_for_the_thumbnails(mosaic: Path) -> None:
    from edgeae.strips import iter_patch_blocks

    cfg = ScanConfig(RGB, stride=32, bayer="RGGB")
    chunks = list(tile_image(mosaic, cfg))
    pix = np.concatenate([c.pixels for c in chunks])
    xs, ys = np.concatenate([c.xs for c in chunks]), np.concatenate([c.ys for c in chunks])
    want = np.concatenate([b.pixels(np.arange(len(b.xs))) for b in iter_patch_blocks(mosaic, 32, 32, bayer="RGGB")])
    np.testing.assert_array_equal(pix, want)
    assert pix.shape[1] == 3 and np.abs(pix[:, 0] - pix[:, 2]).mean() > 0.05  # real colour, not a grey copy
    plain = np.concatenate([c.pixels for c in tile_image(mosaic, ScanConfig(RGB, stride=32))])
    assert not np.array_equal(plain, pix)  # without --bayer the mosaic is read as it is
    pick = np.array([3, len(xs) - 1, 0])
    np.testing.assert_array_equal(read_thumbs(mosaic, cfg, xs[pick], ys[pick]), np.round(pix[pick] * 255))
    with pytest.raises(ValueError, match="bayer must be one of"):
        ScanConfig(RGB, stride=32, bayer="RGBG")


def test_a_fixed_margin_is_no_data_as_for_edgeae_score(moon: np.ndarray, tmp_path: Path) -> None:
    from edgeae.anomaly.score import score_file
    from edgeae.imageio import write_image
    from edgeae.nodata import Margin

    path = write_image(tmp_path / "moon.png", np.ascontiguousarray(moon[:192, :256]))
    cfg = ScanConfig(GREY, stride=32, min_valid=1.0, margin="40,0,70,0")
    chunks = list(tile_image(path, cfg))
    xs, ys = np.concatenate([c.xs for c in chunks]), np.concatenate([c.ys for c in chunks])
    assert ys.min() >= 40 and xs.min() >= 70 and sum(c.n_skipped for c in chunks) == 48 - len(xs)

    def scorer(batch: np.ndarray) -> dict[str, np.ndarray]:
        return {"score": batch.reshape(len(batch), -1).mean(axis=1)}

    scorer.channels = 1  # type: ignore[attr-defined]
    r = score_file(path, scorer, 32, 32, min_valid=1.0, margin=Margin.parse("40,0,70,0"), progress=False)
    assert sorted(zip(xs.tolist(), ys.tolist(), strict=True)) == sorted(zip(r.x.tolist(), r.y.tolist(), strict=True))
    with pytest.raises(ValueError, match="expected N or TOP,BOTTOM,LEFT,RIGHT"):
        ScanConfig(GREY, stride=32, margin="1,2")


def test_read_options_change_the_fingerprint_and_old_folders_resume() -> None:
    a = ScanConfig(RGB, stride=32)
    assert a.result_fingerprint() != ScanConfig(RGB, stride=32, bayer="RGGB").result_fingerprint()
    assert a.result_fingerprint() != ScanConfig(RGB, stride=32, margin="8").result_fingerprint()
    old = a.to_dict()
    del old["bayer"], old["margin"]  # a results folder written before the options existed
    assert ScanConfig.from_dict(old).result_fingerprint() == a.result_fingerprint()

"""What a patch holds where it has no data (issue 12, no-data everywhere): reflected padding of a small image is
not counted as data, a no-data part of a patch is filled with its surroundings' mean before scoring (not read as
black, which ranked partial patches first), and a product that declares no no-data value has its zero-filled
border read as no-data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

tifffile = pytest.importorskip("tifffile")
pytest.importorskip("cv2")

from edgeae.strips import fill_patches, iter_patch_blocks, iter_patches  # noqa: E402


def test_fill_patches_sets_no_data_to_the_patch_mean_and_leaves_whole_and_empty_patches() -> None:
    rng = np.random.default_rng(0)
    pix = (0.6 + 0.02 * rng.standard_normal((3, 2, 16, 16))).astype(np.float32)
    valid = np.ones((3, 16, 16), dtype=bool)
    valid[1, :, :4] = False  # a partial patch: 4 columns without data (NaN: must not spread)
    valid[2] = False  # nothing valid: left as read
    pix[1][:, ~valid[1]] = np.nan
    before = pix.copy()
    out = fill_patches(pix, valid)
    assert np.array_equal(out[0], before[0]) and np.array_equal(out[2], before[2], equal_nan=True)
    for c in range(2):
        ok = valid[1]
        assert np.isfinite(out[1, c]).all() and np.array_equal(out[1, c][ok], before[1, c][ok])
        assert np.allclose(out[1, c][~ok], before[1, c][ok].mean())  # the patch's own level, not 0


def test_the_fill_does_not_depend_on_band_boundaries(tmp_path: Path, moon: np.ndarray) -> None:
    img = (moon / 255.0).astype(np.float32)
    img[:, :9] = np.nan
    p = tmp_path / "holed.tif"
    tifffile.imwrite(p, img)
    a = {(q.y, q.x): q.pixels for q in iter_patches(p, 64, 32, band_rows=64)}
    b = {(q.y, q.x): q.pixels for q in iter_patches(p, 64, 32, band_rows=512)}
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_a_no_data_edge_does_not_lift_a_patch(tmp_path: Path, moon: np.ndarray) -> None:
    clean, holed = tmp_path / "clean.tif", tmp_path / "holed.tif"
    img = (moon / 255.0).astype(np.float32)
    tifffile.imwrite(clean, img)
    img[:, :4] = np.nan  # 4 columns without data: the x = 0 patches are 15/16 valid
    tifffile.imwrite(holed, img)

    def edge_contrast(p: Path) -> list[float]:
        # a patch's own standard deviation: what a black edge inside it would inflate
        return [float(q.pixels.std()) for q in iter_patches(p, 64, min_valid=0.9) if q.x == 0]

    a, b = edge_contrast(clean), edge_contrast(holed)
    assert len(a) == len(b) == 8
    assert max(abs(x - y) / x for x, y in zip(a, b, strict=True)) < 0.15  # read as black: +60 % and more
    # iter_patch_blocks, which edgeae score and scan use, holds the same filled pixels
    (blk,) = [b for b in iter_patch_blocks(holed, 64) if b.y0 == 0][:1]
    first = blk.pixels(np.array([0]))[0]
    assert np.isfinite(first).all() and first[..., :4].min() > 0.05


def test_a_small_image_has_no_whole_patch(tmp_path: Path, moon: np.ndarray) -> None:
    p = tmp_path / "tiny.tif"
    tifffile.imwrite(p, moon[:40, :50])
    assert list(iter_patches(p, 64, min_valid=1.0)) == []  # 2,000 of 4,096 pixels; the rest would be reflection
    (q,) = list(iter_patches(p, 64))
    assert q.valid_frac == 40 * 50 / 64**2


def test_zero_filled_border_of_a_product_without_no_data_is_no_data(formats: Path) -> None:
    pytest.importorskip("rasterio")
    from edgeae.imageio import read_image

    p = formats / "geotiff/ESP_037156_1800_RED.byte.tif"  # a HiRISE RDR: its black diamond declares no no-data
    im = read_image(p)
    assert im.extra["special_values"] == [] and 0.29 < 1 - im.valid.mean() < 0.31
    kept = list(iter_patches(p, 64, min_valid=0.9))
    assert kept and all(q.pixels.mean() > 0.2 for q in kept)  # no patch of the black margin is scored
    # a product whose label declares its no-data value keeps only that (LOLA's Lambert map: 0 declared)
    lam = read_image(formats / "geotiff/Lunar_LRO_LOLA_Shade_MAP2_90.0N20.0_LAMB.tif")
    assert lam.extra["special_values"] == [0.0]


def test_score_says_an_image_is_smaller_than_a_patch(tmp_path: Path, moon: np.ndarray, caplog) -> None:
    pytest.importorskip("torch")
    from edgeae.cli import main

    p = tmp_path / "tiny.tif"
    tifffile.imwrite(p, moon[:40, :50])
    assert main(["score", str(p), "-o", str(tmp_path / "s.csv"), "--no-progress"]) == 0
    # said once (score_file's line, with the min_valid it would need), not twice (audit s33 a2)
    assert caplog.text.count("is smaller than") == 1 and "image 40×50 is smaller than the 64×64 patch" in caplog.text
    assert "so it is scored only with min_valid <= 0.488" in caplog.text


def test_a_scan_written_before_the_fill_is_not_resumed(tmp_path: Path) -> None:
    import json

    from edgeae.scan.pipeline import ModelSpec, ScanConfig
    from edgeae.scan.state import ScanStateError, ScanStore

    spec = ModelSpec(path="m.pt", model_id="m", artifact_hash="0" * 64, kind="vae", patch=64, channels=1)
    cfg = ScanConfig(spec, stride=64)
    old = cfg.to_dict()
    del old["pixels"]  # scan.json of an earlier edgeae: no-data read as black
    (tmp_path / "scan.json").write_text(json.dumps({"config": old}))
    with pytest.raises(ScanStateError, match="read no-data inside a patch as black"):
        ScanStore(tmp_path, cfg)
    ScanStore(tmp_path, cfg, force=True)  # --force starts over
    assert json.loads((tmp_path / "scan.json").read_text())["config"]["pixels"] == 2


def test_score_array_fills_partial_windows_only_when_asked(moon: np.ndarray) -> None:
    from edgeae.anomaly.score import score_array

    img = (moon[:128, :128] / 255.0).astype(np.float32)
    valid = np.ones((128, 128), dtype=bool)
    valid[:, :8] = False
    img[~valid] = 0.0  # no-data as the readers hand it over: 0
    seen: list[np.ndarray] = []

    def scorer(batch: np.ndarray) -> dict[str, np.ndarray]:
        seen.append(batch.copy())
        return {"score": batch.std(axis=(1, 2, 3)).astype(np.float64)}

    as_read = score_array(img, scorer, 64, 64, valid=valid, min_valid=0.0)
    filled = score_array(img, scorer, 64, 64, valid=valid, min_valid=0.0, fill=True)
    first, second = seen
    assert first[0, 0, :, :8].max() == 0.0 and second[0, 0, :, :8].min() > 0.1  # x = 0 windows: filled
    assert np.array_equal(first[1], second[1])  # a whole window is untouched
    assert filled.score[0] < as_read.score[0]  # the black edge no longer adds contrast


def test_evaluate_fill_nodata_is_recorded(data_root: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    import json

    from edgeae.cli import main

    out = tmp_path / "ev"
    argv = ["evaluate", "--dataset", "hirise_landmarks", "--limit", "3", "--no-plots", "--no-progress", "--out"]
    assert main([*argv, str(out), "--threads", "1", "--data-root", str(data_root), "--fill-nodata"]) == 0
    settings = json.loads((out / "hirise_landmarks" / "results.json").read_text())["info"]["settings"]
    assert settings["fill_nodata"] is True
    assert "partial patches' no-data filled (--fill-nodata)" in (out / "summary.md").read_text()

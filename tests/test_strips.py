"""Streaming strips and patches: same pixels as a full read, edge coverage, bounded memory, BigTIFF writer."""

from __future__ import annotations

import itertools
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from edgeae.imageio import ImageReadError, image_shape, read_image, write_image
from edgeae.strips import RowReader, iter_patches, iter_strips, write_tiled_bigtiff
from edgeae.tiling import tile_positions

tifffile = pytest.importorskip("tifffile")


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    """A 3000×700 16-bit grey frame with smooth structure (not a constant) and a no-data margin."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:3000, 0:700]
    img = 20000 + 15000 * np.sin(yy / 97.0) * np.cos(xx / 53.0) + rng.normal(0, 500, (3000, 700))
    img[:, :24] = 0  # left no-data margin running the whole height
    return np.clip(img, 0, 65535).astype(np.uint16)


@pytest.fixture(scope="module", params=["tiled-zlib", "strips", "png"])
def frame_path(request: pytest.FixtureRequest, frame: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("frames")
    if request.param == "tiled-zlib":
        p = d / "frame.tif"
        tifffile.imwrite(p, frame, tile=(256, 256), compression="zlib", bigtiff=True)
    elif request.param == "strips":
        p = d / "frame_strips.tif"
        tifffile.imwrite(p, frame, rowsperstrip=100)
    else:
        p = write_image(d / "frame.png", frame)
    return p


@pytest.mark.parametrize(("rows", "overlap"), [(512, 0), (700, 64), (4000, 0)])
def test_strips_equal_full_read(frame_path: Path, rows: int, overlap: int) -> None:
    full = read_image(frame_path)
    strips = list(iter_strips(frame_path, rows, overlap))
    assert strips[0].y0 == 0 and strips[-1].y1 == 3000
    for a, b in itertools.pairwise(strips):
        assert b.y0 == a.y1 - overlap
    for s in strips:
        assert s.pixels.shape == (s.y1 - s.y0, 700, 1) and s.pixels.dtype == np.float32
        np.testing.assert_array_equal(s.pixels, full.pixels[s.y0 : s.y1])
        np.testing.assert_array_equal(s.valid, full.valid[s.y0 : s.y1])  # margin found in every strip
    assert not full.valid[:, :20].any() and full.valid[:, 40:].all()


def test_patches_round_trip_to_pixels(frame_path: Path) -> None:
    im = read_image(frame_path)
    full, valid = im.pixels, im.valid
    patches = list(iter_patches(frame_path, 128, 96, band_rows=500))
    assert [(p.y, p.x) for p in patches] == tile_positions(3000, 700, 128, 96)
    for p in patches:  # the pixels with data as read; the no-data margin filled (fill_patches), not black
        ok = valid[p.y : p.y + 128, p.x : p.x + 128]
        np.testing.assert_array_equal(p.pixels[ok], full[p.y : p.y + 128, p.x : p.x + 128][ok])
        assert ok.all() or p.pixels[~ok].min() > 0.1  # the margin reads 0
    assert patches[-1].y + 128 == 3000 and patches[-1].x + 128 == 700  # edges covered
    assert patches[0].valid_frac == pytest.approx(1 - 25 / 128, abs=0.02)  # margin + 1 px ringing guard


def test_patch_filtering_by_valid_fraction(frame_path: Path) -> None:
    kept = list(iter_patches(frame_path, 64, 64, min_valid=0.9, channels=3))
    assert kept and all(p.x > 0 and p.valid_frac >= 0.9 for p in kept)
    assert kept[0].pixels.shape == (64, 64, 3)
    n_all = len(tile_positions(3000, 700, 64, 64))
    assert len(kept) == n_all - len(range(0, 3000 - 64 + 1, 64)) - 1  # the x = 0 column is dropped


def test_small_image_is_padded(tmp_path: Path) -> None:
    p = write_image(tmp_path / "small.png", np.full((20, 30), 200, np.uint8))
    (patch,) = list(iter_patches(p, 64))
    assert (patch.x, patch.y, patch.pixels.shape) == (0, 0, (64, 64, 1))
    # the reflected padding is not data: 20 × 30 of the 64 × 64 pixels are (so --min-valid 1 skips it)
    assert np.allclose(patch.pixels, 200 / 255) and patch.valid_frac == 20 * 30 / 64**2


def _stream_peak(p: Path) -> tuple[int, int]:
    tracemalloc.start()
    n = sum(1 for _ in iter_patches(p, 128, 128, band_rows=256))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return n, peak


def test_streaming_memory_does_not_grow_with_height(tmp_path: Path) -> None:
    """Peak traced allocation while streaming patches is the same for a 1500- and a 6000-row TIFF."""
    rng = np.random.default_rng(0)
    peaks = []
    for h in (1500, 6000):
        p = tmp_path / f"h{h}.tif"
        tifffile.imwrite(p, rng.integers(1, 255, (h, 2000), dtype=np.uint8), tile=(256, 256), bigtiff=True)
        n, peak = _stream_peak(p)
        assert n == len(tile_positions(h, 2000, 128, 128))
        peaks.append(peak)
    frame_float = 6000 * 2000 * 4
    assert peaks[1] < 1.15 * peaks[0], f"peaks {peaks} grow with the image height"
    assert peaks[1] < frame_float / 2, f"peak {peaks[1] / 1e6:.1f} MB vs a {frame_float / 1e6:.0f} MB frame"


def test_row_reader_rejects_bad_ranges_and_stacks(tmp_path: Path) -> None:
    p = tmp_path / "a.tif"
    tifffile.imwrite(p, np.zeros((10, 10), np.uint8))
    with RowReader(p) as r, pytest.raises(ValueError, match="outside"):
        r.read_rows(5, 11)
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.zeros((5, 10, 10), np.uint8))
    with pytest.raises(ImageReadError, match=r"stack\.tif"):
        RowReader(stack)
    with pytest.raises(ValueError, match="overlap"):
        next(iter_strips(p, 10, 10))


def test_write_tiled_bigtiff_streams_real_looking_frame(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    sources = [
        rng.integers(0, 256, (300, 400), dtype=np.uint8),
        rng.integers(0, 256, (200, 100), dtype=np.uint8),
    ]
    a = write_tiled_bigtiff(tmp_path / "a.tif", (1000, 700), sources, tile=256, seed=5, nodata_margin=30)
    b = write_tiled_bigtiff(tmp_path / "b.tif", (1000, 700), sources, tile=256, seed=5, nodata_margin=30)
    assert a.read_bytes() == b.read_bytes()  # deterministic from the seed
    with tifffile.TiffFile(a) as tif:
        assert tif.is_bigtiff and tif.pages[0].is_tiled and tif.pages[0].shape == (1000, 700)
    assert image_shape(a) == (1000, 700, 1)
    im = read_image(a)
    raw = np.round(im.pixels[:, :, 0] * 255)
    assert (raw[:, :30] == 0).all() and (raw[:, -30:] == 0).all()
    assert not im.valid[:, :30].any() and not im.valid[:, -30:].any() and im.valid[:, 40:-40].mean() > 0.99
    assert raw[:, 30:-30].std() > 50  # real content, not padding


def test_real_bigtiff_from_orbital_images(data_root: Path, tmp_path: Path) -> None:
    srcs = sorted((data_root / "orbital_gray" / "lroc_nac_craters").glob("*.png"))[:3]
    if not srcs:
        pytest.skip("no LROC NAC images in the data folder")
    p = write_tiled_bigtiff(tmp_path / "nac.tif", (2048, 1300), srcs, tile=512, seed=0, nodata_margin=20)
    patches = list(iter_patches(p, 128, 128, min_valid=0.95))
    # 16 rows × 9 columns clear of the 20-px margins; a shadow that abuts a margin merges with it
    assert {q.x for q in patches} == set(range(128, 1153, 128)) and 16 * 9 - 4 <= len(patches) <= 16 * 9
    assert all(0.05 < float(q.pixels.mean()) < 0.95 and q.pixels.std() > 0.02 for q in patches)


def test_nodata_carried_across_strips(tmp_path: Path) -> None:
    """A masked block that reaches only the top border stays invalid in the strips below it."""
    rng = np.random.default_rng(11)
    img = rng.integers(60, 200, (600, 400), dtype=np.uint8)
    img[:350, 100:300] = rng.integers(0, 4, (350, 200))  # touches the top edge only
    img[400:450, 150:200] = 0  # an interior shadow: valid
    p = tmp_path / "block.tif"
    tifffile.imwrite(p, img, rowsperstrip=32)
    full = read_image(p).valid
    assert not full[:350, 102:298].any() and full[400:450, 150:200].all()
    for s in iter_strips(p, 100):
        np.testing.assert_array_equal(s.valid, full[s.y0 : s.y1], err_msg=f"rows {s.y0}:{s.y1}")


def test_main_streams_and_reports_memory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from edgeae.cli.strips_tool import main

    src = np.random.default_rng(0).integers(0, 256, (300, 300), dtype=np.uint8)
    srcf = write_image(tmp_path / "src.png", src)
    frame = tmp_path / "frame.tif"
    assert main(["make-frame", str(frame), str(srcf), "--shape", "700", "600", "--tile", "256"]) == 0
    assert main(["stream", str(frame), "--patch", "64", "--min-valid", "0.9"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["shape"] == [700, 600, 1] and out["patches"] == len(tile_positions(700, 600, 64, 64))
    assert out["kept"] < out["patches"] and out["peak_rss_mb"] > 0


def test_streaming_pyramid_planar_and_rgba_tiffs(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    rgb = rng.integers(10, 250, (300, 200, 3), dtype=np.uint8)
    pyr = tmp_path / "pyr.tif"
    with tifffile.TiffWriter(pyr, bigtiff=True) as tw:
        tw.write(rgb, subifds=1, tile=(64, 64), photometric="rgb", compression="zlib")
        tw.write(rgb[::2, ::2], subfiletype=1, tile=(64, 64), photometric="rgb")
    planar = tmp_path / "planar.tif"
    tifffile.imwrite(planar, np.moveaxis(rgb, -1, 0), planarconfig="separate", photometric="rgb", tile=(64, 64))
    rgba = np.dstack([rgb, np.full((300, 200), 255, np.uint8)])
    rgba[100:110, 50:60, 3] = 0
    alpha = tmp_path / "rgba.tif"
    tifffile.imwrite(alpha, rgba, photometric="rgb", extrasamples=["unassalpha"], rowsperstrip=50)
    for p in (pyr, planar, alpha):
        full = read_image(p)
        np.testing.assert_array_equal(np.round(full.pixels * 255).astype(np.uint8), rgb)
        for s in iter_strips(p, 70, 10):
            np.testing.assert_array_equal(s.pixels, full.pixels[s.y0 : s.y1])
            np.testing.assert_array_equal(s.valid, full.valid[s.y0 : s.y1])
    assert read_image(alpha).valid.sum() == 300 * 200 - 100

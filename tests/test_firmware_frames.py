"""Frame sources stream the same pixels as a full read; validation gives reasons instead of raising."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from edgeae.firmware_sim.frames import FrameError, expand_frames, open_frame
from edgeae.firmware_sim.mission import Camera
from edgeae.firmware_sim.validate import check_header, check_pixels, to_samples

tifffile = pytest.importorskip("tifffile")


@pytest.fixture
def image() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 250, (301, 517), dtype=np.uint8)


@pytest.mark.parametrize("layout", [{"tile": (64, 128)}, {"rowsperstrip": 37}])
@pytest.mark.parametrize("strip_rows", [64, 7, 1000])
def test_tiff_streams_exact_rows(tmp_path: Path, image: np.ndarray, layout: dict, strip_rows: int) -> None:
    p = tmp_path / "f.tif"
    tifffile.imwrite(p, image, bigtiff=True, **layout)
    reader = open_frame(p)
    assert (reader.header.height, reader.header.width, reader.header.channels) == (301, 517, 1)
    got = [(r0, s.copy()) for r0, s in reader.strips(strip_rows)]
    assert [r0 for r0, _ in got] == list(range(0, 301, strip_rows))
    assert np.array_equal(np.concatenate([s for _, s in got])[:, :, 0], image)


def test_npy_and_png_and_folders(tmp_path: Path, image: np.ndarray) -> None:
    np.save(tmp_path / "a.npy", np.stack([image] * 3, axis=2))
    r = open_frame(tmp_path / "a.npy")
    assert r.header.channels == 3 and not r.array.flags.owndata  # memory-mapped
    cv2 = pytest.importorskip("cv2")
    rgb = np.stack([image, image // 2, image // 3], axis=2)
    cv2.imwrite(str(tmp_path / "b.png"), rgb[:, :, ::-1])
    got = next(open_frame(tmp_path / "b.png").strips(10_000))[1]
    assert np.array_equal(got, rgb)  # decoded as RGB, raw uint8
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in expand_frames([tmp_path])] == ["a.npy", "b.png"]
    with pytest.raises(FrameError, match="unsupported"):
        open_frame(tmp_path / "notes.txt")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(FrameError, match=r"bad\.png"):
        open_frame(tmp_path / "bad.png")


def test_header_checks() -> None:
    from edgeae.firmware_sim.frames import FrameHeader

    cam = Camera(channels=3, height=100, width=200, bit_depth=8)
    ok = FrameHeader("f", 100, 200, 3, np.dtype(np.uint8))
    assert check_header(ok, cam).ok
    assert check_header(FrameHeader("f", 99, 200, 3, np.dtype(np.uint8)), cam).reason == "shape"
    assert check_header(FrameHeader("f", 100, 200, 1, np.dtype(np.uint8)), cam).reason == "channels"
    assert check_header(FrameHeader("f", 100, 200, 3, np.dtype(np.uint16)), cam).reason == "dtype"
    assert check_header(FrameHeader("f", 100, 200, 3, np.dtype(np.complex64)), cam).reason == "dtype"
    assert check_header(FrameHeader("f", 100, 200, 3, np.dtype(np.float32)), cam).ok


def test_pixel_checks() -> None:
    cam = Camera(channels=1, bit_depth=12, max_saturated_fraction=0.1, max_nan_fraction=0.0)
    a = np.full((10, 10, 1), 100, np.uint16)
    assert check_pixels(a, cam).ok
    a[0, :5] = 4095
    v = check_pixels(a, cam)
    assert v.ok and v.saturated_fraction == pytest.approx(0.05)
    a[1] = 4095
    assert check_pixels(a, cam).reason == "saturated"
    assert check_pixels(np.full((2, 2, 1), 5000, np.uint16), cam).reason == "range"
    f = np.full((4, 4, 1), 0.5, np.float32)
    f[0, 0] = np.nan
    assert check_pixels(f, cam).reason == "nan"
    assert check_pixels(np.full((4, 4, 1), 1.5, np.float32), cam).reason == "range"
    # uint8 samples: an 8-bit camera cannot exceed its range (no pass), a 6-bit one can; RGB saturation per pixel
    cam6, cam8 = Camera(channels=3, bit_depth=6), Camera(channels=3, bit_depth=8, max_saturated_fraction=0.3)
    assert check_pixels(np.full((2, 2, 3), 100, np.uint8), cam6).reason == "range"
    rgb = np.full((4, 4, 3), 10, np.uint8)
    rgb[0, :, 1] = 255  # one channel at the top marks the pixel saturated
    v = check_pixels(rgb, cam8)
    assert v.ok and v.saturated_fraction == pytest.approx(0.25)
    assert to_samples(np.array([[[0.5]]], np.float32), 8).tolist() == [[[128]]]
    assert to_samples(np.array([[[300]]], np.uint16), 12).dtype == np.uint16


def test_a_multi_page_tiff_is_refused_not_cut_to_its_first_page(tmp_path: Path) -> None:
    tifffile = pytest.importorskip("tifffile")
    p = tmp_path / "stack.tif"
    with tifffile.TiffWriter(p) as tw:
        for _ in range(3):
            tw.write(np.zeros((32, 32, 3), np.uint8), photometric="rgb")
    with pytest.raises(FrameError, match="a TIFF of 3 pages; firmware-sim takes one frame per file"):
        open_frame(p)
    one = tmp_path / "one.tif"
    tifffile.imwrite(one, np.zeros((32, 32, 3), np.uint8), photometric="rgb")
    assert open_frame(one).header.height == 32

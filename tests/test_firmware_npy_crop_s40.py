"""Session 40 (review r3 #1): the mosaic check read its central crop of a memory-mapped ``.npy`` through the map,
leaving 4-6 MiB of it resident, in no plan: at the boot's advised floor 6 of 8 such frames went over the budget. The
crop is now read from the file, as the strips are; its pixels are the array's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.mark.parametrize("shape", [(300, 700), (600, 1100, 3), (5, 9, 1)])
def test_the_crop_read_from_the_file_is_the_arrays(tmp_path: Path, shape: tuple[int, ...]) -> None:
    from edgeae.firmware_sim.frames import ArrayFrame, open_frame

    a = np.random.default_rng(0).integers(0, 4000, shape).astype(">u2" if len(shape) == 3 else np.float32)
    np.save(tmp_path / "f.npy", a)
    reader = open_frame(tmp_path / "f.npy")
    assert isinstance(reader, ArrayFrame) and reader.mapped
    hwc = a.reshape(a.shape[0], a.shape[1], -1)
    for y0, y1, x0, x1 in [(0, 512, 0, 512), (10, 20, 3, 400), (-4, 1000, 2, 2000), (7, 7, 0, 5), (3, -2, 0, 4)]:
        got = reader.crop(y0, y1, x0, x1)
        want = hwc[max(0, y0) : max(max(0, y0), y1), max(0, x0) : x1]  # a negative end: nothing
        mem = ArrayFrame(np.ascontiguousarray(hwc)).crop(y0, y1, x0, x1)  # the in-memory path, clipped alike
        assert mem.shape == want.shape and np.array_equal(mem, want)
        assert got.dtype == want.dtype and got.shape == want.shape and np.array_equal(got, want)
        assert not np.shares_memory(got, reader.array)


def test_the_mosaic_check_makes_no_page_of_the_map_resident(tmp_path: Path) -> None:
    """Its RSS grows by the crop (256 KiB), not by the map's pages under it (2 MiB of a 4096-px uint8 frame's 512
    rows, more where the kernel faults pages around), which reading the crop through the map makes resident."""
    from edgeae.firmware_sim.frame_intake import mosaic_crop
    from edgeae.firmware_sim.frames import open_frame
    from edgeae.firmware_sim.memory_meter import rss_bytes

    np.save(tmp_path / "f.npy", np.random.default_rng(1).integers(0, 255, (2048, 4096), np.uint8))
    reader = open_frame(tmp_path / "f.npy")
    before = rss_bytes()
    crop = mosaic_crop(reader)  # type: ignore[arg-type]
    grew = rss_bytes() - before
    assert crop.shape == (512, 512, 1)
    before = rss_bytes()
    through = np.array(reader.array[768:1280, 1792:2304])  # the same crop through the map
    control = rss_bytes() - before
    if control < 3 * 2**19:
        pytest.skip(f"reading through the map grew the RSS only {control:,} B here: nothing to compare")
    assert np.array_equal(crop, through)
    assert grew < 2**20 < control, (grew, control)


def test_a_file_cut_short_is_a_frame_error(tmp_path: Path) -> None:
    from edgeae.firmware_sim.frames import FrameError, open_frame

    path = tmp_path / "f.npy"
    np.save(path, np.zeros((600, 600), np.uint8))
    reader = open_frame(path)
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size - 600 * 200)
    with pytest.raises(FrameError, match="npy data ends within row"):
        reader.crop(0, 600, 0, 600)

"""Tiling: full coverage incl. right/bottom edges, padding of small images, blending, no-data filtering."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeae.tiling import (
    axis_starts,
    blend_tiles,
    extract_tiles,
    filter_positions,
    pad_to_patch,
    tile_positions,
    tile_window,
    valid_fraction,
)


@settings(max_examples=80, deadline=None)
@given(
    h=st.integers(1, 300),
    w=st.integers(1, 300),
    patch=st.integers(1, 64),
    data=st.data(),
)
def test_positions_cover_every_pixel(h: int, w: int, patch: int, data: st.DataObject) -> None:
    stride = data.draw(st.integers(1, patch))
    pos = tile_positions(h, w, patch, stride)
    cover = np.zeros((max(h, patch), max(w, patch)), dtype=np.int32)
    for y, x in pos:
        cover[y : y + patch, x : x + patch] += 1
    assert (cover[:h, :w] > 0).all()
    # tiles stay inside the (padded) image and are unique and row-major
    assert all(0 <= y <= max(h - patch, 0) and 0 <= x <= max(w - patch, 0) for y, x in pos)
    assert pos == sorted(set(pos))
    # the last tile is flush with the bottom-right corner
    assert pos[-1] == (max(h - patch, 0), max(w - patch, 0))


def test_axis_starts_examples() -> None:
    assert axis_starts(10, 4, 4) == [0, 4, 6]  # 6 = flush with the end, not dropped
    assert axis_starts(8, 4, 4) == [0, 4]
    assert axis_starts(3, 4, 2) == [0]  # smaller than the patch: one padded tile
    assert axis_starts(300, 128, 96) == [0, 96, 172]
    with pytest.raises(ValueError, match="gaps"):
        axis_starts(10, 4, 5)
    with pytest.raises(ValueError, match="patch"):
        axis_starts(10, 0, 1)


def test_pad_to_patch_records_padding() -> None:
    img = np.arange(12, dtype=np.float32).reshape(3, 4)
    out, pad = pad_to_patch(img, 6)
    assert out.shape == (6, 6) and pad == (3, 2)
    np.testing.assert_array_equal(out[:3, :4], img)
    np.testing.assert_array_equal(out[3, :4], img[1])  # reflect (without repeating the edge)
    same, nopad = pad_to_patch(img, 3)
    assert same is img and nopad == (0, 0)
    one, _ = pad_to_patch(np.ones((1, 1, 3)), 4)  # a single pixel pads by edge replication
    assert one.shape == (4, 4, 3) and (one == 1).all()


@pytest.mark.parametrize("window", ["hann", "uniform"])
@pytest.mark.parametrize("shape", [(100, 130, 3), (77, 50), (20, 30, 1)])
def test_blend_of_identical_tiles_reproduces_image(window: str, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    img = rng.random(shape).astype(np.float32)
    pos = tile_positions(shape[0], shape[1], 32, 20)
    tiles = extract_tiles(img, pos, 32)
    assert tiles.shape == (len(pos), 32, 32, *shape[2:])
    out = blend_tiles(tiles, pos, img.shape, 32, window=window)
    assert out.dtype == np.float32 and out.shape == img.shape
    np.testing.assert_allclose(out, img, atol=1e-6)


def test_blend_weights_average_overlaps() -> None:
    pos = tile_positions(10, 16, 10, 6)  # x = 0, 6 overlap on columns 6..9
    tiles = np.stack([np.zeros((10, 10)), np.ones((10, 10))])
    out = blend_tiles(tiles, pos, (10, 16), window="uniform")
    np.testing.assert_allclose(out[:, :6], 0)
    np.testing.assert_allclose(out[:, 6:10], 0.5)
    np.testing.assert_allclose(out[:, 10:], 1)
    hann = blend_tiles(tiles, pos, (10, 16), window="hann")
    assert (np.diff(hann[5]) >= -1e-7).all() and hann[5, 0] == 0 and hann[5, -1] == 1


def test_window_is_strictly_positive() -> None:
    win = tile_window(128)
    assert win.min() > 0 and win.max() <= 1
    with pytest.raises(ValueError, match="window"):
        tile_window(8, "triangle")


def test_blend_rejects_uncovered_pixels_and_bad_shapes() -> None:
    with pytest.raises(ValueError, match="covered by no tile"):
        blend_tiles(np.ones((1, 4, 4)), [(0, 0)], (4, 8))
    with pytest.raises(ValueError, match="do not match"):
        blend_tiles(np.ones((2, 4, 4)), [(0, 0)], (4, 4))


def test_extract_rejects_positions_outside() -> None:
    with pytest.raises(ValueError, match="outside"):
        extract_tiles(np.zeros((10, 10)), [(8, 0)], 4)


def test_valid_fraction_and_filtering() -> None:
    valid = np.ones((64, 96), dtype=bool)
    valid[:, :16] = False  # a no-data margin on the left
    pos = tile_positions(64, 96, 32, 32)
    frac = valid_fraction(valid, pos, 32)
    np.testing.assert_allclose(frac, [0.5, 1, 1, 0.5, 1, 1])
    assert filter_positions(valid, pos, 32, 0.9) == [(0, 32), (0, 64), (32, 32), (32, 64)]
    # a small image's reflected padding counts as missing: 50 valid pixels of a 32 × 32 tile
    small = np.zeros((10, 10), dtype=bool)
    small[:5] = True
    np.testing.assert_allclose(valid_fraction(small, [(0, 0)], 32), [50 / 32**2])
    with pytest.raises(ValueError, match="min_valid"):
        filter_positions(valid, pos, 32, 1.5)

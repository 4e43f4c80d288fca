"""Image I/O: round trips for every format and bit depth, header-only shapes, and every error path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeae.imageio import ImageData, ImageReadError, image_shape, read_image, write_image

cv2 = pytest.importorskip("cv2")
tifffile = pytest.importorskip("tifffile")

RNG = np.random.default_rng(1234)
GREY8 = RNG.integers(0, 256, (37, 53), dtype=np.uint8)
RGB8 = RNG.integers(0, 256, (37, 53, 3), dtype=np.uint8)
GREY16 = RNG.integers(0, 65536, (37, 53), dtype=np.uint16)
RGB16 = RNG.integers(0, 65536, (37, 53, 3), dtype=np.uint16)


def _raw(im: ImageData) -> np.ndarray:
    """Back to stored integers (H, W[, C]) from the normalised pixels and the recorded scale."""
    out = np.round(im.pixels * im.scale).astype(np.dtype(im.raw_dtype))
    return out[:, :, 0] if out.shape[2] == 1 else out


@pytest.mark.parametrize(
    ("ext", "arr"),
    [
        (".png", GREY8), (".png", RGB8), (".png", GREY16), (".png", RGB16),
        (".pgm", GREY8), (".pgm", GREY16), (".ppm", RGB8), (".ppm", RGB16),
        (".tif", GREY8), (".tif", RGB8), (".tiff", GREY16), (".tif", RGB16),
    ],
)  # fmt: skip
def test_lossless_round_trip(tmp_path: Path, ext: str, arr: np.ndarray) -> None:
    p = write_image(tmp_path / f"img{ext}", arr)
    im = read_image(p, detect_nodata=False)
    bits = 8 * arr.dtype.itemsize
    assert im.raw_dtype == str(arr.dtype) and im.bit_depth == bits and im.scale == 2**bits - 1
    assert im.pixels.dtype == np.float32 and im.pixels.min() >= 0 and im.pixels.max() <= 1
    np.testing.assert_array_equal(_raw(im), arr)  # RGB order kept (no BGR swap leaks out)
    assert image_shape(p) == im.shape == (*arr.shape[:2], 1 if arr.ndim == 2 else 3)
    assert im.path == p and im.valid.all()


@pytest.mark.parametrize("arr", [GREY8, RGB8])
def test_jpeg_round_trip_is_close(tmp_path: Path, arr: np.ndarray) -> None:
    smooth = cv2.GaussianBlur(arr, (7, 7), 2)
    p = write_image(tmp_path / "img.jpg", smooth)
    im = read_image(p, detect_nodata=False)
    assert im.bit_depth == 8 and im.shape == (*arr.shape[:2], 1 if arr.ndim == 2 else 3)
    assert np.abs(_raw(im).astype(int) - smooth).mean() < 3
    if arr.ndim == 3:  # channel order: the red channel must still be the red one
        assert np.corrcoef(_raw(im)[..., 0].ravel(), smooth[..., 0].ravel())[0, 1] > 0.95
    assert image_shape(p) == im.shape


def test_float_write_quantises_to_requested_depth(tmp_path: Path) -> None:
    x = np.linspace(0, 1, 64 * 3, dtype=np.float32).reshape(8, 8, 3)
    for bits in (8, 16):
        im = read_image(write_image(tmp_path / f"f{bits}.png", x, bit_depth=bits), detect_nodata=False)
        assert im.bit_depth == bits
        np.testing.assert_allclose(im.pixels, x, atol=0.5 / (2**bits - 1) + 1e-7)
    with pytest.raises(ValueError, match="8-bit"):
        write_image(tmp_path / "x.jpg", x, bit_depth=16)
    with pytest.raises(ValueError, match="cannot write"):
        write_image(tmp_path / "x.bmp", x)


def test_float_write_of_nan_and_inf_is_said(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    x = np.full((4, 4), 0.5, dtype=np.float32)
    x[0, 0], x[1, 1], x[2, 2], x[3, 3] = np.nan, np.inf, -np.inf, 1.5
    with caplog.at_level("WARNING", logger="edgeae.imageio"):
        im = read_image(write_image(tmp_path / "nan.png", x), detect_nodata=False)
    assert "3 NaN/inf samples" in caplog.text and "nan.png" in caplog.text
    np.testing.assert_array_equal(np.diag(im.pixels[..., 0] * 255).round(), [0, 255, 0, 255])
    caplog.clear()
    with caplog.at_level("WARNING", logger="edgeae.imageio"):
        write_image(tmp_path / "ok.png", np.full((4, 4), 1.25, dtype=np.float32))  # clipped, not reported
    assert "NaN" not in caplog.text


def test_bigtiff_and_pyramid_finest_level(tmp_path: Path) -> None:
    big = tmp_path / "big.tif"
    tifffile.imwrite(big, GREY16, bigtiff=True, tile=(16, 16))
    im = read_image(big, detect_nodata=False)
    assert im.bit_depth == 16
    np.testing.assert_array_equal(_raw(im), GREY16)
    pyr = tmp_path / "pyr.tif"
    base = RNG.integers(0, 256, (128, 96, 3), dtype=np.uint8)
    with tifffile.TiffWriter(pyr, bigtiff=True) as tw:
        tw.write(base, subifds=2, tile=(32, 32), photometric="rgb")
        tw.write(base[::2, ::2], subfiletype=1, tile=(32, 32), photometric="rgb")
        tw.write(base[::4, ::4], subfiletype=1, tile=(32, 32), photometric="rgb")
    im = read_image(pyr, detect_nodata=False)
    assert image_shape(pyr) == (128, 96, 3)
    np.testing.assert_array_equal(_raw(im), base)


def test_planar_and_compressed_tiff(tmp_path: Path) -> None:
    p = tmp_path / "planar.tif"
    tifffile.imwrite(p, np.moveaxis(RGB8, -1, 0), planarconfig="separate", photometric="rgb", compression="zlib")
    np.testing.assert_array_equal(_raw(read_image(p, detect_nodata=False)), RGB8)
    assert image_shape(p) == (37, 53, 3)


def test_twelve_bit_detection(tmp_path: Path) -> None:
    g12 = RNG.integers(0, 4096, (20, 30)).astype(np.uint16)
    pgm = tmp_path / "x12.pgm"
    pgm.write_bytes(b"P5\n# 12-bit\n30 20\n4095\n" + g12.astype(">u2").tobytes())
    tif = tmp_path / "x12.tif"
    tifffile.imwrite(tif, g12, extratags=[(281, "H", 1, 4095, False)])  # MaxSampleValue
    for p in (pgm, tif):
        im = read_image(p, detect_nodata=False)
        assert (im.bit_depth, im.scale, im.raw_dtype) == (12, 4095.0, "uint16"), p
        np.testing.assert_array_equal(_raw(im), g12)


def test_channels_conversion(tmp_path: Path) -> None:
    p = write_image(tmp_path / "rgb.png", RGB8)
    grey = read_image(p, channels=1, detect_nodata=False).pixels
    expect = (RGB8 @ np.array([0.299, 0.587, 0.114])) / 255
    np.testing.assert_allclose(grey[:, :, 0], expect, atol=1e-5)
    g = write_image(tmp_path / "g.png", GREY8)
    rgb = read_image(g, channels=3, detect_nodata=False).pixels
    assert rgb.shape == (37, 53, 3) and (rgb[..., 0] == rgb[..., 2]).all()
    with pytest.raises(ValueError, match="channels"):
        read_image(p, channels=2)


def test_alpha_and_nan_become_invalid(tmp_path: Path) -> None:
    bgra = np.dstack([RGB8, np.full(RGB8.shape[:2], 255, np.uint8)])
    bgra[0, 0, 3] = 0
    p = tmp_path / "rgba.png"
    cv2.imwrite(str(p), bgra)
    im = read_image(p, detect_nodata=False)
    assert im.shape == (37, 53, 3) and not im.valid[0, 0] and im.valid.sum() == im.valid.size - 1
    f = RNG.random((16, 16)).astype(np.float32)
    f[3, 4] = np.nan
    f[5, 6] = np.inf
    tifffile.imwrite(tmp_path / "f.tif", f)
    im = read_image(tmp_path / "f.tif", detect_nodata=False)
    assert im.scale == 1.0 and np.isfinite(im.pixels).all()
    assert not im.valid[3, 4] and not im.valid[5, 6] and im.valid.sum() == 254
    tifffile.imwrite(tmp_path / "radiance.tif", f * 300)
    with pytest.raises(ImageReadError, match=r"radiance\.tif.*outside \[0, 1\]"):
        read_image(tmp_path / "radiance.tif")


def test_image_data_validates() -> None:
    with pytest.raises(ValueError, match="float32"):
        ImageData(np.zeros((4, 4, 3)), "uint8", 8, 255.0, np.ones((4, 4), bool))
    with pytest.raises(ValueError, match="valid"):
        ImageData(np.zeros((4, 4, 3), np.float32), "uint8", 8, 255.0, np.ones((4, 5), bool))


# ---------------------------------------------------------------- error paths: each names the file


def _truncate(p: Path, keep: float) -> Path:
    data = p.read_bytes()
    p.write_bytes(data[: int(len(data) * keep)])
    return p


def _write(p: Path, data: bytes) -> Path:
    p.write_bytes(data)
    return p


def _make(tmp_path: Path, name: str, arr: np.ndarray = GREY8) -> Path:
    return write_image(tmp_path / name, arr)


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        (lambda d: d / "missing.png", "no such file"),
        (lambda d: _write(d / "empty.png", b""), "empty"),
        (lambda d: d, "directory"),
        (lambda d: _write(d / "x.bmp", b"BM...."), "unsupported file type"),
        (lambda d: _write(d / "noext", b"\x89PNG"), "unsupported file type"),
        (lambda d: _write(d / "garbage.png", bytes(range(256)) * 4), "not a PNG"),
        (lambda d: _truncate(_make(d, "t.png"), 0.6), "truncated PNG"),
        (lambda d: _truncate(_make(d, "t.png"), 0.01), "truncated PNG"),
        (lambda d: _truncate(_make(d, "t.jpg", RGB8), 0.6), "truncated JPEG"),
        (lambda d: _truncate(_make(d, "t.pgm"), 0.6), "truncated PNM"),
        (lambda d: _truncate(_make(d, "t.tif", RGB16), 0.6), "TIFF"),
        (lambda d: _truncate(_make(d, "t.tif"), 0.002), "TIFF"),
        (lambda d: _write(d / "h.pgm", b"P5\n# nothing else"), "PNM header"),
        (lambda d: _write(d / "j.jpg", b"\xff\xd8\xff\xe0\x00\x04ab\xff\xd9"), "JPEG header"),
    ],
)
def test_errors_name_the_file_and_reason(tmp_path: Path, setup, reason: str) -> None:
    p = setup(tmp_path)
    for fn in (read_image, image_shape):
        with pytest.raises(ImageReadError) as err:
            fn(p)
        msg = str(err.value)
        assert str(p) in msg and reason in msg, msg
    assert isinstance(err.value, ValueError)


def test_corrupt_png_payload(tmp_path: Path) -> None:
    p = _make(tmp_path, "c.png", RGB8)
    data = bytearray(p.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 64] = bytes(64)  # structure (chunk lengths, IEND) intact, pixels and CRC broken
    p.write_bytes(bytes(data))
    with pytest.raises(ImageReadError, match=r"c\.png.*(could not decode|CRC mismatch)"):
        read_image(p)
    assert image_shape(p) == (37, 53, 3)  # the header alone is still readable: no pixels decoded


def test_real_rover_png(rover_image_path: Path) -> None:
    im = read_image(rover_image_path)
    assert im.channels == 3 and im.bit_depth == 8 and im.scale == 255.0
    assert image_shape(rover_image_path) == im.shape
    assert 0.05 < float(im.pixels.mean()) < 0.95 and im.valid_fraction > 0.9


def test_real_jpeg_header_matches_decode(data_root: Path) -> None:
    files = sorted((data_root / "orbital_gray" / "hirise_browse").glob("*.jpg"))
    if not files:
        pytest.skip("no HiRISE browse JPEGs in the data folder")
    im = read_image(files[0])
    assert image_shape(files[0]) == im.shape == (3190, 2048, 1)


def _png_with_sbit(path: Path, arr: np.ndarray, bits: int) -> Path:
    """A 16-bit grey PNG with an sBIT chunk (inserted after IHDR) declaring ``bits`` significant bits."""
    import struct
    import zlib

    data = write_image(path, arr).read_bytes()
    chunk = b"sBIT" + bytes([bits])
    sbit = struct.pack(">I", 1) + chunk + struct.pack(">I", zlib.crc32(chunk))
    path.write_bytes(data[:33] + sbit + data[33:])  # 8 signature + 25 IHDR
    return path


def test_png_sbit_twelve_bit(tmp_path: Path) -> None:
    g12 = RNG.integers(0, 4096, (20, 30)).astype(np.uint16)
    im = read_image(_png_with_sbit(tmp_path / "raw12.png", g12, 12), detect_nodata=False)
    assert (im.bit_depth, im.scale) == (12, 4095.0)
    np.testing.assert_array_equal(_raw(im), g12)
    scaled = (g12 << 4) | (g12 >> 8)  # spec-conformant: samples scaled up to the full 16 bits
    im = read_image(_png_with_sbit(tmp_path / "scaled12.png", scaled, 12), detect_nodata=False)
    assert (im.bit_depth, im.scale) == (16, 65535.0)


def test_twelve_bit_data_without_a_bit_depth_record_is_warned_of(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """12-bit counts in a 16-bit PNG without sBIT read as 16-bit (nearly black): a warning says why."""
    import logging

    cv2 = pytest.importorskip("cv2")
    g12 = RNG.integers(1, 4096, (20, 30)).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "bare12.png"), g12)
    with caplog.at_level(logging.WARNING, logger="edgeae"):
        im = read_image(tmp_path / "bare12.png", detect_nodata=False)
    assert im.bit_depth == 16 and "reach only" in caplog.text and "bit-depth record" in caplog.text

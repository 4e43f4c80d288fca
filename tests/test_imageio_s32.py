"""Audit s32 (a4, a3): multiband TIFFs, multi-band write_image, one sample-type rule, streamed read limits, and
tifffile's log records (fixer f7)."""

from __future__ import annotations

import logging
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from edgeae import _headers, logs
from edgeae.imageio import ImageReadError, image_shape, read_image, to_float, write_image
from edgeae.strips import iter_patch_blocks, iter_strips

tifffile = pytest.importorskip("tifffile")


def _streamed(path: Path, channels: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    strips = list(iter_strips(path, 64, channels=channels))
    return np.concatenate([s.pixels for s in strips]), np.concatenate([s.valid for s in strips])


def _bands(moon: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    b = np.ascontiguousarray(moon[:192, :192])
    nir = np.full_like(b, 200)
    nir[:96] = 0  # band 4 dark in the top half: read as alpha, that half was "transparent"
    return b, np.zeros_like(b), nir


def test_a_multiband_tiff_is_band_1_with_a_warning_in_both_readers(
    tmp_path: Path, moon: np.ndarray, caplog: pytest.LogCaptureFixture
) -> None:
    """ExtraSamples 0 (unspecified: what tifffile and GDAL write) is a band, not alpha: read_image read band 1 with
    the top half invalid, score streamed bands 1-3 as RGB; now both read band 1 of every pixel and say so."""
    b, z, nir = _bands(moon)
    for n, stack in ((4, [b, z, z, nir]), (2, [b, nir]), (5, [b, z, z, nir, b])):
        p = tmp_path / f"ms{n}.tif"
        tifffile.imwrite(p, np.dstack(stack), photometric="minisblack", planarconfig="contig")
        with caplog.at_level(logging.WARNING):
            caplog.clear()
            im = read_image(p)
            pix, valid = _streamed(p)
        assert caplog.text.count(f"{n} bands in the TIFF; band 1 is read") == 2  # one per reader
        assert "tifffile.imwrite('band_N.tif', tifffile.imread('FILE')[..., N - 1])" in caplog.text
        assert im.shape == pix.shape == image_shape(p) == (192, 192, 1)
        np.testing.assert_allclose(im.pixels[..., 0], b / 255, atol=1e-6)
        np.testing.assert_array_equal(pix, im.pixels)
        assert im.valid.all() and valid.all() and not im.extra["alpha"]
        assert _streamed(p, channels=3)[0].shape == (192, 192, 3)  # a colour model: band 1 copied, not bands 1-3


def test_only_extrasamples_1_or_2_are_alpha(tmp_path: Path, moon: np.ndarray) -> None:
    b, z, nir = _bands(moon)
    rgba = tmp_path / "rgba.tif"
    tifffile.imwrite(rgba, np.dstack([b, b, b, nir]), photometric="rgb", extrasamples=["unassalpha"])
    im = read_image(rgba)
    assert im.shape == (192, 192, 3) and im.valid[:96].sum() == 0 and im.valid[96:].any()
    np.testing.assert_array_equal(_streamed(rgba)[1], im.valid)
    ms3 = tmp_path / "ms3.tif"  # 3 bands, minisblack: every band, as RGB (a 3-band planetary product too)
    tifffile.imwrite(ms3, np.dstack([b, z, nir]), photometric="minisblack", planarconfig="contig")
    assert read_image(ms3).shape == _streamed(ms3)[0].shape == image_shape(ms3) == (192, 192, 3)
    rgbx = tmp_path / "rgbx.tif"  # RGB + an unspecified band: RGB read, no alpha
    tifffile.imwrite(rgbx, np.dstack([b, b, b, nir]), photometric="rgb", extrasamples=["unspecified"])
    im = read_image(rgbx)
    assert im.shape == (192, 192, 3) and im.valid.all()
    np.testing.assert_array_equal(_streamed(rgbx)[0], im.pixels)
    planar = tmp_path / "planar.tif"
    tifffile.imwrite(planar, np.stack([b, z, z, nir]), photometric="minisblack", planarconfig="separate")
    np.testing.assert_allclose(read_image(planar).pixels[..., 0], b / 255, atol=1e-6)
    np.testing.assert_array_equal(_streamed(planar)[0], read_image(planar).pixels)
    # no ExtraSamples tag at all: every sample past the photometric ones is a band too
    assert _headers._tiff_samples(4, 1, ()) == ((0,), None)
    assert _headers._tiff_samples(4, 1, (0, 0, 2)) == ((0, 1, 2), 3)  # 3 bands and alpha
    assert _headers._tiff_samples(4, 2, (1,)) == ((0, 1, 2), 3)


@pytest.mark.parametrize("c", [2, 4, 5])
@pytest.mark.filterwarnings("ignore:Dataset has no geotransform")
def test_write_image_writes_interleaved_bands(tmp_path: Path, c: int) -> None:
    """tifffile took the first axis of (30, 20, 4) as 30 pages of (20, 4) without planarconfig='contig'."""
    a = np.random.default_rng(c).integers(1, 255, (30, 20, c), dtype=np.uint8)
    p = write_image(tmp_path / f"ms{c}.tif", a)
    with tifffile.TiffFile(p) as tif:
        assert len(tif.pages) == 1 and tif.series[0].shape == (30, 20, c)
    np.testing.assert_array_equal(tifffile.imread(p), a)
    im = read_image(p, detect_nodata=False)
    np.testing.assert_array_equal(np.round(im.pixels[..., 0] * 255).astype(np.uint8), a[..., 0])
    assert im.valid.all()  # the last band is not alpha
    rasterio = pytest.importorskip("rasterio")
    with rasterio.open(p) as ds:
        assert (ds.count, ds.height, ds.width) == (c, 30, 20)


def test_one_sample_type_rule_for_every_reader(tmp_path: Path, moon: np.ndarray) -> None:
    """score/scan streamed int16, int32 and 1-bit TIFFs (signed data divided by 65535: [-0.0195, 0.0194]) that
    read_image refused; now the header refuses them for every reader, naming the file."""
    g = moon[:128, :128]
    cases = {
        "i16.tif": ((g.astype(np.int16) - 128) * 10, {}),
        "i32.tif": (g.astype(np.int32), {}),
        "i8.tif": ((g.astype(np.int16) - 128).astype(np.int8), {}),
        "b.tif": (g > 100, {}),
        "i16_12bit.tif": (g.astype(np.int16) * 16, {"extratags": [(281, "H", 1, 4095, False)]}),
    }
    for name, (arr, kw) in cases.items():
        p = tmp_path / name
        tifffile.imwrite(p, arr, **kw)
        msg = rf"{name}: unsupported sample type {arr.dtype} \(.*expected uint8/16/32 or float\)"
        for read in (read_image, image_shape, lambda q: next(iter_patch_blocks(q, 64)), _streamed):
            with pytest.raises(ImageReadError, match=msg):
                read(p)
    with pytest.raises(ImageReadError, match=r"x\.tif: unsupported sample type int16 \(signed"):
        to_float(np.array([[-3, 4]], np.int16), 16, path=Path("x.tif"))  # was [-4.6e-05, 6.1e-05], no word
    ok = tmp_path / "u16.tif"
    tifffile.imwrite(ok, g.astype(np.uint16) * 16, extratags=[(281, "H", 1, 4095, False)])
    assert read_image(ok).bit_depth == 12 and _streamed(ok)[0].max() <= 1.0


def test_unit_range_is_refused_below_zero() -> None:
    """score_array(img - 0.5, ...) scored silently (the check allowed -0.5); a few quantisation steps still pass."""
    from edgeae.anomaly.score import score_array

    img = np.random.default_rng(0).random((64, 64), dtype=np.float32)

    def mean(b: np.ndarray) -> dict[str, np.ndarray]:
        return {"score": b.reshape(len(b), -1).mean(1)}

    with pytest.raises(ValueError, match=r"pixels span \[-0\.4"):
        score_array(img - 0.5, mean, 64, 64)
    assert len(score_array(img - 2 / 127, mean, 64, 64)) == 1  # int8-quantised inputs dip a step or two below 0


def _hostile_tiff(path: Path, w: int, h: int) -> Path:
    """A 200-byte TIFF claiming w × h grey pixels in one-row deflate strips that share one tiny blob (audit a3's
    mktif.py): decoding it would allocate h × w bytes, and 4 × that as float32."""
    blob = zlib.compress(b"\x80" * 1000)
    offs, cnts = 8 + len(blob), 8 + len(blob) + 4 * h
    ifd_off = cnts + 4 * h
    if h == 1:  # one strip: its offset and byte count are the tags' values
        offs, cnts, ifd_off = 8, len(blob), 8 + len(blob)
    tags = [(256, 4, 1, w), (257, 4, 1, h), (258, 3, 1, 8), (259, 3, 1, 8), (262, 3, 1, 1), (273, 4, h, offs),
            (277, 3, 1, 1), (278, 4, 1, 1), (279, 4, h, cnts)]  # fmt: skip
    ifd = struct.pack("<H", len(tags))
    for t, ty, n, v in tags:
        ifd += struct.pack("<HHIHH", t, ty, n, v, 0) if ty == 3 else struct.pack("<HHII", t, ty, n, v)
    with open(path, "wb") as f:
        f.write(b"II*\x00" + struct.pack("<I", ifd_off) + blob)
        if h > 1:
            f.write(struct.pack(f"<{h}I", *([8] * h)) + struct.pack(f"<{h}I", *([len(blob)] * h)))
        f.write(ifd + b"\0" * 4)
    return path


def test_a_streamed_read_obeys_the_byte_limit_before_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 486 KB TIFF of 4 × 500,000,000 pixels made edgeae score allocate 7.45 GiB (a traceback), whatever
    EDGEAE_MAX_IMAGE_BYTES said: each band is now checked from the header, counting its float32 pixels."""
    from edgeae.row_bands import RowReader

    p = _hostile_tiff(tmp_path / "wide.tif", 500_000_000, 4)
    assert p.stat().st_size < 300

    def never(*a: object) -> None:
        raise AssertionError("decoded")

    with monkeypatch.context() as m:
        m.setattr(RowReader, "_read_tiff_rows", never)
        with pytest.raises(ImageReadError, match=r"wide\.tif: reading rows 0\.\.4 takes 8,000,000,000 B as float32"):
            next(iter_patch_blocks(p, 64))  # default limits: one row fits, the 4-row band does not
        m.setenv("EDGEAE_MAX_IMAGE_BYTES", "100M")
        with pytest.raises(ImageReadError, match=r"500,000,000 B as one decoded TIFF segment.*EDGEAE_MAX_IMAGE_BYTES"):
            RowReader(p)  # refused at open, from the header
    small = tmp_path / "small.tif"
    tifffile.imwrite(small, np.full((300, 400), 90, np.uint8), rowsperstrip=16)
    monkeypatch.setenv("EDGEAE_MAX_IMAGE_BYTES", "200K")  # 256 rows × 400 × 4 B = 400 KB: the band, not the file
    with pytest.raises(ImageReadError, match=r"small\.tif: reading rows 0\.\.256 takes 409,600 B as float32"):
        list(iter_strips(small, 256))
    assert len(list(iter_strips(small, 64))) == 5  # 100 KB bands fit
    monkeypatch.setenv("EDGEAE_MAX_IMAGE_BYTES", "2G")
    monkeypatch.setenv("EDGEAE_MAX_IMAGE_PIXELS", "1000")
    assert len(list(iter_strips(small, 64))) == 5  # the pixel limit bounds whole decodes; streaming is the way round


def test_tifffile_error_records_show_only_with_verbose(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A broken TIFF printed tifffile's "error: <tifffile.TiffPages @33> invalid page offset ..." before edgeae's
    own one-line error; it is a third-party record, shown with -v."""
    # audit a3's wide_4e9x1.tif: its first IFD offset points 8 bytes past the IFD written
    blob = zlib.compress(b"\x80" * 1000)
    tags = [(256, 4, 1, 4_000_000_000), (257, 4, 1, 1), (258, 3, 1, 8), (259, 3, 1, 8), (262, 3, 1, 1),
            (273, 4, 1, 8), (277, 3, 1, 1), (278, 4, 1, 1), (279, 4, 1, len(blob))]  # fmt: skip
    ifd = struct.pack("<H", len(tags))
    for t, ty, n, v in tags:
        ifd += struct.pack("<HHIHH", t, ty, n, v, 0) if ty == 3 else struct.pack("<HHII", t, ty, n, v)
    p = tmp_path / "broken.tif"
    p.write_bytes(b"II*\x00" + struct.pack("<I", 16 + len(blob)) + blob + ifd + struct.pack("<I", 0))
    for verbose in (False, True):
        with logs.session(verbose), pytest.raises(ImageReadError, match=r"broken\.tif"):
            image_shape(p)
        err = capsys.readouterr().err
        assert ("invalid page offset" in err) is verbose
    assert logging.getLogger("tifffile").level == logging.NOTSET  # restored after the session


# -- review r4 of 7ab6924 (fixer g3) ------------------------------------------------------------------------------


def test_an_opencv_rgba_tiff_keeps_its_alpha(tmp_path: Path) -> None:
    """cv2.imwrite of BGRA writes photometric RGB with 4 samples and no ExtraSamples tag: Pillow and libtiff's RGBA
    reader take sample 4 as alpha; 7ab6924 read it as an unspecified band and scored transparent pixels as data."""
    cv2 = pytest.importorskip("cv2")
    a = np.zeros((64, 64, 4), np.uint8)
    a[..., :3] = (30, 120, 200)  # BGR
    a[32:, :, 3] = 255
    p = tmp_path / "cv.tif"
    assert cv2.imwrite(str(p), a)
    with tifffile.TiffFile(p) as tif:
        assert int(tif.pages[0].photometric) == 2 and not tif.pages[0].extrasamples  # what the fix is about
    im = read_image(p)
    assert im.shape == image_shape(p) == (64, 64, 3) and im.extra["alpha"]
    assert im.valid.mean() == 0.5 and not im.valid[:32].any() and im.valid[32:].all()
    np.testing.assert_allclose(im.pixels[40, 10], np.array([200, 120, 30]) / 255, atol=1e-6)  # RGB order
    pix, valid = _streamed(p)
    np.testing.assert_array_equal(pix, im.pixels)
    np.testing.assert_array_equal(valid, im.valid)
    assert _headers._tiff_samples(4, 2, ()) == ((0, 1, 2), 3)
    assert _headers._tiff_samples(4, 2, (0,)) == ((0, 1, 2), None)  # ExtraSamples 0 said so: a band
    assert _headers._tiff_samples(5, 2, ()) == ((0, 1, 2), None)  # not exactly RGBA: bands


@pytest.mark.parametrize("planar", [False, True])
def test_the_band_hint_extracts_the_band(
    tmp_path: Path, moon: np.ndarray, caplog: pytest.LogCaptureFixture, planar: bool
) -> None:
    """The warning's `rio stack FILE --bidx N ...` failed on every plain TIFF (no geotransform: "upside down"
    rasters cannot be stacked); the command it gives now runs, and the band it writes reads back as band N."""
    b, z, nir = _bands(moon)
    p = tmp_path / "ms4.tif"
    if planar:
        tifffile.imwrite(p, np.stack([b, z, nir, b]), photometric="minisblack", planarconfig="separate")
    else:
        tifffile.imwrite(p, np.dstack([b, z, nir, b]), photometric="minisblack", planarconfig="contig")
    with caplog.at_level(logging.WARNING):
        caplog.clear()
        read_image(p)
    (cmd,) = set(re.findall(r"`python -c \"([^`]*)\"`", caplog.text))
    code = cmd.replace("FILE", p.name).replace("N - 1", "3 - 1").replace("band_N", "band_3")
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True, timeout=60)
    im = read_image(tmp_path / "band_3.tif", detect_nodata=False)
    assert im.shape == (192, 192, 1)
    np.testing.assert_array_equal(np.round(im.pixels[..., 0] * 255).astype(np.uint8), nir)


def test_write_image_tiffs_stream_past_the_segment_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """tifffile writes uncompressed data as one strip, which 7ab6924's segment check refused whole: any write_image
    TIFF over EDGEAE_MAX_IMAGE_BYTES (2 GiB by default) could not be scored. write_image now writes ~1 MB strips,
    and an uncompressed strip is read by rows (only those asked for); a compressed segment is still checked."""
    from edgeae.row_bands import RowReader

    monkeypatch.setenv("EDGEAE_MAX_IMAGE_BYTES", "4M")
    a = np.random.default_rng(3).integers(0, 256, (3000, 2000), dtype=np.uint8)
    w = write_image(tmp_path / "w.tif", a)
    with tifffile.TiffFile(w) as tif:
        rows = int(tif.pages[0].rowsperstrip)
    assert rows * 2000 <= 2**20 < (rows + 1) * 2000
    strips = list(iter_strips(w, 256, detect_nodata=False))
    assert len(strips) == 12
    got = np.concatenate([s.pixels[..., 0] for s in strips])
    np.testing.assert_array_equal(np.round(got * 255).astype(np.uint8), a)
    # one uncompressed strip a plane (tifffile's default: 1.2 MB, over the limit), 16-bit big-endian: read by rows
    monkeypatch.setenv("EDGEAE_MAX_IMAGE_BYTES", "1M")
    rgb = np.random.default_rng(4).integers(0, 65536, (3, 600, 1000), dtype=np.uint16)
    one = tmp_path / "one.tif"
    tifffile.imwrite(one, rgb, photometric="rgb", planarconfig="separate", byteorder=">")
    with tifffile.TiffFile(one) as tif:
        assert len(tif.pages[0].dataoffsets) == 3 and tif.byteorder == ">"
    with RowReader(one) as r:
        raw, alpha = r.read_rows(299, 301)
        assert alpha is None
        np.testing.assert_array_equal(raw, np.moveaxis(rgb, 0, -1)[299:301])
    with RowReader(one) as r:  # read_image's samples, row band by row band
        bands = [r.read_rows(y, min(y + 128, 600))[0] for y in range(0, 600, 128)]
    np.testing.assert_array_equal(np.concatenate(bands), np.moveaxis(rgb, 0, -1))
    packed = tmp_path / "packed.tif"  # a compressed segment is decoded whole: still refused from the header
    tifffile.imwrite(packed, a, compression="zlib", rowsperstrip=3000)
    with pytest.raises(ImageReadError, match=r"packed\.tif: .*6,000,000 B as one decoded TIFF segment"):
        RowReader(packed)


def test_a_short_uncompressed_strip_is_refused(tmp_path: Path) -> None:
    """A strip whose byte count cannot hold its rows is named, as tifffile's reshape error was."""
    from edgeae.row_bands import RowReader

    p = tmp_path / "short.tif"
    tifffile.imwrite(p, np.full((40, 50), 7, np.uint8), rowsperstrip=20)
    data = bytearray(p.read_bytes())
    with tifffile.TiffFile(p) as tif:
        tag = tif.pages[0].tags[279]
        off, fmt = tag.valueoffset, {3: "H", 4: "I"}[int(tag.dtype)]
    data[off + struct.calcsize(fmt) : off + 2 * struct.calcsize(fmt)] = struct.pack("<" + fmt, 999)  # strip 1
    p.write_bytes(bytes(data))
    with RowReader(p) as r:
        assert r.read_rows(0, 20)[0].min() == 7
        with pytest.raises(ImageReadError, match=r"short\.tif: corrupt TIFF strip 1: 999 bytes, its 20 rows"):
            r.read_rows(10, 30)


def test_the_band_hint_keeps_a_12_bit_band_s_depth(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The extracted band lost MaxSampleValue and read back 16x darker (review s32)."""
    rng = np.random.default_rng(5)
    bands = rng.integers(0, 4096, (64, 48, 4), dtype=np.uint16)
    p = tmp_path / "ms12.tif"
    tifffile.imwrite(p, bands, photometric="minisblack", planarconfig="contig", extratags=[(281, 3, 1, 4095, False)])
    with caplog.at_level(logging.WARNING):
        caplog.clear()
        im = read_image(p, detect_nodata=False)
    assert im.bit_depth == 12
    (cmd,) = set(re.findall(r"`python -c \"([^`]*)\"`", caplog.text))
    code = cmd.replace("FILE", p.name).replace("N - 1", "2 - 1").replace("band_N", "band_2")
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True, timeout=60)
    b2 = read_image(tmp_path / "band_2.tif", detect_nodata=False)
    assert b2.bit_depth == 12
    np.testing.assert_allclose(b2.pixels[..., 0], bands[..., 1] / 4095, rtol=0, atol=1e-6)


def test_the_band_hint_of_a_float64_tiff_runs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The 12-bit tag was added for any depth but 8/16/32: a float64 file got MaxSampleValue 2**64 - 1, and the
    command failed with struct.error (review s32)."""
    p = tmp_path / "f64.tif"
    tifffile.imwrite(p, np.random.default_rng(1).random((32, 24, 4)), photometric="minisblack", planarconfig="contig")
    with caplog.at_level(logging.WARNING):
        caplog.clear()
        read_image(p, detect_nodata=False)
    (cmd,) = set(re.findall(r"`python -c \"([^`]*)\"`", caplog.text))
    assert "extratags" not in cmd
    code = cmd.replace("FILE", p.name).replace("N - 1", "2 - 1").replace("band_N", "band_2")
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True, timeout=60)

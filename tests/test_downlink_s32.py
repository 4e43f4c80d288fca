"""Session 32 audit: ``downlink simulate --image`` reads the file's integer counts (no whole-frame float copies;
the packet files stay byte-identical), and ``--compare`` scores every codec against the real original, giving
JPEG 2000 the full bit depth."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from edgeae.cli import main

cv2 = pytest.importorskip("cv2")
tifffile = pytest.importorskip("tifffile")
pytest.importorskip("imagecodecs")  # the default sample codec (ccsds121) the hashes were made with

# sha256 of the packet file of each image, made with the code before session 32 (read_image as float32, then
# rounded back to counts, whole-frame mask)
BEFORE = {
    ("g8.png",): "eb641344897f05f828b781319801cff1bc3a617c3743afa3323d9ded1684fb18",
    ("rgb.png",): "c4905469c50a7337265a8b6593e2e959426017a02ce65a69faaec00b9d905793",
    ("g12.tif",): "3d9d4feb49a5301829d48ce39dc6d4bf2a6b3036fe3f78523ec157e0eb46d263",
    ("g16.tif",): "ac9ca6dbf1822efcd45bbd7c0a162e68d59cbefa8704f133bdc803809f232e0e",
    ("rgb.png", "--channels", "1"): "4c5d876d884d5d8f9778390e49c3e4ad9abc8bf2211014bbd576a72423fcedec",
    ("g8.png", "--channels", "3"): "b32cfd05625a18b8e73a028842f1bff94024c15c69efc90d8bed6b176e58e2d2",
    ("g12.tif", "--keep", "0.3", "--pattern", "jittered"): (
        "a622a1111715b69cceb2eacb23dd96543166ea64821ce6f242cd4f66648f8a11"
    ),
}


@pytest.fixture()
def images(tmp_path: Path) -> Path:
    rng = np.random.default_rng(7)
    cv2.imwrite(str(tmp_path / "g8.png"), rng.integers(0, 256, (40, 56), dtype=np.uint8))
    cv2.imwrite(str(tmp_path / "rgb.png"), rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    g12 = rng.integers(0, 4096, (40, 56), dtype=np.uint16)
    g12[0, :3] = [4095, 5000, 65535]  # stray values above 12 bits: clipped to 4095
    tifffile.imwrite(tmp_path / "g12.tif", g12, extratags=[(281, "H", 1, 4095, False)])  # MaxSampleValue
    tifffile.imwrite(tmp_path / "g16.tif", rng.integers(0, 65536, (30, 20), dtype=np.uint16))
    return tmp_path


def test_packet_files_are_byte_identical_to_before(images: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for (name, *extra), digest in BEFORE.items():
        out = images / f"o{len(extra)}_{name}.bin"
        argv = ["downlink", "simulate", "--image", str(images / name), "--keep", "0.5", "--seed", "3", "--out",
                str(out), *extra]  # fmt: skip
        assert main(argv) == 0
        assert hashlib.sha256(out.read_bytes()).hexdigest() == digest, (name, extra)


def test_integer_images_are_read_as_their_counts(images: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`downlink simulate --image` of a 264 MB uint8 strip peaked at 3.4 GB: the file was read as float32 and
    rounded back to the counts it held. Integer files no longer take that path (read_image is not called)."""
    import edgeae.imageio
    from edgeae.ground.sources import image_samples, sparse_from_samples
    from edgeae.masks import make_mask

    def no_float_copy(*a: object, **k: object) -> None:
        raise AssertionError("read as float32")

    monkeypatch.setattr(edgeae.imageio, "read_image", no_float_copy)
    s12, bits = image_samples(images / "g12.tif")
    assert bits == 12 and s12.dtype == np.uint16 and s12.shape == (40, 56, 1) and int(s12.max()) == 4095
    s3, bits = image_samples(images / "g8.png", channels=3)
    assert bits == 8 and s3.dtype == np.uint8 and s3.shape == (40, 56, 3)
    frame = sparse_from_samples(s3, 8, 0.3, 5, "uniform")
    np.testing.assert_array_equal(frame.values, s3[make_mask(5, (40, 56), 0.3, "uniform")])


def test_compare_scores_every_codec_against_the_real_original(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 12-bit frame of values 1000-1100: the codecs were given an 8-bit copy and scored against it (JPEG 63.4 dB),
    while the sparse frame was scored against the real original; the 8-bit rounding alone costs more than that.
    Now JPEG 2000 codes the 12 bits, JPEG an 8-bit copy, and both are scored against the original's 12 bits."""
    from edgeae.metrics import psnr

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:96, 0:128]
    img = (1000 + (x + y) * 100 / 224 + rng.integers(0, 3, (96, 128))).astype(np.uint16)
    path = tmp_path / "u12_lowc.tif"
    tifffile.imwrite(path, img, extratags=[(281, "H", 1, 4095, False)])
    ref = img.astype(np.float32) / np.float32(4095)
    rounding = float(psnr(ref, np.round(ref * 255) / np.float32(255)))  # the 8-bit copy's own loss: ~61 dB
    out = tmp_path / "k.bin"
    assert main(["downlink", "simulate", "--image", str(path), "--out", str(out), "--compare", "jpeg2000,jpeg"]) == 0
    rows = {r["method"]: r for r in json.loads(out.with_suffix(".json").read_text())["compare"]}
    assert rows["jpeg2000"]["input"] == "12-bit" and rows["jpeg2000"]["psnr"] > rounding + 5
    assert rows["jpeg"]["input"] == "8-bit copy of 12-bit" and rows["jpeg"]["psnr"] < rounding + 0.5
    assert rows["jpeg"]["file_bytes"] < rows["jpeg"]["wire_bytes"] <= rows["sparse keep 0.1 + blend"]["wire_bytes"]
    table = capsys.readouterr().out
    assert "| method | input | wire bytes | file bytes | PSNR (dB) | decoded |" in table
    assert "wire bytes: the packets on the link, headers included" in table and "(12-bit samples)" in table
    # a budget too small: the error says which bytes it counts
    assert main(["downlink", "simulate", "--image", str(path), "--out", str(tmp_path / "s.bin"), "--keep", "0.01",
                 "--compare", "jpeg"]) == 0  # fmt: skip
    err = json.loads((tmp_path / "s.json").read_text())["compare"][1]["error"]
    assert "file bytes at its lowest quality, over the" in err and "wire bytes less 30 bytes of packet headers" in err


@pytest.mark.parametrize("pattern", ["uniform", "jittered"])
def test_the_sparse_frame_of_a_multi_strip_frame_is_the_whole_frame_mask(pattern: str) -> None:
    """The mask is made 256 rows at a time (iter_mask_strips): a frame of 600 rows takes three strips (the last a
    partial one), whose values join in raster order to those of the whole-frame mask."""
    from edgeae.ground.sources import sparse_from_samples
    from edgeae.masks import make_mask

    s = np.random.default_rng(2).integers(0, 4096, (600, 40, 3), dtype=np.uint16)
    frame = sparse_from_samples(s, 12, 0.3, 11, pattern)
    mask = make_mask(11, (600, 40), 0.3, pattern)
    assert len(frame.values) == int(mask.sum()) and int(mask[256:].sum()) > 0
    np.testing.assert_array_equal(frame.values, s[mask])


def test_files_read_through_read_image_are_decoded_once(
    images: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An RGB file read as grey, or float / 32-bit samples, was decoded whole (read_raw) only to be refused, then
    decoded again by read_image (a 3000x3000 RGB PNG with channels=1: 0.62 s -> 1.59 s; header warnings logged
    twice). The header decides now: one decode, one warning, the same samples."""
    import edgeae.imageio
    from edgeae.ground import sources
    from edgeae.ground.sources import image_samples

    rng = np.random.default_rng(3)
    tifffile.imwrite(images / "f32.tif", rng.random((20, 24)).astype(np.float32))
    tifffile.imwrite(images / "mbf.tif", rng.random((2, 20, 24)).astype(np.float32), photometric="minisblack",
                     planarconfig="separate")  # fmt: skip
    tifffile.imwrite(images / "u32.tif", rng.integers(0, 2**32, (20, 24), dtype=np.uint32))
    real, calls = edgeae.imageio.read_raw, []

    def counted(path: object) -> object:
        calls.append(path)
        return real(path)  # type: ignore[arg-type]

    cases = [("rgb.png", 1), ("f32.tif", None), ("mbf.tif", None), ("u32.tif", None)]
    with monkeypatch.context() as m:  # the samples read_image gives, as image_samples read them before
        m.setattr(sources, "_stored_counts", lambda *a: None)
        expected = {name: image_samples(images / name, ch) for name, ch in cases}
    monkeypatch.setattr(edgeae.imageio, "read_raw", counted)
    caplog.clear()
    for name, ch in cases:
        calls.clear()
        samples, bits = image_samples(images / name, ch)
        assert len(calls) == 1, name
        assert bits == expected[name][1] and samples.dtype == expected[name][0].dtype, name
        np.testing.assert_array_equal(samples, expected[name][0])
    assert sum("2 bands in the TIFF" in r.getMessage() for r in caplog.records) == 1


def test_a_bayer_original_is_demosaiced_as_the_flight_does(tmp_path: Path) -> None:
    """``--original RAW --bayer`` and ``downlink simulate --image RAW --bayer`` used OpenCV's demosaicing, the
    rover mission numpy's: a frame sent whole compared at ~55 dB, not exactly (audit s32-a6)."""
    from edgeae.bayer import demosaic_strips
    from edgeae.ground.sources import image_samples
    from edgeae.imageio import write_image

    mosaic = np.random.default_rng(4).integers(0, 256, (150, 98), dtype=np.uint8)
    p = write_image(tmp_path / "raw.png", np.repeat(mosaic[..., None], 3, axis=2))  # stored grey in RGB, as ZL0
    got, bits = image_samples(p, bayer="RGGB")
    flight = np.concatenate(
        [s for _, s in demosaic_strips(((r, mosaic[r : r + 64]) for r in range(0, 150, 64)), "RGGB")]
    )
    assert bits == 8 and got.shape == (150, 98, 3)
    np.testing.assert_array_equal(got, flight)

"""`edgeae reconstruct` and the image metrics (session 32 audits a2-a4): frames with no pixel of data, the size
refused from the header, metrics in bands (same values, a tenth of the memory), step lines on a terminal, stale
valid maps, out-of-range floats refused by image_metrics, 12-bit data in 16-bit files, long output names."""

from __future__ import annotations

import json
import math
import os
import struct
import tracemalloc
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeae.masks import make_mask


def _cli(*argv: Any) -> int:
    from edgeae.cli import main

    return main([str(a) for a in argv])


def _png_header_only(path: Path, height: int, width: int) -> Path:
    """A structurally complete grey PNG whose header says ``height`` × ``width`` (its pixel data is a stub)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")
    )
    return path


# a4-4: no pixel with data


@pytest.mark.parametrize("value", [0, 255])
def test_a_frame_without_data_says_so_instead_of_nan(
    value: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """All 0 (or all saturated): printed 'PSNR ... nan dB, SSIM n/a (image under 3 px high or wide)'."""
    from edgeae.imageio import write_image

    src = write_image(tmp_path / "const.png", np.full((100, 100), value, np.uint8))
    mj = tmp_path / "m.json"
    assert _cli("reconstruct", src, "--method", "linear", "-o", tmp_path / "r.png", "--metrics-json", mj) == 0
    out = capsys.readouterr().out
    assert "no pixel with data: metrics not computed" in out, out
    assert "nan" not in out.lower() and "3 px" not in out
    assert "100.0% read as a dark or saturated margin" in out
    m = json.loads(mj.read_text())
    assert m["psnr"] is None and m["valid_fraction"] == 0.0
    assert m["metrics_note"] == "no pixel with data: metrics not computed"


def test_ssim_text_blames_the_size_only_for_a_small_image() -> None:
    from edgeae.cli.reconstruct import _ssim_text

    assert _ssim_text(math.nan, (2, 100, 1)) == "n/a (image under 3 px high or wide)"
    assert _ssim_text(math.nan, (100, 100, 1)) == "n/a"
    assert _ssim_text(0.5, (100, 100, 1)) == "0.5000"


# a3-3: the size from the header


def test_a_frame_too_large_is_refused_from_its_header_before_it_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The refusal came after a 35 s, 2.6 GB read; and it named a tiling no command does."""
    import edgeae.imageio
    from edgeae.ground import limits

    src = _png_header_only(tmp_path / "huge.png", 40_000, 30_000)  # 1.2 Gpx said by a 70-byte file
    reads: list[object] = []
    monkeypatch.setattr(edgeae.imageio, "read_image", lambda *a, **k: reads.append(a))
    monkeypatch.setattr(limits, "available_memory", lambda: 8 * 2**30)
    assert _cli("reconstruct", src, "--method", "nearest", "-o", tmp_path / "r.png") == 2
    err = capsys.readouterr().err
    assert "rebuilding 40000×30000×1 with --method nearest needs about" in err, err
    assert "crop the image" in err and "edgeae.read_image(PATH).pixels[y0:y1, x0:x1]" in err
    assert "tiles" not in err and reads == []


def test_fill_bytes_per_method_lets_nearest_take_a_frame_linear_cannot() -> None:
    """170 B/px for every method refused anything over ~130 Mpx on a 24 GB host, nearest included."""
    from edgeae.cli.reconstruct_memory import fill_bytes

    px = 200_000_000
    assert fill_bytes("nearest", px, 1, False) < 20 * 2**30 < fill_bytes("linear", px, 1, False, kept=px // 10)
    for method in ("nearest", "linear", "normconv", "telea", "ns", "cae"):
        assert fill_bytes(method, 4 * 10**6, 3, False) > fill_bytes(method, 4 * 10**6, 1, False)


# a3-4: metrics once, in bands


# compare() before it worked in bands (whole-image float64 copies, the full SSIM map), on real crops filled with
# linear interpolation from make_mask(3, shape, 0.1), over every pixel and over _VALID
BEFORE = {
    "moon": {"psnr": 37.42947528485796, "ssim": 0.9311821464368465, "mae": 0.006898819991139074,
             "error_variance": 0.00018071005142835135, "keep_actual": 0.09933333333333333,
             "psnr_destroyed": 36.975116184521454, "mae_destroyed": 0.007659681707408298,
             "error_variance_destroyed": 0.00020063674835617742},
    "moon_valid": {"psnr": 38.164168158097674, "ssim": 0.933062633592985, "mae": 0.006534909325710032,
                   "error_variance": 0.0001525556234766529, "keep_actual": 0.09938802083333333,
                   "psnr_destroyed": 37.70954535087117, "mae_destroyed": 0.007256076397914185,
                   "error_variance_destroyed": 0.00016938439503962752, "valid_fraction": 0.8533333333333334},
    "rover": {"psnr": 26.079204636726054, "ssim": 0.7097768743551232, "mae": 0.02641263737338482,
              "error_variance": 0.0024660541404845663, "keep_actual": 0.09955833333333333,
              "psnr_destroyed": 25.62376046829977, "mae_destroyed": 0.029332979970997364,
              "error_variance_destroyed": 0.0027386625132365806},
    "rover_valid": {"psnr": 26.43288504616196, "ssim": 0.6804514591969552, "mae": 0.02810785992148567,
                    "error_variance": 0.0022733119295684674, "keep_actual": 0.09954280155642023,
                    "psnr_destroyed": 25.97751578882745, "mae_destroyed": 0.031215098252387212,
                    "error_variance_destroyed": 0.002524585924510479, "valid_fraction": 0.8566666666666667},
}  # fmt: skip


def _same_as_before(name: str, img: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    import edgeae.metrics as metrics
    from edgeae.inpaint import inpaint

    known = make_mask(3, img.shape[:2], 0.1)
    out = inpaint(img, known, "linear")
    valid = np.ones(img.shape[:2], bool)
    valid[:40] = False
    valid[100:130, 50:90] = False
    for band in (metrics.BAND_SAMPLES, 5000):  # one band, and bands of a few rows
        monkeypatch.setattr(metrics, "BAND_SAMPLES", band)
        for key, got in ((name, metrics.compare(img, out, known)),
                         (f"{name}_valid", metrics.compare(img, out, known, valid=valid))):  # fmt: skip
            assert list(got) == list(BEFORE[key])  # same keys, same order in the JSON
            for k, v in BEFORE[key].items():
                assert got[k] == pytest.approx(v, rel=1e-9, abs=0), (band, key, k)


def test_compare_is_unchanged_on_the_moon(moon: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    _same_as_before("moon", moon[100:400, 50:350].astype(np.float32) / 255, monkeypatch)


def test_compare_is_unchanged_on_a_rover_crop(rover_image_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeae.imageio import read_image

    if rover_image_path.name != "137_1.png":
        pytest.skip(f"the values are of MarsScapes 137_1, not {rover_image_path.name}")
    _same_as_before("rover", read_image(rover_image_path).pixels[:300, :400], monkeypatch)


def test_compare_in_bands_equals_whole_image_float64_formulas(
    moon: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No data needed: skimage's SSIM and numpy's sums over the whole image in float64, grey and RGB."""
    from skimage.metrics import structural_similarity

    import edgeae.metrics as metrics

    monkeypatch.setattr(metrics, "BAND_SAMPLES", 3000)  # bands of 7-11 rows
    grey = (moon[:150, :200].astype(np.float32) / 255)[..., None]
    rgb = np.concatenate([grey, np.roll(grey, 3, axis=0), np.roll(grey, 5, axis=1)], axis=2)
    for img in (grey, rgb):
        known = make_mask(1, img.shape[:2], 0.2)
        rec = np.clip(img + np.float32(0.03) * np.sin(np.arange(img.size)).reshape(img.shape), 0, 1)
        rec = rec.astype(np.float32)
        a, b = (x.astype(np.float64).squeeze(axis=2) if x.shape[2] == 1 else x.astype(np.float64) for x in (img, rec))
        ch = {"channel_axis": 2} if a.ndim == 3 else {}
        got = metrics.compare(img, rec, known)
        assert got["psnr"] == pytest.approx(10 * math.log10(1 / np.mean((a - b) ** 2)), rel=1e-12)
        assert got["mae"] == pytest.approx(np.mean(np.abs(a - b)), rel=1e-12)
        assert got["error_variance"] == pytest.approx(np.var(b - a), rel=1e-12)
        assert got["ssim"] == pytest.approx(structural_similarity(a, b, data_range=1.0, win_size=7, **ch), rel=1e-12)
        lost = ~known
        assert got["error_variance_destroyed"] == pytest.approx(np.var((b - a)[lost]), rel=1e-12)
        valid = np.ones(img.shape[:2], bool)
        valid[:9, :] = valid[:, -4:] = False
        _, smap = structural_similarity(a, b, data_range=1.0, win_size=7, full=True, **ch)
        smap = smap.mean(axis=2) if smap.ndim == 3 else smap
        inside = metrics.compare(img, rec, known, valid=valid)
        assert inside["ssim"] == pytest.approx(float(smap[valid].mean()), rel=1e-12)
        assert inside["mae"] == pytest.approx(np.mean(np.abs(a - b)[valid]), rel=1e-12)


def test_compare_takes_a_tenth_of_the_memory_it_did(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whole-image float64 copies and the full SSIM map: 133.7 traced bytes per pixel; now ~14 plus a band's work
    (bands made small here, as they are against a large frame)."""
    import edgeae.metrics as metrics
    from edgeae.metrics import compare

    monkeypatch.setattr(metrics, "BAND_SAMPLES", 1 << 15)

    rng = np.random.default_rng(0)
    img = rng.random((1000, 1000, 1), dtype=np.float32)
    rec = np.clip(img + np.float32(0.01), 0, 1)
    known = make_mask(0, img.shape[:2], 0.1)
    valid = np.ones(img.shape[:2], bool)
    valid[:20] = False
    tracemalloc.start()
    try:
        compare(img, rec, known, valid=valid)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak / img.size < 30, peak / img.size


def test_nearest_indices_do_not_keep_the_distances() -> None:
    from edgeae.inpaint import nearest_indices

    known = make_mask(0, (1000, 1000), 0.1)
    tracemalloc.start()
    try:
        iy, ix = nearest_indices(known)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak / known.size < 16, peak / known.size  # 33 B/px with the float64 distances
    assert known[iy, ix].all()


def test_the_cli_computes_the_metrics_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once inside run_method, once again with valid= for a frame with no-data."""
    import edgeae.metrics as metrics
    from edgeae.imageio import write_image

    calls: list[bool] = []
    real = metrics.compare

    def counted(*a: Any, **k: Any) -> dict[str, float]:
        calls.append(k.get("valid") is not None)
        return real(*a, **k)

    monkeypatch.setattr(metrics, "compare", counted)
    y, x = np.mgrid[0:64, 0:80]
    img = (60 + x + y).astype(np.uint8)
    img[:, :12] = 0  # a black margin: no-data, so the metrics run over the valid pixels
    src = write_image(tmp_path / "margin.png", img)
    assert _cli("reconstruct", src, "--method", "linear", "-o", tmp_path / "r.png") == 0
    assert calls == [True]


# a3-7: step lines on a terminal


def test_step_lines_on_a_terminal_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    import edgeae.cli.reconstruct as cli_reconstruct
    from edgeae.imageio import write_image

    src = write_image(tmp_path / "g.png", (np.arange(48 * 64).reshape(48, 64) % 251).astype(np.uint8))
    monkeypatch.setattr(cli_reconstruct, "STEP_LINE_PIXELS", 100)
    assert _cli("reconstruct", src, "--method", "linear", "-o", tmp_path / "r.png") == 0
    assert "edgeae reconstruct:" not in capsys.readouterr().err  # not a terminal: quiet
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert _cli("reconstruct", src, "--method", "linear", "-o", tmp_path / "r.png") == 0
    err = capsys.readouterr().err
    for step in ("reading g.png (48×64×1)", "filling 0.0 Mpx with linear", "computing the metrics", "writing r.png"):
        assert f"edgeae reconstruct: {step} ..." in err, err


# a4-7: a stale valid map


def test_a_replaced_output_loses_its_stale_valid_map(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tifffile = pytest.importorskip("tifffile")
    from edgeae.imageio import write_image

    y, x = np.mgrid[0:48, 0:64]
    f32 = (0.2 + 0.005 * x + 0.004 * y).astype(np.float32)
    f32[10:20, 10:20] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", f32)
    grey = write_image(tmp_path / "grey8.png", ((x * 3 + y) % 200 + 30).astype(np.uint8))
    out, vmap = tmp_path / "st.png", tmp_path / "st.valid.png"
    assert _cli("reconstruct", tmp_path / "nan.tif", "--method", "linear", "-o", out) == 0
    assert vmap.is_file()
    capsys.readouterr()
    assert _cli("reconstruct", grey, "--method", "linear", "-o", out) == 0
    assert out.is_file() and not vmap.exists()
    assert f"note: removed {vmap}: the valid map of the st.png this run replaced" in capsys.readouterr().out
    vmap.write_bytes(b"not ours")  # beside an output this run does not replace: left alone
    assert _cli("reconstruct", grey, "--method", "linear", "-o", tmp_path / "new.png") == 0
    assert vmap.read_bytes() == b"not ours"


# a4-8: image_metrics refuses what a fill refuses


def test_image_metrics_refuses_floats_outside_0_1_as_fill_does(moon: np.ndarray) -> None:
    import edgeae
    from edgeae.inpaint import RANGE_SLACK

    im = moon[:64, :64].astype(np.float32) / 255
    with pytest.raises(
        ValueError, match=r"original's samples span \[[0-9.]+, [0-9.]+\], outside \[0, 1\].*divide by 255"
    ):
        edgeae.image_metrics(im * 4095, im * 4095 + 1)
    with pytest.raises(ValueError, match=r"reconstruction's samples span \[-0.\d+, 0.\d+\], outside \[0, 1\]"):
        edgeae.image_metrics(im * 0.5, im - 0.5)
    with pytest.raises(ValueError, match="known samples span"):  # the fill's own refusal, for the comparison
        edgeae.fill(im * 4095, make_mask(0, im.shape, 0.5), "nearest")
    near = np.clip(im, 0, 1 + RANGE_SLACK / 2) * np.float32(1 + RANGE_SLACK / 2)  # resampling overshoot: accepted
    assert math.isfinite(edgeae.image_metrics(im, near)["psnr"])
    valid = np.ones(im.shape, bool)
    valid[:4] = False
    wild = im.copy()
    wild[:4] = 300.0  # outside the valid pixels: not looked at
    assert math.isfinite(edgeae.image_metrics(wild, near, valid=valid)["psnr"])


# a4-9: 12-bit counts in a 16-bit file


def test_the_result_line_says_why_the_metrics_cover_part_of_the_frame(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """12-bit counts in a 16-bit PNG read 16× dark, the margin rule dropped 80% of the frame, and the line said
    only 'PSNR over the 20.1% ... (no-data and non-finite left out)', ~24 dB above the truth."""
    from edgeae.imageio import write_image

    y, x = np.mgrid[0:96, 0:128]
    counts = np.clip(x * 32 + (y % 7) * 3, 0, 4095).astype(np.uint16)  # 0-4095 left to right, no sBIT record
    src = write_image(tmp_path / "g12in16.png", counts, bit_depth=16)
    assert _cli("reconstruct", src, "--method", "linear", "-o", tmp_path / "r.png") == 0
    out = capsys.readouterr().out
    assert "of the pixels with data (left out: " in out, out
    assert "read as a dark or saturated margin by the no-data margin rule" in out
    assert f"the 16-bit samples reach only {counts.max()} of 65535" in out and "12-bit data in a 16-bit file" in out


# a2-7: long output names


def test_temp_name_of_a_long_name_stays_within_name_max(tmp_path: Path) -> None:
    from edgeae.atomic import name_max, temp_name, write_bytes

    limit = name_max(tmp_path)
    a, b = tmp_path / ("c" * (limit - 4) + ".png"), tmp_path / ("c" * (limit - 5) + "d.png")
    ta, tb = temp_name(a), temp_name(b)
    assert len(os.fsencode(ta.name)) <= limit and len(os.fsencode(tb.name)) <= limit
    assert ta != tb and ta.parent == tmp_path and ta.name.startswith(".ccc") and ta.name.endswith(f"-{os.getpid()}")
    assert temp_name(tmp_path / "x.png").name == f".x.png.tmp-{os.getpid()}"  # short names as before
    write_bytes(a, b"ok")
    assert a.read_bytes() == b"ok" and sorted(p.name for p in tmp_path.iterdir()) == [a.name]
    uni = tmp_path / ("é" * ((limit - 4) // 2) + ".png")  # NAME_MAX counts bytes
    assert len(os.fsencode(temp_name(uni).name)) <= limit


def test_reconstruct_refuses_a_name_too_long_before_the_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tifffile = pytest.importorskip("tifffile")
    from edgeae.atomic import name_max
    from edgeae.imageio import write_image

    limit = name_max(tmp_path)
    y, x = np.mgrid[0:40, 0:48]
    src = write_image(tmp_path / "g.png", ((x * 5 + y) % 200 + 30).astype(np.uint8))
    fine = tmp_path / ("c" * (limit - 9) + ".png")  # legal, and its temp file name is longer than NAME_MAX
    assert _cli("reconstruct", src, "--method", "linear", "-o", fine) == 0 and fine.is_file()
    capsys.readouterr()
    too_long = tmp_path / "out" / ("c" * (limit - 3) + ".png")
    assert _cli("reconstruct", src, "--method", "linear", "-o", too_long) == 2
    err = capsys.readouterr().err
    assert f"-o {too_long}: the file name is {limit + 1} bytes, more than the {limit}" in err, err
    assert not too_long.parent.exists()
    # with no-data, OUTPUT.valid.png is 6 bytes longer than OUTPUT.png: refused before the fill, the old file kept
    f32 = (0.2 + 0.005 * x + 0.004 * y).astype(np.float32)
    f32[5:9, 5:9] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", f32)
    old = tmp_path / ("d" * (limit - 8) + ".png")
    old.write_bytes(b"earlier result")
    assert _cli("reconstruct", tmp_path / "nan.tif", "--method", "linear", "-o", old) == 2
    err = capsys.readouterr().err
    assert "the valid map" in err and "(it is named after -o: shorten -o)" in err, err
    assert old.read_bytes() == b"earlier result"


# review s32 (r5) of the fixes above


def test_a_valid_map_shared_with_another_output_is_kept(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``st.png`` and ``st.tif`` share ``st.valid.png``: replacing ``st.png`` removed ``st.tif``'s map."""
    tifffile = pytest.importorskip("tifffile")
    from edgeae.imageio import write_image

    y, x = np.mgrid[0:48, 0:64]
    f32 = (0.2 + 0.005 * x + 0.004 * y).astype(np.float32)
    f32[10:20, 10:20] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", f32)
    grey = write_image(tmp_path / "grey8.png", ((x * 3 + y) % 200 + 30).astype(np.uint8))
    vmap = tmp_path / "st.valid.png"
    assert _cli("reconstruct", grey, "--method", "linear", "-o", tmp_path / "st.png") == 0
    assert _cli("reconstruct", tmp_path / "nan.tif", "--method", "linear", "-o", tmp_path / "st.tif") == 0
    assert vmap.is_file()
    capsys.readouterr()
    assert _cli("reconstruct", grey, "--method", "linear", "-o", tmp_path / "st.png") == 0
    assert vmap.is_file() and "removed" not in capsys.readouterr().out


def test_a_nan_keep_is_refused_in_make_mask_s_words(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgeae.imageio import write_image

    img = write_image(tmp_path / "a.png", np.full((32, 32), 90, np.uint8))
    assert _cli("reconstruct", img, "--method", "nearest", "--keep", "nan", "-o", tmp_path / "k.png") == 2
    assert "keep fraction must be in (0, 1], got nan" in capsys.readouterr().err


def test_metrics_of_empty_images_are_a_value_error() -> None:
    from edgeae.metrics import compare

    for shape in ((0, 5), (5, 0), (0, 0, 3)):
        with pytest.raises(ValueError, match="non-empty"):
            compare(np.zeros(shape, np.float32), np.zeros(shape, np.float32))


def test_a_stale_valid_map_goes_beside_this_run_s_own_metrics_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The shared-map check counted this run's own ``--metrics-json st.json`` and the input ``st.tif`` as owners of
    ``st.valid.png``, so the stale map was never removed (review s32); the input may own it."""
    tifffile = pytest.importorskip("tifffile")
    from edgeae.imageio import write_image

    y, x = np.mgrid[0:48, 0:64]
    f32 = (0.2 + 0.005 * x + 0.004 * y).astype(np.float32)
    f32[10:20, 10:20] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", f32)
    (tmp_path / "in").mkdir()
    grey = write_image(tmp_path / "in" / "grey8.png", ((x * 3 + y) % 200 + 30).astype(np.uint8))
    out, vmap, js = tmp_path / "st.png", tmp_path / "st.valid.png", tmp_path / "st.json"
    assert _cli("reconstruct", tmp_path / "nan.tif", "--method", "linear", "-o", out, "--metrics-json", js) == 0
    assert vmap.is_file()
    assert _cli("reconstruct", grey, "--method", "linear", "-o", out, "--metrics-json", js) == 0
    assert not vmap.exists()
    # the input named st.<ext> beside the output may own the map (an earlier -o st.tif): kept, and said (review
    # s32); a user's own st.tif with no map of its own: kept all the same, and the note says when to remove it
    assert _cli("reconstruct", tmp_path / "nan.tif", "--method", "linear", "-o", tmp_path / "st.tif") == 0
    assert vmap.is_file()
    capsys.readouterr()
    assert _cli("reconstruct", tmp_path / "st.tif", "--method", "linear", "-o", out) == 0
    assert vmap.is_file()
    note = capsys.readouterr().out
    assert f"note: kept {vmap}: it may be the valid map of another st.* image beside it" in note
    assert "then remove it" in note

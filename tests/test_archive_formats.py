"""Every sample product of ../shared/data/formats/ read through edgeae.imageio.read_image (GDAL via rasterio):
shape, dtype, scaling and no-data per format, the truncated Cassini pair refused, the label traps handled."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rasterio", reason="the archive extra is not installed: pip install 'edgeae[archive]'")

from edgeae.imageio import ImageReadError, image_shape, read_image

# file: (H, W, C, stored dtype, scaling kind, (raw_lo, raw_hi) or None for "measured", invalid pixels)
# The HRSC and LOLA ranges were pinned at (0, 25610) and (2573, 32034) while their label text was read as
# pixels: the crops left a stale ^IMAGE pointer inside the label (and LOLA a nested ^IMAGE GDAL followed from
# byte 0). Read from where the image starts (right after the label's END), HRSC holds 0..165 (its 4 text
# "pixels" made it read black) and LOLA -1010..735 (×0.5 m + 1737.4 km); see test_stale_pointer_*.
PDS3 = {
    "pds3/PSP_001446_1790_BG12_0.IMG": (5000, 256, 1, "uint8", "bit_depth", (0, 255), 0),
    "pds3/nacl.img": (10, 5064, 1, "uint8", "bit_depth", (0, 255), 0),
    "pds3/wac0000a1c4_cropped.img": (100, 704, 1, "uint8", "bit_depth", (0, 255), 9218),
    "pds3/ab102401_cropped.img": (5, 640, 1, "uint8", "bit_depth", (0, 255), 0),
    "pds3/h2862_0006_sr2_cropped.img": (5, 1008, 1, "int16", "range", (0, 165), 0),
    "pds3/1F483288473EFFCMUFP1214L0M1.IMG": (1024, 1024, 1, "int16", "bit_depth", (0, 4095), 0),
    "pds3/TC1S2B0_01_05186N225E0040_mini.lbl": (3, 3208, 1, "int16", "range", (122, 1634), 0),
    "pds3/TC1S2B0_01_05186N225E0040_mini.img": (3, 3208, 1, "int16", "range", (122, 1634), 0),
    "pds3/MI_MAP_03_N51E124N50E125SC_cropped.lbl": (5, 5, 1, "int16", "range", (2699, 3371), 0),
    "pds3/MI_MAP_03_N51E124N50E125SC_cropped.img": (5, 5, 1, "int16", "range", (2699, 3371), 0),
    "pds3/ldem_4_cropped.img": (1, 1440, 1, "int16", "range", (-1010, 735), 0),
    "pds3/frt00003e25_01_de156l_ddr1.lbl": (15, 64, 1, "float32", "range", None, 0),
    "pds3/frt00003e25_01_de156l_ddr1.img": (15, 64, 1, "float32", "range", None, 0),
}
PDS4 = {
    "pds4/MY36_015782_024_0_PAN_cropped.xml": (3, 500, 1, "float32", "range", None, 347),
    "pds4/MY36_015782_024_0_PAN_cropped.dat": (3, 500, 1, "float32", "range", None, 347),
    "pds4/cas_cal_sc_20231223T101918-20231223T101922-27132-79-NIR-1129309508-49-2.xml": (
        256, 1280, 1, "float32", "range", None, 0),
    "pds4/cas_cal_sc_20231223T101918-20231223T101922-27132-79-NIR-1129309508-49-2.dat": (
        256, 1280, 1, "float32", "range", None, 0),
    "pds4/cam_raw_sc_cam3_image_20241018t001002_61_f__t0004.lblx": (1024, 1024, 1, "int16", "range", (4, 1023), 0),
    "pds4/cam_raw_sc_cam3_image_20241018t001002_61_f__t0004.fits": (1024, 1024, 1, "int16", "range", (4, 1023), 0),
}  # fmt: skip
ISIS3 = {
    "isis3/ldem_4_reduced.cub": (240, 480, 1, "int16", "range", (-15622, 18282), 0),
    "isis3/dawnEqui1.cub": (338, 180, 1, "int16", "range", (7076, 13241), 16817),
    "isis3/PSP_002118_1510_25cm_o_forPDS_cropped.cub": (50, 50, 1, "uint8", "bit_depth", (0, 255), 837),
    "isis3/PSP_009404_2635_RED_NLstretch_1m_o_forPDS_cropped.cub": (50, 50, 1, "uint8", "bit_depth", (0, 255), 470),
    "isis3/Ares4_Marth_Crater_3557E_126N_ngate_03_lowres.cub": (23, 8, 1, "float32", "range", None, 76),
    "isis3/M1333276014R.default.crop.cub": (80, 80, 1, "float32", "range", None, 0),
    "isis3/CAS-MCO-2016-11-22T16.16.16.833-BLU-03006-B1.cub": (218, 64, 1, "float32", "range", None, 0),
    "isis3/mocImage.cub": (20, 20, 1, "uint8", "bit_depth", (0, 255), 0),
    "isis3/ctxTestImage.cub": (20, 20, 1, "int16", "range", (359, 397), 0),
}
VICAR = {
    "vicar/4600.byt.vic": (400, 400, 1, "uint8", "bit_depth", (0, 255), 0),
    "vicar/n1308947518.182-142523.vic": (512, 512, 1, "uint8", "bit_depth", (0, 255), 0),
    "vicar/N1638304759_2.IMG": (512, 512, 1, "int16", "range", (2139, 4095), 0),
    "vicar/1N491020376ILFCNY9P0706L0M1.IMG": (1024, 1024, 1, "int16", "bit_depth", (0, 4095), 0),
}
# no no-data value declared: the border regions of 0 outside the map-projected image are no-data (zero_fill)
JP2 = {"jp2/test.jp2": (775, 2192, 3, "uint16", "bit_depth", (0, 1023), 599_559)}
GEOTIFF = {
    "geotiff/mars.tif": (512, 1024, 1, "uint8", "bit_depth", (0, 255), 0),
    "geotiff/moon.tif": (512, 1024, 1, "uint8", "bit_depth", (0, 255), 13071),
    "geotiff/Lunar_LRO_LOLA_Shade_MAP2_90.0N20.0_LAMB.tif": (275, 239, 1, "uint8", "bit_depth", (0, 255), 22200),
    "geotiff/Mars_MGS_MOLA_ClrShade_MAP2_0.0N0.0_MERC.tif": (1694, 2304, 1, "uint8", "bit_depth", (0, 255), 25217),
    "geotiff/Mars_MGS_MOLA_ClrShade_MAP2_90.0N0.0_POLA.tif": (920, 920, 1, "uint8", "bit_depth", (0, 255), 4015),
    "geotiff/ESP_037156_1800_RED.byte.tif": (661, 274, 1, "uint8", "bit_depth", (0, 255), 54_559),  # zero_fill
    "geotiff/DTEEC_017825_1760_018458_1760_A01.tif": (295, 88, 1, "float32", "range", None, 10555),
    "geotiff/Mars_HRSC_MOLA_BlendDEM_Global_200mp_v2.window.tif": (14, 14, 1, "int16", "range", (-2618, -1829), 0),
}
ALL = {**PDS3, **PDS4, **ISIS3, **VICAR, **JP2, **GEOTIFF}


def _check(formats: Path, name: str, expect: tuple) -> None:
    h, w, c, dtype, kind, lohi, n_invalid = expect
    p = formats / name
    im = read_image(p)
    assert im.shape == (h, w, c) and image_shape(p) == (h, w, c)
    assert im.raw_dtype == dtype and im.pixels.dtype == np.float32
    s = im.extra["scaling"]
    assert s["kind"] == kind
    if lohi is not None:
        assert (s["raw_lo"], s["raw_hi"]) == lohi
    assert im.scale == pytest.approx(s["raw_hi"] - s["raw_lo"]) and im.extra["offset"] == s["raw_lo"]
    assert int((~im.valid).sum()) == n_invalid
    px = im.pixels[im.valid]
    assert px.min() >= 0.0 and px.max() <= 1.0 and np.all(im.pixels[~im.valid] == 0)
    if kind == "range":  # the real range maps onto [0, 1] exactly: nothing clipped
        assert px.min() == 0.0 and px.max() == pytest.approx(1.0, abs=1e-6)
    json.dumps(im.extra, default=str)  # the recorded metadata is serialisable


@pytest.mark.parametrize("name", sorted(PDS3))
def test_pds3(formats: Path, name: str) -> None:
    _check(formats, name, PDS3[name])


@pytest.mark.parametrize("name", sorted(PDS4))
def test_pds4(formats: Path, name: str) -> None:
    _check(formats, name, PDS4[name])


@pytest.mark.parametrize("name", sorted(ISIS3))
def test_isis3(formats: Path, name: str) -> None:
    _check(formats, name, ISIS3[name])


@pytest.mark.parametrize("name", sorted(VICAR))
def test_vicar(formats: Path, name: str) -> None:
    _check(formats, name, VICAR[name])


@pytest.mark.parametrize("name", sorted(JP2))
def test_jp2(formats: Path, name: str) -> None:
    _check(formats, name, JP2[name])


@pytest.mark.parametrize("name", sorted(GEOTIFF))
def test_geotiff(formats: Path, name: str) -> None:
    _check(formats, name, GEOTIFF[name])


def test_every_sample_is_covered(formats: Path) -> None:
    files = {
        p.relative_to(formats).as_posix() for p in formats.rglob("*") if p.is_file() and not p.name.startswith(".")
    }
    refused = {"pds3/N1472853667_1.cropped.lbl", "pds3/N1472853667_1.cropped.img"}
    assert files == set(ALL) | refused, sorted(files ^ (set(ALL) | refused))
    assert len(files) == 43


@pytest.mark.parametrize("name", ["N1472853667_1.cropped.lbl", "N1472853667_1.cropped.img"])
def test_truncated_cassini_pair_is_refused(formats: Path, name: str) -> None:
    with pytest.raises(ImageReadError, match=rf"{name}.*truncated.*1024 lines.*holds 14672 bytes.*10 complete lines"):
        read_image(formats / "pds3" / name)


def test_a_truncated_product_with_a_mixed_case_label_is_refused_with_the_promise(formats: Path, tmp_path: Path) -> None:
    """Kaguya labels write `Object = IMAGE` ... `End_Object`: the byte check read only upper case, so a truncated
    product gave GDAL's bare "Read failed" instead of what the label promises."""
    import shutil

    src = formats / "pds3" / "MI_MAP_03_N51E124N50E125SC_cropped"
    shutil.copy(src.with_suffix(".lbl"), tmp_path / "k.lbl")
    text = (tmp_path / "k.lbl").read_text(encoding="latin-1").replace(src.name + ".img", "k.img")
    text = text.replace(src.name.upper() + ".IMG", "k.img")
    (tmp_path / "k.lbl").write_text(text, encoding="latin-1")
    data = src.with_suffix(".img").read_bytes()
    (tmp_path / "k.img").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="truncated: its label promises"):
        read_image(tmp_path / "k.lbl")


def test_hirise_based_integer_missing_constant(formats: Path) -> None:
    """MISSING_CONSTANT = 16#FF# is 255; GDAL 3.10 reports no-data 16, which is dropped. The expected pixels are the
    file's bytes as the label lays them out (^IMAGE = 61903 <BYTES>, 18 + 256 + 16 bytes a line), not GDAL's read,
    which ignores the line suffix (tests/test_archive_s37_h1.py): read right, no pixel is 255 or 16."""
    p = formats / "pds3/PSP_001446_1790_BG12_0.IMG"
    raw = np.frombuffer(p.read_bytes(), np.uint8, 5000 * 290, 61902).reshape(5000, 290)[:, 18:274]
    im = read_image(p)
    assert im.extra["special_values"] == [255.0] and im.extra["label"]["misread_nodata"] == 16.0
    assert bool(im.valid.all()) and int((raw == 255).sum()) == 0 and int((raw == 16).sum()) == 0
    assert np.allclose(im.pixels[..., 0], raw / 255.0)


def test_label_metadata(formats: Path) -> None:
    tc = read_image(formats / "pds3/TC1S2B0_01_05186N225E0040_mini.lbl").extra["label"]
    assert (tc["instrument"], tc["target"], tc["product_id"]) == ("TC1", "MOON", "TC1S2B0_01_05186N225E0040")
    assert (tc["incidence_deg"], tc["emission_deg"], tc["phase_deg"]) == (65.012, 15.912, 67.161)
    cas = read_image(formats / "pds4/MY36_015782_024_0_PAN_cropped.xml").extra["label"]
    assert cas["instrument"] == "CaSSIS" and cas["target"] == "MARS" and cas["resolution_m"] == 4.0
    assert cas["incidence_deg"] == pytest.approx(25.428425703542) and cas["emission_deg"] == pytest.approx(8.0711133)
    assert read_image(formats / "isis3/ctxTestImage.cub").extra["label"]["instrument"] == "CTX"


def test_physical_scaling_is_recorded(formats: Path) -> None:
    """LOLA radii: raw × 0.5 + 1,737,400 m; the physical range is recorded beside the raw one."""
    s = read_image(formats / "isis3/ldem_4_reduced.cub").extra["scaling"]
    assert (s["multiplier"], s["offset"]) == (0.5, 1737400.0)
    assert (s["physical_lo"], s["physical_hi"]) == (1737400.0 - 7811.0, 1737400.0 + 9141.0)


def test_float_specials_below_flt_max_are_invalid(formats: Path) -> None:
    """The CaSSIS PDS4 map holds -FLT_MAX (its high_representation_saturation) next to the ISIS null."""
    rasterio = pytest.importorskip("rasterio")
    p = formats / "pds4/MY36_015782_024_0_PAN_cropped.xml"
    with rasterio.open(p) as ds:
        raw = ds.read(1)
    im = read_image(p)
    assert np.array_equal(~im.valid, raw <= -3.4028e38) and (raw == np.float32(-3.4028235e38)).any()


def test_mer_pds3_with_vicar_reads_the_same_with_the_vicar_driver(formats: Path) -> None:
    rasterio = pytest.importorskip("rasterio")
    p = formats / "vicar/1N491020376ILFCNY9P0706L0M1.IMG"
    im = read_image(p)
    assert im.extra["driver"] == "PDS" and im.extra["label"]["bit_mask_bits"] == 12
    with warnings.catch_warnings(), rasterio.Env(GDAL_TRY_PDS3_WITH_VICAR="YES"):
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(p) as ds:
            assert ds.driver == "VICAR"
            raw = ds.read(1)
    assert np.allclose(im.pixels[..., 0], raw / 4095.0)


def test_missing_extra_names_the_install_line(monkeypatch: pytest.MonkeyPatch, formats: Path) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "rasterio", None)
    with pytest.raises(ImportError, match=r"pip install 'edgeae\[archive\]'"):
        read_image(formats / "isis3/mocImage.cub")


def test_data_file_without_label_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "orphan.img"
    p.write_bytes(bytes(100))
    with pytest.raises(ImageReadError, match=r"orphan\.img: no attached label and no detached label"):
        read_image(p)


def test_whole_product_read_obeys_the_decode_limits(formats: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("edgeae.imagedecode")
    from edgeae.strips import iter_patches

    monkeypatch.setenv("EDGEAE_MAX_IMAGE_PIXELS", "1000")
    p = formats / "vicar/4600.byt.vic"
    with pytest.raises(ImageReadError, match=r"4600\.byt\.vic: 400×400×1 is over the decode limits.*stream it"):
        read_image(p)
    assert sum(1 for _ in iter_patches(p, 64)) == 49  # streaming is not limited: memory stays bounded


@pytest.mark.parametrize("name", sorted(ALL))
def test_streamed_validity_matches_the_whole_product_read(formats: Path, name: str) -> None:
    """What edgeae score / scan stream is what read_image reads: a product's no-data comes from its label, not
    the image heuristics (an HRSC strip streamed 0 % valid, a BepiColombo one 11 %, against 100 % whole)."""
    from edgeae.strips import iter_strips

    p = formats / name
    whole = read_image(p).valid
    streamed = np.concatenate([s.valid for s in iter_strips(p, strip_rows=64)])
    assert streamed.shape == whole.shape
    if name in ("geotiff/ESP_037156_1800_RED.byte.tif", "jp2/test.jp2"):
        # zero-filled borders go through the image path's border-region mask, streamed band by band: a dark
        # region that reaches a side along fewer than 32 rows of the first band it meets is judged there on
        # that stretch alone (131 and 132 pixels at band seams here, as for streamed PNG/TIFF frames)
        assert (streamed != whole).mean() < 1e-3 and abs(streamed.mean() - whole.mean()) < 1e-3
    else:
        assert np.array_equal(streamed, whole), (whole.mean(), streamed.mean())

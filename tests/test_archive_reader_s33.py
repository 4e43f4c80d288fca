"""Audit a6 (hostile planetary files), the reader's part: links and non-files under a label, a short PDS4 data file
read as zeros, unknown and VAX PDS3 sample types, absurd georeferencing, a line-sized read at open, and the
wording of truncation refusals. Synthetic products are built in tmp_path; the real JPEG 2000 sample is read under
the ``formats`` fixture (skipped without the data)."""

from __future__ import annotations

import logging
import math
import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio", reason="the archive extra is not installed: pip install 'edgeae[archive]'")

from edgeae.archive import reader as reader_mod  # noqa: E402
from edgeae.archive.geo import GeoRef  # noqa: E402
from edgeae.archive.reader import ProductReader, read_product  # noqa: E402
from edgeae.imageio import ImageReadError, read_image  # noqa: E402

MARS_WKT = (
    'GEOGCS["Mars 2000",DATUM["D_Mars_2000",SPHEROID["Mars_2000_IAU_IAG",3396190,169.894447223612]],'
    'PRIMEM["Greenwich",0],UNIT["Decimal_Degree",0.0174532925199433]]'
)


def _pds3(folder: Path, lines: int, samples: int, sample_type: str = "UNSIGNED_INTEGER", bits: int = 8) -> Path:
    """A detached PDS3 label x.lbl over x.img (not written here)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "x.lbl").write_text(
        'PDS_VERSION_ID = PDS3\nRECORD_TYPE = UNDEFINED\n^IMAGE = ("x.img", 1 <BYTES>)\nOBJECT = IMAGE\n'
        f"  LINES = {lines}\n  LINE_SAMPLES = {samples}\n  SAMPLE_TYPE = {sample_type}\n  SAMPLE_BITS = {bits}\n"
        "END_OBJECT = IMAGE\nEND\n"
    )
    return folder / "x.lbl"


def _pds4(folder: Path, data: bytes | None, lines: int = 64, samples: int = 64, offset: int = 0) -> Path:
    """A PDS4 label a.xml over a.dat (uint8, ``offset`` bytes into it); a.dat written unless ``data`` is None."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "a.xml").write_text(
        '<?xml version="1.0"?>\n<Product_Observational xmlns="http://pds.nasa.gov/pds4/pds/v1">\n'
        "<File_Area_Observational><File><file_name>a.dat</file_name></File>\n"
        f'<Array_2D_Image><offset unit="byte">{offset}</offset><axes>2</axes><axis_index_order>Last Index Fastest'
        "</axis_index_order><Element_Array><data_type>UnsignedByte</data_type></Element_Array>"
        f"<Axis_Array><axis_name>Line</axis_name><elements>{lines}</elements><sequence_number>1</sequence_number>"
        f"</Axis_Array><Axis_Array><axis_name>Sample</axis_name><elements>{samples}</elements>"
        "<sequence_number>2</sequence_number></Axis_Array></Array_2D_Image></File_Area_Observational>\n"
        "</Product_Observational>\n"
    )
    if data is not None:
        (folder / "a.dat").write_bytes(data)
    return folder / "a.xml"


def _geotiff(path: Path, transform: tuple[float, ...]) -> Path:
    from rasterio.transform import Affine

    arr = np.arange(64 * 64, dtype=np.uint16).reshape(1, 64, 64) % 250 + 1
    with rasterio.open(
        path, "w", driver="GTiff", height=64, width=64, count=1, dtype="uint16", crs=MARS_WKT,
        transform=Affine(*transform),
    ) as dst:  # fmt: skip
        dst.write(arr)
    return path


# -- item 1: the reader's own net refuses links out of the label's folder and anything but a regular file ----------


def test_a_link_beside_the_label_to_a_file_elsewhere_is_refused(tmp_path: Path, monkeypatch) -> None:
    """``ln -s /etc/ssl/certs/ca-certificates.crt d/x.img`` beside a label had the certificate scored as an image:
    the check compared absolute paths, not real ones. Tested under the label checks (formats), which are off here."""
    monkeypatch.setattr(reader_mod, "check_complete", lambda p: None)
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"-----BEGIN CERTIFICATE-----\n" * 400)
    lbl = _pds3(tmp_path / "d", 8, 64)
    (tmp_path / "d" / "x.img").symlink_to(secret)
    with pytest.raises(ImageReadError, match=r"x\.lbl: its label points to .*x\.img \(a link to .*secret\.txt\), "
                       r"outside the label's folder"):  # fmt: skip
        ProductReader(lbl)
    (tmp_path / "d" / "x.img").unlink()
    (tmp_path / "d" / "x.img").symlink_to("/dev/zero")
    with pytest.raises(ImageReadError, match=r"x\.img \(a link to /dev/zero\), outside the label's folder"):
        ProductReader(lbl)


def test_a_non_regular_file_in_the_folder_is_refused_without_opening_it(tmp_path: Path) -> None:
    """A FIFO is named as such (``os.stat`` never opens it); checked on the file list GDAL reports."""
    (tmp_path / "x.lbl").write_text("label")
    os.mkfifo(tmp_path / "x.img")

    class _Ds:
        files = (str(tmp_path / "x.lbl"), str(tmp_path / "x.img"))

    r = ProductReader.__new__(ProductReader)
    r.path, r.ds = tmp_path / "x.lbl", _Ds()
    with pytest.raises(ImageReadError, match=r"x\.lbl: its label points to .*x\.img, which is a FIFO, not a regular"):
        r._check_files(tmp_path / "x.lbl")


def test_links_that_stay_in_the_products_real_folder_still_read(tmp_path: Path, monkeypatch) -> None:
    """A folder of links to a product (label and data linked: the scan tests' layout) and a data file linked to
    another file in the label's folder read as before (the reader's net; the label checks are off here)."""
    monkeypatch.setattr(reader_mod, "check_complete", lambda p: None)
    real = tmp_path / "real"
    _pds3(real, 2, 4)
    (real / "x.img").write_bytes(bytes(range(8)))
    links = tmp_path / "links"
    links.mkdir()
    for name in ("x.lbl", "x.img"):
        (links / name).symlink_to(real / name)
    want = np.arange(8).reshape(2, 4)
    assert np.array_equal(np.rint(read_image(links / "x.lbl").pixels[..., 0] * 255), want)
    (real / "x.img").rename(real / "pixels.bin")
    (real / "x.img").symlink_to("pixels.bin")
    assert np.array_equal(np.rint(read_image(real / "x.lbl").pixels[..., 0] * 255), want)


# -- item 3: a short PDS4 data file is refused, not read as zeros -------------------------------------------------


def test_a_pds4_data_file_short_by_less_than_its_label_is_refused(tmp_path: Path) -> None:
    """64 × 64 bytes over a 4000-byte file read with its last row 0 (the label's 845 bytes counted as data)."""
    img = np.random.default_rng(1).integers(1, 255, 4096, dtype=np.uint8).tobytes()
    with pytest.raises(ImageReadError, match=r"a\.xml: truncated or corrupt: its label declares 64 × 64 × 1 uint8 "
                       r"samples \(4096 bytes\), more than its data file a\.dat holds \(4000 bytes\)"):  # fmt: skip
        read_image(_pds4(tmp_path / "short", img[:4000]))
    with pytest.raises(ImageReadError, match=r"samples \(4096 bytes\) starting at byte 1000000000001, more than its "
                       r"data file a\.dat holds \(4096 bytes\)"):  # fmt: skip
        read_image(_pds4(tmp_path / "past", img, offset=10**12))
    ok = read_image(_pds4(tmp_path / "ok", b"\0" * 400 + img[:512], lines=8, offset=400))
    assert np.array_equal(np.rint(ok.pixels[..., 0] * 255), np.frombuffer(img[:512], np.uint8).reshape(8, 64))


# -- item 7: PDS3 SAMPLE_TYPEs GDAL would misread ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sample_type", "bits", "words"),
    [("BANANA", 16, r"SAMPLE_TYPE = BANANA is not a PDS3 sample type"),
     ("VAX_REAL", 32, r"SAMPLE_TYPE = VAX_REAL: VAX floating point is not IEEE"),
     ('"VAX_DOUBLE"', 64, r"SAMPLE_TYPE = VAX_DOUBLE: VAX floating point")],
)  # fmt: skip
def test_unknown_and_vax_float_sample_types_are_refused(
    tmp_path: Path, sample_type: str, bits: int, words: str
) -> None:
    """BANANA read as MSB int16 and VAX_REAL as IEEE little-endian float32, without a word."""
    lbl = _pds3(tmp_path, 4, 8, sample_type, bits)
    (tmp_path / "x.img").write_bytes(bytes(4 * 8 * bits // 8))
    with pytest.raises(ImageReadError, match=rf"x\.lbl: {words}"):
        read_image(lbl)


@pytest.mark.parametrize("sample_type", ["LSB_INTEGER", '"MSB_UNSIGNED_INTEGER"', "PC_REAL", "VAX_INTEGER", "REAL"])
def test_known_sample_types_still_read(tmp_path: Path, sample_type: str) -> None:
    bits = 32 if "REAL" in sample_type else 16
    lbl = _pds3(tmp_path, 2, 4, sample_type, bits)
    (tmp_path / "x.img").write_bytes(np.arange(1, 9, dtype=f"<{'f' if bits == 32 else 'i'}{bits // 8}").tobytes())
    assert read_image(lbl).shape == (2, 4, 1)


# -- item 8: absurd georeferencing is not georeferencing -----------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "transform", "words"),
    [("zero", (0, 0, 100, 0, 0, 100), "is degenerate (determinant 0)"),
     ("nan", (float("nan"), 0, 0, 0, -1, 0), "is not finite"),
     ("huge", (1e30, 0, 1e35, 0, -1e30, 1e35), "puts it off the body (latitudes 9.9"),
     ("offglobe", (10, 0, 500, 0, -1, 200), "puts it off the body (latitudes 136..200°)")],
)  # fmt: skip
def test_absurd_geotransforms_are_read_as_not_georeferenced(
    tmp_path: Path, name: str, transform: tuple[float, ...], words: str, caplog: pytest.LogCaptureFixture
) -> None:
    """huge.tif had lat 9.99e34 in the CSV and the layer, zero.tif every patch at one point, nan.tif NaN map_x."""
    p = _geotiff(tmp_path / f"{name}.tif", transform)
    with caplog.at_level(logging.WARNING, logger="edgeae.archive.reader"):
        img = read_product(p)
        with ProductReader(p) as r:
            assert r.geo is None
    assert img.extra["georef"] is None and any(words in w for w in img.extra["warnings"]), img.extra["warnings"]
    logged = [rec.getMessage() for rec in caplog.records if words in rec.getMessage()]
    assert len(logged) == 1 and logged[0].startswith(f"{p}: "), logged  # once, naming the file


def test_points_off_the_body_get_null_lon_lat(tmp_path: Path) -> None:
    """A footprint from 100° N to 28° S keeps its map x/y; lon/lat are null where the latitude passes 90°."""
    p = _geotiff(tmp_path / "part.tif", (1, 0, 0, 0, -2, 100))
    with ProductReader(p) as r:
        assert r.geo is not None and any("part of it lies off the body" in w for w in r.warnings)
        cols = r.geo.patch_columns(np.array([0, 0]), np.array([0, 32]), 8)
    assert np.isfinite(cols["map_y"]).all() and math.isnan(cols["lat"][0]) and math.isnan(cols["lon"][0])
    assert cols["map_y"][1] == 100 - 2 * 36 and cols["lat"][1] == pytest.approx(27.72, abs=0.01)  # planetocentric


def test_a_sound_geotransform_is_unchanged(tmp_path: Path) -> None:
    p = _geotiff(tmp_path / "ok.tif", (0.5, 0, 10, 0, -0.5, 20))
    with ProductReader(p) as r:
        assert r.geo is not None and not r.warnings
        geo, note = GeoRef.read(r.ds, None, None)
        assert note is None and geo == r.geo and r.geo.body == "MARS"


# -- item 10: nothing line-sized is read before the limits ---------------------------------------------------------


def test_open_reads_a_bounded_piece_of_the_last_line(tmp_path: Path) -> None:
    """3 × 200,000,000 bytes (sparse): the open read the whole last line (200 MB here, up to 2 GiB) before
    read_product's decode-limit refusal."""
    lbl = _pds3(tmp_path, 3, 200_000_000)
    with open(tmp_path / "x.img", "wb") as fh:
        fh.truncate(600_000_000)
    tracemalloc.start()
    try:
        with ProductReader(lbl) as r:
            assert (r.height, r.width) == (3, 200_000_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, peak
    with pytest.raises(ImageReadError, match=r"3×200000000×1 is over the decode limits"):
        read_product(lbl)


# -- item 11: refusals that say truncated, once ---------------------------------------------------------------------


def test_an_unreadable_last_tile_names_the_file_once(tmp_path: Path) -> None:
    """The ISIS3 message was "X: truncated or corrupt: its last line cannot be read (X: GDAL read of rows ...)"."""
    p = tmp_path / "cut.cub"
    label = (
        "Object = IsisCube\n  Object = Core\n    StartByte = 1025\n    Format = Tile\n    TileSamples = 128\n"
        "    TileLines = 128\n    Group = Dimensions\n      Samples = 20\n      Lines = 20\n      Bands = 1\n"
        "    End_Group\n    Group = Pixels\n      Type = UnsignedByte\n      ByteOrder = Lsb\n      Base = 0.0\n"
        "      Multiplier = 1.0\n    End_Group\n  End_Object\nEnd_Object\nEnd\n"
    )
    p.write_bytes(label.encode().ljust(1024, b" ") + bytes(400))  # 20 × 20 samples, but one 128 × 128 tile
    with pytest.raises(ImageReadError, match=r"cut\.cub: truncated or corrupt: its last line cannot be read") as err:
        ProductReader(p)
    assert str(err.value).count(str(p)) == 1 and "GDAL read of rows" not in str(err.value), err.value


@pytest.mark.parametrize("keep", [3000, 1_200_000, 2_400_000])
def test_a_truncated_jpeg2000_says_truncated_at_open(formats: Path, tmp_path: Path, keep: int) -> None:
    """A JP2 cut short failed only at its first read, as "opj_decode() failed"."""
    src = (formats / "jp2/test.jp2").read_bytes()
    (tmp_path / "cut.jp2").write_bytes(src[:keep])
    with pytest.raises(ImageReadError, match=rf"cut\.jp2: truncated: its JPEG 2000 codestream tile-part 1 ends at "
                       rf"byte {len(src) - 2}, the file holds {keep} bytes"):  # fmt: skip
        ProductReader(tmp_path / "cut.jp2")
    ProductReader(formats / "jp2/test.jp2").close()  # the whole file opens


def test_score_names_a_fifo_as_not_a_regular_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from edgeae.cli import main

    os.mkfifo(tmp_path / "fifo.xml")
    assert main(["score", str(tmp_path / "fifo.xml"), "-o", str(tmp_path / "s.csv"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "fifo.xml is not a regular file" in err and "does not exist" not in err, err


# -- review r4 item 4: a layer polygon never has null vertices -----------------------------------------------------


class _Store:
    """The part of a scan's store :func:`edgeae.scan.geo.write_layer` reads: each product's best patch at (0, 0)."""

    def __init__(self, folder: Path, patch: int) -> None:
        from types import SimpleNamespace

        self.folder, self.config = folder, SimpleNamespace(patch=patch, top_k=1)

    def meta_path(self, key: str) -> Path:
        return self.folder / f"{key}.meta.json"

    def top_path(self, key: str) -> Path:
        return self.folder / f"{key}.top.npz"

    def load_top(self, key: str):
        from edgeae.scan.accumulator import TopK

        p = self.config.patch
        zero = np.zeros(1, np.int32)
        return TopK(np.array([0.5]), zero, zero.copy(), np.full((1, 1, p, p), 100, np.uint8))


@pytest.mark.parametrize("geometry", ["polygon", "point"])
def test_a_patch_outline_past_the_pole_goes_to_the_product_crs_layer(tmp_path: Path, geometry: str) -> None:
    """A patch centred at 89.98° N whose outline reaches 90.3° went into the Mars lon/lat layer as a ring of NaN
    vertices (json.dumps wrote NaN: invalid JSON; GeoPackage got a broken polygon). Its outline now stays in map
    x/y in the product-CRS layer; its centre, on the body, keeps it in the lon/lat layer as a point."""
    import json
    from types import SimpleNamespace

    from edgeae.scan.geo import georef_of, write_layer

    store = _Store(tmp_path, 64)
    entries = []
    for key, top in (("polar", 90.3), ("equator", 10.0)):  # 64 × 64 px of 0.01°: 90.3..89.66° N, 10..9.36° N
        _, meta = georef_of(_geotiff(tmp_path / f"{key}.tif", (0.01, 0, 0, 0, -0.01, top)))
        store.meta_path(key).write_text(json.dumps(meta))
        store.top_path(key).touch()
        entries.append(SimpleNamespace(key=key, name=f"{key}.tif"))

    def no_nan(word: str) -> float:
        raise AssertionError(f"{word} in the layer: not JSON")

    written = write_layer(store, entries, tmp_path / "l.geojson", geometry=geometry)
    layers = {}
    for w in written:
        doc = json.loads(Path(w["path"]).read_text(), parse_constant=no_nan)
        layers[doc["name"]] = {f["properties"]["product"]: f["geometry"]["coordinates"] for f in doc["features"]}
    if geometry == "point":
        assert set(layers) == {"anomalies_mars_geodetic0"} and layers["anomalies_mars_geodetic0"]["polar.tif"][
            1
        ] == pytest.approx(89.98, abs=0.01)
        return
    assert set(layers) == {"anomalies_mars_geodetic0", "anomalies_mars_crs0"}
    ring = np.array(layers["anomalies_mars_crs0"]["polar.tif"][0])  # map x/y of the product's CRS (degrees here)
    assert ring.shape == (33, 2) and np.isfinite(ring).all() and ring[:, 1].max() == pytest.approx(90.3)
    ring = np.array(layers["anomalies_mars_geodetic0"]["equator.tif"][0])  # a product on the body stays in lon/lat
    assert np.isfinite(ring).all() and ring[:, 0].max() == pytest.approx(0.64) and 9 < ring[:, 1].min() < 10


def test_geojson_properties_off_the_body_are_null(tmp_path: Path) -> None:
    """A point whose centre is off the body (product-CRS layer) had "lon": NaN in its properties: not JSON."""
    import json
    from types import SimpleNamespace

    from edgeae.scan.geo import georef_of, write_layer

    store = _Store(tmp_path, 64)
    _, meta = georef_of(_geotiff(tmp_path / "p.tif", (0.01, 0, 0, 0, -0.01, 90.5)))  # centre at 90.18° N
    store.meta_path("p").write_text(json.dumps(meta))
    store.top_path("p").touch()
    (w,) = write_layer(store, [SimpleNamespace(key="p", name="p.tif")], tmp_path / "l.geojson")
    (feat,) = json.loads(Path(w["path"]).read_text(), parse_constant=lambda c: pytest.fail(f"{c} in the layer"))[
        "features"
    ]
    assert w["layer"] == "anomalies_mars_crs0" and feat["properties"]["lon"] is None
    assert feat["properties"]["lat"] is None and feat["geometry"]["coordinates"][1] == pytest.approx(90.18)


@pytest.mark.skipif(os.name == "nt", reason="symlinks need privileges on Windows")
def test_the_readers_net_follows_a_link_to_a_regular_file_only_by_opt_in(tmp_path: Path, monkeypatch) -> None:
    """Review r4 item 2, on the files GDAL opened (the label checks are off here): ``x.img -> /bigdisk/x.img`` reads
    with ``EDGEAE_ARCHIVE_FOLLOW_LINKS=1`` and is refused without it, naming it; a link to a device never reads."""
    monkeypatch.setattr(reader_mod, "check_complete", lambda p: None)
    monkeypatch.delenv("EDGEAE_ARCHIVE_FOLLOW_LINKS", raising=False)
    (tmp_path / "bigdisk").mkdir()
    (tmp_path / "bigdisk" / "x.img").write_bytes(bytes(range(8)))
    lbl = _pds3(tmp_path / "d", 2, 4)
    (tmp_path / "d" / "x.img").symlink_to(tmp_path / "bigdisk" / "x.img")
    with pytest.raises(ImageReadError, match=r"x\.img \(a link to .*bigdisk/x\.img\), outside the label's folder: .*"
                       r"\(set EDGEAE_ARCHIVE_FOLLOW_LINKS=1 to read links to regular files"):  # fmt: skip
        ProductReader(lbl)
    monkeypatch.setenv("EDGEAE_ARCHIVE_FOLLOW_LINKS", "1")
    assert np.array_equal(np.rint(read_image(lbl).pixels[..., 0] * 255), np.arange(8).reshape(2, 4))
    (tmp_path / "d" / "x.img").unlink()
    (tmp_path / "d" / "x.img").symlink_to("/dev/zero")
    want = r"\(a link to /dev/zero\), outside the label's folder: .*\(it is a device, not a regular file: never read\)"
    with pytest.raises(ImageReadError, match=want):
        ProductReader(lbl)

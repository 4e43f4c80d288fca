"""Session 37, audit a2: PDS3 line suffixes GDAL ignores (the HiRISE EDR read sheared), a detached label pointing
into another file's own label, a ^IMAGE file name that is not UTF-8, and a truncated GeoTIFF listed as read.

The expected pixels are always the label's numbers applied by numpy to the file's bytes, never GDAL's read."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio", reason="the archive extra is not installed: pip install 'edgeae[archive]'")

from edgeae.archive.reader import ProductReader  # noqa: E402
from edgeae.imageio import ImageReadError, read_image  # noqa: E402


def _label_numbers(data: bytes, obj: str = "IMAGE") -> dict[str, int]:
    """The ^IMAGE byte pointer and the IMAGE object's numbers, read from the label text with regexes only."""
    text = data[: data.find(b"\nEND\r\n") + 1 if b"\nEND\r\n" in data else 65536].decode("latin-1")
    ptr = re.search(r"^\^IMAGE\s*=\s*(\d+)\s*<BYTES>", text, re.M)
    block = re.search(rf"^OBJECT\s*=\s*{obj}\s*$(.*?)^END_OBJECT\s*=\s*{obj}\s*$", text, re.M | re.S)
    assert ptr is not None and block is not None
    out = {"start": int(ptr.group(1)) - 1}
    for key in ("LINES", "LINE_SAMPLES", "LINE_PREFIX_BYTES", "LINE_SUFFIX_BYTES", "SAMPLE_BITS"):
        m = re.search(rf"^\s*{key}\s*=\s*(\d+)", block.group(1), re.M)
        out[key] = int(m.group(1)) if m else 0
    return out


def _truth(data: bytes, n: dict[str, int]) -> np.ndarray:
    """The 8-bit samples after each line's prefix, lines of prefix + samples + suffix bytes from the pointer."""
    stride = n["LINE_PREFIX_BYTES"] + n["LINE_SAMPLES"] + n["LINE_SUFFIX_BYTES"]
    raw = np.frombuffer(data, np.uint8, n["LINES"] * stride, n["start"]).reshape(n["LINES"], stride)
    return raw[:, n["LINE_PREFIX_BYTES"] : n["LINE_PREFIX_BYTES"] + n["LINE_SAMPLES"]]


# -- finding 1: LINE_SUFFIX_BYTES ---------------------------------------------------------------------------------


def test_the_hirise_edr_is_the_bytes_after_each_line_prefix(formats: Path) -> None:
    """GDAL's PDS driver skips the 18-byte prefix but ignores the 16-byte suffix: it stepped 274 bytes a line, not
    290, so row k started 16·k bytes early (94 % of the pixels wrong, the prefix's 0xFF sync byte read as 4,430
    no-data pixels). The right read has no 255 at all, so nothing is no-data."""
    p = formats / "pds3/PSP_001446_1790_BG12_0.IMG"
    data = p.read_bytes()
    n = _label_numbers(data)
    assert (n["LINES"], n["LINE_SAMPLES"], n["LINE_PREFIX_BYTES"], n["LINE_SUFFIX_BYTES"]) == (5000, 256, 18, 16)
    truth = _truth(data, n)
    im = read_image(p)
    assert np.array_equal(np.rint(im.pixels[..., 0] * 255).astype(np.uint8), truth)
    assert bool(im.valid.all()) and (int(truth.min()), int(truth.max())) == (129, 196)  # neither 16 nor 255
    assert im.extra["label"]["misread_nodata"] == 16.0 and im.extra["special_values"] == [255.0]
    assert "LINE_SUFFIX_BYTES = 16" in im.extra["direct_read"] and not im.extra["warnings"]
    with ProductReader(p) as r:  # windowed reads give the same rows
        assert np.array_equal(r.read_raw(4990, 5000)[..., 0], truth[4990:])
        assert np.array_equal(r.read_raw(1, 3)[..., 0], truth[1:3])


def _pds3_suffixed(path: Path, planes: np.ndarray, prefix: int, suffix: int, storage: str = "BAND_SEQUENTIAL") -> bytes:
    """An attached-label PDS3 image of MSB 16-bit samples (bands, lines, samples), each line framed by ``prefix``
    bytes of 0xFF and ``suffix`` bytes of 0xEE; returns the file's bytes."""
    bands, lines, samples = planes.shape
    obj = (
        f"OBJECT = IMAGE\r\n  LINES = {lines}\r\n  LINE_SAMPLES = {samples}\r\n  BANDS = {bands}\r\n"
        f"  BAND_STORAGE_TYPE = {storage}\r\n  SAMPLE_BITS = 16\r\n  SAMPLE_TYPE = MSB_INTEGER\r\n"
        f"  LINE_PREFIX_BYTES = {prefix}\r\n  LINE_SUFFIX_BYTES = {suffix}\r\nEND_OBJECT = IMAGE\r\nEND\r\n"
    )
    head = f"PDS_VERSION_ID = PDS3\r\nRECORD_TYPE = UNDEFINED\r\n^IMAGE = 1025 <BYTES>\r\n{obj}".encode()
    rows = [
        b"\xff" * prefix + planes[b, y].astype(">i2").tobytes() + b"\xee" * suffix
        for b in range(bands)
        for y in range(lines)
    ]
    data = head.ljust(1024, b" ") + b"".join(rows)
    path.write_bytes(data)
    return data


def test_a_suffixed_image_reads_right_in_every_window(tmp_path: Path) -> None:
    """16-bit, 2 band-sequential bands, 6-byte prefix and 10-byte suffix: every window of every band is the
    label's bytes, and read_image gives band 1's values (the prefix and suffix never become pixels)."""
    rng = np.random.default_rng(0)
    planes = rng.integers(-2000, 3000, (2, 40, 33)).astype(np.int16)
    data = _pds3_suffixed(tmp_path / "s.img", planes, prefix=6, suffix=10)
    stride = 6 + 33 * 2 + 10
    body = np.frombuffer(data, np.uint8, 2 * 40 * stride, 1024).reshape(2, 40, stride)[:, :, 6 : 6 + 66]
    truth = np.ascontiguousarray(body).view(">i2").reshape(2, 40, 33)  # from the bytes, not from `planes`
    assert np.array_equal(truth, planes)
    with ProductReader(tmp_path / "s.img", bands=[2]) as r:
        assert np.array_equal(r.read_raw(0, 40)[..., 0], truth[1])
        assert np.array_equal(r.read_raw(17, 23)[..., 0], truth[1, 17:23])
    im = read_image(tmp_path / "s.img")
    s = im.extra["scaling"]
    assert (s["raw_lo"], s["raw_hi"]) == (float(truth[0].min()), float(truth[0].max()))
    want = (truth[0].astype(np.float64) - s["raw_lo"]) / (s["raw_hi"] - s["raw_lo"])
    assert np.allclose(im.pixels[..., 0], want, atol=1e-6) and bool(im.valid.all())


def test_a_suffix_with_only_a_suffix_and_a_suffix_of_a_line_interleaved_image(tmp_path: Path) -> None:
    """A suffix without a prefix is read right too; a line-interleaved multi-band image with a suffix (its layout
    not one read directly) is refused in one line rather than read sheared."""
    planes = np.arange(2 * 5 * 7, dtype=np.int16).reshape(1, 10, 7)
    _pds3_suffixed(tmp_path / "a.img", planes, prefix=0, suffix=4)
    with ProductReader(tmp_path / "a.img") as r:
        assert np.array_equal(r.read_raw(0, 10)[..., 0], planes[0])
    _pds3_suffixed(tmp_path / "b.img", planes.reshape(2, 5, 7), prefix=0, suffix=4, storage="LINE_INTERLEAVED")
    with pytest.raises(ImageReadError, match=r"LINE_SUFFIX_BYTES = 4.*LINE_INTERLEAVED"):
        read_image(tmp_path / "b.img")


def test_prefixes_and_suffixes_longer_than_the_samples_are_skipped_run_by_run(tmp_path: Path) -> None:
    """A 14-byte line of samples framed by 50 + 100 bytes: a window reads the sample runs only (not the whole lines),
    and gives the label's bytes."""
    planes = (np.arange(3 * 9 * 7, dtype=np.int16) * 37 - 500).reshape(3, 9, 7)
    data = _pds3_suffixed(tmp_path / "l.img", planes, prefix=50, suffix=100)
    body = np.frombuffer(data, np.uint8, 3 * 9 * 164, 1024).reshape(3, 9, 164)[:, :, 50:64]
    truth = np.ascontiguousarray(body).view(">i2").reshape(3, 9, 7)
    with ProductReader(tmp_path / "l.img", bands=[1, 2, 3]) as r:
        assert np.array_equal(r.read_raw(2, 8), np.moveaxis(truth[:, 2:8], 0, -1))


def test_a_suffix_of_a_detached_label_copy_of_the_hirise_edr(formats: Path, tmp_path: Path) -> None:
    """The same product as a detached label (.lbl) beside its data: read through the data file named by ^IMAGE."""
    data = (formats / "pds3/PSP_001446_1790_BG12_0.IMG").read_bytes()
    n = _label_numbers(data)
    end = re.search(rb"\r?\nEND\r?\n", data)
    assert end is not None
    pointer = b"^IMAGE                         = 61903 <BYTES>"
    assert pointer in data[: end.end()]
    label = data[: end.end()].replace(pointer, b'^IMAGE = ("E.DAT", 3 <BYTES>)')
    (tmp_path / "e.lbl").write_bytes(label)
    (tmp_path / "E.DAT").write_bytes(b"\0\0" + data[n["start"] :])
    got = read_image(tmp_path / "e.lbl")
    assert np.array_equal(np.rint(got.pixels[..., 0] * 255).astype(np.uint8), _truth(data, n))


def _vicar(path: Path, org: str, core: np.ndarray, nbb: int) -> None:
    """A VICAR file of big-endian 16-bit samples ``core`` (bands, lines, samples) in ``org``, each record (N1
    samples: a band's line for BSQ and BIL, a pixel's bands for BIP) after ``nbb`` bytes of 0x7F prefix."""
    nb, nl, ns = core.shape
    if org == "BIP":
        recs, n = [core[:, y, x] for y in range(nl) for x in range(ns)], (nb, ns, nl)
    elif org == "BIL":
        recs, n = [core[b, y] for y in range(nl) for b in range(nb)], (ns, nb, nl)
    else:
        recs, n = [core[b, y] for b in range(nb) for y in range(nl)], (ns, nl, nb)
    recsize = nbb + n[0] * 2
    lblsize = recsize * (-(-400 // recsize))
    label = (
        f"LBLSIZE={lblsize}  FORMAT='HALF'  TYPE='IMAGE'  BUFSIZ=20480  DIM=3  EOL=0  RECSIZE={recsize}  ORG='{org}'  "
        f"NL={nl}  NS={ns}  NB={nb}  N1={n[0]}  N2={n[1]}  N3={n[2]}  N4=0  NBB={nbb}  NLB=0  HOST='SUN-SOLR'  "
        "INTFMT='HIGH'  REALFMT='IEEE'  "
    )
    body = b"".join(b"\x7f" * nbb + r.astype(">i2").tobytes() for r in recs)
    path.write_bytes(label.encode().ljust(lblsize, b"\0") + body)


def test_vicar_binary_prefixes_read_right_or_refused(tmp_path: Path) -> None:
    """GDAL skips NBB once a line: right for band-sequential records (the Cassini samples), wrong for a
    line-interleaved image of several bands or a pixel-interleaved one (a prefix per band's line, per pixel), which
    are refused; a pixel-interleaved image with more bands than samples and no prefix is not taken for truncated
    (its records are N2 × N3 = lines × samples, not lines × bands)."""
    core = (np.arange(2 * 4 * 5, dtype=np.int16) + 1).reshape(2, 4, 5)
    _vicar(tmp_path / "bsq.vic", "BSQ", core, nbb=3)
    with ProductReader(tmp_path / "bsq.vic", bands=[2]) as r:
        assert np.array_equal(r.read_raw(0, 4)[..., 0], core[1])
    for org in ("BIL", "BIP"):
        _vicar(tmp_path / f"{org}.vic", org, core, nbb=3)
        with pytest.raises(ImageReadError, match=rf"ORG='{org}', NB=2, with NBB=3 bytes of binary prefix"):
            read_image(tmp_path / f"{org}.vic")
    deep = (np.arange(6 * 3 * 2, dtype=np.int16) - 9).reshape(6, 3, 2)  # 6 bands, 3 lines, 2 samples
    _vicar(tmp_path / "deep.vic", "BIP", deep, nbb=0)
    with ProductReader(tmp_path / "deep.vic", bands=[5]) as r:
        assert np.array_equal(r.read_raw(0, 3)[..., 0], deep[4])


def test_a_spectral_qube_with_sideplanes_is_refused(tmp_path: Path) -> None:
    """A SPECTRAL_QUBE whose lines end in suffix items (SUFFIX_ITEMS = (1,0,0)): GDAL's PDS driver read them as
    samples (row 1 began with two suffix values); refused in one line naming the keyword."""
    core = np.arange(2 * 4 * 5, dtype=">i2").reshape(2, 4, 5)
    label = (
        "PDS_VERSION_ID = PDS3\nRECORD_TYPE = FIXED_LENGTH\nRECORD_BYTES = 512\n^SPECTRAL_QUBE = 2\n"
        "OBJECT = SPECTRAL_QUBE\n  AXES = 3\n  AXIS_NAME = (SAMPLE,LINE,BAND)\n  CORE_ITEMS = (5,4,2)\n"
        "  CORE_ITEM_BYTES = 2\n  CORE_ITEM_TYPE = SUN_INTEGER\n  SUFFIX_BYTES = 4\n  SUFFIX_ITEMS = (1,0,0)\n"
        "END_OBJECT = SPECTRAL_QUBE\nEND\n"
    )
    body = b"".join(core[b, y].tobytes() + b"\x7f" * 4 for b in range(2) for y in range(4))
    (tmp_path / "q.img").write_bytes(label.encode().ljust(512, b" ") + body)
    with pytest.raises(ImageReadError, match=r"SPECTRAL_QUBE has SUFFIX_ITEMS = \(1,0,0\).*not read"):
        read_image(tmp_path / "q.img")


# -- finding 5: a detached label whose pointer lands in another file's own label --------------------------------------


def _detached(folder: Path, pointer: str, data: bytes, name: str = "o.img") -> Path:
    """x.lbl: a detached PDS3 label of 4 × 8 uint8 samples whose ^IMAGE is ``pointer``, beside ``name`` = ``data``."""
    (folder / "x.lbl").write_text(
        f"PDS_VERSION_ID = PDS3\nRECORD_TYPE = UNDEFINED\n^IMAGE = {pointer}\nOBJECT = IMAGE\n  LINES = 4\n"
        "  LINE_SAMPLES = 8\n  SAMPLE_BITS = 8\n  SAMPLE_TYPE = MSB_UNSIGNED_INTEGER\nEND_OBJECT = IMAGE\nEND\n"
    )
    (folder / name).write_bytes(data)
    return folder / "x.lbl"


OTHER_PDS3 = b"PDS_VERSION_ID = PDS3\r\nRECORD_TYPE = UNDEFINED\r\n^IMAGE = 101 <BYTES>\r\nEND\r\n".ljust(100, b" ")
OTHER_VICAR = b"LBLSIZE=100             FORMAT='BYTE'  TYPE='IMAGE'  NL=4  NS=8  NB=1  RECSIZE=8".ljust(100, b"\0")


@pytest.mark.parametrize(("head", "kind"), [(OTHER_PDS3, "PDS3"), (OTHER_VICAR, "VICAR")])
def test_a_pointer_into_another_files_own_label_is_refused(tmp_path: Path, head: bytes, kind: str) -> None:
    """^IMAGE = ("o.img", 1 <BYTES>) where o.img starts with a label of its own: its text was read as rows 0..n
    (rc 0, raw_lo 2592 on the audit's LROC copy); refused naming both files and where the other label ends."""
    pixels = np.arange(32, dtype=np.uint8).reshape(4, 8)
    lbl = _detached(tmp_path, '("o.img", 1 <BYTES>)', head + pixels.tobytes())
    end = 100 if kind == "VICAR" else len(head.rstrip(b" "))  # LBLSIZE; the END line's end
    want = rf"x\.lbl: its \^IMAGE pointer names o\.img at byte 1, inside o\.img's own {kind} label \(which ends at "
    want += rf"byte {end}\)"
    with pytest.raises(ImageReadError, match=want):
        read_image(lbl)
    lbl = _detached(tmp_path, '("o.img", 101 <BYTES>)', head + pixels.tobytes())  # after that label: read
    with ProductReader(lbl) as r:
        assert np.array_equal(r.read_raw(0, 4)[..., 0], pixels)


def test_the_audit_case_a_kaguya_label_pointing_at_an_lroc_edr(formats: Path, tmp_path: Path) -> None:
    """The audit's hostile/p3_other_file: the Kaguya TC label with ^IMAGE = (OTHER.img, 1 <BYTES>), OTHER.img a copy of
    nacl.img (LROC NAC EDR, attached label)."""
    src = formats / "pds3/TC1S2B0_01_05186N225E0040_mini"
    text, pointer = src.with_suffix(".lbl").read_bytes(), b"(TC1S2B0_01_05186N225E0040_mini.img, 1 <BYTES>)"
    assert pointer in text
    (tmp_path / "TC.lbl").write_bytes(text.replace(pointer, b"(OTHER.img, 1 <BYTES>)"))
    shutil.copyfile(formats / "pds3/nacl.img", tmp_path / "OTHER.img")
    with pytest.raises(ImageReadError, match=r"inside OTHER\.img's own PDS3 label"):
        read_image(tmp_path / "TC.lbl")


# -- finding 8: a ^IMAGE file name that is not UTF-8 -----------------------------------------------------------------


@pytest.mark.parametrize("label_name", [b"t\xe9.lbl", b"u.lbl"])
def test_a_pointer_names_a_file_by_the_labels_own_bytes(tmp_path: Path, label_name: bytes) -> None:
    """^IMAGE = ("t\\xe9.img", 1 <BYTES>) (Latin-1 é) names the file whose name is those bytes: it was looked up as
    the UTF-8 "té.img" and said not to exist. Read through its label (of a name that is UTF-8 or not), the bytes of
    the file are the pixels."""
    pixels = (np.arange(32, dtype=np.uint8) * 7).reshape(4, 8)
    folder = os.fsencode(tmp_path)
    label = (
        b'PDS_VERSION_ID = PDS3\nRECORD_TYPE = UNDEFINED\n^IMAGE = ("t\xe9.img", 1 <BYTES>)\nOBJECT = IMAGE\n'
        b"  LINES = 4\n  LINE_SAMPLES = 8\n  SAMPLE_BITS = 8\n  SAMPLE_TYPE = MSB_UNSIGNED_INTEGER\n"
        b"END_OBJECT = IMAGE\nEND\n"
    )
    with open(os.path.join(folder, label_name), "wb") as fh:
        fh.write(label)
    with open(os.path.join(folder, b"t\xe9.img"), "wb") as fh:
        fh.write(pixels.tobytes())
    lbl = Path(os.fsdecode(os.path.join(folder, label_name)))
    im = read_image(lbl)
    assert np.array_equal(np.rint(im.pixels[..., 0] * 255).astype(np.uint8), pixels)
    if label_name == b"t\xe9.lbl":  # the data file, opened through the label of its stem
        with ProductReader(Path(os.fsdecode(os.path.join(folder, b"t\xe9.img")))) as r:
            assert np.array_equal(r.read_raw(0, 4)[..., 0], pixels)
    os.remove(os.path.join(folder, b"t\xe9.img"))
    with pytest.raises(ImageReadError, match=r"the data file t\\xe9\.img named by its \^IMAGE pointer does not exist"):
        read_image(lbl)


# -- finding 6: a truncated GeoTIFF ----------------------------------------------------------------------------------


def _geotiff(path: Path, tiled: bool, count: int = 1) -> bytes:
    """A 300 × 200 uint8 GeoTIFF (EPSG:4326; striped or 64-px tiles), returned as its bytes."""
    data = (np.arange(count * 300 * 200) % 251).astype(np.uint8).reshape(count, 300, 200)
    extra = {"tiled": True, "blockxsize": 64, "blockysize": 64} if tiled else {}
    with rasterio.open(path, "w", driver="GTiff", width=200, height=300, count=count, dtype="uint8",
                       crs="EPSG:4326", transform=rasterio.Affine(0.01, 0, 0, 0, -0.01, 0), **extra) as ds:  # fmt: skip
        ds.write(data)
    return path.read_bytes()


@pytest.mark.parametrize("tiled", [False, True])
def test_a_truncated_geotiff_is_refused_at_open(tmp_path: Path, tiled: bool) -> None:
    """A GeoTIFF cut in half opened, was listed as read by ``python -m edgeae.archive`` (rc 0), and failed only at
    the first read of a missing strip (``TIFFReadEncodedStrip() failed``). Its strips or tiles must end inside the
    file: refused at open with the byte counts; the whole file still reads."""
    whole = _geotiff(tmp_path / "w.tif", tiled)
    with ProductReader(tmp_path / "w.tif") as r:
        assert r.read_raw(0, 300).shape == (300, 200, 1)
    (tmp_path / "cut.tif").write_bytes(whole[: len(whole) // 2])
    unit = "tile" if tiled else "strip"
    with pytest.raises(ImageReadError, match=rf"cut\.tif: truncated: its TIFF {unit} \d+ of \d+ ends at byte \d+, the "
                       rf"file holds {len(whole) // 2} bytes"):  # fmt: skip
        ProductReader(tmp_path / "cut.tif")


def test_python_m_edgeae_archive_exits_1_on_a_truncated_geotiff(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgeae.archive.__main__ import main

    whole = _geotiff(tmp_path / "w.tif", tiled=False, count=3)
    (tmp_path / "w.tif").write_bytes(whole[: len(whole) - 1000])
    assert main([str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert "truncated: its TIFF strip" in out and "1 of 1 products could not be read" in err

"""Hostile planetary archives, audit a6 (session 33): links out of the label's folder, FIFOs and devices, labels
naming themselves, negative PDS3 pointers, a VICAR LBLSIZE smaller than its label, and oversized labels.

Every synthetic product is built in tmp_path. A FIFO test that regressed would block in ``open()`` forever, so
those run under :func:`_fifo_watchdog`, which unblocks a stuck reader (by opening the FIFO for writing) and
makes the test fail instead of hang.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio", reason="the archive extra is not installed: pip install 'edgeae[archive]'")

from edgeae.archive import formats  # noqa: E402
from edgeae.archive.__main__ import main as archive_main  # noqa: E402
from edgeae.imageio import ImageReadError, read_image  # noqa: E402
from edgeae.scan.archive import walk_archive  # noqa: E402

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
needs_links = pytest.mark.skipif(os.name == "nt", reason="symlinks need privileges on Windows")

PIXELS = np.arange(64, dtype=np.uint8).reshape(8, 8)


def _pds3(folder: Path, pointer: str = '("x.img", 1 <BYTES>)', name: str = "x.lbl", data: bytes | None = None) -> Path:
    """A detached PDS3 label (8 × 8 bytes) and, when ``data`` is given, its data file x.img."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(
        f"PDS_VERSION_ID = PDS3\nRECORD_TYPE = UNDEFINED\n^IMAGE = {pointer}\nOBJECT = IMAGE\n  LINES = 8\n"
        "  LINE_SAMPLES = 8\n  SAMPLE_TYPE = UNSIGNED_INTEGER\n  SAMPLE_BITS = 8\nEND_OBJECT = IMAGE\nEND\n"
    )
    if data is not None:
        (folder / "x.img").write_bytes(data)
    return folder / name


def _pds4(folder: Path, file_name: str = "x.dat", pad: int = 0) -> Path:
    """A PDS4 label of an 8 × 8 byte image in ``file_name`` (``pad`` bytes of comment make it larger)."""
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / "x.xml"
    p.write_text(
        '<?xml version="1.0"?>\n<Product_Observational xmlns="http://pds.nasa.gov/pds4/pds/v1">\n'
        + (f"<!-- {'x' * pad} -->\n" if pad else "")
        + f"<File_Area_Observational><File><file_name>{file_name}</file_name></File>\n"
        '<Array_2D_Image><offset unit="byte">0</offset><axes>2</axes><axis_index_order>Last Index Fastest'
        "</axis_index_order><Element_Array><data_type>UnsignedByte</data_type></Element_Array>"
        "<Axis_Array><axis_name>Line</axis_name><elements>8</elements><sequence_number>1</sequence_number></Axis_Array>"
        "<Axis_Array><axis_name>Sample</axis_name><elements>8</elements><sequence_number>2</sequence_number>"
        "</Axis_Array></Array_2D_Image></File_Area_Observational>\n</Product_Observational>\n"
    )
    return p


def _isis(folder: Path, core: str = "x.core") -> Path:
    """A detached ISIS3 label x.lbl of an 8 × 8 byte cube in ``core``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "x.lbl").write_text(
        f"Object = IsisCube\n  Object = Core\n    ^Core = {core}\n    Format = BandSequential\n"
        "    Group = Dimensions\n      Samples = 8\n      Lines = 8\n      Bands = 1\n    End_Group\n"
        "    Group = Pixels\n      Type = UnsignedByte\n      ByteOrder = Lsb\n      Base = 0.0\n"
        "      Multiplier = 1.0\n"
        "    End_Group\n  End_Object\nEnd_Object\nEnd\n"
    )
    return folder / "x.lbl"


def _product(kind: str, folder: Path) -> tuple[Path, str, str]:
    """(label, name of its data file, how a refusal names the pointer) of a detached PDS3, PDS4 or ISIS3 label."""
    if kind == "pds3":
        return _pds3(folder), "x.img", r"\^IMAGE pointer"
    if kind == "pds4":
        return _pds4(folder), "x.dat", "<file_name>"
    return _isis(folder), "x.core", r"\^CORE pointer \(in CORE\)"


def _read8(p: Path) -> np.ndarray:
    return np.rint(read_image(p).pixels[..., 0] * 255).astype(np.uint8)


@contextmanager
def _fifo_watchdog(*fifos: Path, seconds: float = 4.0) -> Iterator[list[bool]]:
    """Fail instead of hang: after ``seconds``, open each FIFO for writing (freeing a reader blocked on it)."""
    fired = [False]
    done = threading.Event()

    def unblock() -> None:
        if done.wait(seconds):
            return
        fired[0] = True
        while not done.is_set():
            for f in fifos:
                with contextlib.suppress(OSError):  # ENXIO while nobody reads it
                    os.close(os.open(f, os.O_WRONLY | os.O_NONBLOCK))
            time.sleep(0.05)

    t = threading.Thread(target=unblock, daemon=True)
    t.start()
    try:
        yield fired
    finally:
        done.set()
        t.join()
    assert not fired[0], f"something opened {', '.join(map(str, fifos))} and blocked on it"


# -- item 1: links out of the label's folder ----------------------------------------------------------------------


@needs_links
@pytest.mark.parametrize("kind", ["pds3", "pds4", "isis3"])
def test_a_link_beside_the_label_leaving_its_folder_is_refused(tmp_path: Path, kind: str) -> None:
    """``x.img -> /etc/ssl/certs/ca-certificates.crt`` beside a label: the certificate text was scored into topk/."""
    secret = tmp_path / "secret.bin"
    secret.write_bytes(bytes(range(64)))
    d = tmp_path / "p"
    label, data, what = _product(kind, d)
    (d / data).symlink_to(secret)
    with pytest.raises(ImageReadError, match=rf"x\.(lbl|xml): its {what} names '{data}', a link to .*secret\.bin, "
                       "outside the label's folder"):  # fmt: skip
        read_image(label)
    (d / data).unlink()
    (d / "real.bin").write_bytes(PIXELS.tobytes())
    (d / data).symlink_to("real.bin")  # a link that stays in the folder is read
    np.testing.assert_array_equal(_read8(label), PIXELS)


@needs_links
@pytest.mark.skipif(not Path("/dev/urandom").exists(), reason="no /dev/urandom")
def test_a_link_to_a_device_is_not_read(tmp_path: Path) -> None:
    """A PDS4 data file linked to /dev/urandom was read as an image (a new one each time)."""
    lbl = _pds4(tmp_path / "p")
    (tmp_path / "p" / "x.dat").symlink_to("/dev/urandom")
    with pytest.raises(ImageReadError, match=r"x\.xml: its <file_name> names 'x\.dat', a link to /dev/urandom"):
        read_image(lbl)


# -- items 2 and 11: FIFOs are never opened ------------------------------------------------------------------------


@needs_fifo
def test_a_fifo_in_a_folder_is_left_out_of_the_walk_and_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """``mkfifo m/trap.xml`` beside a good product hung edgeae scan and python -m edgeae.archive forever."""
    _pds3(tmp_path / "m", data=PIXELS.tobytes())
    trap = tmp_path / "m" / "trap.xml"
    os.mkfifo(trap)
    with _fifo_watchdog(trap), caplog.at_level(logging.WARNING, logger="edgeae.scan.archive"):
        entries = walk_archive(tmp_path / "m")
    assert [e.name for e in entries] == ["x.lbl"]
    assert "1 archive file(s) are not regular files and were not scanned (never opened): trap.xml (a FIFO)" in (
        caplog.text
    )


@needs_fifo
def test_a_fifo_listed_in_a_manifest_or_named_is_not_opened(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    lbl = _pds3(tmp_path, data=PIXELS.tobytes())
    trap = tmp_path / "trap.img"
    os.mkfifo(trap)
    (tmp_path / "list.txt").write_text(f"{lbl.name}\ntrap.img\n")
    with _fifo_watchdog(trap):
        with caplog.at_level(logging.WARNING, logger="edgeae.scan.archive"):
            assert [e.name for e in walk_archive(tmp_path / "list.txt")] == ["x.lbl"]
        assert "trap.img (a FIFO)" in caplog.text
        with pytest.raises(FileNotFoundError, match=r"archive '.*trap\.img' is a FIFO, not a regular file"):
            walk_archive(trap)
        # read directly, it says what it is (it said "file is empty (0 bytes)")
        with pytest.raises(ImageReadError, match=r"trap\.img: a FIFO, not a regular file: not read"):
            read_image(trap)


@needs_fifo
@pytest.mark.parametrize("kind", ["pds3", "pds4", "isis3"])
def test_a_data_file_that_is_a_fifo_is_refused_before_gdal_opens_it(tmp_path: Path, kind: str) -> None:
    """A PDS4 data file or an ISIS3 ^Core that is a FIFO hung inside GDAL's open."""
    label, data, what = _product(kind, tmp_path)
    os.mkfifo(tmp_path / data)
    with _fifo_watchdog(tmp_path / data):
        with pytest.raises(ImageReadError, match=rf"x\.(lbl|xml): its {what} names '{data}', which is a FIFO, not a"):
            read_image(label)
        assert formats.product_files(label) == []  # the scan's resume stamps do not open it either


@needs_fifo
def test_python_m_edgeae_archive_skips_a_fifo(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _pds3(tmp_path / "m", data=PIXELS.tobytes())
    trap = tmp_path / "m" / "trap.xml"
    os.mkfifo(trap)
    with _fifo_watchdog(trap):
        assert archive_main([str(tmp_path / "m")]) == 0
        out = capsys.readouterr().out
        assert '"file": "x.lbl"' in out and "trap" not in out
        assert archive_main([str(trap)]) == 2
        assert "is a FIFO, not a regular file" in capsys.readouterr().err


# -- item 4: a label naming itself ---------------------------------------------------------------------------------


def test_a_label_naming_itself_as_its_data_is_refused(tmp_path: Path) -> None:
    """A PDS4 <file_name> naming the label itself read its XML text as an 8 × 64 image."""
    with pytest.raises(ImageReadError, match=r"x\.xml: its <file_name> names the label itself \(x\.xml\)"):
        read_image(_pds4(tmp_path / "a", "x.xml"))
    # the PDS3 one was refused as a "stale pointer"; now it says what it is
    with pytest.raises(ImageReadError, match=r"x\.lbl: its \^IMAGE pointer names the label itself \(x\.lbl, byte 1,"):
        read_image(_pds3(tmp_path / "b", '("x.lbl", 1 <BYTES>)'))


# -- item 5: negative PDS3 pointers --------------------------------------------------------------------------------


def _attached(path: Path, pointer: str, record_bytes: int = 64) -> Path:
    label = (
        f"PDS_VERSION_ID = PDS3\nRECORD_TYPE = FIXED_LENGTH\nRECORD_BYTES = {record_bytes}\n^IMAGE = {pointer}\n"
        "OBJECT = IMAGE\n  LINES = 8\n  LINE_SAMPLES = 8\n  SAMPLE_TYPE = UNSIGNED_INTEGER\n  SAMPLE_BITS = 8\n"
        "END_OBJECT = IMAGE\nEND\n"
    )
    path.write_bytes(label.encode().ljust(512, b" ") + PIXELS.tobytes())
    return path


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda d: _attached(d / "a.img", "-100"), r"a\.img: its \^IMAGE pointer = '-100' is a negative position"),
        (lambda d: _pds3(d, '("x.img", -4096 <BYTES>)', data=PIXELS.tobytes()),
         r"x\.lbl: its \^IMAGE pointer = '\(\"x\.img\", -4096 <BYTES>\)' is a negative position"),
        (lambda d: _attached(d / "a.img", "9", record_bytes=-64),
         r"a\.img: its \^IMAGE pointer = '9' with RECORD_BYTES = -64 is a negative position"),
        (lambda d: _pds3(d, '("x.img" 5)', data=PIXELS.tobytes()),
         r"x\.lbl: its \^IMAGE pointer = '\(\"x\.img\" 5\)' is not a pointer PDS3 defines"),
    ],
)  # fmt: skip
def test_a_negative_or_malformed_pointer_is_refused(tmp_path: Path, make: Callable[[Path], Path], match: str) -> None:
    """``^IMAGE = -100`` slipped past every pointer check and GDAL read the label text as row 0."""
    with pytest.raises(ImageReadError, match=match):
        read_image(make(tmp_path))


def test_a_well_formed_attached_pointer_still_reads(tmp_path: Path) -> None:
    np.testing.assert_array_equal(_read8(_attached(tmp_path / "a.img", "9")), PIXELS)  # record 9 of 64 bytes: 513


# -- items 6 and 11: VICAR labels ----------------------------------------------------------------------------------


def _vicar(path: Path, lblsize: int, real_size: int = 400, nb: int = 1) -> Path:
    """A VICAR byte image of 10 × 100 whose label text fills ``real_size`` bytes but says LBLSIZE=``lblsize``."""
    text = (
        f"LBLSIZE={lblsize:<6d}  FORMAT='BYTE'  TYPE='IMAGE'  BUFSIZ=20480  DIM=3  EOL=0  RECSIZE=100  ORG='BSQ'  "
        f"NL=10  NS=100  NB={nb}  N1=100  N2=10  N3={nb}  N4=0  NBB=0  NLB=0  HOST='X86-LINUX'  INTFMT='LOW'  "
        "REALFMT='RIEEE'  BHOST='X86-LINUX'  BINTFMT='LOW'  BREALFMT='RIEEE'  BLTYPE=''  COMPRESS='NONE'  "
        "EOCI1=0  EOCI2=0  TASK='TEST'  USER='EDGEAE'  DAT_TIM='TUE JAN  1 00:00:00 2030'  "
    ).encode()
    assert len(text) <= real_size
    pixels = (np.arange(1000) % 251).astype(np.uint8).tobytes()
    path.write_bytes(text.ljust(real_size, b"\0") + pixels)
    return path


def test_a_vicar_lblsize_smaller_than_its_label_is_refused(tmp_path: Path) -> None:
    """LBLSIZE=400 over a 2,400-byte label had rows 0-4 read as label text and every real row shifted down."""
    good = _vicar(tmp_path / "good.vic", 400)
    want = (np.arange(1000) % 251).astype(np.uint8).reshape(10, 100)
    np.testing.assert_array_equal(_read8(good), want)  # a whole label, NUL-padded: read as before
    with pytest.raises(ImageReadError, match=r"small\.vic: its VICAR label says LBLSIZE=200, but the label's text goes "
                       r"on after byte 200 \(.*BHOST=.*…\): the label is larger than it says"):  # fmt: skip
        read_image(_vicar(tmp_path / "small.vic", 200))


def test_real_vicar_lblsize_too_small_is_refused(formats: Path, tmp_path: Path) -> None:
    src = (formats / "vicar/4600.byt.vic").read_bytes()
    assert src.startswith(b"LBLSIZE=2400")
    (tmp_path / "small.vic").write_bytes(src.replace(b"LBLSIZE=2400", b"LBLSIZE=400 ", 1))
    with pytest.raises(ImageReadError, match=r"LBLSIZE=400, but the label's text goes on after byte 400"):
        read_image(tmp_path / "small.vic")


def test_vicar_truncation_names_the_bands(tmp_path: Path) -> None:
    """NB=99999 was reported as "promises 10 lines of 100-byte records (99999000... bytes)", bands left out."""
    with pytest.raises(ImageReadError, match=r"promises 10 lines × 99999 bands of 100-byte records \(99999400 bytes\)"):
        read_image(_vicar(tmp_path / "bands.vic", 400, nb=99999))


# -- item 9: a label too large to parse ----------------------------------------------------------------------------


def test_a_label_over_the_cap_is_refused_before_it_is_parsed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 40 MB PDS4 XML took 21 s and 2.47 GB; a 50 MB PDS3 label 450 MB in GDAL. Refused from its size alone."""
    import xml.etree.ElementTree as ET

    def no_parse(*a: object, **k: object) -> None:
        raise AssertionError("the label was parsed")

    lbl = _pds4(tmp_path / "x", pad=formats.MAX_LABEL_BYTES)
    (tmp_path / "x" / "x.dat").write_bytes(PIXELS.tobytes())
    big = _pds3(tmp_path / "p", data=PIXELS.tobytes())
    with big.open("a") as fh:
        fh.write(f"/* {'x' * formats.MAX_LABEL_BYTES} */\n")
    monkeypatch.setattr(ET, "parse", no_parse)
    for p in (lbl, big):
        with pytest.raises(ImageReadError, match=rf"x\.(xml|lbl): the label is {p.stat().st_size} bytes \(4\.0 MiB\), "
                           r"over the 4 MiB a label may have"):  # fmt: skip
            read_image(p)
    assert formats.product_files(lbl) == []  # the walk's look at the label does not parse it either
    monkeypatch.undo()
    ok = _pds4(tmp_path / "ok", pad=100_000)  # a label of 100 KB (real ones are tens of KB) is read
    (tmp_path / "ok" / "x.dat").write_bytes(PIXELS.tobytes())
    np.testing.assert_array_equal(_read8(ok), PIXELS)


@needs_fifo
def test_an_isis3_core_path_to_a_fifo_is_refused(tmp_path: Path) -> None:
    """A ^Core with a path is left to the reader's check of GDAL's files, but a FIFO there would block GDAL first."""
    (tmp_path / "in").mkdir()
    os.mkfifo(tmp_path / "core.fifo")
    label = _isis(tmp_path / "in", "../core.fifo")
    with (
        _fifo_watchdog(tmp_path / "core.fifo"),
        pytest.raises(
            ImageReadError, match=r"x\.lbl: its \^CORE pointer \(in CORE\) names '\.\./core\.fifo', which is a FIFO"
        ),
    ):
        read_image(label)


@needs_links
def test_a_folder_of_links_to_products_reads(tmp_path: Path) -> None:
    """Label and data both linked from another folder: the data is beside the label's target, so it is read."""
    real = tmp_path / "real"
    _pds3(real, data=PIXELS.tobytes())
    (tmp_path / "links").mkdir()
    for name in ("x.lbl", "x.img"):
        (tmp_path / "links" / name).symlink_to(real / name)
    np.testing.assert_array_equal(_read8(tmp_path / "links" / "x.lbl"), PIXELS)


# -- review r4: links to regular files elsewhere by opt-in, full VICAR labels, ("DATA.IMG") pointers ---------------

FOLLOW = "EDGEAE_ARCHIVE_FOLLOW_LINKS"


@needs_links
def test_a_link_to_a_regular_file_elsewhere_reads_only_by_opt_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A local copy of the label beside ``x.img -> /bigdisk/x.img`` read before the a6 fix and was then refused
    with no way out; it stays refused by default (the hostile case), naming the opt-in, and reads with it."""
    monkeypatch.delenv(FOLLOW, raising=False)
    (tmp_path / "bigdisk").mkdir()
    (tmp_path / "bigdisk" / "x.img").write_bytes(PIXELS.tobytes())
    label = _pds3(tmp_path / "copy")
    (tmp_path / "copy" / "x.img").symlink_to(tmp_path / "bigdisk" / "x.img")
    want = r"x\.lbl: its \^IMAGE pointer names 'x\.img', a link to .*bigdisk/x\.img, outside the label's folder: "
    with pytest.raises(ImageReadError, match=want + rf".*\(set {FOLLOW}=1 to read links to regular files"):
        read_image(label)
    assert formats.product_files(label) == []  # the scan's resume stamps refuse it the same way
    monkeypatch.setenv(FOLLOW, "1")  # read at call time
    np.testing.assert_array_equal(_read8(label), PIXELS)
    assert [f.name for f in formats.product_files(label)] == ["x.img"]
    monkeypatch.setenv(FOLLOW, "0")
    with pytest.raises(ImageReadError, match="outside the label's folder"):
        read_image(label)


@needs_links
def test_label_and_data_linked_into_different_store_folders_read_by_opt_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """git-annex / DVC: ``x.lbl -> store/k1/x.lbl`` and ``x.img -> store/k2/x.img`` side by side."""
    monkeypatch.delenv(FOLLOW, raising=False)
    _pds3(tmp_path / "store" / "k1")
    (tmp_path / "store" / "k2").mkdir()
    (tmp_path / "store" / "k2" / "x.img").write_bytes(PIXELS.tobytes())
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "x.lbl").symlink_to(tmp_path / "store" / "k1" / "x.lbl")
    (tmp_path / "repo" / "x.img").symlink_to(tmp_path / "store" / "k2" / "x.img")
    with pytest.raises(ImageReadError, match=rf"a link to .*k2/x\.img, outside the label's folder.*{FOLLOW}=1"):
        read_image(tmp_path / "repo" / "x.lbl")
    monkeypatch.setenv(FOLLOW, "1")
    np.testing.assert_array_equal(_read8(tmp_path / "repo" / "x.lbl"), PIXELS)


@needs_links
@needs_fifo
@pytest.mark.parametrize("kind", ["pds3", "pds4", "isis3"])
def test_the_opt_in_never_lets_a_device_fifo_or_path_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    monkeypatch.setenv(FOLLOW, "1")
    label, data, what = _product(kind, tmp_path / "p")
    os.mkfifo(tmp_path / "trap")
    (tmp_path / "p" / data).symlink_to(tmp_path / "trap")
    want = rf"its {what} names '{data}', a link to .*trap, outside the label's folder: .*\(it is a FIFO, not a regular"
    with _fifo_watchdog(tmp_path / "trap"), pytest.raises(ImageReadError, match=want):
        read_image(label)
    if Path("/dev/urandom").exists():
        (tmp_path / "p" / data).unlink()
        (tmp_path / "p" / data).symlink_to("/dev/urandom")
        with pytest.raises(ImageReadError, match=r"a link to /dev/urandom, .*it is a character device"):
            read_image(label)


def test_an_isis3_core_path_out_of_the_folder_stays_refused_with_the_opt_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The opt-in is for links beside the label, not for a ``^Core = ../x.core`` path out of its folder."""
    monkeypatch.setenv(FOLLOW, "1")
    (tmp_path / "x.core").write_bytes(PIXELS.tobytes())
    label = _isis(tmp_path / "in", "../x.core")
    with pytest.raises(ImageReadError, match=r"x\.lbl: its label points to .*x\.core, outside the label's folder: a "
                       r"pointer must stay in the label's folder$"):  # fmt: skip
        read_image(label)


def _vicar_full(path: Path, first: list[int]) -> Path:
    """A VICAR byte image of 10 × 100 whose label text fills LBLSIZE=400 exactly (no NUL padding; it ends with the
    usual two-space separator), its first pixels ``first``."""
    body = (
        "FORMAT='BYTE'  TYPE='IMAGE'  BUFSIZ=20480  DIM=3  EOL=0  RECSIZE=100  ORG='BSQ'  NL=10  NS=100  NB=1  "
        "N1=100  N2=10  N3=1  N4=0  NBB=0  NLB=0  HOST='X86-LINUX'  INTFMT='LOW'  REALFMT='RIEEE'  BHOST='X86-LINUX'  "
        "BINTFMT='LOW'  BREALFMT='RIEEE'  BLTYPE=''  COMPRESS='NONE'  "
    )
    text = "LBLSIZE=400     " + body
    text += "TASK='" + "X" * (400 - len(text) - 9) + "'  "
    assert len(text) == 400
    img = np.full((10, 100), 128, np.uint8)
    img[0, : len(first)] = first
    path.write_bytes(text.encode() + img.tobytes())
    return path


@pytest.mark.parametrize(
    "first",
    [
        [70, 66, 61, 56, 52, 48, 45, 43, 42, 42, 42, 42],  # "FB=840-+****": a dark gradient
        [*b"AB=5  CD"],  # one complete item, not a keyword VICAR defines, then no second item
        [*b"NLX=12"],  # not a known keyword, alone
    ],
)
def test_a_vicar_label_filling_lblsize_exactly_reads(tmp_path: Path, first: list[int]) -> None:
    """Pixel bytes reading KEY=digit right after a label that fills LBLSIZE were taken for more label text."""
    p = _vicar_full(tmp_path / "full.vic", first)
    got = _read8(p)
    assert got.shape == (10, 100) and got[0, : len(first)].tolist() == first and (got[1:] == 128).all()


@pytest.mark.parametrize(
    "anchor, skip, shown",
    [
        ("  BHOST=", 2, "BHOST='X86-LINUX'  BINTFMT="),  # cut between two items: two complete items follow
        ("BHOST='X86", 8, "86-LINUX'  BINTFMT="),  # cut inside a value: the next items follow
        ("  DAT_TIM=", 2, "DAT_TIM='TUE JAN  1"),  # only one item, of a known keyword, after LBLSIZE
    ],
)
def test_a_vicar_label_going_on_past_lblsize_stays_refused(tmp_path: Path, anchor: str, skip: int, shown: str) -> None:
    text = _vicar(tmp_path / "probe.vic", 400).read_bytes()[:400].decode("latin-1")
    at = text.index(anchor) + skip
    with pytest.raises(ImageReadError, match=rf"LBLSIZE={at}, but the label's text goes on after byte {at} "
                       rf"\(\"{re.escape(shown)}"):  # fmt: skip
        read_image(_vicar(tmp_path / "cut.vic", at))


@pytest.mark.parametrize("pointer", ['("x.img")', '( "x.img" )', "(x.img)"])
def test_a_parenthesised_file_name_without_an_offset_reads_from_the_start(tmp_path: Path, pointer: str) -> None:
    """``^IMAGE = ("DATA.IMG")`` is read by GDAL (record 1) and was read before the a6 fix; it was refused as
    "not a pointer PDS3 defines"."""
    np.testing.assert_array_equal(_read8(_pds3(tmp_path, pointer, data=PIXELS.tobytes())), PIXELS)
    assert formats.parse_pointer(pointer, 512) == ("x.img", 0)


@pytest.mark.parametrize("pointer", ['("x.img" 5)', "(12)", "()", '(("x.img"))', '("x.img", -1)'])
def test_malformed_parenthesised_pointers_stay_refused(tmp_path: Path, pointer: str) -> None:
    with pytest.raises(ImageReadError, match=r"x\.lbl: its \^IMAGE pointer = .* is (not a pointer PDS3 defines|a neg)"):
        read_image(_pds3(tmp_path, pointer, data=PIXELS.tobytes()))

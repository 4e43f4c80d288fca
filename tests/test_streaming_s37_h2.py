"""Streamed reads that end (session 37, audit a2 finding 3): a small compressed GeoTIFF declaring 200,000 × 200,000
pixels was streamed by ``edgeae scan`` / ``edgeae score`` without bound, and Ctrl-C / SIGTERM did not stop it for
minutes (the tiling thread saw its stop flag only when it handed over an item, and an all-no-data product hands over
none). Now a band iteration checks its stop flag once per band, and a product declaring far more pixels than its file
can hold, or more than ``EDGEAE_MAX_STREAM_PIXELS``, is refused before any band is read."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from edgeae.firmware_sim.score import background

from edgeae import row_bands
from edgeae._headers import ImageReadError
from edgeae.archive import read_limits
from edgeae.row_bands import _iter_bands, _row_ranges
from edgeae.strips import iter_patch_blocks, iter_patches, iter_strips

BAND_S = 0.1  # seconds one band of the fake source takes to read
BANDS = 30  # the whole fake product: 3 s, so a stop that is not seen makes a test run 3 s over its bound


class SlowRows:
    """A row source like :class:`edgeae.row_bands.RowReader` whose every read takes :data:`BAND_S` and holds no
    data at all (alpha 0 everywhere: an all-no-data product, from which a scan hands over no patch)."""

    def __init__(self, path: Any = "slow.png", height: int = 256 * BANDS, width: int = 64) -> None:
        self.path = Path(os.fspath(path))
        self.height, self.width, self.channels, self.bit_depth = height, width, 1, 8
        self.reads: list[tuple[int, int, float]] = []

    def read_rows(self, y0: int, y1: int) -> tuple[np.ndarray, np.ndarray]:
        time.sleep(BAND_S)
        self.reads.append((y0, y1, time.perf_counter()))
        return np.zeros((y1 - y0, self.width, 1), np.uint8), np.zeros((y1 - y0, self.width), np.uint8)

    def close(self) -> None:
        pass

    def __enter__(self) -> SlowRows:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _ranges(r: SlowRows) -> list[tuple[int, int]]:
    return _row_ranges(r.height, 256, 256)


# --- (a) the stop flag is seen once per band -------------------------------------------------------------------------


def test_leaving_a_background_iteration_ends_its_band_reads_within_one_band() -> None:
    """The scan's and score's shape: the tiling generator reads band after band and hands over nothing (every patch
    below --min-valid); its consumer leaves (Ctrl-C, SIGTERM, an error). Before: it waited for the whole product."""
    r = SlowRows()

    def tiles() -> Iterator[int]:
        yield 0  # one item, so the consumer is past its start; then nothing, as from an all-no-data product
        for _ in _iter_bands(r, _ranges(r), None, True):
            pass
        yield 1

    it = background(tiles(), depth=2)
    assert next(it) == 0
    time.sleep(2.5 * BAND_S)  # a few bands in
    t = time.perf_counter()
    it.close()  # what a KeyboardInterrupt raised in the consumer does (its finally block)
    waited = time.perf_counter() - t
    assert waited < 3 * BAND_S, f"closing took {waited:.2f} s ({len(r.reads)} of {BANDS} bands read)"
    later = [y for y, _, at in r.reads if at > t]
    assert len(later) <= 1  # at most the band being read when the stop came
    assert len(r.reads) < BANDS


def test_an_explicit_stop_flag_ends_every_streaming_iterator_within_one_band(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeae.stopping import Stopped

    for name, run in (
        ("iter_strips", lambda stop: iter_strips("slow.png", 256, stop=stop)),
        ("iter_patches", lambda stop: iter_patches("slow.png", 64, stop=stop)),
        ("iter_patch_blocks", lambda stop: iter_patch_blocks("slow.png", 64, stop=stop)),
    ):
        r = SlowRows()
        monkeypatch.setattr(row_bands, "RowReader", lambda path, r=r: r)
        stop = threading.Event()
        threading.Timer(2.5 * BAND_S, stop.set).start()
        t = time.perf_counter()
        with pytest.raises(Stopped, match=r"slow\.png: stopped before rows"):
            for _ in run(stop):
                pass
        took = time.perf_counter() - t
        assert took < 5 * BAND_S, f"{name}: {took:.2f} s, {len(r.reads)} bands read"
        assert 1 <= len(r.reads) <= 4, name


def test_a_stop_flag_already_set_reads_no_band() -> None:
    from edgeae.stopping import Stopped

    r = SlowRows()
    stop = threading.Event()
    stop.set()
    with pytest.raises(Stopped):
        next(_iter_bands(r, _ranges(r), None, True, stop=stop))
    assert r.reads == []


class _Interrupt(Exception):
    """Stands for the KeyboardInterrupt that Ctrl-C (and SIGTERM, edgeae.cli) raises in the main thread."""


def _scan(path: Path) -> None:
    """``edgeae scan --workers 1``: the image tiled on a background thread while a ScoreEngine scores."""
    from edgeae.firmware_sim.score import ScoreEngine

    from edgeae.scan.pipeline import ScanConfig, scan_image
    from edgeae.scan.scoring import ModelSpec

    def make_runner() -> Any:
        def run(batch: np.ndarray) -> np.ndarray:
            raise AssertionError("no patch holds data: nothing is scored")

        return run

    cfg = ScanConfig(ModelSpec(str(path), "m", "0" * 64, "vae", 64, 1), stride=64, min_valid=0.9)
    with ScoreEngine(make_runner, workers=1) as engine:
        scan_image(path, path.name, engine, cfg)


def _score(path: Path) -> None:
    """``edgeae score``: bands tiled on a background thread, one block handed over per band."""
    from edgeae.anomaly.score import score_file

    class NeverCalled:
        channels = 1

        def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
            raise AssertionError("no patch holds data: nothing is scored")

    score_file(path, NeverCalled(), patch=64, stride=64, min_valid=1.0)  # type: ignore[arg-type]


@pytest.mark.parametrize("command", [_scan, _score], ids=["scan", "score"])
def test_a_signal_ends_a_scan_or_score_of_an_all_no_data_product_within_about_one_band(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: Any
) -> None:
    """The main thread waits for the tiling thread; the signal raises there, and the tiling thread must stop at its
    next band. The scan hands over no chunk from an all-no-data product: it read the whole product first (the audit's
    SIGTERM ignored for 8 minutes). The score case is a guard, not a reproduction: score hands over one block per band,
    so its tiling thread saw the stop at the next band before d02306a too (it passes on that code; review r3 #5)."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach the main thread only")
    from edgeae.imageio import write_image

    path = tmp_path / "slow.png"
    write_image(path, np.zeros((64, 64), np.uint8))  # the header the commands read; the rows come from SlowRows
    r = SlowRows(path)
    monkeypatch.setattr(row_bands, "RowReader", lambda p: r)

    def interrupt(signum: int, frame: Any) -> None:
        raise _Interrupt

    old = signal.signal(signal.SIGALRM, interrupt)
    t = time.perf_counter()
    try:
        signal.setitimer(signal.ITIMER_REAL, 2.5 * BAND_S)
        with pytest.raises(_Interrupt):
            command(path)
        took = time.perf_counter() - t
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert took < 2.5 * BAND_S + 3 * BAND_S + 0.3, f"{took:.2f} s, {len(r.reads)} of {BANDS} bands read"
    assert len(r.reads) < BANDS


# --- (b) the streaming cap -------------------------------------------------------------------------------------------


def test_the_stream_limit_grows_with_the_file_and_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGEAE_MAX_STREAM_PIXELS", raising=False)
    limit = read_limits.max_stream_pixels
    assert limit(0) == limit(1000) == 1 << 28  # a small file may always declare a NAC-size product
    assert limit(10 << 20) == 1024 * (10 << 20)  # 10 MiB: 10.7 G pixels (deflate packs at most ~1,032 bytes in one)
    assert limit(1 << 40) == 1 << 34  # whatever the file: 17.2 G pixels at most
    monkeypatch.setenv("EDGEAE_MAX_STREAM_PIXELS", "5e10")  # set: the one limit, whatever the file size
    assert limit(0) == limit(1 << 40) == 5 * 10**10
    monkeypatch.setenv("EDGEAE_MAX_STREAM_PIXELS", "lots")
    with pytest.raises(ValueError, match="EDGEAE_MAX_STREAM_PIXELS='lots' is not a size"):
        limit(0)


def _sparse_tiff(path: Path, side: int, *, geo: bool) -> Path:
    """A deflate-tiled uint8 TIFF of ``side`` × ``side`` pixels with one tile written: the rest are sparse (no
    bytes), the shape of the audit's bomb; ``geo``: georeferenced (read through GDAL), else a plain TIFF (tifffile)."""
    rasterio = pytest.importorskip("rasterio")
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    geo_kw: dict[str, Any] = {"crs": "EPSG:4326", "transform": from_origin(0, 0, 1e-3, 1e-3)} if geo else {}
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rasterio's NotGeoreferencedWarning for the plain one
        with rasterio.open(path, "w", driver="GTiff", width=side, height=side, count=1, dtype="uint8", tiled=True,
                           compress="deflate", sparse_ok=True, **geo_kw) as ds:  # fmt: skip
            ds.write(np.full((1, 256, 256), 7, np.uint8), window=Window(0, 0, 256, 256))
    return path


@pytest.mark.parametrize("geo", [True, False], ids=["geotiff-gdal", "plain-tiff-tifffile"])
def test_a_sparse_bomb_is_refused_before_any_band_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, geo: bool
) -> None:
    monkeypatch.delenv("EDGEAE_MAX_STREAM_PIXELS", raising=False)
    path = _sparse_tiff(tmp_path / "bomb.tif", 20000, geo=geo)  # 400 M pixels in ~50 KB: ~8,000 a byte
    from edgeae.archive.formats import is_archive_path

    assert is_archive_path(path) is geo  # both readers are covered
    from edgeae.archive.reader import ProductReader

    reads: list[tuple[int, int]] = []
    for cls in (ProductReader, row_bands.RowReader):  # every read of rows, by either reader

        def counted(self: Any, y0: int, y1: int, real: Any = cls.read_rows) -> Any:
            reads.append((y0, y1))
            return real(self, y0, y1)

        monkeypatch.setattr(cls, "read_rows", counted)
    for run in (
        lambda: iter_patch_blocks(path, 64),
        lambda: iter_patches(path, 64),
        lambda: iter_strips(path, 256),
    ):
        t = time.perf_counter()
        with pytest.raises(ImageReadError) as err:
            next(iter(run()))
        assert time.perf_counter() - t < 2.0
        msg = str(err.value)
        assert "\n" not in msg and str(path) in msg and "EDGEAE_MAX_STREAM_PIXELS" in msg
        assert "20000×20000" in msg and "400,000,000 pixels" in msg
    assert reads == []
    monkeypatch.setenv("EDGEAE_MAX_STREAM_PIXELS", "1e9")  # the user vouches for it: it streams as before
    blk = next(iter(iter_patch_blocks(path, 64)))
    assert reads and blk.y0 == 0 and float(blk.windows[0, 0].max()) == pytest.approx(7 / 255)


def test_an_explicit_limit_caps_an_honest_file_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeae.imageio import write_image

    path = tmp_path / "small.tif"
    write_image(path, np.zeros((100, 100), np.uint8))  # 10,000 pixels in ~10 KB: within any default
    assert next(iter(iter_strips(path, 64))).y0 == 0
    monkeypatch.setenv("EDGEAE_MAX_STREAM_PIXELS", "9999")
    with pytest.raises(ImageReadError, match=r"over the streaming limit of 9,999 pixels \(EDGEAE_MAX_STREAM_PIXELS"):
        next(iter(iter_strips(path, 64)))


DATA = Path(os.environ.get("EDGEAE_DATA", Path(__file__).resolve().parents[1] / "../shared/data"))


def test_the_largest_real_products_stream_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shared data's largest image (a 2048 × 4559 HiRISE browse, 9.3 M pixels), its largest planetary product (the
    JPEG 2000, 1.7 M pixels) and the products packing the most pixels in a byte (the MOLA Mercator GeoTIFF, 150; a
    terrain-label PNG, 306) are within the default limit, and stream. Every image of the folder declares at most
    9.3 M pixels (measured over all 6,425), far under the 2^28 any file may declare."""
    names = [
        "orbital_gray/hirise_browse/ESP_073496_0985_RED.NOMAP.browse.jpg",
        "formats/jp2/test.jp2",
        "formats/geotiff/Mars_MGS_MOLA_ClrShade_MAP2_0.0N0.0_MERC.tif",
        "train_extra/marsscapes_panoramas/semantic/389_1_semanticId.png",
    ]
    if not all((DATA / n).is_file() for n in names):
        pytest.skip(f"the shared data folder is absent or incomplete ({DATA}); set EDGEAE_DATA")
    monkeypatch.delenv("EDGEAE_MAX_STREAM_PIXELS", raising=False)
    for n in names:
        with row_bands._open_reader(DATA / n) as reader:
            read_limits.check_stream_pixels(reader)  # the check the streaming iterators make
            pixels, nbytes = reader.height * reader.width, read_limits.data_bytes(reader)
        assert nbytes == (DATA / n).stat().st_size, n  # one file each: nothing counted twice
        assert pixels <= read_limits.STREAM_FLOOR / 25 and pixels / nbytes < read_limits.STREAM_PIXELS_PER_BYTE / 3, n
    strip = next(iter(iter_strips(DATA / names[0], 256)))
    assert strip.pixels.shape[:2] == (256, 2048)

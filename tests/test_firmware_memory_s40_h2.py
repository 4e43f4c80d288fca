"""Session 40, fixer h2: flight memory the plan did not count (firmware_sim/memory_plan.py decides whether a frame
flies, goes down the ladder or is dropped: it must not under-predict).

1. A stripped TIFF's reader held 7 bands beside the strip (tifffile read two strips' bytes at a time and cut them
   apart, and kept them while reading the next), 4 planned (``reader_band``): a TIFF frame at ``sparse_only`` grew
   1.3-2.8 MiB over its plan. It now reads and decodes one tile or strip at a time (2.5 bands planned, 1.5 tiled).
2. The strip prefetch copied the strips of a frame decoded whole (PNG, JPEG, PNM) into its ring of three strips,
   though they are views of the image (1.5 MiB of a 2048-px frame's 256-row strips, 3.7 of a 5064-px one's).
"""

from __future__ import annotations

import dataclasses
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

MIB = 2**20


def _orbital(width: int, height: int) -> Any:
    """The orbital mission on a camera of ``width`` (``height`` 0: any)."""
    from edgeae.firmware_sim.mission import load_mission

    m = load_mission("orbital_nac")
    return dataclasses.replace(m, camera=dataclasses.replace(m.camera, width=width, height=height))


@pytest.mark.parametrize(
    ("layout", "noise"),
    [
        ({"rowsperstrip": 256}, False),  # the mission's strip rows: two strips read at a time, 7 bands held
        ({"rowsperstrip": 64}, False),  # bands of a quarter strip
        ({"rowsperstrip": 256, "compression": "zlib"}, False),  # decoded samples beside their compressed bytes
        ({"rowsperstrip": 256, "compression": "lzw"}, True),  # LZW of noise: 1.37 times its samples
        ({"tile": (256, 256)}, False),
        ({"tile": (256, 256), "compression": "zlib", "predictor": True}, False),
    ],
    ids=["strips256", "strips64", "deflate256", "lzw-noise", "tiles256", "tiles-deflate-predictor"],
)
def test_a_tiff_reader_holds_no_more_than_its_planned_bands(
    tmp_path: Path, layout: dict[str, Any], noise: bool
) -> None:
    """Traced peak of reading a TIFF frame's strips: the reader's output strip and what it reads and decodes, within
    the plan's ``frame_strip_raw`` share for the reader (one strip) and its ``reader_band``. Before session 40 a TIFF
    of 256-row strips read in 256-row strips held strip + 7.0 bands (4 planned: 1.5 MiB over on this 2048-px frame)."""
    tifffile = pytest.importorskip("tifffile")
    if "compression" in layout:
        pytest.importorskip("imagecodecs")
    from edgeae.firmware_sim.frame_intake import band_rows, stored_layout
    from edgeae.firmware_sim.frames import TiffFrame
    from edgeae.firmware_sim.memory_plan import plan_memory

    h, w = 1024, 2048
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (h, w), np.uint8) if noise else (80 + 60 * rng.random((h, w))).astype(np.uint8)
    path = tmp_path / "f.tif"
    tifffile.imwrite(path, img, **layout)
    reader = TiffFrame(path)
    m, layout_, bands = _orbital(w, 0), stored_layout(reader), band_rows(reader)
    plan = dict(plan_memory(m, w, h, 0, 1, layout_, bands, tiled=reader.tiled).items)
    strip = 256 * w
    got = np.empty_like(img)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        for r0, s in reader.strips(256):
            got[r0 : r0 + s.shape[0]] = s[:, :, 0]
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert np.array_equal(got, img)  # every row, as stored
    assert peak <= strip + plan["reader_band"], (peak / MIB, (strip + plan["reader_band"]) / MIB)
    if reader.tiled:  # a band and a tile or two: 1.5 bands planned, 2.5 for strips
        assert plan["reader_band"] == 3 * 256 * w // 2


# ------------------------------------------------ 2. a frame decoded whole: its strips are not copied into the ring
def _strip_mission(tmp_path: Path, height: int, width: int) -> Any:
    from edgeae.firmware_sim.testing import small_mission, tiny_models

    camera = {"source": "strips", "height": height, "width": width}
    m = small_mission(tiny_models(tmp_path / "models"), reconstruction={"mode": "off"}, runtime={"threads": 1},
                      camera=camera)  # fmt: skip
    return dataclasses.replace(m, budget=dataclasses.replace(m.budget, memory_bytes=256 * MIB))


def _worked_strips(
    tmp_path: Path, frame: Path, h: int, w: int, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[Any], dict[str, Any]]:
    """The arrays the strips the loop worked are views of (their ``base``), and the frame's record."""
    from edgeae.firmware_sim import frame_work
    from edgeae.firmware_sim.loop import FlightRuntime

    bases: list[Any] = []
    real = frame_work.FrameWork._strip

    def strip(self: Any, r0: int, s: np.ndarray, bar: Any) -> bool:
        bases.append(s.base if s.base is not None else s)
        return bool(real(self, r0, s, bar))

    monkeypatch.setattr(frame_work.FrameWork, "_strip", strip)
    rt = FlightRuntime(_strip_mission(tmp_path, h, w), tmp_path / "out")
    try:
        rec = rt.process(frame)
    finally:
        rt.finish()
    return bases, rec


def test_the_strips_of_a_frame_decoded_whole_are_views_of_its_image_not_ring_copies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PNG on a strip camera is decoded whole and its strips are views of the image: the prefetch hands them over
    as they are (until session 40 it copied each into its ring of three strips: 1.5 MiB for a 2048-px frame's 256-row
    strips, 3.7 for a 5064-px one's). A TIFF's strips, one buffer refilled by its reader, are still copied."""
    pytest.importorskip("onnx")
    image = pytest.importorskip("PIL.Image")
    tifffile = pytest.importorskip("tifffile")
    h, w = 512, 256
    img = (60 + 100 * np.random.default_rng(2).random((h, w))).astype(np.uint8)
    png = tmp_path / "f.png"
    image.fromarray(img).save(png)
    bases, rec = _worked_strips(tmp_path, png, h, w, monkeypatch)
    assert rec["status"] == "processed" and len(bases) == h // 64, rec
    assert all(b is bases[0] for b in bases) and bases[0].shape[:2] == (h, w)  # one image, no ring copies
    tif = tmp_path / "f.tif"
    tifffile.imwrite(tif, img, rowsperstrip=64)
    tif_bases, tif_rec = _worked_strips(tmp_path / "t", tif, h, w, monkeypatch)
    assert len({id(b) for b in tif_bases}) == 3  # the prefetch ring: the reader refills one strip
    assert tif_rec["anomaly"]["patches"] == rec["anomaly"]["patches"] and tif_rec["sparse"] == rec["sparse"]


def test_the_plan_of_a_frame_decoded_whole_counts_no_ring_unless_a_wrapper_fills_it(tmp_path: Path) -> None:
    image = pytest.importorskip("PIL.Image")
    from edgeae.firmware_sim.frame_intake import reader_plan
    from edgeae.firmware_sim.frames import open_frame
    from edgeae.firmware_sim.memory_plan import camera_decode, plan_memory
    from edgeae.firmware_sim.reader_wrappers import Corrupted

    h, w = 512, 256
    png = tmp_path / "f.png"
    image.fromarray(np.full((h, w), 90, np.uint8)).save(png)
    m = _orbital(w, h)
    assert dict(reader_plan(m, open_frame(png), 0).items)["frame_strip_raw"] == 0  # views of the image
    wrapped = Corrupted(open_frame(png), "nan")  # the bad-frame fault: its strips are its own, copied into the ring
    assert dict(reader_plan(m, wrapped, 0).items)["frame_strip_raw"] == 3 * 256 * w  # at the stored sample type
    boot = dict(plan_memory(m, w, h, 0, 1, whole=camera_decode(m, ".png")).items)  # the boot plans as the frame
    assert boot["frame_strip_raw"] == 0 and boot["frame_decoded"] == h * w


# ------------------------------------------------------------------ 3. a memory-mapped .npy frame on a strip camera
def _rss_file() -> int:
    """Bytes of files this process has mapped in memory (RssFile, Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1]) * 1024
    pytest.skip("no RssFile in /proc/self/status here")


def test_a_memory_mapped_npy_frame_is_read_in_strips_without_mapping_its_pages(tmp_path: Path) -> None:
    """A ``.npy`` frame on a strip camera was read through its memory map: every page read stayed mapped until the
    frame ended (RSS over the frame: the whole file, 10 MiB of a 2048 x 5064 frame, beside strips planned), and the
    mosaic check's central crop left ~6 MiB mapped before the frame's memory check, which counted it as held. Its strips
    are now read from the file into one buffer, and :meth:`ArrayFrame.release` drops what a check mapped."""
    if not Path("/proc/self/status").is_file():
        pytest.skip("needs /proc/self/status (Linux)")
    from edgeae.firmware_sim.frames import ArrayFrame, open_frame, strips_are_views

    from edgeae.bayer import looks_like_mosaic

    h, w = 2048, 4096
    img = np.random.default_rng(3).integers(0, 250, (h, w), np.uint8)
    path = tmp_path / "f.npy"
    np.save(path, img)
    reader = open_frame(path)
    assert isinstance(reader, ArrayFrame) and not strips_are_views(reader)
    before = _rss_file()
    looks_like_mosaic(reader.array)  # as the loop's colour check does, on the memory map
    checked = _rss_file() - before
    reader.release()
    assert _rss_file() - before < MIB // 4 < checked, (checked / MIB, (_rss_file() - before) / MIB)
    got, most = np.empty_like(img), 0
    for r0, s in reader.strips(256):
        got[r0 : r0 + s.shape[0]] = s[:, :, 0]
        most = max(most, _rss_file() - before)
    assert np.array_equal(got, img)  # every row, as stored
    assert most < MIB, most / MIB  # not the 8 MiB file (before: all of it, mapped as it was read)


def test_npy_frames_read_from_their_file_give_the_rows_of_their_map(tmp_path: Path) -> None:
    """Read from the file only where the map is a whole C-order ``.npy``: a slice of a map, a Fortran-order array and a
    file removed since it was mapped read through the map, as before; a file cut short since is a FrameError."""
    from edgeae.firmware_sim.frames import ArrayFrame, FrameError, open_frame

    img = np.arange(300 * 70 * 3, dtype=np.uint16).reshape(300, 70, 3)
    path, fortran = tmp_path / "f.npy", tmp_path / "fortran.npy"
    np.save(path, img)
    np.save(fortran, np.asfortranarray(img))

    def rows(reader: Any) -> np.ndarray:
        return np.concatenate([s.copy() for _, s in reader.strips(64)])

    assert np.array_equal(rows(open_frame(path)), img) and np.array_equal(rows(open_frame(fortran)), img)
    sliced = ArrayFrame(np.load(path, mmap_mode="r")[100:200], "slice")
    assert np.array_equal(rows(sliced), img[100:200])
    gone = open_frame(path)
    path.unlink()
    assert np.array_equal(rows(gone), img)
    np.save(path, img)
    cut = open_frame(path)
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size - 70 * 3 * 2 * 10)  # ten rows short
    with pytest.raises(FrameError, match=r"f\.npy: \.npy data ends within rows 256-300"):
        rows(cut)

"""Out of memory is told from a damaged file by the error's type, never by its text (session 36, fixer i4; review
r13 #3): a damaged TIFF in a folder named "out of memory cases" was dropped ``memory_unavailable`` (retaken by
every rerun, the console advising more memory) because the message that named its path held the phrase."""

from __future__ import annotations

import errno
import json
import zlib
from pathlib import Path

import pytest
from edgeae.firmware_sim.frames import FrameError, FrameMemoryError
from edgeae.firmware_sim.memory_room import is_out_of_memory

from edgeae._headers import ImageReadError
from edgeae.imagedecode import ImageMemoryError

ODD = "/data/out of memory cases/can't start new thread/failed to map segment from shared object/f.tif"


@pytest.mark.parametrize(
    "error",
    [
        MemoryError(),
        ImageMemoryError(f"{ODD}: out of memory decoding a 9x9 image"),
        FrameMemoryError(f"{ODD}: out of memory reading a TIFF"),
        RuntimeError("can't start new thread"),
        OSError(errno.ENOMEM, "Cannot allocate memory"),
        ImportError("/venv/onnxruntime_pybind11_state.so: failed to map segment from shared object"),
        RuntimeError("[ONNXRuntimeError] : 1 : FAIL : bfc_arena.cc:360 Failed to allocate memory for requested buffer"),
        RuntimeError(
            "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned while running Conv node. "
            "Name:'c1' Status Message: std::bad_alloc"
        ),
        zlib.error("Error -4 while decompressing data: insufficient memory"),
    ],
)
def test_an_allocation_that_failed_is_out_of_memory(error: BaseException) -> None:
    assert is_out_of_memory(error)


def test_an_allocation_that_failed_is_out_of_memory_when_chained() -> None:
    outer = RuntimeError("scoring failed")
    outer.__cause__ = MemoryError()
    assert is_out_of_memory(outer)


@pytest.mark.parametrize(
    "error",
    [
        FrameError(f"{ODD}: TIFF data unreadable (ValueError: out of memory? no: corrupt strip)"),
        ImageReadError(f"{ODD}: truncated: cannot allocate memory for nothing"),
        FileNotFoundError(errno.ENOENT, "No such file or directory", ODD),
        ValueError(f"Could not open '{ODD}': failed to allocate memory"),
        RuntimeError(f"can't start new thread for {ODD}"),
        RuntimeError(f"[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load model from {ODD} failed: bad_alloc"),
        RuntimeError(f"[ONNXRuntimeError] : 1 : FAIL : Load model from {ODD}/Failed to allocate memory failed:x"),
        ImportError(f"{ODD}/failed to map segment from shared object/lib.so: cannot open shared object file"),
        zlib.error("Error -3 while decompressing data: invalid stored block lengths"),
        RuntimeError(f"out of memory: {ODD}"),
    ],
)
def test_an_error_whose_text_or_path_names_memory_is_not_out_of_memory(error: BaseException) -> None:
    assert not is_out_of_memory(error)


def test_a_damaged_file_with_a_memory_error_in_its_chain_stays_damaged() -> None:
    """The decoder already decided: FrameError is the file, FrameMemoryError the memory."""
    err = FrameError("f.tif: TIFF data unreadable")
    err.__context__ = MemoryError()
    assert not is_out_of_memory(err)


def test_a_damaged_tiff_in_a_folder_named_out_of_memory_is_dropped_unreadable(tmp_path: Path) -> None:
    """The reviewer's repro (exp/oom_tif.py): a zlib TIFF with damaged strips."""
    tifffile = pytest.importorskip("tifffile")
    from edgeae.firmware_sim.cli import main
    from edgeae.firmware_sim.testing import textured_frame

    folder = tmp_path / "out of memory cases"
    folder.mkdir()
    mission = tmp_path / "m.toml"
    mission.write_text('name = "i4"\n[camera]\nchannels = 1\n[anomaly]\nmodel = ""\n[reconstruction]\nmode = "off"\n')
    f = folder / "f0.tif"
    tifffile.imwrite(f, textured_frame(0), compression="zlib", rowsperstrip=16)
    raw = bytearray(f.read_bytes())
    with tifffile.TiffFile(f) as t:
        offsets = t.pages[0].dataoffsets
    for o in offsets[2:]:  # every strip after the first two damaged
        raw[o : o + 8] = b"\xff" * 8
    f.write_bytes(bytes(raw))
    out = tmp_path / "out"
    rc = main(["run", "--mission", str(mission), "--frames", str(f), "--out", str(out)])
    assert rc == 1  # every frame dropped
    assert json.loads((out / "summary.json").read_text())["frames"]["drop_reasons"] == {"unreadable": 1}

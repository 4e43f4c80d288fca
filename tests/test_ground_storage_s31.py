"""Outputs on a failing disk and stopped runs (session-31 audit: a full disk, SIGTERM, Ctrl-C).

A full disk is stood in for by ``RLIMIT_FSIZE`` (a write past the limit fails with EFBIG, as one on a full disk
fails with ENOSPC): every writer meets a real failed ``write`` mid-file, numpy's ``tofile`` included.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edgeae.cli import main
from edgeae.ground.station import GroundStation
from edgeae.wire.packets import SequenceCounters, WireConfig, packetise
from edgeae.wire.stream import write_packet_file

resource = pytest.importorskip("resource")  # POSIX only


@contextlib.contextmanager
def file_size_limit(nbytes: int) -> Iterator[None]:
    """No file of this process may grow past ``nbytes`` (SIGXFSZ ignored: the write fails with EFBIG)."""
    old_sig = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_sig)


def _frames(path: Path, shapes: list[tuple[int, int, int]], noise: bool = False) -> Path:
    """A packet file of sparse frames 0, 1, ... of these shapes (noise: random samples, a PNG that barely packs)."""
    from edgeae.ground.sources import sparse_from_samples

    counters, packets = SequenceCounters(), []
    rng = np.random.default_rng(0)
    for i, shape in enumerate(shapes):
        s = rng.integers(0, 256, shape, dtype=np.uint8) if noise else (np.arange(np.prod(shape)) % 251).reshape(shape)
        frame = sparse_from_samples(s.astype(np.uint8), 8, 0.5, i + 1, frame_id=i)
        packets += packetise(frame, config=WireConfig(512), counters=counters)
    write_packet_file(path, [(float(i), p) for i, p in enumerate(packets)])
    return path


def _leftovers(folder: Path) -> list[str]:
    return sorted(f.name for f in folder.rglob("*") if f.name.startswith(".") or f.stat().st_size == 0)


def test_write_image_on_a_full_disk_leaves_no_cut_file_and_names_it(tmp_path: Path) -> None:
    from edgeae.imageio import write_image

    img = np.random.default_rng(1).random((128, 128, 3)).astype(np.float32)  # ~49 KB as PNG
    old = tmp_path / "old.png"
    write_image(old, img[:8, :8])
    before = old.read_bytes()
    for target in (tmp_path / "new.png", old, tmp_path / "new.tif"):
        with file_size_limit(20_000), pytest.raises(OSError, match=rf"cannot write .*{target.name}") as e:
            write_image(target, img)
        # the cause, not numpy's "N requested and M written" (a TIFF's samples go through numpy's tofile, uncopied:
        # its error names the file but has no errno)
        assert e.value.errno is not None or target.suffix == ".tif"
    assert not (tmp_path / "new.png").exists() and not (tmp_path / "new.tif").exists()
    assert old.read_bytes() == before  # the file it was to replace is kept whole
    assert _leftovers(tmp_path) == []


def test_ground_decode_on_a_full_disk_fails_products_on_their_own(tmp_path: Path, capsys) -> None:
    pk = _frames(tmp_path / "p.bin", [(128, 128, 3), (16, 16, 1), (128, 128, 3)], noise=True)
    out = tmp_path / "g"
    with file_size_limit(20_000):  # the noisy RGB frames' PNGs do not fit; their validity maps and reports do
        rc = main(["ground", "decode", str(pk), "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 1 and "error" not in captured.err
    stream = json.loads((out / "stream.json").read_text())["stream"]
    assert stream["complete"] is True and stream["products_failed"] == {"io": 2}
    for i in (0, 2):
        rep = json.loads((out / f"frame_{i}.json").read_text())
        assert rep["error_reason"] == "io" and rep["errno"] == "EFBIG"
        assert rep["error_file"] == str(out / f"frame_{i}.png") and f"frame_{i}.png" in rep["error"]
        assert not (out / f"frame_{i}.png").exists() and not (out / f"frame_{i}_valid.png").exists()
    assert "error" not in json.loads((out / "frame_1.json").read_text())  # the session went on
    assert (out / "frame_1.png").stat().st_size > 0 and (out / "frame_1_valid.png").exists()
    assert _leftovers(out) == []


def test_a_stream_json_that_cannot_be_written_is_said_and_not_left_claiming_success(tmp_path: Path, capsys) -> None:
    pk = _frames(tmp_path / "p.bin", [(8, 8, 1)] * 12)
    assert main(["ground", "decode", str(pk), "--out", str(tmp_path / "free")]) == 0
    final = (tmp_path / "free" / "stream.json").stat().st_size  # the early copy (no product yet) is far smaller
    out = tmp_path / "g"
    capsys.readouterr()
    with file_size_limit(final // 2):
        rc = main(["ground", "decode", str(pk), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 1  # not 2: no plain mistake, the disk failed late in the work
    assert err.count("\n") == 1 and f"cannot write {out / 'stream.json'}" in err and "complete: false" in err
    stream = json.loads((out / "stream.json").read_text())["stream"]  # the early copy: it says it is not complete
    assert stream["complete"] is False and stream["products_not_decoded"] == 12
    assert len(list(out.glob("frame_*.json"))) == 12 and _leftovers(out) == []
    # the rerun says what to do with the unfinished folder
    assert main(["ground", "decode", str(pk), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "did not finish" in err and "remove that folder" in err


def test_downlink_simulate_on_a_full_disk_leaves_nothing_and_can_be_rerun(tmp_path: Path, capsys) -> None:
    pk = _frames(tmp_path / "p.bin", [(128, 128, 3)], noise=True)
    rx = tmp_path / "rx.bin"
    args = ["downlink", "simulate", "--products", str(pk), "--link", "loss5", "--out", str(rx)]
    with file_size_limit(pk.stat().st_size // 2):
        assert main(args) == 2
    err = capsys.readouterr().err
    assert "rx.bin" in err and "File too large" in err
    assert not rx.exists() and not rx.with_suffix(".json").exists() and _leftovers(tmp_path) == []
    assert main(args) == 0  # not refused: the failed run left no output
    assert rx.stat().st_size > pk.stat().st_size // 2 and rx.with_suffix(".json").exists()
    assert main(args) == 2
    assert "rx.bin and " in capsys.readouterr().err
    rx.with_suffix(".json").unlink()
    assert main(args) == 2
    assert f"{rx} already exists: give --force" in capsys.readouterr().err


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM"])
def test_a_stopped_decode_says_so_in_stream_json(tmp_path: Path, capsys, monkeypatch, how: str) -> None:
    pk = _frames(tmp_path / "p.bin", [(8, 8, 1)] * 6)
    decode_one, calls = GroundStation._decode_one, []

    def stop_at_the_third(self, asm, rep):
        calls.append(asm.frame_id)
        if len(calls) == 3:
            if how == "SIGINT":
                raise KeyboardInterrupt
            os.kill(os.getpid(), signal.SIGTERM)
        return decode_one(self, asm, rep)

    def not_here(signum, frame):  # SIGTERM must reach the CLI's handler, not this one (nor kill pytest)
        raise RuntimeError("SIGTERM reached the test's own handler")

    monkeypatch.setattr(GroundStation, "_decode_one", stop_at_the_third)
    old = signal.signal(signal.SIGTERM, not_here)
    try:
        rc = main(["ground", "decode", str(pk), "--out", str(tmp_path / "g")])
        assert signal.getsignal(signal.SIGTERM) is not_here  # the CLI's handler is put back
    finally:
        signal.signal(signal.SIGTERM, old)
    assert rc == 130
    assert f"interrupted ({how}): 2 products written" in capsys.readouterr().out
    stream = json.loads((tmp_path / "g" / "stream.json").read_text())["stream"]
    assert stream["complete"] is False and stream["interrupted"] == how
    assert stream["products_not_decoded"] == 4 and len(stream["products_not_decoded_names"]) == 4
    assert sorted(p.name for p in (tmp_path / "g").glob("frame_*.json")) == ["frame_0.json", "frame_1.json"]

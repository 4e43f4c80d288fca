"""Hostile and broken input to the ground station: crafted packets, noise, sequence jumps, signals.

Every crafted input must be refused with a counted reason, never a traceback, while the other products of
the same stream are still decoded; sizes a packet claims are checked before anything is allocated (the
subprocess cases measure the peak RSS of the whole ``edgeae ground decode`` process).
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from edgeae.cli import main
from edgeae.ground.limits import GroundLimits, parse_size
from edgeae.ground.reassembly import Receiver
from edgeae.ground.seq_tracker import SeqTracker
from edgeae.ground.station import GroundStation
from edgeae.wire.packets import (
    APIDS,
    COMMON,
    LATENT,
    PATCH,
    SPARSE,
    TELEMETRY,
    SequenceCounters,
    WireConfig,
    build_packet,
    packetise,
)
from edgeae.wire.products import SparseFrame
from edgeae.wire.stream import split_stream, write_packet_file

GB = 1 << 30


def _common(frame_id: int, part: int = 0, parts: int = 1, codec: int = 0) -> bytes:
    return COMMON.pack(1, codec, frame_id, part, parts)  # payload layout 1: SPARSE is its kind header


def sparse_bomb(frame_id: int, h: int, w: int, c: int, bits: int = 8, seq: int = 0, keep: float = 0.5) -> bytes:
    """A 66-byte sparse packet claiming an (h, w, c) frame and carrying no sample."""
    head = SPARSE.pack(h, w, c, bits, keep, 1, 7, 1, 0, 1, 0, 1, 0)
    return build_packet(APIDS["sparse"], seq, _common(frame_id) + head)


def latent_bomb(frame_id: int, h: int = 128, w: int = 128, grid: int = 1, lat: tuple = (65535, 65535, 65535)) -> bytes:
    head = LATENT.pack(b"x" * 16, h, w, 1, 128, 128, grid, grid, 0, 0.1, *lat, 0, 1)
    return build_packet(APIDS["latent"], 0, _common(frame_id, codec=0) + head + b"\x01")


def patch_bomb(frame_id: int, size: int = 65535, c: int = 255, bits: int = 16) -> bytes:
    head = PATCH.pack(0, 0, size, c, bits, 0, 1.0, 0, 1)
    return build_packet(APIDS["patch"], 0, _common(frame_id) + head + b"\x00\x01")


def telemetry_bomb(frame_id: int) -> bytes:
    head = TELEMETRY.pack(2**32 - 1, 0, 2)
    return build_packet(APIDS["telemetry"], 0, _common(frame_id) + head + b"{}")


def good_frame(frame_id: int = 5, seq0: int = 100) -> list[bytes]:
    """A real 40×60 RGB sparse frame cut into packets (the product that must survive beside the bombs)."""
    y, x = np.mgrid[0:40, 0:60]
    img = np.stack([x * 4, y * 6, x + y], axis=2).astype(np.uint8)
    from edgeae.ground.sources import sparse_from_samples

    counters = SequenceCounters({APIDS["sparse"]: seq0})
    return packetise(
        sparse_from_samples(img, 8, 0.3, 3, frame_id=frame_id), config=WireConfig(256, layout=1), counters=counters
    )


CRAFTED = {
    "sparse_4096x4096x255": lambda: [sparse_bomb(1, 4096, 4096, 255)],
    "sparse_16384sq_x255_16bit": lambda: [sparse_bomb(2, 16384, 16384, 255, bits=16)],
    "sparse_huge_dims": lambda: [sparse_bomb(3, 2**32 - 1, 2**32 - 1, 1)],
    "latent_bomb": lambda: [latent_bomb(4)],
    "latent_huge_frame": lambda: [latent_bomb(6, h=2**31, w=2**31, lat=(1, 1, 1))],
    "patch_bomb": lambda: [patch_bomb(7)],
    "telemetry_bomb": lambda: [telemetry_bomb(8)],
}


@pytest.mark.parametrize("name", sorted(CRAFTED))
def test_crafted_product_is_refused_and_counted_while_others_decode(name: str) -> None:
    gs = GroundStation()
    for p in [*CRAFTED[name](), *good_frame()]:
        gs.receive(p)
    t0 = time.perf_counter()
    rep = gs.finish()
    assert time.perf_counter() - t0 < 10
    bad = [r for k, r in rep["products"].items() if k != "frame_5"]
    assert len(bad) == 1 and bad[0]["error_reason"] == "limit", bad
    assert "max_" in bad[0]["error"]
    assert rep["stream"]["products_failed"] == {"limit": 1}
    good = rep["products"]["frame_5"]
    assert "error" not in good and good["packets_lost"] == 0 and good["pixels_received"] > 0


def test_limits_are_operator_settable() -> None:
    small = GroundLimits(max_frame_pixels=40 * 60 - 1)
    gs = GroundStation(limits=small)
    for p in good_frame():
        gs.receive(p)
    rep = gs.finish()["products"]["frame_5"]
    assert rep["error_reason"] == "limit" and "max_frame_pixels 2,399" in rep["error"]
    assert GroundLimits.from_pairs(["max_session_bytes=4G", "max-frame-pixels=1e6"]) == GroundLimits(
        max_session_bytes=4 * GB, max_frame_pixels=1_000_000
    )
    assert parse_size("64M") == 64 << 20
    for bad in (["nope=3"], ["max_frame_pixels=abc"], ["max_frame_pixels=0"], ["max_frame_pixels=nan"]):
        with pytest.raises(ValueError, match=r"limit|size|positive"):
            GroundLimits.from_pairs(bad)


def test_an_exception_of_any_type_in_one_product_is_isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    gs = GroundStation()
    for p in [*good_frame(5), *good_frame(6, seq0=500)]:
        gs.receive(p)
    real = gs._sparse

    def flaky(asm):
        if asm.frame_id == 6:
            raise KeyError("a bug in the decoder")
        return real(asm)

    monkeypatch.setattr(gs, "_sparse", flaky)
    rep = gs.finish()
    assert rep["products"]["frame_6"]["error_reason"] == "internal"
    assert "error" not in rep["products"]["frame_5"]
    assert rep["stream"]["products_failed"] == {"internal": 1}


def test_sequence_jumps_are_tracked_in_bounded_memory_and_time() -> None:
    rx = Receiver()
    t0 = time.perf_counter()
    seq = 0
    for i in range(5000):  # every packet jumps the 14-bit count forward by 8000: 40 M counts spanned
        rx.receive(sparse_bomb(1000 + i, 8, 8, 1, seq=seq % 16384))
        seq += 8000
    st = rx.stream_report()
    assert time.perf_counter() - t0 < 10
    gaps = st["sequence"]["sparse"]
    assert gaps["received"] == 5000
    assert gaps["missing"] == 4999 * 7999
    assert len(gaps["missing_ranges"]) == 50 and gaps["missing_ranges"][0] == [1, 7999]


def test_seq_tracker_gaps_match_the_plain_definition() -> None:
    rng = np.random.default_rng(0)
    t = SeqTracker()
    t.valid.update(int(v) for v in rng.choice(200, 60, replace=False))
    t.corrupt.update(int(v) for v in rng.choice(200, 10, replace=False))
    seen = t.valid | t.corrupt
    want = [s for s in range(min(seen) - 5, max(max(seen), 230) + 1) if s not in seen]
    n, runs = t.gaps([(min(seen) - 5, 231)], limit=1000)
    assert n == len(want)
    assert sum(b - a + 1 for a, b in runs) == len(want)


def test_session_and_source_memory_caps() -> None:
    pkts = good_frame()
    cap = sum(map(len, pkts[:3]))
    rx = Receiver(GroundLimits(max_session_bytes=cap))
    for p in pkts:
        rx.receive(p)
    assert rx.accepted == 3 and rx.rejected["session_limit"] == len(pkts) - 3
    rx = Receiver(GroundLimits(max_source_bytes=cap))
    for p in pkts:
        rx.receive(p, source="10.0.0.1")
    for p in good_frame(9):
        rx.receive(p, source="10.0.0.2")  # another sender is not charged for the first one's bytes
    assert rx.rejected["source_limit"] == 2 * (len(pkts) - 3) and rx.accepted == 6  # 3 from each sender
    rx = Receiver(GroundLimits(max_products=2))
    for fid in range(5):
        rx.receive(sparse_bomb(fid, 8, 8, 1, seq=fid))
    assert len(rx.products) == 2 and rx.rejected["product_limit"] == 3


def test_ten_megabytes_of_noise_resync_in_linear_time(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rng = np.random.default_rng(1)
    good = good_frame()
    noise = rng.integers(0, 256, 10_000_000, dtype=np.uint8).tobytes()
    blob = noise[:5_000_000] + b"".join(good[:3]) + noise[5_000_000:] + b"".join(good[3:])
    t0 = time.perf_counter()
    parts = list(split_stream(blob))
    assert time.perf_counter() - t0 < 10
    assert [p for p, _ in parts if p is not None] == good
    f = tmp_path / "noise.raw"
    f.write_bytes(blob)
    t0 = time.perf_counter()
    assert main(["ground", "decode", str(f), "--out", str(tmp_path / "g")]) == 0
    assert time.perf_counter() - t0 < 10
    rep = json.loads((tmp_path / "g" / "stream.json").read_text())
    assert rep["stream"]["bytes_outside_packets"] == 10_000_000
    assert rep["products"]["frame_5"]["packets_lost"] == 0


def test_cli_plain_mistakes_exit_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    assert main(["ground", "decode", str(empty), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "empty (0 bytes)" in err and str(empty) in err and len(err.strip().splitlines()) == 1
    pk = tmp_path / "p.bin"
    write_packet_file(pk, [(0.0, p) for p in good_frame()])
    taken = tmp_path / "taken.txt"
    taken.write_text("x")
    assert main(["ground", "decode", str(pk), "--out", str(taken)]) == 2
    err = capsys.readouterr().err
    assert "existing file" in err and len(err.strip().splitlines()) == 1
    assert main(["ground", "decode", str(pk), "--out", str(tmp_path / "o"), "--limit", "bogus=1"]) == 2
    assert "NAME=VALUE" in capsys.readouterr().err


def _decode_rss_script(packets_file: Path, out: Path) -> str:
    return textwrap.dedent(
        f"""
        import json, resource, sys
        from edgeae.cli import main
        rc = main(["ground", "decode", {str(packets_file)!r}, "--out", {str(out)!r}])
        # VmHWM: this process's own high-water mark (ru_maxrss would carry the forking pytest's peak)
        hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")]
        peak = int(hwm[0].split()[1]) * 1024 if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(json.dumps({{"rc": rc, "peak": peak}}))
        """
    )


def test_crafted_stream_peak_rss_under_1gb(tmp_path: Path) -> None:
    """All crafted products plus a good frame in one file: decoded in a fresh process under 1 GB RSS."""
    pkts = [p for make in CRAFTED.values() for p in make()] + good_frame()
    f = tmp_path / "crafted.bin"
    write_packet_file(f, [(0.0, p) for p in pkts])
    out = tmp_path / "g"
    res = subprocess.run(
        [sys.executable, "-c", _decode_rss_script(f, out)], capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["rc"] == 1  # products were refused: decode says so in its exit status
    assert got["peak"] <= GB, f"peak RSS {got['peak'] / 2**20:.0f} MiB"
    rep = json.loads((out / "stream.json").read_text())
    assert rep["stream"]["products_failed"] == {"limit": len(CRAFTED)}
    assert "error" not in rep["products"]["frame_5"]


SLOW_PARSE = """
import sys, time
from edgeae.ground.reassembly import Receiver
real = Receiver.receive
def slow(self, *a, **k):  # a busy host: the signal lands while the parser is still on its first batch
    time.sleep(0.05)
    return real(self, *a, **k)
Receiver.receive = slow
from edgeae.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _serve(
    tmp_path: Path, *extra: str, slow_parse: bool = False, sigint_ignored: bool = False
) -> tuple[subprocess.Popen, int, Path]:
    out = tmp_path / "live"
    ready = tmp_path / "port"
    launcher = ("-c", SLOW_PARSE) if slow_parse else ("-m", "edgeae")
    proc = subprocess.Popen(
        [
            *(sys.executable, *launcher, "ground", "serve", "--port", "0", "--ready-file", str(ready)),
            *("--out", str(out), "--idle-timeout", "30", "--max-time", "60", *extra),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # a foreground server, as after Ctrl-C in a terminal: when the tests themselves run as a background job
        # (`nohup ... &`), the shell has set SIGINT to ignored, the child would inherit that, and Python keeps
        # an inherited ignore (the server then runs on to its idle time-out and exits 0)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN if sigint_ignored else signal.SIG_DFL),
    )
    t0 = time.monotonic()
    while not ready.exists() or not ready.read_text():
        if proc.poll() is not None:
            raise AssertionError(proc.stdout.read() if proc.stdout else "server died")
        if time.monotonic() - t0 > 30:
            proc.kill()
            raise AssertionError("server did not start")
        time.sleep(0.05)
    return proc, int(ready.read_text()), out


def _wait_for_size(path: Path, size: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """Poll until ``path`` holds ``size`` bytes (the server's receiver appends one record per datagram)."""
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.stat().st_size >= size):
        if proc.poll() is not None or time.monotonic() > deadline:
            have = path.stat().st_size if path.exists() else None
            proc.kill()
            raise AssertionError(
                f"{path} holds {have} bytes, not {size}, after {timeout:g} s (server rc {proc.poll()})"
            )
        time.sleep(0.02)


@pytest.mark.parametrize(
    ("sig", "slow_parse"), [(signal.SIGINT, False), (signal.SIGTERM, False), (signal.SIGTERM, True)]
)
def test_signal_to_serve_writes_everything_received(tmp_path: Path, sig: int, slow_parse: bool) -> None:
    """Every datagram the receiver recorded is in stream.json, also when the signal lands mid-parse (slow_parse:
    the records of a batch read from the file but not yet parsed were lost with the interrupt)."""
    import socket

    from edgeae.wire.stream import MAGIC, RECORD

    proc, port, out = _serve(tmp_path, slow_parse=slow_parse)
    good = good_frame()
    try:
        sent = [*good[:-1], sparse_bomb(2, 16384, 16384, 255, bits=16, seq=9000)]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for p in sent:
                s.sendto(p, ("127.0.0.1", port))  # no end-of-transmission: only the signal stops it
        # signal once the receiver has recorded every datagram (not after a fixed sleep: a race on a busy host)
        _wait_for_size(
            out / "received.bin",
            len(MAGIC) + 1 + sum(RECORD.size + len(p) for p in sent),  # magic, version byte, one record each
            proc,
        )
        os.kill(proc.pid, sig)
        stdout, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "Traceback" not in stdout, stdout
    assert proc.returncode == 130, stdout
    rep = json.loads((out / "stream.json").read_text())
    assert rep["serve"]["stopped"] == "interrupted"
    assert rep["stream"]["packets_accepted"] == len(good)
    assert rep["products"]["frame_5"]["packets_lost"] == 1 and "error" not in rep["products"]["frame_5"]
    assert rep["products"]["frame_2"]["error_reason"] == "limit"
    assert (out / "received.bin").stat().st_size > sum(map(len, good[:-1]))


@pytest.mark.slow
def test_serve_keeps_up_with_downlink_send_and_survives_bombs(tmp_path: Path) -> None:
    """A `downlink send` at its default rate (no pacing) on loopback loses no packet, bombs included."""
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (600, 800, 3), dtype=np.uint8)
    frames = [SparseFrame(i, 600, 800, 3, 8, 0.5, "uniform", i, 1, img[_mask(i)]) for i in range(8)]
    counters = SequenceCounters()
    pkts = [p for f in frames for p in packetise(f, config=WireConfig(1024, layout=1), counters=counters)]
    pkts[10:10] = [sparse_bomb(90, 4096, 4096, 255, seq=9000), latent_bomb(91)]
    pk = tmp_path / "send.bin"
    write_packet_file(pk, [(0.0, p) for p in pkts])
    proc, port, out = _serve(tmp_path)
    try:
        assert main(["downlink", "send", str(pk), "--port", str(port)]) == 0
        stdout, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    # exit status 1: the two bombs are products that could not be rebuilt (docs/ground.md, exit status)
    assert proc.returncode == 1, stdout
    assert "products not rebuilt: limit 2" in stdout
    rep = json.loads((out / "stream.json").read_text())
    assert rep["serve"]["stopped"] == "end_of_transmission"
    assert rep["serve"]["datagrams"] == len(pkts)
    assert rep["stream"]["packets_accepted"] == len(pkts)
    assert len(pkts) > 5400  # more than the 5,404 packets of which 31% were lost before
    for i in range(8):
        assert rep["products"][f"frame_{i}"]["packets_lost"] == 0
    assert rep["stream"]["products_failed"] == {"limit": 2}


def _mask(seed: int) -> np.ndarray:
    from edgeae.masks import make_mask

    return make_mask(seed, (600, 800), 0.5, "uniform")


def test_bomb_headers_are_tiny() -> None:
    assert len(sparse_bomb(1, 4096, 4096, 255)) == 66
    assert struct.unpack(">H", sparse_bomb(1, 1, 1, 1)[4:6])[0] == 66 - 7


def test_many_corrupt_packets_and_products_stay_fast() -> None:
    """Damaged packets are attributed to products by range count, not by a scan per product."""
    from edgeae.wire.products import TelemetryRecord

    gs = GroundStation()
    counters = SequenceCounters()
    tele = [p for i in range(2000) for p in packetise(TelemetryRecord(i, b"{}"), counters=counters)]
    bad = bytearray(tele[0])
    for k in range(30_000):  # damaged copies spread over the whole counter range (cheap to send)
        bad[2:4] = (0xC000 | (k % 16384)).to_bytes(2, "big")
        gs.receive(bytes(bad))
    for p in tele:
        gs.receive(p)
    t0 = time.perf_counter()
    rep = gs.finish()
    assert time.perf_counter() - t0 < 20
    assert len(rep["products"]) == 2000 and rep["stream"]["rejected"]["crc"] >= 29_990  # a few copies are intact
    t = gs.receiver.trackers[APIDS["telemetry"]]
    assert t.corrupt_in(-(1 << 30), 1 << 30) == len(t.corrupt - t.valid)


def test_serve_keeps_an_ignored_sigint_ignored(tmp_path: Path) -> None:
    """A server started with SIGINT ignored (nohup, a background job) kept running on Ctrl-C to its process group;
    the flag handlers of session 31 replaced the ignore (review r6). SIGTERM still stops it in order."""
    proc, _, out = _serve(tmp_path, sigint_ignored=True)
    try:
        os.kill(proc.pid, signal.SIGINT)
        time.sleep(1.0)
        assert proc.poll() is None  # still serving
        os.kill(proc.pid, signal.SIGTERM)
        stdout, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stdout
    assert json.loads((out / "stream.json").read_text())["serve"]["stopped"] == "interrupted"

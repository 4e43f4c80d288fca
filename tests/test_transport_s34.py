"""`ground serve` over real UDP on loopback (session-34 audit): the receiver process dies with the server, a signal
stops the final decode and is named in stream.json, an end-of-transmission packet counts only from this session's
sender, datagrams dropped at the station's caps or by the kernel are counted and charged, and the parser reads
received.bin in bounded windows."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edgeae.ground.limits import GroundLimits
from edgeae.ground.station import GroundStation
from edgeae.ground.transport import EOT, BindError, _receive_child, _RecordTail, bind_udp, send_udp, serve_udp
from edgeae.wire.packets import SequenceCounters, WireConfig, packetise
from edgeae.wire.products import SparseFrame, TelemetryRecord
from edgeae.wire.stream import FILE_VERSION, MAGIC, RECORD, write_packet_file

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux process and socket interfaces")


def _frame(frame_id: int) -> SparseFrame:
    from edgeae.ground.sources import sparse_from_samples

    s = (np.arange(48 * 64 * 3).reshape(48, 64, 3) % 251).astype(np.uint8)
    return sparse_from_samples(s, 8, 0.2, frame_id, frame_id=frame_id)


def _packets(ids: list[int], counters: SequenceCounters) -> list[list[bytes]]:
    return [packetise(_frame(i), config=WireConfig(256), counters=counters) for i in ids]


def _in_thread(gs: GroundStation, **kw) -> tuple[threading.Thread, int, dict]:
    """serve_udp in a thread (no signal handlers there); returns the thread, the port and the report to come."""
    port: list[int] = []
    result: dict = {}
    kw = {"port": 0, "idle_timeout": 3, "max_time": 20, **kw}
    th = threading.Thread(target=lambda: result.update(serve_udp(gs, ready=port.append, **kw)))
    th.start()
    t0 = time.monotonic()
    while not port:
        assert time.monotonic() - t0 < 10, "server did not start"
        time.sleep(0.01)
    return th, port[0], result


def _records_size(packets: list[bytes]) -> int:
    return len(MAGIC) + 1 + sum(RECORD.size + len(p) for p in packets)


def _wait_size(path: Path, size: int, timeout: float = 10.0) -> None:
    t0 = time.monotonic()
    while not (path.exists() and path.stat().st_size >= size):
        assert time.monotonic() - t0 < timeout, f"{path} never reached {size} bytes"
        time.sleep(0.01)


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


SERVER = """
import sys
from edgeae.ground.station import GroundStation
from edgeae.ground.transport import serve_udp
serve_udp(GroundStation(), port=0, idle_timeout=30, max_time=60, ready=lambda p: print(p, flush=True))
"""


@linux_only
def test_the_receiver_dies_with_a_killed_server() -> None:
    """SIGKILL of the server left its receiver process running (ppid 1) until the idle time-out: it held the port
    and kept writing into the dead session."""
    proc = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        (child,) = _children(proc.pid)
        proc.kill()
        proc.wait(10)
        t0 = time.monotonic()
        while True:
            try:
                bind_udp("127.0.0.1", port).close()
                break
            except BindError:
                assert time.monotonic() - t0 < 3, "the receiver still holds the port after its server was killed"
                time.sleep(0.05)
        stat = Path(f"/proc/{child}/stat")
        while stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] not in "ZX":
            assert time.monotonic() - t0 < 3, "the receiver outlived its server"
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_the_receiver_loop_stops_when_its_parent_is_gone(tmp_path: Path) -> None:
    """Where no parent-death signal exists, the loop's own ``os.getppid()`` check stops it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    path = tmp_path / "received.bin"
    path.write_bytes(MAGIC + bytes([FILE_VERSION]))
    r, w = os.pipe()
    t0 = time.monotonic()
    assert _receive_child(sock, path, w, 30, 60, GroundLimits(), parent=-1) == 0
    assert time.monotonic() - t0 < 1
    with os.fdopen(r) as fh:
        assert json.loads(fh.read())["stopped"] == "parent_exited"


def _incomplete_frames(n: int) -> list[bytes]:
    """``n`` frames each missing one packet: only the final decode decodes them."""
    return [p for pk in _packets(list(range(1, n + 1)), SequenceCounters()) for p in pk[1:]]


def test_a_signal_during_the_final_decode_stops_it_as_ground_decode_stops(tmp_path: Path) -> None:
    """Once the end of transmission had come, SIGINT was swallowed: the final decode ran on to the end, exit 0,
    stream.json said end_of_transmission. Now the decode stops, what was decoded is written, the rest named."""
    gs = GroundStation(out=tmp_path)
    real = gs._decode_one
    calls: list[int] = []

    def slow(asm, rep):
        if threading.current_thread() is threading.main_thread():
            calls.append(asm.frame_id)
            if len(calls) == 2:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(20)  # the handler raises here
        return real(asm, rep)

    gs._decode_one = slow  # type: ignore[method-assign]
    pkts = _incomplete_frames(4)
    port: list[int] = []
    sender = threading.Thread(target=lambda: (_wait_port(port), send_udp([(0.0, p) for p in pkts], port=port[0])))
    sender.start()
    t0 = time.monotonic()
    rep = serve_udp(gs, port=0, idle_timeout=5, max_time=20, ready=port.append)
    sender.join(10)
    assert time.monotonic() - t0 < 10  # not the 20 s sleep: the signal cut it
    st = rep["stream"]
    assert rep["serve"]["stopped"] == "interrupted" and rep["serve"]["reception_stopped"] == "end_of_transmission"
    assert st["interrupted"] == "SIGINT" and st["complete"] is False
    assert list(rep["products"]) == ["frame_1"] and st["products_not_decoded"] == 3
    assert sorted(st["products_not_decoded_names"]) == ["frame_2", "frame_3", "frame_4"]
    assert (tmp_path / "frame_1.json").is_file() and not (tmp_path / "frame_2.json").exists()
    assert json.loads((tmp_path / "stream.json").read_text())["stream"]["interrupted"] == "SIGINT"
    assert signal.getsignal(signal.SIGINT) is not None  # the handlers were put back


def _wait_port(port: list[int]) -> None:
    t0 = time.monotonic()
    while not port:
        assert time.monotonic() - t0 < 10
        time.sleep(0.01)


def test_a_signal_during_reception_is_named_in_stream_json(tmp_path: Path) -> None:
    """SIGTERM stopped serve with stream.json saying complete: true and no ``interrupted`` key (ground decode
    writes both)."""
    gs = GroundStation(out=tmp_path)
    pkts = [p for pk in _packets([1], SequenceCounters()) for p in pk]
    port: list[int] = []

    def send_then_stop() -> None:
        _wait_port(port)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for p in pkts:
                s.sendto(p, ("127.0.0.1", port[0]))
        _wait_size(tmp_path / "received.bin", _records_size(pkts))
        os.kill(os.getpid(), signal.SIGTERM)

    th = threading.Thread(target=send_then_stop)
    th.start()
    rep = serve_udp(gs, port=0, idle_timeout=10, max_time=20, ready=port.append)
    th.join(10)
    st = json.loads((tmp_path / "stream.json").read_text())["stream"]
    assert rep["serve"]["stopped"] == "interrupted"
    assert st["interrupted"] == "SIGTERM" and st["complete"] is False and st["products_not_decoded"] == 0
    assert st["packets_accepted"] == len(pkts) and "error" not in rep["products"]["frame_1"]


def test_an_end_of_transmission_from_another_address_is_ignored_and_counted() -> None:
    """Any address could end the pass with one EOT datagram, and nothing said who sent it."""
    gs = GroundStation()
    first, second = _packets([1, 2], SequenceCounters())
    th, port, result = _in_thread(gs)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b:
        b.bind(("127.0.0.1", 0))
        for p in first:
            a.sendto(p, ("127.0.0.1", port))
        b.sendto(EOT, ("127.0.0.1", port))  # a stranger's end of transmission, mid-pass
        for p in second:
            a.sendto(p, ("127.0.0.1", port))
        a.sendto(EOT, ("127.0.0.1", port))
        th.join(15)
        sv = result["serve"]
        assert sv["stopped"] == "end_of_transmission" and sv["eot_from"] == f"127.0.0.1:{a.getsockname()[1]}"
        assert sv["eot_ignored"] == 1 and sv["eot_ignored_from"] == [f"127.0.0.1:{b.getsockname()[1]}"]
    assert result["stream"]["packets_accepted"] == len(first) + len(second)
    assert result["products"]["frame_2"]["packets_lost"] == 0


@pytest.mark.parametrize("cap", ["max_session_bytes", "max_source_bytes"])
def test_datagrams_dropped_at_the_caps_are_charged_to_their_counts(cap: str) -> None:
    """Products whose every packet the receiver dropped at a cap had no line and the sequence ``missing`` was 0;
    the per-sender cap's drops were not in ``datagrams_not_recorded`` and no drop was in ``bytes_received``."""
    counters = SequenceCounters()
    kept, gone2, gone3 = _packets([1, 2, 3], counters)
    tele = packetise(TelemetryRecord(3, b'{"t": 1}'), counters=counters)
    sent = kept + gone2 + gone3 + tele
    # room for frame 1's packets alone: received.bin holds records (header + packet), a sender's cap packet bytes
    limit = _records_size(kept) - len(MAGIC) - 1 if cap == "max_session_bytes" else sum(map(len, kept))
    gs = GroundStation(limits=GroundLimits(**{cap: limit}))
    th, port, result = _in_thread(gs)
    send_udp([(0.0, p) for p in sent], port=port)
    th.join(15)
    st, sv = result["stream"], result["serve"]
    dropped = len(gone2) + len(gone3) + len(tele)
    assert sv["datagrams"] == len(kept) and sv["datagrams_not_recorded"] == dropped
    assert st["packets_received"] == len(sent) and st["bytes_received"] == sum(map(len, sent))
    why = "session_limit" if cap == "max_session_bytes" else "source_limit"
    assert st["rejected"] == {why: dropped}
    sparse = st["sequence"]["sparse"]
    assert sparse["missing"] == sparse["not_recorded"] == len(gone2) + len(gone3)
    assert sparse["not_recorded_ranges"] == [[len(kept), len(kept) + len(gone2) + len(gone3) - 1]]
    assert sparse["last_count"] == len(kept) + len(gone2) + len(gone3) - 1
    assert st["sequence"]["telemetry"]["missing"] == st["sequence"]["telemetry"]["not_recorded"] == len(tele)
    assert list(result["products"]) == ["frame_1"] and result["products"]["frame_1"]["packets_lost"] == 0


@linux_only
def test_datagrams_dropped_by_the_kernel_are_counted() -> None:
    """With a small receive buffer, datagrams the kernel dropped were silently counted as link loss."""
    if not Path("/proc/net/udp").exists():
        pytest.skip("no /proc/net/udp")
    sock = bind_udp("127.0.0.1", 0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the kernel's least: a few datagrams
    port = sock.getsockname()[1]
    burst = [bytes([i]) * 1000 for i in range(60)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for p in burst:  # nobody reads yet: all but the first few are dropped in the kernel
            s.sendto(p, ("127.0.0.1", port))
        th, _, result = _in_thread(GroundStation(), sock=sock)
        time.sleep(0.3)
        s.sendto(EOT, ("127.0.0.1", port))
        th.join(15)
    sv = result["serve"]
    assert sv["stopped"] == "end_of_transmission"
    assert 0 < sv["kernel_drops"] == len(burst) - sv["datagrams"]


def test_received_bin_is_read_in_bounded_windows(tmp_path: Path) -> None:
    """The parser read everything new in one read(): 200 MB behind, 428 MB of memory."""
    rng = np.random.default_rng(0)
    sizes = [int(n) for n in rng.integers(1, 3000, 400)] + [40_000]  # one record longer than the window
    records = [bytes([i % 256]) * n for i, n in enumerate(sizes)]
    path = tmp_path / "received.bin"
    write_packet_file(path, [(0.0, r) for r in records])
    tail = _RecordTail(path, window=16 << 10)
    got: list[bytes] = []
    while True:
        batch = tail.read()
        assert sum(map(len, batch)) <= (16 << 10) + 40_000 and len(tail.buf) < 40_000 + RECORD.size
        if not batch and tail.fh.tell() == path.stat().st_size:
            break
        got += batch
    tail.close()
    assert got == records

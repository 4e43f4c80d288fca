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
from edgeae.wire.packets import SequenceCounters, WireConfig, build_packet, packetise
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
    # complete: every product received was decoded (review r1 item 4: was false, and the folder called partial)
    assert st["interrupted"] == "SIGTERM" and st["complete"] is True and st["products_not_decoded"] == 0
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


# ------------------------------------------------------------------------------------------------------------
# review r1 of 23ae193 / a1001f5


def _failing_child(monkeypatch: pytest.MonkeyPatch, fake) -> None:  # type: ignore[no-untyped-def]
    """Make the forked receiver run ``fake(real, sock, path, *rest)`` instead of the real loop."""
    import edgeae.ground.transport as transport

    real = transport._receive_child
    monkeypatch.setattr(transport, "_receive_child", lambda sock, path, *rest: fake(real, sock, path, *rest))


@linux_only
def test_a_receiver_that_fails_names_its_error_not_max_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Item 1: a receiver that could not write (full disk, file-size limit) was reported as "stopped at --max-time"
    (exit 1, "a longer pass needs a larger --max-time")."""
    from edgeae.cli.ground_output import serve_stop

    _failing_child(monkeypatch, lambda real, sock, path, *rest: real(sock, Path("/dev/full"), *rest))  # ENOSPC
    th, port, result = _in_thread(GroundStation(out=tmp_path), max_time=600)
    send_udp([(0.0, p) for p in _packets([1], SequenceCounters())[0]], port=port)
    th.join(15)
    sv = result["serve"]
    assert sv["stopped"] == sv["reception_stopped"] == "error: OSError: [Errno 28] No space left on device"
    line, code = serve_stop(sv, 3, 600, tmp_path)
    assert code == 1 and line.startswith("stopped: the receiver process failed (OSError: [Errno 28] No space left")
    assert "--max-time" not in line


def test_the_receiver_loop_reports_its_own_error(tmp_path: Path) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"x" * 10, sock.getsockname())
    r, w = os.pipe()
    assert _receive_child(sock, tmp_path / "no_such_folder" / "r.bin", w, 5, 5, GroundLimits(), os.getppid()) == 0
    with os.fdopen(r) as fh:
        assert json.loads(fh.read())["stopped"].startswith("error: FileNotFoundError: [Errno 2]")


@linux_only
def test_a_receiver_killed_outright_is_not_a_clean_stop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Item 1: a receiver that died without a status (``receiver_failed``) exited 0 when its products decoded."""
    from edgeae.cli.ground_output import exit_status, serve_stop

    pkts = _packets([1], SequenceCounters())[0]

    def record_then_die(real, sock, path, *rest):  # type: ignore[no-untyped-def]
        with open(path, "ab") as fh:
            fh.write(b"".join(RECORD.pack(0.0, len(p)) + p for p in pkts))
        os.kill(os.getpid(), signal.SIGKILL)

    _failing_child(monkeypatch, record_then_die)
    th, _, result = _in_thread(GroundStation(out=tmp_path))
    th.join(15)
    assert result["serve"]["stopped"] == "receiver_failed" and exit_status(result) == 0  # frame_1 decoded whole
    line, code = serve_stop(result["serve"], 3, 20, tmp_path)
    assert code == 1 and line.startswith(
        f"stopped: the receiver process ended without a status (killed?) after {len(pkts)}"
    )


@linux_only
def test_a_signal_to_the_receiver_alone_is_not_taken_for_ctrl_c(tmp_path: Path) -> None:
    """Item 6: SIGTERM to the receiver process was recorded as "interrupted": "SIGINT" (the server got no signal)
    and exit status 130."""
    from edgeae.cli.ground_output import serve_stop

    before = set(_children(os.getpid()))
    gs = GroundStation(out=tmp_path)
    pkts = _packets([1], SequenceCounters())[0]
    th, port, result = _in_thread(gs, idle_timeout=10)
    (child,) = set(_children(os.getpid())) - before
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for p in pkts:
            s.sendto(p, ("127.0.0.1", port))
    _wait_size(tmp_path / "received.bin", _records_size(pkts))
    os.kill(child, signal.SIGTERM)
    th.join(15)
    sv, st = result["serve"], result["stream"]
    assert sv["stopped"] == "receiver_interrupted" and sv["receiver_signal"] == "SIGTERM"
    assert st["interrupted"] == "receiver interrupted (SIGTERM to the receiver process)" and st["complete"] is True
    line, code = serve_stop(sv, 10, 20, tmp_path)
    assert code == 1 and line.startswith("WARNING: the receiver process was stopped by SIGTERM (sent to it, not to")


def _send_then_eot(port: int, packets: list[bytes]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for p in packets:
            s.sendto(p, ("127.0.0.1", port))
            time.sleep(0.001)
        time.sleep(0.2)
        s.sendto(EOT, ("127.0.0.1", port))


@pytest.mark.parametrize("case", ["reordered_and_duplicated", "junk"])
def test_dropped_datagrams_are_charged_once_and_junk_not_at_all(case: str) -> None:
    """Items 2 and 5: one junk datagram whose first bytes named APID 0x100, count 8192 made missing 8,182 (11 real
    packets dropped); a duplicate inside an earlier run of drops made not_recorded 12 for 11 counts."""
    counters = SequenceCounters()
    kept, gone = _packets([1, 2], counters)
    junk = bytearray(200)
    junk[0:4] = b"\x01\x00\x20\x00"  # APID 0x100 (sparse), count 0x2000: nothing else of a packet
    bad_crc = bytearray(build_packet(0x100, 5000, bytes(40)))
    bad_crc[20] ^= 1  # a whole packet far ahead, damaged: its header cannot be trusted
    # reordered: the later packets first, then the first two, then a copy of one inside the first run of drops
    reordered = gone[2:] + gone[:2] + [gone[2]]
    extra = [*gone, bytes(junk), bytes(bad_crc)] if case == "junk" else reordered
    gs = GroundStation(limits=GroundLimits(max_session_bytes=_records_size(kept) - len(MAGIC) - 1))
    th, port, result = _in_thread(gs)
    _send_then_eot(port, kept + extra)
    th.join(15)
    sparse, sv = result["stream"]["sequence"]["sparse"], result["serve"]
    assert sv["datagrams"] == len(kept) and sv["datagrams_not_recorded"] == len(extra)
    assert sparse["missing"] == sparse["not_recorded"] == len(gone)
    assert sparse["not_recorded_ranges"] == [[len(kept), len(kept) + len(gone) - 1]]
    assert sparse["last_count"] == len(kept) + len(gone) - 1
    assert sv["datagrams_not_recorded_unattributed"] == (2 if case == "junk" else 0)


def test_dropped_datagrams_are_charged_by_the_checks_the_parser_makes_first() -> None:
    """Item 2: a dropped datagram is charged exactly when parse_packet would get past its primary-header, length
    and CRC checks (a packet it refuses later, for its headers or samples, still took its count)."""
    from edgeae.ground.udp_receiver import _packet_count
    from edgeae.wire.layout import crc16
    from edgeae.wire.parse import WireError, parse_packet

    def recrc(b: bytes | bytearray) -> bytes:
        return bytes(b[:-2]) + crc16(bytes(b[:-2])).to_bytes(2, "big")

    good = _packets([1], SequenceCounters())[0][3]
    flipped = bytearray(good)
    flipped[30] ^= 0xFF
    tc = bytearray(good)
    tc[0] |= 0x10  # a telecommand
    segmented = bytearray(good)
    segmented[2] &= 0x3F  # sequence flags 0b00
    foreign = bytearray(good)
    foreign[1] = 0x55  # APID 0x155
    badlayout = bytearray(good)
    badlayout[6] = 9  # payload layout version 9: intact, refused by the parser for its header
    cases = {
        "good": good, "crc": bytes(flipped), "length": good[:-1], "short": good[:10], "tc": recrc(tc),
        "segmented": recrc(segmented), "apid": recrc(foreign), "idle": EOT, "layout": recrc(badlayout),
        "junk": b"\x01\x00\x20\x00" + bytes(196),
    }  # fmt: skip
    header_checks = {"short", "length", "crc", "apid", "type", "idle"}
    for name, data in cases.items():
        try:
            parse_packet(data)
            passes = True
        except WireError as exc:
            passes = exc.reason not in header_checks
        assert (_packet_count(data) is not None) == passes, name
    assert _packet_count(good) == (0x100, 3) and _packet_count(recrc(badlayout)) == (0x100, 3)


@linux_only
def test_the_receive_buffer_warning_states_the_grant(caplog: pytest.LogCaptureFixture) -> None:
    """Item 7: Linux's SO_RCVBUF reports twice the buffer granted: a 1 MiB grant was "granted a 2 MiB", and a 40 MiB
    one (reported 80) passed for the 64 MiB asked."""
    sock = bind_udp("127.0.0.1", 0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)  # at most net.core.rmem_max is granted
    granted = int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)) // 2
    with caplog.at_level("WARNING", logger="edgeae.ground.transport"):
        rep = serve_udp(GroundStation(), port=0, idle_timeout=0.2, max_time=5, sock=sock)
    assert rep["serve"]["receive_buffer_bytes"] == granted <= 1 << 20
    from edgeae.ground.transport import _mib

    assert f"the kernel granted a {_mib(granted)} UDP receive buffer of the 64 MiB asked" in caplog.text

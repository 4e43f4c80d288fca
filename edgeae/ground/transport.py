"""UDP transport: a sender that replays packets (timed by the link simulator) and a ground-station server.

One space packet per datagram. The sender ends a session with an end-of-transmission marker, a CCSDS idle
packet (APID 0x7FF) whose data is ``EDGEAE-EOT`` (sent three times, outside the simulated link); the
server stops on it, after ``idle_timeout`` seconds without packets, or after ``max_time`` seconds.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import queue
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgeae.wire.packets import IDLE_APID, build_packet
from edgeae.wire.stream import FILE_VERSION, MAGIC, RECORD

from .limits import GroundLimits
from .station import GroundStation, product_name

log = logging.getLogger(__name__)

EOT = build_packet(IDLE_APID, 0, b"EDGEAE-EOT")
EOT_PAUSES_S = (0.05, 0.25, 1.0)  # before each of the three end-of-transmission packets


def send_udp(
    records: Sequence[tuple[float, bytes]],
    host: str = "127.0.0.1",
    port: int = 0,
    speed: float = 0.0,
    max_gap_s: float = 0.5,
) -> int:
    """Send ``(arrival_time_s, packet)`` records as datagrams; returns the number sent.

    ``speed`` > 0 replays the arrival times divided by ``speed`` (gaps capped at ``max_gap_s``); 0 sends
    as fast as the socket takes them, with a short pause every 64 packets so a loopback receiver keeps up.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        t_prev = records[0][0] if records else 0.0
        for i, (t, pkt) in enumerate(records):
            if speed > 0:
                time.sleep(min(max_gap_s, max(0.0, (t - t_prev) / speed)))
                t_prev = t
            elif i % 64 == 63:
                time.sleep(0.002)
            sock.sendto(pkt, (host, port))
        for pause in EOT_PAUSES_S:  # spread out: a receiver still draining a full buffer must not miss all three
            time.sleep(pause)
            sock.sendto(EOT, (host, port))
    finally:
        sock.close()
    return len(records)


class BindError(OSError):
    """The server could not listen: the message names ``udp://HOST:PORT`` and why (port busy, unknown host)."""


def bind_udp(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A UDP socket bound to ``host:port`` with a large receive buffer; :class:`BindError` names the address."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        _large_receive_buffer(sock, RECEIVE_BUFFER)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise BindError(exc.errno, f"cannot listen on udp://{host}:{port}: {exc.strerror or exc}") from None
    return sock


def serve_udp(
    station: GroundStation,
    host: str = "127.0.0.1",
    port: int = 0,
    idle_timeout: float = 5.0,
    max_time: float = 60.0,
    ready: Callable[[int], None] | None = None,
    sock: socket.socket | None = None,
) -> dict:
    """Receive datagrams into ``station``; a decoder thread rebuilds each product once its last packet arrived.

    Reception runs in a forked child process that does nothing but ``recvfrom`` and append each datagram to
    ``received.bin`` (an edgeae packet file, re-decodable with ``edgeae ground decode``; a temporary file
    when ``station.out`` is None). It has its own interpreter, so neither parsing nor decoding can stall it:
    on a busy machine reception is delayed, not dropped. This process reads the file as it grows, parses the
    packets and hands completed products to a decoder thread through a bounded queue
    (``station.limits.decode_queue``); a product that finds the queue full is decoded at the end instead.
    Whatever stops the session (end of transmission, time-outs, Ctrl-C / SIGTERM, an error) everything
    received is parsed, the products are decoded and ``stream.json`` is written. ``ready(port)`` is called
    once the socket is bound (``port`` 0 picks a free one). Returns the final report with a ``serve``
    section: why it stopped, datagrams, seconds. ``sock``: a socket from :func:`bind_udp` (bound before
    ``station.out`` is created, so a busy port leaves no folder behind); otherwise one is bound here
    (:class:`BindError` when it cannot be).
    """
    sock = sock if sock is not None else bind_udp(host, port)
    rcvbuf = int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
    bound = sock.getsockname()[1]
    log.info("ground station listening on udp://%s:%d", host, bound)
    limits = station.limits or GroundLimits()
    tmpdir = None
    try:
        if station.out is not None:
            Path(station.out).mkdir(parents=True, exist_ok=True)
            path = Path(station.out) / "received.bin"
        else:
            tmpdir = tempfile.TemporaryDirectory(prefix="edgeae-serve-")
            path = Path(tmpdir.name) / "received.bin"
        path.write_bytes(MAGIC + bytes([FILE_VERSION]))
    except OSError:
        sock.close()
        raise
    status_r, status_w = os.pipe()
    stop_signal: list[int] = []  # set by SIGINT/SIGTERM; the loop stops between two records
    old_handlers: dict[int, Any] = {}
    try:  # the handlers are put back whatever happens, after the report is written (a second signal cannot cut it)
        old_handlers = _stop_on_signals(stop_signal)
        t0 = time.monotonic()
        child = os.fork()
        if child == 0:  # the receiver: only socket and file calls from here on, then _exit
            code = 1
            try:
                os.close(status_r)
                _child_signals()  # the parent's flag handlers are not the child's: a signal ends its receive loop
                code = _receive_child(sock, path, status_w, idle_timeout, max_time, limits)
            finally:
                os._exit(code)
        sock.close()
        os.close(status_w)
        pending: queue.Queue[tuple[str, int, int]] = queue.Queue(maxsize=limits.decode_queue)
        stop = threading.Event()
        worker = threading.Thread(
            target=_decode_worker, args=(station, pending, stop), name="edgeae-decode", daemon=True
        )
        reader = _RecordTail(path)
        datagrams = deferred = 0
        queued: set[tuple[str, int, int]] = set()
        reason = ""
        child_done = False

        backlog: collections.deque[bytes] = collections.deque()  # records read from the file, not yet parsed

        def take(records: list[bytes], until_stop: bool = True) -> None:
            """Parse ``records`` after any left by an earlier call. Ctrl-C/SIGTERM only set ``stop_signal`` (never an
            exception inside a record's parsing, which could leave it half counted): with ``until_stop`` the loop
            returns between two records, and what it had not parsed stays in the backlog for the final drain."""
            nonlocal datagrams, deferred
            backlog.extend(records)
            while backlog and not (until_stop and stop_signal):
                data = backlog.popleft()
                datagrams += 1
                with station.lock:
                    pkt = station.receiver.receive(data)
                    if pkt is None:
                        continue
                    key = (pkt.kind, pkt.frame_id, int(pkt.header.get("index", 0)))
                    asm = station.receiver.products[key]
                    complete = len(asm.pieces) == asm.parts and key not in queued
                if complete:
                    try:
                        pending.put_nowait(key)
                        queued.add(key)
                    except queue.Full:
                        deferred += 1  # decoded by finish(): parsing never waits for the decoder

        try:
            worker.start()
            if ready is not None:
                ready(bound)
            while not child_done and not stop_signal:
                child_done = os.waitpid(child, os.WNOHANG)[0] != 0
                records = reader.read()
                take(records)
                if not records and not child_done:
                    time.sleep(0.02)
            if stop_signal:
                raise KeyboardInterrupt(f"signal {stop_signal[0]}")
        except KeyboardInterrupt:  # a signal (or Ctrl-C where no handler could be installed: not the main thread)
            reason = "interrupted"
            log.warning("interrupted: decoding what was received so far")
        except Exception as exc:  # an error in the loop must not lose the session
            reason = f"error: {type(exc).__name__}: {exc}"
            log.exception("ground station receive loop failed; writing what was received")
        finally:
            if not child_done:
                _stop_child(child)
            stats = _child_status(status_r)
            try:
                take(reader.read(), until_stop=False)  # everything the receiver wrote before it stopped
            except Exception as exc:
                reason = reason or f"error: {type(exc).__name__}: {exc}"
            reader.close()
            stop.set()
            if worker.is_alive():
                worker.join()
            try:
                report = station.finish()
            finally:
                if tmpdir is not None:
                    tmpdir.cleanup()
        # datagrams the receiver process dropped at its caps never reached the parser: counted here, so that
        # received = accepted + duplicates + conflicting + idle + rejected holds for the whole session
        rejected = report["stream"]["rejected"]
        for key, why in (("dropped_source_limit", "source_limit"), ("not_recorded", "session_limit")):
            if stats.get(key):
                rejected[why] = rejected.get(why, 0) + stats[key]
                report["stream"]["packets_received"] += stats[key]
        report["serve"] = {
            "port": bound,
            "stopped": reason or stats.get("stopped", "receiver_failed"),
            "datagrams": datagrams,
            "datagrams_not_recorded": stats.get("not_recorded", 0),
            "decoded_after_stop": deferred,
            "receive_buffer_bytes": rcvbuf,
            "seconds": round(time.monotonic() - t0, 3),
        }
        station.write_report(report)
        return report
    finally:
        _restore_handlers(old_handlers)


def _receive_child(
    sock: socket.socket, path: Path, status_fd: int, idle_timeout: float, max_time: float, limits: GroundLimits
) -> int:
    """The receiver process: datagrams -> records in ``path`` until EOT, a time-out or a signal; then one
    JSON status line on ``status_fd``. Per-sender and per-session byte caps apply here."""
    stats: dict[str, Any] = {"stopped": "max_time", "not_recorded": 0, "dropped_source_limit": 0}
    per_source: dict[str, int] = {}
    recorded = 0
    t0 = last = time.monotonic()
    sock.settimeout(0.1)
    try:
        with open(path, "ab", buffering=0) as fh:
            while True:
                now = time.monotonic()
                if now - t0 > max_time:
                    break
                if now - last > idle_timeout:
                    stats["stopped"] = "idle_timeout"
                    break
                try:
                    data, addr = sock.recvfrom(65536)
                except TimeoutError:
                    continue
                last = time.monotonic()
                if data == EOT:
                    stats["stopped"] = "end_of_transmission"
                    break
                src = str(addr[0])
                if per_source.get(src, 0) + len(data) > limits.max_source_bytes:
                    stats["dropped_source_limit"] += 1
                    continue
                if recorded + len(data) > limits.max_session_bytes:
                    stats["not_recorded"] += 1
                    continue
                per_source[src] = per_source.get(src, 0) + len(data)
                fh.write(RECORD.pack(last - t0, len(data)) + data)  # one write: the reader never sees half
                recorded += RECORD.size + len(data)
    except KeyboardInterrupt:
        stats["stopped"] = "interrupted"
    finally:
        sock.close()
        os.write(status_fd, (json.dumps(stats) + "\n").encode())
        os.close(status_fd)
    return 0


def _stop_child(pid: int) -> None:
    """Stop the receiver (it writes its status and exits) and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] != 0:
                return
        except ChildProcessError:
            return
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def _child_status(fd: int) -> dict[str, Any]:
    try:
        with os.fdopen(fd, "rb") as fh:
            line = fh.read().decode(errors="replace").strip()
        return json.loads(line) if line else {}
    except (OSError, ValueError):
        return {}


class _RecordTail:
    """Reads the complete records appended to a growing packet file since the last call."""

    def __init__(self, path: Path) -> None:
        self.fh = open(path, "rb")  # noqa: SIM115 (closed by close())
        self.fh.seek(len(MAGIC) + 1)
        self.buf = b""

    def read(self) -> list[bytes]:
        self.buf += self.fh.read()
        out, pos = [], 0
        while pos + RECORD.size <= len(self.buf):
            _, n = RECORD.unpack_from(self.buf, pos)
            if pos + RECORD.size + n > len(self.buf):
                break
            out.append(self.buf[pos + RECORD.size : pos + RECORD.size + n])
            pos += RECORD.size + n
        self.buf = self.buf[pos:]
        return out

    def close(self) -> None:
        self.fh.close()


RECEIVE_BUFFER = 64 << 20
"""Socket receive buffer asked for (bytes): a whole burst of ~25,000 1 KB datagrams waits in the kernel while
the receive loop catches up, so a busy machine delays reception instead of dropping packets."""


def _large_receive_buffer(sock: socket.socket, size: int) -> int:
    """Ask for a ``size``-byte receive buffer, beyond ``net.core.rmem_max`` where allowed (SO_RCVBUFFORCE
    needs CAP_NET_ADMIN); returns the buffer the kernel granted."""
    force = getattr(socket, "SO_RCVBUFFORCE", None)
    try:
        if force is None:
            raise PermissionError
        sock.setsockopt(socket.SOL_SOCKET, force, size)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)  # capped at net.core.rmem_max
    return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))


def _decode_worker(station: GroundStation, pending: queue.Queue, stop: threading.Event) -> None:
    """Decode completed products until ``stop``; what is still queued then is left for ``finish()``."""
    while not stop.is_set():
        try:
            key = pending.get(timeout=0.1)
        except queue.Empty:
            continue
        if product_name(key) in station.reports:
            continue
        for name, rep in station.decode([key]).items():  # never raises: failures are reported per product
            log.info("decoded %s: %s/%s packets", name, rep.get("packets_received"), rep.get("packets_expected"))


def _stop_on_signals(stop_signal: list[int]) -> dict[int, Any]:
    """SIGINT and SIGTERM only append to ``stop_signal`` (main thread only): the receive loop stops between two
    records, and a second signal cannot cut the final drain or the report short. Returns the old handlers."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def handler(signum: int, frame: Any) -> None:
        if stop_signal:
            log.warning("signal %d: already stopping, writing what was received", signum)
        stop_signal.append(signum)

    # a SIGINT the caller set to ignored (a server started with nohup or as a background job) stays ignored
    sigs = [s for s in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(s) is not signal.SIG_IGN]
    return {sig: signal.signal(sig, handler) for sig in sigs}


def _child_signals() -> None:
    """In the receiver process: SIGINT and SIGTERM raise KeyboardInterrupt (its loop writes its status and exits)."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) is not signal.SIG_IGN:  # an ignored SIGINT (nohup, a background job) stays so
            signal.signal(sig, handler)


def _restore_handlers(old: dict[int, Any]) -> None:
    for sig, handler in old.items():
        if handler is not None:
            signal.signal(sig, handler)

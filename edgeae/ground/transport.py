"""UDP transport: a sender that replays packets (timed by the link simulator) and a ground-station server.

One space packet per datagram. The sender ends a session with an end-of-transmission marker, a CCSDS idle
packet (APID 0x7FF) whose data is ``EDGEAE-EOT`` (sent three times, outside the simulated link); the
server stops on it, after ``idle_timeout`` seconds without packets, or after ``max_time`` seconds.
"""

from __future__ import annotations

import logging
import queue
import signal
import socket
import sys
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
        for _ in range(3):
            time.sleep(0.01)
            sock.sendto(EOT, (host, port))
    finally:
        sock.close()
    return len(records)


def serve_udp(
    station: GroundStation,
    host: str = "127.0.0.1",
    port: int = 0,
    idle_timeout: float = 5.0,
    max_time: float = 60.0,
    ready: Callable[[int], None] | None = None,
) -> dict:
    """Receive datagrams into ``station``; a decoder thread rebuilds each product once its last packet arrived.

    The receive loop only parses packets and hands completed products to the decoder through a bounded queue
    (``station.limits.decode_queue``); a product that finds the queue full is decoded at the end instead, so
    reception never waits for a decode. Every datagram is also appended to ``received.bin`` (an edgeae packet
    file, re-decodable with ``edgeae ground decode``) when ``station.out`` is set. Whatever stops the loop
    (end of transmission, time-outs, Ctrl-C / SIGTERM, an error) the products received so far are decoded
    and ``stream.json`` is written. ``ready(port)`` is called once the socket is bound (``port`` 0 picks a
    free one). Returns the final report with a ``serve`` section: why it stopped, packets and seconds.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind((host, port))
    bound = sock.getsockname()[1]
    log.info("ground station listening on udp://%s:%d", host, bound)
    limits = station.limits or GroundLimits()
    pending: queue.Queue[tuple[str, int, int]] = queue.Queue(maxsize=limits.decode_queue)
    stop = threading.Event()
    worker = threading.Thread(target=_decode_worker, args=(station, pending, stop), name="edgeae-decode", daemon=True)
    record = None
    if station.out is not None:
        record = open(Path(station.out) / "received.bin", "wb")  # noqa: SIM115 (closed in the finally below)
        record.write(MAGIC + bytes([FILE_VERSION]))
    t0 = last = time.monotonic()
    datagrams = deferred = recorded = 0
    reason = "max_time"
    queued: set[tuple[str, int, int]] = set()
    old_term = _raise_on_sigterm()
    switch = sys.getswitchinterval()
    sys.setswitchinterval(min(switch, 0.0005))  # the receive thread gets the interpreter back quickly
    try:
        worker.start()
        if ready is not None:
            ready(bound)
        sock.settimeout(0.1)
        while True:
            now = time.monotonic()
            if now - t0 > max_time:
                break
            if now - last > idle_timeout:
                reason = "idle_timeout"
                break
            try:
                data, addr = sock.recvfrom(65536)
            except TimeoutError:
                continue
            last = time.monotonic()
            if data == EOT:
                reason = "end_of_transmission"
                break
            datagrams += 1
            if record is not None and recorded < limits.max_session_bytes:  # the disk copy is bounded too
                record.write(RECORD.pack(last - t0, len(data)))
                record.write(data)
                recorded += RECORD.size + len(data)
            with station.lock:
                pkt = station.receiver.receive(data, source=str(addr[0]))
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
                    deferred += 1  # decoded by finish(): reception never waits for the decoder
    except KeyboardInterrupt:
        reason = "interrupted"
        log.warning("interrupted: decoding what was received so far")
    except Exception as exc:  # an error in the loop must not lose the session
        reason = f"error: {type(exc).__name__}: {exc}"
        log.exception("ground station receive loop failed; writing what was received")
    finally:
        sock.close()
        if record is not None:
            record.close()
        stop.set()
        if worker.is_alive():
            worker.join()
        sys.setswitchinterval(switch)
        try:
            report = station.finish()
        finally:
            _restore_sigterm(old_term)
    report["serve"] = {
        "port": bound,
        "stopped": reason,
        "datagrams": datagrams,
        "decoded_after_stop": deferred,
        "seconds": round(time.monotonic() - t0, 3),
    }
    station.write_report(report)
    return report


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


def _raise_on_sigterm() -> Any:
    """Make SIGTERM stop the receive loop like Ctrl-C (main thread only); returns the old handler."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    return signal.signal(signal.SIGTERM, handler)


def _restore_sigterm(old: Any) -> None:
    if old is not None:
        signal.signal(signal.SIGTERM, old)

"""UDP transport: a sender that replays packets (timed by the link simulator) and a ground-station server.

One space packet per datagram. The sender ends a session with an end-of-transmission marker, a CCSDS idle
packet (APID 0x7FF) whose data is ``EDGEAE-EOT`` (sent three times, outside the simulated link); the
server stops on it, after ``idle_timeout`` seconds without packets, or after ``max_time`` seconds.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from edgeae.wire.packets import IDLE_APID, build_packet

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
    """Receive datagrams into ``station``, decoding each product as soon as its last packet arrives.

    ``ready(port)`` is called once the socket is bound (``port`` 0 picks a free one). Returns the final
    report (``station.finish()``) with a ``serve`` section: why it stopped, packets and seconds.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind((host, port))
    bound = sock.getsockname()[1]
    log.info("ground station listening on udp://%s:%d", host, bound)
    if ready is not None:
        ready(bound)
    t0 = last = time.monotonic()
    datagrams = 0
    reason = "max_time"
    sock.settimeout(0.1)
    try:
        while True:
            now = time.monotonic()
            if now - t0 > max_time:
                break
            if now - last > idle_timeout:
                reason = "idle_timeout"
                break
            try:
                data, _ = sock.recvfrom(65536)
            except TimeoutError:
                continue
            last = time.monotonic()
            if data == EOT:
                reason = "end_of_transmission"
                break
            datagrams += 1
            pkt = station.receiver.receive(data)
            if pkt is None:
                continue
            key = (pkt.kind, pkt.frame_id, int(pkt.header.get("index", 0)))
            asm = station.receiver.products[key]
            if len(asm.pieces) == asm.parts and product_name(key) not in station.reports:
                for name, rep in station.decode([key]).items():
                    log.info("decoded %s: %d/%d packets", name, rep["packets_received"], rep["packets_expected"])
    finally:
        sock.close()
    report = station.finish()
    report["serve"] = {
        "port": bound,
        "stopped": reason,
        "datagrams": datagrams,
        "seconds": round(time.monotonic() - t0, 3),
    }
    if station.out is not None:
        import json

        (Path(station.out) / "stream.json").write_text(json.dumps(report, indent=2))
    return report

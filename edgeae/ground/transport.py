"""UDP transport: a sender that replays packets (timed by the link simulator) and a ground-station server.

One space packet per datagram. The sender ends a session with an end-of-transmission marker, a CCSDS idle
packet (APID 0x7FF) whose data is ``EDGEAE-EOT`` (sent three times, outside the simulated link); the
server stops on it (from an address that sent datagrams in this session: others are ignored and counted), after
``idle_timeout`` seconds without packets, or after ``max_time`` seconds.

This module holds the sender and the server's session (the parent process: parsing, decoding, the report);
the socket and the receiver process it forks are in :mod:`edgeae.ground.udp_receiver`.
"""

from __future__ import annotations

import collections
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

from edgeae.wire.stream import FILE_VERSION, MAGIC, RECORD

from .limits import GroundLimits
from .station import GroundStation, product_name
from .udp_receiver import EOT as EOT
from .udp_receiver import MAX_DROP_RUNS as MAX_DROP_RUNS
from .udp_receiver import MAX_SENDERS as MAX_SENDERS
from .udp_receiver import RECEIVE_BUFFER as RECEIVE_BUFFER
from .udp_receiver import BindError as BindError
from .udp_receiver import (
    _account_child,
    _child_signals,
    _child_status,
    _count_kernel_drops,
    _kernel_drops,
    _parent_death_signal,
    _stop_child,
)
from .udp_receiver import _receive_child as _receive_child
from .udp_receiver import bind_udp as bind_udp
from .udp_receiver import granted_receive_buffer as granted_receive_buffer

log = logging.getLogger(__name__)

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

    Reception runs in a forked child process that does nothing but receive and append each datagram to
    ``received.bin`` (an edgeae packet file, re-decodable with ``edgeae ground decode``; a temporary file
    when ``station.out`` is None). It has its own interpreter, so neither parsing nor decoding can stall it;
    it dies with this process. Datagrams the kernel dropped when the socket's receive buffer was full are
    counted where Linux says how many (``serve.kernel_drops``). This process reads the file as it grows (in
    bounded windows), parses the packets and hands completed products to a decoder thread through a bounded
    queue (``station.limits.decode_queue``); a product that finds the queue full is decoded at the end instead.
    Whatever stops the session (end of transmission, time-outs, Ctrl-C / SIGTERM, an error) everything
    received is parsed, the products are decoded and ``stream.json`` is written; a signal during that final
    decode stops it as it stops ``ground decode`` (``complete: false``). ``stream.interrupted`` names a signal that
    stopped the session; ``complete`` stays whether every product received was decoded.
    ``ready(port)`` is called once the socket is bound (``port`` 0 picks a free one). Returns the final report
    with a ``serve`` section: why it stopped, datagrams, seconds. ``sock``: a socket from :func:`bind_udp`
    (bound before ``station.out`` is created, so a busy port leaves no folder behind); otherwise one is bound
    here (:class:`BindError` when it cannot be).
    """
    sock = sock if sock is not None else bind_udp(host, port)
    _count_kernel_drops(sock)
    rcvbuf = granted_receive_buffer(sock)  # in the bytes asked (Linux's getsockopt reports twice that)
    if rcvbuf < RECEIVE_BUFFER:
        log.warning(
            "the kernel granted a %s UDP receive buffer of the %s asked (net.core.rmem_max caps it; "
            "raise it, e.g. sysctl -w net.core.rmem_max=%d, or run with CAP_NET_ADMIN): a burst larger than the "
            "buffer is dropped by the kernel (counted in stream.json serve.kernel_drops where Linux says)",
            _mib(rcvbuf), _mib(RECEIVE_BUFFER), RECEIVE_BUFFER,
        )  # fmt: skip
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
    decoding = [False]  # while True, a signal stops the final decode (KeyboardInterrupt) instead of being noted
    old_handlers: dict[int, Any] = {}
    try:  # the handlers are put back whatever happens, after the report is written (a second signal cannot cut it)
        old_handlers = _stop_on_signals(stop_signal, decoding)
        die_with_parent = _parent_death_signal()  # resolved here: the child makes no library look-ups
        parent = os.getpid()
        t0 = time.monotonic()
        child = os.fork()
        if child == 0:  # the receiver: only socket and file calls from here on, then _exit
            code = 1
            try:
                os.close(status_r)
                _child_signals()  # the parent's flag handlers are not the child's: a signal ends its receive loop
                die_with_parent()  # SIGTERM when the parent dies (even by SIGKILL): never an orphan on the port
                code = _receive_child(sock, path, status_w, idle_timeout, max_time, limits, parent)
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

        decode_stopped = False
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
            signals_at_stop = len(stop_signal)
            if not child_done:
                _stop_child(child)
            stats = _child_status(status_r)
            try:  # everything the receiver wrote before it stopped, one bounded window at a time
                take([], until_stop=False)
                while records := reader.read():
                    take(records, until_stop=False)
            except Exception as exc:
                reason = reason or f"error: {type(exc).__name__}: {exc}"
            reader.close()
            stop.set()
            if worker.is_alive():
                worker.join()
            try:  # a signal from here on stops the decode as it stops `ground decode`: what was decoded is kept
                decoding[0] = True
                if len(stop_signal) > signals_at_stop:  # it came while the file was drained: no decode at all
                    raise KeyboardInterrupt
                report = station.finish(write=False)
            except KeyboardInterrupt:
                decode_stopped = True
            finally:
                decoding[0] = False
                if tmpdir is not None:
                    tmpdir.cleanup()
        if decode_stopped:
            report = station.report()  # complete: false, and the products not decoded
        _account_child(report, stats, station)
        reception = stats.get("stopped", "receiver_failed")  # why the receiver process stopped
        stopped = "interrupted" if decode_stopped else reason or reception
        if stopped == "interrupted" and not reason and not decode_stopped and not stop_signal:
            stopped = "receiver_interrupted"  # a signal to the receiver process alone: this server got none
        serve = {
            "port": bound,
            "stopped": stopped,
            "reception_stopped": reception,
            "datagrams": datagrams,
            "datagrams_not_recorded": stats.get("not_recorded", 0) + stats.get("dropped_source_limit", 0),
            # of those, the ones not charged to a sequence count: not an intact packet, or past MAX_DROP_RUNS
            "datagrams_not_recorded_unattributed": stats.get("dropped_unattributed", 0),
            "kernel_drops": _kernel_drops(stats),
            "eot_from": stats.get("eot_from"),
            "eot_ignored": stats.get("eot_ignored", 0),
            "decoded_after_stop": deferred,
            "receive_buffer_bytes": rcvbuf,
            "seconds": round(time.monotonic() - t0, 3),
        }
        if stats.get("eot_ignored_from"):
            serve["eot_ignored_from"] = stats["eot_ignored_from"]
        if stats.get("signal"):
            serve["receiver_signal"] = stats["signal"]
        report["serve"] = serve
        st = report["stream"]
        if stopped == "receiver_interrupted":
            st["interrupted"] = f"receiver interrupted ({stats.get('signal') or 'a signal'} to the receiver process)"
        elif stopped == "interrupted":  # as `ground decode` records it: stream.json names the signal
            # without a signal noted, a KeyboardInterrupt where no handler could be installed: Ctrl-C
            name = _signal_name(stop_signal[0] if stop_signal else signal.SIGINT)
            st["interrupted"] = name  # complete stays the station's: false only when the final decode was cut
            st.setdefault("products_not_decoded", 0)
            st.setdefault("products_not_decoded_names", [])
            if decode_stopped:
                log.warning(
                    "interrupted (%s) during the final decode: %d products decoded, %d not decoded (stream.json "
                    "products_not_decoded_names)",
                    name, len(report["products"]), st["products_not_decoded"],
                )  # fmt: skip
        _warn_losses(serve, report["stream"])
        station.write_report(report)
        return report
    finally:
        _restore_handlers(old_handlers)


def _warn_losses(serve: dict, stream: dict) -> None:
    """Console lines for what the session lost that the link did not: kernel drops, ignored end-of-transmission
    packets, datagrams dropped at this station's caps."""
    if serve.get("kernel_drops"):
        log.warning(
            "%d datagrams were dropped by the kernel (the socket's receive buffer, %s, was full): they count as lost "
            "on the link (stream.json serve.kernel_drops); raise net.core.rmem_max",
            serve["kernel_drops"], _mib(serve["receive_buffer_bytes"]),
        )  # fmt: skip
    if serve.get("eot_ignored"):
        log.warning(
            "%d end-of-transmission packets from addresses that sent no packet were ignored (%s)",
            serve["eot_ignored"], ", ".join(serve.get("eot_ignored_from", [])),
        )  # fmt: skip
    charged = {k: q["not_recorded"] for k, q in stream["sequence"].items() if q.get("not_recorded")}
    if charged:
        log.warning(
            "%d datagrams dropped at this station's limits are charged to their sequence counts (%s): stream.json "
            "sequence.<kind>.missing counts them, not_recorded_ranges says which",
            serve["datagrams_not_recorded"], ", ".join(f"{k}: {n}" for k, n in charged.items()),
        )  # fmt: skip


def _mib(n: int) -> str:
    return f"{n / (1 << 20):g} MiB" if n >= 1 << 20 else f"{n / 1024:g} KiB"


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


TAIL_WINDOW = 4 << 20
"""Bytes of ``received.bin`` read at a time (as the packet file readers do): memory stays bounded however far
the parser fell behind the receiver."""


class _RecordTail:
    """Reads the complete records appended to a growing packet file since the last call, at most ``window``
    bytes a call (a record longer than that is read whole over several calls)."""

    def __init__(self, path: Path, window: int = TAIL_WINDOW) -> None:
        self.fh = open(path, "rb")  # noqa: SIM115 (closed by close())
        self.fh.seek(len(MAGIC) + 1)
        self.buf = b""
        self.window = window

    def read(self) -> list[bytes]:
        self.buf += self.fh.read(self.window)
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


def _decode_worker(station: GroundStation, pending: queue.Queue, stop: threading.Event) -> None:
    """Decode completed products until ``stop``; what is still queued then is left for ``finish()``."""
    while not stop.is_set():
        try:
            key = pending.get(timeout=0.1)
        except queue.Empty:
            continue
        if product_name(key) in station.reports:
            continue
        with pending.mutex:  # the sparse frames still waiting: --method auto hurries when the link outruns it
            station.behind = sum(1 for k in pending.queue if k[0] == "sparse")
        try:
            for name, rep in station.decode([key]).items():  # never raises: failures are reported per product
                log.info("decoded %s: %s/%s packets", name, rep.get("packets_received"), rep.get("packets_expected"))
        finally:
            station.behind = 0  # finish() decodes what is left with nothing more arriving: the best fill again


def _stop_on_signals(stop_signal: list[int], decoding: list[bool]) -> dict[int, Any]:
    """SIGINT and SIGTERM append to ``stop_signal`` (main thread only): the receive loop stops between two
    records, and a second signal cannot cut the final drain or the report short. While ``decoding[0]`` (the
    final decode) the first one raises KeyboardInterrupt: the decode stops as ``ground decode`` stops. Returns
    the old handlers."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def handler(signum: int, frame: Any) -> None:
        stop_signal.append(signum)
        if decoding[0]:
            decoding[0] = False  # once: the report of what was decoded is then written whatever comes
            raise KeyboardInterrupt(f"signal {signum}")
        if len(stop_signal) > 1:
            log.warning("signal %d: already stopping, writing what was received", signum)

    # a SIGINT the caller set to ignored (a server started with nohup or as a background job) stays ignored
    sigs = [s for s in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(s) is not signal.SIG_IGN]
    return {sig: signal.signal(sig, handler) for sig in sigs}


def _restore_handlers(old: dict[int, Any]) -> None:
    for sig, handler in old.items():
        if handler is not None:
            signal.signal(sig, handler)

"""The receiving end of the UDP transport: the socket and the forked receiver process of ``ground serve``.

The socket is bound with a large receive buffer and asks the kernel to count the datagrams it drops (Linux). The
receiver process does nothing but receive datagrams and append them as records to ``received.bin``; it applies
the station's per-sender and per-session byte caps, counts what it drops at them (intact packets attributed to
APID and sequence count), stops on the end-of-transmission packet :data:`EOT` from this session's sender, a
time-out, a signal, the end of its parent or an error (a full disk: the error is named), and reports one JSON
status line. The parent stops and reaps it, reads that status and charges the dropped datagrams to the session's
report (:func:`_account_child`).
"""

from __future__ import annotations

import bisect
import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeae.wire.packets import IDLE_APID, SEQ_MODULO, build_packet
from edgeae.wire.parse import KIND_OF_APID, WireError, check_primary
from edgeae.wire.stream import RECORD

from .limits import GroundLimits
from .seq_tracker import HALF
from .station import GroundStation

EOT = build_packet(IDLE_APID, 0, b"EDGEAE-EOT")

RECEIVE_BUFFER = 64 << 20
"""Socket receive buffer asked for (bytes): a whole burst of ~25,000 1 KB datagrams waits in the kernel while
the receive loop catches up. What overflows the buffer the kernel grants is dropped there (``serve.kernel_drops``)."""


class BindError(OSError):
    """The server could not listen: the message names ``udp://HOST:PORT`` and why (port busy, unknown host)."""


def bind_udp(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A UDP socket bound to ``host:port`` with a large receive buffer that says how many datagrams the kernel
    dropped (Linux); :class:`BindError` names the address."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        _large_receive_buffer(sock, RECEIVE_BUFFER)
        _count_kernel_drops(sock)  # from the first datagram on
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise BindError(exc.errno, f"cannot listen on udp://{host}:{port}: {exc.strerror or exc}") from None
    return sock


def _large_receive_buffer(sock: socket.socket, size: int) -> int:
    """Ask for a ``size``-byte receive buffer, beyond ``net.core.rmem_max`` where allowed (SO_RCVBUFFORCE
    needs CAP_NET_ADMIN); returns the buffer the kernel granted (:func:`granted_receive_buffer`)."""
    force = getattr(socket, "SO_RCVBUFFORCE", None)
    try:
        if force is None:
            raise PermissionError
        sock.setsockopt(socket.SOL_SOCKET, force, size)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)  # capped at net.core.rmem_max
    return granted_receive_buffer(sock)


def granted_receive_buffer(sock: socket.socket) -> int:
    """The receive buffer the kernel granted ``sock``, in the bytes it was asked in: Linux's ``SO_RCVBUF`` reports
    twice that (it doubles the request for its bookkeeping), so half of it there; elsewhere what it reports."""
    reported = int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
    return reported // 2 if sys.platform.startswith("linux") else reported


_SO_RXQ_OVFL: int | None = getattr(socket, "SO_RXQ_OVFL", 40 if sys.platform.startswith("linux") else None)
"""Linux socket option: each datagram comes with the socket's count of datagrams the kernel dropped."""


def _count_kernel_drops(sock: socket.socket) -> None:
    """Ask the kernel to say, with each datagram, how many it dropped on this socket (Linux); elsewhere nothing."""
    if _SO_RXQ_OVFL is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, _SO_RXQ_OVFL, 1)


def _proc_udp_drops(sock: socket.socket) -> int | None:
    """The ``drops`` column of ``/proc/net/udp`` for ``sock`` (Linux: every datagram the kernel dropped on it,
    also after the last one received), or None where it cannot be read."""
    try:
        inode = str(os.fstat(sock.fileno()).st_ino)
        with open("/proc/net/udp") as fh:
            for line in fh:
                f = line.split()
                if len(f) >= 13 and f[9] == inode:
                    return int(f[12])
    except (OSError, ValueError):
        return None
    return None


def _kernel_drops(stats: dict[str, Any]) -> int | None:
    """Datagrams the kernel dropped on the socket (its receive buffer full), or None where the platform does not say."""
    seen = [v for v in (stats.get("kernel_drops_seen"), stats.get("kernel_drops_proc")) if isinstance(v, int)]
    return max(seen) if seen else None


MAX_SENDERS = 4096
"""Sender addresses the receiver process remembers (an end-of-transmission packet is taken from these only)."""
MAX_DROP_RUNS = 1000
"""Runs of dropped sequence counts the receiver process keeps (all APIDs together): its status stays small."""


def _packet_count(data: bytes) -> tuple[int, int] | None:
    """(APID, sequence count) of a datagram dropped at a cap when it is an intact packet of this wire format, by
    the checks :func:`edgeae.wire.parse.check_primary` makes (the first :func:`~edgeae.wire.parse.parse_packet`
    makes); else None: junk whose first bytes happen to name a wire APID must not widen its sequence span (up to
    8,191 counts). Paid for dropped datagrams only."""
    try:
        head = check_primary(data)
    except WireError:
        return None
    return head.apid, head.seq_count


def _receive_child(
    sock: socket.socket,
    path: Path,
    status_fd: int,
    idle_timeout: float,
    max_time: float,
    limits: GroundLimits,
    parent: int,
) -> int:
    """The receiver process: datagrams -> records in ``path`` until EOT, a time-out, a signal or the end of
    ``parent``, or an error (``stopped``: ``error: TYPE: message``); then one JSON status line on ``status_fd``
    (``stopped`` stays ``receiver_failed`` only when it ends otherwise). Per-sender and per-session byte caps apply
    here; a datagram dropped at them is counted (and its bytes) and, when it is an intact packet
    (:func:`_packet_count`), charged to its APID and sequence count. An EOT is taken only from an address that sent
    datagrams in this session; ``signal`` names the signal that stopped it."""
    stats: dict[str, Any] = {
        "stopped": "receiver_failed", "not_recorded": 0, "dropped_source_limit": 0, "dropped_bytes": 0,
        "dropped_unattributed": 0, "eot_ignored": 0, "kernel_drops_seen": None,
    }  # fmt: skip
    per_source: dict[str, int] = {}
    senders: set[tuple] = set()
    ignored_from: list[str] = []
    tops: dict[int, int] = {}  # APID -> highest count unwrapped so far among the dropped datagrams
    runs: dict[int, list[list[int]]] = {}  # APID -> runs [first, last] of dropped unwrapped counts
    n_runs = 0
    recorded = 0
    ovfl = _SO_RXQ_OVFL
    anc = socket.CMSG_SPACE(4) if ovfl is not None and hasattr(socket, "CMSG_SPACE") else 0
    t0 = last = time.monotonic()
    sock.settimeout(0.1)
    try:
        with open(path, "ab", buffering=0) as fh:
            while True:
                now = time.monotonic()
                if os.getppid() != parent:  # the parent died (where PR_SET_PDEATHSIG is not there to say it)
                    stats["stopped"] = "parent_exited"
                    break
                if now - t0 > max_time:
                    stats["stopped"] = "max_time"
                    break
                if now - last > idle_timeout:
                    stats["stopped"] = "idle_timeout"
                    break
                try:
                    if anc:
                        data, cmsgs, _, addr = sock.recvmsg(65536, anc)
                        for level, kind, cdata in cmsgs:  # the socket's drop count when this datagram was queued
                            if level == socket.SOL_SOCKET and kind == ovfl and len(cdata) >= 4:
                                stats["kernel_drops_seen"] = int.from_bytes(cdata[:4], sys.byteorder)
                    else:
                        data, addr = sock.recvfrom(65536)
                except TimeoutError:
                    continue
                last = time.monotonic()
                if data == EOT:
                    if addr in senders:
                        stats["stopped"] = "end_of_transmission"
                        stats["eot_from"] = f"{addr[0]}:{addr[1]}"
                        break
                    stats["eot_ignored"] += 1  # from an address that sent nothing: not this session's sender
                    if len(ignored_from) < 10:
                        ignored_from.append(f"{addr[0]}:{addr[1]}")
                    continue
                if len(senders) < MAX_SENDERS:
                    senders.add(addr)
                src = str(addr[0])
                over_source = per_source.get(src, 0) + len(data) > limits.max_source_bytes
                if over_source or recorded + len(data) > limits.max_session_bytes:
                    stats["dropped_source_limit" if over_source else "not_recorded"] += 1
                    stats["dropped_bytes"] += len(data)
                    peek = _packet_count(data) if n_runs < MAX_DROP_RUNS else None
                    if peek is None:
                        stats["dropped_unattributed"] += 1
                        continue
                    apid, seq = peek
                    top = tops.get(apid, seq)
                    u = top + ((seq - top + HALF) % SEQ_MODULO - HALF)  # nearest the top: across the 14-bit wrap
                    tops[apid] = max(top, u)
                    mine = runs.setdefault(apid, [])
                    if mine and mine[-1][0] <= u <= mine[-1][1] + 1:
                        mine[-1][1] = max(mine[-1][1], u)
                    else:
                        mine.append([u, u])
                        n_runs += 1
                    continue
                per_source[src] = per_source.get(src, 0) + len(data)
                record = RECORD.pack(last - t0, len(data)) + data
                written = fh.write(record)  # one write: the reader never sees half
                if written != len(record):  # a file-size limit or a disk that filled: no torn record left
                    with contextlib.suppress(OSError):
                        fh.truncate(fh.tell() - (written or 0))
                    raise OSError(f"short write to {path}: {written} of {len(record)} bytes")
                recorded += len(record)
    except KeyboardInterrupt as exc:
        stats["stopped"] = "interrupted"
        stats["signal"] = str(exc.args[0]) if exc.args else None
    except Exception as exc:  # a full disk, a file-size limit, a socket error: named, not taken for a time-out
        stats["stopped"] = f"error: {type(exc).__name__}: {exc}"
    finally:
        stats["kernel_drops_proc"] = _proc_udp_drops(sock)
        sock.close()
        stats["dropped_counts"] = {str(a): r for a, r in runs.items()}
        if ignored_from:
            stats["eot_ignored_from"] = ignored_from
        os.write(status_fd, (json.dumps(stats) + "\n").encode())  # small (MAX_DROP_RUNS): the pipe takes it whole
        os.close(status_fd)
    return 0


def _child_signals() -> None:
    """In the receiver process: SIGINT and SIGTERM raise KeyboardInterrupt naming the signal (its loop writes its
    status and exits)."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) is not signal.SIG_IGN:  # an ignored SIGINT (nohup, a background job) stays so
            signal.signal(sig, handler)


def _parent_death_signal() -> Callable[[], None]:
    """What the receiver process calls first: on Linux ``prctl(PR_SET_PDEATHSIG, SIGTERM)``, so it stops (and frees
    the port) when this process dies, even by SIGKILL; elsewhere nothing (its loop checks ``os.getppid()``)."""
    if not sys.platform.startswith("linux"):
        return lambda: None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return lambda: None
    return lambda: prctl(1, int(signal.SIGTERM), 0, 0, 0)  # 1: PR_SET_PDEATHSIG


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


def _account_child(report: dict, stats: dict[str, Any], station: GroundStation) -> None:
    """Count the datagrams the receiver process dropped at this station's caps (they never reached the parser)
    in ``packets_received``, ``bytes_received`` and ``rejected``, so received = accepted + duplicates +
    conflicting + idle + rejected holds for the whole session, and charge them to their sequence counts."""
    st = report["stream"]
    rejected = st["rejected"]
    for key, why in (("dropped_source_limit", "source_limit"), ("not_recorded", "session_limit")):
        if stats.get(key):
            rejected[why] = rejected.get(why, 0) + stats[key]
            st["packets_received"] += stats[key]
    st["bytes_received"] += stats.get("dropped_bytes", 0)
    st["rejected"] = dict(sorted(rejected.items()))
    with station.lock:
        _charge_not_recorded(station.receiver, st["sequence"], stats.get("dropped_counts") or {})


def _charge_not_recorded(receiver: Any, sequence: dict, dropped: dict[str, list[list[int]]]) -> None:
    """Charge dropped datagrams (``dropped``: APID -> runs [first, last] of the counts the primary headers of the
    intact packets among them give, unwrapped in arrival order by the receiver process) to their APID: the span
    gaps are counted in widens to them, so a product whose every packet was dropped shows as missing counts;
    ``not_recorded`` / ``not_recorded_ranges`` say how many of the missing counts this station dropped (runs
    sorted and merged first: reordered and duplicated drops count each count once)."""
    for apid_text, runs in dropped.items():
        apid = int(apid_text)
        kind = KIND_OF_APID.get(apid)
        if kind is None or not runs:
            continue
        t = receiver.trackers.get(apid)
        # the receiver process unwrapped from its own start: moved to the tracker's (nearest its top)
        shift = t.unwrap(runs[0][0] % SEQ_MODULO, update=False) - runs[0][0] if t is not None else 0
        spans = _coalesce([(a + shift, b + shift) for a, b in runs])
        seen = sorted(t.valid | t.corrupt | t.refused) if t is not None else []
        ranges = [a.seq_range for a in receiver.products.values() if a.kind == kind]
        ranges += [(a, b + 1) for a, b in spans]
        if seen:
            missing, missing_ranges = t.gaps(ranges)
            span = t.span(ranges)
        else:  # no packet of this APID was parsed: every count from the first dropped to the last is missing
            span = (min(a for a, _ in spans), max(b for _, b in spans))
            missing, missing_ranges = span[1] - span[0] + 1, [[span[0] % SEQ_MODULO, span[1] % SEQ_MODULO]]
        dropped_n = sum(b - a + 1 - (bisect.bisect_right(seen, b) - bisect.bisect_left(seen, a)) for a, b in spans)
        q = sequence.setdefault(
            kind,
            {"apid": apid, "received": 0, "corrupt": 0, "refused": 0, "count_conflicts": 0},
        )
        q.update(
            missing=missing,
            missing_ranges=missing_ranges,
            first_count=None if span is None else span[0] % SEQ_MODULO,
            last_count=None if span is None else span[1] % SEQ_MODULO,
            not_recorded=dropped_n,
            not_recorded_ranges=[[a % SEQ_MODULO, b % SEQ_MODULO] for a, b in spans[:50]],
        )


def _coalesce(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Runs [first, last] sorted, overlapping and adjacent ones merged (the receiver process merges a count only
    with its APID's last run, so reordered and duplicated datagrams leave overlapping runs)."""
    out: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out

"""Connecting to Ray: a cluster named by ``--address`` or ``RAY_ADDRESS`` (probed, then joined under a deadline),
else a loopback-only local instance; refusals in one line that say what to fix, and the command's SIGTERM handler
kept across ``ray.init`` and ``ray.shutdown``. The Ray engine (:mod:`edgeae.scan.ray_engine`) calls :func:`_init_ray`.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import math
import os
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from edgeae.scan.errors import ClusterLostError

LOCAL_OBJECT_STORE_BYTES = 512 * 1024**2  # a local instance shares this machine with other work


def _init_ray(ray: Any, address: str | None, num_cpus: int | None) -> bool:
    """Connect to ``address`` (else ``RAY_ADDRESS``) or start a loopback-only local instance; True when this call
    started or connected it.

    A cluster address ``HOST:PORT`` is probed first (:data:`CONNECT_TIMEOUT_S`): Ray itself retries a wrong one for
    minutes, silently; ``ray.init`` then runs under :data:`CONNECT_DEADLINE_S`. ``ray://`` (Ray Client, not installed by
    ``edgeae[scan]``) is refused. ``ray.init`` installs Ray's own SIGTERM handler (``sys.exit``); the handler in place
    before (the command's: SIGTERM ends a scan as Ctrl-C does) is put back after it."""
    if ray.is_initialized():
        return False
    from edgeae.logs import native_stderr_to_log

    address, from_env = _cluster_address(address)
    if address and from_env and num_cpus is not None:
        raise ValueError(
            f"--num-cpus sizes the local Ray instance this command starts; RAY_ADDRESS={address} names a cluster, "
            "which uses its own CPUs (unset RAY_ADDRESS to start a local instance)"
        )
    if address and address.startswith("ray://"):
        raise ValueError(
            f"cannot use the Ray cluster at {address}{' (RAY_ADDRESS)' if from_env else ''}: Ray Client (ray://) is "
            "not supported; give the head node's GCS address HOST:PORT (port 6379 by default, as `ray status` there "
            "shows), or --address auto on a node of the cluster"
        )

    # quiet unless -v: Ray's Python loggers are configured when ray is imported, so set them here
    verbose = logging.getLogger("edgeae").isEnabledFor(logging.DEBUG)
    level = logging.INFO if verbose else logging.ERROR
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(level)
    common: dict[str, Any] = {"include_dashboard": False, "log_to_driver": verbose, "logging_level": level}
    if address:
        _probe_address(address)
    # native_stderr_to_log: the core worker's start-up lines (log level, token authentication)
    with _sigterm_kept(), native_stderr_to_log():
        if address:
            try:
                _connect(ray, address, common, CONNECT_DEADLINE_S)
            except Exception as exc:
                raise ConnectionError(_connect_error(address, exc)) from exc
            return True
        try:
            ray.init(
                num_cpus=num_cpus,
                _node_ip_address="127.0.0.1",
                object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                **common,
            )
        except Exception as exc:  # e.g. RAY_TMPDIR not writable: say it is Ray that could not start
            # a file-system error is most likely the temp folder; anything else is not blamed on it
            hint = "RAY_TMPDIR, default /tmp/ray, must be a writable folder; " if isinstance(exc, OSError) else ""
            raise OSError(
                f"cannot start a local Ray instance: {_first_line(exc)} ({hint}-v shows Ray's own messages)"
            ) from exc
    return True


def _cluster_address(address: str | None) -> tuple[str | None, bool]:
    """The cluster to connect to and whether it came from ``RAY_ADDRESS`` (Ray's own variable, which ``ray job
    submit`` sets for its entrypoints); ``None`` (or ``RAY_ADDRESS=local``) starts a local instance."""
    if address:
        return address, False
    env = os.environ.get("RAY_ADDRESS", "").strip()
    return (env, True) if env and env != "local" else (None, False)


CONNECT_DEADLINE_S = 60.0  # ray.init on an address that accepts TCP but never answers as Ray retries for minutes


def _connect(ray: Any, address: str, common: dict[str, Any], deadline: float) -> None:
    """``ray.init(address=...)`` under an overall ``deadline`` (seconds): Ray's own retries add up to minutes on a port
    that accepts connections but is not a Ray head. It runs on a helper thread (where Ray installs no signal handler)
    while this one waits in short steps, so Ctrl-C and SIGTERM still end the command with its own line."""
    box: dict[str, BaseException | None] = {}

    def target() -> None:
        try:
            ray.init(address=address, **common)
            box["error"] = None
        except BaseException as exc:  # handed to the waiting thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="edgeae-ray-connect", daemon=True)
    thread.start()
    thread.join(deadline)
    if "error" not in box:
        raise TimeoutError(f"no answer as a Ray cluster within {deadline:g} s")
    if box["error"] is not None:
        raise box["error"]


def _connect_error(address: str, exc: BaseException) -> str:
    """One line for a failed connection to ``address`` (as the user gave it, not the node IP Ray resolves it to)."""
    chain: list[str] = []  # Ray's "Failed to connect" hides the reason in its cause
    seen: BaseException | None = exc
    while seen is not None and len(chain) < 5:
        chain.append(str(seen))
        seen = seen.__cause__ or seen.__context__
    text = " ".join(chain)
    if "InvalidAuthToken" in text or "Authentication token is missing" in text:
        return (
            f"cannot reach the Ray cluster at {address}: it requires token authentication: set RAY_AUTH_MODE=token "
            "(the token is read from ~/.ray/auth_token, RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN; the cluster's token "
            "must be there)"
        )
    if isinstance(exc, TimeoutError):
        why = (
            f"{exc} (the port accepts connections: is this its head node's GCS address, as `ray status` there "
            "shows? -v shows Ray's messages)"
        )
    else:
        why = _first_line(exc)
    return f"cannot reach the Ray cluster at {address}: {why}"


@contextlib.contextmanager
def _sigterm_kept() -> Iterator[None]:
    """Put the SIGTERM handler in place on entry back on exit (main thread only). ``ray.init`` replaces it with its
    own (``sys.exit``), and ``ray.shutdown`` resets the process's disposition to the default (killed, no
    "interrupted" line) while Python still lists the old handler: it is installed again either way."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handler = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        # only a handler of the program's own (the CLI's orderly stop): where none was installed from Python (the
        # default), Ray's, which shuts Ray down on SIGTERM, is better than the default, which kills the driver
        # and leaves Ray's processes behind (a library caller, a benchmark)
        if callable(handler):
            signal.signal(signal.SIGTERM, handler)


CONNECT_TIMEOUT_S = 10.0  # a cluster's GCS port that does not accept a connection in this time is not reached


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _probe_address(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Raise ``ConnectionError`` when ``address`` (``HOST:PORT`` or ``ray://HOST:PORT``; ``auto`` and other forms
    are left to Ray) does not accept a TCP connection within ``timeout`` seconds."""
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit():
        return
    host = host.strip("[]")  # [::1]:6379
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        why = "no answer" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc) or type(exc).__name__)
        raise ConnectionError(
            f"cannot reach the Ray cluster at {address}: {why} (waited up to {timeout:g} s; is the cluster up, and is "
            "this its head node's GCS address, as `ray status` there shows?)"
        ) from None


# the head node lost during a scan: Ray's core worker ends the driver from native code (status 1, no message, no
# Python cleanup) once its GCS has not answered for gcs_rpc_server_reconnect_timeout_s (60 s by default; 61-62 s with
# Ray 2.60, audit s36 a2 and this session), and meanwhile Ray's calls may block (ray.wait past its timeout,
# ray.shutdown) or fail ("Broken pipe": the raylet this driver is attached to gone with the head); so the GCS is watched
# from a thread of its own, which says so in one line well before that
HEAD_PROBE_S = 5.0  # a TCP connection to the GCS every this many seconds (the kernel answers it: cheap, no RPC)
HEAD_LOST_S = 20.0  # refused (or not answered) this long: the head node is lost (with Ray's default timeout)
RAY_RECONNECT_ENV = "RAY_gcs_rpc_server_reconnect_timeout_s"  # Ray's own limit (60 s by default; KubeRay: 600 s)


def head_lost_s(env: Mapping[str, str] | None = None) -> float:
    """How long the GCS may refuse connections before the head node counts as lost: :data:`HEAD_LOST_S` with Ray's
    default :data:`RAY_RECONNECT_ENV` (60 s), 40 s less than it where it is longer (a cluster with GCS fault
    tolerance: KubeRay sets 600 s, the GCS restarts and the scan goes on: 560 s), and at least 3 probes before it
    where it is shorter (Ray would end the driver first: 25 s gives 10 s); never under 2 probes."""
    raw = (os.environ if env is None else env).get(RAY_RECONNECT_ENV, "")
    try:
        limit = float(raw) if raw.strip() else 60.0
    except ValueError:
        limit = 60.0
    if not math.isfinite(limit) or limit <= 0:
        limit = 60.0
    return max(2 * HEAD_PROBE_S, min(limit - 3 * HEAD_PROBE_S, max(HEAD_LOST_S, limit - 40.0)))


def gcs_address(ray: Any) -> str | None:
    """``HOST:PORT`` of the GCS this driver is connected to (a cluster's head node, or the local instance's), or None
    where Ray does not say."""
    try:
        address = str(ray.get_runtime_context().gcs_address)
    except Exception:  # an older Ray, a stand-in
        return None
    return address if address.rpartition(":")[2].isdigit() else None


def _accepts(address: str, timeout: float = 2.0) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return True
    except OSError:
        return False


class HeadWatch:
    """Whether the GCS at ``address`` (the head node) still accepts TCP connections, probed every :data:`HEAD_PROBE_S`
    seconds on a daemon thread (:meth:`start`; :meth:`poll` is one step). Once it has refused them for
    :data:`HEAD_LOST_S`, or at once when a Ray call failed and it refuses (:meth:`failed`), the loss is said in one
    ERROR line (logged once, by whichever sees it first: the driver's thread may be blocked inside Ray) and the
    driver's loop raises :class:`ClusterLostError` at its next :meth:`check`. No-op when ``address`` is None."""

    def __init__(
        self,
        address: str | None,
        *,
        accepts: Callable[[str], bool] = _accepts,
        clock: Callable[[], float] = time.monotonic,
        lost_s: float | None = None,
    ) -> None:
        self.address, self.accepts, self.clock = address, accepts, clock
        self.lost_s = head_lost_s() if lost_s is None else lost_s  # (read once: Ray reads its setting at start)
        self.down_since: float | None = None
        self.lost: str | None = None  # the line said, once the head node is lost
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def start(self) -> HeadWatch:
        if self.address is not None:
            threading.Thread(target=self._run, name="edgeae-ray-head-watch", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(HEAD_PROBE_S) and self.lost is None:
            self.poll()

    def poll(self) -> None:
        """One probe: the time it has refused since, and the loss said once that reaches ``lost_s``
        (:func:`head_lost_s`)."""
        if self.address is None:
            return
        now = self.clock()
        if self.accepts(self.address):
            self.down_since = None
            return
        if self.down_since is None:
            self.down_since = now
            logging.getLogger(__name__).debug("the Ray GCS at %s refuses connections", self.address)
        if now - self.down_since >= self.lost_s:
            self._say(f"refused connections for {self.lost_s:g} s", unless_stopped=True)

    def failed(self, exc: BaseException) -> None:
        """A Ray call of the driver's loop raised ``exc`` (not an actor's death): raise :class:`ClusterLostError` from
        it when the GCS refuses a connection now and Ray will end the driver soon (its default timeout), or has refused
        them for ``lost_s``; otherwise return (the caller raises ``exc``: a GCS that restarts under fault tolerance,
        where Ray's timeout is long, is not the cluster lost)."""
        if self.lost is None and (self.address is None or self.accepts(self.address)):
            return
        if self.lost is None and self.lost_s > HEAD_LOST_S:
            now = self.clock()
            self.down_since = now if self.down_since is None else self.down_since
            if now - self.down_since < self.lost_s:
                return
        why = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
        raise ClusterLostError(self._say(f"refuses connections, and a call to Ray failed ({why})"), said=True) from exc

    def check(self) -> None:
        """Raise :class:`ClusterLostError` once the head node is lost (called from the driver's loop)."""
        if self.lost is not None:
            raise ClusterLostError(self.lost, said=True)

    def _say(self, how: str, *, unless_stopped: bool = False) -> str:
        """The line that says the head node is lost, logged once (the first time, by the thread that found it)."""
        with self._lock:
            if self.lost is None and not (unless_stopped and self._stop.is_set()):
                self.lost = (
                    "the Ray cluster's head node stopped answering during the scan (stopped, or its machine lost): its "
                    f"GCS at {self.address} {how}; the images finished before are kept: run the same command again "
                    "once the cluster is back"
                )
                logging.getLogger("edgeae.scan.ray_engine").error("%s", self.lost)
            return self.lost or ""


def alive_nodes(ray: Any) -> dict[str, str]:
    """The cluster's live nodes, id -> address (``ray.nodes()``; {} where Ray does not say)."""
    try:
        return {str(n["NodeID"]): str(n.get("NodeManagerAddress") or "?") for n in ray.nodes() if n.get("Alive")}
    except Exception:  # a stand-in, a GCS that does not answer
        return {}


def lost_nodes(
    ray: Any, before: dict[str, str], marked_dead: dict[str, str], hosted: set[str] | None = None
) -> dict[str, str]:
    """The nodes of ``before`` (:func:`alive_nodes` at the start) that are no longer alive, and those Ray's messages
    said were marked dead (``marked_dead``: id -> address): id -> address. With ``hosted`` (the ids of the nodes the
    scan's actors ran on), only those: an idle node the autoscaler removed, drained or taken back held no image. Where
    no id of ``hosted`` is a node Ray named (the actors' nodes not known), every lost node is kept."""
    now = alive_nodes(ray) if before else {}
    lost = {nid: addr for nid, addr in before.items() if now and nid not in now}
    for nid, addr in marked_dead.items():
        lost.setdefault(nid, before.get(nid, addr))
    if hosted and any(same_node(h, n) for h in hosted for n in {*before, *marked_dead}):
        lost = {nid: addr for nid, addr in lost.items() if any(same_node(h, nid) for h in hosted)}
    return lost


def deaths_on(died_on: dict[str, int], nodes: dict[str, str]) -> int:
    """The worker deaths of ``died_on`` (node id -> deaths) on ``nodes`` (id -> address)."""
    return sum(n for node, n in died_on.items() if any(same_node(node, nid) for nid in nodes))


def same_node(a: str, b: str) -> bool:
    """Whether two node ids name one node (Ray's messages may give an id cut short)."""
    return bool(a and b) and (a.startswith(b) or b.startswith(a))


_MARKED_DEAD = re.compile(r"node id:\s*([0-9a-f]+)\s+and address:\s*(\S+).*has been marked dead", re.IGNORECASE)


class _RayMessages:
    """Keep Ray's driver-side messages off stdout unless -v: its error listener prints "(raylet) A worker died ..."
    lines (with colour codes) to ``sys.stdout`` whatever ``log_to_driver`` says, and colorama, which Ray loads, writes
    a colour reset to stdout at exit. Counts the worker deaths Ray reports. ``close()`` undoes it."""

    def __init__(self, ray: Any, *, verbose: bool) -> None:
        self.deaths = 0
        self.dead_nodes: dict[str, str] = {}  # id -> address of the nodes Ray said it marked dead
        self.verbose = verbose
        self._module = getattr(getattr(ray, "_private", None), "worker", None)
        self._original = getattr(self._module, "print_to_stdstream", None)
        if self._original is not None:
            self._module.print_to_stdstream = self._print  # type: ignore[union-attr]

    def _print(self, data: dict[str, Any], ignore_prefix: bool) -> None:
        lines = [str(line) for line in data.get("lines", [])]
        self.deaths += sum("worker died" in line.lower() for line in lines)
        for line in lines:  # "The node with node id: ID and address: IP and node name: ... has been marked dead ..."
            m = _MARKED_DEAD.search(line)
            if m is not None:
                self.dead_nodes[m.group(1)] = m.group(2)
        if self.verbose and self._original is not None:  # with -v, Ray's messages go to stderr
            self._original({**data, "is_err": True}, ignore_prefix=ignore_prefix)
        else:
            for line in lines:
                logging.getLogger("edgeae.ray").debug("ray: %s", line)

    def close(self) -> None:
        if self._original is not None and self._module is not None:
            self._module.print_to_stdstream = self._original
        colorama = sys.modules.get("colorama.initialise")
        if colorama is not None and hasattr(colorama, "reset_all"):
            atexit.unregister(colorama.reset_all)

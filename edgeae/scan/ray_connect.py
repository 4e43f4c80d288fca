"""Connecting to Ray: a cluster named by ``--address`` or ``RAY_ADDRESS`` (probed, then joined under a deadline),
else a loopback-only local instance; refusals in one line that say what to fix, and the command's SIGTERM handler
kept across ``ray.init`` and ``ray.shutdown``. The Ray engine (:mod:`edgeae.scan.ray_engine`) calls :func:`_init_ray`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

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
    import socket

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

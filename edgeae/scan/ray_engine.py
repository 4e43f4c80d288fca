"""The Ray engine: the same pipeline on Ray Data, on a local Ray instance or an existing cluster.

Stages (Ray Data schedules them; there is no scheduler here):

1. read: ``ray.data.from_items`` over the pending archive entries;
2. tile: ``map_batches`` with a generator that streams each image in strips and yields one row per chunk
   of ``batch_size`` patches (plus an ``end`` row carrying the chunk count, or an ``error`` row);
3. score: ``map_batches`` with a callable class on an ``ActorPoolStrategy`` pool; each actor builds its
   model once (``num_gpus=1`` per actor when the cluster has GPUs) and scores each chunk as one batch,
   exactly as the local engine does, so both give the same numbers;
4. write: this driver consumes the stream, joins the chunks of each image (in any order, keeping only the
   per-patch scores and a running top-k) and hands finished images to the same atomic per-image writer the
   local engine uses (resume and idempotence are identical).

Chunks travel between stages as pickled bytes (one binary column), which keeps every block's schema
fixed whatever the image size. Paths and the model file must be readable on every node of a cluster.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import signal
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from edgeae._optional import require
from edgeae.scan.archive import ArchiveEntry
from edgeae.scan.local import Outcome, error_text
from edgeae.scan.pipeline import ImageAccumulator, ScanConfig, score_chunk, tile_image
from edgeae.scan.scoring import Scorer

LOCAL_OBJECT_STORE_BYTES = 512 * 1024**2  # a local instance shares this machine with other work


def _row(name: str, index: int, kind: str, payload: bytes, n: int = 0) -> dict[str, np.ndarray]:
    return {
        "name": np.array([name], dtype=object),
        "index": np.array([index], np.int64),
        "kind": np.array([kind], dtype=object),
        "payload": np.array([payload], dtype=object),
        "n": np.array([n], np.int64),
    }


def tile_rows(batch: dict[str, np.ndarray], config: ScanConfig) -> Iterator[dict[str, np.ndarray]]:
    """Ray ``map_batches`` generator: archive rows -> one row per chunk, then ``end`` or ``error``."""
    for path, name in zip(batch["path"], batch["name"], strict=True):
        count = 0
        try:
            for chunk in tile_image(str(path), config):
                yield _row(str(name), count, "chunk", pickle.dumps(chunk, protocol=5))
                count += 1
        except Exception as exc:  # corrupt image: recorded as failed, the scan goes on
            yield _row(str(name), -1, "error", error_text(exc).encode())
            continue
        yield _row(str(name), count, "end", b"")


class ScoreActor:
    """Ray Data callable class: one scorer per actor, chunks scored one batch each."""

    def __init__(self, factory: Callable[[], Scorer], config: ScanConfig) -> None:
        self.scorer = factory()
        self.config = config

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        kinds = list(batch["kind"])
        payloads = list(batch["payload"])
        ns = np.zeros(len(kinds), np.int64)
        for i, (kind, payload) in enumerate(zip(kinds, payloads, strict=True)):
            if kind != "chunk":
                continue
            chunk = pickle.loads(payload)
            ns[i] = len(chunk.xs) + chunk.n_skipped
            try:
                scored = score_chunk(self.scorer, chunk, self.config.top_k, self.config.latents)
                payloads[i] = pickle.dumps(scored, protocol=5)
            except Exception as exc:
                kinds[i], payloads[i] = "error", error_text(exc).encode()
        return {
            "name": batch["name"],
            "index": batch["index"],
            "kind": np.array(kinds, dtype=object),
            "payload": np.array(payloads, dtype=object),
            "n": ns,
        }


def _init_ray(ray: Any, address: str | None, num_cpus: int | None) -> bool:
    """Connect to ``address`` or start a loopback-only local instance; True when this call started it.

    A cluster address ``HOST:PORT`` (or ``ray://HOST:PORT``) is probed first (:data:`CONNECT_TIMEOUT_S`): Ray itself
    retries a wrong one for minutes, silently. ``ray.init`` installs Ray's own SIGTERM handler (``sys.exit``); the
    handler in place before (the command's: SIGTERM ends a scan as Ctrl-C does) is put back after it."""
    if ray.is_initialized():
        return False
    from edgeae.logs import native_stderr_to_log

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
                ray.init(address=address, **common)
            except ConnectionError:
                raise
            except Exception as exc:
                raise ConnectionError(f"cannot reach the Ray cluster at {address}: {_first_line(exc)}") from exc
            return True
        try:
            ray.init(
                num_cpus=num_cpus,
                _node_ip_address="127.0.0.1",
                object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                **common,
            )
        except Exception as exc:  # e.g. RAY_TMPDIR not writable: say it is Ray that could not start
            raise OSError(
                f"cannot start a local Ray instance: {_first_line(exc)} (RAY_TMPDIR, default /tmp/ray, must be "
                "a writable folder; -v shows Ray's own messages)"
            ) from exc
    return True


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


def iter_ray(
    entries: list[ArchiveEntry],
    config: ScanConfig,
    factory: Callable[[], Scorer],
    *,
    gpu_factory: Callable[[], Scorer] | None = None,
    address: str | None = None,
    num_cpus: int | None = None,
    actors: int | None = None,
    on_patches: Callable[[int], None] | None = None,
    on_ready: Callable[[], None] | None = None,
) -> Iterator[Outcome]:
    """Scan ``entries`` on Ray Data and yield one outcome per image as soon as all its chunks are scored.

    ``on_ready()`` is called when Ray is up and the dataset is about to execute: Ray Data tiles and scores before
    the first batch reaches the driver, so the first progress report is no mark of the end of start-up here (a
    single NAC-size strip reported its first patches after 24 s, most of its scoring done).

    Starts a local Ray instance (``num_cpus``, no dashboard, loopback only) unless ``address`` names a
    cluster or Ray is already initialised; a Ray instance started here is shut down at the end. With GPUs
    in the cluster, one actor per GPU runs ``gpu_factory`` (when given) with ``num_gpus=1``.
    """
    if not entries:
        return
    ray = require("ray")
    report = on_patches or (lambda n: None)
    started = _init_ray(ray, address, num_cpus)
    try:
        with warnings.catch_warnings():  # Ray's own deprecated context fields, nothing we set
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        if not logging.getLogger("edgeae").isEnabledFor(logging.DEBUG):
            logging.getLogger("ray.data").setLevel(logging.ERROR)
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        use_gpu = gpus > 0 and gpu_factory is not None
        size = actors or (gpus if use_gpu else max(1, int(resources.get("CPU", 1))))
        items = [{"path": str(e.path), "name": e.name} for e in entries]
        ds = ray.data.from_items(items, override_num_blocks=min(len(items), 2000))
        ds = ds.map_batches(tile_rows, batch_size=1, fn_kwargs={"config": config}, num_cpus=1)
        ds = ds.map_batches(
            ScoreActor,
            batch_size=1,
            fn_constructor_kwargs={"factory": gpu_factory if use_gpu else factory, "config": config},
            compute=ray.data.ActorPoolStrategy(size=size),
            num_cpus=1,
            num_gpus=1 if use_gpu else 0,
        )
        by_name = {e.name: e for e in entries}
        partial: dict[str, ImageAccumulator] = {}
        expected: dict[str, int] = {}
        finished: set[str] = set()
        if on_ready is not None:
            on_ready()
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            for name, index, kind, payload, n in zip(
                batch["name"], batch["index"], batch["kind"], batch["payload"], batch["n"], strict=True
            ):
                report(int(n))
                if name in finished:
                    continue
                if kind == "error":
                    finished.add(name)
                    partial.pop(name, None)
                    yield by_name[name], None, bytes(payload).decode()
                    continue
                acc = partial.get(name)
                if acc is None:
                    acc = partial[name] = ImageAccumulator(str(name), config, by_name[name].path)
                if kind == "end":
                    expected[name] = int(index)
                else:
                    try:
                        acc.add(int(index), pickle.loads(payload))
                    except Exception as exc:  # e.g. an image too large for local-z: this image's failure only
                        finished.add(name)
                        del partial[name]
                        yield by_name[name], None, error_text(exc)
                        continue
                if expected.get(name) == len(acc):
                    finished.add(name)
                    del partial[name]
                    try:  # local-z ranks and reads back here: a failure is this image's, not the scan's
                        result = acc.result()
                    except Exception as exc:
                        yield by_name[name], None, error_text(exc)
                        continue
                    yield by_name[name], result, ""
    finally:
        if started:
            with _sigterm_kept():
                ray.shutdown()

"""The Ray engine: the local engine's per-image scan on a pool of Ray actors, on a local Ray instance or a cluster.

Ray Core only (actors, ``ray.wait``): a pool of :class:`ImageActor`, each holding one model (``num_gpus=1`` per actor
when the cluster has GPUs and a GPU scorer is given), gets **one call per image**; each call runs
:func:`edgeae.scan.pipeline.scan_image` on it, the local engine's own tiling, scoring and ranking (so both engines give
the same numbers), and returns its :class:`~edgeae.scan.pipeline.ImageResult`: plain arrays, nothing left on the
worker's disk, so on a cluster the driver needs nothing from the worker's node. This driver hands each result to the
same atomic per-image writer the local engine uses (resume and idempotence are identical).

A worker process that dies on an image (killed, out of memory, a crash in native code) is restarted and the call
tried :data:`WORKER_RETRIES` more times (the actor options ``max_restarts=-1``, ``max_task_retries``); then that image,
and only it, is recorded as failed. Each actor has one call in flight: the driver sends it its next image when the
last comes back, so the driver holds a few calls whatever the archive's size. Paths and the model file must be
readable on every node of a cluster. Connecting to Ray (a cluster or a local instance) is
:mod:`edgeae.scan.ray_connect`.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

from edgeae._optional import require
from edgeae.scan.archive import ArchiveEntry
from edgeae.scan.local import Outcome, error_text
from edgeae.scan.pipeline import ImageResult, ScanConfig, scan_image
from edgeae.scan.ray_connect import CONNECT_DEADLINE_S as CONNECT_DEADLINE_S
from edgeae.scan.ray_connect import CONNECT_TIMEOUT_S as CONNECT_TIMEOUT_S
from edgeae.scan.ray_connect import LOCAL_OBJECT_STORE_BYTES as LOCAL_OBJECT_STORE_BYTES
from edgeae.scan.ray_connect import _init_ray, _sigterm_kept
from edgeae.scan.scoring import Scorer

# a worker process that dies on an image (killed, out of memory, a crash in native code) has its call tried this many
# more times on the restarted actor; then the image is recorded as failed
WORKER_RETRIES = 2

WORKER_DIED = (
    f"a Ray worker process died while reading or scoring it, {WORKER_RETRIES + 1} times (killed, out of memory or a "
    "crash in native code); --retry-failed scans it again"
)

# the actor options: a dead worker's actor is restarted (on any node) and the call it held retried WORKER_RETRIES times.
# One call in flight per actor: Ray charges a retry to every call queued on an actor that dies (Ray 2.60, with
# max_task_retries=0: each call queued behind the one that killed its actor failed with it), so a second call queued
# behind an image that kills its worker three times could be recorded as failed with it
ACTOR_OPTIONS: dict[str, Any] = {"num_cpus": 1, "max_restarts": -1, "max_task_retries": WORKER_RETRIES}

ImageReply = tuple[ImageResult | None, str, int, str]
"""What one call returns: (result, error, patches seen, the worker process that scanned it)."""


class ImageActor:
    """A Ray actor: one model (built here, so a model that cannot load ends the scan) scans whole images, one call
    each, exactly as a local worker process does."""

    def __init__(self, factory: Callable[[], Scorer], config: ScanConfig) -> None:
        from edgeae.firmware_sim.score import ScoreEngine

        self.engine = ScoreEngine(factory, workers=1)  # tiling on a thread beside the scoring, as in the local engine
        self.engine.warm()
        self.config = config
        self.whoami = _whoami()

    def identity(self) -> str:
        """This actor's worker process: another one answering later means that one died (a restart)."""
        return self.whoami

    def scan(self, path: str, name: str) -> ImageReply:
        """Scan the image at ``path`` (absolute); an exception of the image's is its failure, as in the local engine."""
        seen = 0

        def count(n: int) -> None:
            nonlocal seen
            seen += n

        try:
            result: ImageResult | None = scan_image(path, name, self.engine, self.config, progress=count)
            error = ""
        except Exception as exc:  # a corrupt image must not stop the scan: it is recorded as failed
            result, error = None, error_text(exc)
        return result, error, seen, self.whoami


def _whoami() -> str:
    """This worker process: its node and pid."""
    import ray

    node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else "local"  # local: a test's stand-in
    return f"{node}:{os.getpid()}"


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
    """Scan ``entries`` on a pool of Ray actors and yield one outcome per image as soon as it is done.

    ``on_ready()`` is called once Ray is up and the actors are asked for (their start and model loading count as
    scoring); each actor gets its first image once it is up. ``on_patches(n)`` reports an image's patches when its
    result comes back (the local engine reports inside an image).

    Starts a local Ray instance (``num_cpus``, no dashboard, loopback only) unless ``address`` names a cluster or Ray is
    already initialised; a Ray instance started here is shut down at the end, and the actors are ended in any case.
    ``actors`` (default: one per GPU when the cluster has GPUs and ``gpu_factory`` is given, with ``num_gpus=1`` each;
    else one per CPU) is never more than the images.
    """
    if not entries:
        return
    ray = require("ray")
    started = _init_ray(ray, address, num_cpus)
    quiet = _RayMessages(ray, verbose=logging.getLogger("edgeae").isEnabledFor(logging.DEBUG))
    pool: list[Any] = []
    try:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        use_gpu = gpus > 0 and gpu_factory is not None
        size = min(len(entries), actors or (gpus if use_gpu else max(1, int(resources.get("CPU", 1)))))
        actor = ray.remote(ImageActor).options(**ACTOR_OPTIONS, num_gpus=1 if use_gpu else 0)
        model = gpu_factory if use_gpu and gpu_factory is not None else factory
        pool = [actor.remote(model, config) for _ in range(size)]
        probes = [a.identity.remote() for a in pool]  # answered once the actor is up (its model loaded)
        if on_ready is not None:
            on_ready()
        yield from _calls(ray, pool, probes, entries, on_patches or (lambda n: None), quiet)
    finally:
        try:
            for a in pool:  # an early stop leaves no actor scanning on a cluster
                ray.kill(a)
            if started:
                with _sigterm_kept():
                    ray.shutdown()
        finally:
            quiet.close()


def _calls(
    ray: Any,
    pool: list[Any],
    probes: list[Any],
    entries: list[ArchiveEntry],
    report: Callable[[int], None],
    quiet: _RayMessages,
) -> Iterator[Outcome]:
    """Send each actor of ``pool`` one image at a time, the first once its ``identity()`` probe (``probes``) answered,
    the next as its last comes back; yield each outcome. An actor that cannot start (more actors than the cluster has
    CPUs or GPUs for) gets no image, so no image waits for it."""
    died = (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError, ray.exceptions.OutOfMemoryError,
            ray.exceptions.NodeDiedError, ray.exceptions.ObjectLostError)  # fmt: skip
    todo = iter(zip(entries, worker_items(entries), strict=True))
    running: dict[Any, tuple[int, ArchiveEntry]] = {}  # call -> (actor, image)
    starting = {probe: slot for slot, probe in enumerate(probes)}
    last = [""] * len(pool)  # the worker process that answered each actor's last call ("": not known)
    deaths = lost = 0  # deaths seen here: a lower bound (a worker restarted twice between two calls counts once)
    more = True  # images left to send

    def send(slot: int) -> None:
        nonlocal more
        item = next(todo, None) if more else None
        if item is None:
            more = False
        else:
            running[pool[slot].scan.remote(item[1]["path"], item[1]["name"])] = (slot, item[0])

    while running or (more and starting):
        # a timeout: Ctrl-C and SIGTERM get through
        ready, _ = ray.wait([*running, *starting], num_returns=1, timeout=1.0)
        for ref in ready:
            if ref in starting:
                slot = starting.pop(ref)
                last[slot] = _first_worker(ray, ref, died)
                send(slot)
                continue
            slot, entry = running.pop(ref)
            try:
                result, error, seen, whoami = ray.get(ref)
            except died as exc:
                _raise_if_init_failed(ray, exc)
                result, error, seen = None, WORKER_DIED, 0
                lost += 1
                deaths += WORKER_RETRIES + 1
                last[slot] = ""  # a new worker process answers next: not a further death
            except Exception as exc:  # anything else is this image's failure
                result, error, seen = None, error_text(exc), 0
            else:
                if last[slot] and last[slot] != whoami:
                    deaths += 1
                last[slot] = whoami
            send(slot)  # before the caller writes this one: the actor is not kept waiting
            report(seen)
            yield entry, result, error
    deaths = max(deaths, quiet.deaths)
    log = logging.getLogger(__name__)
    if lost:
        log.warning(
            "%d image(s) recorded as failed: a Ray worker process died on them %d times (%d worker death(s) in this "
            "scan; -v shows Ray's messages)", lost, WORKER_RETRIES + 1, deaths,
        )  # fmt: skip
    elif deaths:
        log.warning(
            "%d Ray worker process(es) died during the scan; their images were scanned again and every one finished",
            deaths,
        )


def _first_worker(ray: Any, probe: Any, died: tuple[type[BaseException], ...]) -> str:
    """The worker process that answered an actor's ``identity()`` probe ("" when its workers died first: its images
    are sent all the same, and recorded as failed if they die too)."""
    try:
        return str(ray.get(probe))
    except died as exc:
        _raise_if_init_failed(ray, exc)
        return ""


def _raise_if_init_failed(ray: Any, exc: BaseException) -> None:
    """A model that an actor cannot load (its constructor raised) ends the scan: every image would fail the same way."""
    if isinstance(exc, ray.exceptions.RayActorError) and exc.actor_init_failed:
        raise RuntimeError(f"the Ray actors cannot load the model: {_reason(exc)}") from exc


def _reason(exc: BaseException) -> str:
    """The last line of a Ray error's text (an actor's constructor error comes with its traceback)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1][:300] if lines else type(exc).__name__


def worker_items(entries: list[ArchiveEntry]) -> list[dict[str, str]]:
    """What the workers get: each path made absolute here (a worker's working directory is its raylet's, not this
    command's), the name exactly as the results store it."""
    cwd = os.getcwd()
    return [{"path": os.path.join(cwd, os.fspath(e.path)), "name": e.name} for e in entries]


class _RayMessages:
    """Keep Ray's driver-side messages off stdout unless -v: its error listener prints "(raylet) A worker died ..."
    lines (with colour codes) to ``sys.stdout`` whatever ``log_to_driver`` says, and colorama, which Ray loads, writes
    a colour reset to stdout at exit. Counts the worker deaths Ray reports. ``close()`` undoes it."""

    def __init__(self, ray: Any, *, verbose: bool) -> None:
        self.deaths = 0
        self.verbose = verbose
        self._module = getattr(getattr(ray, "_private", None), "worker", None)
        self._original = getattr(self._module, "print_to_stdstream", None)
        if self._original is not None:
            self._module.print_to_stdstream = self._print  # type: ignore[union-attr]

    def _print(self, data: dict[str, Any], ignore_prefix: bool) -> None:
        lines = [str(line) for line in data.get("lines", [])]
        self.deaths += sum("worker died" in line.lower() for line in lines)
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

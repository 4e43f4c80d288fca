"""The Ray engine: the local engine's per-image scan on a pool of Ray actors, on a local Ray instance or a cluster.

Ray Core only (actors, ``ray.wait``): a pool of :class:`ImageActor`, each holding one model (``num_gpus=1`` per actor
when the cluster has GPUs and a GPU scorer is given), gets **one call per image**; each call runs
:func:`edgeae.scan.pipeline.scan_image` on it, the local engine's own tiling, scoring and ranking (so both engines give
the same numbers), and returns its :class:`~edgeae.scan.pipeline.ImageResult`: plain arrays, nothing left on the
worker's disk, so on a cluster the driver needs nothing from the worker's node. This driver hands each result to the
same atomic per-image writer the local engine uses (resume and idempotence are identical).

A worker process that dies on an image (killed, out of memory, a crash in native code) is restarted and the call
tried :data:`WORKER_RETRIES` more times (the actor option ``max_task_retries``); then that image, and only it, is
recorded as failed. An actor is restarted :data:`ACTOR_RESTARTS` times in all (``max_restarts``); then it is dead for
good, the driver replaces it and sends the image it held to another actor, once. Actors whose workers die while loading
the model are replaced a bounded number of times; a pool left with none ends the scan (:class:`ActorsDiedError`), as a
model that cannot load does at once (:class:`ModelLoadError`). Each actor has one call in flight: the driver sends it
its next image when the last comes back, so the driver holds a few calls whatever the archive's size. Paths and the
model file must be readable on every node of a cluster. Connecting to Ray (a cluster or a local instance) is
:mod:`edgeae.scan.ray_connect`.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from edgeae._optional import require
from edgeae.scan.archive import ArchiveEntry
from edgeae.scan.errors import ActorsDiedError as ActorsDiedError
from edgeae.scan.errors import ClusterLostError
from edgeae.scan.errors import ModelLoadError as ModelLoadError
from edgeae.scan.local import Outcome, error_text
from edgeae.scan.pipeline import ImageResult, ScanConfig, scan_image
from edgeae.scan.ray_connect import CONNECT_DEADLINE_S as CONNECT_DEADLINE_S
from edgeae.scan.ray_connect import CONNECT_TIMEOUT_S as CONNECT_TIMEOUT_S
from edgeae.scan.ray_connect import LOCAL_OBJECT_STORE_BYTES as LOCAL_OBJECT_STORE_BYTES
from edgeae.scan.ray_connect import (
    HeadWatch,
    _init_ray,
    _sigterm_kept,
    alive_nodes,
    deaths_on,
    gcs_address,
    lost_nodes,
    same_node,
)
from edgeae.scan.ray_connect import _RayMessages as _RayMessages
from edgeae.scan.scoring import Scorer

# a worker process that dies on an image (killed, out of memory, a crash in native code) has its call tried this many
# more times on the restarted actor; then the image is recorded as failed
WORKER_RETRIES = 2

# an actor's worker process is restarted at most this many times in all: its image's retries and a few more deaths (of
# other images, or while the model loads again); then the actor is dead for good and the driver replaces it. Unbounded
# (-1, before), a worker that died while loading the model (killed, out of memory, SIGILL from a runtime on a node
# lacking its instruction set) was restarted for ever and the scan waited for it silently
ACTOR_RESTARTS = WORKER_RETRIES + 2

WORKER_DIED = (
    f"a Ray worker process died while reading or scoring it, {WORKER_RETRIES + 1} times (killed, out of memory or a "
    "crash in native code); --retry-failed scans it again"
)

# the actor options: a dead worker's actor is restarted (on any node) and the call it held retried WORKER_RETRIES times.
# One call in flight per actor: Ray charges a retry to every call queued on an actor that dies (Ray 2.60, with
# max_task_retries=0: each call queued behind the one that killed its actor failed with it), so a second call queued
# behind an image that kills its worker three times could be recorded as failed with it
ACTOR_OPTIONS: dict[str, Any] = {"num_cpus": 1, "max_restarts": ACTOR_RESTARTS, "max_task_retries": WORKER_RETRIES}


ACTORS_DIED = (
    "the Ray actors' worker processes die while loading the model (killed, out of memory or a crash in native code; "
    "-v shows Ray's messages)"
)

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
    else one per CPU) is never more than the images. Raises :class:`ModelLoadError` when the actors cannot load the
    model, :class:`ActorsDiedError` when their worker processes die while loading it until no actor is left.
    """
    if not entries:
        return
    ray = require("ray")
    started = _init_ray(ray, address, num_cpus)
    quiet = _RayMessages(ray, verbose=logging.getLogger("edgeae").isEnabledFor(logging.DEBUG))
    made: list[Any] = []  # every actor asked for, replacements included: all ended at the end
    watch: HeadWatch | None = None
    try:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        use_gpu = gpus > 0 and gpu_factory is not None
        size = min(len(entries), actors or (gpus if use_gpu else max(1, int(resources.get("CPU", 1)))))
        actor = ray.remote(ImageActor).options(**ACTOR_OPTIONS, num_gpus=1 if use_gpu else 0)
        model = gpu_factory if use_gpu and gpu_factory is not None else factory

        def make() -> Any:
            made.append(actor.remote(model, config))
            return made[-1]

        nodes = alive_nodes(ray)
        pool = _Pool(ray, make, size, entries, config.model.path)  # asks for the actors and their identity() probes
        pool.watch = watch = HeadWatch(gcs_address(ray)).start()
        if on_ready is not None:
            on_ready()
        yield from pool.run(on_patches or (lambda n: None))
        hosted = {w.rsplit(":", 1)[0] for w in pool.hosts}  # the nodes the actors ran on
        lost = lost_nodes(ray, nodes, quiet.dead_nodes, hosted)
        known = any(same_node(h, nid) for h in hosted for nid in lost)  # else: all deaths said with the lost nodes
        pool.warn(quiet.deaths, lost, deaths_on(pool.died_on, lost) if known else None)
    finally:
        if watch is not None:
            watch.stop()
        try:
            for a in made:  # an early stop leaves no actor scanning on a cluster
                ray.kill(a)
            if started:
                with _sigterm_kept():
                    ray.shutdown()
        finally:
            quiet.close()


class _Pool:
    """The driver's side of the actors: each gets one image at a time, the first once its ``identity()`` probe
    answered (an actor that cannot start, more actors than the cluster has CPUs or GPUs for, gets none, so no image
    waits for it), the next as its last comes back.

    A call that fails with a worker's death is followed by a probe of its actor: one that answers (restarted) means the
    image killed its worker ``WORKER_RETRIES + 1`` times (recorded as failed); one that fails means the actor is dead
    for good (:data:`ACTOR_RESTARTS` spent): its image is sent to another actor, once, and the actor is replaced. An
    actor that dies for good before its first answer (its workers die while loading the model) is replaced too, ``size``
    times in a row at most (the count starts again when a fresh actor first answers); then its place is left empty,
    and a pool left with none ends the scan."""

    def __init__(self, ray: Any, make: Callable[[], Any], size: int, entries: list[ArchiveEntry], model: str) -> None:
        self.ray, self.make, self.size, self.model = ray, make, size, model  # model: its file, for a load error
        self.died = (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError, ray.exceptions.OutOfMemoryError,
                     ray.exceptions.NodeDiedError, ray.exceptions.ObjectLostError)  # fmt: skip
        self.todo = deque(zip(entries, worker_items(entries), strict=True))  # (image, what its worker gets)
        self.actors: list[Any] = [make() for _ in range(size)]  # None: a place left empty
        self.up = [False] * size  # the actor in each place answered at least once
        self.starting = {a.identity.remote(): slot for slot, a in enumerate(self.actors)}  # probe -> place
        self.running: dict[Any, tuple[int, ArchiveEntry, dict[str, str]]] = {}  # call -> (place, image, item)
        self.held: dict[int, tuple[ArchiveEntry, dict[str, str]]] = {}  # place -> image its dead call waits on
        self.idle: list[int] = []  # places whose actor is up with no call (no image left to send, for now)
        self.last = [""] * size  # the worker process that answered each actor last ("": not known)
        self.hosts: set[str] = set()  # every worker process ("node:pid") that answered
        self.died_on: dict[str, int] = {}  # node id -> deaths counted below of worker processes there
        self.moved: set[str] = set()  # images sent to another actor after theirs died for good
        # deaths seen here: a lower bound (a worker restarted twice between two calls counts once)
        self.deaths = self.lost = self.failed_starts = self.empty = 0
        self.starts_since_up = 0  # actors that never came up since one last did: the replacement budget
        self.watch = HeadWatch(None)  # the cluster's head node: its loss ends the scan (iter_ray sets it)

    def run(self, report: Callable[[int], None]) -> Iterator[Outcome]:
        """Yield each image's outcome as its call comes back; a call to Ray that fails while the head node refuses
        connections is :class:`ClusterLostError` (``self.watch``)."""
        try:
            yield from self._run(report)
        except (ModelLoadError, ActorsDiedError, ClusterLostError):
            raise
        except Exception as exc:  # the raylet this driver is attached to gone with the head node ("Broken pipe")
            self.watch.failed(exc)
            raise

    def _run(self, report: Callable[[int], None]) -> Iterator[Outcome]:
        while self.running or self.held or (self.todo and self.starting):
            # a timeout: Ctrl-C and SIGTERM get through
            ready, _ = self.ray.wait([*self.running, *self.starting], num_returns=1, timeout=1.0)
            self.watch.check()
            for ref in ready:
                if ref in self.starting:
                    yield from self._answered(self.starting.pop(ref), ref)
                    continue
                slot, entry, item = self.running.pop(ref)
                try:
                    result, error, seen, whoami = self.ray.get(ref)
                except self.died as exc:
                    _raise_if_init_failed(self.ray, exc, self.model)
                    self.held[slot] = (entry, item)  # its outcome waits for the probe: restarted or dead for good?
                    self.starting[self.actors[slot].identity.remote()] = slot
                    continue
                except Exception as exc:  # anything else is this image's failure, unless the cluster is lost
                    self.watch.failed(exc)
                    result, error, seen = None, error_text(exc), 0
                else:
                    if self.last[slot] and self.last[slot] != whoami:
                        self._died(slot, 1)
                    self.last[slot] = whoami
                    self.hosts.add(whoami)
                self._ready(slot)  # before the caller writes this one: the actor is not kept waiting
                report(seen)
                yield entry, result, error
        if self.todo:  # images left and no actor: every place was left empty
            raise ActorsDiedError(
                f"{ACTORS_DIED}: {self.failed_starts} actor(s) died for good before they could scan an image, each "
                f"after {ACTOR_RESTARTS} restarts; the images finished before are kept (run the same command again to "
                "scan the rest once the cause is fixed)"
            )

    def _answered(self, slot: int, probe: Any) -> Iterator[Outcome]:
        """An identity() probe came back: the actor is up (its held image, if any, killed it every time), or dead."""
        try:
            whoami = str(self.ray.get(probe))
        except self.died as exc:
            _raise_if_init_failed(self.ray, exc, self.model)
            yield from self._dead_for_good(slot)
            return
        if not self.up[slot]:  # a fresh actor's first answer (not one after an image killed its worker, review r13):
            self.starts_since_up = 0  # places that failed to start may be tried again
        held = self.held.pop(slot, None)
        if held is not None:
            self._died(slot, WORKER_RETRIES + 1)  # on the node of the process that last had it
        self.up[slot], self.last[slot] = True, whoami  # after a death: a new process, counted just above
        self.hosts.add(whoami)
        self._ready(slot)
        if held is not None:
            self.lost += 1
            yield held[0], None, WORKER_DIED

    def _dead_for_good(self, slot: int) -> Iterator[Outcome]:
        """The actor in ``slot`` will not answer again: its held image goes to another actor (once), the place gets a
        fresh actor unless too many never came up."""
        held = self.held.pop(slot, None)
        if held is not None:
            self._died(slot, 1)
            if held[0].name in self.moved:  # its second actor died for good too: failed, not sent on for ever
                self.lost += 1
                yield held[0], None, WORKER_DIED
            else:
                self.moved.add(held[0].name)
                self.todo.appendleft(held)
        if not self.up[slot]:
            self.failed_starts += 1  # ACTOR_RESTARTS + 1 worker deaths, counted apart from the images' ones
            self.starts_since_up += 1
        self.last[slot] = ""
        # an actor that scanned images is always replaced (its deaths came with images, which are bounded); one that
        # never came up, ``size`` times in a row (a node where the model cannot load, a few actors placed there; the
        # count starts again when a fresh actor first answers, so failures hours apart on a long scan do not add up)
        if self.up[slot] or self.starts_since_up <= self.size:
            self.actors[slot], self.up[slot] = self.make(), False
            self.starting[self.actors[slot].identity.remote()] = slot
        else:
            self.actors[slot] = None
            self.empty += 1
        self._send()  # an image given back, and an actor up with nothing to do

    def _died(self, slot: int, n: int) -> None:
        """``n`` deaths of the worker process of ``slot`` (its last one's node: the node they happened on)."""
        self.deaths += n
        node = self.last[slot].rsplit(":", 1)[0]
        self.died_on[node] = self.died_on.get(node, 0) + n

    def _ready(self, slot: int) -> None:
        self.idle.append(slot)
        self._send()

    def _send(self) -> None:
        while self.idle and self.todo:
            slot = self.idle.pop(0)
            entry, item = self.todo.popleft()
            self.running[self.actors[slot].scan.remote(item["path"], item["name"])] = (slot, entry, item)

    def warn(self, reported: int, lost: dict[str, str] | None = None, lost_deaths: int | None = None) -> None:
        """The scan's warnings: nodes ``lost`` (id -> address) that held actors, images failed with their workers,
        deaths (those on the lost nodes, ``lost_deaths``, said with them: all, where not given), actors that never
        came up."""
        log = logging.getLogger(__name__)
        # Ray's messages (a lower bound: it folds repeated ones) count the deaths of the actors that never came up too
        deaths = max(self.deaths, reported - self.failed_starts * (ACTOR_RESTARTS + 1))
        if self.failed_starts:
            log.warning(
                "%d Ray actor(s) died for good before they could scan an image (%s)%s", self.failed_starts,
                ACTORS_DIED, f"; the scan went on with {self.size - self.empty} of {self.size}" if self.empty else "",
            )  # fmt: skip
        if lost:  # said as such, not as "a worker process died" (audit s36 a2): the pool may have fewer actors now
            up = sum(1 for a, u in zip(self.actors, self.up, strict=True) if a is not None and u)
            shown = ", ".join(f"{addr} (node {nid[:8]})" for nid, addr in list(lost.items())[:3])
            log.warning(
                "%d Ray node(s) were lost during the scan (%s%s; Ray marked them dead): the images their actors held "
                "were scanned again on the actors left%s", len(lost), shown, ", ..." if len(lost) > 3 else "",
                f"; the scan went on with {up} of {self.size} actors" if up < self.size else "",
            )  # fmt: skip
        if self.lost:
            log.warning(
                "%d image(s) recorded as failed: a Ray worker process died on them %d times (%d worker death(s) in "
                "this scan; -v shows Ray's messages)", self.lost, WORKER_RETRIES + 1, deaths,
            )  # fmt: skip
        elif deaths > (0 if not lost else deaths if lost_deaths is None else lost_deaths):  # not on a lost node
            log.warning(
                "%d Ray worker process(es) died during the scan; their images were scanned again and every one "
                "finished", deaths - (lost_deaths or 0 if lost else 0),
            )  # fmt: skip


def _raise_if_init_failed(ray: Any, exc: BaseException, model: str) -> None:
    """A model that an actor cannot load (its constructor raised) ends the scan: every image would fail the same way.
    Said as the local engine says it (:func:`edgeae.scan.local.load_error`): the model file, then the error."""
    if isinstance(exc, ray.exceptions.RayActorError) and exc.actor_init_failed:
        raise ModelLoadError(f"cannot load the model {model}: {_reason(exc)}") from exc


def _reason(exc: BaseException) -> str:
    """The last line of a Ray error's text (an actor's constructor error comes with its traceback)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1][:300] if lines else type(exc).__name__


def worker_items(entries: list[ArchiveEntry]) -> list[dict[str, str]]:
    """What the workers get: each path made absolute here (a worker's working directory is its raylet's, not this
    command's), the name exactly as the results store it."""
    cwd = os.getcwd()
    return [{"path": os.path.join(cwd, os.fspath(e.path)), "name": e.name} for e in entries]

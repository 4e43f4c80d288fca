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
Connecting to Ray (a cluster or a local instance) is :mod:`edgeae.scan.ray_connect`.
"""

from __future__ import annotations

import atexit
import logging
import os
import pickle
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from edgeae._optional import require
from edgeae.scan.archive import ArchiveEntry
from edgeae.scan.local import Outcome, error_text
from edgeae.scan.pipeline import ImageAccumulator, ScanConfig, score_chunk, tile_image
from edgeae.scan.ray_connect import CONNECT_DEADLINE_S as CONNECT_DEADLINE_S
from edgeae.scan.ray_connect import CONNECT_TIMEOUT_S as CONNECT_TIMEOUT_S
from edgeae.scan.ray_connect import LOCAL_OBJECT_STORE_BYTES as LOCAL_OBJECT_STORE_BYTES
from edgeae.scan.ray_connect import _init_ray, _sigterm_kept
from edgeae.scan.scoring import Scorer

# a worker process that dies on an image (killed, out of memory, a crash in native code) has its task tried this many
# more times; then the image is recorded as failed (Ray Data's default retries it forever)
WORKER_RETRIES = 2


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


class TileScoreActor(ScoreActor):
    """Ray Data callable class for CPU actors: archive rows -> :func:`tile_rows` -> scored chunk rows, one at a time."""

    def __call__(self, batch: dict[str, np.ndarray]) -> Iterator[dict[str, np.ndarray]]:  # type: ignore[override]
        for row in tile_rows(batch, self.config):
            yield super().__call__(row)


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

    Beyond :data:`MAX_BLOCKS` images a Ray task holds several, and a worker that dies on one image takes the
    others of its task down with it: those are scanned again in a further pass, fewer to a task, until a pass gave
    each image a task of its own (or lost every task it had, more than one), so only the image that kills its worker
    fails.
    """
    if not entries:
        return
    ray = require("ray")
    report = on_patches or (lambda n: None)
    started = _init_ray(ray, address, num_cpus)
    quiet = _RayMessages(ray, verbose=logging.getLogger("edgeae").isEnabledFor(logging.DEBUG))
    errored_blocks = None
    log = logging.getLogger(__name__)
    try:
        with warnings.catch_warnings():  # Ray's own deprecated context fields, nothing we set
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        # a task whose worker died WORKER_RETRIES + 1 times drops its block (the images in it are recorded as failed
        # below) instead of ending the dataset; our own functions catch every exception of theirs
        errored_blocks, ctx.max_errored_blocks = ctx.max_errored_blocks, -1
        if not logging.getLogger("edgeae").isEnabledFor(logging.DEBUG):
            # CRITICAL: a dropped block (a worker that died WORKER_RETRIES + 1 times) is logged at ERROR with its
            # traceback; the image is recorded as failed and counted below, and an error that ends the scan is raised
            logging.getLogger("ray.data").setLevel(logging.CRITICAL)
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        use_gpu = gpus > 0 and gpu_factory is not None
        size = actors or (gpus if use_gpu else max(1, int(resources.get("CPU", 1))))
        stage_factory = gpu_factory if use_gpu and gpu_factory is not None else factory
        by_name = {e.name: e for e in entries}
        finished: set[str] = set()
        if on_ready is not None:
            on_ready()
        pending, blocks = entries, min(len(entries), MAX_BLOCKS)
        while True:
            ds = _dataset(ray, pending, blocks, config, stage_factory, use_gpu, size)
            yield from _join(ds, config, by_name, finished, report)
            lost = [e for e in pending if e.name not in finished]
            # done when each image had a task of its own; every task of a pass that had several lost: a systematic
            # failure (the model, the nodes), not one image, and a further pass would only die again
            if not lost or blocks == len(pending) or (len(lost) == len(pending) and blocks > 1):
                break
            # a failed task's outputs are dropped: the images that shared a task with the one that killed its worker
            log.info("%d image(s) lost with a Ray task that held several: scanning them again", len(lost))
            pending, blocks = lost, min(len(lost), max(MAX_BLOCKS, 2 * blocks))
        # every image not finished went down with a worker (its block dropped after the retries): failed, not lost
        if lost:
            log.warning(
                "%d image(s) recorded as failed: a Ray worker process died on them %d times (%d worker death(s) "
                "reported by Ray in this scan; -v shows Ray's messages)", len(lost), WORKER_RETRIES + 1, quiet.deaths,
            )  # fmt: skip
        elif quiet.deaths:
            log.warning(
                "%d Ray worker process(es) died during the scan; their tasks were retried and every image finished",
                quiet.deaths,
            )
        for e in lost:
            yield e, None, WORKER_DIED
    finally:
        if errored_blocks is not None:
            ctx.max_errored_blocks = errored_blocks
        try:
            if started:
                with _sigterm_kept():
                    ray.shutdown()
        finally:
            quiet.close()


# the most blocks (Ray tasks of the first stage) a pass splits its images into. One block per image measured, 20,000
# tiny images, 2 CPUs, Ray 2.60 (session 34): driver RSS peak 378 MiB against 231 MiB with 2,000 blocks (~8 KB a
# block: ~16 GB for 2 M images) and 189 s against 27 s; images lost with a shared task are scanned again (iter_ray)
MAX_BLOCKS = 2000

# Ray 2.60 deprecates map_batches' **ray_remote_args ("removed in Ray 2.64") but its named remote parameters
# (label_selector, fallback_strategy, max_calls, resources, accelerator_type, runtime_env) have no replacement for
# max_restarts, max_task_retries or max_retries, and without them Ray Data retries a dying worker's task forever:
# this one warning, which a user cannot act on, is kept off; pyproject pins ray[data]<2.64
_REMOTE_ARGS_DEPRECATED = r"`ray_remote_args` is deprecated"


def _dataset(
    ray: Any,
    entries: list[ArchiveEntry],
    blocks: int,
    config: ScanConfig,
    factory: Callable[[], Scorer],
    use_gpu: bool,
    size: int,
) -> Any:
    """The Ray Data pipeline for one pass: ``entries`` in ``blocks`` blocks -> scored chunk rows (lazy)."""
    ds = ray.data.from_items(worker_items(entries), override_num_blocks=blocks)
    # a worker that dies (killed, out of memory, a crash in native code) is replaced, and the task it held tried
    # WORKER_RETRIES more times (Ray Data's default: forever)
    retries: dict[str, Any] = {"max_restarts": -1, "max_task_retries": WORKER_RETRIES}
    stage: type[ScoreActor] = TileScoreActor  # on CPUs, each actor tiles its images: one stage, as Ray Data's fusion
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_REMOTE_ARGS_DEPRECATED, category=DeprecationWarning)
        if use_gpu:  # of the two stages made it (tile tasks apart would wait for CPUs that actors hold, and stall)
            ds = ds.map_batches(
                tile_rows, batch_size=1, fn_kwargs={"config": config}, num_cpus=1, max_retries=WORKER_RETRIES
            )
            stage = ScoreActor
        return ds.map_batches(
            stage,
            batch_size=1,
            fn_constructor_kwargs={"factory": factory, "config": config},
            compute=ray.data.ActorPoolStrategy(size=size if use_gpu else min(size, blocks)),  # an image a task
            num_cpus=1,
            num_gpus=1 if use_gpu else 0,
            **retries,
        )


def _join(
    ds: Any,
    config: ScanConfig,
    by_name: dict[str, ArchiveEntry],
    finished: set[str],
    report: Callable[[int], None],
) -> Iterator[Outcome]:
    """Consume one pass's stream: join each image's chunks, yield its outcome once, add its name to ``finished``."""
    partial: dict[str, ImageAccumulator] = {}
    expected: dict[str, int] = {}
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


WORKER_DIED = (
    f"a Ray worker process died while reading or scoring it, {WORKER_RETRIES + 1} times in its own task (killed, out "
    "of memory or a crash in native code); --retry-failed scans it again"
)


def worker_items(entries: list[ArchiveEntry]) -> list[dict[str, str]]:
    """The rows the workers get: each path made absolute here (a worker's working directory is its raylet's, not
    this command's), the name exactly as the results store it."""
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

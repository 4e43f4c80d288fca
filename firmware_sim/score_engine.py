"""Overlapping work on threads: a :class:`ScoreEngine` keeps both cores busy with one scoring runner per
thread while the caller prepares the next batch (results in submission order), and :func:`background` runs an
iterator (decoding, tiling) a few items ahead on a thread.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

Runner = Callable[[np.ndarray], np.ndarray]
Fill = tuple[np.ndarray, np.ndarray]
"""A batch's partial patches: their indices in the batch and their (k, P, P) bool valid masks (True = data)."""


class ScoreEngine:
    """Scores batches on ``workers`` background threads, each with its own runner (its own interpreter:
    ``make_runner`` is called once per thread), at most ``depth`` batches in flight; results come back in
    submission order, so everything downstream sees the order of the sequential path.

    Interpreters release the GIL while they run, so two runners keep two cores busy while the caller decodes
    and cuts the next batch. ``workers=1`` still overlaps the caller's work with inference.
    """

    def __init__(self, make_runner: Callable[[], Runner], workers: int = 1, depth: int = 0, batch: int = 64) -> None:
        import concurrent.futures as cf
        import threading

        self.make_runner = make_runner
        self.batch = max(1, int(batch))  # patches per submitted batch (callers fill batches of this size)
        self.workers = max(1, int(workers))
        self.depth = depth or 2 * self.workers
        self._local = threading.local()
        self._pool = cf.ThreadPoolExecutor(self.workers, thread_name_prefix="edgeae-score")
        self._inflight: deque[tuple[Any, cf.Future[np.ndarray]]] = deque()
        self._lock = threading.Lock()
        self.busy_s = 0.0
        self.done_items = 0

    def _run(self, batch: np.ndarray, fill: Fill | None = None) -> np.ndarray:
        runner: Any = getattr(self._local, "runner", None)  # a Runner; score_runner's take a Fill too
        if runner is None:
            runner = self._local.runner = self.make_runner()
        t = time.perf_counter()
        out = runner(batch) if fill is None else runner(batch, fill)
        with self._lock:  # what the interpreters really cost, for the deadline projection
            self.busy_s += time.perf_counter() - t
            self.done_items += len(batch)
        return out

    def warm(self) -> None:
        """Build every worker's runner now (each thread loads its own interpreter), not during a frame."""
        import threading

        barrier = threading.Barrier(self.workers)

        def build() -> None:
            barrier.wait(timeout=60)  # one task per thread: no thread can take two of them
            if getattr(self._local, "runner", None) is None:
                self._local.runner = self.make_runner()

        for fut in [self._pool.submit(build) for _ in range(self.workers)]:
            fut.result()

    @property
    def ms_per_item(self) -> float | None:
        """Wall ms per item with every worker busy (interpreter time / items / workers), None before any."""
        with self._lock:
            return 1e3 * self.busy_s / self.done_items / self.workers if self.done_items else None

    def submit(self, batch: np.ndarray, tag: Any = None, fill: Fill | None = None) -> list[tuple[Any, np.ndarray]]:
        """Queue one batch (the engine owns it from now on); returns the results already finished, in order
        (waiting for the oldest when ``depth`` batches are in flight). ``fill``: the batch's partial patches,
        handed to the runner (one of :func:`.score.score_runner`'s) to fill their no-data pixels."""
        self._inflight.append((tag, self._pool.submit(self._run, batch, fill)))
        return self.ready(wait_for=len(self._inflight) - self.depth)

    def ready(self, wait_for: int = 0) -> list[tuple[Any, np.ndarray]]:
        """Finished results in submission order; blocks until at least ``wait_for`` are available."""
        out: list[tuple[Any, np.ndarray]] = []
        while self._inflight and (len(out) < wait_for or self._inflight[0][1].done()):
            tag, fut = self._inflight.popleft()
            out.append((tag, fut.result()))
        return out

    def drain(self) -> list[tuple[Any, np.ndarray]]:
        """Wait for every batch in flight; their results in order."""
        return self.ready(wait_for=len(self._inflight))

    @property
    def pending(self) -> int:
        return len(self._inflight)

    def close(self) -> None:
        for _, fut in self._inflight:
            fut.cancel()
        self._inflight.clear()
        self._pool.shutdown(wait=True)

    def __enter__(self) -> ScoreEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def background(items: Iterator[Any], depth: int = 2, name: str = "edgeae-tiling") -> Iterator[Any]:
    """Iterate ``items`` produced by a background thread, at most ``depth`` ahead (decoding and tiling
    overlap with scoring); the producer's exceptions are raised here, and closing stops the thread and then
    closes ``items`` (a generator's ``finally`` blocks run, in the caller's thread).

    Closing (Ctrl-C, SIGTERM, an error in the caller) sets the thread's stop flag and waits for the thread. The flag
    is registered for that thread (:func:`edgeae.stopping.stop_on`), so a band iteration running in ``items``
    (:mod:`edgeae.row_bands`) stops at its next band even when it has nothing to hand over: a scan of an all-no-data
    product puts no item, and waited for the whole product before."""
    import queue
    import threading

    from edgeae.stopping import stop_on

    q: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()
    end = object()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            with stop_on(stop):
                for item in items:
                    if not put(item):
                        return
            put(end)
        except BaseException as exc:  # edgeae.stopping.Stopped once the caller has left: put gives up at once
            put(_Raised(exc))

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is end:
                return
            if isinstance(item, _Raised):
                raise item.exc
            yield item
    finally:
        stop.set()
        thread.join()
        close = getattr(items, "close", None)
        if close is not None:
            close()


@dataclass
class _Raised:
    exc: BaseException

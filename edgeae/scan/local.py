"""The local engine: the cores of this machine, one model per worker process, no server.

A ``ProcessPoolExecutor`` (spawned processes, so a parent that already loaded torch is safe) gets one image
per task; each worker builds its scorer once and returns the image's :class:`ImageResult`. Only this
process writes the results folder. At most ``2 × workers`` images are in flight, so an archive of millions
of files does not queue millions of futures. Workers add to a shared counter after every chunk, which
drives a live progress bar even while a huge strip is being scanned. Each worker builds its models before its first
image: a model it cannot load ends the scan (:class:`~edgeae.scan.errors.ModelLoadError`), as with the Ray engine, with
no image recorded as failed for it (the images other workers, which loaded it, finished before are kept).
Workers ignore SIGINT, from their first instruction (the disposition is inherited when they are started): Ctrl-C
signals the whole process group, and the driver stops them itself (:func:`_stop_workers`); until session 37 a worker
waiting for work printed a ``KeyboardInterrupt`` traceback under the command's "interrupted" line.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import logging
import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from edgeae.scan.archive import ArchiveEntry
from edgeae.scan.errors import ModelLoadError
from edgeae.scan.pipeline import ImageResult, ScanConfig, scan_image
from edgeae.scan.scoring import Scorer

Outcome = tuple[ArchiveEntry, ImageResult | None, str]  # (entry, result, error)

_worker: dict[str, Any] = {}


def _init_worker(
    factory: Callable[[], Scorer], counter: Any, config: ScanConfig, threads: int = 1, verbose: bool = False
) -> None:
    from edgeae import logs

    with contextlib.suppress(ValueError):  # off the main thread (never in a pool's worker): left as inherited
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle: it stops the workers
    # a spawned process starts with no logging set up: third-party warnings (tifffile on a corrupt file) would
    # reach stderr through Python's last-resort handler; the parent's quiet (or -v) setting applies here too
    logs.setup(verbose)
    # a product's notes at open (an invalid map projection: edgeae.archive.reader.NOTES_LOGGER) were given by this
    # scan's driver, which opens every image it hands out to count its patches: not printed a second time from here
    logging.getLogger("edgeae.archive.reader.notes").setLevel(logging.ERROR)
    # a worker whose driver was killed (SIGKILL: no shutdown reaches it) would wait for work for ever: it leaves
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True, name="edgeae-parent-watch").start()
    _worker["counter"] = counter
    _worker["config"] = config
    try:
        _worker["scorer"] = _engine(factory, threads, warm=True)
    except Exception as exc:  # raising here would break the pool ("a worker process died"): each task says it instead
        _worker["load_error"] = load_error(config, exc)


def _watch_parent(
    parent: int,
    interval: float = 1.0,
    *,
    getppid: Callable[[], int] = os.getppid,
    leave: Callable[[int], Any] = os._exit,
) -> None:
    """Return only by ending this process (``leave(1)``) once its parent is no longer ``parent`` (it died and the
    process was re-parented); checks every ``interval`` seconds."""
    while getppid() == parent:
        time.sleep(interval)
    leave(1)


def _engine(factory: Callable[[], Scorer], threads: int, *, warm: bool = False) -> Any:
    """The fast path: ``threads`` scorers (one model each) on threads, tiling overlapped with scoring; ``warm``: each
    thread's model is loaded now (an error of the loader is raised here, not by each image's first chunk)."""
    from edgeae.firmware_sim.score import ScoreEngine

    engine = ScoreEngine(factory, workers=threads)
    if warm:
        try:
            engine.warm()
        except BaseException:
            engine.close()
            raise
    return engine


def load_error(config: ScanConfig, exc: BaseException) -> str:
    """The one line that says the model cannot be loaded: its file and the loader's error."""
    return f"cannot load the model {config.model.path}: {error_text(exc)}"


def _bump(n: int) -> None:
    counter = _worker["counter"]
    with counter.get_lock():
        counter.value += n


def _scan_one(entry: ArchiveEntry) -> Outcome:
    if "load_error" in _worker:  # the model did not load in this worker: the driver ends the scan
        raise ModelLoadError(_worker["load_error"])
    try:
        result = scan_image(entry.path, entry.name, _worker["scorer"], _worker["config"], progress=_bump)
    except Exception as exc:  # a corrupt image must not stop the scan: it is recorded as failed
        return entry, None, error_text(exc)
    return entry, result, ""


def error_text(exc: BaseException) -> str:
    """An image's failure in one line: the error's type and message, and, for a path that is not UTF-8, why."""
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")[:500]
    if isinstance(exc, UnicodeEncodeError) and exc.reason == "surrogates not allowed":  # GDAL's readers (rasterio)
        text = f"its path is not UTF-8, and the reader it needs opens UTF-8 paths only: rename it to scan it ({text})"
    return text


def iter_local(
    entries: list[ArchiveEntry],
    config: ScanConfig,
    factory: Callable[[], Scorer],
    *,
    workers: int = 2,
    on_patches: Callable[[int], None] | None = None,
) -> Iterator[Outcome]:
    """Scan ``entries`` and yield one outcome per image as each finishes (order not guaranteed).

    ``workers`` cores are used: with fewer images than workers (one NAC strip) the images are scanned in
    this process with ``workers`` models on threads scoring chunks of the same image; otherwise one process
    per worker (spawned) scans whole images, each with its share of the cores. Tiling always runs in a
    background thread beside the scoring. ``workers=0`` scans in this process, one chunk after the other
    (the reference path). ``on_patches(n)`` reports progress in patches. Raises :class:`ModelLoadError` (before
    any outcome) when the model cannot be loaded.
    """
    report = on_patches or (lambda n: None)
    if not entries:
        return
    procs = min(workers, len(entries))
    if procs <= 1:
        try:
            scorer: Any = factory() if workers <= 0 else _engine(factory, workers, warm=True)
        except Exception as exc:
            raise ModelLoadError(load_error(config, exc)) from exc
        try:
            for entry in entries:
                try:
                    yield entry, scan_image(entry.path, entry.name, scorer, config, progress=report), ""
                except Exception as exc:
                    yield entry, None, error_text(exc)
        finally:
            if workers > 0:
                scorer.close()
        return
    threads = max(1, workers // procs)
    ctx = mp.get_context("spawn")
    counter = ctx.Value("q", 0)
    seen = 0
    todo = list(reversed(entries))  # popped from the end: archive order
    verbose = logging.getLogger("edgeae").isEnabledFor(logging.DEBUG)
    pool = cf.ProcessPoolExecutor(procs, mp_context=ctx, initializer=_init_worker,
                                  initargs=(factory, counter, config, threads, verbose))  # fmt: skip
    running: set[cf.Future[Outcome]] = set()
    try:
        with _sigint_ignored():  # the worker processes are started by the first submits: they inherit SIG_IGN
            while len(running) < procs and todo:
                running.add(pool.submit(_scan_one, todo.pop()))
        while True:
            while len(running) < 2 * procs and todo:
                running.add(pool.submit(_scan_one, todo.pop()))
            if not running:
                break
            done, running = cf.wait(running, timeout=0.25, return_when=cf.FIRST_COMPLETED)
            with counter.get_lock():
                now = counter.value
            if now > seen:
                report(now - seen)
                seen = now
            for fut in done:
                try:
                    outcome = fut.result()
                except cf.process.BrokenProcessPool as exc:
                    # still a BrokenExecutor, which the command reports in one line (status 1), not a traceback
                    raise cf.process.BrokenProcessPool(
                        "out of memory, or killed; the images finished before it are saved"
                    ) from exc
                yield outcome
    finally:
        # On Ctrl-C or an early stop, queued images are dropped (a resume rescans them), not waited for.
        if running:
            _stop_workers(pool)
        pool.shutdown(wait=not running, cancel_futures=True)


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored in this process meanwhile (the main thread only; elsewhere nothing changes): a process started
    now inherits the disposition, so a Ctrl-C while it is still importing (before :func:`_init_worker` runs) prints no
    traceback either. A Ctrl-C in those few milliseconds is not seen (press it again)."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is None:
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def _stop_workers(pool: cf.ProcessPoolExecutor, timeout: float = 2.0) -> None:
    """End the pool's worker processes now (an early stop: their images are dropped anyway) and wait for them.

    Left running, a worker still starting up unpickles the shared counter after this process has exited and
    removed its semaphore, and prints a FileNotFoundError traceback under the command's "interrupted" line."""
    procs = list((getattr(pool, "_processes", None) or {}).values())  # pid -> Process; private, hence the guard
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    deadline = time.monotonic() + timeout
    for proc in procs:
        proc.join(max(0.0, deadline - time.monotonic()))
    # still there after SIGTERM (a loaded machine, a worker deep in a C call, or one so early in its start that its
    # sentinel already reads closed and join returns at once): SIGKILL until waitpid says it ended (is_alive polls it)
    end = time.monotonic() + max(timeout, 10.0)
    for proc in procs:
        while proc.is_alive() and time.monotonic() < end:
            proc.kill()
            time.sleep(0.02)

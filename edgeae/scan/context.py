"""``edgeae scan --score context-knn``: the two-context kNN ranking of the whole scanned set.

The ``two-context kNN (mu)`` score (:func:`edgeae.anomaly.baselines.context_knn`) measures each patch against the
patches of every image of the set, so no image's score is final until every image is scored. The scan therefore
ranks in two steps: each image, as it finishes, keeps its latents (``parts/<key>.latents.npy``) and, meanwhile, its
ranking against its own patches; once no image is left to scan, :func:`rank_set` ranks every done image's patches
together (frame context: the image; product context: images whose names give the same match of ``--group``, or
all images) and rewrites each part's scores and best patches. A resumed or extended scan ranks the grown set again,
so scores are relative to the images scanned so far. The whole set is bounded up front (:func:`check_set_size`:
500,000 patches and 2 GiB of latents); a set of more than :data:`edgeae.anomaly.baselines.CONTEXT_BANK` patches
is measured against a seeded sample of them.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from edgeae._optional import require
from edgeae.printable import printable
from edgeae.scan.archive import ArchiveEntry
from edgeae.scan.out_checks import PartDamagedError, read_part, write_part
from edgeae.scan.pipeline import ScanConfig, TopK, best_patches, count_patches
from edgeae.scan.state import ScanStore, _atomic_write, save_top

log = logging.getLogger(__name__)


def check_set_size(entries: list[ArchiveEntry], config: ScanConfig) -> None:
    """Raise before any scoring when the set (header sizes; an unreadable header counts 0, and so does a file over
    the reader's decode limits, which will fail: :func:`edgeae.scan.pipeline.count_patches`) would give more patches
    than :data:`edgeae.anomaly.baselines.KNN_MAX` (the ranking's scaled copies of the latents, float64, grow with
    it) or more latents than :data:`edgeae.anomaly.context.LOCAL_Z_MAX_BYTES`, and when an image's name does not
    match ``--group``. The message names the images that give the most patches."""
    from edgeae.anomaly.baselines import KNN_MAX
    from edgeae.anomaly.context import LOCAL_Z_MAX_BYTES, local_z_bytes

    for e in entries:
        config.product(e.name)  # raises for a name outside the group regex
    counts = [count_patches(e.path, config) for e in entries]
    n = sum(counts)
    nbytes = local_z_bytes(n, config.model.latent * config.views)
    if n > KNN_MAX or nbytes > LOCAL_Z_MAX_BYTES:
        order = sorted(range(len(entries)), key=lambda i: -counts[i])[:3]
        largest = ", ".join(f"{entries[i].name} ({counts[i]:,})" for i in order if counts[i])
        raise ValueError(
            f"--score context-knn ranks every patch of the {len(entries)} images together: they give {n:,} patches "
            f"({nbytes / 2**20:,.0f} MiB of latents with --views {config.views}), over the limit of {KNN_MAX:,} "
            f"patches and {LOCAL_Z_MAX_BYTES >> 20} MiB (most from {largest}): use a larger --stride, fewer views "
            "or fewer images per scan"
        )


TICK_S = 0.5  # how often the ranking's elapsed-time bar is redrawn


@contextlib.contextmanager
def _elapsed(desc: str, show: bool) -> Iterator[None]:
    """A bar that counts the seconds of a step that reports no progress of its own (the set's kNN), redrawn every
    :data:`TICK_S` from a thread; only when ``show`` (the scan's bars are: stderr is a terminal)."""
    if not show:
        yield
        return
    bar = require("tqdm").tqdm(desc=desc, bar_format="{desc}: {elapsed} elapsed", leave=True)
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(TICK_S):
            bar.refresh()

    ticker = threading.Thread(target=tick, name="context-knn-progress", daemon=True)
    ticker.start()
    try:
        yield
    finally:
        stop.set()
        ticker.join()
        bar.close()


def rank_set(store: ScanStore, entries: list[ArchiveEntry], progress: bool = False) -> dict[str, Any]:
    """Rank every done image's patches together and rewrite their parts' scores and best patches.

    An image recorded as done whose latents are missing, unreadable or not its patches' (a deleted or damaged
    file) is recorded as failed with the reason, so ``--retry-failed`` scans it again; it is never ranked with
    made-up latents. Returns what was ranked (images, patches, seconds)."""
    import time

    from edgeae.anomaly.baselines import context_knn

    pa = require("pyarrow")
    tqdm = require("tqdm").tqdm
    config = store.config
    t0 = time.perf_counter()
    recs = store.reconcile(entries)
    done = [e for e in entries if (r := recs.get(e.name)) is not None and r.status == "done"]
    ranked: list[ArchiveEntry] = []
    latents: list[np.ndarray] = []
    lost = 0
    for e in done:
        path = store.latents_path(e.key)
        try:
            lat = np.load(path)  # in memory (bounded up front): a memory map per image would hold a descriptor each
            want = recs[e.name].n_patches
            if lat.ndim != 3 or len(lat) != want or lat.dtype != np.float32:
                raise ValueError(f"holds {lat.dtype} {lat.shape}, not float32 ({want}, views, D)")
        except (OSError, ValueError, EOFError) as exc:
            why = "missing" if not path.exists() else f"unreadable ({exc})"
            store.mark_failed(e, f"latents for --score context-knn {why}; scan it again with --retry-failed")
            lost += 1
            continue
        if len(lat):
            ranked.append(e)
            latents.append(lat)
    n = sum(len(z) for z in latents)
    info = {"images": len(ranked), "patches": n, "images_failed": lost}
    shapes = {z.shape[1:] for z in latents}
    if len(shapes) > 1:
        raise ValueError(f"scanned images hold latents of different shapes {sorted(shapes)}; rescan with --force")
    if n < 2:  # a single patch has nothing to be ranked against: score 0
        scores = [np.zeros(len(z)) for z in latents]
    else:
        groups = None if config.group is None else [config.product(e.name) for e in ranked]
        products = "one product" if groups is None else f"{len(set(groups))} products"
        images = f"{len(ranked)} image" + ("" if len(ranked) == 1 else "s")
        msg = f"context-knn: ranking {n:,} patches of {images} ({products}) together"
        log.info(msg)
        with _elapsed(msg, progress):  # one step without progress reports (about a minute per 50,000 patches)
            scores = context_knn(latents, groups)
    del latents
    no_thumbs = 0
    for e, s in tqdm(
        list(zip(ranked, scores, strict=True)), desc="context-knn", unit="image", disable=not progress, leave=False
    ):
        try:
            table = read_part(store.part_path(e.key))
            if table.num_rows != len(s):
                raise ValueError(f"{table.num_rows} patches in its part, {len(s)} latents")
        except ValueError as exc:  # a damaged part (inside too: PartDamagedError): scanned again on --retry-failed
            why = f"{exc.path} is damaged: {exc.reason}" if isinstance(exc, PartDamagedError) else str(exc)
            store.mark_failed(e, f"part unreadable for --score context-knn ({why}); scan it again with --retry-failed")
            info["images_failed"] += 1
            info["images"] -= 1
            continue
        xs = table.column("x").to_numpy()
        ys = table.column("y").to_numpy()
        table = table.set_column(table.schema.get_field_index("score"), "score", pa.array(s, pa.float64()))
        try:
            top = best_patches(e.name, e.path, config, xs, ys, s)
        except Exception as exc:  # the image moved or changed since it was scanned: scores kept, no thumbnails
            log.warning(
                "%s: best patches not read back (%s); its scores are kept, the gallery goes without it",
                printable(e.name),
                printable(str(exc)),
            )
            top = TopK.empty(config.model.channels, config.patch)
            no_thumbs += 1
        _atomic_write(store.top_path(e.key), lambda p, t=top: save_top(p, t))
        _atomic_write(store.part_path(e.key), lambda p, t=table: write_part(t, p))
    return {**info, "thumbnails_unread": no_thumbs, "seconds": round(time.perf_counter() - t0, 3)}

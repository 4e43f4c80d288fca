"""Finish a scan: merged results, per-image summaries, the top-k gallery and report.json (its text: report_text).

The extrapolation to the whole LRO NAC archive uses the figures of Lesnikowski, Bickel & Angerhausen
(2024, IEEE JSTARS, "Unsupervised distribution learning for lunar surface anomaly detection"): 11.3 M
64×64 patches scored in about 30 min on one RTX 2070, and 173 days on that GPU for the archive of over
two million NAC images. The archive size in patches is what those two figures imply together
(173 d × 11.3 M / 30 min ≈ 9.4 × 10¹⁰ patches, ≈ 47,000 per image); it is scaled by (64 / stride)² when a
scan uses another stride, since the paper's patches did not overlap.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from edgeae._optional import require
from edgeae.atomic import atomic_path, remove_stale_temps
from edgeae.printable import printable
from edgeae.scan.archive import ArchiveEntry, entry_key
from edgeae.scan.merge import gallery_top, record_digest, write_images, write_results
from edgeae.scan.report_text import report_markdown
from edgeae.scan.state import RESULT_COLUMNS, Record, ScanStore

PAPER = "Lesnikowski, Bickel & Angerhausen 2024, IEEE JSTARS (lunar VAE anomaly paper)"
PAPER_PATCHES = 11.3e6
PAPER_SECONDS = 30 * 60.0
PAPER_ARCHIVE_DAYS = 173.0
PAPER_ARCHIVE_IMAGES = 2_000_000
PAPER_PATCH = 64
ARCHIVE_PATCHES = PAPER_ARCHIVE_DAYS * 86400 * PAPER_PATCHES / PAPER_SECONDS


class RateClock:
    """Progress callback that also times the scan: start-up (worker processes or Ray, model loading, the
    first chunk) ends when the first patches are reported; the scoring rate counts only what came after, so
    a fixed start-up is not spread over the patches (and cannot hide in an archive extrapolation)."""

    def __init__(self, inner: Any, t0: float) -> None:
        import time

        self.inner, self.t0, self._now = inner, t0, time.perf_counter
        self.first: float | None = None
        self.reported = 0
        self.after_first = 0

    def start(self) -> None:
        """Mark the end of start-up now (an engine that knows it, e.g. Ray once it is up); every report from here
        on counts as scoring."""
        if self.first is None:
            self.first = self._now()

    def __call__(self, n: int) -> None:
        if self.first is None and n > 0:
            self.first = self._now()
        elif self.first is not None:
            self.after_first += n
        self.reported += n
        self.inner(n)

    def rates(self, patches: int, t_end: float) -> dict[str, Any]:
        """``startup_seconds``, ``scoring_seconds`` and ``patches_per_s_scoring`` (None when too few reports: also
        when the first report holds more than half the patches, as in a scan of a few small images, where the
        time after it is mostly the run's fixed tail and the "rate" came out 10× too low: 10.6 patches/s for a
        43-patch scan that took 0.4 s in all)."""
        if self.first is None or self.reported <= 0 or t_end <= self.first or 2 * self.after_first < self.reported:
            return {"startup_seconds": None, "scoring_seconds": None, "patches_per_s_scoring": None}
        scoring = t_end - self.first
        scored = patches * self.after_first / self.reported  # scored patches of the reports after the first
        return {
            "startup_seconds": round(self.first - self.t0, 3),
            "scoring_seconds": round(scoring, 3),
            "patches_per_s_scoring": round(scored / scoring, 2),
        }


def lro_extrapolation(patches_per_s: float, stride: int = PAPER_PATCH, basis: str = "") -> dict[str, Any]:
    """Days to scan the full LRO NAC archive at ``patches_per_s`` (see the module docstring for sources);
    ``basis`` says which rate that is (scoring time, or wall time with start-up)."""
    patches = ARCHIVE_PATCHES * (PAPER_PATCH / stride) ** 2
    days = patches / patches_per_s / 86400 if patches_per_s > 0 else float("inf")
    return {
        "rate_basis": basis,
        "assumed_archive_images": PAPER_ARCHIVE_IMAGES,
        "assumed_archive_patches": round(patches),
        "source": f"{PAPER}: 11.3 M patches in ~30 min on one RTX 2070; 173 days for >2 M NAC images",
        "paper_patches_per_s": round(PAPER_PATCHES / PAPER_SECONDS, 1),
        "measured_patches_per_s": round(patches_per_s, 2),
        "days": round(days, 1),
        "years": round(days / 365.25, 2),
        "days_on_100_such_machines": round(days / 100, 2),
    }


def _images_schema(pa: Any) -> Any:
    """images.parquet's columns: one row per archive image; score_* and max_x/max_y null unless it is done; ``key``
    the image's parts key (two names written as one ``file`` text, ``x\\xfe.png`` and the byte 0xFE, stay apart)."""
    s, i, f = pa.string(), pa.int64(), pa.float64()
    cols = [("file", s), ("status", s), ("error", s), ("reason", s), ("n_patches", i), ("n_skipped", i),
            ("score_mean", f), ("score_max", f), ("score_p99", f), ("max_x", i), ("max_y", i),
            ("product_id", s), ("instrument", s), ("body", s), ("map_projected", pa.bool_()), ("key", s)]  # fmt: skip
    return pa.schema(cols)


def _types(pa: Any) -> list[Any]:
    return [pa.string(), pa.int32(), pa.int32(), pa.float64(), pa.float32(), pa.string(), pa.string()] + [
        pa.float64()
    ] * 4


_THUMB = re.compile(r"^\d{3,}_.*_x-?\d+_y-?\d+\.png$")  # a top-k thumbnail's name (rank, image stem, x, y)
THUMB_STEM_BYTES = 40  # a longer image stem is cut in a thumbnail's name, as in its parts' keys


def thumb_stem(name: str) -> str:
    """The image's part of a top-k thumbnail's name: its stem when that is UTF-8 and at most
    :data:`THUMB_STEM_BYTES` bytes, else its parts' key (:func:`edgeae.scan.archive.entry_key`: the stem cut to 40
    characters, ASCII, and a hash of the name), so a legal 255-byte file name still gives a thumbnail name the file
    system takes, and one that is not UTF-8 a name report.md can link to."""
    stem = Path(name).stem
    return stem if printable(stem) == stem and len(stem.encode("utf-8")) <= THUMB_STEM_BYTES else entry_key(name)


def _write_gallery(
    store: ScanStore, done: list[ArchiveEntry], best_of: dict[str, float], k: int
) -> list[dict[str, Any]]:
    """Global top-k over every image's own top-k (:func:`edgeae.scan.merge.gallery_top`: read only from the images
    whose best score, ``best_of``, can reach it); thumbnails as PNG plus one contact sheet."""
    from edgeae.imageio import write_image

    names, best = gallery_top(store, done, best_of, k)
    folder = store.out / "topk"
    folder.mkdir(exist_ok=True)
    for old in folder.glob("*.png"):  # the last run's thumbnails and sheet; other files there are not the scan's
        if old.name == "gallery.png" or _THUMB.match(old.name):
            old.unlink()
    rows = []
    for rank, (name, s, x, y, th) in enumerate(zip(names, best.scores, best.xs, best.ys, best.thumbs, strict=True)):
        fn = f"{rank:03d}_{thumb_stem(str(name))}_x{int(x)}_y{int(y)}.png"
        write_image(folder / fn, th.transpose(1, 2, 0))
        rows.append({"rank": rank, "file": str(name), "x": int(x), "y": int(y), "score": float(s), "thumbnail": fn})
    if len(best.scores):
        cols = min(8, len(best.scores))
        n, c, p, _ = best.thumbs.shape
        rows_n = -(-n // cols)
        sheet = np.zeros((rows_n * (p + 2), cols * (p + 2), c), np.uint8)
        for i, th in enumerate(best.thumbs):
            r, q = divmod(i, cols)
            sheet[r * (p + 2) : r * (p + 2) + p, q * (p + 2) : q * (p + 2) + p] = th.transpose(1, 2, 0)
        _label_ranks(sheet, n, cols, p)
        write_image(folder / "gallery.png", sheet)
    return rows


def _label_ranks(sheet: np.ndarray, n: int, cols: int, p: int) -> None:
    """Write each tile's rank (0 = best, as in report.md's table) in its top-left corner, white on a dark box."""
    try:
        import cv2
    except ImportError:  # a build without OpenCV: the table in report.md still gives the order
        return
    img = np.ascontiguousarray(sheet)
    for i in range(n):
        r, q = divmod(i, cols)
        x0, y0 = q * (p + 2), r * (p + 2)
        (tw, th), _ = cv2.getTextSize(str(i), cv2.FONT_HERSHEY_PLAIN, 0.8, 1)
        cv2.rectangle(img, (x0, y0), (x0 + tw + 3, y0 + th + 4), (0,) * img.shape[2], -1)  # a dark box: any tile
        cv2.putText(img, str(i), (x0 + 1, y0 + th + 2), cv2.FONT_HERSHEY_PLAIN, 0.8, (255,) * img.shape[2], 1)
    sheet[...] = img


def projection_rate(run: dict[str, Any]) -> tuple[float, str]:
    """The rate (patches/s) the archive projection uses, and what it is over: the scoring rate (start-up excluded),
    else the wall rate; either slowed by the context-knn ranking's seconds per ranked patch when the run ranked the
    set. The ranking is taken out of the wall time first: it ranks the whole set, not only this run's patches (a
    resume that scored 9 new patches and ranked 555 projected 50x too slow)."""
    rate, basis = run.get("patches_per_s_scoring"), "scoring time (start-up excluded)"
    ctx = run.get("context_knn") or {}
    per_ranked = ctx["seconds"] / ctx["patches"] if ctx.get("patches") else 0.0
    if rate and ctx.get("patches"):  # the set's ranking costs time per patch too: it is part of the projection
        rate = 1.0 / (1.0 / rate + per_ranked)
        basis = "scoring time plus the context-knn ranking (start-up excluded)"
    if not rate and ctx.get("patches") and run.get("patches"):
        scanning = max(run.get("seconds", 0.0) - ctx["seconds"], 0.0)  # the wall time less the set's ranking
        per_patch = scanning / run["patches"] + per_ranked
        rate = 1.0 / per_patch if per_patch > 0 else 0.0
        basis = "wall time including start-up (too short to separate) plus the context-knn ranking per ranked patch"
    if not rate:
        rate = run.get("patches_per_s", 0.0)
        ranked = " and the context-knn ranking" if ctx else ""
        basis = f"wall time including start-up{ranked} (too short to separate)"
    return float(rate or 0.0), basis


def _blank_and_dark(store: ScanStore, entries: list[ArchiveEntry]) -> tuple[list[str], list[str]]:
    """The names of ``entries`` (done, no patch holding a valid pixel as scanned) whose file declares every pixel
    no-data, and those dark throughout (valid once the dark-margin detection is left out); each read again, up to its
    first such pixel (one that cannot be read now is in neither)."""
    from edgeae.scan.blank import no_valid_pixel

    cfg = store.config
    blank: list[str] = []
    dark: list[str] = []
    for e in entries:
        declared = no_valid_pixel(e.path, cfg.patch, cfg.stride, channels=cfg.model.channels, detect_nodata=False,
                                  **cfg.read_options())  # fmt: skip
        if declared is not None:
            (blank if declared else dark).append(e.name)
    return blank, dark


def finalize(
    store: ScanStore, entries: list[ArchiveEntry], run: dict[str, Any], *, write_gallery: bool = True
) -> dict[str, Any]:
    """Write results.parquet, images.parquet, topk/ and report.json/.md; return the report dict."""
    pa = require("pyarrow")
    for name in ("report.json", "report.md"):  # the last run's: a run that fails below leaves none, not a stale one
        (store.out / name).unlink(missing_ok=True)
    remove_stale_temps(store.out)  # results and reports a killed run was writing (its .NAME.tmp-PID)
    recs = store.reconcile(entries)
    done = [e for e in entries if (r := recs.get(e.name)) is not None and r.status == "done"]
    names = {e.name for e in entries}
    elsewhere = sorted(n for n in recs if n not in names)  # recorded by a run over another ARCHIVE: not reported
    no_rows = pa.table({c: pa.array([], t) for c, t in zip(RESULT_COLUMNS, _types(pa), strict=True)})
    # streamed, one row group at a time: memory does not grow with the archive (until session 36: ~600 B a patch)
    merged = write_results(store, done, store.out / "results.parquet", no_rows, store.out / "images.parquet")
    per_image = []
    corrected = []  # done products whose CRS the reader repaired (GeoRef.note): GDAL and a GIS read the file's own
    for e in entries:
        r = recs.get(e.name) or Record(e.name, e.key, "pending")
        meta_path = store.meta_path(e.key)  # a pending image's facts are an earlier scan's: none shown
        meta = json.loads(meta_path.read_text()) if r.status == "done" and meta_path.exists() else {}
        if note := (meta.get("georef") or {}).get("note"):
            corrected.append({"file": e.name, "note": note})
        per_image.append(
            {"file": e.name, "key": e.key, "status": r.status, "error": r.error if r.status == "failed" else "",
             "reason": r.reason if r.status == "skipped" else "",
             "n_patches": r.n_patches, "n_skipped": r.n_skipped, **merged.summaries.get(e.name, {}),
             "product_id": meta.get("product_id") or "", "instrument": meta.get("instrument") or "",
             "body": meta.get("body") or "", "map_projected": bool(meta.get("georef"))}
        )  # fmt: skip
    per_image = texts(per_image)  # file names (and errors naming them) that are not UTF-8: escaped
    # an explicit schema: the score columns of images that are not done are null, whichever image comes first
    images = pa.Table.from_pylist(per_image, schema=_images_schema(pa))
    write_images(images, store.out / "images.parquet")  # atomic: a failed write keeps the last run's
    record_digest(store.out, merged.digest)  # after both: identical scans write identical results (no digest inside)
    top = _write_gallery(store, done, merged.best_of, store.config.top_k) if write_gallery else []
    failures = [{"file": p["file"], "error": p["error"]} for p in per_image if p["status"] == "failed"]
    skipped = [{"file": p["file"], "reason": p["reason"]} for p in per_image if p["status"] == "skipped"]
    # done but nothing scored: every patch below --min-valid (small products with no-data, dark frames); of those, the
    # ones with no valid pixel at all (all NaN / no-data per the label), which no --min-valid would score, and the
    # frames dark throughout (no valid pixel as read, some once the margin detection is left out: --min-valid 0 scores)
    empty = [p["file"] for p in per_image if p["status"] == "done" and p["n_patches"] == 0]
    unseen = [e for p, e in zip(per_image, entries, strict=True)
              if p["status"] == "done" and p["n_patches"] == 0 and recs[e.name].valid_max == 0]  # fmt: skip
    blank, dark = _blank_and_dark(store, unseen)
    rate, basis = projection_rate(run)
    report = {
        **run,
        "out": str(store.out),
        "model": store.config.model.model_id,
        "artifact_hash": store.config.model.artifact_hash,
        "artifact": Path(store.config.model.path).name,
        "model_kind": store.config.model.kind,
        "score": store.config.score,
        "images": len(entries),
        "done": len(done),
        "failed": len(failures),
        "skipped": len(skipped),
        "pending": len(entries) - len(done) - len(failures) - len(skipped),
        # images recorded in this folder (earlier runs) that this ARCHIVE does not give: left out of every result
        # above, their parts kept; the first 50 named
        "recorded_not_in_archive": len(elsewhere),
        "recorded_not_in_archive_files": elsewhere[:50],
        "patches_in_results": merged.rows,
        "failures": failures,
        "skipped_products": skipped,
        # since session 38 (audit a3 #3): each done product whose CRS was repaired, with what was repaired
        "georeferencing_corrected": corrected,
        "images_without_patches": empty,
        "images_without_valid_pixels": blank,  # since session 37 (older records do not say: not listed)
        "images_dark_throughout": dark,  # since session 37 (r8 #1): in images_without_patches; --min-valid 0 scores
        "min_valid": store.config.min_valid,
        "quality": store.config.quality.to_dict(),
        "top": top,  # every patch of topk/, best first (rank, file, x, y, score, thumbnail)
        "lro_nac_extrapolation": lro_extrapolation(rate, store.config.stride, basis) if rate else None,
    }
    return write_report(store.out, report)


def texts(obj: Any) -> Any:
    """``obj`` (dicts, lists, strings, numbers) with every string as :func:`edgeae.printable.printable` gives it:
    a file name, path or message whose bytes are not UTF-8 written with ``\\xNN`` escapes, as UTF-8 writers take."""
    if isinstance(obj, str):
        return printable(obj)
    if isinstance(obj, dict):
        return {texts(k): texts(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [texts(v) for v in obj]
    return obj


def write_report(out: Path, report: dict[str, Any]) -> dict[str, Any]:
    """Write ``report`` as ``out``/report.json and its text as report.md (:func:`texts`: names that are not UTF-8
    escaped); returns the report as written. Both are written under temporary names, then renamed: a write that
    fails (a full disk) replaces neither, and its error names the file (until session 36 a full disk left report.md
    empty beside a new report.json, with an error naming no file)."""
    report = texts(report)
    with atomic_path(out / "report.json") as tmp_json, atomic_path(out / "report.md") as tmp_md:
        tmp_json.write_text(json.dumps(report, indent=2), encoding="utf-8")
        tmp_md.write_text(report_markdown(report), encoding="utf-8")
    return report

"""The results folder and its resume state: one Parquet file per image, written atomically, then a manifest.

Layout of ``OUT``::

    scan.json             the ScanConfig (model, hash, patch, stride, ...); a resume must match it
    manifest.jsonl        append-only log, one JSON line per image: done | failed (+ error) | skipped (+ reason)
    parts/<key>.parquet   per-patch scores of one image (file, x, y, score, valid_frac, model_id, artifact_hash,
                          map_x, map_y, lon, lat: null unless the product is map-projected; with
                          ``--score terms-max``, ``local-z`` or ``context-knn`` also rec and mu2, the VAE's two terms)
    parts/<key>.top.npz   that image's best patches (scores, x, y, uint8 thumbnails)
    parts/<key>.meta.json archive products: label facts and georeferencing (for the map layer)
    parts/<key>.latents.npy  ``--score context-knn``: the image's float32 (n, views, D) latents; once every image is
                          in, the set is ranked from them and each part's scores and best patches are rewritten
                          (:mod:`edgeae.scan.context`)

An image counts as done when its Parquet part exists: the part is written to a temporary name and renamed
(atomic on POSIX), and only then is the manifest line appended. A crash between the two is harmless: the
next run finds the part and records it as done without scoring it again. A ``done`` line whose part went
missing, or whose part or best-patches file is damaged, sends the image back to the queue, so no image is lost.
Only the driver process writes here.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from edgeae._optional import require
from edgeae.atomic import atomic_path
from edgeae.printable import printable
from edgeae.scan.archive import ArchiveEntry
from edgeae.scan.manifest import STATUSES as STATUSES
from edgeae.scan.manifest import Record as Record
from edgeae.scan.manifest import dependency_found
from edgeae.scan.manifest import parse_record as parse_record
from edgeae.scan.out_checks import (
    PartDamagedError,
    check_out_path,
    part_damage,
    read_part,
    refuse_foreign,
    refuse_other_settings,
    write_part,
)
from edgeae.scan.out_checks import ScanStateError as ScanStateError
from edgeae.scan.pipeline import ImageResult, ScanConfig, TopK
from edgeae.scan.stamps import file_stamp as file_stamp
from edgeae.scan.stamps import stamp_changed

log = logging.getLogger(__name__)
RESULT_COLUMNS = ("file", "x", "y", "score", "valid_frac", "model_id", "artifact_hash", "map_x", "map_y", "lon", "lat")


# the files a scan writes in parts/ (``<key>`` + suffix, :func:`edgeae.scan.archive.entry_key`) and the temporary
# names they are written under (:func:`_atomic_write`); anything else there is not the scan's and is left alone
_PART = re.compile(r"^.*-[0-9a-f]{12}\.(parquet|top\.npz|meta\.json|latents\.npy)$")
_TEMP = re.compile(r"^\..+\.tmp-\d+$")


def _save_npy(path: Path, a: np.ndarray) -> None:
    with path.open("wb") as f:
        np.save(f, a)


def _atomic_write(path: Path, write: Any) -> None:
    """``write(tmp)`` then rename ``tmp`` over ``path`` (:func:`edgeae.atomic.atomic_path`: its temporary name is
    the one :data:`_TEMP` matches)."""
    with atomic_path(path) as tmp:
        write(tmp)


def save_top(path: os.PathLike[str], top: TopK) -> None:
    """An image's best patches as ``.npz`` at exactly ``path`` (``np.savez`` given a name would add ``.npz`` to a
    temporary one; the file it is given is closed here)."""
    with open(path, "wb") as f:
        np.savez(f, scores=top.scores, xs=top.xs, ys=top.ys, thumbs=top.thumbs)


class ScanStore:
    """Reads and writes one results folder; see the module docstring for the layout."""

    def __init__(
        self, out: str | os.PathLike[str], config: ScanConfig, *, force: bool = False, lock: bool = False
    ) -> None:
        """Open (or make) ``out`` for ``config``: refused when it holds another scan's settings or files that are not
        a scan's. ``lock``: hold the folder (:func:`edgeae.folder_lock.hold`) from right after it exists, before
        scan.json is read or ``force`` resets anything, until :meth:`release` (a scan run: a second one into the
        folder is refused with :class:`edgeae.folder_lock.FolderBusy` and changes nothing)."""
        self.out = Path(out)
        self.config = config
        self.parts = self.out / "parts"
        self.manifest = self.out / "manifest.jsonl"
        self.changed: list[str] = []  # images found changed since their record by the last pending()
        self.retaken: list[str] = []  # images it took again, failed for a missing dependency (an older run's)
        # keys whose part or best-patches file a checked reconcile found damaged: checked in every later reconcile
        # too, so a run that does not reach the image (--max-images) reports it pending, not done from that file
        self._damaged_keys: set[str] = set()
        self._created: list[Path] = []  # what this store made, oldest first (:meth:`discard_if_unused`)
        self._lock = contextlib.ExitStack()
        self._held = False
        self._warned: set[object] = set()  # warnings already given (:meth:`_warn_once`)
        check_out_path(self.out)
        missing = [d for d in (self.out, *self.out.parents) if not d.exists()]
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ScanStateError(f"cannot create the results folder --out {self.out}: {exc.strerror or exc}") from None
        self._created += reversed(missing)
        try:
            # before the lock file is made there: a folder that is not a scan's (a read-only one, say) is refused with
            # the reason, not the lock file's errno; checked again once held (:meth:`_claim`)
            refuse_foreign(self.out)
            if lock:
                from edgeae.folder_lock import LOCK_NAME, FolderBusy, hold

                try:
                    self._lock.enter_context(hold(self.out, "scan"))
                except FolderBusy:
                    raise
                except OSError as exc:
                    why = exc.strerror or exc
                    raise ScanStateError(
                        f"cannot write the results folder --out {self.out} (its lock file {LOCK_NAME}): {why}"
                    ) from None
                self._held = True
            self._claim(force)
        except BaseException:  # refused, busy, or scan.json / parts/ could not be made (a full disk): leave no
            self.discard_if_unused()  # folder claiming a scan, and the folders this made
            self.release()
            raise

    def _claim(self, force: bool) -> None:
        """Check ``out`` can take this scan (see :meth:`__init__`), then write scan.json and make parts/."""
        cfg_path = self.out / "scan.json"
        config = self.config
        refuse_foreign(self.out)  # again, now that the folder is held
        if cfg_path.exists() and not force:
            refuse_other_settings(self.out, cfg_path, config)
        if force:
            self.reset()
        if not cfg_path.exists():
            self._created.append(cfg_path)
        _atomic_write(cfg_path, lambda p: p.write_text(json.dumps({"config": config.to_dict()}, indent=2)))
        if not self.parts.exists():
            self._created.append(self.parts)
        self.parts.mkdir(exist_ok=True)  # after scan.json: a folder left by a crash here is still a scan's

    def __enter__(self) -> ScanStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        """Let go of the folder (``lock``; nothing otherwise), then remove the folders this store made if they are
        still empty (a run that was refused or failed before its first image); safe to call more than once."""
        self._lock.close()
        self._held = False
        for path in reversed(self._created):
            if path.is_dir() and (path == self.out or path in self.out.parents):
                try:
                    path.rmdir()
                except OSError:  # not empty (scan.json, parts/, another process's lock file): kept
                    return
        self._created = [p for p in self._created if p.exists()]

    def discard_if_unused(self) -> None:
        """Remove what this store created (scan.json, parts/, and the folder and its missing parents once the folder
        is released) while nothing is recorded in it yet (no manifest, parts/ empty): a run that fails before its
        first image (Ray cannot start) leaves no folder that claims a scan. Folders are removed only when empty."""
        if self.manifest.exists() or (self.parts.is_dir() and any(self.parts.iterdir())):
            return
        for path in reversed(self._created):
            if not path.exists():  # never made (a write that failed): nothing to remove
                continue
            if self._held and (path == self.out or path in self.out.parents):  # its lock file is in it: the
                return  # folders go once it is released (:meth:`release`)
            try:
                path.rmdir() if path.is_dir() else path.unlink()
            except OSError:  # no longer empty (another process wrote there): kept
                return
        self._created.clear()

    def reset(self) -> None:
        """Forget every result in this folder (``--force``): only the files a scan writes are removed."""
        if self.parts.is_dir():
            for p in self.parts.iterdir():
                if p.is_file() and (_PART.match(p.name) or _TEMP.match(p.name)):
                    p.unlink()
        for name in ("manifest.jsonl", "results.parquet", "images.parquet", ".results.digest.json", "report.json",
                     "report.md"):  # fmt: skip
            (self.out / name).unlink(missing_ok=True)

    # -- state ------------------------------------------------------------------------------------------
    def part_path(self, key: str) -> Path:
        return self.parts / f"{key}.parquet"

    def top_path(self, key: str) -> Path:
        return self.parts / f"{key}.top.npz"

    def meta_path(self, key: str) -> Path:
        return self.parts / f"{key}.meta.json"

    def latents_path(self, key: str) -> Path:
        """An image's float32 (n, views, D) latents, kept for the set's ``context-knn`` ranking."""
        return self.parts / f"{key}.latents.npy"

    def _warn_once(self, key: object, msg: str, *args: object) -> None:
        """Log a warning once per store (records and parts are checked several times in a run)."""
        if key not in self._warned:
            self._warned.add(key)
            log.warning(msg, *args)

    def records(self) -> dict[str, Record]:
        """Last manifest record per image name. A line that is not a record (a torn last line from a crash, bytes
        that are not UTF-8, a field of the wrong type) is ignored with a warning naming it: its image counts as not
        recorded, so it is recovered from its part or scanned again."""
        out: dict[str, Record] = {}
        if not self.manifest.exists():
            return out
        for i, line in enumerate(self.manifest.read_bytes().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rec = parse_record(line)
            except (ValueError, TypeError) as exc:
                why = str(exc)[:200]
                self._warn_once(
                    ("line", i, line),
                    "%s line %d is not a scan record (%s): ignored, as a line torn by a crash would be (its image is "
                    "recovered from its part or scanned again)",
                    self.manifest, i, why,
                )  # fmt: skip
                continue
            out[rec.name] = rec
        return out

    def reconcile(self, entries: list[ArchiveEntry], *, check_parts: bool = False) -> dict[str, Record]:
        """Records made consistent with the parts on disk: parts without a line are recorded as done. ``check_parts``
        (a resume, :meth:`pending`): a part or best-patches file cut short or overwritten counts as missing, with a
        warning, so its image is scanned again (the ``context-knn`` ranking records one it cannot read as failed).
        A part found damaged so counts as missing in every later reconcile of this store too, until it is rewritten
        (the report of a run that stopped before the image lists it as pending). A part without a line whose footer
        cannot be read (damaged inside) is not recovered: its image is scanned again, with a warning."""
        recs = self.records()
        for e in entries:
            rec = recs.get(e.name)
            has_part = self.part_path(e.key).exists()
            check = check_parts or e.key in self._damaged_keys
            damage = self._damaged(e) if has_part and check else None
            if damage is None:
                self._damaged_keys.discard(e.key)  # rewritten (scanned again) or removed since
            else:  # treated as missing: the image is scanned again, and its files rewritten
                self._damaged_keys.add(e.key)
                has_part = False
                if rec is None or rec.status == "done":
                    name = printable(e.name)
                    self._warn_once(("part", damage), "%s: %s; it is scanned again", name, printable(damage))
            if has_part and (rec is None or rec.status != "done"):
                try:
                    n = read_part(self.part_path(e.key), rows=True)
                except PartDamagedError as exc:  # its footer damaged inside (its ends look whole): not recovered
                    if rec is None:  # so not recorded: scanned again
                        self._warn_once(("part", exc.path), "%s: %s is damaged (%s); it is scanned again",
                                        printable(e.name), printable(str(exc.path)), exc.reason)  # fmt: skip
                    continue
                recs[e.name] = self._append(Record(e.name, e.key, "done", n_patches=n, error="recovered"))
            elif not has_part and rec is not None and rec.status == "done":
                del recs[e.name]
        return recs

    def _damaged(self, e: ArchiveEntry) -> str | None:
        """What is wrong with the image's part or best-patches file (:func:`edgeae.scan.out_checks.part_damage`),
        None when both look whole (a missing best-patches file only leaves the image out of the gallery)."""
        for path in (self.part_path(e.key), self.top_path(e.key)):
            why = part_damage(path) if path.exists() else None
            if why is not None:
                return f"{path} {why}"
        return None

    def pending(self, entries: list[ArchiveEntry], retry_failed: bool = False) -> list[ArchiveEntry]:
        """Entries still to scan: new ones, failed ones when ``retry_failed``, any whose part is missing or damaged
        (:meth:`reconcile`), and any whose file or data file changed (size or modification time) since it was
        recorded done or failed (:attr:`changed` lists those); failed ones whose error was a missing dependency (the
        install's fault, not the file's: :func:`~edgeae.scan.manifest.missing_dependency`) too once that package can be
        found (:func:`~edgeae.scan.manifest.dependency_found`; :attr:`retaken`)."""
        recs = self.reconcile(entries, check_parts=True)
        todo = []
        self.changed, self.retaken = [], []
        for e in entries:
            rec = recs.get(e.name)
            if rec is not None and rec.stamp and rec.status in ("done", "failed") and stamp_changed(rec.stamp, e.path):
                self.changed.append(e.name)
                todo.append(e)
            elif rec is None or (retry_failed and rec.status == "failed"):
                todo.append(e)
            elif dependency_found(rec):  # until session 37 only --retry-failed took it again; once found (r8 #2)
                self.retaken.append(e.name)
                todo.append(e)
        return todo

    def _append(self, rec: Record) -> Record:
        """Append ``rec`` as one line, on a line of its own after a torn last line (else the two would be one)."""
        line = json.dumps({**rec.__dict__, "time": time.time()}, sort_keys=True)
        with self.manifest.open("a+b") as f:
            torn = False
            if f.seek(0, os.SEEK_END) > 0:
                f.seek(-1, os.SEEK_END)
                torn = f.read(1) != b"\n"
            f.write((b"\n" if torn else b"") + line.encode("utf-8") + b"\n")  # O_APPEND: written at the end
            f.flush()
            os.fsync(f.fileno())
        return rec

    # -- writing ------------------------------------------------------------------------------------------
    def write_result(self, entry: ArchiveEntry, result: ImageResult, stamp: str | None = None) -> Record:
        """Write the image's thumbnails and part atomically, then record it as done, with ``stamp``: its
        :func:`file_stamp` taken before it was read (None: now), so a file that changed while it was scanned
        counts as changed on the next run."""
        pa = require("pyarrow")
        top = result.top
        if result.latents is not None:  # written before the part: an image recorded as done has its latents
            lat = np.ascontiguousarray(result.latents, np.float32)
            _atomic_write(self.latents_path(entry.key), lambda p: _save_npy(p, lat))
        _atomic_write(self.top_path(entry.key), lambda p: save_top(p, top))
        n = len(result.scores)
        m = self.config.model
        from edgeae.scan.geo import geo_columns, georef_of

        try:
            geo, meta = georef_of(entry.path)
        except Exception:  # the image was readable for scoring; a georeferencing failure only loses the map
            geo, meta = None, {}
        if meta:
            _atomic_write(self.meta_path(entry.key), lambda p: p.write_text(json.dumps(meta)))
        cols = geo_columns(geo, result.xs, result.ys, self.config.patch)
        table = pa.table(
            {
                "file": pa.array([printable(entry.name)] * n, pa.string()),  # a name that is not UTF-8: escaped
                "x": pa.array(result.xs, pa.int32()),
                "y": pa.array(result.ys, pa.int32()),
                "score": pa.array(result.scores, pa.float64()),
                "valid_frac": pa.array(result.valid, pa.float32()),
                **(
                    {}
                    if result.terms is None
                    else {k: pa.array(result.terms[:, i], pa.float64()) for i, k in enumerate(("rec", "mu2"))}
                ),
                "model_id": pa.array([m.model_id] * n, pa.string()),
                "artifact_hash": pa.array([m.artifact_hash] * n, pa.string()),
                **{c: pa.array(v, pa.float64(), from_pandas=True) for c, v in cols.items()},  # NaN -> null
            }
        )
        _atomic_write(self.part_path(entry.key), lambda p: write_part(table, p))  # a CRC per page
        stamp = file_stamp(entry.path) if stamp is None else stamp
        return self._append(Record(entry.name, entry.key, "done", n, result.n_skipped, seconds=round(result.seconds, 4),
                                   stamp=stamp, valid_max=round(float(result.valid_max), 6)))  # fmt: skip

    def mark_failed(self, entry: ArchiveEntry, error: str, stamp: str | None = None) -> Record:
        """Record ``entry`` as failed with ``error`` and ``stamp`` (as :meth:`write_result`: a file still being
        copied that failed as truncated is scanned again once it is complete); any stale part is removed first."""
        self._remove_outputs(entry.key)
        stamp = file_stamp(entry.path) if stamp is None else stamp
        return self._append(Record(entry.name, entry.key, "failed", error=error, stamp=stamp))

    def mark_skipped(self, entry: ArchiveEntry, reason: str) -> Record:
        """Record ``entry`` as skipped by the quality filter, with the reason."""
        self._remove_outputs(entry.key)
        return self._append(Record(entry.name, entry.key, "skipped", reason=reason))

    def _remove_outputs(self, key: str) -> None:
        """An image's outputs of an earlier scan of it: its part, latents, best patches and product facts (a failed
        or skipped image kept its earlier detections in the map layer and its georeference in the report before)."""
        for path in (self.part_path(key), self.latents_path(key), self.top_path(key), self.meta_path(key)):
            path.unlink(missing_ok=True)

    def load_top(self, key: str) -> TopK:
        """An image's best patches (:func:`save_top`); :class:`ScanStateError` naming the file when it is damaged."""
        path = self.top_path(key)
        try:
            with np.load(path, allow_pickle=False) as z:
                return TopK(z["scores"], z["xs"], z["ys"], z["thumbs"])
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise ScanStateError(
                f"{path} is damaged ({exc}): delete it and parts/{key}.parquet, and rerun the scan to scan its "
                "image again"
            ) from None

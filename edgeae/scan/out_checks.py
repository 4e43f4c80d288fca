"""Whether a results folder (``--out``) can take a scan, checked before :class:`edgeae.scan.state.ScanStore` writes
anything there: it is not a file, it holds no files that are not a scan's, and a scan.json in it holds the settings of
this scan (a resume). Each refusal is a :class:`ScanStateError` that says what to do instead. Also the cheap check of
an image's part files a resume makes (:func:`part_damage`), and the writing (:func:`write_part`) and reading of a
part (:func:`read_part`): written with a CRC per Parquet page and read verifying them, so a part damaged inside is an
error naming it, never wrong numbers.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from edgeae._optional import require
from edgeae.folder_lock import file_in_the_way
from edgeae.scan.pipeline import ScanConfig


class ScanStateError(ValueError):
    """The results folder cannot take this scan: it belongs to a different scan (other model or settings), holds
    other files, or is not a folder that can be made."""


def _foreign(out: Path) -> str:
    """What makes ``out`` a folder a scan must not take over: "" when it is missing or empty, else the first few
    names in it. Not counted: hidden files (.gitkeep, NFS's .nfs*, a scan's own temporary scan.json), logs (*.log:
    a user's ``2> out/scan.log``; a scan never deletes them) and an empty parts/ (left by a crash of an earlier
    version before its scan.json)."""
    if not out.is_dir():
        return ""
    names = sorted(
        p.name
        for p in out.iterdir()
        if not p.name.startswith(".")
        and not (p.suffix == ".log" and p.is_file())
        and not (p.name == "parts" and p.is_dir() and not any(p.iterdir()))
    )
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def check_out_path(out: Path) -> None:
    """Refuse an ``--out`` that is a file, or lies below one, with a line that says so (mkdir says only "File
    exists" or "Not a directory"), and one whose path is not UTF-8 (:func:`check_utf8_path`)."""
    check_utf8_path(out, "--out", ScanStateError)
    if out.exists() and not out.is_dir():
        raise ScanStateError(f"--out {out} is a file, not a folder: choose a new or empty folder for the results")
    blocking = file_in_the_way(out)
    if blocking is not None:
        raise ScanStateError(f"cannot create the results folder --out {out}: {blocking} is a file, not a folder")


def check_utf8_path(path: Path | str, flag: str, error: type[Exception] = ValueError) -> None:
    """Refuse (``error``) a path whose bytes are not UTF-8 (legal on Linux): pyarrow and pyogrio encode a path as
    strict UTF-8, so the scan would end at its first write with "'utf-8' codec can't encode character '\\udcfe'",
    naming no file, after an image was scored. Checked before any image is read; the path is named escaped."""
    from edgeae.printable import printable

    text = str(path)
    if printable(text) != text:
        raise error(
            f"{flag} {printable(text)}: its path is not UTF-8 (the bytes shown as \\xNN), which the Parquet and map "
            "writers cannot take: choose a UTF-8 path"
        )


def refuse_foreign(out: Path) -> None:
    """Refuse ``out`` when it holds no scan.json and files that are not a scan's (:func:`_foreign`); reads only."""
    if (out / "scan.json").exists():
        return
    try:
        foreign = _foreign(out)
    except OSError as exc:
        raise ScanStateError(f"cannot read the results folder --out {out}: {exc.strerror or exc}") from None
    if foreign:
        raise ScanStateError(
            f"{out} is not empty and holds no scan (no scan.json; it holds {foreign}): a scan writes and "
            "deletes files there, so choose a new or empty --out"
        )


def refuse_other_settings(out: Path, cfg_path: Path, config: ScanConfig) -> None:
    """Refuse to resume the scan in ``out`` when its scan.json (``cfg_path``) holds settings other than ``config``'s,
    or settings this version cannot read; says what differs."""
    try:
        old = ScanConfig.from_dict(json.loads(cfg_path.read_text())["config"])
    except (ValueError, KeyError, TypeError) as exc:  # e.g. a stride > patch that earlier versions took
        raise ScanStateError(
            f"{cfg_path} holds settings this version cannot resume ({exc}): choose another --out (or --force "
            "to restart)"
        ) from None
    before, after = old.result_fingerprint(), config.result_fingerprint()
    if before != after:
        was, now = Path(old.model.path).name, Path(config.model.path).name
        # a key only one side has (views/group: context-knn only) counts as changed
        other = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
        if (
            other == {"artifact_hash"}
            and was != now
            and ".int8." in was
            and was.split(".int8.")[0] == (now.split(".int8.")[0])
        ):  # the same scan but the other int8 file of the model: --runtime auto chose differently here
            raise ScanStateError(
                f"{out} holds a scan that scored with {was}; this run would score with {now} (the int8 "
                "runtime a zoo name picks depends on the CPU): pin it with --runtime tflite|onnx, or choose "
                "another --out (or --force to restart)"
            )
        if other == {"pixels"}:
            raise ScanStateError(
                f"{out} holds a scan made by an earlier edgeae, which read no-data inside a patch as "
                "black and a small image's padding as data; scores of this version differ there: choose "
                "another --out (or --force to restart)"
            )
        changes = "; ".join(f"{k}: {before.get(k, '(none)')!r} -> {after.get(k, '(none)')!r}" for k in sorted(other))
        raise ScanStateError(
            f"{out} holds a scan with other settings ({changes}): choose another --out (or --force to restart)"
        )


def part_damage(path: Path) -> str | None:
    """What is wrong with a scan's ``parts/<key>.parquet`` or ``.top.npz`` (cut short, overwritten), from its first and
    last bytes only: a Parquet file starts and ends with ``PAR1`` and its footer fits in it; a ``.npz`` (written by
    :func:`edgeae.scan.state.save_top`: a zip without comment) starts with a local file header and ends with the end of
    its central directory. None when it looks whole (or is another kind of file). A file the file system cannot give
    (no permission, an I/O error) raises :class:`PartUnreadableError`: it may be whole."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(4)
            f.seek(max(size - 22, 0))
            tail = f.read(22)
    except FileNotFoundError:  # gone since it was listed: missing, so scanned again
        return "is gone"
    except OSError as exc:  # no permission, an I/O error: the part may be good, so it is not scanned again over it
        raise PartUnreadableError(path, exc) from None
    if path.name.endswith(".parquet"):
        if size < 12 or head != b"PAR1" or tail[-4:] != b"PAR1":
            return f"is not a whole Parquet file ({size} bytes, cut short or overwritten)"
        footer = struct.unpack("<I", tail[-8:-4])[0]
        if footer + 12 > size:
            return f"is not a whole Parquet file (its footer of {footer} bytes is longer than the file's {size})"
    elif path.name.endswith(".npz") and (size < 22 or head != b"PK\x03\x04" or tail[:4] != b"PK\x05\x06"):
        return f"is not a whole .npz file ({size} bytes, cut short or overwritten)"
    return None


def write_part(table: Any, path: Path | str) -> None:
    """Write a part (a pyarrow Table) to ``path`` with a CRC-32 of each page, which :func:`read_part` verifies: without
    them most bytes of a page could be overwritten and read back as other numbers, with no error."""
    require("pyarrow.parquet").write_table(table, path, write_page_checksum=True)


def read_part(path: Path, *, rows: bool = False) -> Any:
    """A scan's ``parts/<key>.parquet`` read whole (a pyarrow Table; ``rows``: only its row count, from the footer).
    A part that looks whole at its ends (:func:`part_damage`) may still be damaged inside (a page or its footer
    overwritten): :class:`PartDamagedError` naming it and what to do, not pyarrow's error (several lines, no file).
    Each page's CRC (:func:`write_part`) is verified; a part written before session 36 has none and reads as before.
    A part the file system cannot give (no permission, an I/O error) is not damaged: :class:`PartUnreadableError`,
    which keeps it (before review s36 r2, "damaged: delete it", and a resume scanned its image again over it)."""
    pa = require("pyarrow")
    pq = require("pyarrow.parquet")
    try:
        if rows:
            return pq.read_metadata(path).num_rows
        # ParquetFile, one thread: ~3x faster than read_table (its dataset machinery and thread pool) on a part of a
        # few hundred rows, what most parts are (0.33 vs 0.90 ms for 16 rows, 1.2 vs 1.9 ms for 841; review s36 h2)
        with pq.ParquetFile(path, page_checksum_verification=True) as f:
            return f.read(use_threads=False)
    except (OSError, pa.ArrowException) as exc:
        if _damage(exc):
            raise PartDamagedError(path, exc) from None
        raise PartUnreadableError(path, exc) from None


def _damage(exc: BaseException) -> bool:
    """Whether pyarrow's error says the part's bytes are wrong (a page header or footer it cannot parse, a CRC that
    does not match: a plain ``OSError`` with no errno, or an Arrow error that is not an ``OSError``) rather than that
    the file could not be read (missing, no permission, an I/O error of the disk or a network mount), or not by
    this process: a memory shortage (``ArrowMemoryError``) or a feature this pyarrow lacks
    (``ArrowNotImplementedError``: written by a newer one) says nothing of its bytes (until review s36 r12: "damaged:
    delete it")."""
    if isinstance(exc, (MemoryError, NotImplementedError)):
        return False
    if isinstance(exc, OSError):
        return type(exc) is OSError and exc.errno is None  # pyarrow's IOError status (an errno: the system's error)
    return True


class PartDamagedError(ScanStateError):
    """A part that cannot be read (:func:`read_part`): ``path`` and pyarrow's ``reason`` in one line."""

    def __init__(self, path: Path, exc: BaseException) -> None:
        self.path, self.reason = path, " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        super().__init__(
            f"{path} is damaged ({self.reason}): delete it and run the same command again to scan its image again"
        )


class PartUnreadableError(OSError):
    """A part that could not be read for a reason of the file system, not of its bytes (:func:`read_part`): no
    permission, an I/O error, gone since it was listed. An ``OSError`` (the command's one line, status 2), so that no
    caller counts the part as damaged and scans its image again over it: the part is kept."""

    def __init__(self, path: Path, exc: BaseException) -> None:
        reason = " ".join(f"{type(exc).__name__}: {getattr(exc, 'strerror', None) or exc}".split())[:300]
        if isinstance(exc, FileNotFoundError):
            what = "it is gone: run the same command again to scan its image again"
        elif isinstance(exc, MemoryError):
            what = "out of memory; the part is kept: free memory and run the same command again"
        elif isinstance(exc, NotImplementedError):
            what = "this pyarrow cannot read it (written by a newer one?); the part is kept"
        else:
            what = "the part is kept: make it readable and run the same command again"
        super().__init__(f"cannot read {path} ({reason}); {what}")
        self.errno, self.path, self.reason = getattr(exc, "errno", None), path, reason

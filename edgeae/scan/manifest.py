"""The scan manifest's records: one :class:`Record` per line of ``manifest.jsonl`` (an image done, failed or
skipped), the statuses a line may record, and :func:`parse_record`, which reads one line and says what is wrong with
it. :class:`edgeae.scan.state.ScanStore` appends and reads them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Record:
    name: str
    key: str
    status: str  # "done" | "failed" | "skipped" (quality filter, before scanning)
    n_patches: int = 0
    n_skipped: int = 0
    error: str = ""
    seconds: float = 0.0
    reason: str = ""
    stamp: str = ""  # the files' sizes and modification times when recorded ("" in older manifests: not checked)
    valid_max: float = -1.0  # done: the largest valid fraction of any patch, 0 when none is valid (-1: not recorded)


_INT_FIELDS = ("n_patches", "n_skipped")
STATUSES = ("done", "failed", "skipped")  # what a manifest line may record (the report adds "pending")


def parse_record(line: bytes) -> Record:
    """One manifest line as a :class:`Record`; ValueError saying what is wrong with it (not UTF-8, not JSON, not an
    object, a field missing or of the wrong type, a status not in :data:`STATUSES`)."""
    d = json.loads(line.decode("utf-8"))  # UnicodeDecodeError and JSONDecodeError are ValueErrors
    if not isinstance(d, dict):
        raise ValueError(f"a JSON {type(d).__name__}, not an object")
    fields = {k: d[k] for k in Record.__dataclass_fields__ if k in d}
    for k in ("name", "key", "status"):
        if k not in fields:
            raise ValueError(f"no {k!r}")
    for k, v in fields.items():
        if k in _INT_FIELDS:
            ok = isinstance(v, int) and not isinstance(v, bool) and v >= 0
        elif k in ("seconds", "valid_max"):
            ok = isinstance(v, (int, float)) and not isinstance(v, bool)  # NaN from an old writer: harmless
        elif k == "status":
            ok = v in STATUSES
        else:
            ok = isinstance(v, str)
        if not ok:
            raise ValueError(f"{k!r} is {v!r}")
    return Record(**fields)


def missing_dependency(rec: Record) -> bool:
    """A failure that was the install's, not the file's: an optional package the reader needed was not installed (its
    :class:`~edgeae._optional.MissingDependencyError`, with the pip line). A plain rerun takes such an image again once
    that package can be found (:func:`dependency_found`, :meth:`edgeae.scan.state.ScanStore.pending`), as
    ``firmware-sim`` retakes a frame dropped ``decoder_unavailable``; until session 37 a scan without the [archive]
    extra recorded every planetary product so, and only ``--retry-failed`` scanned them once it was installed."""
    return rec.status == "failed" and rec.error.startswith("MissingDependencyError:")


_NEEDED = re.compile(r"^MissingDependencyError: '([A-Za-z_][\w.]*)' is needed here but is not installed")


def dependency_found(rec: Record) -> bool:
    """Whether the package ``rec`` failed for (:func:`missing_dependency`, named in its error: ``'rasterio' is
    needed``) can now be found (``importlib.util.find_spec``, nothing imported): only then does a plain rerun take it
    again. In session 37 before review r8 #2 it was read, failed and warned again at every rerun while still missing (a
    package Ray's workers lack, pyproj); an error naming no package (installed but failing to import) is left failed."""
    import importlib.util

    m = _NEEDED.match(rec.error) if missing_dependency(rec) else None
    if m is None:
        return False
    try:
        return importlib.util.find_spec(m.group(1)) is not None
    except (ImportError, ValueError):
        return False

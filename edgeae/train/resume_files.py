"""The per-file records of a run's ``last.pt``: each training and validation file's name, size and SHA-256, so that
a resume refused because the data changed names the files that changed, were added or were removed.

:class:`DataFiles` reads each file of a run once, at its start: the manifest hash, the model's training-data hash
and every ``last.pt``'s records all come from that one read (a save never reads the data again).
:func:`file_records` is what :func:`edgeae.train.resume.save_state` records, :func:`data_change` what
:func:`edgeae.train.resume.load_state` adds to its refusal.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeae._optional import require

Facts = tuple[tuple[Path, int, str], ...]  # (path, size, sha256) of each file


def _file_facts(files: Sequence[str | os.PathLike[str]]) -> Facts:
    """``(path, size, sha256)`` of each file, what :func:`edgeae.metadata.manifest_hash` hashes; each file read once."""
    from edgeae.metadata import sha256_file

    out = []
    for f in files:
        p = Path(f)
        out.append((p, p.stat().st_size, sha256_file(p)))
    return tuple(out)


def _facts_hash(facts: Sequence[tuple[Path, int, str]]) -> str:
    """:func:`edgeae.metadata.manifest_hash` of the files ``facts`` describes, without reading them again."""
    h = hashlib.sha256()
    for p, size, sha in sorted(facts, key=lambda t: t[0]):
        h.update(f"{p.name}\t{size}\t{sha}\n".encode())
    return h.hexdigest()


@dataclass(frozen=True)
class DataFiles:
    """The training and validation files of a run, each read once (:meth:`read`): their manifest hash
    (:attr:`hash`, equal to :func:`edgeae.metadata.manifest_hash` of them: older ``last.pt`` files still resume),
    the hash of a part of them (:meth:`hash_of`: the model's ``training_data_hash``) and ``last.pt``'s per-file
    records, without reading the data again."""

    facts: Facts

    @classmethod
    def read(cls, files: Sequence[str | os.PathLike[str]]) -> DataFiles:
        return cls(_file_facts(files))

    @property
    def hash(self) -> str:
        return _facts_hash(self.facts)

    def hash_of(self, files: Sequence[str | os.PathLike[str]]) -> str:
        """The manifest hash of ``files``, some of these files (a KeyError names one that is not)."""
        by_path = {p: (p, size, sha) for p, size, sha in self.facts}
        return _facts_hash([by_path[Path(f)] for f in files])


def _facts_of(files: Sequence[str | os.PathLike[str]] | DataFiles) -> Facts:
    return files.facts if isinstance(files, DataFiles) else _file_facts(files)


def _record_name(path: Path, data: str) -> str:
    """How ``last.pt`` names a file: relative to the run's data folder (``day1/IMG_0004.png``), as the checkpoint's
    ``train_files`` do, else (a named dataset) by its name."""
    if data and Path(data).is_absolute():
        with contextlib.suppress(ValueError):
            return path.relative_to(data).as_posix()
    return path.name


def file_records(
    files: Sequence[str | os.PathLike[str]] | DataFiles | None, data: str, data_hash: str
) -> list[list[Any]]:
    """``[name, size, sha256]`` of each of ``files`` (named as :func:`_record_name` says, ``data``: the run's
    ``--data``), [] when none are given, one is gone since the run read it, or they no longer make up
    ``data_hash`` (a file changed since: the start's hash stands, and the state is saved without the records).
    :class:`DataFiles` are not read again: their records are those of the start's read."""
    try:
        facts = _facts_of(files) if files else ()
    except OSError:
        return []
    return [[_record_name(p, data), size, sha] for p, size, sha in facts] if _facts_hash(facts) == data_hash else []


def _names(label: str, names: list[str], shown: int = 3) -> str:
    """``2 added (a.png, b.png)``, ``7 removed (a.png, b.png, c.png, … 4 more)``."""
    more = f", … {len(names) - shown} more" if len(names) > shown else ""
    return f"{len(names)} {label} ({', '.join(names[:shown])}{more})"


def data_change(
    folder: Path, blob: dict[str, Any], files: Sequence[str | os.PathLike[str]] | DataFiles, data: str
) -> str:
    """What differs between the files a run started on (its ``last.pt``'s per-file records, else the names its
    ``best.pt`` lists) and ``files`` now: ``": 1 changed (im0.png); 2 added (a.png, b.png)"``, or a note saying
    what the run did not record."""
    now = {_record_name(p, data): (size, sha) for p, size, sha in _facts_of(files)}
    records = blob.get("files")
    if isinstance(records, list) and records:
        old = {str(r[0]): (int(r[1]), str(r[2])) for r in records}
        changed = sorted(k for k in set(old) & set(now) if old[k] != now[k])
        note = ""
    else:
        old = {name: (0, "") for name in _best_names(folder)}
        changed, note = [], "; its last.pt records no file contents"
        if not old:
            return "; its last.pt records no file list, so which files changed is not known"
    parts = [
        _names(label, names)
        for label, names in (
            ("changed", changed),
            ("added", sorted(set(now) - set(old))),
            ("removed", sorted(set(old) - set(now))),
        )
        if names
    ]
    return ": " + ("; ".join(parts) if parts else "the same file names") + note


def _best_names(folder: Path) -> list[str]:
    """The train and val files the run's ``best.pt`` metadata lists (``extra``), [] when there is none."""
    torch = require("torch")
    from edgeae.checkpoint import check_intact

    try:
        check_intact(folder / "best.pt")  # a damaged one lists no names (the resume refuses it elsewhere)
        blob = torch.load(folder / "best.pt", map_location="cpu", weights_only=True)
        extra = json.loads(blob["edgeae"])["extra"]
        return [str(n) for key in ("train_files", "val_files") for n in extra.get(key, [])]
    except Exception:  # no best.pt yet, or an unreadable one: nothing to compare the names with
        return []

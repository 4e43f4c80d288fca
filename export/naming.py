"""What an export's files and its report are named after: the artifacts' file-name stem and the ``source`` that
``parity.json`` records (a zoo name, or the checkpoint's resolved path)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger("edgeae.export.api")  # the name its warnings always had


# characters a file name cannot hold on FAT/exFAT flight media (and Windows), besides control characters
UNSAFE_NAME_CHARS = frozenset('<>:"/\\|?*')


def artifact_stem(spec: str | os.PathLike[str], checkpoint: Path) -> str:
    """The file-name stem of a model's artifacts: a zoo name without ``zoo:``, else the checkpoint's stem.

    Characters that FAT flight media cannot store in a name become ``_`` (with a warning)."""
    from edgeae.resolve import ZOO_PREFIX

    text = os.fspath(spec)
    name = text.removeprefix(ZOO_PREFIX) if not Path(text).is_file() else ""
    if not name or "/" in name or "\\" in name or Path(name).suffix == ".pt":
        name = checkpoint.stem
    safe = "".join("_" if c in UNSAFE_NAME_CHARS or ord(c) < 32 else c for c in name)
    if safe != name:
        log.warning("%s: artifact files are named %r (FAT media cannot store %r)", spec, safe, name)
    return safe


def checkpoint_source(spec: str | os.PathLike[str], checkpoint: Path) -> str:
    """What ``parity.json`` records as an export's ``source``: ``zoo:NAME`` for a zoo model, else the checkpoint's
    resolved path (a re-export of the same path into the folder replaces its files; another path is another model)."""
    from edgeae.resolve import ZOO_PREFIX

    text = os.fspath(spec)
    if not text.startswith(ZOO_PREFIX) and Path(text).is_file():
        return str(checkpoint.resolve())
    return ZOO_PREFIX + text.removeprefix(ZOO_PREFIX)

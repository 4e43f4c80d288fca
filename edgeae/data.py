"""Where the real planetary imagery lives: an explicit path, $EDGEAE_DATA, or ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "EDGEAE_DATA"


class DataNotFoundError(FileNotFoundError):
    """The shared data folder (or a file inside it) is absent."""


def _candidates() -> list[Path]:
    out: list[Path] = []
    here = Path(__file__).resolve().parent.parent  # repository root in a source checkout
    for base in (Path.cwd(), here):
        for parent in (base, *base.parents[:3]):
            out.append(parent / "shared" / "data")
            out.append(parent.parent / "shared" / "data")
    return out


def find_data_root(path: str | os.PathLike[str] | None = None) -> Path | None:
    """Return the data root, or None when it cannot be found (never raises)."""
    if path is not None:
        p = Path(path)
        return p if p.is_dir() else None
    env = os.environ.get(ENV_VAR)
    if env:
        p = Path(env)
        return p if p.is_dir() else None
    for cand in _candidates():
        if (cand / "README.md").is_file() and cand.is_dir():
            return cand.resolve()
    return None


def data_root(path: str | os.PathLike[str] | None = None) -> Path:
    """The folder of the planetary data (``rover_rgb/``, ``orbital_gray/``, ...): ``path`` when given, else
    ``$EDGEAE_DATA``, else the first ``shared/data`` holding a README.md beside or above the working folder or this
    checkout (``../shared/data`` from a clone); :class:`DataNotFoundError` saying how to point at it when none is."""
    root = find_data_root(path)
    if root is None:
        where = f"{path}" if path is not None else os.environ.get(ENV_VAR) or "../shared/data"
        raise DataNotFoundError(
            f"planetary data folder not found at {where!r}: give the folder (--data-root on the command line), or "
            f"set ${ENV_VAR} "
            "to the folder that holds rover_rgb/, orbital_gray/ and hirise_landmarks/"
        )
    return root


def data_path(relative: str, root: str | os.PathLike[str] | None = None) -> Path:
    """Return ``root/relative``, raising :class:`DataNotFoundError` when it is absent."""
    p = data_root(root) / relative
    if not p.exists():
        raise DataNotFoundError(f"{p} does not exist in the data folder")
    return p

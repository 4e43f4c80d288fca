"""File stamps of a scan's manifest: size and modification time of a product and of every file it is read with,
so a resume rescans a product any of whose files was replaced (:func:`file_stamp`, :func:`stamp_changed`)."""

from __future__ import annotations

from pathlib import Path

from edgeae.archive.formats import product_files


def _stat(path: Path) -> str:
    try:
        st = path.stat()
    except OSError:
        return ""
    return f"{st.st_size}:{st.st_mtime_ns}"


def file_stamp(path: Path) -> str:
    """``size:mtime_ns`` of ``path``, then ``;name=size:mtime_ns`` of each other file the product is read with
    (a detached label's data file, a data file's label); "" when ``path`` cannot be read. A product any of whose
    files was replaced since its record has another stamp."""
    own = _stat(path)
    if not own:
        return ""
    return ";".join([own, *(f"{f.name}={_stat(f)}" for f in product_files(path))])


def stamp_changed(old: str, path: Path) -> bool:
    """Does ``path`` (or a file it is read with) differ from its recorded stamp ``old``?

    Manifests written before data files were stamped hold ``size:mtime_ns`` of the entry alone: only that
    part is compared for them, so an old scan resumes without scanning every detached product again.
    """
    new = file_stamp(path)
    if ";" not in old:
        return old != new.split(";", 1)[0]
    return old != new

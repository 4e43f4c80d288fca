"""How an archive scan walks a folder tree past links, shared by the folder walk and ``**`` globs: :func:`_follow`
(which folders reached through a link are walked) and :func:`_glob_tree` (a ``**`` glob matched as :func:`glob.glob`
matches it, but with a guarded walk: glob followed a link loop until ELOOP)."""

from __future__ import annotations

import fnmatch
import glob
import logging
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from edgeae.printable import printable

log = logging.getLogger("edgeae.scan.archive")  # the archive's warnings, under one name

_GLOB_CHARS = re.compile(r"[*?\[]")


def _follow(path: Path, root_real: str, walked: set[str], through_link: set[str]) -> bool:
    """Whether :func:`_walk_dir` walks the folder ``path``: a real folder always, unless reached through a link; a
    folder reached through a link when its real path lies outside the archive folder (whose real path is
    ``root_real``: those files are walked under their own names) and is not one walked already (``walked``, the real
    paths of the folders walked through links: a link back up the tree, a loop, ends there)."""
    full = os.fspath(path)
    if not os.path.islink(full) and os.path.dirname(full) not in through_link:
        return True  # the common case: no link on the way, no real path needed
    real = os.path.realpath(full)
    if root_real.startswith(real.rstrip(os.sep) + os.sep):  # a folder above the archive (up -> .., /): not walked
        log.warning("%s leads to %s, a folder holding the archive: not walked", printable(full), printable(real))
        return False
    if real in walked or real == root_real or real.startswith(root_real.rstrip(os.sep) + os.sep):
        log.debug("%s leads to %s, walked under another name: not walked again", full, real)
        return False
    walked.add(real)
    through_link.add(full)
    return True


def _glob_tree(pattern: str) -> list[str]:
    """The paths ``pattern`` (with ``**``) matches, as :func:`glob.glob` with ``recursive=True`` gives them (the same
    strings; every part matched by :mod:`fnmatch` as glob matches it: ``[^a]`` holds ``^``, ``[[]`` holds ``[``, a
    name starting with a dot only for a part that does), but each ``**`` walked with the folder walk's guard on links
    (:func:`_follow`): a link to a folder outside the tree is followed once, a link back into it or to a folder walked
    already is not (glob followed each until the system's 40 links, ELOOP: every image listed 40 times under longer
    names; two such links, 2^40 names, and the walk never ended). A ``**`` walks the folders the parts before it name,
    each as its own tree (``arc*/**``: each folder ``arc*`` names, not the whole parent folder: review s36 r17 #2).
    Until session 37 the parts after the first ``**`` were matched by a regex of this module's own, which read ``[^a]``
    as negation, warned on ``[[]`` (FutureWarning) and let a set match the ``/`` between two names. A folder a
    wildcard part matched is not looked into when it is a loop link (:func:`_loop_link`), and each path is listed once
    (glob lists a file once for each way two ``**`` split its folders)."""
    if "**" not in pattern.split("/"):  # "**" inside a part is "*" there: no recursion
        return glob.glob(pattern)
    found = list(_iglob(pattern, dironly=False))
    if pattern[:2] == "**" and found and found[0] == "":  # as glob.iglob: the folder itself, named "", left out
        found.pop(0)
    return list(dict.fromkeys(found))  # each once: two ** list a file once for each folder level they can split at


def _iglob(pathname: str, dironly: bool) -> Iterator[str]:
    """:func:`glob.glob`'s own recursion (Python 3.11's ``glob._iglob``, no ``root_dir`` or ``dir_fd``), with its
    ``**`` listing replaced by :func:`_rlist`."""
    dirname, basename = os.path.split(pathname)
    if not _GLOB_CHARS.search(pathname):
        if basename:
            if os.path.lexists(pathname):
                yield pathname
        elif os.path.isdir(dirname):  # a pattern ending with "/" matches folders only
            yield pathname
        return
    if not dirname:
        yield from _in_dir("", basename, dironly)
        return
    matched = dirname != pathname and _GLOB_CHARS.search(dirname)
    dirs: Iterable[str] = _iglob(dirname, dironly=True) if matched else [dirname]
    for d in dirs:
        if matched and _loop_link(d):
            continue
        for name in _in_dir(d, basename, dironly):
            yield os.path.join(d, name)


def _loop_link(folder: str) -> bool:
    """Whether ``folder``, a folder a pattern part matched, is a link to a folder holding it (its own folder or one
    above: a loop). Such a folder is not looked into: a ``**`` walk does not follow it (:func:`_follow`), and a part
    with a wildcard between two ``**`` (``arc/**/*/**``) took it and walked the archive again under its name."""
    path = folder.rstrip(os.sep) or folder
    if not os.path.islink(path):
        return False
    real, parent = os.path.realpath(path), os.path.realpath(os.path.dirname(path) or os.curdir)
    if parent == real or parent.startswith(real.rstrip(os.sep) + os.sep):
        log.debug("%s leads to %s, a folder holding it (a loop): not looked into", folder, real)
        return True
    return False


def _in_dir(dirname: str, part: str, dironly: bool) -> Iterator[str]:
    """The names in ``dirname`` ("": the working folder) that the pattern part ``part`` matches, as glob lists them:
    ``**`` the folder itself ("") and everything below it (:func:`_rlist`), a part with a wildcard by
    :func:`fnmatch.filter` (names starting with a dot only for a part that does), any other part by its existence."""
    if part == "**":
        yield ""
        yield from _rlist(dirname, dironly)
    elif _GLOB_CHARS.search(part):
        names = _listdir(dirname, dironly)
        if not part.startswith("."):
            names = [n for n in names if not n.startswith(".")]
        yield from fnmatch.filter(names, part)
    elif part:
        if os.path.lexists(os.path.join(dirname, part) if dirname else part):
            yield part
    elif os.path.isdir(dirname):
        yield part


def _listdir(dirname: str, dironly: bool) -> list[str]:
    """The names in ``dirname`` (folders only with ``dironly``, links to folders included); [] when it cannot be
    listed."""
    try:
        with os.scandir(dirname or os.curdir) as it:
            return [e.name for e in it if not dironly or _is_dir(e)]
    except OSError:
        return []


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _rlist(dirname: str, dironly: bool) -> Iterator[str]:
    """What ``**`` matches below ``dirname``, relative to it: every name that does not start with a dot, in folders
    whose names do not (folders only with ``dironly``), walked with :func:`_follow`'s guard on links."""
    top = dirname or os.curdir
    root_real = os.path.realpath(top)
    walked: set[str] = set()
    through_link: set[str] = set()
    rels = {top: ""}
    for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
        rel = rels.pop(dirpath)
        dirnames[:] = [
            d for d in sorted(dirnames)
            if not d.startswith(".") and _follow(Path(dirpath, d), root_real, walked, through_link)
        ]  # fmt: skip
        for d in dirnames:
            rels[os.path.join(dirpath, d)] = os.path.join(rel, d) if rel else d
            yield rels[os.path.join(dirpath, d)]
        if not dironly:
            yield from (os.path.join(rel, f) if rel else f for f in sorted(filenames) if not f.startswith("."))

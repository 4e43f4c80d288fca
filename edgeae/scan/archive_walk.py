"""How an archive scan walks a folder tree past links, shared by the folder walk and ``**`` globs: :func:`_follow`
(which folders reached through a link are walked) and :func:`_glob_tree` (a ``**`` glob matched by a guarded walk,
not :func:`glob.glob`, which followed a link loop until ELOOP)."""

from __future__ import annotations

import glob
import logging
import os
import re
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
    """The paths ``pattern`` (with ``**``) matches, as :func:`glob.glob` with ``recursive=True`` gives them, but walked
    with the folder walk's guard on links (:func:`_follow`): a link to a folder outside the tree is followed once, a
    link back into it or to a folder walked already is not (glob followed each until the system's 40 links, ELOOP:
    every image listed 40 times under longer names; two such links, 2^40 names, and the walk never ended). Wildcards
    before the first ``**`` part are matched first (``arc*/**``: each folder ``arc*`` names is walked as its own tree,
    not the whole parent folder: review s36 r17 #2)."""
    parts = pattern.split("/")
    if "**" not in parts:  # "**" inside a part is "*" there: no recursion
        return glob.glob(pattern)
    k = parts.index("**")
    lead, rest = "/".join(parts[:k]), "/".join(parts[k:])
    if _GLOB_CHARS.search(lead):
        tops = sorted(d for d in glob.glob(lead) if os.path.isdir(d))
        return [f for top in tops for f in _walk_glob(top + "/", rest)]
    return _walk_glob(lead + "/" if parts[:k] else "", rest)


def _walk_glob(top: str, rest: str) -> list[str]:
    """The paths under the folder ``top`` (``""``: the working folder; else ending in ``/``) that the glob ``rest``
    (from its first ``**`` part on) matches, walked with :func:`_follow`'s guard on links."""
    regex = _glob_regex(rest)
    top = top or "."
    root_real = os.path.realpath(top)
    walked: set[str] = set()
    through_link: set[str] = set()
    out = []
    for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
        dirnames[:] = [d for d in sorted(dirnames) if _follow(Path(dirpath, d), root_real, walked, through_link)]
        rel = os.path.relpath(dirpath, top).replace(os.sep, "/")
        rel = "" if rel == "." else rel + "/"
        out += [os.path.join(dirpath, f) for f in (*dirnames, *filenames) if regex.fullmatch(rel + f)]
    return [p[2:] if top == "." and p.startswith("./") else p for p in out]  # as glob names them


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A regex of ``/``-separated relative paths for a glob ``pattern`` as :func:`glob.glob` reads it with
    ``recursive=True``: ``**`` alone in a part is any number of folders, ``*``, ``?`` and ``[...]`` stay in one
    part, and a wildcard does not match a name that starts with a dot."""
    parts = pattern.split("/")
    out = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == "**":
            out.append(r"(?:(?!\.)[^/]*/)*" + (r"(?:(?!\.)[^/]*)?" if last else ""))
            continue
        rx = r"(?!\.)" if part[:1] in ("*", "?", "[") else ""
        j = 0
        while j < len(part):
            c = part[j]
            if c == "*":
                rx += "[^/]*"
            elif c == "?":
                rx += "[^/]"
            elif c == "[" and (k := part.find("]", j + 2)) != -1:
                body = part[j + 1 : k]
                rx += "[" + ("^" + body[1:] if body.startswith("!") else body).replace("\\", "\\\\") + "]"
                j = k
            else:
                rx += re.escape(c)
            j += 1
        out.append(rx + ("" if last else "/"))
    return re.compile("".join(out))

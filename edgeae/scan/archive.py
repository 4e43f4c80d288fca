"""Walk an archive: folders of images, manifest files (one path a line) and glob patterns -> entries.

Every entry has a stable ``name`` (the path relative to the folder, manifest or glob root it came from,
with ``/`` separators) used in the results, and a ``key`` derived from it that names its result files. A file
name that is not UTF-8 (legal on Linux) is kept as the file system gives it, keyed by its bytes, and written in the
results with those bytes as ``\\xNN`` (:func:`edgeae.printable.printable`).
The list is sorted by name and de-duplicated, so two walks of the same archive give the same order.
Planetary products (PDS3, PDS4, ISIS3, VICAR, JP2: :mod:`edgeae.archive`) are walked too; a product with a
detached label appears once, by its label (its data file beside it is dropped), and an ``.xml`` counts
only when it is a PDS4 label. Anything that is not a regular file (a FIFO, a socket, a link to a device) is
never opened: the walk leaves it out and names it in a warning (a FIFO would block the scan forever). A symbolic link
loop (``M.IMG -> M.IMG``) is kept as an entry, which the scan records as failed with :func:`link_loop`'s reason
(until session 37 its ``Path.resolve`` ended the whole walk in a RuntimeError traceback).
"""

from __future__ import annotations

import errno
import functools
import hashlib
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from edgeae.printable import printable
from edgeae.scan.archive_walk import _GLOB_CHARS, _follow, _glob_tree

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".pgm", ".ppm", ".pnm")
PRODUCT_SUFFIXES = (".img", ".lbl", ".cub", ".xml", ".lblx", ".vic", ".jp2", ".j2k", ".jpx", ".qub")
SCAN_SUFFIXES = IMAGE_SUFFIXES + PRODUCT_SUFFIXES
MANIFEST_SUFFIXES = (".txt", ".lst", ".list", ".csv")
# what a scan writes at the top of its results folder (not archive files when that folder is the archive's)
RESULT_FILES = ("scan.json", "manifest.jsonl", "results.parquet", "images.parquet", "report.json", "report.md")


@dataclass(frozen=True)
class ArchiveEntry:
    """One image of the archive: where it is and how the results name it."""

    path: Path
    name: str

    @functools.cached_property
    def key(self) -> str:
        """File-system-safe, unique id of ``name``: a readable stem plus 12 hex digits of its SHA-1; computed once
        per entry (it was hashed at each use: 18,832 SHA-1s in one end of a run of 3,122 images)."""
        return entry_key(self.name)


def entry_key(name: str) -> str:
    """``name``'s key: its stem with anything but ``A-Za-z0-9._-`` as ``_``, cut to 40 characters, then 12 hex digits
    of the SHA-1 of its bytes (:func:`name_bytes`: a UTF-8 name's keys are those of every earlier version)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).stem)[:40]
    digest = hashlib.sha1(name_bytes(name)).hexdigest()[:12]
    return f"{stem}-{digest}"


def name_bytes(name: str) -> bytes:
    """``name`` as bytes: UTF-8, or, for a file name that is not UTF-8 (legal on Linux: Python holds its other bytes
    as surrogates, ``'x\\udcfe.png'``), the bytes it has on disk (:func:`os.fsencode`)."""
    try:
        return name.encode("utf-8")
    except UnicodeEncodeError:
        pass
    try:
        return os.fsencode(name)
    except UnicodeEncodeError:  # a surrogate the file system's codec cannot have given: its UTF-8 form
        return name.encode("utf-8", "surrogatepass")


def _is_image(p: Path, suffixes: tuple[str, ...]) -> bool:
    return p.is_file() and p.suffix.lower() in suffixes


def _walk_dir(root: Path, suffixes: tuple[str, ...], skip: frozenset[Path] = frozenset()) -> list[ArchiveEntry]:
    """Images and products below ``root``; folders whose resolved path is in ``skip`` (this scan's results folder
    inside the archive) are not walked, nor the ``topk/`` and ``parts/`` of any other scan's results folder (one
    holding a ``scan.json``). A link to a folder is walked as a folder (its files named through the link), unless it
    leads into ``root`` (those files are walked under their own names) or to a folder already walked (a loop)."""
    out = []
    other: Counter[str] = Counter()  # files of other types: not scanned, but said so
    root_real = os.path.realpath(root)
    walked: set[str] = set()  # the real paths of the folders walked through links
    through_link: set[str] = set()  # the folders at or below a followed link (as walked: through it)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        if skip:
            dirnames[:] = [d for d in dirnames if (Path(dirpath) / d).resolve() not in skip]
        if "scan.json" in filenames:  # another scan's results folder: its thumbnails and parts are not archive images
            dirnames[:] = [d for d in dirnames if d not in ("topk", "parts")]
            filenames = [f for f in filenames if f not in RESULT_FILES]
        dirnames[:] = [d for d in sorted(dirnames) if _follow(Path(dirpath, d), root_real, walked, through_link)]
        found, rest = [], []
        for fn in sorted(filenames):
            p = Path(dirpath) / fn
            if fn.startswith("."):
                continue
            if p.suffix.lower() in suffixes:
                found.append(p)
                out.append(ArchiveEntry(p, p.relative_to(root).as_posix()))
            else:
                rest.append(p)
        if skip and (Path(dirpath) / "parts").resolve() in skip:  # the results folder is this one
            rest = [p for p in rest if p.name not in RESULT_FILES]
        if rest and found:  # a PDS4 product's data files (.dat, .fits, ...) are read through its label
            read = _read_via_labels(found)
            rest = [p for p in rest if p not in read]
        for p in rest:
            other[p.suffix.lower() or "(no extension)"] += 1
    if other:
        kinds = ", ".join(f"{k} {n}" for k, n in other.most_common(6)) + (", ..." if len(other) > 6 else "")
        log.warning(
            "%s: %d file(s) of other types are not images or products and were not scanned (%s)",
            printable(str(root)), sum(other.values()), kinds,
        )  # fmt: skip
    return out


def _read_via_labels(files: list[Path]) -> set[Path]:
    """The data files that the labels among ``files`` name (PDS4 .dat, .fits, ...: scanned through the label)."""
    from edgeae.archive.formats import product_files

    read: set[Path] = set()
    for p in files:
        if p.suffix.lower() in (".xml", ".lblx", ".lbl"):
            read.update(product_files(p))
    return read


def _manifest_lines(manifest: Path) -> list[str]:
    """The first field of each line: the line itself, or a CSV row's first column (quotes and commas as the csv
    module reads them)."""
    # a path that is not UTF-8 (``find`` writes a file's bytes as they are) is read as the file system gives it
    text = manifest.read_text(encoding="utf-8", errors="surrogateescape")
    if manifest.suffix.lower() != ".csv":
        return text.splitlines()
    import csv
    import io

    return [row[0] if row else "" for row in csv.reader(io.StringIO(text))]


def _read_manifest(manifest: Path) -> list[ArchiveEntry]:
    """Lines are paths (absolute or relative to the manifest's folder); ``#`` comments and blanks skipped.

    A CSV manifest takes the first column (read with :mod:`csv`: a quoted path may hold commas), and skips a
    header line named ``file``, ``path`` or ``filename``.
    """
    out = []
    base = manifest.parent
    for i, line in enumerate(_manifest_lines(manifest)):
        text = line.strip()
        if i == 0 and manifest.suffix.lower() == ".csv" and text.lower() in ("file", "path", "filename"):
            continue
        if not text or text.startswith("#"):
            continue
        p = Path(text)
        full = p if p.is_absolute() else base / p
        # Missing files are kept: the scan records them as failed instead of losing them silently.
        out.append(ArchiveEntry(full, p.as_posix()))
    return out


def _glob(pattern: str, suffixes: tuple[str, ...]) -> list[ArchiveEntry]:
    m = _GLOB_CHARS.search(pattern)
    root = Path(pattern[: m.start()] if m else pattern)
    if not pattern[: m.start() if m else len(pattern)].endswith(("/", os.sep)):
        root = root.parent
    found = _glob_tree(pattern)
    out = []
    for s in sorted(found):
        p = Path(s)
        if _is_image(p, suffixes):
            out.append(ArchiveEntry(p, p.relative_to(root).as_posix() if p.is_relative_to(root) else s))
    return out


def walk_archive(
    specs: str | os.PathLike[str] | list[str | os.PathLike[str]],
    suffixes: tuple[str, ...] = SCAN_SUFFIXES,
    *,
    exclude: str | os.PathLike[str] | None = None,
) -> list[ArchiveEntry]:
    """Entries of one or more archive specs (folder, manifest file, image file or glob), sorted by name.

    ``exclude``: a scan's results folder; nothing in it is an archive image (when it is inside a walked folder,
    or that folder itself, its thumbnails would be scanned on the next run). A file listed twice under different
    names (``arch arch/sub``, ``../a/x.png`` and ``../a/sub/../x.png``) is kept once, by the name it was first given.
    Raises :class:`FileNotFoundError` for a spec that names nothing, :class:`ValueError` when two different
    files would get the same name in the results.
    """
    if isinstance(specs, (str, os.PathLike)):
        specs = [specs]
    skip = _results_folders(specs, exclude)
    entries: list[ArchiveEntry] = []
    for spec in specs:
        text = os.fspath(spec)
        p = Path(text)
        if p.is_dir():
            entries += _walk_dir(p, suffixes, skip)
        elif p.is_file() and p.suffix.lower() in MANIFEST_SUFFIXES:
            entries += _read_manifest(p)
        elif p.is_file():
            entries.append(ArchiveEntry(p, p.name))
        elif _special(p) is not None:
            raise FileNotFoundError(f"archive {text!r} is {_special(p)}, not a regular file: not read")
        elif (loop := link_loop(p)) is not None:
            raise FileNotFoundError(f"archive {text!r} is {loop}: not read")
        elif _GLOB_CHARS.search(text):
            found = _glob(text, suffixes)
            if not found:
                raise FileNotFoundError(f"archive glob {text!r} matches no image files")
            entries += found
        elif not os.path.lexists(p):  # the usual case: a typo, or a folder not made yet
            raise FileNotFoundError(
                f"archive {text!r} does not exist (give a folder, a manifest file, an image or a glob)"
            )
        else:
            raise FileNotFoundError(f"archive {text!r} is not a folder, a manifest file, an image or a glob")
    resolved: dict[Path, Path] = {}  # each path resolved once (a syscall per component: slow on big or NFS trees)

    def res(path: Path) -> Path:
        r = resolved.get(path)
        if r is None:
            r = resolved[path] = _resolve(path)
        return r

    if skip:
        entries = [e for e in entries if not any(res(e.path).is_relative_to(d) for d in skip)]
    by_name: dict[str, ArchiveEntry] = {}
    repeats: list[str] = []
    for e in entries:
        old = by_name.get(e.name)
        if old is not None and res(old.path) != res(e.path):
            raise ValueError(f"two archive files share the name {e.name!r}: {old.path} and {e.path}")
        if old is not None:
            repeats.append(e.name)
        by_name[e.name] = e
    if repeats:  # a manifest line given twice, or a file both in a folder and named again: one scan of it
        distinct = len(set(repeats))
        log.warning(
            "%d archive file(s) listed more than once are scanned once (e.g. '%s')", distinct, printable(repeats[0])
        )
    special = [(n, k) for n, e in by_name.items() if (k := _special(e.path)) is not None]
    if special:  # never opened (a FIFO blocks the first read until a writer comes): left out, and said so
        shown = ", ".join(f"{printable(n)} ({k})" for n, k in special[:5]) + (
            f" and {len(special) - 5} more" if len(special) > 5 else ""
        )
        log.warning(
            "%d archive file(s) are not regular files and were not scanned (never opened): %s", len(special), shown
        )
        for n, _ in special:
            del by_name[n]
    listed = {res(e.path) for e in by_name.values()}
    given = {e.name: i for i, e in reversed(list(enumerate(entries)))}  # where each name was first listed
    out: dict[str, ArchiveEntry] = {}
    for n in sorted(by_name):
        e = by_name[n]
        if _not_a_label(e):
            continue
        label = _detached_label(e)
        if label is not None:  # a data file is read through its label: once, by the label's entry
            if res(label) in listed:
                continue
            given.setdefault(str(Path(e.name).with_name(label.name)), given[n])
            e = ArchiveEntry(label, str(Path(e.name).with_name(label.name)))  # named alone (a manifest, a path)
        out.setdefault(e.name, e)
    kept: dict[Path, ArchiveEntry] = {}
    dropped: list[tuple[ArchiveEntry, ArchiveEntry]] = []
    for n in sorted(out, key=lambda n: (given[n], n)):  # a file listed twice keeps the name it was first given
        e = out[n]
        first = kept.setdefault(res(e.path), e)
        if first is not e:
            dropped.append((e, first))
    if dropped:
        e, first = dropped[0]
        log.warning(
            "%d archive file(s) listed under two names are scanned once (e.g. '%s', scanned as '%s')",
            len(dropped), printable(e.name), printable(first.name),
        )  # fmt: skip
    return sorted(kept.values(), key=lambda e: e.name)


def _results_folders(specs: list[str | os.PathLike[str]], out: str | os.PathLike[str] | None) -> frozenset[Path]:
    """What of the results folder ``out`` is left out of the archive: all of it, or, when an archive spec lies in
    it (the results written into the archive's own folder), the ``parts/`` and ``topk/`` the scan writes."""
    if out is None:
        return frozenset()
    ex = _resolve(Path(os.fspath(out)))
    roots = [_GLOB_CHARS.split(os.fspath(s), 1)[0] or "." for s in specs]  # a glob by the folder it starts in
    if any(_resolve(Path(r)).is_relative_to(ex) for r in roots):
        return frozenset({ex / "parts", ex / "topk"})
    return frozenset({ex})


def _resolve(p: Path) -> Path:
    """``p.resolve()``, or, for a path that runs into a symbolic link loop (RuntimeError in Python 3.11, OSError
    ELOOP in later ones), its absolute path as given: the loop is that entry's failure, not the walk's."""
    try:
        return p.resolve()
    except (RuntimeError, OSError):
        return Path(os.path.abspath(p))


def link_loop(p: Path) -> str | None:
    """``'a symbolic link loop (M.IMG -> M.IMG)'`` when following ``p``'s links never ends (ELOOP), else None (a
    missing file, a dangling link: said by whoever opens it)."""
    try:
        os.stat(p)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            return None
        try:
            return f"a symbolic link loop ({printable(p.name)} -> {printable(os.readlink(p))})"
        except OSError:  # p is not a link itself: a folder on its path loops
            return f"a path through a symbolic link loop ({printable(str(p))})"
    except ValueError:  # a NUL in a manifest line: not a loop
        return None
    return None


def _special(p: Path) -> str | None:
    """'a FIFO', 'a socket', ... for a path that exists but is not a regular file or a folder, else None."""
    from edgeae.archive.formats import not_regular

    kind = not_regular(p)
    return None if kind == "a directory" else kind


def _not_a_label(e: ArchiveEntry) -> bool:
    """An .xml that is not a PDS4 label (left out of the scan)."""
    if e.path.suffix.lower() != ".xml":
        return False
    from edgeae.archive.formats import is_pds4_label

    return e.path.exists() and not is_pds4_label(e.path)


def _detached_label(e: ArchiveEntry) -> Path | None:
    """The detached label beside a PDS3 data file (.img, .qub), which the product is read through, or None."""
    if e.path.suffix.lower() not in (".img", ".qub") or not e.path.exists():
        return None
    from edgeae.archive.formats import label_for

    label = label_for(e.path)
    return None if label is None else Path(label)

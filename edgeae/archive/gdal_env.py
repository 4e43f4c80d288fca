"""edgeae's access to GDAL (through rasterio): the capped block cache every open and read runs under, opening a
dataset without per-file georeferencing warnings (and without a CRS PROJ cannot parse), GDAL's own words for a
failed open or read, and the byte limit of one read window (``EDGEAE_MAX_IMAGE_BYTES``).

GDAL messages that quote a label's bytes verbatim (``INTFMT=\\xd8IGH layout not supported``) are not always UTF-8;
rasterio's message logger fails to decode them and prints an "Exception ignored" traceback per open. Under
:func:`_open_env` a handler of edgeae's own passes each message on with such bytes escaped (:func:`_utf8_messages`);
the failed open itself still raises ``UnicodeDecodeError``, which the reader turns into one line (:func:`gdal_message`
gives the message's words).
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import tempfile
import warnings
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgeae._headers import ImageReadError
from edgeae._optional import require
from edgeae.printable import printable

_NOT_FINITE = re.compile(r'PARAMETER\["([^"]+)",\s*([+-]?(?:inf|nan)\w*)', re.IGNORECASE)  # in a WKT
GDAL_CACHE_MB = 16  # GDAL's default is 5 % of RAM: RSS would grow with every block a stream reads


def gdal_message(exc: BaseException) -> str:
    """GDAL's own words for a rasterio error: "Read failed. See previous exception..." carries them in its cause; a
    ``UnicodeDecodeError`` (a message or label text that is not UTF-8) gives the text with those bytes escaped."""
    if isinstance(exc, UnicodeDecodeError) and isinstance(exc.object, bytes):
        text = exc.object.decode("utf-8", "backslashreplace").strip()
        return (text[:200] + "…" if len(text) > 200 else text) or type(exc).__name__
    top = str(exc).strip()
    cause = exc.__cause__ or exc.__context__
    if "See previous exception" in top and cause is not None:
        return f"{top.split('.')[0]}: {str(cause).strip() or type(cause).__name__}"
    return top or type(exc).__name__


def max_window_bytes() -> int:
    """The most bytes one read window may take: ``EDGEAE_MAX_IMAGE_BYTES`` (the decode limit, 2 GiB by default)."""
    try:
        from edgeae.imagedecode import ImageLimits
    except ImportError:  # an edgeae without decode limits
        return 2 << 30
    return ImageLimits.from_env().max_bytes


@functools.cache
def _gdal_handler() -> tuple[Any, Any, Any] | None:
    """GDAL's CPLPushErrorHandler and CPLPopErrorHandler, and a handler that passes each message on to the handler
    below it (rasterio's logger) with bytes that are not UTF-8 escaped; None where the C API cannot be reached."""
    try:
        import ctypes

        import rasterio._env

        lib = ctypes.CDLL(rasterio._env.__file__)  # its symbols resolve in the libgdal it was linked with
        proto = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_int, ctypes.c_char_p)
        push, pop, previous = lib.CPLPushErrorHandler, lib.CPLPopErrorHandler, lib.CPLCallPreviousHandler
    except (ImportError, OSError, AttributeError):
        return None
    push.argtypes, push.restype = [proto], None
    pop.argtypes, pop.restype = [], None
    previous.argtypes, previous.restype = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p], None

    def relay(err_class: int, err_no: int, msg: bytes | None) -> None:
        try:
            msg = msg or b""
            try:
                msg.decode("utf-8")
            except UnicodeDecodeError:
                msg = msg.decode("utf-8", "backslashreplace").encode("utf-8")
            previous(err_class, err_no, msg)
        except BaseException:  # nothing may escape a C callback (it would print a traceback)
            pass

    return push, pop, proto(relay)  # cached: the callback must outlive every push of it


@contextlib.contextmanager
def _utf8_messages() -> Iterator[None]:
    """Push :func:`_gdal_handler`'s handler for the body (GDAL's handler stack is per thread); a no-op without it."""
    gdal = _gdal_handler()
    if gdal is None:
        yield
        return
    push, pop, handler = gdal
    push(handler)
    try:
        yield
    finally:
        pop()


@contextlib.contextmanager
def _open_env(**extra: Any) -> Iterator[None]:
    """rasterio's environment with the capped block cache and ``extra`` GDAL options, messages made UTF-8."""
    rasterio = require("rasterio")
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB * 1024**2, CPL_DEBUG=False, **extra), _utf8_messages():  # bytes
        yield


def _reader_without_crs(rasterio: Any) -> Any:
    """rasterio's DatasetReader that reads a CRS GDAL gives but PROJ cannot parse (an infinite standard parallel
    from ``1e309`` in a label) as no CRS, keeping PROJ's words in ``crs_error``, instead of failing to open."""

    class _Reader(rasterio.io.DatasetReader):
        crs_error: str | None = None

        def _handle_crswkt(self, wkt: Any) -> Any:  # rasterio 1.4: parses the dataset's WKT at open
            try:
                return super()._handle_crswkt(wkt)
            except rasterio.errors.CRSError as exc:
                bad = _NOT_FINITE.search(str(wkt))
                self.crs_error = (str(exc).strip() or type(exc).__name__) + (
                    f": {bad.group(1)} = {bad.group(2)}" if bad else ""
                )
                return None

    return _Reader


def _open(rasterio: Any, target: Path, opts: dict[str, Any]) -> Any:
    """Open ``target`` read-only under :func:`_open_env`. A CRS PROJ cannot parse opens without one; the dataset's
    ``crs_error`` says why (None on other datasets: check it with ``getattr``). A path that is not UTF-8 (legal on
    Linux; rasterio encodes paths as UTF-8 and refuses it) is opened through links of a UTF-8 name
    (:class:`_Alias`), kept until :func:`close_dataset` (or the dataset's end); :func:`dataset_files` gives the files
    GDAL reads under their own paths."""
    alias = _Alias.of(target)
    try:
        ds = _open_as(rasterio, alias.path if alias is not None else os.fspath(target), opts)
    except rasterio.errors.RasterioError as exc:
        if alias is None:
            raise
        alias.remove()
        raise type(exc)(alias.unalias(str(exc))) from exc  # GDAL's words name the link: said with the file's path
    except BaseException:
        if alias is not None:
            alias.remove()
        raise
    ds._edgeae_opts = dict(opts)  # for a second open of its own (:func:`_file_list_bytes`)
    if alias is not None:
        ds._edgeae_alias = alias
        weakref.finalize(ds, alias.remove)
    return ds


def _open_as(rasterio: Any, path: str, opts: dict[str, Any]) -> Any:
    with _open_env(**opts), warnings.catch_warnings():
        # camera-geometry products have no geotransform: that is expected, not worth a warning per file
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        try:
            return rasterio.open(path)
        except rasterio.errors.CRSError:
            if not hasattr(rasterio.io.DatasetReader, "_handle_crswkt"):  # another rasterio: refused as before
                raise
            return _reader_without_crs(rasterio)(path)


def close_dataset(ds: Any) -> None:
    """Close a dataset :func:`_open` gave, and remove the links it was opened through (if any)."""
    if not ds.closed:
        ds.close()
    alias = getattr(ds, "_edgeae_alias", None)
    if alias is not None:
        alias.remove()


def dataset_message(ds: Any, exc: BaseException) -> str:
    """:func:`gdal_message` for an error of ``ds``, the links it was opened through (if any) named as the files."""
    alias = getattr(ds, "_edgeae_alias", None)
    text = gdal_message(exc)
    return alias.unalias(text) if alias is not None else text


def dataset_files(ds: Any) -> list[str]:
    """The files GDAL reads for ``ds`` (``ds.files``), under their own paths where it was opened through links.

    A file a label names by bytes that are not UTF-8 (``^IMAGE = "t\\xe9.img"``, an ISIS3 ``^Core =
    ../out/t\\xe9.core``) makes rasterio's ``ds.files`` fail to decode GDAL's list; the list is then GDAL's own, taken
    as bytes (:func:`_file_list_bytes`), so each file is checked as any other. Where it cannot be had, the product is
    refused: which files GDAL reads is unknown (a list made from the label had let an ISIS3 ``^Core`` leave the
    label's folder)."""
    alias = getattr(ds, "_edgeae_alias", None)
    try:
        files = ds.files
    except UnicodeDecodeError:
        files = getattr(ds, "_edgeae_files", None)
        if files is None:
            raw = _file_list_bytes(ds, getattr(ds, "_edgeae_opts", {}))
            if raw is None:
                label = alias.full if alias is not None else ds.name
                raise ImageReadError(
                    f"{printable(label)}: GDAL reads a file whose name is not UTF-8: cannot check where it reads "
                    "(its list of files could not be had as bytes); rename the product's files"
                ) from None
            files = ds._edgeae_files = [os.fsdecode(f) for f in raw]
    return [alias.original(f) if alias is not None else f for f in files]


GDAL_OF_RASTER = 0x02  # GDALOpenEx flags (gdal.h): a raster, read-only (GDAL_OF_READONLY is 0)


@functools.cache
def _gdal_api() -> tuple[Any, Any, Any, Any] | None:
    """GDAL's GDALOpenEx, GDALGetFileList, CSLDestroy and GDALClose in the libgdal rasterio was linked with; None where
    the C API cannot be reached."""
    try:
        import ctypes

        import rasterio._env

        lib = ctypes.CDLL(rasterio._env.__file__)
        open_ex, file_list, destroy, close = lib.GDALOpenEx, lib.GDALGetFileList, lib.CSLDestroy, lib.GDALClose
    except (ImportError, OSError, AttributeError):
        return None
    strings = ctypes.POINTER(ctypes.c_char_p)
    open_ex.argtypes = [ctypes.c_char_p, ctypes.c_uint, strings, strings, strings]
    open_ex.restype = ctypes.c_void_p
    file_list.argtypes, file_list.restype = [ctypes.c_void_p], strings
    destroy.argtypes, destroy.restype = [strings], None
    close.argtypes, close.restype = [ctypes.c_void_p], None
    return open_ex, file_list, destroy, close


def _file_list_bytes(ds: Any, opts: dict[str, Any]) -> list[bytes] | None:
    """GDAL's list of the files it reads for ``ds``, as bytes (rasterio decodes it as UTF-8 and fails on a name that is
    not): the path opened again by ``ds``'s driver alone through GDAL's C API, under the same options. None where the
    API cannot be reached or that open fails."""
    api = _gdal_api()
    if api is None:
        return None
    import ctypes

    open_ex, file_list, destroy, close = api
    drivers = (ctypes.c_char_p * 2)(str(ds.driver).encode(), None)
    with _open_env(**opts):
        handle = open_ex(os.fsencode(ds.name), GDAL_OF_RASTER, drivers, None, None)
        if not handle:
            return None
        try:
            names = file_list(handle)
            try:
                out: list[bytes] = []
                while names and names[len(out)] is not None:
                    out.append(names[len(out)])
                return out
            finally:
                destroy(names)
        finally:
            close(handle)


class _Alias:
    """Links of a UTF-8 path to a product whose path is not UTF-8, in a temporary folder: GDAL (through rasterio)
    opens UTF-8 paths only. A file of a UTF-8 name in a folder of another: ``TMP/d`` links to the folder, so GDAL
    finds everything beside it (a label's data files, sidecars) as in the folder itself. A file whose own name is not
    UTF-8: ``TMP/<its name, its other bytes as _>`` links to it, ``TMP/<name>`` to each file its label names
    (:func:`edgeae.archive.formats.product_files`), and each file of its folder that shares its stem (``w\\xfe.tfw``,
    ``.prj``, ``w\\xfe.tif.aux.xml``: world file, PAM) is linked renamed as it is (``w_.tfw`` beside ``w_.tif``), so
    GDAL finds its georeferencing; no other file of its folder is seen."""

    def __init__(self, tmp: str, folder: str, full: str, path: str, renamed: dict[str, str] | None = None) -> None:
        self.tmp, self.folder, self.full, self.path = tmp, folder, full, path
        self.renamed = renamed if renamed is not None else {}  # link name -> the file's own name (file mode)

    @classmethod
    def of(cls, target: Path) -> _Alias | None:
        text = os.fspath(target)
        if _utf8(text):
            return None
        full = os.path.abspath(text)
        folder, name = os.path.split(full)
        tmp = tempfile.mkdtemp(prefix="edgeae-gdal-")
        try:
            if _utf8(name):
                os.symlink(folder, os.path.join(tmp, "d"))
                return cls(tmp, folder, full, os.path.join(tmp, "d", name))
            from edgeae.archive.formats import product_files

            others = [f.name for f in product_files(Path(full)) if f.parent == Path(folder)]
            kin = [name] + [n for n in _stem_kin(folder, os.path.splitext(name)[0]) if n != name and n not in others]
            prefix = ""
            while any(prefix + _utf8_name(n) in others for n in kin):
                prefix += "_"
            renamed = {prefix + _utf8_name(n): n for n in kin}
            for link, own in renamed.items():  # two names of one alias (w\xfe.tfw, w\xff.tfw): the last
                os.symlink(os.path.join(folder, own), os.path.join(tmp, link))
            for other in others:
                link = os.path.join(tmp, other)
                if not os.path.lexists(link):
                    os.symlink(os.path.join(folder, other), link)
            return cls(tmp, folder, full, os.path.join(tmp, prefix + _utf8_name(name)), renamed)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def original(self, f: str) -> str:
        """The path of the file GDAL names ``f`` (one of the links, or a file in the linked folder)."""
        if not f.startswith(self.tmp + os.sep):
            return f
        rel = f[len(self.tmp) + 1 :]
        if f == self.path:
            return self.full
        if rel in self.renamed:
            return os.path.join(self.folder, self.renamed[rel])
        return os.path.join(self.folder, rel[2:] if rel.startswith("d" + os.sep) else rel)

    def unalias(self, text: str) -> str:
        """``text`` (GDAL's message) with the links' paths written as the files' own (bytes not UTF-8 as \\xNN), and
        the name of a link that stands for a file of another name (GDAL's read errors give a file's name alone)."""
        shown = os.fsencode(self.folder).decode("utf-8", "backslashreplace")
        text = text.replace(os.path.join(self.tmp, "d"), shown)
        for link, name in self._renamed():
            text = text.replace(os.path.join(self.tmp, link), os.path.join(shown, _shown(name)))
        text = text.replace(self.tmp, shown)
        renamed = dict(self._renamed())
        if not renamed:
            return text
        # a bare name: not part of a longer one ("w_.tif" inside "w_.tif.aux.xml" or "xw_.tif")
        names = "|".join(re.escape(k) for k in sorted(renamed, key=len, reverse=True))
        return re.sub(rf"(?<![\w.\-/])({names})(?![\w\-]|\.\w)", lambda m: _shown(renamed[m.group(1)]), text)

    def _renamed(self) -> list[tuple[str, str]]:
        """(link name, the file's own name) of each link named otherwise than its file, longest first."""
        return sorted(((k, v) for k, v in self.renamed.items() if k != v), key=lambda kv: -len(kv[0]))

    def remove(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def _utf8_name(name: str) -> str:
    """``name`` with its bytes that are not UTF-8 as "_" (not "\\xNN": GDAL takes a backslash for a separator)."""
    return os.fsencode(name).decode("utf-8", "replace").replace("\ufffd", "_")


_KIN: dict[tuple[str, int], dict[str, list[str]]] = {}


def _stem_kin(folder: str, stem: str) -> list[str]:
    """The names in ``folder`` that start with ``stem + "."``: one listing per folder and change, grouped by the
    part before the first dot, so a folder of many such products costs one listing, not one per product."""
    try:
        key = (folder, os.stat(folder).st_mtime_ns)
    except OSError:
        return []
    groups = _KIN.get(key)
    if groups is None:
        groups = {}
        with contextlib.suppress(OSError), os.scandir(folder) as it:
            for entry in it:
                groups.setdefault(entry.name.split(".", 1)[0], []).append(entry.name)
        _KIN.clear()  # the last folder only
        _KIN[key] = groups
    return [n for n in groups.get(stem.split(".", 1)[0], []) if n.startswith(stem + ".")]


def _shown(name: str) -> str:
    """``name`` as said in a message: its bytes that are not UTF-8 as \\xNN."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True

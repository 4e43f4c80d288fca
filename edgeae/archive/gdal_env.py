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
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgeae._optional import require

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
    ``crs_error`` says why (None on other datasets: check it with ``getattr``)."""
    with _open_env(**opts), warnings.catch_warnings():
        # camera-geometry products have no geotransform: that is expected, not worth a warning per file
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        try:
            return rasterio.open(target)
        except rasterio.errors.CRSError:
            if not hasattr(rasterio.io.DatasetReader, "_handle_crswkt"):  # another rasterio: refused as before
                raise
            return _reader_without_crs(rasterio)(str(target))

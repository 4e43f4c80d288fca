"""Quiet by default: what the command line shows, and what it keeps for ``-v`` / ``--verbose``.

Without ``-v`` a command prints its own progress bars and one-line results; everything third-party (Python
warnings, library loggers, the C++ logs of TensorFlow Lite, XLA and Ray) is captured: Python warnings and
library log records go to the logging system at a level that is not shown, native loggers are told to keep
to fatal errors through their environment variables (set before those libraries are imported, and only when
the user did not set them). With ``-v`` every record is shown, edgeae's own at DEBUG.

Standard library only: ``firmware-sim`` uses it too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator
from typing import Any

# native (C++) loggers of the libraries edgeae imports, and the value that keeps them to fatal errors
_NATIVE_QUIET = {
    "TF_CPP_MIN_LOG_LEVEL": "3",  # TensorFlow Lite / LiteRT, XLA
    "GLOG_minloglevel": "3",  # glog users (LiteRT converter)
    "ABSL_MIN_LOG_LEVEL": "3",
    "RAY_BACKEND_LOG_LEVEL": "fatal",  # Ray's core_worker lines on the driver's stderr
    "RAY_DEDUP_LOGS": "1",
    "ORT_LOGGING_LEVEL": "3",
    "TORCH_CPP_LOG_LEVEL": "ERROR",
    "TORCH_LOGS": "-all",  # torch's own loggers (torch._logging resets their levels when torch is imported)
}
# chatty Python loggers that are not edgeae's
_THIRD_PARTY = (
    "torch", "torch._dynamo", "torch.onnx", "onnxscript", "onnx_ir", "litert_torch", "ai_edge_litert",
    "absl", "ray", "matplotlib", "PIL", "urllib3", "numexpr", "jax", "tensorflow", "h5py",
)  # fmt: skip


class _Plain(logging.Formatter):
    """edgeae's own INFO lines as plain text; warnings and errors with their level."""

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.exc_info:
            msg += "\n" + self.formatException(record.exc_info)
        if record.levelno >= logging.WARNING:
            return f"{record.levelname.lower()}: {msg}"
        if record.levelno <= logging.DEBUG:
            return f"debug {record.name}: {msg}"
        return msg


def quiet_environment() -> None:
    """Set the native loggers' environment variables (where the user has not) before heavy imports."""
    for key, value in _NATIVE_QUIET.items():
        os.environ.setdefault(key, value)


# decoders that log an ERROR record for a broken file that edgeae then refuses with its own one-line error (tifffile:
# "<tifffile.TiffPages @33> invalid page offset ..."): shown with -v only, as other third-party records
_DECODERS = ("tifffile",)
_CHATTY = ("matplotlib.font_manager",)  # kept at INFO even with -v: 2,493 of a 2-epoch training log's 2,508 lines


def setup(verbose: bool = False) -> None:
    """Configure logging and warnings for a command-line run (idempotent)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_edgeae", False):
            root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler._edgeae = True  # type: ignore[attr-defined]
    handler.setFormatter(_Plain())
    root.addHandler(handler)
    logging.captureWarnings(True)
    if verbose:
        root.setLevel(logging.DEBUG)
        logging.getLogger("edgeae").setLevel(logging.DEBUG)
        for name in (*_THIRD_PARTY, *_DECODERS, "py.warnings"):
            logging.getLogger(name).setLevel(logging.NOTSET)
        for name in _CHATTY:  # thousands of debug lines (font scoring) that bury the run's own
            logging.getLogger(name).setLevel(logging.INFO)
        warnings.simplefilter("default")
        return
    quiet_environment()
    root.setLevel(logging.ERROR)  # third-party records: errors only
    logging.getLogger("edgeae").setLevel(logging.WARNING)
    for name in _THIRD_PARTY:
        logging.getLogger(name).setLevel(logging.ERROR)
    for name in (*_DECODERS, "py.warnings"):  # Python warnings and decoder errors: shown with -v
        logging.getLogger(name).setLevel(logging.CRITICAL)
    warnings.simplefilter("ignore")


@contextlib.contextmanager
def session(verbose: bool = False) -> Iterator[None]:
    """:func:`setup` for the length of one command, then the logging and warnings state as it was before
    (so calling ``main()`` from Python, or from a test, leaves the caller's configuration alone)."""
    root = logging.getLogger()
    names = ("edgeae", "py.warnings", *_THIRD_PARTY, *_DECODERS, *_CHATTY)
    levels = {n: logging.getLogger(n).level for n in names}
    root_level, handlers = root.level, list(root.handlers)
    capturing = getattr(logging, "_warnings_showwarning", None) is not None
    with warnings.catch_warnings():
        setup(verbose)
        try:
            yield
        finally:
            for h in list(root.handlers):
                if h not in handlers:
                    root.removeHandler(h)
            root.setLevel(root_level)
            for n, level in levels.items():
                logging.getLogger(n).setLevel(level)
            logging.captureWarnings(capturing)


_NATIVE_LOCK = threading.Lock()
_native: dict[str, Any] = {"depth": 0}  # the one redirection shared by every thread inside a block


@contextlib.contextmanager
def native_stderr_to_log(logger: str = "edgeae.native") -> Iterator[None]:
    """Capture what native (C/C++) code writes to file descriptor 2 inside the block and log it at DEBUG.

    For libraries whose own logger ignores every switch (LiteRT prints "Created TensorFlow Lite XNNPACK
    delegate" at INFO when an interpreter is made). With ``-v`` (DEBUG enabled) the output goes through.
    Thread-safe: fd 2 is process-wide, so blocks entered by several threads at once (scoring threads each
    making an interpreter) share one redirection, made by the first to enter and undone by the last to leave;
    before, two overlapping blocks could leave fd 2 on a closed temporary file, and every later error message
    of the process (a boot refusal) was lost.
    """
    log = logging.getLogger(logger)
    if log.isEnabledFor(logging.DEBUG):
        yield
        return
    with _NATIVE_LOCK:
        if _native["depth"] == 0:
            try:
                sys.stderr.flush()
                saved = os.dup(2)
            except (OSError, ValueError):  # no file descriptor 2 (embedded interpreters)
                saved = None
            tmp = tempfile.TemporaryFile() if saved is not None else None  # noqa: SIM115 (closed by the last to leave)
            if tmp is not None:
                os.dup2(tmp.fileno(), 2)
            _native.update(saved=saved, tmp=tmp)
        _native["depth"] += 1
    try:
        yield
    finally:
        with _NATIVE_LOCK:
            _native["depth"] -= 1
            if _native["depth"] == 0:
                saved, tmp = _native.pop("saved"), _native.pop("tmp")
                if saved is not None and tmp is not None:
                    os.dup2(saved, 2)
                    os.close(saved)
                    tmp.seek(0)
                    text = tmp.read().decode("utf-8", "replace").strip()
                    tmp.close()
                    if text:
                        log.debug("native output: %s", text)


__all__ = ["native_stderr_to_log", "quiet_environment", "session", "setup"]

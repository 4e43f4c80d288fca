"""Lazy imports of optional dependencies that fail with the exact pip line to run."""

from __future__ import annotations

import importlib
import os
import re
from types import ModuleType

_EXTRA_FOR = {
    "torch": "train",
    "cv2": "ground",
    "tifffile": "ground",
    "pyspng": "flight-tflite",  # also in flight-onnx and ground
    "simplejpeg": "flight-tflite",  # also in flight-onnx and ground
    "imagecodecs": "flight-ccsds121",  # the smallest extra that brings it (imagecodecs alone); also in ground
    "scipy": "ground",
    "skimage": "ground",
    "sklearn": "ground",
    "matplotlib": "ground",
    "tqdm": "ground",
    "onnx": "export",
    "onnxscript": "export",
    "litert_torch": "export",
    "onnxruntime": "flight-onnx",
    "ai_edge_litert": "flight-tflite",
    "pyarrow": "scan",
    "ray": "scan",
    "rasterio": "archive",
    "pyproj": "archive",
    "pyogrio": "archive",
}


_BASE = frozenset({"numpy", "spacepackets"})
"""Dependencies of every install (pyproject ``dependencies``): missing, the install itself is broken."""


def base_missing(exc: BaseException) -> str | None:
    """The message for an import of a base dependency that failed because it is not installed (a broken install:
    reinstall, no extra helps), or None for any other error."""
    name = getattr(exc, "name", None)
    if isinstance(exc, ModuleNotFoundError) and name and name.split(".")[0] in _BASE:
        return f"{name!r} is missing, though every edgeae install has it: reinstall edgeae (pip install edgeae)"
    return None


def source_ref(path: str, section: str = "") -> str:
    """How a message cites a file of the edgeae source repository (``docs/export.md``, ``benchmarks/RESULTS.md``),
    which an installed package does not hold: ``docs/export.md of the edgeae source, Zoo artifacts``."""
    return f"{path} of the edgeae source" + (f", {section}" if section else "")


class MissingDependencyError(ImportError):
    """An optional dependency is not installed, or is installed but fails to import; the message says which
    extra provides it, or why the import failed."""


def _not_installed(exc: ImportError, module: str) -> bool:
    """Whether ``exc`` says ``module`` itself (or a package above it) is absent, not that importing it failed (a
    shared library it cannot map, a module of its own that is missing, an error inside it)."""
    if not isinstance(exc, ModuleNotFoundError) or exc.name is None:
        return False
    parts = module.split(".")
    return exc.name in {".".join(parts[: i + 1]) for i in range(len(parts))}


def require(module: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError`: naming the extra to install when it is not
    installed, with the cause when it is installed but fails to import (the pip line would not help)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        extra = _EXTRA_FOR.get(top, "dev")
        if _not_installed(exc, module) and top in _BASE:
            raise MissingDependencyError(base_missing(exc) or f"{module!r} is missing: reinstall edgeae") from exc
        if not _not_installed(exc, module):
            cause = " ".join(str(exc).split()) or type(exc).__name__
            raise MissingDependencyError(f"{module!r} is installed but failed to import: {cause}") from exc
        raise MissingDependencyError(
            f"{module!r} is needed here but is not installed: run  pip install 'edgeae[{extra}]'"
        ) from exc


_TIFF_CODEC = re.compile(r"<(COMPRESSION|PREDICTOR)\.(\w+): \d+> requires the 'imagecodecs' package")
_TIFF_ZSTD = "No module named 'compression"  # tifffile's ZSTD fallback: Python 3.14's compression.zstd


def tiff_codec_error(path: str | os.PathLike[str], exc: BaseException) -> MissingDependencyError | None:
    """The :class:`MissingDependencyError` (with the pip line) for a TIFF decode that failed because tifffile decodes
    the file's compression (LZW, JPEG, JPEG 2000, WebP, ZSTD, ...) or predictor (floating-point) only with
    ``imagecodecs``, read from tifffile's error ``exc``; None for any other error (the file's own). Until session 39
    the ground read such a file as a damaged one ("not a readable TIFF (... requires the 'imagecodecs' package)"); the
    flight finds it from the file's tags before decoding (``firmware_sim.frame_decoders.tiff_codec_missing``, the
    same pip line)."""
    text = str(exc)
    named = _TIFF_CODEC.search(text)
    if named is not None:
        what = f"{named.group(2)} {named.group(1).lower()}"
    elif _TIFF_ZSTD in text:
        what = "ZSTD compression"
    else:
        return None
    name = os.fspath(path)
    if not missing({"imagecodecs": _EXTRA_FOR["imagecodecs"]}):  # installed, yet tifffile cannot take the codec from it
        return MissingDependencyError(
            f"'imagecodecs' is installed here but does not decode {name}'s {what} (built without that codec, or "
            "failing to import): run  pip install --force-reinstall imagecodecs"
        )
    return MissingDependencyError(  # worded as require's, which a scan's plain rerun retakes once it is installed
        f"'imagecodecs' is needed here but is not installed (to decode {name}'s {what}): run  pip install "
        f"'edgeae[{_EXTRA_FOR['imagecodecs']}]' (imagecodecs alone; the ground extra brings it too)"
    )


def missing(modules: dict[str, str]) -> list[tuple[str, str]]:
    """The (module, extra) pairs of ``modules`` (module -> extra) that are not installed; imports nothing."""
    import importlib.util

    out = []
    for module, extra in modules.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            out.append((module, extra))
    return out


def check_extras(command: str, modules: dict[str, str]) -> None:
    """Fail before any work when a module ``command`` needs is missing, with the exact pip line(s) to run.

    ``modules`` maps an importable name to the extra that provides it, e.g. ``{"cv2": "ground"}``.
    """
    gone = missing(modules)
    if not gone:
        return
    extras = sorted({extra for _, extra in gone})
    names = ", ".join(repr(m) for m, _ in gone)
    pip = f"'edgeae[{','.join(extras)}]'"
    verb = "is" if len(gone) == 1 else "are"
    raise MissingDependencyError(f"{command} needs {names}, which {verb} not installed: run  pip install {pip}")

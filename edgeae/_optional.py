"""Lazy imports of optional dependencies that fail with the exact pip line to run."""

from __future__ import annotations

import importlib
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

"""Lazy imports of optional dependencies that fail with the exact pip line to run."""

from __future__ import annotations

import importlib
from types import ModuleType

_EXTRA_FOR = {
    "torch": "train",
    "cv2": "ground",
    "tifffile": "ground",
    "imagecodecs": "ground",
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
    "spacepackets": "flight-onnx",
    "pyarrow": "scan",
    "ray": "scan",
}


class MissingDependencyError(ImportError):
    """An optional dependency is not installed; the message says which extra provides it."""


def require(module: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        extra = _EXTRA_FOR.get(top, "dev")
        raise MissingDependencyError(
            f"{module!r} is needed here but is not installed: run  pip install 'edgeae[{extra}]'"
        ) from exc

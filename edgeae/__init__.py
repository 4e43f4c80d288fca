"""edgeae: machine learning on board spacecraft and at the ground stations that receive their data.

Importing ``edgeae`` is cheap and needs only numpy: heavy dependencies (torch, OpenCV, onnxruntime,
ai-edge-litert, Ray) are imported inside the functions that use them. The names in ``__all__`` are the
library's entry points (README, "Using edgeae from Python"); each is loaded from its module on first use::

    import edgeae

    frame = edgeae.read_image("frame.png", channels=3)
    known = edgeae.make_mask(seed=1, shape=frame.pixels.shape[:2], keep=0.1)
    model = edgeae.load_predictor("rover-rgb-unet2-ground")
    filled = edgeae.fill(frame.pixels, known, "cae", predictor=model)
"""

from __future__ import annotations

import os as _os  # not a public name of the package
from importlib import import_module
from typing import TYPE_CHECKING, Any

# onnxruntime starts Microsoft's 1DS telemetry when it is imported: a device id and an event database under
# $HOME/.cache (uploaded once a network is reachable), and on a read-only HOME a warning on stderr. Off before any
# path can import it (this package is imported first on every one; scan workers inherit the environment); a value
# the user set is kept. onnxruntime's Privacy.md documents the variable.
_os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from edgeae._version import __version__

if TYPE_CHECKING:  # what type checkers and editors see; at run time __getattr__ loads them on first use
    from edgeae.anomaly.score import make_scorer, score_array, score_file
    from edgeae.imageio import read_image, write_image
    from edgeae.masks import apply_mask, make_mask
    from edgeae.metrics import compare as image_metrics
    from edgeae.predictor import load_predictor
    from edgeae.reconstruct import reconstruct as fill

# public name -> (module, attribute). ``fill`` is edgeae.reconstruct.reconstruct: the plain name would be
# shadowed by the submodule edgeae.reconstruct as soon as anything imports it.
_LAZY: dict[str, tuple[str, str]] = {
    "read_image": ("edgeae.imageio", "read_image"),
    "write_image": ("edgeae.imageio", "write_image"),
    "make_mask": ("edgeae.masks", "make_mask"),
    "apply_mask": ("edgeae.masks", "apply_mask"),
    "fill": ("edgeae.reconstruct", "reconstruct"),
    "load_predictor": ("edgeae.predictor", "load_predictor"),
    "make_scorer": ("edgeae.anomaly.score", "make_scorer"),
    "score_array": ("edgeae.anomaly.score", "score_array"),
    "score_file": ("edgeae.anomaly.score", "score_file"),
    "image_metrics": ("edgeae.metrics", "compare"),
}

__all__ = [
    "__version__",
    "apply_mask",
    "fill",
    "image_metrics",
    "load_predictor",
    "make_mask",
    "make_scorer",
    "read_image",
    "score_array",
    "score_file",
    "write_image",
]  # literal, for linters; tests/test_python_api.py keeps it equal to _LAZY


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'edgeae' has no attribute {name!r}") from None
    value = getattr(import_module(module), attr)
    globals()[name] = value  # later lookups skip this hook
    return value


def __dir__() -> list[str]:
    """The public names and the package's submodules, not what this module imports for itself (``Any``,
    ``import_module``, ... until session 46)."""
    return sorted({n for n in globals() if not n.startswith("_") and n not in _PRIVATE} | set(_LAZY) | {"__version__"})


_PRIVATE = frozenset({"annotations", "import_module", "TYPE_CHECKING", "Any"})

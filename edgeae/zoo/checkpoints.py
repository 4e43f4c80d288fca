"""Where a wheel install finds the registered models' PyTorch checkpoints.

They are their own distribution, ``edgeae-weights`` (``packaging/edgeae-weights`` of the source): a flight board
cannot use them (20 MB of a 200 MB install budget, docs/firmware_sim.md), so the edgeae wheel carries only their
metrics (``NAME.json``). A source checkout or an editable install reads them from the package's own
``edgeae/zoo/weights`` folder (:data:`edgeae.zoo.WEIGHTS_DIR`), which wins. Standard library only.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

WEIGHTS_PACKAGE = "edgeae_weights"
WEIGHTS_DISTRIBUTION = "edgeae-weights"
INSTALL_HINT = (
    f"an install from a wheel carries no PyTorch checkpoints: install them with  pip install {WEIGHTS_DISTRIBUTION}, "
    f"or from a source checkout  pip install ./packaging/{WEIGHTS_DISTRIBUTION}"
)


def weights_package_dir() -> Path | None:
    """The folder of the installed ``edgeae-weights`` distribution, or None when it is not installed. Imports
    nothing (the package holds data only)."""
    try:
        spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    except (ImportError, ValueError):
        return None
    where = list(spec.submodule_search_locations or []) if spec is not None else []
    return Path(where[0]) if where else None

"""Review r6, session 33: the memory probe on a Python without the Unix-only ``resource`` module, and what a large
mask's memory check imports. Each runs in a fresh interpreter (``sys.modules`` as a user's would be)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_large_mask_is_checked_without_the_resource_module() -> None:
    """r6 item 5: memory_probe imported ``resource`` at the top, so a mask of 64 MiB or more raised
    ModuleNotFoundError where it is missing (the check was skipped before). Now the address-space limit is unknown
    there (None) and the other sources still answer."""
    out = _run(
        "import sys; sys.modules['resource'] = None\n"
        "from edgeae import memory_probe\n"
        "from edgeae.masks import _check_mask_memory\n"
        "_check_mask_memory(65 << 20, (8192, 8320))\n"
        "have = memory_probe.available_memory()\n"
        "print(memory_probe._address_space_room(), have is None or have > 0)"
    )
    assert out == "None True"


def test_generating_a_large_mask_does_not_import_the_ground_station() -> None:
    """r6 item 5: the mask generator is shared with the flight side; its memory check (run here on a small mask by
    lowering the size from which masks are checked) imports the neutral probe, never ``edgeae.ground``."""
    out = _run(
        "import sys\n"
        "from edgeae import masks\n"
        "masks._CHECKED_BYTES = 1\n"
        "m = masks.make_mask(7, (64, 80), 0.25)\n"
        "print(m.shape, 'edgeae.memory_probe' in sys.modules, 'edgeae.ground' in sys.modules, 'torch' in sys.modules)"
    )
    assert out == "(64, 80) True False False"

"""What the host CPU means for int8 artifacts (stdlib only: the flight runtime imports it).

On x86 without VNNI (AVX2, or AVX-512 without VNNI) onnxruntime multiplies u8 activations by s8 weights with
VPMADDUBSW, whose 16-bit pairwise sums can saturate. Measured in session 18 on an AVX2-only AMD EPYC: the zoo's
full-range int8 VAE gave a planted bright block one ceiling score on three frames and 3-10 patches above it where
fp32 has 0-1; re-exported with 7-bit weights (``reduce_range``, the export's default since session 19) it ranks
them as fp32 does in the tail (tests/test_planted_blocks.py) and gives identical parity on that host and on an
AVX-512 VNNI one (``python -m edgeae.export.board``, docs/export.md).
"""

from __future__ import annotations

import functools
import platform
from pathlib import Path

VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni"})


def _cpuinfo(field: str) -> str | None:
    """The value of the first /proc/cpuinfo line starting with ``field`` (None where it cannot be read)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(field):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of /proc/cpuinfo (empty where it cannot be read, e.g. not Linux)."""
    return frozenset((_cpuinfo("flags") or "").split())


def cpu_model() -> str | None:
    """The CPU's model name from /proc/cpuinfo (None where it cannot be read)."""
    return _cpuinfo("model name")


@functools.cache
def x86_without_vnni() -> bool:
    """True on an x86 CPU whose flags are known and include no VNNI (AVX2, or AVX-512 without VNNI)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    flags = cpu_flags()
    return bool(flags) and not (VNNI_FLAGS & flags)


def int8_saturates() -> bool:
    """True on an x86 CPU whose flags are known and include no VNNI: full-range u8s8 int8 ONNX may saturate."""
    return x86_without_vnni()

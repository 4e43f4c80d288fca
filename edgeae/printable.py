"""Text that any UTF-8 writer can take (standard library only; shared by the workstation, the ground and the flight).

A file name whose bytes are not UTF-8 (legal on Linux) reaches Python as lone surrogates (``os.fsdecode``:
U+DC80-U+DCFF); writing it to a UTF-8 page, JSON record or strict console fails with "surrogates not allowed".
:func:`printable` writes such bytes as ``\\xff`` and leaves every other character as it is.
"""

from __future__ import annotations

import re

__all__ = ["printable"]

_SURROGATE = re.compile("[\ud800-\udfff]")


def printable(text: str) -> str:
    """``text`` with what UTF-8 cannot hold written as a backslash escape, the rest unchanged: a file name's bytes
    that are not UTF-8 (which ``os.fsdecode`` hands over as lone surrogates, U+DC80-U+DCFF) as ``\\xff``, any other
    lone surrogate as ``\\ud800``. A page, a JSON record or a console line then shows the name instead of failing."""
    return _SURROGATE.sub(_escape_surrogate, text)


def _escape_surrogate(m: re.Match[str]) -> str:
    code = ord(m.group())
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"

"""What every frame reader shares (:mod:`.frames`, :mod:`.frame_tiff`): its header and its errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


class FrameError(ValueError):
    """A frame could not be read (unreadable file, unsupported layout)."""


class FrameMemoryError(FrameError):
    """An intact frame could not be read for want of memory (the decoder's allocation failed): not the file's
    fault; the loop drops it ``memory_unavailable`` (:mod:`.frame_run`), not ``unreadable``."""


@dataclass(frozen=True)
class FrameHeader:
    """Shape and sample type of a frame, known before any pixel is read."""

    source: str
    height: int
    width: int
    channels: int
    dtype: np.dtype[Any]

    @property
    def nbytes(self) -> int:
        return self.height * self.width * self.channels * self.dtype.itemsize

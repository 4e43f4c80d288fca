"""Reader wrappers the loop puts around a frame reader: demosaicing a colour-filter mosaic (``[camera]
bayer``) and the ``bad-frame`` fault's damage. Each keeps the :class:`~.frames.FrameReader` protocol."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from .faults import corrupt_frame
from .frames import FrameReader


class Demosaiced:
    """A reader wrapper that demosaics a raw colour-filter frame into RGB strips (numpy bilinear, exact
    across strip seams: :func:`edgeae.bayer.demosaic_strips`).

    The inner frame must hold 1 channel (the mosaic) or 3 (a mosaic stored grey in RGB, or a frame in colour
    already): the loop checks that on the inner header (:func:`.validate.check_header`) before wrapping, so a
    wrong channel count is dropped with its reason. ``info`` (the frame record's ``camera``) says what was
    done; ``demosaiced`` turns true only when the demosaic path runs.
    """

    def __init__(self, inner: FrameReader, pattern: str) -> None:
        h = inner.header
        if h.channels not in (1, 3):
            raise ValueError(f"{h.source}: a colour-filter frame has 1 or 3 channels, not {h.channels}")
        self.inner, self.pattern = inner, pattern
        self.header = type(h)(h.source, h.height, h.width, 3, h.dtype)
        self.info: dict[str, Any] = {"bayer": pattern, "demosaiced": False}

    def strips(self, strip_rows: int) -> Any:
        from edgeae.bayer import demosaic_strips

        it = iter(self.inner.strips(strip_rows))
        first = next(it, None)
        if first is None:
            return
        from edgeae.bayer import channels_equal, looks_like_mosaic, sampled_channels_equal

        s = first[1]
        # sampled rows that differ prove colour without reading the strip (a whole-file frame's first strip is
        # the frame); rows that agree prove nothing (a grey frame with a small coloured overlay), so the whole
        # strip is compared, a block of rows at a time, before it can go down the demosaic path
        if s.ndim == 3 and s.shape[2] == 3 and not (sampled_channels_equal(s) and channels_equal(s)):
            self.info["already_colour"] = True  # distinct channels: not a mosaic
            yield first
            yield from it
            return
        if not looks_like_mosaic(s):  # a grey frame (a Navcam image) has no 2x2 filter pattern: no false colour
            self.info["grey_not_a_mosaic"] = True
            if s.shape[2] == 1:  # one stored channel: flown as grey in the camera's three (the header says 3)
                self.info["channels_replicated"] = True
                for y0, strip in itertools.chain([first], it):
                    yield y0, np.repeat(strip, 3, axis=2)
                return
            yield first
            yield from it
            return
        self.info["demosaiced"] = True
        yield from demosaic_strips(itertools.chain([first], it), self.pattern)


class Corrupted:
    """A reader wrapper that damages every strip (the ``bad-frame`` fault)."""

    def __init__(self, inner: FrameReader, mode: str) -> None:
        self.inner, self.mode = inner, mode
        h = inner.header
        probe = corrupt_frame(np.zeros((1, 1, h.channels), h.dtype), mode)
        self.header = type(h)(h.source, h.height, h.width, probe.shape[2], probe.dtype)

    def strips(self, strip_rows: int) -> Any:
        for r0, s in self.inner.strips(strip_rows):
            yield r0, corrupt_frame(s, self.mode)

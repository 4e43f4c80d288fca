"""The channel count a model trains on from a folder of images (:func:`folder_channels`): the one every image has,
or ``--channels`` when the folder mixes grey and colour images. A folder that mixes them without ``--channels`` is
refused, counting each kind: the count used to come from whichever file sorted first, silently (11 RGB images
trained a grey model because 3 grey ones sorted first)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

_NAMED = 3  # file names a message gives of each kind


def _names(files: Sequence[Path]) -> str:
    more = f" and {len(files) - _NAMED} more" if len(files) > _NAMED else ""
    return ", ".join(p.name for p in files[:_NAMED]) + more


def _images(n: int) -> str:
    return f"{n} image" + ("" if n == 1 else "s")


def conversion_note(shapes: Sequence[tuple[int, int, int]], channels: int) -> str | None:
    """How many of the images of ``shapes`` ((H, W, C) each) a ``channels`` model converts, in words
    (``"3 of 14 images are grey, their grey replicated to 3 channels"``); None when none is."""
    other = sum(1 for s in shapes if (s[2] < 3) == (channels == 3))
    if not other:
        return None
    kind, how = ("grey", "their grey replicated to 3 channels") if channels == 3 else ("colour", "converted to grey")
    return f"{other} of {_images(len(shapes))} {'is' if other == 1 else 'are'} {kind}, {how}"


def folder_channels(
    folder: str | os.PathLike[str],
    files: Sequence[str | os.PathLike[str]],
    shapes: Sequence[tuple[int, int, int]],
    given: int | None,
    resume: bool = False,
) -> tuple[int, str]:
    """(channels, the line saying why) for a run on ``files`` of ``folder`` whose headers give ``shapes`` ((H, W, C)
    each, :func:`edgeae.train.run_memory.read_headers`): ``given`` (``--channels``) when set, with how many images
    are converted; else 1 when every image is grey, 3 when every one is colour (3 or more channels: RGBA trains as
    RGB); a ValueError counting each kind when they mix. ``resume``: a run started before mixed folders were
    refused keeps its first image's count (the rule it started with), the line counting the images converted."""
    paths = [Path(f) for f in files]
    colour = [p for p, s in zip(paths, shapes, strict=True) if s[2] >= 3]
    grey = [p for p, s in zip(paths, shapes, strict=True) if s[2] < 3]
    n = len(paths)
    if given is not None:
        note = conversion_note(shapes, given)
        return given, f"channels: {given} (--channels): {note}" if note else f"channels: {given} (--channels)"
    if colour and grey:
        if resume and paths:  # started when the first image decided: it goes on with the model it has
            first = 3 if paths[0] in colour else 1
            return first, (
                f"channels: {first} (from the first image, {paths[0].name}, as when this run started; the folder mixes "
                f"grey and colour images: {conversion_note(shapes, first)})"
            )
        raise ValueError(
            f"{folder} mixes {len(colour)} colour and {len(grey)} grey images (colour: {_names(sorted(colour))}; "
            f"grey: {_names(sorted(grey))}) and a model has one channel count: pass --channels 3 (the grey ones "
            "replicated to 3 channels) or --channels 1 (the colour ones converted to grey), or train on one kind"
        )
    channels = 3 if colour else 1
    kind, flip = ("colour", "--channels 1 for a grey model") if colour else ("grey", "--channels 3 for a colour model")
    return channels, f"channels: {channels} (every one of the {_images(n)} is {kind}; {flip})"

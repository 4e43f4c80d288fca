"""What the demo runs on and what its stages share: the config, the context, the frame and the method labels.

:class:`DemoConfig` says what the demo runs on; :class:`DemoContext` carries the frame, its mask, the results
and free-form ``extra`` from stage to stage (:mod:`edgeae.demo`); :func:`load_frame` finds the demo frame; the
names and labels of the CAE variants (:data:`ADAPTED`, :data:`CROSS`) are shared by the stages and the conclusion.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from edgeae.masks import MaskSpec
from edgeae.reconstruct import METHODS, Reconstruction, show_progress

log = logging.getLogger("edgeae.demo")  # the package's logger, as before the split
SOURCES = ("auto", "rover", "moon")
T = TypeVar("T")


@dataclass(frozen=True)
class DemoConfig:
    """What the demo runs on. ``image`` replaces the demo frame (then ``source`` stays "auto" and ``data_root``
    unset); ``model`` overrides the zoo default.

    ``links``: link presets for the downlink section (None: every preset); ``anomaly`` and ``codec`` turn
    those sections off.
    """

    out: Path = Path("edgeae-demo")
    image: Path | None = None
    source: str = "auto"
    keep: float = 0.1
    seed: int = 0
    pattern: str = "uniform"
    model: str | None = None
    methods: tuple[str, ...] = METHODS
    threads: int | None = None
    data_root: Path | None = None
    links: tuple[str, ...] | None = None
    anomaly: bool = True
    codec: bool = True
    adapt: int = 0  # > 0: also the CAE adapted to the frame's own samples for this many steps (edgeae.adapt)
    # also the CAE mixed with this classical fill by the held-out cross-check (edgeae.crosscheck); None = off
    cross_check: str | None = "linear"

    def __post_init__(self) -> None:
        MaskSpec(self.seed, self.keep, self.pattern)  # validates seed, keep and pattern
        if self.adapt:
            from edgeae.adapt import AdaptConfig

            AdaptConfig(steps=self.adapt)  # validates the step count
        if self.cross_check is not None:
            from edgeae.crosscheck import CrossCheckConfig

            CrossCheckConfig(method=self.cross_check)  # validates the method
        if self.source not in SOURCES:
            raise ValueError(f"unknown demo source {self.source!r}; expected one of {SOURCES}")
        if self.image is not None and (self.source != "auto" or self.data_root is not None):
            raise ValueError(f"demo image {self.image} replaces the demo frame: leave source and data_root unset")
        if self.source == "moon" and self.data_root is not None:
            raise ValueError(f"the moon frame comes with scikit-image: data_root {self.data_root} would be unused")
        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods:
            raise ValueError(f"unknown methods {bad}; expected some of {METHODS}")


@dataclass
class DemoContext:
    """State shared by the stages: the frame, its mask, the results, and free-form ``extra`` for later ones.

    ``say`` receives one line per finished step, printable on any UTF-8 console: a name's bytes that are not UTF-8
    (``name``, ``description`` and ``model`` hold them as given: metrics.json records them so) as ``\\xff``
    (:func:`edgeae.report.printable`); ``progress`` turns on a progress bar per long step.
    """

    config: DemoConfig
    name: str = ""
    description: str = ""
    original: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 1), np.float32))
    known: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), bool))
    model: str | None = None
    results: list[Reconstruction] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    say: Callable[[str], None] = log.info
    progress: bool = False

    def __post_init__(self) -> None:
        from edgeae.report import printable

        given = self.say
        self.say = lambda line: given(printable(line))

    def bar(self, items: Iterable[T], desc: str, total: int | None = None, unit: str = "step") -> Iterator[T]:
        """``items`` behind one progress bar (stderr, removed when done) when ``progress`` is on and stderr is a
        terminal (a redirected log, ``scripts/demo.sh > log``, gets the result lines without the bars)."""
        if not show_progress(bool(self.progress), 0):
            yield from items
            return
        from edgeae._optional import require

        tqdm = require("tqdm").tqdm
        with tqdm(items, desc=desc, total=total, unit=unit, leave=False, dynamic_ncols=True) as it:
            yield from it


def image_frame(path: Path) -> tuple[np.ndarray, str, str, np.ndarray | None, np.ndarray | None]:
    """``--image``'s (pixels, short name, description, valid-pixel mask), then the pixels the file declares as
    holding data (:func:`edgeae.received.declared_valid`: a guessed dark margin stays a sample, as in
    ``edgeae reconstruct``)."""
    from edgeae.imageio import read_image
    from edgeae.received import declared_valid

    data = read_image(path)
    return data.pixels, path.name, f"{path} ({data.bit_depth}-bit)", data.valid, declared_valid(data)


def load_frame(config: DemoConfig) -> tuple[np.ndarray, str, str, np.ndarray | None]:
    """(pixels float32 (H, W, C), short name, description, valid-pixel mask or None) of the demo frame; the name
    as given, a byte that is not UTF-8 as Python holds it (``\\udcff``: the page and the console show ``\\xff``,
    metrics.json JSON's ``\\udcff`` escape, which ``json.loads`` and ``os.fsencode`` turn back into the bytes)."""
    return frame_with_data(config)[:4]


def frame_with_data(config: DemoConfig) -> tuple[np.ndarray, str, str, np.ndarray | None, np.ndarray | None]:
    """:func:`load_frame`'s (pixels, name, description, valid), then the pixels the file declares as holding data
    (:func:`edgeae.received.declared_valid`: a guessed dark margin stays a sample, as in ``edgeae reconstruct``),
    for ``--image`` and the rover frame alike; None for the moon (every pixel holds data)."""
    from edgeae.imageio import read_image
    from edgeae.received import declared_valid

    if config.image is not None:
        return image_frame(config.image)
    if config.source in ("auto", "rover"):
        from edgeae.data import ENV_VAR, find_data_root
        from edgeae.datasets import DEMO_FRAME

        root = find_data_root(config.data_root)
        env = os.environ.get(ENV_VAR) if config.data_root is None else None  # $EDGEAE_DATA: named on purpose too
        path = root / DEMO_FRAME if root is not None else None
        if path is not None and path.is_file():
            data = read_image(path)
            return (
                data.pixels,
                path.name,
                f"Perseverance Mastcam-Z calibrated colour frame {path.name} from {root}; never trained on "
                "(rover_rgb test split)",
                data.valid,
                declared_valid(data),
            )
        if config.data_root is not None or env:  # a folder named on purpose that does not hold the frame: a mistake
            where = "is not a folder" if root is None else f"has no {DEMO_FRAME}"
            named = f"--data {config.data_root}" if config.data_root is not None else f"${ENV_VAR} {env}"
            if config.source == "rover":
                instead = ", or use --source moon"
            elif config.data_root is not None:
                instead = ", or leave it out"
            else:
                instead = ", or unset it for skimage's moon, or use --source moon"
            raise FileNotFoundError(
                f"{named} {where}: point it at the shared data folder (the one holding rover_rgb/){instead}"
            )
        if config.source == "rover":
            raise FileNotFoundError(
                f"demo rover frame {DEMO_FRAME} not found: pass --data or set $EDGEAE_DATA, or use --source moon"
            )
        log.info("shared data not found; using skimage.data.moon()")
    from edgeae._optional import require

    moon = np.asarray(require("skimage.data").moon(), dtype=np.float32) / 255.0
    moon_text = "skimage.data.moon(): 512×512 8-bit lunar surface (bundled with scikit-image)"
    return moon[..., None], "moon", moon_text, None, None


ADAPTED = "cae-adapted"  # the demo's name for the CAE adapted to the frame (DemoConfig.adapt)
CROSS = "cae-xcheck"  # the demo's name for the CAE mixed with a classical fill (DemoConfig.cross_check)
LEARNED = ("cae", ADAPTED, CROSS)


def _label(ctx: DemoContext, method: str) -> str:
    if method == ADAPTED:
        return f"cae ({ctx.model}) adapted to the frame, {ctx.config.adapt} steps"
    if method == CROSS:
        return f"cae ({ctx.model}) cross-checked with {ctx.config.cross_check}"
    return f"cae ({ctx.model})" if method == "cae" else method


def _samples(ctx: DemoContext) -> np.ndarray:
    """The frame as 8-bit samples: what the camera would hand the flight software."""
    return np.round(np.clip(ctx.original, 0.0, 1.0) * 255.0).astype(np.uint8)

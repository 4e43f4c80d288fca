"""The sections of a mission file ([camera], [sampling], [anomaly], ...): frozen dataclasses that check their
own fields' types and ranges on construction, naming the section and the field.

Standard library only. :mod:`.mission` assembles them into a :class:`~.mission.Mission` and loads the TOML file.
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import dataclass, fields
from typing import Any

from .heap import HEAP_POLICIES

SOURCES = ("files", "strips")
BAYER_PATTERNS = ("", "RGGB", "BGGR", "GRBG", "GBRG")
PATTERNS = ("uniform", "jittered")
METHODS = ("vae", "cae-masked")
SCORE_MODES = ("a", "terms-max")  # = edgeae.anomaly.terms.SCORE_MODES (this module is standard library only)
RECON_MODES = ("off", "check", "latent")
CODECS = ("auto", "none", "delta-deflate", "deflate", "ccsds121")
ARTIFACT_FORMATS = ("onnx", "ort", "tflite")  # [anomaly] / [reconstruction] prefer: a zoo model's file formats


class MissionError(ValueError):
    """A mission file is missing, malformed, or asks for something impossible."""


def _need(cond: bool, where: str, msg: str) -> None:
    if not cond:
        raise MissionError(f"{where}: {msg}")


def _conforms(value: Any, want: Any) -> tuple[bool, Any]:
    """Whether ``value`` (from TOML or ``--set``) is of the annotated type ``want``, and the value to keep: an
    int is an int (not a bool, not 3.0), a float a finite number (an int is taken as that float), a bool a
    bool, a ``tuple[X, ...]`` a list of X, a union any of its arms."""
    origin, args = typing.get_origin(want), typing.get_args(want)
    if origin in (typing.Union, types.UnionType):
        for arm in args:
            ok, kept = _conforms(value, arm)
            if ok:
                return True, kept
        return False, value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            return False, value
        checked = [_conforms(v, args[0]) for v in value]
        return all(ok for ok, _ in checked), tuple(v for _, v in checked)
    if want is type(None):
        return value is None, value
    if want is bool:
        return isinstance(value, bool), value
    if want is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if want is float:
        number = isinstance(value, int | float) and not isinstance(value, bool)
        return (number and math.isfinite(value)), (float(value) if number else value)
    return isinstance(value, want), value


def _describe(want: Any) -> str:
    origin, args = typing.get_origin(want), typing.get_args(want)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is tuple:
        return f"a list of {_describe(args[0]).removeprefix('a ').removeprefix('an ')}s"
    names = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}
    return names.get(want, "none" if want is type(None) else getattr(want, "__name__", str(want)))


def _check_types(obj: Any, where: str) -> None:
    """Each field of a section against its annotation, naming the section and the field (a range check on
    a value of the wrong type would fail with a bare TypeError, or a float would fly as an int)."""
    hints = typing.get_type_hints(type(obj))
    for f in fields(obj):
        value = getattr(obj, f.name)
        ok, kept = _conforms(value, hints[f.name])
        _need(ok, where, f"{f.name} must be {_describe(hints[f.name])}, got {value!r} ({type(value).__name__})")
        if kept is not value:
            object.__setattr__(obj, f.name, kept)


def _is_sha256(text: str) -> bool:
    """Empty (no golden hash given) or 64 hexadecimal digits (a malformed one would refuse the model in flight)."""
    return text == "" or (len(text) == 64 and all(c in "0123456789abcdefABCDEF" for c in text))


def _check_prefer(prefer: tuple[str, ...], where: str) -> None:
    bad = [f for f in prefer if f not in ARTIFACT_FORMATS]
    _need(not bad, where, f"prefer takes artifact formats of {ARTIFACT_FORMATS}, got {bad}")
    _need(len(set(prefer)) == len(prefer), where, f"prefer names a format twice: {list(prefer)}")


def margin_sides(margin: tuple[int, ...]) -> tuple[int, int, int, int]:
    """``[camera] margin`` as (top, bottom, left, right) pixels: () none, (N,) every side."""
    if not margin:
        return (0, 0, 0, 0)
    if len(margin) == 1:
        return (margin[0],) * 4
    t, b, left, right = margin
    return t, b, left, right


MAX_CAMERA_SIDE = 2**20  # px: a larger [camera] height, width or strip_rows is a typo (a NAC strip has 52,224 rows)
MAX_CAMERA_PIXELS = 2**32  # px in one frame (height x width): 16 x the 52,224 x 5,064 NAC strip


@dataclass(frozen=True)
class Camera:
    """What one frame looks like. ``height``/``width`` 0 accept any size (file frames of mixed sizes); each at
    most :data:`MAX_CAMERA_SIDE`, together at most :data:`MAX_CAMERA_PIXELS` (until session 36 unbounded: a
    mistyped 10^11-px side grew ``firmware-sim check`` to 22 GB before the host killed it)."""

    source: str = "files"
    channels: int = 3
    height: int = 0
    width: int = 0
    bit_depth: int = 8
    strip_rows: int = 256
    max_nan_fraction: float = 0.0
    max_saturated_fraction: float = 0.5
    margin: tuple[int, ...] = ()  # fixed margin (pixels): [N] every side or [top, bottom, left, right]
    bayer: str = ""  # colour-filter mosaic delivered by the sensor ("RGGB", ...): demosaiced before anything else

    def __post_init__(self) -> None:
        w = "[camera]"
        m = self.margin
        if isinstance(m, int) and not isinstance(m, bool):  # N: every side
            object.__setattr__(self, "margin", (m,))
        _check_types(self, w)
        given = list(m) if isinstance(m, list | tuple) else m  # as TOML writes it (--set gives a tuple)
        _need(len(self.margin) in (0, 1, 4), w, f"margin must be N or [top, bottom, left, right], got {given!r}")
        _need(all(v >= 0 for v in self.margin), w, "margin pixels must be >= 0")
        for side in ("height", "width"):
            v = getattr(self, side)
            _need(0 <= v <= MAX_CAMERA_SIDE, w, f"{side} must be in 0..{MAX_CAMERA_SIDE:,} px (0 = any), got {v:,}")
        _need(
            self.height * self.width <= MAX_CAMERA_PIXELS,
            w,
            f"height x width = {self.height:,} x {self.width:,} = {self.height * self.width:,} px is over "
            f"{MAX_CAMERA_PIXELS:,} px (2^32) for one frame",
        )
        t, b, left, right = margin_sides(self.margin)
        _need(
            not self.height or t + b < self.height,
            w,
            f"margin {list(self.margin)} leaves no row of the camera's {self.height} (top + bottom >= height)",
        )
        _need(
            not self.width or left + right < self.width,
            w,
            f"margin {list(self.margin)} leaves no column of the camera's {self.width} (left + right >= width)",
        )
        _need(self.bayer in BAYER_PATTERNS, w, f"bayer must be one of {BAYER_PATTERNS}, got {self.bayer!r}")
        _need(not self.bayer or self.channels == 3, w, "a bayer camera delivers RGB after demosaicing: channels = 3")
        _need(self.source in SOURCES, w, f"source must be one of {SOURCES}, got {self.source!r}")
        _need(self.channels in (1, 3), w, f"channels must be 1 or 3, got {self.channels}")
        _need(1 <= self.bit_depth <= 16, w, f"bit_depth must be in 1..16, got {self.bit_depth}")
        _need(
            1 <= self.strip_rows <= MAX_CAMERA_SIDE,
            w,
            f"strip_rows must be in 1..{MAX_CAMERA_SIDE:,}, got {self.strip_rows:,}",
        )
        _need(0.0 <= self.max_nan_fraction <= 1.0, w, "max_nan_fraction must be in [0, 1]")
        _need(0.0 <= self.max_saturated_fraction <= 1.0, w, "max_saturated_fraction must be in [0, 1]")


@dataclass(frozen=True)
class Sampling:
    """Deterministic sparse sampling (``edgeae.masks``). Frame ``i`` uses seed ``seed + i``."""

    keep: float = 0.05
    pattern: str = "uniform"
    seed: int = 0
    min_keep: float = 0.005

    def __post_init__(self) -> None:
        w = "[sampling]"
        _check_types(self, w)
        _need(0.0 < self.keep <= 1.0, w, f"keep must be in (0, 1], got {self.keep}")
        _need(0.0 < self.min_keep <= self.keep, w, f"min_keep must be in (0, keep], got {self.min_keep}")
        _need(self.pattern in PATTERNS, w, f"pattern must be one of {PATTERNS}, got {self.pattern!r}")
        _need(0 <= self.seed < 2**63, w, "seed must be a non-negative 63-bit integer")


@dataclass(frozen=True)
class Anomaly:
    """Patch anomaly scoring. ``model`` empty disables scoring (sparse pixels only).

    A patch is flagged when its score exceeds ``threshold`` (a number, or "metadata" for the artifact's own
    threshold); at most ``top_k`` flagged patches per frame are sent (this also bounds their memory).
    Without a threshold the ``top_k`` highest-scoring patches are sent. ``sha256`` is the golden hash of the
    model file (optional; else a ``<model>.sha256`` sidecar, else the hash at first load). ``fallback`` is
    a second copy, loaded when the first is corrupt. ``score`` (method ``vae``): ``"a"`` ranks by the
    artifact's a(x); ``"terms-max"`` by max(rec / median, mu2 / median) over the frame's patches
    (:mod:`edgeae.anomaly.terms`: finds texture as well as brightness; ranked at the end of the frame).
    ``model`` may be a zoo model (``"zoo:orbital-gray-vae"``): its shipped int8 artifact for an installed
    interpreter, the formats of ``prefer`` first (e.g. ``["tflite", "onnx"]``; default onnx, tflite, ort).
    """

    model: str = ""
    method: str = "vae"
    patch: int = 64
    stride: int = 64
    batch: int = 16
    threshold: float | str | None = None
    top_k: int = 8
    min_valid: float = 0.9
    sha256: str = ""
    fallback: str = ""
    score: str = "a"
    prefer: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        w = "[anomaly]"
        _check_types(self, w)
        _check_prefer(self.prefer, w)
        _need(self.method in METHODS, w, f"method must be one of {METHODS}, got {self.method!r}")
        _need(self.score in SCORE_MODES, w, f"score must be one of {SCORE_MODES}, got {self.score!r}")
        _need(
            self.score == "a" or self.method == "vae",
            w,
            f'score = "{self.score}" splits the VAE\'s a(x) into its terms: it needs method = "vae"',
        )
        _need(
            self.score == "a" or self.threshold != "metadata",
            w,
            f'threshold = "metadata" is a threshold on a(x); with score = "{self.score}" give a number (a multiple'
            " of the frame's medians) or none",
        )
        _need(8 <= self.patch <= 4096, w, f"patch must be in 8..4096, got {self.patch}")
        _need(1 <= self.stride <= self.patch, w, f"stride must be in 1..patch, got {self.stride}")
        _need(1 <= self.batch <= 4096, w, "batch must be in 1..4096")
        _need(1 <= self.top_k <= 65535, w, "top_k (the most patches sent per frame) must be in 1..65535")
        _need(0.0 <= self.min_valid <= 1.0, w, "min_valid must be in [0, 1]")
        _need(_is_sha256(self.sha256), w, f"sha256 must be empty or 64 hex digits, got {self.sha256!r}")
        t = self.threshold
        _need(
            t is None or t == "metadata" or (isinstance(t, int | float) and math.isfinite(float(t))),
            w,
            f'threshold must be a finite number or "metadata", got {t!r}',
        )
        _need(
            self.method != "cae-masked" or not isinstance(t, int | float) or t >= 0,
            w,
            f"threshold {t!r} is negative: the cae-masked score is a mean squared error (>= 0), so every patch "
            "would be flagged",
        )


@dataclass(frozen=True)
class Reconstruction:
    """Optional onboard work after scoring: ``check`` reconstructs a few tiles from the sparse pixels with the
    CAE and records the error; ``latent`` encodes tiles with the CAE encoder and queues a LatentFrame. ``model``
    and ``prefer`` as in :class:`Anomaly`."""

    mode: str = "off"
    model: str = ""
    tile: int = 128
    check_tiles: int = 2
    sha256: str = ""
    prefer: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        w = "[reconstruction]"
        _check_types(self, w)
        _check_prefer(self.prefer, w)
        _need(self.mode in RECON_MODES, w, f"mode must be one of {RECON_MODES}, got {self.mode!r}")
        _need(self.mode == "off" or bool(self.model), w, f"mode {self.mode!r} needs a model")
        _need(8 <= self.tile <= 4096, w, "tile must be in 8..4096")
        _need(self.check_tiles >= 1, w, "check_tiles must be >= 1")
        _need(_is_sha256(self.sha256), w, f"sha256 must be empty or 64 hex digits, got {self.sha256!r}")


MAX_MEMORY_BYTES = 2**40  # 1 TiB: a larger [budget] memory_bytes is a typo, not a spacecraft
MAX_FRAME_MS = 86_400_000.0  # one day per frame


BOARD_MEMORY = ("probe", "budget-only")  # [budget] board_memory


@dataclass(frozen=True)
class Budget:
    """What the spacecraft affords: working memory (bytes), time per frame (ms), bytes per downlink pass."""

    memory_bytes: int = 256 * 2**20
    frame_ms: float = 2000.0
    downlink_bytes_per_pass: int = 1_000_000
    pass_every_frames: int = 1
    queue_capacity_bytes: int = 64 * 2**20
    safety: float = 0.85
    # "probe": before each frame the ladder's limit is also capped by what the host gives the process now
    # (MemAvailable, the cgroup, RLIMIT_AS); "budget-only": by the budget alone, so a run's levels do not depend on
    # the host's memory at that moment (reproducible runs; a frame that really runs out is still memory_unavailable)
    board_memory: str = "probe"

    def __post_init__(self) -> None:
        w = "[budget]"
        _check_types(self, w)
        _need(
            2**20 <= self.memory_bytes <= MAX_MEMORY_BYTES,
            w,
            f"memory_bytes must be in 1 MiB..1 TiB ({2**20:,}..{MAX_MEMORY_BYTES:,} B), got {self.memory_bytes:,}",
        )
        _need(
            0 < self.frame_ms <= MAX_FRAME_MS,
            w,
            f"frame_ms must be in (0, {MAX_FRAME_MS:,.0f}] (one day), got {self.frame_ms:g}",
        )
        _need(self.downlink_bytes_per_pass >= 0, w, "downlink_bytes_per_pass must be >= 0")
        _need(self.pass_every_frames >= 1, w, "pass_every_frames must be >= 1")
        _need(self.queue_capacity_bytes >= 4096, w, "queue_capacity_bytes must be >= 4096")
        _need(0.1 <= self.safety <= 1.0, w, "safety must be in [0.1, 1]")
        _need(
            self.board_memory in BOARD_MEMORY,
            w,
            f"board_memory must be one of {', '.join(map(repr, BOARD_MEMORY))}, got {self.board_memory!r}",
        )


@dataclass(frozen=True)
class Downlink:
    """How products are cut into CCSDS packets (``wire.packets.WireConfig``): packet size limit, lossless sample
    codec (``auto``, the default: ``ccsds121`` when libaec is installed — ``edgeae[flight-ccsds121]`` — else
    ``delta-deflate``; ``ccsds121``: CCSDS 121.0-B through libaec, the smallest on every test set; ``none``
    needs nothing beyond numpy), and ``band_rows``: sparse samples interleaved over the whole frame (0) or
    within bands of rows (payload layout 2; ``docs/wire-format.md``). Streamed frames are packetised from
    their spool file.
    """

    max_packet_bytes: int = 1024
    codec: str = "auto"
    band_rows: int = 0

    def __post_init__(self) -> None:
        w = "[downlink]"
        _check_types(self, w)
        _need(128 <= self.max_packet_bytes <= 65542, w, "max_packet_bytes must be in 128..65542")
        _need(self.codec in CODECS, w, f"codec must be one of {CODECS}, got {self.codec!r}")
        _need(self.band_rows >= 0, w, "band_rows must be >= 0 (0 = interleave over the whole frame)")


@dataclass(frozen=True)
class Runtime:
    """Interpreter threads, weight scrubbing period, fault injection (``kind@frameN[:arg]`` strings) and the
    malloc policy set at boot (:mod:`.heap`)."""

    threads: int = 1
    scrub_every_frames: int = 1
    # false turns off the memory probes that cost something (tracemalloc, below); the RSS high-water mark the
    # budget is enforced on is read either way (it is free)
    measure_memory: bool = True
    # trace Python allocations (tracemalloc) beside the RSS: a diagnostic that costs the frame time and memory
    # it reports on (a NAC-size strip: ~6 MiB of RSS and about a third more CPU time; docs/firmware_sim.md)
    trace_allocations: bool = False
    inject: tuple[str, ...] = ()
    heap: str = "compact"  # malloc policy set at boot (heap.py): "compact" or "system"

    def __post_init__(self) -> None:
        w = "[runtime]"
        if isinstance(self.inject, str):  # "seu@frame1,late@frame2" (from --set)
            object.__setattr__(self, "inject", tuple(x for x in self.inject.split(",") if x.strip()))
        _check_types(self, w)
        _need(1 <= self.threads <= 256, w, "threads must be in 1..256")
        _need(self.heap in HEAP_POLICIES, w, f"heap must be one of {', '.join(HEAP_POLICIES)}, got {self.heap!r}")
        _need(self.scrub_every_frames >= 1, w, "scrub_every_frames must be >= 1")
        _need(
            self.measure_memory or not self.trace_allocations,
            w,
            "trace_allocations = true needs measure_memory = true (the traced peak is one of its probes)",
        )

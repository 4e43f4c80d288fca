"""Model metadata: the record that travels inside every checkpoint and exported artifact.

Pure Python (no numpy, no torch), so the flight runtime and the ground decoder read it the same way. It is
stored as one JSON string: under the key ``edgeae`` in a checkpoint, in ONNX ``metadata_props`` and in a
TFLite metadata buffer. A loader refuses an artifact whose metadata is missing or does not match its input.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgeae._version import __version__

SCHEMA = 1
METADATA_KEY = "edgeae"
KINDS = ("cae", "cae-encoder", "cae-decoder", "vae")
LAYOUTS = ("NCHW", "NHWC")
NORMALISATIONS: dict[str, tuple[float, float]] = {"divide-by-dtype-max": (0.0, 1.0)}
"""The ``normalisation`` methods edgeae applies, with the input range each gives (docs/export.md, "Values")."""


class MetadataError(ValueError):
    """Metadata is missing, malformed, or does not match what it is used with."""


@dataclass(frozen=True)
class ModelMetadata:
    """What a model artifact must say about itself.

    ``input_shape`` is (N, C, H, W) or (N, H, W, C) following ``layout``; N is -1 for a dynamic batch, else the
    file's static batch (a TFLite VAE exported since session 31: 16; earlier files say -1, their tensor says 16).
    ``normalisation`` says how raw pixels map to the model's input: ``{"range": [0, 1], "method":
    "divide-by-dtype-max"}``, which edgeae applies as samples / (2**bit_depth - 1), the bit depth from the product
    or the file (PNG ``sBIT``, PGM ``maxval``, TIFF ``MaxSampleValue``): 12-bit data in uint16 words is divided by
    4095, not 65535; archive products that do not fit their bit depth are stretched, (raw - raw_lo) / (raw_hi -
    raw_lo) (:mod:`edgeae.archive.scaling`). The method name is kept as written so every artifact loads as before.
    ``mask`` records the sampling used in training (pattern, destroyed-fraction range, mode); a CAE's input has
    destroyed pixels 0 and kept ones at least 1/255 (docs/masks.md). ``score`` holds ``lambda`` and ``threshold``
    (the 99th percentile of the validation patches' scores) for anomaly scoring models. What each field means to a
    program without edgeae: docs/export.md, "Using an artifact without edgeae". Construction checks every field's
    type and value (a known normalisation, finite score numbers) and raises :class:`MetadataError`.
    """

    kind: str
    architecture: dict[str, Any]
    input_shape: tuple[int, ...]
    channels: int
    layout: str = "NCHW"
    normalisation: dict[str, Any] = field(
        default_factory=lambda: {"range": [0.0, 1.0], "method": "divide-by-dtype-max"}
    )
    mask: dict[str, Any] = field(default_factory=dict)
    score: dict[str, Any] = field(default_factory=dict)
    training_data_hash: str = ""
    source_checkpoint_hash: str = ""
    edgeae_version: str = __version__
    precision: str = "fp32"
    extra: dict[str, Any] = field(default_factory=dict)
    schema: int = SCHEMA

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise MetadataError(f"unknown model kind {self.kind!r}; expected one of {KINDS}")
        if self.layout not in LAYOUTS:
            raise MetadataError(f"unknown layout {self.layout!r}; expected one of {LAYOUTS}")
        if not _is_whole(self.channels) or self.channels < 1:
            raise MetadataError(f"channels must be a whole number >= 1, got {self.channels!r}")
        if self.channels not in (1, 3) and self.kind != "cae-decoder":
            raise MetadataError(f"channels must be 1 or 3, got {self.channels}")
        object.__setattr__(self, "channels", int(self.channels))
        if not isinstance(self.input_shape, (list, tuple)) or not all(_is_whole(v) for v in self.input_shape):
            raise MetadataError(f"input_shape must be a list of whole numbers, got {self.input_shape!r}")
        object.__setattr__(self, "input_shape", tuple(int(v) for v in self.input_shape))
        if len(self.input_shape) != 4:
            raise MetadataError(f"input_shape must have 4 dimensions, got {self.input_shape}")
        if any(v == 0 or v < -1 for v in self.input_shape):
            raise MetadataError(f"input_shape sizes must be >= 1 (or -1: dynamic), got {self.input_shape}")
        for name in ("architecture", "normalisation", "mask", "score", "extra"):
            value = getattr(self, name)
            if not isinstance(value, dict):
                raise MetadataError(f"{name} must be a JSON object, got {type(value).__name__} {value!r:.60}")
        for name in ("training_data_hash", "source_checkpoint_hash", "edgeae_version", "precision"):
            if not isinstance(getattr(self, name), str):
                raise MetadataError(f"{name} must be a string, got {getattr(self, name)!r:.60}")
        arch_channels = self.architecture.get("channels")
        if arch_channels is not None and (not _is_whole(arch_channels) or arch_channels < 1):
            raise MetadataError(f"architecture channels must be a whole number >= 1, got {arch_channels!r:.60}")
        self._check_normalisation()
        self._check_score()

    def _check_normalisation(self) -> None:
        """Refuse a ``normalisation`` edgeae cannot apply: an unknown method, or a range other than the method's."""
        method, rng = self.normalisation.get("method"), self.normalisation.get("range")
        if not isinstance(method, str) or method not in NORMALISATIONS:
            known = ", ".join(repr(k) for k in NORMALISATIONS)
            raise MetadataError(f"normalisation method {method!r:.60} is not one edgeae applies ({known})")
        if not isinstance(rng, (list, tuple)) or len(rng) != 2 or not all(_is_finite(v) for v in rng):
            raise MetadataError(f"normalisation range must be two finite numbers [lo, hi], got {rng!r:.60}")
        want = NORMALISATIONS[method]
        if tuple(float(v) for v in rng) != want:
            raise MetadataError(
                f"normalisation range {list(rng)} does not match method {method!r}, which gives "
                f"[{want[0]:g}, {want[1]:g}]"
            )

    def _check_score(self) -> None:
        """``score["lambda"]`` (>= 0) and ``score["threshold"]``, where recorded (not null), are finite numbers."""
        for key, low in (("lambda", 0.0), ("threshold", None)):
            v = self.score.get(key)
            if v is None:
                continue
            if not _is_finite(v) or (low is not None and v < low):
                need = "a finite number" + ("" if low is None else f" >= {low:g}")
                raise MetadataError(f"score {key} must be {need}, got {v!r:.60}")

    def to_json(self) -> str:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "artifact") -> ModelMetadata:
        try:
            d = json.loads(text)
        except (ValueError, TypeError) as exc:
            raise MetadataError(f"{source}: edgeae metadata is not valid JSON ({exc})") from exc
        if not isinstance(d, dict):
            raise MetadataError(f"{source}: edgeae metadata must be a JSON object")
        if d.get("schema") != SCHEMA:
            raise MetadataError(f"{source}: metadata schema {d.get('schema')!r} is not supported (want {SCHEMA})")
        try:
            return cls(**d)
        except TypeError as exc:
            raise MetadataError(f"{source}: metadata fields do not match schema {SCHEMA}: {exc}") from exc
        except MetadataError as exc:  # a field's value: name the file it came from
            raise MetadataError(f"{source}: edgeae metadata: {exc}") from exc

    def replace(self, **changes: Any) -> ModelMetadata:
        d = asdict(self)
        d.update(changes)
        return ModelMetadata(**d)

    def check_input(self, shape: tuple[int, ...], source: str = "model", layout: str | None = None) -> None:
        """Raise :class:`MetadataError` when an input batch of ``shape`` does not fit this model (the batch axis is
        not compared). ``layout``: the order of ``shape`` (default: the model's own); the flight loader passes the
        NCHW batch its caller gave an NHWC model, so the error names the shape and axis as the caller passed them.
        """
        given = layout or self.layout
        if given not in LAYOUTS:
            raise MetadataError(f"unknown layout {given!r}; expected one of {LAYOUTS}")
        if len(shape) != 4:
            raise MetadataError(f"{source}: expected a 4-D {given} batch, got shape {tuple(shape)}")
        for axis_name, what in (("C", "channels"), ("H", "height"), ("W", "width")):
            want = self.input_shape[self.layout.index(axis_name)]
            axis = given.index(axis_name)
            got = shape[axis]
            if want > 0 and want != got:
                has = f"{got} channel{'s' * (got != 1)}" if axis_name == "C" else f"{what} {got}"
                raise MetadataError(
                    f"{source}: input shape {tuple(shape)} ({given}) does not match the model's {self.layout} input "
                    f"{self.input_shape}: the batch has {has}, the model takes {want} (axis {axis})"
                )


def _is_whole(v: Any) -> bool:
    """A whole number (an int, or a float such as 64.0 with no fraction); never a bool or a string."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        return False
    return isinstance(v, numbers.Integral) or (math.isfinite(float(v)) and float(v).is_integer())


def _is_finite(v: Any) -> bool:
    """A finite real number (not NaN, not ±inf); never a bool or a string."""
    return not isinstance(v, bool) and isinstance(v, numbers.Real) and math.isfinite(float(v))


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, streamed."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def manifest_hash(files: list[str | os.PathLike[str]]) -> str:
    """Hash of a training-data manifest: sorted (name, size, sha256) of every file, as hex SHA-256."""
    h = hashlib.sha256()
    for p in sorted(Path(f) for f in files):
        h.update(f"{p.name}\t{p.stat().st_size}\t{sha256_file(p)}\n".encode())
    return h.hexdigest()


def latent_encoder_id(metadata: Any, file_hash: str = "") -> str:
    """The 16-hex-digit id a latent frame carries for the ground to pick the matching decoder: the source
    checkpoint hash in ``metadata`` (shared by the encoder and decoder exported from one checkpoint), else
    ``file_hash`` (the encoder file's SHA-256), else ``"unknown"``. The flight runtime and the ground encoder
    both use this one function."""
    h = getattr(metadata, "source_checkpoint_hash", "") or ""
    if h:
        return str(h).split(":")[-1][:16]
    return str(file_hash).split(":")[-1][:16] if file_hash else "unknown"


def run_provenance(model_file: str | os.PathLike[str] | None, threads: int | None) -> dict[str, Any]:
    """What else made a run's numbers, for its record: the edgeae version, the model file and its SHA-256 (zoo names
    are retrained between releases), the threads asked for and in effect (fp32 models and ``--adapt`` can differ in
    the last bit between thread counts)."""
    import sys

    from edgeae._version import __version__

    source = None if model_file is None else os.fspath(model_file)
    torch = sys.modules.get("torch")
    return {
        "edgeae_version": __version__,
        "model_file": source,
        "model_sha256": sha256_file(source) if source and os.path.isfile(source) else None,
        "threads": threads,
        "torch_threads": torch.get_num_threads() if torch is not None else None,
    }

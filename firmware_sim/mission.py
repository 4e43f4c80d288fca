"""Mission files: one TOML file says what the camera delivers and what the spacecraft can afford.

Loaded into frozen dataclasses that validate themselves, so a mission that cannot work is refused at load
with the file and the field named. Standard library only (``tomllib``). See ``docs/firmware_sim.md`` for every
field; ``missions/rover_mastcamz.toml`` and ``missions/orbital_nac.toml`` are worked examples. This module
holds the whole :class:`Mission` and its loading; the sections it is made of are in :mod:`.mission_sections`.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

# the sections and their constants, re-exported: callers import them from here
from .mission_sections import BAYER_PATTERNS as BAYER_PATTERNS
from .mission_sections import CODECS as CODECS
from .mission_sections import METHODS as METHODS
from .mission_sections import PATTERNS as PATTERNS
from .mission_sections import RECON_MODES as RECON_MODES
from .mission_sections import SCORE_MODES as SCORE_MODES
from .mission_sections import SOURCES as SOURCES
from .mission_sections import Anomaly as Anomaly
from .mission_sections import Budget as Budget
from .mission_sections import Camera as Camera
from .mission_sections import Downlink as Downlink
from .mission_sections import MissionError as MissionError
from .mission_sections import Reconstruction as Reconstruction
from .mission_sections import Runtime as Runtime
from .mission_sections import Sampling as Sampling
from .mission_sections import _need
from .mission_sections import margin_sides as margin_sides

MISSIONS_DIR = Path(__file__).resolve().parent / "missions"


@dataclass(frozen=True)
class Mission:
    """A whole mission file."""

    name: str
    camera: Camera = field(default_factory=Camera)
    sampling: Sampling = field(default_factory=Sampling)
    anomaly: Anomaly = field(default_factory=Anomaly)
    reconstruction: Reconstruction = field(default_factory=Reconstruction)
    budget: Budget = field(default_factory=Budget)
    downlink: Downlink = field(default_factory=Downlink)
    runtime: Runtime = field(default_factory=Runtime)
    description: str = ""
    source_path: str = ""

    def __post_init__(self) -> None:
        _need(bool(self.name), "mission", "name must not be empty")
        cam, an = self.camera, self.anomaly
        if cam.source == "strips":
            _need(
                self.reconstruction.mode != "latent",
                "mission",
                'latent encoding needs whole frames: use [camera] source = "files" or mode = "check"',
            )
            _need(
                cam.strip_rows % an.patch == 0 and an.stride == an.patch,
                "mission",
                "streamed strips need [camera] strip_rows to be a multiple of [anomaly] patch and stride == patch, "
                f"got strip_rows = {cam.strip_rows}, patch = {an.patch}, stride = {an.stride}",
            )
        per_pass, packet = self.budget.downlink_bytes_per_pass, self.downlink.max_packet_bytes
        _need(
            per_pass == 0 or per_pass >= packet,
            "mission",
            f"[budget] downlink_bytes_per_pass ({per_pass}) must hold at least one full packet ([downlink] "
            f"max_packet_bytes = {packet}): products of larger packets would wait forever (0: no passes)",
        )

    def with_overrides(self, **sections: dict[str, Any]) -> Mission:
        """A copy with some fields of some sections replaced, e.g. ``anomaly={"model": "x.onnx"}``."""
        changes: dict[str, Any] = {}
        for name, values in sections.items():
            if name not in _SECTIONS:
                raise MissionError(f"unknown mission section [{name}]; known: {sorted(_SECTIONS)}")
            try:
                changes[name] = replace(getattr(self, name), **values)
            except TypeError as exc:
                raise MissionError(f"[{name}]: {exc}") from exc
        return replace(self, **changes)


_SECTIONS: dict[str, type] = {
    "camera": Camera,
    "sampling": Sampling,
    "anomaly": Anomaly,
    "reconstruction": Reconstruction,
    "budget": Budget,
    "downlink": Downlink,
    "runtime": Runtime,
}


def _section(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise MissionError(f"{where}: [{cls.__name__.lower()}] must be a table")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise MissionError(f"{where}: unknown keys {unknown} in section; known: {sorted(known)}")
    return cls(**data)  # each section checks its fields' types and ranges


def mission_from_dict(data: dict[str, Any], source: str = "mission") -> Mission:
    """Build and validate a :class:`Mission` from a parsed TOML document."""
    unknown = sorted(set(data) - set(_SECTIONS) - {"name", "description"})
    if unknown:
        raise MissionError(f"{source}: unknown top-level keys {unknown}")
    if "name" not in data:
        raise MissionError(f'{source}: no name: a mission file needs a top-level name = "..." (before any [section])')
    for key in ("name", "description"):
        if not isinstance(data.get(key, ""), str):
            raise MissionError(f"{source}: {key} must be a string, got {data[key]!r} ({type(data[key]).__name__})")
    try:
        parts = {k: _section(cls, data[k], f"{source} [{k}]") for k, cls in _SECTIONS.items() if k in data}
        return Mission(
            name=data.get("name", ""),
            description=data.get("description", ""),
            source_path=source,
            **parts,
        )
    except MissionError as exc:
        msg = str(exc)
        raise MissionError(msg if msg.startswith(source) else f"{source}: {msg}") from None
    except TypeError as exc:
        raise MissionError(f"{source}: {exc}") from None


def resolve_mission(spec: str | Path) -> Path:
    """A path to a mission file, or the name of a shipped one (``rover_mastcamz``, ``orbital_nac``)."""
    from edgeae.resolve import NameNotFound, preset_path  # standard library only

    try:
        return preset_path(spec, MISSIONS_DIR, "mission")
    except NameNotFound as exc:
        raise MissionError(str(exc)) from None


def load_mission(spec: str | Path) -> Mission:
    """Read and validate a mission TOML file (or a shipped mission by name)."""
    try:
        path = resolve_mission(spec)  # a shipped mission's name wins over a folder of that name here
    except MissionError:
        if Path(spec).is_dir():  # not "neither a file nor a preset": it is there, but a folder
            raise MissionError(
                f"mission {spec} is a folder, not a mission file: name a .toml file in it or a shipped mission"
            ) from None
        raise
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise MissionError(f"{path}: cannot read mission file ({exc})") from exc
    if not data:
        raise MissionError(
            f'{path}: the mission file is empty (it needs at least name = "..."; see firmware-sim missions)'
        )
    _models_beside(data, path.parent)
    return mission_from_dict(data, source=str(path))


MODEL_FIELDS = (("anomaly", "model"), ("anomaly", "fallback"), ("reconstruction", "model"))
ARTIFACT_SUFFIXES = (".onnx", ".ort", ".tflite")


def _models_beside(data: dict[str, Any], folder: Path) -> None:
    """A relative model path in a mission file names a file beside the mission file (as a config file's paths
    do), whatever folder the command runs from; when no such file exists there the path is left as written
    (read from the current folder, as before). ``~`` and ``~user`` at its start are expanded to the home folder
    (until session 32 ``~/anom.onnx`` was looked for in a folder named ``~``)."""
    for section, key in MODEL_FIELDS:
        sec = data.get(section)
        if not isinstance(sec, dict):
            continue
        value = sec.get(key)
        if isinstance(value, str) and value.startswith("~"):
            value = sec[key] = os.path.expanduser(value)  # left as written when there is no such user
        if not isinstance(value, str) or not value or value.startswith("zoo:") or Path(value).is_absolute():
            continue
        if Path(value).suffix.lower() in ARTIFACT_SUFFIXES and (folder / value).is_file():
            sec[key] = str(folder / value)

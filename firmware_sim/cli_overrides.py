"""The command line's changes to a ``firmware-sim run`` (or ``check``) mission: ``--anomaly-model``,
``--recon-model``, ``--threads``, ``--frame-ms`` and ``--set SECTION.KEY=VALUE``, each refused with one clear line
(exit 2, naming the option) when it names a missing or damaged model, an unknown key or a value of the wrong kind
(:func:`_mission_for`)."""

from __future__ import annotations

import argparse
import os
import re
import tomllib
from pathlib import Path
from typing import Any

from .mission import ARTIFACT_SUFFIXES, MODEL_FIELDS, Mission, MissionError, load_mission

# the mission field each option of the command line sets (--set names its own)
_OPTION_FIELDS = {
    "anomaly_model": ("anomaly", "model", "--anomaly-model"),
    "recon_model": ("reconstruction", "model", "--recon-model"),
    "threads": ("runtime", "threads", "--threads"),
    "frame_ms": ("budget", "frame_ms", "--frame-ms"),
}


def _mission_for(args: argparse.Namespace) -> Mission:
    """The mission with the command line's changes (:func:`_mission_with_overrides`); a section's
    refusal of a value an option gave names that option (``--threads 0: [runtime]: threads must be in 1..256``),
    and a model path named on the command line that is not there names the folder it was looked for in."""
    for attr in ("anomaly_model", "recon_model"):
        _check_model_path(_OPTION_FIELDS[attr][2], getattr(args, attr), args.mission)
    try:
        return _mission_with_overrides(args)
    except MissionError as exc:
        raise MissionError(_name_the_option(str(exc), args)) from None


def _name_the_option(message: str, args: argparse.Namespace) -> str:
    """``message`` prefixed with the options that set the field it refuses (those of its section when no option
    sets that field itself); as it was when it names no section or no option set one."""
    m = re.match(r"\[(\w+)\]: (\w+)", message)
    if m is None:
        return message
    section, key = m.groups()
    given = [
        (sec, k, f"{flag} {getattr(args, attr)}")
        for attr, (sec, k, flag) in _OPTION_FIELDS.items()
        if getattr(args, attr, None) is not None
    ]
    for item in args.set or ():
        lhs = item.partition("=")[0].strip()
        sec, _, k = lhs.partition(".")
        given.append((sec.strip(), k.strip(), f"--set {item}"))
    named = [opt for sec, k, opt in given if sec == section and k == key]
    named = named or [opt for sec, _, opt in given if sec == section]
    return f"{', '.join(named)}: {message}" if named else message


def _check_model_path(flag: str, spec: str | None, mission: str) -> None:
    """A model path given on the command line that does not exist, refused naming the folder it was read from (the
    current one) and the file of that name beside the mission file, when there is one."""
    if not spec or spec.startswith("zoo:") or Path(spec).suffix.lower() not in ARTIFACT_SUFFIXES:
        return  # a zoo name, or no artifact suffix: resolved (or refused) by the overrides
    path = Path(os.path.expanduser(spec))
    if path.is_file():
        return
    if path.is_absolute():
        raise MissionError(f"{flag} {spec}: no such file")
    beside = Path(mission).parent / spec if Path(mission).is_file() else None
    hint = f"; {beside} exists: give that path" if beside is not None and beside.is_file() else ""
    raise MissionError(
        f"{flag} {spec}: no such file in the current folder {Path.cwd()} (a path on the command line is read from "
        f"the current folder, not beside the mission file){hint}"
    )


def _mission_with_overrides(args: argparse.Namespace) -> Any:
    """The mission file with ``--anomaly-model``, ``--recon-model``, ``--threads``, ``--frame-ms`` and ``--set``
    applied (each checked like the file's own fields)."""
    mission = load_mission(args.mission)
    overrides: dict[str, dict[str, Any]] = {}
    if args.anomaly_model is not None:
        _check_named_model("--anomaly-model", args.anomaly_model, mission.anomaly.prefer)
        overrides["anomaly"] = {"model": args.anomaly_model}
    if args.recon_model is not None:
        _check_named_model("--recon-model", args.recon_model, mission.reconstruction.prefer)
        overrides["reconstruction"] = {"model": args.recon_model}
    if args.threads is not None:
        overrides["runtime"] = {"threads": args.threads}
    if args.frame_ms is not None:
        overrides["budget"] = {"frame_ms": args.frame_ms}
    for item in args.set or ():
        section, key, value = _parse_set(item)
        overrides.setdefault(section, {})[key] = _check_set_type(mission, section, key, value, item)
        if (section, key) in MODEL_FIELDS:
            _check_set_model(item, value, mission.source_path)
    return mission.with_overrides(**overrides) if overrides else mission


def _check_named_model(flag: str, spec: str, prefer: tuple[str, ...] = ()) -> None:
    """A model named on the command line must exist, be what its suffix says (not empty, not a TFLite file named .onnx),
    match the hash its export recorded (a ``.sha256`` sidecar or ``parity.json`` beside it) and not be a file that
    record says failed its export checks: refused here (exit 2), not flown without scoring as a mission's own
    damaged model is (the flight loop's fault tolerance is for what happens in flight). Nothing is loaded here: an
    interpreter opened before the boot would sit inside the RSS baseline the memory budget is measured from.
    ``prefer``: the mission section's format order, so a zoo name is checked as the file the boot will fly."""
    from .guard import parity_failure, recorded_hash_mismatch
    from .onboard import resolve_model_file
    from .runtime import ArtifactError, check_artifact_file

    path = resolve_model_file(spec, prefer)  # unknown zoo names: MissionError
    if not path.is_file():
        raise MissionError(f"{flag} {spec}: no such file")
    try:
        check_artifact_file(path)
    except ArtifactError as exc:
        raise MissionError(f"{flag} {exc}") from None
    failed = parity_failure(path)  # the boot would refuse it and fly the mission without that model
    if failed:
        raise MissionError(f"{flag} {failed}: the flight runtime does not fly it")
    why = recorded_hash_mismatch(path)
    if why:
        raise MissionError(f"{flag} {why}")


def _check_set_model(item: str, value: Any, source: str) -> None:
    """A model path given with ``--set`` is read as written, from the current folder (what a shell user expects; a
    mission file's own relative paths name files beside it): a missing one is refused here naming the ``--set``
    and the folder it was looked for in, not later at boot as the mission file's model."""
    if not isinstance(value, str) or not value or value.startswith("zoo:"):
        return
    path = Path(os.path.expanduser(value))  # a quoted ~ is the home folder (~name of no user stays as written)
    if path.suffix.lower() not in ARTIFACT_SUFFIXES or path.is_file():
        return  # a zoo name is resolved at boot
    if path.is_absolute():
        raise MissionError(f"--set {item}: no such file {value}")
    beside = Path(source).parent / value if source else None
    hint = f"; {beside} exists: give that path" if beside is not None and beside.is_file() else ""
    raise MissionError(
        f"--set {item}: no such file {value} in the current folder {Path.cwd()} (a --set path is read from the "
        f"current folder, not beside the mission file){hint}"
    )


def _kind(value: Any) -> str:
    """What a mission key takes, in words ("an integer", not "a int")."""
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", tuple: "a list"}
    return names.get(type(value), f"a {type(value).__name__}")


def _check_set_type(mission: Any, section: str, key: str, value: Any, item: str) -> Any:
    """``--set`` with an unknown key or a value of the wrong kind (``sampling.keep=abc``) is refused with one clear
    line; returns the value (a TOML array as the tuple a list field holds)."""
    import dataclasses

    part = getattr(mission, section, None)
    if dataclasses.is_dataclass(part):
        known = [f.name for f in dataclasses.fields(part)]
        if key not in known:
            raise MissionError(f"--set {item}: [{section}] has no key {key!r}; its keys: {', '.join(known)}")
    current = getattr(part, key, None)
    if isinstance(value, bool) and current is not None and not isinstance(current, bool):
        raise MissionError(f"--set {item}: [{section}] {key} takes {_kind(current)}, not {value!r}")
    if isinstance(current, tuple) and isinstance(value, list):
        return tuple(value)  # TOML arrays are lists; the mission keeps tuples
    if isinstance(current, tuple) and isinstance(value, int) and not isinstance(value, bool):
        return value  # camera.margin=N: the mission's own check reads a number as every side
    if isinstance(current, tuple) and isinstance(value, str) and (section, key) == ("runtime", "inject"):
        return value  # runtime.inject=seu@frame1,late@frame2: the mission splits the list
    if current is None or isinstance(value, type(current)):
        return value
    number = (int, float)
    if isinstance(current, bool) or not isinstance(current, number):
        if isinstance(current, bool) != isinstance(value, bool) or isinstance(current, str | tuple | list):
            raise MissionError(f"--set {item}: [{section}] {key} takes {_kind(current)}, not {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, number):
        raise MissionError(f"--set {item}: [{section}] {key} takes a number (now {current!r}), not {value!r}")
    if value != value or value in (float("inf"), float("-inf")):
        raise MissionError(f"--set {item}: [{section}] {key} must be a finite number")
    return value


def _parse_set(item: str) -> tuple[str, str, Any]:
    """``section.key=value`` with a TOML value (bare words are strings): ``anomaly.top_k=4``."""
    lhs, sep, rhs = item.partition("=")
    section, dot, key = lhs.strip().partition(".")
    if not sep or not dot or not key:
        raise MissionError(f"--set {item!r}: expected SECTION.KEY=VALUE, e.g. anomaly.top_k=4")
    try:
        value = tomllib.loads(f"v = {rhs.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = rhs.strip()
    return section, key, value

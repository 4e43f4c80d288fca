"""One vocabulary for naming things on the command line: models, links and missions.

Every command that takes a model, a link or a mission resolves it here, so the same words work everywhere:

- a **model** is a zoo name (``orbital-gray-vae``), the same with a ``zoo:`` prefix, a shipped artifact
  (``zoo:orbital-gray-vae/orbital-gray-vae.int8.onnx``) or a path to a ``.pt`` checkpoint or an
  ``.onnx`` / ``.ort`` / ``.tflite`` artifact;
- a **link** is a preset name (``loss20``; ``edgeae links`` lists them) or a path to a link TOML file;
- a **mission** is a preset name (``rover_mastcamz``; ``firmware-sim missions`` lists them) or a path.

Standard library only (no numpy, no torch): the flight runtime (``edgeae.firmware_sim``) uses it too.
Errors are :class:`NameNotFound` (a ``FileNotFoundError`` whose message lists what does exist).
"""

from __future__ import annotations

import importlib.util
import os
import tomllib
from collections.abc import Sequence
from pathlib import Path

from edgeae import zoo
from edgeae._optional import source_ref

ZOO_PREFIX = "zoo:"
CHECKPOINT_SUFFIX = ".pt"
ARTIFACT_SUFFIXES = (".onnx", ".ort", ".tflite")
MODEL_SUFFIXES = (CHECKPOINT_SUFFIX, *ARTIFACT_SUFFIXES)
ARTIFACTS_DIR = Path(zoo.__file__).resolve().parent / "artifacts"
LINKS_DIR = Path(__file__).resolve().parent / "ground" / "links"
# the interpreter each artifact suffix needs, in the order a zoo name prefers them (unless told otherwise)
_INTERPRETER = {".onnx": "onnxruntime", ".ort": "onnxruntime", ".tflite": "ai_edge_litert"}
# the flight extra that installs each interpreter
INTERPRETER_EXTRA = {"onnxruntime": "flight-onnx", "ai_edge_litert": "flight-tflite"}


class NameNotFound(FileNotFoundError):
    """A model, link or mission name that is neither an existing file nor a known preset."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _looks_like_path(spec: str) -> bool:
    return os.sep in spec or "/" in spec or Path(spec).suffix in (*MODEL_SUFFIXES, ".toml")


# ------------------------------------------------------------------------------------------------ models
def shipped_artifacts(name: str) -> list[Path]:
    """The flight artifacts shipped for zoo model ``name`` (full model first, then encoder/decoder); files the export
    rejected or a re-export moved aside (``.FAILED.``, ``.STALE.``: the flight runtime refuses them) are none."""
    folder = ARTIFACTS_DIR / name
    files = [p for p in sorted(folder.glob("*")) if p.suffix in ARTIFACT_SUFFIXES and not zoo.is_rejected(p.name)]
    return sorted(files, key=lambda p: (p.name.count("-encoder") + p.name.count("-decoder"), p.name))


def _preference(prefer: Sequence[str]) -> dict[str, int]:
    """Artifact suffix -> rank: the suffixes of ``prefer`` (``"tflite"`` or ``".tflite"``) first, in that order,
    then the default order (onnxruntime, LiteRT, ORT format)."""
    wanted = [s if s.startswith(".") else f".{s}" for s in prefer]
    order = [*dict.fromkeys([*wanted, ".onnx", ".tflite", ".ort"])]
    return {suffix: i for i, suffix in enumerate(order)}


def zoo_artifact(name: str, part: str = "", prefer: Sequence[str] = ()) -> Path:
    """The shipped artifact of zoo model ``name`` that this install can run: the first of ``prefer``'s formats
    (e.g. ``("tflite", "onnx")``) whose interpreter is installed, else onnxruntime's, then LiteRT's.

    ``part`` picks ``encoder`` or ``decoder`` of a seed CAE ("" = the full model). When no shipped file's
    interpreter is installed, the most preferred file is returned (:func:`interpreter_missing` says why it cannot
    run and what to install).
    """
    zoo_entry(name)
    stem = f"{name}-{part}" if part else name
    files = [p for p in shipped_artifacts(name) if p.name.split(".")[0] == stem]
    if not files:
        raise NameNotFound(
            f"zoo model {name!r} ships no flight artifact{' for its ' + part if part else ''}; make one with "
            f"edgeae export {name} --format onnx --precision int8 --out DIR, then pass the file"
        )
    order = _preference(prefer)
    runnable = [p for p in files if _installed(_INTERPRETER[p.suffix])]
    return min(runnable or files, key=lambda p: order[p.suffix])


def interpreter_missing(path: Path, flag: str = "") -> str | None:
    """Why this install cannot run the artifact ``path`` (the interpreter its suffix needs is not installed) and
    what to do instead, in one line; None when it can (or ``path`` is no artifact). For a shipped zoo artifact
    with a sibling the installed interpreter runs, the line names that file (``flag``: the option that takes it,
    e.g. ``--anomaly-model``), never a second interpreter to install."""
    module = _INTERPRETER.get(path.suffix)
    if module is None or _installed(module):
        return None
    need = f"{path.name} needs {module}, which is not installed"
    pip = f"pip install 'edgeae[{INTERPRETER_EXTRA[module]}]'"
    try:
        shipped = path.resolve().parent.parent == ARTIFACTS_DIR
    except OSError:
        shipped = False
    if not shipped:
        return f"{need}: run  {pip}, or give an artifact for the installed interpreter (.onnx/.ort or .tflite)"
    name, stem = path.parent.name, path.name.split(".")[0]
    siblings = [p for p in shipped_artifacts(name) if p.name.split(".")[0] == stem]
    runnable = [p for p in siblings if _installed(_INTERPRETER[p.suffix])]
    if runnable:
        use = f"zoo:{name}/{runnable[0].name}"
        part = stem.removeprefix(name).lstrip("-")
        whole = f" (or the zoo name {name}: the file for the installed interpreter)" if not part else ""
        return (
            f"{need}; this install runs the shipped {runnable[0].name}: use {(flag + ' ') if flag else ''}{use}{whole}"
        )
    formats = ", ".join(sorted({p.suffix for p in siblings}))
    docs = source_ref("docs/export.md", "Zoo artifacts")
    return f"{need}, and zoo model {name} ships only {formats} ({docs}): to fly it, run  {pip}"


def zoo_entry(name: str) -> dict:
    """The entry of zoo model ``name``, shipped or user-installed (:func:`edgeae.zoo.models`)."""
    known = zoo.models()
    if name not in known:
        raise NameNotFound(f"unknown zoo model {name!r}; zoo models: {', '.join(sorted(known))}")
    return known[name]


def model_path(spec: str | os.PathLike[str], want: str = "any", prefer: Sequence[str] = ()) -> Path:
    """An existing model file for ``spec`` (zoo name, ``zoo:NAME``, ``zoo:NAME/FILE`` or a path).

    ``want``: ``"any"`` (a zoo name gives its ``.pt`` checkpoint when PyTorch is installed, else its shipped
    artifact), ``"checkpoint"`` (the ``.pt``: training and export), ``"artifact"`` (a flight file: the runtime).
    ``prefer``: the artifact formats a zoo name takes first (:func:`zoo_artifact`).
    """
    if want not in ("any", "checkpoint", "artifact"):
        raise ValueError(f"want must be any, checkpoint or artifact, got {want!r}")
    text = os.fspath(spec)
    p = Path(text)
    if not text.startswith(ZOO_PREFIX) and p.is_file():
        return _check_kind(p, want, text)
    name = text[len(ZOO_PREFIX) :] if text.startswith(ZOO_PREFIX) else text
    if text.startswith(ZOO_PREFIX) and "/" in name:  # zoo:NAME/FILE: one shipped file
        shipped = ARTIFACTS_DIR / name
        if not shipped.is_file():
            folder = shipped.parent
            have = ", ".join(q.name for q in shipped_artifacts(folder.name)) or "none"
            raise NameNotFound(f"model {text}: no such shipped artifact (files of {folder.name}: {have})")
        return _check_kind(shipped, want, text)
    known = zoo.models()  # shipped and user-installed (--zoo-name) models
    if name in known:
        weights = zoo.weights_path(name)
        if want == "artifact":
            return zoo_artifact(name, prefer=prefer)
        if want == "checkpoint" or _installed("torch"):
            return zoo.resolve(name)  # clear error (with the reproducing command) when the weights are missing
        if shipped_artifacts(name):
            return zoo_artifact(name, prefer=prefer)
        raise NameNotFound(
            f"zoo model {name!r} is a PyTorch checkpoint ({weights.name}) and no flight artifact ships for it; "
            "'torch' is needed here but is not installed: run  pip install 'edgeae[train]'"
        )
    if not text.startswith(ZOO_PREFIX) and p.is_dir():  # it exists: "does not exist" would send users astray
        try:
            inside = sorted(q.name for q in p.iterdir() if q.suffix in MODEL_SUFFIXES)[:5]
        except OSError:  # an unreadable folder: the message still says what it is
            inside = []
        if (p / "best.pt").is_file() and (p / "config.json").is_file():  # a training run: its model is best.pt
            raise NameNotFound(f"model {text} is a training run's folder; its model is {p / 'best.pt'}")
        raise NameNotFound(
            f"model {text} is a folder, not a model file; give a .pt checkpoint or an .onnx / .ort / .tflite "
            f"artifact{' (in it: ' + ', '.join(inside) + ')' if inside else ''}, or a zoo model: "
            f"{', '.join(sorted(known))}"
        )
    if _looks_like_path(text) or text.startswith(ZOO_PREFIX):
        what = "zoo model" if text.startswith(ZOO_PREFIX) else "model file"
        raise NameNotFound(f"{what} {text} does not exist; zoo models: {', '.join(sorted(known))}")
    raise NameNotFound(
        f"model {text!r} is neither a file nor a zoo model; zoo models: {', '.join(sorted(known))} "
        "(or pass a .pt / .onnx / .ort / .tflite path)"
    )


def _check_kind(path: Path, want: str, spec: str) -> Path:
    if want == "artifact" and path.suffix not in ARTIFACT_SUFFIXES:
        if path.suffix == CHECKPOINT_SUFFIX:
            what = f"{path.name} is a PyTorch checkpoint: make an artifact from it with edgeae export {spec} --out DIR"
        elif path.suffix:
            what = f"{path.name} is a {path.suffix} file, not a model artifact"
        else:
            what = f"{path.name} has no artifact suffix (.onnx, .ort, .tflite)"
        raise NameNotFound(f"model {spec}: the flight runtime needs an .onnx, .ort or .tflite artifact; {what}")
    if want == "checkpoint" and path.suffix != CHECKPOINT_SUFFIX:
        raise NameNotFound(f"model {spec}: a .pt checkpoint (or a zoo name) is needed here, got {path.name}")
    return path


# ------------------------------------------------------------------------------------------------ presets
def presets(folder: Path) -> dict[str, Path]:
    """name -> TOML file of the presets in ``folder``."""
    return {p.stem: p for p in sorted(folder.glob("*.toml"))}


def preset_path(spec: str | os.PathLike[str], folder: Path, what: str) -> Path:
    """An existing file for ``spec``: a path, or the name of a preset in ``folder`` (``NAME`` or ``NAME.toml``)."""
    text = os.fspath(spec)
    p = Path(text)
    if p.is_file():
        return p
    known = presets(folder)
    if p.parent == Path(".") and p.suffix in ("", ".toml") and p.stem in known:
        return known[p.stem]
    raise NameNotFound(f"{what} {text} is neither a file nor a preset; presets: {', '.join(known) or 'none'}")


def link_path(spec: str | os.PathLike[str]) -> Path:
    """A link TOML file: a path, or a preset name from ``edgeae/ground/links`` (``edgeae links``)."""
    return preset_path(spec, LINKS_DIR, "link")


def preset_summary(path: Path) -> str:
    """The first comment lines of a preset file: what it is for, in the author's words."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("# ").strip())
    if not lines:
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError:
            return ""
        return str(doc.get("description", ""))
    return " ".join(lines)


__all__ = [
    "ARTIFACT_SUFFIXES",
    "INTERPRETER_EXTRA",
    "LINKS_DIR",
    "MODEL_SUFFIXES",
    "ZOO_PREFIX",
    "NameNotFound",
    "interpreter_missing",
    "link_path",
    "model_path",
    "preset_path",
    "preset_summary",
    "presets",
    "shipped_artifacts",
    "zoo_artifact",
]

"""The model zoo: small trained models shipped inside the package, each with the command that made it.

``ZOO`` is a plain dict (:mod:`edgeae.zoo.registry`); shipping a model is one entry there plus its files in
``weights/``: ``NAME.pt`` (a checkpoint from :func:`edgeae.checkpoint.save_checkpoint`) and ``NAME.json`` (the
validation metrics the training command wrote). A model installed with ``--zoo-name NAME`` under a name ``ZOO``
does not register is *user-installed*: :func:`install` also writes ``NAME.entry.json`` (its entry, from the
checkpoint's metadata) and every lookup here (:func:`models`) takes it by name like a shipped one, no source edit
needed. Numpy-free and torch-free: listing the zoo imports nothing heavy.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from edgeae.zoo.registry import ZOO as ZOO

log = logging.getLogger(__name__)

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
ARTIFACTS_DIR = Path(__file__).resolve().parent / "artifacts"  # NAME/: the shipped flight artifacts of zoo model NAME
ARTIFACT_SUFFIXES = (".onnx", ".ort", ".tflite")
# in the name of a file ``edgeae export`` rejected (``.FAILED.``) or a re-export moved aside (``.STALE.``): never a
# shipped artifact (firmware_sim.guard's FAILED_MARK / STALE_MARK, repeated here so that listing the zoo imports no
# numpy; tests/test_resolve_s33.py checks they agree)
REJECTED_MARKS = (".FAILED.", ".STALE.")


def is_rejected(filename: str) -> bool:
    """Whether ``filename`` is one ``edgeae export`` rejected or moved aside (``NAME.int8.FAILED.onnx``,
    ``NAME.int8.STALE.2.tflite``): the flight runtime refuses it, so no lookup may pick it."""
    return any(mark in filename for mark in REJECTED_MARKS)


class UnknownModelError(KeyError):
    """A zoo name that is not registered, or whose weights file is missing."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


def _entry(name: str) -> dict[str, Any]:
    known = models()
    if name not in known:
        raise UnknownModelError(f"unknown zoo model {name!r}; known models: {', '.join(sorted(known))}")
    return known[name]


# a zoo name becomes a file name in WEIGHTS_DIR: lower-case letters, digits, '-' and '_', no separators or dots
ZOO_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
ENTRY_SUFFIX = ".entry.json"  # WEIGHTS_DIR/NAME.entry.json: the entry of a user-installed model


def user_models() -> dict[str, dict[str, Any]]:
    """The user-installed models: each ``NAME.pt`` in :data:`WEIGHTS_DIR` whose NAME ``ZOO`` does not register,
    with the entry :func:`install` recorded in ``NAME.entry.json`` (kind and channels ``"?"`` where there is none:
    installed before entries were recorded) and ``user_installed`` True."""
    out: dict[str, dict[str, Any]] = {}
    if not WEIGHTS_DIR.is_dir():
        return out
    for pt in sorted(WEIGHTS_DIR.glob("*.pt")):
        name = pt.stem
        if name in ZOO or not ZOO_NAME.fullmatch(name):
            continue
        entry: dict[str, Any] = {
            "kind": "?",
            "channels": "?",
            "training_data": "not recorded",
            "description": "user-installed before its entry was recorded: install it again with --zoo-name and "
            "--force to record its kind and channels",
            "command": "not recorded",
        }
        try:
            recorded = json.loads((WEIGHTS_DIR / f"{name}{ENTRY_SUFFIX}").read_text())
        except (OSError, ValueError):
            recorded = None
        if isinstance(recorded, dict):
            entry.update(recorded)
        out[name] = {**entry, "file": pt.name, "user_installed": True}
    return out


def models() -> dict[str, dict[str, Any]]:
    """Every model a name resolves to: the registered ones (``ZOO``) and the user-installed ones
    (:func:`user_models`)."""
    return {**ZOO, **user_models()}


# architecture keys that must match a registered model's to replace it (absent keys: the builders' defaults);
# the gate's tau, smooth fill and the VAE's lambda are tuned after training and may differ
ARCHITECTURE_KEYS: dict[str, dict[str, Any]] = {
    "cae": {"variant": "seed", "widths": None, "tile": 128},
    "vae": {"widths": None, "latent": None, "patch": 64},
}


class ZooInstallError(ValueError):
    """A model may not be installed under that zoo name (unsafe name, incomplete run, another model's name)."""


def check_name(name: str) -> str:
    """``name`` when it is a safe zoo name (:data:`ZOO_NAME`), else a :class:`ZooInstallError`."""
    if not isinstance(name, str) or not ZOO_NAME.fullmatch(name):
        raise ZooInstallError(
            f"--zoo-name {name!r}: a zoo name is 1-64 lower-case letters, digits, '-' and '_' (no '/', '.' or '..'), "
            "e.g. rover-rgb-mymodel"
        )
    return name


def _arch(kind: str, architecture: dict[str, Any]) -> dict[str, Any]:
    keys = ARCHITECTURE_KEYS.get(kind, {})
    out = {}
    for k, default in keys.items():
        v = architecture.get(k, default)
        out[k] = list(v) if isinstance(v, (list, tuple)) else v
    return out


def check_install(
    name: str,
    kind: str,
    channels: int | None = None,
    architecture: dict[str, Any] | None = None,
    parameters: int | None = None,
    force: bool = False,
    run: Path | str | None = None,
) -> None:
    """Refuse, before any work, to install a model as zoo model ``name`` when the name is unsafe or is a
    registered model (``ZOO``) of another kind, channel count, parameter count or architecture (that of the
    registered model's shipped weights, where present). ``force`` replaces a registered model of another
    parameter count or architecture, never one of another kind or channel count: ``ZOO`` states those, and
    ``edgeae zoo``, the commands that pick a model by kind and the shipped artifacts would contradict the file.
    A user-installed model under ``name`` is replaced only by the run folder that made it (``run``; None: not
    checked here) or with ``force`` (:func:`check_user_model`)."""
    check_name(name)
    if name not in ZOO:
        if run is not None:
            check_user_model(name, run, force)
        return
    entry = ZOO[name]
    fixed = []
    if kind != entry["kind"]:
        fixed.append(f"kind {kind} (the zoo's: {entry['kind']})")
    if channels is not None and int(channels) != int(entry["channels"]):
        fixed.append(f"{channels} channel(s) (the zoo's: {entry['channels']})")
    if fixed:
        raise ZooInstallError(
            f"--zoo-name {name}: refusing to replace the shipped zoo model {name!r} with a model of "
            f"{'; '.join(fixed)}; --force does not change a registered model's kind or channels: choose another name"
        )
    if force:
        return
    diffs = []
    if parameters is not None and "parameters" in entry and int(parameters) != int(entry["parameters"]):
        diffs.append(f"{parameters:,} parameters (the zoo's: {entry['parameters']:,})")
    shipped = _shipped_architecture(name) if architecture is not None and kind == entry["kind"] else None
    if shipped is not None and architecture is not None:
        mine, theirs = _arch(kind, architecture), _arch(kind, shipped)
        diffs += [f"{k} {mine[k]!r} (the zoo's: {theirs[k]!r})" for k in mine if mine[k] != theirs[k]]
    if diffs:
        raise ZooInstallError(
            f"--zoo-name {name}: refusing to replace the shipped zoo model {name!r} with a model of {'; '.join(diffs)}"
            "; choose another name, or pass --force to replace it anyway"
        )


def _made_by(entry: dict[str, Any]) -> str | None:
    """The run folder that made a user-installed model (its entry's ``run``; older entries name its checkpoint in
    the description), None when the entry does not say."""
    if isinstance(entry.get("run"), str):
        return str(entry["run"])
    m = re.search(r" from (.+)$", str(entry.get("description", "")))
    return str(Path(m.group(1)).parent) if m else None


def check_user_model(name: str, run: Path | str, force: bool = False) -> None:
    """Refuse (:class:`ZooInstallError`) to replace the user-installed zoo model ``name`` with a model of another
    run folder than ``run``, the one that made it, unless ``force``: a user's model is not replaced by chance."""
    if force or name in ZOO or not (WEIGHTS_DIR / f"{name}.pt").is_file():
        return
    made = _made_by(user_models().get(name, {}))
    if made is not None and Path(made) == Path(run).resolve():
        return
    by = f"run {made}" if made else "a run it does not record"
    raise ZooInstallError(
        f"--zoo-name {name}: refusing to replace the user-installed zoo model {name!r} (made by {by}) with a model of "
        f"run {Path(run).resolve()}; choose another name, or pass --zoo-name {name} --force to replace it"
    )


def _shipped_architecture(name: str) -> dict[str, Any] | None:
    """The architecture in the metadata of zoo model ``name``'s installed weights, None when there are none."""
    path = WEIGHTS_DIR / _entry(name)["file"]
    if not path.is_file():
        return None
    from edgeae.checkpoint import load_checkpoint

    return dict(load_checkpoint(path).metadata.architecture)


def run_complete(metrics: dict[str, Any]) -> bool:
    """Whether ``metrics`` (a training run's ``metrics.json``) are those of a complete run: final metrics
    (``epochs_run``) that do not say it stopped (``complete`` false or a ``stopped`` reason)."""
    return "epochs_run" in metrics and metrics.get("complete", True) is True and not metrics.get("stopped")


def install(name: str, checkpoint: Path, metrics: Path, force: bool = False, run: Path | str | None = None) -> Path:
    """Copy a complete training run's ``best.pt`` and ``metrics.json`` into the zoo as ``NAME.pt`` / ``NAME.json``;
    a name ``ZOO`` does not register also gets ``NAME.entry.json`` (:func:`user_entry`): it resolves by name.
    ``run``: the training run folder that made the model (default: the checkpoint's folder; the gate passes the
    run of the checkpoint it gated), recorded in the entry and checked by :func:`check_user_model`.

    Refused (:class:`ZooInstallError`, nothing written) for an unsafe name, a run that did not complete, a
    registered name whose model differs (:func:`check_install`; ``force`` replaces it anyway) and a user-installed
    model of another run folder (:func:`check_user_model`; ``force`` replaces it). The zoo's folder is held
    while the files are written (:func:`edgeae.folder_lock.hold`): a second install at the same time is refused
    with :class:`~edgeae.folder_lock.FolderBusy`."""
    import shutil

    from edgeae.atomic import atomic_path

    check_name(name)
    try:
        card = json.loads(Path(metrics).read_text())
    except (OSError, ValueError) as exc:
        raise ZooInstallError(f"--zoo-name {name}: cannot read the run's metrics {metrics} ({exc})") from None
    if not isinstance(card, dict) or not run_complete(card):
        stop = card.get("stopped") if isinstance(card, dict) else None
        raise ZooInstallError(
            f"--zoo-name {name}: {checkpoint} is not from a complete run ({stop or 'no final metrics'}); finish it "
            "with --resume first"
        )
    from edgeae.checkpoint import load_checkpoint
    from edgeae.folder_lock import hold

    ck = load_checkpoint(checkpoint)
    params = sum(int(p.numel()) for p in ck.model.parameters())
    run = Path(checkpoint).resolve().parent if run is None else Path(run).resolve()
    check_install(name, ck.metadata.kind, ck.metadata.channels, dict(ck.metadata.architecture), params, force, run)
    WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    target = WEIGHTS_DIR / f"{name}.pt"
    if target.resolve().parent != WEIGHTS_DIR.resolve():  # the pattern allows no separator; never write elsewhere
        raise ZooInstallError(f"--zoo-name {name!r}: {target} is outside {WEIGHTS_DIR}")
    with hold(WEIGHTS_DIR, "zoo install"):  # two installs at once: the second is refused, no mixed .pt/.json
        check_user_model(name, run, force)  # again, held: another install may have come first
        for src, dst in ((checkpoint, target), (metrics, target.with_suffix(".json"))):
            with atomic_path(dst) as tmp:
                shutil.copyfile(src, tmp)
        if name not in ZOO:  # user-installed: its entry, so that every MODEL argument takes the name
            entry = user_entry(ck.metadata, params, card, Path(checkpoint), run)
            with atomic_path(WEIGHTS_DIR / f"{name}{ENTRY_SUFFIX}") as tmp:
                Path(tmp).write_text(json.dumps(entry, indent=2, sort_keys=True) + "\n")
    stale = stale_artifacts_warning(name)
    if stale:
        log.warning(stale)
    return target


def user_entry(
    metadata: Any, parameters: int, card: dict[str, Any], checkpoint: Path, run: Path | str | None = None
) -> dict[str, Any]:
    """The zoo entry of a user-installed model, from its checkpoint's ``metadata`` (kind, channels, training data)
    and its run's metrics ``card`` (the command, where recorded); ``run``: the training run folder that made it
    (default: the checkpoint's folder)."""
    extra = dict(metadata.extra)
    counts = []
    for key in ("train_files", "val_files"):
        value = extra.get(key)
        if isinstance(value, (int, list)):
            counts.append(f"{len(value) if isinstance(value, list) else value} {key.replace('_', ' ')}")
    data = str(extra.get("data", "not recorded"))
    run = Path(checkpoint).resolve().parent if run is None else Path(run).resolve()
    arch = dict(metadata.architecture)
    shape = ", ".join(f"{k} {arch[k]}" for k in ("variant", "widths", "latent") if k in arch)
    return {
        "kind": metadata.kind,
        "channels": int(metadata.channels),
        "parameters": int(parameters),
        "training_data": f"{data} ({', '.join(counts)})" if counts else data,
        "training_data_hash": metadata.training_data_hash,
        "description": f"user-installed {metadata.kind} ({shape}) from {Path(checkpoint).resolve()}",
        "run": str(run),  # the run folder that made it: only it replaces the model without --force
        "command": str(card.get("command") or f"not recorded; the run's settings: {run / 'config.json'}"),
    }


def installed_message(name: str, target: Path) -> str:
    """The line a command prints after installing zoo model ``name`` at ``target``."""
    line = f"zoo: wrote {target} and .json"
    if name not in ZOO:
        line += f"; user-installed: every MODEL argument takes {name} (edgeae zoo lists it)"
    return line


def stale_artifacts_warning(name: str) -> str | None:
    """What to say after zoo model ``name``'s weights were replaced while flight artifacts made from the old
    weights ship in ``ARTIFACTS_DIR/NAME`` (they now score differently from ``NAME.pt``); None when none ship."""
    folder = ARTIFACTS_DIR / name
    found = sorted(p.name for p in folder.glob("*") if p.suffix in ARTIFACT_SUFFIXES) if folder.is_dir() else []
    files = [f for f in found if not is_rejected(f)]
    if not files:
        return None
    tflite = any(f.endswith(".tflite") for f in files)
    formats = "" if tflite else " --format onnx --precision all"  # no TFLite
    # the files the export accepted, by their exact names: *.int8.* would also copy NAME.int8.STALE.onnx and the like
    copy = " ".join(f"runs/export/{name}/*.int8.{ext}" for ext in ("onnx", "tflite") if ext == "onnx" or tflite)
    return (
        f"zoo model {name!r} was replaced: its shipped artifacts in {folder} ({', '.join(files)}) were exported from "
        f"the old weights and are now stale; re-export them: edgeae export {name}{formats} --no-latency --out "
        f"runs/export/{name} && cp {copy} runs/export/{name}/parity.* {folder}/ (docs/export.md, Zoo artifacts)"
    )


def resolve(name: str) -> Path:
    """Path of the weights of zoo model ``name`` (clear error for unknown names or missing files)."""
    entry = _entry(name)
    path = WEIGHTS_DIR / entry["file"]
    if not path.is_file():
        raise FileNotFoundError(
            f"zoo model {name!r} is registered but its weights {path} are missing; "
            f"reproduce them with: {entry['command']}"
        )
    return path


def metrics(name: str) -> dict[str, Any]:
    """The validation metrics written beside the weights (``NAME.json``), or {} when absent."""
    entry = _entry(name)
    path = WEIGHTS_DIR / Path(entry["file"]).with_suffix(".json").name
    if not path.is_file():
        return {}
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def list_models() -> list[dict[str, Any]]:
    """One dict per zoo model, registered then user-installed: the entry plus ``name``, ``available``,
    ``metrics`` and ``user_installed``."""
    out = []
    for name, entry in models().items():
        available = (WEIGHTS_DIR / entry["file"]).is_file()
        out.append({"name": name, "user_installed": False, **entry, "available": available, "metrics": metrics(name)})
    return out

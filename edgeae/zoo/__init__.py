"""The model zoo: small trained models shipped inside the package, each with the command that made it.

``ZOO`` is a plain dict (:mod:`edgeae.zoo.registry`); shipping a model is one entry there plus its files in
``weights/``: ``NAME.pt`` (a checkpoint from :func:`edgeae.checkpoint.save_checkpoint`) and ``NAME.json`` (the
validation metrics the training command wrote; the edgeae wheel carries the metrics and leaves the checkpoints to
the ``edgeae-weights`` distribution, :mod:`edgeae.zoo.checkpoints`). A model installed with ``--zoo-name NAME``
under a name ``ZOO`` does not register is *user-installed*: :func:`install` writes it into the user zoo folder
(:func:`edgeae.zoo.user.user_dir`: ``$EDGEAE_ZOO``, else ``$XDG_DATA_HOME/edgeae/zoo`` or
``~/.local/share/edgeae/zoo``), never into the installed package, with ``NAME.entry.json`` (its entry, from the
checkpoint's metadata); every lookup here (:func:`models`) takes it by name after the shipped ones, no source edit
needed. Numpy-free and torch-free: listing the zoo imports nothing heavy.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from edgeae.zoo.checkpoints import INSTALL_HINT
from edgeae.zoo.checkpoints import WEIGHTS_DISTRIBUTION as WEIGHTS_DISTRIBUTION
from edgeae.zoo.checkpoints import weights_package_dir as weights_package_dir
from edgeae.zoo.registry import ZOO as ZOO
from edgeae.zoo.user import ENTRY_SUFFIX as ENTRY_SUFFIX
from edgeae.zoo.user import ENV_VAR as ENV_VAR
from edgeae.zoo.user import user_dir as user_dir
from edgeae.zoo.user import user_entry as user_entry

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
        try:
            user_dir()
            why = ""
        except RuntimeError as exc:  # a relative $EDGEAE_ZOO, no home folder: user models were not looked for
            why = f"; the user zoo was not read: {exc}"
        raise UnknownModelError(f"unknown zoo model {name!r}; known models: {', '.join(sorted(known))}{why}")
    return known[name]


# a zoo name becomes a file name in a zoo folder: lower-case letters, digits, '-' and '_', no separators or dots
ZOO_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


def user_models() -> dict[str, dict[str, Any]]:
    """The user-installed models: each ``NAME.pt`` whose NAME ``ZOO`` does not register, in :data:`WEIGHTS_DIR`
    (installed there by a checkout before session 37) and then in the user zoo folder (:func:`user_dir`), which
    wins for a name in both; with the entry :func:`install` recorded in ``NAME.entry.json`` (kind and channels
    ``"?"`` where there is none), ``file`` the absolute path of ``NAME.pt`` and ``user_installed`` True
    (:func:`edgeae.zoo.user.scan`)."""
    from edgeae.zoo.user import scan

    folders = [WEIGHTS_DIR]
    with contextlib.suppress(RuntimeError):  # no user folder to read (no home): the checkout's own user models only
        folders.append(user_dir())
    return scan(folders, ZOO, ZOO_NAME)


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


class ZooFolderError(ZooInstallError):
    """The folder a zoo install writes (:func:`install_folder`) cannot be written; the message names it and says
    what to do instead."""


def weights_path(name: str) -> Path:
    """Where the weights of zoo model ``name`` are (shipped: in :data:`WEIGHTS_DIR`, else in the installed
    ``edgeae-weights`` distribution, :func:`weights_package_dir`; user-installed: the ``.pt`` its entry names),
    whether or not the file exists (:data:`WEIGHTS_DIR`'s path when neither has it)."""
    return _checkpoint(name, _entry(name)["file"])


def _checkpoint(name: str, file: str) -> Path:
    """:func:`weights_path` of model ``name`` whose entry names ``file``."""
    path = WEIGHTS_DIR / file  # a user model's file is absolute: the join gives it unchanged
    if name in ZOO and not path.is_file():
        other = weights_package_dir()
        if other is not None and (other / file).is_file():
            return other / file
    return path


def install_folder(name: str) -> Path:
    """The folder an install under zoo name ``name`` writes: :data:`WEIGHTS_DIR` for a name ``ZOO`` registers
    (it replaces shipped weights: a source checkout's job), else the user zoo folder (:func:`user_dir`)."""
    return WEIGHTS_DIR if name in ZOO else user_dir()


def check_folder(name: str, checkpoint: Path | str | None = None) -> Path:
    """The folder an install under ``name`` writes (:func:`install_folder`), or a :class:`ZooFolderError` when it
    cannot be written (one line naming it and what to do: ``$EDGEAE_ZOO``, the checkpoint itself as MODEL)."""
    from edgeae.zoo.user import folder_message, unwritable

    try:
        folder = install_folder(name)
    except RuntimeError as exc:  # no user zoo folder at all
        raise ZooFolderError(f"--zoo-name {name}: {exc}") from None
    reason = unwritable(folder)
    if reason is not None:
        raise ZooFolderError(folder_message(name, folder, reason, name in ZOO, checkpoint))
    return folder


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
    checked here) or with ``force`` (:func:`check_user_model`). Last, the folder the install writes must be
    writable (:func:`check_folder`): checked before any training, as the rest."""
    check_name(name)
    if name not in ZOO:
        if run is not None:
            check_user_model(name, run, force)
        check_folder(name, Path(run) / "best.pt" if run is not None else None)
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
    if not force:
        _refuse_another_model(name, kind, architecture, parameters)
    check_folder(name, Path(run) / "best.pt" if run is not None else None)


def _refuse_another_model(name: str, kind: str, architecture: dict[str, Any] | None, parameters: int | None) -> None:
    """:func:`check_install` of registered model ``name`` without ``force``: another parameter count or
    architecture than the entry's and its shipped weights' is refused."""
    entry = ZOO[name]
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
    entry = user_models().get(name) if not force and name not in ZOO else None
    if entry is None or not Path(entry["file"]).is_file():
        return
    made = _made_by(entry)
    if made is not None and Path(made) == Path(run).resolve():
        return
    by = f"run {made}" if made else "a run it does not record"
    raise ZooInstallError(
        f"--zoo-name {name}: refusing to replace the user-installed zoo model {name!r} (made by {by}) with a model of "
        f"run {Path(run).resolve()}; choose another name, or pass --zoo-name {name} --force to replace it"
    )


def _shipped_architecture(name: str) -> dict[str, Any] | None:
    """The architecture in the metadata of zoo model ``name``'s installed weights, None when there are none."""
    path = weights_path(name)
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
    model of another run folder (:func:`check_user_model`; ``force`` replaces it); a :class:`ZooFolderError` when
    the folder it writes (:func:`install_folder`: the user zoo for a new name) cannot be written. That folder is
    held while the files are written (:func:`edgeae.folder_lock.hold`): a second install at the same time is
    refused with :class:`~edgeae.folder_lock.FolderBusy`."""
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
    from edgeae.folder_lock import FolderBusy

    ck = load_checkpoint(checkpoint)
    params = sum(int(p.numel()) for p in ck.model.parameters())
    run = Path(checkpoint).resolve().parent if run is None else Path(run).resolve()
    folder = check_folder(name, checkpoint)
    check_install(name, ck.metadata.kind, ck.metadata.channels, dict(ck.metadata.architecture), params, force, run)
    target = folder / f"{name}.pt"
    try:
        _write(name, folder, (checkpoint, metrics), force, run, (ck.metadata, params, card))
    except FolderBusy:
        raise
    except OSError as exc:  # the folder, its lock or a file in it: one line naming the folder, not a bare errno
        where = Path(os.fsdecode(exc.filename)) if exc.filename is not None else None
        if where is None or not (where == folder or where in folder.parents or where.parent == folder):
            raise
        from edgeae.zoo.user import folder_message, os_reason

        raise ZooFolderError(folder_message(name, folder, os_reason(exc), name in ZOO, checkpoint)) from None
    stale = stale_artifacts_warning(name)
    if stale:
        log.warning(stale)
    return target


def _write(
    name: str, folder: Path, files: tuple[Path, Path], force: bool, run: Path, made: tuple[Any, int, dict[str, Any]]
) -> None:
    """:func:`install`'s writes, the zoo ``folder`` held: ``NAME.pt`` and ``NAME.json`` from ``files`` (checkpoint,
    metrics), and for a user model ``NAME.entry.json`` from ``made`` (metadata, parameter count, metrics card)."""
    import shutil

    from edgeae.atomic import atomic_path
    from edgeae.folder_lock import hold

    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}.pt"
    if target.resolve().parent != folder.resolve():  # the pattern allows no separator; never write elsewhere
        raise ZooInstallError(f"--zoo-name {name!r}: {target} is outside {folder}")
    with hold(folder, "zoo install"):  # two installs at once: the second is refused, no mixed .pt/.json
        check_user_model(name, run, force)  # again, held: another install may have come first
        for src, dst in ((files[0], target), (files[1], target.with_suffix(".json"))):
            with atomic_path(dst) as tmp:
                shutil.copyfile(src, tmp)
        if name not in ZOO:  # user-installed: its entry, so that every MODEL argument takes the name
            entry = user_entry(made[0], made[1], made[2], Path(files[0]), run)
            with atomic_path(folder / f"{name}{ENTRY_SUFFIX}") as tmp:
                Path(tmp).write_text(json.dumps(entry, indent=2, sort_keys=True) + "\n")


def installed_message(name: str, target: Path) -> str:
    """The line a command prints after installing zoo model ``name`` at ``target``."""
    line = f"zoo: wrote {target} and .json"
    if name not in ZOO:
        line += f"; user-installed: every MODEL argument takes {name} (edgeae zoo lists it; the user zoo: ${ENV_VAR})"
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
    from edgeae._optional import source_ref

    return (
        f"zoo model {name!r} was replaced: its shipped artifacts in {folder} ({', '.join(files)}) were exported from "
        f"the old weights and are now stale; re-export them: edgeae export {name}{formats} --no-latency --out "
        f"runs/export/{name} && cp {copy} runs/export/{name}/parity.* {folder}/ "
        f"({source_ref('docs/export.md', 'Zoo artifacts')})"
    )


def resolve(name: str) -> Path:
    """Path of the weights of zoo model ``name`` (clear error for unknown names or missing files)."""
    entry = _entry(name)
    path = weights_path(name)
    if not path.is_file():
        # a wheel install: the checkpoints are their own package
        where = f" ({INSTALL_HINT})" if name in ZOO and weights_package_dir() is None else ""
        raise FileNotFoundError(
            f"zoo model {name!r} is registered but its weights {path} are missing{where}; "
            f"reproduce them with: {entry['command']}"
        )
    return path


def metrics(name: str) -> dict[str, Any]:
    """The validation metrics (``NAME.json``, in :data:`WEIGHTS_DIR` for a registered model), or {} when absent."""
    path = (WEIGHTS_DIR / _entry(name)["file"]).with_suffix(".json")
    if not path.is_file():
        return {}
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def list_models() -> list[dict[str, Any]]:
    """One dict per zoo model, registered then user-installed: the entry plus ``name``, ``available``,
    ``metrics`` and ``user_installed`` (a user model's ``file`` is the absolute path of its ``.pt``, ``folder``
    its folder)."""
    out = []
    for name, entry in models().items():
        available = _checkpoint(name, entry["file"]).is_file()
        out.append({"name": name, "user_installed": False, **entry, "available": available, "metrics": metrics(name)})
    return out

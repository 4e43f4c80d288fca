"""What an exported artifact records of what made it, so that the file alone says it (audit a3 of session 37: a
``.tflite`` on a board said ``edgeae_version 0.1.0``, the same through 37 sessions of changed behaviour, and nothing
of its training or export command). Each artifact's metadata ``extra`` gets:

- ``training_command``, ``training_resume_commands`` and ``training_hyper_parameters``: the command that started
  the training run, those that resumed it (absent when none did) and the settings that shape what it learned (its
  config without those a resume may change: threads, device, paths, time budget; its last ``--epochs``, the epochs
  it trained in all and the channels it trained on), from the checkpoint's metrics (:func:`training_facts`; a
  checkpoint from before a trainer recorded them records what it has);
- ``export_command`` (the command line, where the CLI ran it) and ``export_options`` (:func:`export_facts`);
- ``toolchain``: the versions of the packages that built and checked this format (:func:`toolchain`);
- ``code_revision``: ``git describe --always --dirty`` of the edgeae checkout that ran, else the installed package's
  version (:func:`code_revision`).

Artifacts written before carry none of these and load as before: nothing reads them back but people and tools.
"""

from __future__ import annotations

import functools
import subprocess
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from edgeae.train.run_record import recorded_resume_commands

# the packages each format's files are built and checked with (onnxruntime: int8 quantisation, ORT conversion and
# the parity check; litert-torch converts to TFLite, ai-edge-litert loads and checks it)
TOOLCHAIN: dict[str, tuple[str, ...]] = {
    "onnx": ("torch", "onnx", "onnxruntime"),
    "ort": ("torch", "onnx", "onnxruntime"),
    "tflite": ("torch", "litert-torch", "ai-edge-litert"),
}


def _version(package: str) -> str | None:
    try:
        return importlib_metadata.version(package)
    except importlib_metadata.PackageNotFoundError:
        return None


def toolchain(fmt: str) -> dict[str, str | None]:
    """Python's version and those of the packages that build and check a ``fmt`` artifact (None: not installed)."""
    import platform

    return {"python": platform.python_version(), **{p: _version(p) for p in TOOLCHAIN.get(fmt, ())}}


@functools.lru_cache(maxsize=1)
def code_revision() -> str:
    """``git describe --always --dirty`` of the checkout edgeae runs from (``ad6e76d-dirty``: uncommitted changes),
    else ``edgeae VERSION`` (an installed package, or git not there or not answering within 10 s). Takes no lock
    (``--no-optional-locks``: ``--dirty`` would refresh the index under ``.git/index.lock``, failing a concurrent
    ``git commit`` in the same checkout)."""
    from edgeae import __version__

    root = Path(__file__).resolve().parents[1]
    if (root / ".git").exists():
        try:
            done = subprocess.run(
                ["git", "--no-optional-locks", "-C", str(root), "describe", "--always", "--dirty"],
                capture_output=True, text=True, timeout=10, check=False,
            )  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            done = None
        if done is not None and done.returncode == 0 and done.stdout.strip():
            return done.stdout.strip()
    return f"edgeae {__version__}"


def training_facts(metrics: dict[str, Any]) -> dict[str, Any]:
    """``training_command``, ``training_resume_commands`` and ``training_hyper_parameters`` of a checkpoint's
    ``metrics``, those it records. The resume commands are the metrics' ``resume_commands``, else (a run trained
    before session 38) those its ``segments`` record after the first; the hyper-parameters get the metrics'
    ``channels`` where they say None (the images decided it) and ``epochs_trained`` from ``epochs_run`` where they
    lack it: recorded values only, nothing made up."""
    out: dict[str, Any] = {}
    if isinstance(metrics.get("command"), str):
        out["training_command"] = metrics["command"]
    resumes = recorded_resume_commands(metrics)
    if resumes:
        out["training_resume_commands"] = resumes
    hyper = metrics.get("hyper_parameters")
    if isinstance(hyper, dict):
        hyper = dict(hyper)
        if hyper.get("channels") is None and isinstance(metrics.get("channels"), int):
            hyper["channels"] = metrics["channels"]
        if "epochs_trained" not in hyper and isinstance(metrics.get("epochs_run"), int):
            hyper["epochs_trained"] = metrics["epochs_run"]
        out["training_hyper_parameters"] = hyper
    return out


def export_facts(config: Any) -> dict[str, Any]:
    """``export_command`` (where given) and the ``export_options`` of an :class:`~edgeae.export.api.ExportConfig`
    that decide the artifacts' contents (not the latency measurements')."""
    options = {
        "formats": list(config.formats),
        "precisions": list(config.precisions),
        "kinds": list(config.kinds) if config.kinds else None,
        "calib": str(config.calib) if config.calib is not None else None,
        "test": str(config.test) if config.test is not None else None,
        "n_calib": config.n_calib,
        "n_test": config.n_test,
        "seed": config.seed,
        "calib_tail": config.calib_tail,
        "reduce_range": config.reduce_range,
        "vae_form": config.vae_form,
    }
    return {**({"export_command": config.command} if config.command else {}), "export_options": options}

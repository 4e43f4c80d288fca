"""PyTorch checkpoints that carry their own metadata (architecture, normalisation, mask, data hash, version).

A checkpoint is a ``torch.save`` dict::

    {"edgeae": <ModelMetadata JSON>, "state_dict": {...}, "history": [...], "metrics": {...}}

``load_checkpoint`` rebuilds the right ``nn.Module`` from the metadata alone.
"""

from __future__ import annotations

import importlib
import io
import os
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeae._optional import require
from edgeae.atomic import atomic_path
from edgeae.metadata import METADATA_KEY, MetadataError, ModelMetadata

# metadata.kind -> "module:function" that builds the nn.Module from metadata.architecture
BUILDERS: dict[str, str] = {
    "cae": "edgeae.models.cae:build_from_architecture",
    "vae": "edgeae.models.vae:build_from_architecture",
}


@dataclass
class Checkpoint:
    model: Any  # torch.nn.Module, in eval mode
    metadata: ModelMetadata
    metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    path: Path | None = None


def save_checkpoint(
    path: str | os.PathLike[str],
    model: Any,
    metadata: ModelMetadata,
    metrics: dict[str, Any] | None = None,
    history: list[dict[str, Any]] | None = None,
) -> Path:
    """Write a checkpoint atomically (:func:`edgeae.atomic.atomic_path`: complete or not at all, no temporary
    file left behind)."""
    torch = require("torch")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    blob = {
        METADATA_KEY: metadata.to_json(),
        "state_dict": state,
        "metrics": metrics or {},
        "history": history or [],
    }
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)
    return path


def build_model(metadata: ModelMetadata) -> Any:
    """Instantiate the (untrained) module that ``metadata`` describes."""
    target = BUILDERS.get(metadata.kind)
    if target is None:
        raise MetadataError(f"no PyTorch builder for model kind {metadata.kind!r}")
    module_name, func = target.split(":")
    return getattr(importlib.import_module(module_name), func)(metadata.architecture)


def _refuse_nonfinite(path: Path, state: Any, torch: Any) -> None:
    """MetadataError naming the first weight tensor holding NaN or ±inf: such a model scores every patch NaN and
    reconstructs black, and its export fails only after minutes of conversion."""
    if not isinstance(state, dict):
        return  # load_state_dict names what is wrong with it
    for name, t in state.items():
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise MetadataError(
                f"{path}: weight tensor {name!r} holds {bad} non-finite value(s) (NaN or ±inf) of {t.numel()}: the "
                "training diverged or the file was damaged; use an earlier checkpoint or retrain"
            )


def _first_sentence(text: str, limit: int = 160) -> str:
    """The first sentence of the first line of ``text``, cut at a word (with "…") past ``limit`` characters."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    line = line.split(". ")[0].rstrip(".")
    if len(line) > limit:
        line = line[:limit].rsplit(" ", 1)[0] + "…"
    return line


def _zip_directory_readable(path: str | os.PathLike[str]) -> bool:
    """Whether the zip archive ``path`` has a directory that lists its records (a cut-short file has none)."""
    try:
        with zipfile.ZipFile(path) as archive:
            archive.infolist()
    except (OSError, zipfile.BadZipFile, EOFError, ValueError):
        return False
    return True


def load_error(path: str | os.PathLike[str], exc: BaseException, head: bytes) -> str:
    """One line saying why ``torch.load(..., weights_only=True)`` could not read ``path`` (whose first bytes are
    ``head``), for an ``exc`` it raised: a truncated or damaged file, not a PyTorch file, one that holds code."""
    first = _first_sentence(str(exc))
    if not head.startswith((b"PK\x03\x04", b"\x80")):  # torch.save writes a zip archive (before torch 1.6 a
        # pickle): torch's error on other bytes (KeyError: 174812789) names nothing a user can act on
        return (
            f"{path}: not a readable edgeae checkpoint: not a PyTorch file at all (torch.save writes a zip archive; "
            f"this one starts {head[:4]!r})"
        )
    if "PytorchStreamReader failed" in first:  # a zip cut short (a kill or full disk mid-copy) or damaged
        reason = first.split("PytorchStreamReader failed", 1)[1].strip() or "unreadable zip archive"
        return f"{path} is not a complete checkpoint (truncated or damaged: {reason})"
    if head.startswith(b"PK\x03\x04") and not _zip_directory_readable(path):  # cut short elsewhere: torch says
        # "negative seek value -1848" or the like
        return f"{path} is not a complete checkpoint (truncated or damaged: its zip directory cannot be read; {first})"
    if "weights only load failed" in first.lower():  # the rest of torch's message advises weights_only=False,
        # which would run any pickled code in the file (edgeae never loads a checkpoint that way)
        first = "not a PyTorch weights file, or one that holds code; edgeae loads weights only"
    return f"{path}: not a readable edgeae checkpoint ({type(exc).__name__}: {first})"


def damaged_record(source: str | os.PathLike[str] | io.BytesIO) -> str | None:
    """The first record of the zip archive ``source`` (a ``torch.save`` file) whose bytes fail its CRC-32 or whose
    header does not match the archive's directory, with why (``"its record best/data/3 fails its CRC-32 check"``); None
    when every record is intact, when the file was saved without CRC-32s (``torch.serialization.set_crc32_options
    (False)``: every stored CRC is 0), or when ``source`` is no zip archive or a cut-short one (``torch.load`` then
    says so). ``torch.load`` never checks these CRCs: a byte flipped on disk or in a copy loads as a changed weight.
    Reads the file once, a MiB at a time (memory bounded by that, time by one read of the file)."""
    try:
        with zipfile.ZipFile(source) as archive:
            infos = archive.infolist()
            if all(i.CRC == 0 for i in infos if i.file_size):  # saved with torch's set_crc32_options(False): no
                return None  # CRC-32 to check (torch.load reads such a file); one flipped byte cannot zero them all
            for info in infos:
                try:
                    with archive.open(info) as f:
                        while f.read(1 << 20):
                            pass
                except zipfile.BadZipFile as exc:
                    why = "fails its CRC-32 check" if "CRC" in str(exc) else f"has a damaged header ({exc})"
                    return f"its record {info.filename} {why}"
                except (EOFError, zlib.error) as exc:  # a deflated record cut short (torch stores, never deflates)
                    return f"its record {info.filename} is damaged ({exc})"
    except (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError):  # no zip, cut short, an odd one
        return None
    return None


def damage_line(path: str | os.PathLike[str], source: str | os.PathLike[str] | io.BytesIO | None = None) -> str | None:
    """One line naming the checkpoint ``path`` and its damaged record (:func:`damaged_record` of ``source``, which
    is ``path`` unless its bytes are already read); None when it is intact. What every load of a checkpoint (a
    model, ``last.pt``, ``best_state.pt``) checks before ``torch.load``."""
    record = damaged_record(path if source is None else source)
    if record is None:
        return None
    return (
        f"{path} is a damaged checkpoint: {record} (a byte changed on disk or in a copy); copy it again from an "
        "intact source or use an earlier checkpoint"
    )


def _not_a_model(path: Path, blob: Any) -> str:
    """Why the torch file ``path`` is no model: a run's training state or best weights (session 46's audit: "no edgeae
    metadata; was it written by edgeae?" for the files edgeae train writes beside best.pt), or a foreign file."""
    run = path.parent
    if isinstance(blob, dict) and {"optimizer", "state", "model"} <= set(blob):
        return (
            f"{path} is a training state for --resume (edgeae train cae|vae --resume {run}), not a model: give "
            f"{run / 'best.pt'}, the run's model"
        )
    if isinstance(blob, dict) and "score_lambda" in blob:
        return (
            f"{path} holds a VAE run's best weights while it trains, not a model: give {run / 'best.pt'}, written when "
            "the run ends"
        )
    return f"{path}: checkpoint has no edgeae metadata; was it written by edgeae?"


def incomplete_line(path: str | os.PathLike[str]) -> str | None:
    """One line naming the checkpoint file ``path`` when it is no whole ``torch.save`` archive (cut short: its zip
    directory missing; or another file in its place), else None. Reads the archive's directory only."""
    try:
        with zipfile.ZipFile(path) as archive:
            archive.infolist()
    except (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError) as exc:
        return (
            f"{path} is not a complete checkpoint (cut short, or not a checkpoint file: {exc}); copy it again from an "
            "intact source or use an earlier checkpoint"
        )
    return None


def check_intact(path: str | os.PathLike[str]) -> None:
    """MetadataError (:func:`damage_line`) when a record of the checkpoint file ``path`` is damaged; the loads that
    call ``torch.load`` themselves (``last.pt``, ``best_state.pt``) call this first."""
    damaged = damage_line(path)
    if damaged is not None:
        raise MetadataError(damaged)


def load_checkpoint(path: str | os.PathLike[str], map_location: str = "cpu") -> Checkpoint:
    """Load a checkpoint written by :func:`save_checkpoint`; clear errors for missing, foreign, cut-short or damaged
    files (a record failing its CRC-32: :func:`damage_line`) and for weights holding NaN or ±inf (MetadataError
    naming the tensor)."""
    torch = require("torch")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    data = path.read_bytes()
    damaged = damage_line(path, io.BytesIO(data)) if data.startswith(b"PK\x03\x04") else None
    if damaged is not None:
        raise MetadataError(damaged)
    try:
        blob = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as exc:
        raise MetadataError(load_error(path, exc, data[:4])) from exc
    if not isinstance(blob, dict) or METADATA_KEY not in blob or "state_dict" not in blob:
        raise MetadataError(_not_a_model(path, blob))
    meta = ModelMetadata.from_json(blob[METADATA_KEY], source=str(path))
    _refuse_nonfinite(path, blob["state_dict"], torch)
    with torch.random.fork_rng(devices=[]):  # the throw-away initial weights must not move the caller's RNG
        model = build_model(meta)
    try:
        model.load_state_dict(blob["state_dict"])
    except RuntimeError as exc:
        raise MetadataError(f"{path}: weights do not match the architecture in its metadata: {exc}") from exc
    model.eval()
    return Checkpoint(
        model=model,
        metadata=meta,
        metrics=dict(blob.get("metrics", {})),
        history=list(blob.get("history", [])),
        path=path,
    )

"""Which model file the board bench times and how it is loaded: a zoo name resolved to the file the flight
runtime flies (:func:`flight_prefer`), the export's recorded hash and the flight guard's refusal checked, the
interpreter imported before any load is timed and a damaged file's parser error said plainly
(:func:`load_model`). The bench itself is :mod:`.bench`."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _invalid_model_text(path: Path, err: Exception) -> str | None:
    """A plain reason for an interpreter's parse error of a damaged model file (None: not one of those)."""
    text = str(err)
    if "INVALID_PROTOBUF" in text or "Protobuf parsing failed" in text:
        return f"{path}: not a valid ONNX model (truncated or not ONNX: onnxruntime cannot parse it)"
    if "unpack_from requires a buffer" in text or "corrupted TFLite flatbuffer" in text:
        return f"{path}: not a valid TFLite model (truncated or damaged flatbuffer)"
    return None


def load_model(path: str | os.PathLike[str], threads: int) -> Any:
    """:func:`.runtime.load_artifact` with a damaged file's parser error said plainly (the same exception type)."""
    from .runtime import load_artifact

    try:
        return load_artifact(path, threads=threads)
    except Exception as e:
        why = _invalid_model_text(Path(path), e)
        if why is None:
            raise
        raise type(e)(why) from e


def import_interpreter(path: Path) -> float:
    """Import the interpreter ``path`` runs in; the milliseconds it took (0 when it was imported already), so that
    no model load is timed with the import in it."""
    from edgeae._optional import require

    t = time.perf_counter()
    require("ai_edge_litert.interpreter" if path.suffix == ".tflite" else "onnxruntime")
    return (time.perf_counter() - t) * 1e3


def _zoo_name(model: str | os.PathLike[str]) -> str:
    """The zoo name ``model`` may be (``zoo:`` taken off); "" for a file (a suffix or a folder in it) or nothing."""
    from edgeae.resolve import ZOO_PREFIX

    name = str(model).removeprefix(ZOO_PREFIX)
    return "" if not name or Path(name).suffix or "/" in name else name


def _shipped_uses(model: str | os.PathLike[str]) -> list[tuple[str, str, Any]]:
    """(mission, role, section) of each shipped mission section that flies zoo name ``model`` (none for a file)."""
    from edgeae.resolve import ZOO_PREFIX, presets

    from .mission import MISSIONS_DIR, load_mission

    name = _zoo_name(model)
    if not name:
        return []
    uses = []
    for mission, path in presets(MISSIONS_DIR).items():
        try:
            m = load_mission(path)
        except Exception:  # a shipped mission that does not load is its own test's business, not the bench's
            continue
        for role in ("anomaly", "reconstruction"):
            sec = getattr(m, role)
            if str(sec.model).removeprefix(ZOO_PREFIX) == name:
                uses.append((mission, role, sec))
    return uses


def flight_prefer(model: str | os.PathLike[str]) -> tuple[tuple[str, ...], str]:
    """The artifact formats the flight runtime takes first for ``model`` and why: a zoo name a shipped mission
    flies gets that mission's ``prefer`` (``orbital-gray-vae``: ``tflite, onnx``, orbital_nac), any other the
    runtime's default (onnx, tflite, ort). A file path needs none."""
    if not _zoo_name(model):
        return (), "a file"
    for mission, role, sec in _shipped_uses(model):
        if sec.prefer:
            return tuple(sec.prefer), f"mission {mission} [{role}] prefer"
    return (), "the flight runtime's default order"


def flight_terms(model: str | os.PathLike[str]) -> tuple[bool, str]:
    """Whether the flight loop scores zoo name ``model`` by the VAE's two terms (``score = "terms-max"``: the ``mu``
    output is read back beside ``score``) and why: the first shipped mission that flies it as its ``[anomaly]``
    model with ``method = "vae"`` (``orbital-gray-vae``: orbital_nac, terms-max); False (``score`` alone, the
    default ``score = "a"``) for any other name and for a file."""
    for mission, role, sec in _shipped_uses(model):
        if role == "anomaly" and sec.method == "vae":
            return sec.score == "terms-max", f'mission {mission} [anomaly] score = "{sec.score}"'
    return False, 'score = "a", the default (no shipped mission flies it)'


def _patch_side(meta: Any) -> int:
    shape = meta.input_shape
    p = int(shape[2] if meta.layout == "NCHW" else shape[1])
    return p if p > 0 else 64


def runtime_name(path: Path) -> str:
    """The interpreter an artifact runs in, by its suffix (as :func:`.runtime.load_artifact` chooses it)."""
    return "ai-edge-litert" if path.suffix == ".tflite" else "onnxruntime"


def check_recorded_hash(path: str | os.PathLike[str], error: type[Exception] = ValueError) -> None:
    """Refuse (``error``) a model file whose SHA-256 differs from the one its export recorded (a ``.sha256``
    sidecar or the ``parity.json`` beside it), as ``firmware-sim run`` does, instead of timing a damaged file
    (the board check, ``edgeae.export.board``, refuses with this too)."""
    from .guard import recorded_hash_mismatch

    why = recorded_hash_mismatch(Path(path))
    if why:
        raise error(why)


def flight_guard_refusal(path: str | os.PathLike[str]) -> str | None:
    """Why the flight runtime would refuse ``path`` at boot (None: it would not): :func:`.guard.parity_failure`
    (its export rejected it, ``NAME.FAILED.EXT`` or ``NAME.STALE.EXT``, or not recorded by the export beside it).
    The bench times such a file all the same, with this in its warnings; the board check fails it."""
    from .guard import parity_failure

    why = parity_failure(Path(path))
    return f"refused by the flight guard: {why}; these timings are of a file no flight would run" if why else None


def resolve_bench_model(model: str | os.PathLike[str], prefer: Sequence[str] | None = None) -> tuple[Path, str]:
    """The file ``--model`` names (a zoo name: the file the flight runtime flies, ``prefer`` first when given,
    else :func:`flight_prefer`) and which order chose it; a plain one-line error for an empty name or a folder (a
    zoo name is the zoo model even where a folder of that name is in the current folder)."""
    from edgeae import zoo
    from edgeae.resolve import ZOO_PREFIX, model_path

    text = os.fspath(model)
    if not text.strip():
        raise ValueError("--model is empty: give a zoo name (orbital-gray-vae) or an .onnx / .ort / .tflite file")
    if not text.startswith(ZOO_PREFIX) and Path(text).is_dir() and text not in zoo.models():  # as model_path: zoo first
        raise ValueError(f"--model {text} is a folder: give an .onnx / .ort / .tflite file in it, or a zoo name")
    if prefer is None:
        order, why = flight_prefer(text)
    else:
        order, why = tuple(prefer), "--prefer"
    return model_path(text, "artifact", prefer=order), (f"{','.join(order)} ({why})" if order else why)

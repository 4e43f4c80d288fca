"""Turn any model the user can name into a patch scorer: float32 (N, C, P, P) in [0, 1] -> scores (N,).

Scores come from :class:`edgeae.anomaly.score.PatchScorer`, so they are the numbers ``edgeae score`` gives:
VAE models the anomaly score a(x) = ||x - x̂||² + λ||μ||²; reconstruction models (CAE) the error of a
masked reconstruction over the pixels the model did not see.
Each worker process or Ray actor builds its own scorer from a :class:`ModelSpec`, which is small and
picklable, so the model itself never crosses a process boundary.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeae.metadata import ModelMetadata, sha256_file

Scorer = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ModelSpec:
    """What every worker needs to rebuild the same scorer: the model file, its id and its hash; and what the user
    named (``given``, ``zoo``), which is what a results folder keeps (:meth:`record`)."""

    path: str  # the file that scores, as this machine finds it (absolute); not kept in scan.json
    model_id: str
    artifact_hash: str  # sha256 of that file
    kind: str
    patch: int
    channels: int
    latent: int = 0  # a VAE's latent size D (0: unknown or not a VAE); bounds what local-z holds per image
    given: str = ""  # --model as the user gave it: a zoo name, or the file's path (relative stays relative)
    zoo: bool = False  # ``given`` names a zoo model (found again on any machine with edgeae), not a file

    def __post_init__(self) -> None:
        if self.patch <= 0 or self.channels not in (1, 3):
            raise ValueError(f"{self.path}: model input must be (C in 1|3, P, P), got C={self.channels} P={self.patch}")

    def options(self) -> str:
        """The ``edgeae scan`` options that score with this same file again: ``--model NAME`` (or ``zoo:NAME``) with the
        precision or runtime that picks the file for a zoo name (``--runtime tflite`` where ``auto`` picked LiteRT),
        ``--model zoo:NAME/FILE`` alone (it names one file), else ``--model PATH`` as given (the file's sha256,
        ``artifact_hash``, tells whether a file found there is it)."""
        import shlex

        from edgeae.printable import printable

        given = self.given or self.path
        opts = ["--model", printable(given)]
        name = Path(self.path).name
        if self.zoo and "/" not in given.removeprefix("zoo:"):  # zoo:NAME/FILE is one file: nothing else picks it
            if name.endswith(".pt"):
                opts += ["--precision", "fp32"]
            elif ".int8." in name:
                opts += ["--runtime", "tflite" if name.endswith(".tflite") else "onnx"]
        return shlex.join(opts)

    def record(self) -> dict[str, Any]:
        """What scan.json keeps of the model: no absolute path (a results folder moved to another folder or machine
        named a file that was not there, and an installed zoo model's site-packages path): ``given`` and ``zoo`` (what
        the user named), ``file`` (the name of the file that scored), ``artifact_hash`` (its sha256), ``options``
        (:meth:`options`), and the model's id, kind and input."""
        d = asdict(self)
        path = d.pop("path")
        return {"given": self.given, "zoo": self.zoo, "file": Path(path).name, "options": self.options(), **d}

    @classmethod
    def from_record(cls, d: dict[str, Any]) -> ModelSpec:
        """A ModelSpec from scan.json's ``model``: :meth:`record`'s, whose ``path`` is then the file's name only (not a
        file to load), or one written before session 37, with the absolute ``path`` it held (``given`` is then that
        path)."""
        d = dict(d)
        d.pop("options", None)
        if "path" not in d:
            d["path"] = d.pop("file", "")
        else:
            d.pop("file", None)
            d.setdefault("given", d["path"])
        return cls(**d)


def _input_geometry(meta: ModelMetadata, source: str) -> tuple[int, int]:
    shape = meta.input_shape
    c, h, w = (shape[1], shape[2], shape[3]) if meta.layout == "NCHW" else (shape[3], shape[1], shape[2])
    if h <= 0 or w <= 0 or h != w:
        raise ValueError(f"{source}: scanning needs a fixed square patch input, model takes {meta.input_shape}")
    return int(c), int(h)


# The format the scan prefers for a zoo name, fastest first, by the kind of CPU (benchmarks/nac_headline.py, the
# orbital VAE on 2 cores, 2 interpreters x 1 thread): on x86 with VNNI (session 12, Intel Xeon with AVX-512 VNNI) LiteRT
# int8 10,929 patches/s vs onnxruntime int8 9,555; on x86 without VNNI (session 20, AVX2-only AMD EPYC)
# onnxruntime int8 7,258 vs LiteRT 4,340. The ground scan has no flight memory budget, so the faster one wins
# (onnxruntime holds more memory: the flight mission keeps LiteRT for that reason, docs/firmware_sim.md).
INT8_PREFERENCE = (".tflite", ".onnx", ".ort")
INT8_PREFERENCE_NO_VNNI = (".onnx", ".ort", ".tflite")
RUNTIMES = ("auto", "tflite", "onnx")
_SUFFIXES = {"tflite": (".tflite",), "onnx": (".onnx", ".ort")}


def int8_preference(runtime: str = "auto") -> tuple[str, ...]:
    """The int8 file suffixes to try, in order: ``runtime`` "tflite" or "onnx" pins one runtime (results then
    do not depend on the machine); "auto" takes the faster one on this CPU (:data:`INT8_PREFERENCE`, or
    :data:`INT8_PREFERENCE_NO_VNNI` on x86 without VNNI)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if runtime != "auto":
        return _SUFFIXES[runtime]
    from edgeae.firmware_sim.cpu import x86_without_vnni

    return INT8_PREFERENCE_NO_VNNI if x86_without_vnni() else INT8_PREFERENCE


def shipped_int8(name: str, runtime: str = "auto") -> Path | None:
    """The shipped int8 artifact of zoo model ``name`` whose export parity passed (``parity.json`` beside it),
    in :func:`int8_preference` order; None when there is none (then the checkpoint scores)."""
    import importlib.util
    import json

    from edgeae import zoo

    order = int8_preference(runtime)
    if name not in zoo.ZOO:
        return None
    folder = Path(zoo.__file__).resolve().parent / "artifacts" / name
    report = folder / "parity.json"
    if not report.is_file():
        return None
    passed = {
        Path(a["path"]).name
        for a in json.loads(report.read_text()).get("artifacts", [])
        if a.get("precision") == "int8" and (a.get("parity") or {}).get("passed")
    }
    found = {".tflite": "ai_edge_litert", ".onnx": "onnxruntime", ".ort": "onnxruntime"}
    for suffix in order:
        p = folder / f"{name}.int8{suffix}"
        if p.name in passed and p.is_file() and importlib.util.find_spec(found[suffix]) is not None:
            return p
    return None


def resolve_model(
    spec: str | os.PathLike[str], predictor: Any | None = None, precision: str = "int8", runtime: str = "auto"
) -> ModelSpec:
    """Resolve a zoo name or a model file into a :class:`ModelSpec` (loads the model once to read metadata).

    A zoo name scores with its shipped int8 artifact when its parity passed (``precision="int8"``, the
    default: the fast path; ``runtime`` picks LiteRT or onnxruntime, "auto" the faster on this CPU, see
    :func:`int8_preference`) and with its PyTorch checkpoint otherwise (``precision="fp32"``); a path is
    used as given.
    """
    from edgeae.predictor import load_predictor, resolve_model_path

    if precision not in ("int8", "fp32"):
        raise ValueError(f"precision must be int8 or fp32, got {precision!r}")
    text = os.fspath(spec)
    name = text.removeprefix("zoo:")
    if runtime != "auto" and precision != "int8":
        raise ValueError(f"runtime {runtime!r} picks an int8 artifact; precision {precision!r} scores the checkpoint")
    shipped = shipped_int8(name, runtime) if precision == "int8" and not Path(text).exists() else None
    if shipped is None and runtime != "auto" and not Path(text).exists():
        raise ValueError(
            f"{name}: no shipped int8 {runtime} artifact that passed its parity check, or its runtime "
            f"({'ai-edge-litert' if runtime == 'tflite' else 'onnxruntime'}) is not installed; use --runtime auto"
        )
    path = shipped if shipped is not None else resolve_model_path(spec)
    if predictor is None:
        predictor = load_predictor(path, threads=1)
    meta = predictor.metadata
    if meta.kind not in ("cae", "vae"):
        raise ValueError(f"{path}: a {meta.kind!r} model cannot score patches; use a vae (or cae) model")
    channels, patch = _input_geometry(meta, str(path))
    given = Path(os.fspath(spec))
    model_id = given.stem if given.suffix else str(spec)
    return ModelSpec(
        path=str(path.resolve()),
        model_id=model_id,
        artifact_hash=sha256_file(path),
        kind=meta.kind,
        patch=patch,
        channels=channels,
        latent=int((meta.architecture or {}).get("latent", 0) or 0) if meta.kind == "vae" else 0,
        given=text,
        zoo=text.startswith("zoo:") or not given.is_file(),  # not a file: a name resolve_model_path found in the zoo
    )


def make_scorer(predictor: Any, terms: bool = False, latents: bool = False, views: int = 1) -> Scorer:
    """Wrap a loaded predictor as a patch scorer: the same numbers as ``edgeae score`` (VAE a(x), CAE
    masked-reconstruction error). A VAE runs the fast path (:func:`edgeae.firmware_sim.score.score_runner`:
    only the ``score`` output is computed and read back); a CAE goes through
    :class:`edgeae.anomaly.score.PatchScorer`. ``terms``: a VAE's scorer returns its two terms, (N, 2) rec and
    mu2, for the ``terms-max`` ranking (the ``mu`` output is read back too); ``latents``: (N, 1 + D), rec then the
    latent mean μ, for the ``local-z`` and ``context-knn`` rankings; with ``views`` > 1, (N, 1 + views·D): rec of
    the patch, then the μ of each of its first ``views`` rotations and flips (:mod:`edgeae.anomaly.views`), one
    model call per view."""
    from edgeae.anomaly.score import make_scorer as make_patch_scorer
    from edgeae.anomaly.views import VIEWS

    if not 1 <= views <= VIEWS:
        raise ValueError(f"views must be 1 to {VIEWS} (rotations and flips of a patch), got {views}")
    if views > 1 and not latents:
        raise ValueError("views > 1 read each view's latents: they need the latents scorer")
    if predictor.metadata.kind == "vae":
        from edgeae.firmware_sim.score import score_runner

        runner = score_runner(predictor, terms=terms, latents=latents)
        if views == 1:
            return runner
        from edgeae.anomaly.views import dihedral

        def score_views(batch: np.ndarray) -> np.ndarray:
            first = np.asarray(runner(batch))
            rest = [np.asarray(runner(dihedral(batch, g)))[:, 1:] for g in range(1, views)]
            return np.concatenate([first, *rest], axis=1)

        return score_views
    if terms or latents:
        what = "terms-max score ranks a VAE's two terms" if terms else "local-z score ranks a VAE's latents"
        raise ValueError(f"the {what}, not a {predictor.metadata.kind!r} model's")
    patch_scorer = make_patch_scorer(predictor)

    def score(batch: np.ndarray) -> np.ndarray:
        return np.asarray(patch_scorer(batch)["score"], dtype=np.float64).reshape(-1)

    return score


def load_scorer(
    spec: ModelSpec,
    threads: int | None = 1,
    device: str = "cpu",
    terms: bool = False,
    latents: bool = False,
    views: int = 1,
) -> Scorer:
    """Build the scorer for ``spec`` in this process; refuses a file whose hash changed since the scan began.
    ``terms``: the VAE's two terms per patch; ``latents``: rec and μ per patch, of ``views`` views (see
    :func:`make_scorer`)."""
    from edgeae.predictor import load_predictor

    if sha256_file(spec.path) != spec.artifact_hash:
        raise ValueError(f"{spec.path}: model file changed since the scan started (hash mismatch)")
    if Path(spec.path).suffix == ".pt":
        return make_scorer(load_predictor(spec.path, threads=threads, device=device), terms, latents, views)
    return make_scorer(load_predictor(spec.path, threads=threads), terms, latents, views)

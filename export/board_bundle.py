"""The parity bundle: the file that carries a model's parity inputs and PyTorch's outputs to the board.

A bundle is a compressed ``.npz`` (no pickled objects) written where the checkpoint and the data are
(:func:`make_bundle`, needs PyTorch) and read on the board (:func:`load_bundle`, numpy only), which checks its size,
the sizes its arrays unpack to, and its format version before anything is decompressed. 8-bit image patches travel
as ``uint8`` (``KEY.u8``), anything else as ``float32`` (``KEY.f32``). ``edgeae.export.board`` checks artifacts
against it.
"""

from __future__ import annotations

import json
import os
import platform
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 1
MAX_BUNDLE_BYTES = 512 * 1024 * 1024  # refuse a larger file (the zoo VAE's bundle with its tail is 14 MB)
MAX_UNPACKED_BYTES = 4 * 1024**3  # and one whose arrays would unpack to more (the zoo VAE's: 18 MB)


class BundleError(ValueError):
    """A bundle that is missing, malformed, or for another model kind."""


INV255 = np.float32(1.0 / 255.0)  # how edgeae.imageio.to_float scales 8-bit samples


def _as_u8(x: np.ndarray) -> np.ndarray | None:
    """``x`` as uint8 when it is exactly 8-bit samples scaled as the image reader does, else None."""
    u8 = np.rint(np.asarray(x, np.float32) * np.float32(255.0))
    if u8.min() < 0 or u8.max() > 255 or not np.array_equal(u8.astype(np.float32) * INV255, x):
        return None
    return u8.astype(np.uint8)


def _pack_pixels(arrays: dict[str, np.ndarray], key: str, x: np.ndarray) -> None:
    u8 = _as_u8(x)
    if u8 is not None:
        arrays[f"{key}.u8"] = u8
    else:
        arrays[f"{key}.f32"] = np.ascontiguousarray(x, np.float32)


def _unpack_pixels(data: Any, key: str) -> np.ndarray:
    if f"{key}.u8" in data:
        return np.asarray(data[f"{key}.u8"], np.float32) * INV255
    if f"{key}.f32" in data:
        return np.asarray(data[f"{key}.f32"], np.float32)
    raise BundleError(f"bundle has no {key!r} array")


def make_bundle(
    model: str,
    out: str | os.PathLike[str],
    kinds: Sequence[str] | None = None,
    n_test: int = 64,
    seed: int = 0,
    data_root: str | None = None,
    tail: bool = True,
) -> dict[str, Any]:
    """Write the bundle of ``model`` (zoo name or ``.pt``) to ``out``; return its summary. Needs PyTorch.

    ``tail=False`` leaves out the tail frames (parity patches only: a much smaller bundle)."""
    from edgeae.checkpoint import load_checkpoint
    from edgeae.metadata import sha256_file
    from edgeae.predictor import resolve_model_path

    from . import calibration as cal
    from .api import _inputs_for, torch_outputs_batched
    from .graphs import graphs_for, torch_outputs
    from .tailgate import TAIL_KINDS, tail_scores, tail_terms_max

    path = resolve_model_path(model, want="checkpoint")
    ck = load_checkpoint(path)
    meta = ck.metadata
    graphs = graphs_for(ck.model, meta, tuple(kinds) if kinds else None)
    splittable = meta.kind == "cae" and meta.architecture.get("variant", "seed") == "seed"
    encoder = next(iter(graphs_for(ck.model, meta, ("cae-encoder",)))) if splittable else None
    # the export's own parity set: test split, seed + 1 (edgeae.export.api.export_model)
    test = cal.model_patches(meta, cal.split_images(meta, "test", data_root), n_test, seed=seed + 1)
    arrays: dict[str, np.ndarray] = {}
    summary: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "model": str(model),
        "checkpoint_sha256": sha256_file(path),
        "model_kind": meta.kind,
        "kinds": [],
        "test": f"{n_test} patches of the {cal.dataset_of(meta)} test split, seed {seed + 1}",
        "made_on": {"machine": platform.machine(), "python": platform.python_version()},
    }
    for g in graphs:
        x = _inputs_for(g, encoder, test)
        if g.kind == "cae-decoder":  # latents, not pixels
            arrays[f"{g.kind}/input.f32"] = np.ascontiguousarray(x, np.float32)
        else:
            _pack_pixels(arrays, f"{g.kind}/input", x)
        for name, v in torch_outputs_batched(g, x).items():
            arrays[f"{g.kind}/ref/{name}"] = np.ascontiguousarray(v, np.float32)
        summary["kinds"].append(g.kind)
    tail_kind = next((g for g in graphs if g.kind in TAIL_KINDS), None) if tail else None
    if tail_kind is not None:
        arch = meta.architecture
        side = int(arch.get("tile") or arch.get("patch") or meta.input_shape[-1])
        channels = int(arch.get("channels", meta.channels))
        files = cal.tail_frame_files(meta, data_root)
        frames = [cal.frame_patches(f, channels, side) for f in files]
        ext = cal.extreme_patches(channels, side)
        ref = lambda b, g=tail_kind: torch_outputs(g, b)  # noqa: E731
        _pack_pixels(arrays, "tail/patches", np.concatenate(frames))
        arrays["tail/offsets"] = np.cumsum([0] + [len(f) for f in frames]).astype(np.int64)
        arrays["tail/ref"] = np.concatenate([tail_scores(ref, tail_kind.kind, f) for f in frames])
        arrays["extremes.f32"] = ext
        arrays["extremes/ref"] = tail_scores(ref, tail_kind.kind, ext)
        lam = (tail_kind.metadata.score or {}).get("lambda") if tail_kind.kind == "vae" else None
        if lam is not None:
            arrays["tail/ref_terms_max"] = np.concatenate(tail_terms_max(ref, frames, float(lam)))
            summary["lambda"] = float(lam)
        n_tail = int(sum(map(len, frames)))
        summary["tail"] = {"kind": tail_kind.kind, "frames": [f.name for f in files], "patches": n_tail}
    arrays["summary"] = np.array(json.dumps(summary))
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with open(out_path, "wb") as fh:
        np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]
    summary["bytes"] = out_path.stat().st_size
    return summary


def load_bundle(path: str | os.PathLike[str]) -> tuple[dict[str, Any], Any]:
    """(summary, npz) of a bundle, checked for size, format and version before anything is decompressed."""
    p = Path(path)
    if not p.is_file():
        raise BundleError(f"{p}: no such bundle")
    size = p.stat().st_size
    if size > MAX_BUNDLE_BYTES:
        raise BundleError(f"{p}: {size} bytes, more than the {MAX_BUNDLE_BYTES} a bundle may have")
    try:
        with zipfile.ZipFile(p) as zf:  # sizes as the archive declares them, before anything is decompressed
            unpacked = sum(i.file_size for i in zf.infolist())
        if unpacked > MAX_UNPACKED_BYTES:
            raise BundleError(f"{p}: its arrays unpack to {unpacked} bytes, more than {MAX_UNPACKED_BYTES}")
        data = np.load(p, allow_pickle=False)
        summary = json.loads(str(data["summary"]))
    except BundleError:
        raise
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise BundleError(f"{p}: not an edgeae parity bundle ({e})") from e
    if not isinstance(summary, dict):
        raise BundleError(f"{p}: not an edgeae parity bundle (its summary is not a JSON object)")
    if summary.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{p}: bundle format {summary.get('format_version')!r}, this edgeae reads {FORMAT_VERSION}")
    return summary, data

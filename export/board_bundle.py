"""The parity bundle: the file that carries a model's parity inputs and PyTorch's outputs to the board.

A bundle is a compressed ``.npz`` (no pickled objects) written where the checkpoint and the data are
(:func:`make_bundle`, needs PyTorch) and read on the board (:func:`load_bundle`, numpy only), which checks its size,
the sizes its arrays unpack to, and its format version before anything is decompressed. 8-bit image patches travel
as ``uint8`` (``KEY.u8``), anything else as ``float32`` (``KEY.f32``). ``edgeae.export.board`` checks artifacts
against it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import zipfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 1
MAX_BUNDLE_BYTES = 512 * 1024 * 1024  # refuse a larger file (the zoo VAE's bundle with its tail is 14 MB)
MAX_UNPACKED_BYTES = 4 * 1024**3  # and one whose arrays would unpack to more (the zoo VAE's: 18 MB)

log = logging.getLogger(__name__)


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


TAIL_RESERVE_BYTES = 64 * 1024**2  # room kept for the tail frames (the zoo VAE's: 4,096 patches, ~14 MB packed)


def bundle_size_problem(meta: Any, kinds: Sequence[str] | None, n_test: int, tail: bool) -> str | None:
    """Why ``n_test`` parity patches would make a bundle ``load_bundle`` refuses (None: they would not), estimated
    from the model's input size before any PyTorch work: per patch and bundled kind about 5 bytes a sample (the
    8-bit input and PyTorch's float32 output, which hardly compresses: the zoo VAE's measured 18.2 KB per 64-px
    patch) plus 2 KiB (latents, scores), against :data:`MAX_BUNDLE_BYTES` and :data:`MAX_UNPACKED_BYTES` less
    :data:`TAIL_RESERVE_BYTES` for the tail."""
    arch = meta.architecture
    side = int(arch.get("tile") or arch.get("patch") or meta.input_shape[-1])
    channels = int(arch.get("channels", meta.channels))
    if kinds:
        n_kinds = len(kinds)
    elif meta.kind == "cae" and arch.get("variant", "seed") == "seed":
        n_kinds = 3  # cae, cae-encoder, cae-decoder
    else:
        n_kinds = 1
    per_patch = n_kinds * (5 * channels * side * side + 2048)
    room = min(MAX_BUNDLE_BYTES, MAX_UNPACKED_BYTES) - (TAIL_RESERVE_BYTES if tail else 0)
    if n_test * per_patch <= room:
        return None
    return (
        f"--n-test {n_test} would make a bundle of about {n_test * per_patch / 1e6:,.0f} MB ({per_patch / 1e3:.1f} KB "
        f"a {side}-px patch for {n_kinds} kind(s)), more than the {MAX_BUNDLE_BYTES} bytes board check accepts: "
        f"at most --n-test {max(1, room // per_patch)}"
    )


def make_bundle(
    model: str,
    out: str | os.PathLike[str],
    kinds: Sequence[str] | None = None,
    n_test: int = 64,
    seed: int = 0,
    data_root: str | None = None,
    tail: bool = True,
    test: str | os.PathLike[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Write the bundle of ``model`` (zoo name or ``.pt``) to ``out``; return its summary. Needs PyTorch.

    Its images are the export's (:func:`edgeae.export.data_plan.plan_data`: the model's own training data decides;
    ``test``: a folder or file of one's own, the export's ``--test``), its warnings logged. ``tail=False`` leaves out
    the tail frames (parity patches only: a much smaller bundle). ``n_test`` patches that would make a bundle too
    large to check are refused (:func:`bundle_size_problem`, BundleError) before any PyTorch work. ``progress`` is
    told each step (the default tail bundle takes minutes); the file is written atomically."""
    from edgeae.atomic import atomic_path
    from edgeae.checkpoint import load_checkpoint
    from edgeae.metadata import sha256_file
    from edgeae.predictor import resolve_model_path

    from . import calibration as cal
    from .api import _inputs_for, torch_outputs_batched
    from .data_plan import plan_data
    from .graphs import graphs_for, torch_outputs
    from .tailgate import TAIL_KINDS, tail_scores, tail_terms_max

    say = progress or (lambda _m: None)
    path = resolve_model_path(model, want="checkpoint")
    say(f"loading {path}")
    ck = load_checkpoint(path)
    meta = ck.metadata
    too_big = bundle_size_problem(meta, kinds, n_test, tail)
    if too_big:
        raise BundleError(too_big)
    plan = plan_data(meta, test=test, root=data_root, calibration=False)  # before minutes of PyTorch work
    for note in plan.notes:
        log.warning("%s", note)
    graphs = graphs_for(ck.model, meta, tuple(kinds) if kinds else None)
    splittable = meta.kind == "cae" and meta.architecture.get("variant", "seed") == "seed"
    encoder = next(iter(graphs_for(ck.model, meta, ("cae-encoder",)))) if splittable else None
    # the export's own parity set, seed + 1 (edgeae.export.api.export_model)
    say(f"{n_test} parity patches of {plan.test_source}")
    patches = cal.model_patches(meta, plan.test, n_test, seed=seed + 1)
    arrays: dict[str, np.ndarray] = {}
    summary: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "model": str(model),
        "checkpoint_sha256": sha256_file(path),
        "model_kind": meta.kind,
        "kinds": [],
        "test": f"{n_test} patches of {plan.test_source}, seed {seed + 1}",
        "made_on": {"machine": platform.machine(), "python": platform.python_version()},
    }
    for g in graphs:
        say(f"{g.kind}: PyTorch outputs on {len(patches)} inputs")
        x = _inputs_for(g, encoder, patches)
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
        files = plan.tail
        frames: list[np.ndarray] = []
        for i, f in enumerate(files, 1):
            say(f"tail frame {i}/{len(files)}: patches of {f.name}")
            frames.append(cal.frame_patches(f, channels, side))
        if sum(map(len, frames)) < 3:  # load_bundle would refuse the file
            raise BundleError(
                f"the tail frames ({', '.join(f.name for f in files)}) give {sum(map(len, frames))} patch(es) of "
                f"{side} px, the tail's Spearman needs at least 3: give --test DIR (more or larger images) or --no-tail"
            )
        ext = cal.extreme_patches(channels, side)
        ref = lambda b, g=tail_kind: torch_outputs(g, b)  # noqa: E731
        _pack_pixels(arrays, "tail/patches", np.concatenate(frames))
        arrays["tail/offsets"] = np.cumsum([0] + [len(f) for f in frames]).astype(np.int64)
        tail_ref: list[np.ndarray] = []
        for i, fp in enumerate(frames, 1):
            say(f"tail frame {i}/{len(frames)}: PyTorch scores of {len(fp)} patches")
            tail_ref.append(tail_scores(ref, tail_kind.kind, fp))
        arrays["tail/ref"] = np.concatenate(tail_ref)
        arrays["extremes.f32"] = ext
        arrays["extremes/ref"] = tail_scores(ref, tail_kind.kind, ext)
        lam = (tail_kind.metadata.score or {}).get("lambda") if tail_kind.kind == "vae" else None
        if lam is not None:
            say("tail: PyTorch terms-max scores")
            arrays["tail/ref_terms_max"] = np.concatenate(tail_terms_max(ref, frames, float(lam)))
            summary["lambda"] = float(lam)
        n_tail = int(sum(map(len, frames)))
        summary["tail"] = {"kind": tail_kind.kind, "frames": [f.name for f in files], "patches": n_tail}
    arrays["summary"] = np.array(json.dumps(summary))
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    say(f"writing {out_path}")
    with atomic_path(out_path) as tmp, open(tmp, "wb") as fh:  # no half bundle on a full disk or a kill
        np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]
    summary["bytes"] = out_path.stat().st_size
    return summary


class BundleArrays(dict[str, np.ndarray]):
    """A bundle's arrays by name, read and checked: ``files`` lists the names (as ``numpy.load``'s archive does)."""

    @property
    def files(self) -> list[str]:
        return list(self)


_PARITY_KINDS = ("cae", "cae-encoder", "cae-decoder", "vae")  # edgeae.export.parity.MAIN_OUTPUT
_MAIN_OUTPUT = {"cae": "x_hat", "cae-decoder": "x_hat", "cae-encoder": "latent", "vae": "x_hat"}


def _read_arrays(p: Path, zf: zipfile.ZipFile) -> BundleArrays:
    """Every member as an array: each ``.npy`` header is read and its shape x itemsize checked against the bytes
    the member holds (and the bundle's limit) before its data is, so a forged header cannot allocate gigabytes."""
    from numpy.lib import format as npy

    headers: dict[str, zipfile.ZipInfo] = {}
    total = 0
    for info in zf.infolist():
        key = info.filename.removesuffix(".npy")
        if key == info.filename or key in headers:
            raise BundleError(f"{p}: member {info.filename!r} is not one .npy array of a bundle")
        try:
            with zf.open(info) as fh:
                version = npy.read_magic(fh)
                read_header = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}.get(version)
                if read_header is None:
                    raise BundleError(f"{p}: {key}: .npy format {version}, a bundle uses 1.0 or 2.0")
                shape, _, dtype = read_header(fh)
                header_len = fh.tell()
        except BundleError:
            raise
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:  # a small member: read whole
            raise BundleError(f"{p}: {key}: damaged ({e})") from e
        if dtype.hasobject or dtype.kind not in ("U" if key == "summary" else "biuf"):
            raise BundleError(f"{p}: {key}: dtype {dtype} is not a bundle's (numbers; text for the summary)")
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes != info.file_size - header_len:
            raise BundleError(
                f"{p}: {key}: its header declares shape {shape} of {dtype} ({nbytes} bytes), the member holds "
                f"{info.file_size - header_len}"
            )
        total += nbytes
        if total > MAX_UNPACKED_BYTES:
            raise BundleError(f"{p}: its arrays unpack to more than {MAX_UNPACKED_BYTES} bytes")
        headers[key] = info
    arrays = BundleArrays()
    for key, info in headers.items():
        try:
            with zf.open(info) as fh:
                arrays[key] = npy.read_array(fh, allow_pickle=False)
                fh.read()  # to the member's end, where zipfile checks its CRC-32
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
            raise BundleError(f"{p}: {key}: damaged ({e})") from e
    return arrays


def _check_contents(p: Path, summary: dict[str, Any], arrays: BundleArrays) -> None:
    """Raise :class:`BundleError` unless the summary has what ``board check`` reads and the arrays agree with it:
    each kind's inputs and PyTorch outputs (same count), the tail frames (offsets from 0 to the patch count,
    increasing), PyTorch's scores of them and of the extremes; every float finite."""

    def need(cond: bool, what: str) -> None:
        if not cond:
            raise BundleError(f"{p}: not a usable parity bundle: {what}")

    def pixels(key: str) -> np.ndarray:
        found = [arrays[k] for k in (f"{key}.u8", f"{key}.f32") if k in arrays]
        need(len(found) == 1, f"{'no' if not found else 'two'} {key!r} array{'s' if found else ''}")
        need(found[0].ndim >= 2 and len(found[0]) >= 1, f"{key!r} has shape {found[0].shape}, not a batch")
        return found[0]

    for key in ("model", "checkpoint_sha256"):
        need(isinstance(summary.get(key), str) and bool(summary[key]), f"summary has no {key!r} text")
    kinds: Any = summary.get("kinds")
    need(isinstance(kinds, list) and bool(kinds), f"summary 'kinds' is {kinds!r}, not a list of model kinds")
    for kind in kinds:
        need(kind in _PARITY_KINDS and kinds.count(kind) == 1, f"summary 'kinds' {kinds!r}: {kind!r}")
        n = len(pixels(f"{kind}/input"))
        refs = {k.rsplit("/", 1)[1]: v for k, v in arrays.items() if k.startswith(f"{kind}/ref/")}
        wanted = [_MAIN_OUTPUT[kind]] + (["score"] if kind == "vae" else [])
        for name in wanted:
            need(name in refs, f"no PyTorch output {kind}/ref/{name}")
        for name, v in refs.items():
            need(v.ndim >= 1 and len(v) == n, f"{kind}/ref/{name} has shape {v.shape}, for {n} inputs")
        need(kind != "vae" or n >= 3, f"{n} vae inputs; the score's Spearman needs at least 3")
    tail: Any = summary.get("tail")
    if tail is not None:
        need(isinstance(tail, dict) and tail.get("kind") in kinds, f"summary 'tail' {tail!r} names no bundled kind")
        patches = pixels("tail/patches")
        n = len(patches)
        x_shape = pixels(f"{tail['kind']}/input").shape
        need(
            patches.shape[1:] == x_shape[1:], f"tail/patches has shape {patches.shape}, {tail['kind']}/input {x_shape}"
        )
        for key in ("tail/offsets", "tail/ref", "extremes.f32", "extremes/ref"):
            need(key in arrays, f"no {key!r} array (summary has a tail)")
        off = arrays["tail/offsets"]
        need(
            off.dtype.kind in "iu" and off.ndim == 1 and len(off) >= 2 and off[0] == 0 and off[-1] == n
            and bool(np.all(np.diff(off) > 0)),
            f"tail/offsets must increase from 0 to the {n} tail patches, got {off[:8].tolist()}...",
        )  # fmt: skip
        need(n >= 3, f"{n} tail patches; the tail's Spearman needs at least 3")
        ext = arrays["extremes.f32"]
        need(ext.shape[1:] == patches.shape[1:] and len(ext) >= 3, f"extremes.f32 has shape {ext.shape}")
        for key, count in (("tail/ref", n), ("extremes/ref", len(ext)), ("tail/ref_terms_max", n)):
            got = arrays.get(key)
            shape = None if got is None else got.shape
            need(shape in (None, (count,)), f"{key} has shape {shape}, not ({count},)")
    if "lambda" in summary:
        lam = summary["lambda"]
        need(isinstance(lam, int | float) and math.isfinite(lam), f"summary 'lambda' is {lam!r}")
    for key, v in arrays.items():
        need(v.dtype.kind != "f" or bool(np.isfinite(v).all()), f"{key} holds NaN or infinity")


def load_bundle(path: str | os.PathLike[str]) -> tuple[dict[str, Any], BundleArrays]:
    """(summary, arrays) of a bundle, checked before use: its file size, each array's declared size against the
    bytes it has (before anything is decompressed), its format version, every member's CRC, and that the summary
    and the arrays hold what ``board check`` reads (:func:`_check_contents`). Raises :class:`BundleError`."""
    p = Path(path)
    if p.is_dir():
        raise BundleError(f"{p} is a folder, not a bundle: name the .npz file that board bundle wrote")
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
            if "summary.npy" not in zf.namelist():
                raise BundleError(f"{p}: not an edgeae parity bundle (no summary)")
            arrays = _read_arrays(p, zf)
        summary = json.loads(str(arrays.pop("summary")))
    except BundleError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise BundleError(f"{p}: not an edgeae parity bundle ({e})") from e
    if not isinstance(summary, dict):
        raise BundleError(f"{p}: not an edgeae parity bundle (its summary is not a JSON object)")
    if summary.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{p}: bundle format {summary.get('format_version')!r}, this edgeae reads {FORMAT_VERSION}")
    _check_contents(p, summary, arrays)
    return summary, arrays

"""Real image patches for int8 calibration and parity checks (never synthetic noise).

The model's own training data decides (:func:`plan_data`): a model trained on a named dataset calibrates on its
``val`` split and is checked on its ``test`` split, which no training or model selection ever sees; one trained on
a folder calibrates on the val files its checkpoint records and is checked on the folder's other files.
A CAE is fed what it sees in flight: half of the patches are clean, half have 50-99 % of their pixels destroyed
(set to zero), as in the gt-CAE training.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeae.metadata import ModelMetadata

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".pgm", ".ppm")
DATASET_FOR_CHANNELS = {3: "rover_rgb", 1: "orbital_gray"}


def training_data(metadata: ModelMetadata) -> str:
    """What a model was trained on: a dataset name of :data:`edgeae.datasets.SPLITS` or a folder's path.

    ``extra["data"]``, as the trainers write it; a checkpoint without it (the first VAEs) is matched by the names of
    its recorded ``val_files`` to a dataset's val split, else by its channel count (:data:`DATASET_FOR_CHANNELS`).
    """
    from edgeae.datasets import SPLITS

    for key in ("data", "dataset", "train_dataset"):
        name = metadata.extra.get(key)
        if isinstance(name, str) and name:
            return name
    val = metadata.extra.get("val_files")
    if isinstance(val, list) and val:
        hits = [d for d, s in SPLITS.items() if {Path(r).name for r in s.get("val", ())} == set(map(str, val))]
        if len(hits) == 1:
            return hits[0]
    channels = int(metadata.architecture.get("channels", metadata.channels))
    if channels not in DATASET_FOR_CHANNELS:
        raise ValueError(f"the checkpoint does not say what its {channels}-channel model was trained on (no data)")
    return DATASET_FOR_CHANNELS[channels]


def dataset_of(metadata: ModelMetadata) -> str:
    """The named dataset a model was trained on (:func:`training_data`); a ValueError for a folder-trained one."""
    from edgeae.datasets import SPLITS

    data = training_data(metadata)
    if data not in SPLITS:
        raise ValueError(f"the model was trained on the folder {data}, not on a named dataset: it has no splits")
    return data


def image_files(source: str | os.PathLike[str], what: str = "calibration source") -> list[Path]:
    """Image files in a folder (sorted, recursive) or the single file given."""
    p = Path(source)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise FileNotFoundError(f"{what} {p} is neither an image file nor a folder")
    files = sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and "mask" not in f.name)
    if not files:
        raise FileNotFoundError(f"{what} {p}: no images ({', '.join(IMAGE_SUFFIXES)}) under it")
    return files


def channel_mismatches(files: Sequence[str | os.PathLike[str]], channels: int) -> list[tuple[Path, int]]:
    """(file, stored channels) of the images whose channel count is not ``channels`` (read from the headers;
    a file whose header cannot be read is left to the reader, which names it)."""
    from edgeae.imageio import image_shape

    out = []
    for f in files:
        try:
            stored = int(image_shape(f)[2])
        except (OSError, ValueError):
            continue
        if stored != channels:
            out.append((Path(f), stored))
    return out


def provenance(
    calib: Sequence[Path],
    test: Sequence[Path],
    tail: Sequence[Path] = (),
    sampled: Sequence[Path] | None = None,
    train: Sequence[Path] = (),
) -> dict[str, dict[str, Any]]:
    """What the export report and the int8 artifacts record of the calibration files.

    Only the ``sampled`` calibration files (those the calibration patches come from, :func:`sampled_files`;
    default: all) are read: a folder of GB-size products is not hashed whole. ``calibration``: ``files_sha256``
    (SHA-256 of the sorted SHA-256s of the sampled files' contents: the same images anywhere give the same hash),
    ``n_files``, ``n_hashed``, ``others_sha256`` when files were not sampled (SHA-256 of their relative paths,
    sizes and modification times, one line each) and ``overlaps`` (names of the ``test`` and ``tail`` frames that
    are also sampled calibration images, by content; only frames of a sampled file's size are hashed) and
    ``training_overlaps`` (names of the sampled calibration images that are ``train`` files: the model's training
    images, the same path or the same content); ``test`` / ``tail``: ``held_out`` (no such overlap).
    """
    import hashlib

    from edgeae.metadata import sha256_file

    read = list(dict.fromkeys(calib if sampled is None else sampled))
    sha_of = {f: sha256_file(f) for f in read}
    calib_sha = set(sha_of.values())
    digest = hashlib.sha256("\n".join(sorted(calib_sha)).encode()).hexdigest()
    sizes = {f.stat().st_size for f in read}
    same_path = {Path(os.path.abspath(f)) for f in read} & {Path(os.path.abspath(f)) for f in train}
    others = [f for f in train if Path(os.path.abspath(f)) not in same_path]
    held = {f: sha256_file(f) for f in dict.fromkeys([*test, *tail, *others]) if f.stat().st_size in sizes}
    shared_test = [f.name for f in test if held.get(f) in calib_sha]
    shared_tail = [f.name for f in tail if held.get(f) in calib_sha]
    train_sha = {held[f] for f in others if f in held}
    trained = [f.name for f in read if Path(os.path.abspath(f)) in same_path or sha_of[f] in train_sha]
    out: dict[str, dict[str, Any]] = {
        "calibration": {"files_sha256": digest, "n_files": len(calib), "n_hashed": len(read)},
        "test": {"held_out": not shared_test},
        "tail": {"held_out": not shared_tail},
    }
    unread = sorted(set(calib) - set(read))
    if unread:
        root = Path(os.path.commonpath([f.parent for f in calib]))
        lines = []
        for f in unread:
            st = f.stat()
            lines.append(f"{f.relative_to(root).as_posix()}\t{st.st_size}\t{st.st_mtime_ns}")
        out["calibration"]["others_sha256"] = hashlib.sha256("\n".join(lines).encode()).hexdigest()
    if shared_test or shared_tail:
        out["calibration"]["overlaps"] = list(dict.fromkeys([*shared_test, *shared_tail]))
    if trained:
        out["calibration"]["training_overlaps"] = trained
    return out


def split_images(metadata: ModelMetadata, split: str, root: str | os.PathLike[str] | None = None) -> list[Path]:
    """Files of the model's dataset ``split`` (``val`` for calibration, ``test`` for parity)."""
    from edgeae.datasets import split_files

    return split_files(dataset_of(metadata), split, root=root)


def folder_split(metadata: ModelMetadata) -> tuple[Path, list[Path], list[Path], list[Path]]:
    """(folder, train, val, unseen files) of a model trained on a folder, by the file names its checkpoint records
    (``extra["train_files"]``, ``extra["val_files"]``); unseen: the folder's other images, which no training used.
    A DataNotFoundError when the folder is not there."""
    from edgeae.data import DataNotFoundError

    folder = Path(training_data(metadata))
    if not folder.is_dir():
        raise DataNotFoundError(f"the model was trained on {folder} (its checkpoint's data), not a folder here")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())

    def recorded(key: str) -> set[str]:
        names = metadata.extra.get(key)
        return {str(n) for n in names} if isinstance(names, list) else set()

    train_names, val_names = recorded("train_files"), recorded("val_files")
    train = [f for f in files if f.name in train_names]
    val = [f for f in files if f.name in val_names]
    unseen = [f for f in files if f.name not in train_names | val_names]
    return folder, train, val, unseen


@dataclass(frozen=True)
class DataPlan:
    """An export's images: ``calib`` (int8 calibration), ``test`` (parity), ``tail`` (whole frames of the tail
    check), ``train`` (the model's training images found here: the calibration overlap warning), what the report
    records as their sources, and ``notes`` (warnings to give)."""

    calib: list[Path]
    calib_source: str
    test: list[Path]
    test_source: str
    tail: list[Path]
    train: list[Path]
    notes: tuple[str, ...] = ()


def _split_or_say(dataset: str, split: str, root: str | os.PathLike[str] | None, what: str, instead: str) -> list[Path]:
    """:func:`edgeae.datasets.split_files`, its DataNotFoundError naming the set and the option to give instead."""
    from edgeae.data import DataNotFoundError
    from edgeae.datasets import split_files

    try:
        return split_files(dataset, split, root=root)
    except DataNotFoundError as exc:
        raise DataNotFoundError(f"{what} (the model's {dataset} {split} split): {exc}; {instead}") from exc


def plan_data(
    metadata: ModelMetadata,
    calib: str | os.PathLike[str] | None = None,
    test: str | os.PathLike[str] | None = None,
    root: str | os.PathLike[str] | None = None,
) -> DataPlan:
    """The images an export of ``metadata``'s model calibrates and checks on: the model's own training data decides.

    ``calib`` / ``test``: folders or files of one's own instead. A model trained on a named dataset: its ``val``
    split, its ``test`` split (and for the tail check :data:`TAIL_EXTRA_FRAMES`), under the data ``root``. One
    trained on a folder: the val files its checkpoint records, and the folder's images that are neither its train nor
    its val files; a folder without such images gives its val files for parity too, with a note that they are not
    unseen. A missing set raises a DataNotFoundError naming it and the option to give instead.
    """
    from edgeae.data import DataNotFoundError, data_root
    from edgeae.datasets import SPLITS, split_files

    data = training_data(metadata)
    own_calib = image_files(Path(calib).resolve()) if calib is not None else []
    own_test = image_files(Path(test).resolve(), "--test") if test is not None else []
    calib_source = str(Path(calib).resolve()) if calib is not None else ""
    test_source = str(Path(test).resolve()) if test is not None else ""
    if data not in SPLITS:
        return _folder_plan(metadata, own_calib, calib_source, own_test, test_source)
    calib_files, test_files, tail = own_calib, own_test, own_test
    if calib is None:
        how = "give --data ROOT that holds it, or --calib DIR (images of your own)"
        calib_files, calib_source = _split_or_say(data, "val", root, "calibration set", how), f"{data} val split"
    if test is None:
        how = "give --data ROOT that holds it, or --test DIR (images of your own the model never saw)"
        test_files, test_source = _split_or_say(data, "test", root, "parity test set", how), f"{data} test split"
        base = data_root(root)
        tail = test_files + [base / r for r in TAIL_EXTRA_FRAMES.get(data, ()) if (base / r).is_file()]
    try:
        train = [f for f in split_files(data, "train", root=root, must_exist=False) if f.is_file()]
    except DataNotFoundError:
        train = []  # no data folder: the model's training images cannot be compared
    return DataPlan(calib_files, calib_source, test_files, test_source, tail, train)


def _folder_plan(
    metadata: ModelMetadata, calib: list[Path], calib_source: str, test: list[Path], test_source: str
) -> DataPlan:
    """:func:`plan_data` for a model trained on a folder; ``calib`` / ``test``: the images given (empty: none)."""
    from edgeae.data import DataNotFoundError

    try:
        folder, train, val, unseen = folder_split(metadata)
    except DataNotFoundError as exc:
        wanted = " and ".join(o for o, given in (("--calib DIR", calib), ("--test DIR", test)) if not given)
        if wanted:
            raise DataNotFoundError(f"{exc}: give {wanted} (images of your own)") from exc
        return DataPlan(calib, calib_source, test, test_source, test, [])
    notes = []
    if not calib:
        if not val:
            raise DataNotFoundError(f"none of the model's val files is in {folder}: give --calib DIR (its val images)")
        calib, calib_source = val, f"the model's {len(val)} val files in {folder}"
        recorded = metadata.extra.get("val_files")
        names = [str(n) for n in recorded] if isinstance(recorded, list) else []
        missing = sorted(set(names) - {f.name for f in val})
        if missing:
            notes.append(
                f"{len(missing)} of the model's {len(names)} val files are no longer in {folder} "
                f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}): calibrating on the {len(val)} there"
            )
    if not test and unseen:
        test, test_source = (
            unseen,
            f"the {len(unseen)} images in {folder} the model was neither trained nor validated on",
        )
    elif not test:
        if not val:
            raise DataNotFoundError(f"{folder} has no image the training left out, nor its val files: give --test DIR")
        test, test_source = val, f"the model's {len(val)} val files in {folder} (NOT unseen: it has no other image)"
        notes.append(
            f"parity is measured on the model's {len(val)} val files in {folder}, not on unseen images (every image "
            "there is a train or val file of the model): give --test DIR for images neither the training nor the "
            "calibration saw"
        )
    return DataPlan(calib, calib_source, test, test_source, test, train, tuple(notes))


def read_pixels(path: Path, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, C) float32 in [0, 1] and the (H, W) valid mask of one image."""
    from edgeae.imageio import read_image

    img = read_image(path, channels=channels)
    return np.asarray(img.pixels, dtype=np.float32), np.asarray(img.valid, dtype=bool)


def _per_file(count: int, n_files: int) -> list[int]:
    """Patches drawn from each of ``n_files`` files for ``count`` patches: even shares, the first files one more
    (with fewer patches than files, only the first ``count`` files are read)."""
    return [count // n_files + (1 if i < count % n_files else 0) for i in range(n_files)]


def _tail_counts(count: int, tail: float) -> tuple[int, int, int]:
    """(random, synthetic extreme, busiest real) patches of a calibration set of ``count`` (:func:`model_patches`)."""
    if not 0.0 <= tail < 1.0:
        raise ValueError(f"tail must be in [0, 1), got {tail}")
    n_tail = round(count * tail)
    n_extremes = min(n_tail, len(extreme_patches(1, 2)))
    return count - n_tail, n_extremes, n_tail - n_extremes


def sampled_files(files: Sequence[Path], count: int, tail: float = 0.0) -> list[Path]:
    """The files :func:`model_patches` reads for ``count`` patches (at most ``count``): what provenance hashes."""
    n_random, _, n_busy = _tail_counts(count, tail)
    return list(files[: max(n_random, n_busy)])


def extract_patches(
    files: Sequence[str | os.PathLike[str]],
    channels: int,
    patch: int,
    count: int,
    seed: int = 0,
    min_valid: float = 0.99,
) -> np.ndarray:
    """``count`` real ``patch``×``patch`` patches (NCHW float32 [0, 1]) drawn evenly from ``files``.

    Positions lie on a half-overlapping grid; patches with less than ``min_valid`` valid pixels (no-data
    margins) are skipped; the choice among the rest is seeded.
    """
    rng = np.random.default_rng(seed)
    per_file = _per_file(count, len(files))
    out: list[np.ndarray] = []
    for f, n in zip(files, per_file, strict=True):
        if n == 0:
            continue
        pixels, valid = read_pixels(Path(f), channels)
        h, w = pixels.shape[:2]
        if h < patch or w < patch:
            raise ValueError(f"{f}: image {w}×{h} is smaller than one {patch}×{patch} patch")
        step = max(patch // 2, 1)
        pos = [(y, x) for y in range(0, h - patch + 1, step) for x in range(0, w - patch + 1, step)]
        pos = [(y, x) for y, x in pos if valid[y : y + patch, x : x + patch].mean() >= min_valid] or pos
        pick = rng.choice(len(pos), size=n, replace=len(pos) < n)
        for i in pick:
            y, x = pos[int(i)]
            out.append(pixels[y : y + patch, x : x + patch].transpose(2, 0, 1))
    return np.ascontiguousarray(np.stack(out), dtype=np.float32)


# Frames of the tail check besides the dataset's test split. No HiRISE strip is held out of orbital_gray, so
# two of its training strips are used: int8-vs-fp32 agreement does not need unseen frames, only frames that
# the int8 calibration (val split) never saw.
TAIL_EXTRA_FRAMES: dict[str, tuple[str, ...]] = {
    "orbital_gray": (
        "orbital_gray/hirise_browse/ESP_073435_1870_RED.NOMAP.browse.jpg",
        "orbital_gray/hirise_browse/ESP_073481_1350_RED.NOMAP.browse.jpg",
    ),
}
TAIL_EXTRA_FRAMES["orbital_gray_v2"] = TAIL_EXTRA_FRAMES["orbital_gray"]  # training frames of v2 too, not its val


def tail_frame_files(metadata: ModelMetadata, root: str | os.PathLike[str] | None = None) -> list[Path]:
    """Whole real frames for the tail check: the dataset's test split plus :data:`TAIL_EXTRA_FRAMES`."""
    from edgeae.data import data_root

    files = split_images(metadata, "test", root)
    base = data_root(root)
    return files + [base / rel for rel in TAIL_EXTRA_FRAMES.get(dataset_of(metadata), ()) if (base / rel).is_file()]


def frame_patches(path: str | os.PathLike[str], channels: int, patch: int, min_valid: float = 0.9) -> np.ndarray:
    """Every patch of a frame's non-overlapping grid with at least ``min_valid`` valid pixels, NCHW float32."""
    pixels, valid = read_pixels(Path(path), channels)
    h, w = pixels.shape[:2]
    tiles = [
        pixels[y : y + patch, x : x + patch].transpose(2, 0, 1)
        for y in range(0, h - patch + 1, patch)
        for x in range(0, w - patch + 1, patch)
        if valid[y : y + patch, x : x + patch].mean() >= min_valid
    ]
    if not tiles:
        raise ValueError(f"{path}: no {patch}-px patch with {min_valid:.0%} valid pixels")
    return np.ascontiguousarray(np.stack(tiles), dtype=np.float32)


def destroy_pixels(patches: np.ndarray, rng: np.random.Generator, lo: float = 0.5, hi: float = 0.99) -> np.ndarray:
    """Copy of ``patches`` with a fraction in [lo, hi] of each patch's pixels (all channels) set to 0."""
    out = patches.copy()
    n, _, h, w = out.shape
    frac = np.asarray(rng.uniform(lo, hi, size=n), dtype=np.float64)
    for i in range(n):
        out[i, :, rng.random((h, w)) < frac[i]] = 0.0
    return out


def extreme_patches(channels: int, patch: int, seed: int = 0) -> np.ndarray:
    """Synthetic tail patches (NCHW float32 [0, 1]) a flight camera can deliver and a score must rank.

    All-white, all-black, flat bright and dark levels, 4-px and 1-px checkerboards (40/220 and 0/255), uniform
    noise, a half-white/half-black edge and a ramp: they make the int8 calibration cover the activation
    ranges of the anomalies, not only of plain terrain (a score clipped at its calibrated maximum ties them).
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.indices((patch, patch))
    checker4 = (yy // 4 + xx // 4) % 2 == 0
    checker1 = (yy + xx) % 2 == 0
    planes = [
        np.ones((patch, patch)),
        np.zeros((patch, patch)),
        np.full((patch, patch), 0.9),
        np.full((patch, patch), 0.05),
        np.where(checker4, 40, 220) / 255.0,
        np.where(checker4, 0.0, 1.0),
        np.where(checker1, 40, 220) / 255.0,
        rng.random((patch, patch)),
        rng.random((patch, patch)),
        (xx >= patch // 2).astype(np.float64),
        xx / (patch - 1.0),
    ]
    out = np.stack([np.repeat(p[None], channels, axis=0) for p in planes])
    return np.ascontiguousarray(out, dtype=np.float32)


def busy_patches(
    files: Sequence[str | os.PathLike[str]], channels: int, patch: int, count: int, min_valid: float = 0.99
) -> np.ndarray:
    """The ``count`` real patches of highest contrast (std), and among the rest the brightest and darkest,
    drawn evenly from ``files`` on a non-overlapping grid: the real tail of the calibration frames."""
    if count <= 0:
        return np.zeros((0, channels, patch, patch), np.float32)
    per_file = _per_file(count, len(files))
    out: list[np.ndarray] = []
    for f, n in zip(files, per_file, strict=True):
        if n == 0:
            continue
        pixels, valid = read_pixels(Path(f), channels)
        h, w = pixels.shape[:2]
        if h < patch or w < patch:
            raise ValueError(f"{f}: image {w}×{h} is smaller than one {patch}×{patch} patch")
        pos = [(y, x) for y in range(0, h - patch + 1, patch) for x in range(0, w - patch + 1, patch)]
        pos = [(y, x) for y, x in pos if valid[y : y + patch, x : x + patch].mean() >= min_valid] or pos
        tiles = np.stack([pixels[y : y + patch, x : x + patch].transpose(2, 0, 1) for y, x in pos])
        std, mean = tiles.std(axis=(1, 2, 3)), tiles.mean(axis=(1, 2, 3))
        n_std = n - 2 * (n // 4)
        pick = list(np.argsort(-std, kind="stable")[:n_std])
        rest = np.setdiff1d(np.arange(len(tiles)), pick)
        by_mean = rest[np.argsort(mean[rest], kind="stable")]
        pick += list(by_mean[-(n // 4) :]) if n // 4 else []
        pick += list(by_mean[: n // 4]) if n // 4 else []
        out.append(tiles[np.asarray(pick[:n], dtype=np.int64)])
    return np.ascontiguousarray(np.concatenate(out), dtype=np.float32)


def model_patches(
    metadata: ModelMetadata,
    files: Sequence[str | os.PathLike[str]],
    count: int,
    seed: int = 0,
    tail: float = 0.0,
) -> np.ndarray:
    """Real NCHW image patches shaped for ``metadata``'s model (CAE: half of them with destroyed pixels).

    ``tail``: fraction of ``count`` taken from the tail instead of at random: :func:`extreme_patches` plus the
    real :func:`busy_patches` of ``files`` (int8 calibration; parity sets keep ``tail=0``).
    """
    arch = metadata.architecture
    channels = int(arch.get("channels", metadata.channels))
    patch = int(arch.get("tile") or arch.get("patch") or metadata.input_shape[-1])
    n_random, n_extremes, n_busy = _tail_counts(count, tail)
    extremes = extreme_patches(channels, patch, seed if n_extremes else 0)[:n_extremes]
    busy = busy_patches(files, channels, patch, n_busy)
    clean = np.concatenate([extract_patches(files, channels, patch, n_random, seed=seed), extremes, busy])
    if metadata.kind == "vae":
        return clean
    rng = np.random.default_rng(seed + 1)
    if n_extremes + n_busy:
        clean = clean[rng.permutation(len(clean))]  # tail patches both clean and destroyed
    half = count // 2
    return np.concatenate([clean[:half], destroy_pixels(clean[half:], rng)])

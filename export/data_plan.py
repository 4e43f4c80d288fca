"""Which images an export calibrates and checks a model on: the model's own training data decides (:func:`plan_data`).

A model trained on a named dataset calibrates on its ``val`` split and is checked on its ``test`` split, which no
training or model selection ever sees; one trained on a folder calibrates on the val files its checkpoint records and
is checked on the folder's other files. The board bundle and the tail tool take their images from the same plan.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from edgeae.metadata import ModelMetadata

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".pgm", ".ppm")
DATASET_FOR_CHANNELS = {3: "rover_rgb", 1: "orbital_gray"}

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


def split_images(metadata: ModelMetadata, split: str, root: str | os.PathLike[str] | None = None) -> list[Path]:
    """Files of the model's dataset ``split`` (``val`` for calibration, ``test`` for parity)."""
    from edgeae.datasets import split_files

    return split_files(dataset_of(metadata), split, root=root)


def tail_frame_files(metadata: ModelMetadata, root: str | os.PathLike[str] | None = None) -> list[Path]:
    """Whole real frames for the tail check of a model of a named dataset: its test split plus
    :data:`TAIL_EXTRA_FRAMES` (any model: ``plan_data(...).tail``)."""
    from edgeae.data import data_root

    files = split_images(metadata, "test", root)
    base = data_root(root)
    return files + [base / rel for rel in TAIL_EXTRA_FRAMES.get(dataset_of(metadata), ()) if (base / rel).is_file()]


class FolderSplit(NamedTuple):
    """A folder-trained model's files as its checkpoint records them (:func:`folder_split`)."""

    folder: Path
    train: list[Path]
    val: list[Path]
    unseen: list[Path]  # the folder's other images, which no training used
    ambiguous: list[Path]  # files a recorded bare name may mean, one of several: neither train, val nor unseen
    missing_val: list[str]  # recorded val files not in the folder


def folder_split(metadata: ModelMetadata) -> FolderSplit:
    """The split of a model trained on a folder, by the files its checkpoint records (``extra["train_files"]``,
    ``extra["val_files"]``). The trainers record paths relative to the folder; checkpoints before session 31 record
    bare file names, which still match where one file has the name (a name of several files, ``day1/IMG_0004.png``
    and ``day2/IMG_0004.png``, is ambiguous: those files are left out). A DataNotFoundError when the folder is gone."""
    from edgeae.data import DataNotFoundError

    folder = Path(training_data(metadata))
    if not folder.is_dir():
        raise DataNotFoundError(f"the model was trained on {folder} (its checkpoint's data), not a folder here")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())

    def recorded(key: str) -> list[str]:
        names = metadata.extra.get(key)
        return [str(n) for n in names] if isinstance(names, list) else []

    train_rec, val_rec = recorded("train_files"), recorded("val_files")
    rel = {f.relative_to(folder).as_posix(): f for f in files}
    by_name: dict[str, list[Path]] = {}
    for f in files:
        by_name.setdefault(f.name, []).append(f)
    ambiguous: set[Path] = set()

    def resolve(entries: list[str]) -> tuple[set[Path], list[str]]:
        """Recorded entries -> files: a path relative to the folder first (what the trainers record), else a bare
        name (checkpoints before session 31) that one file has; a name several files have is ambiguous."""
        found: set[Path] = set()
        missing: list[str] = []
        for e in entries:
            if e in rel:
                found.add(rel[e])
            elif "/" not in e and len(by_name.get(e, [])) == 1:
                found.add(by_name[e][0])
            elif "/" not in e and by_name.get(e):
                ambiguous.update(by_name[e])
            else:
                missing.append(e)
        return found, missing

    train, _ = resolve(train_rec)
    val, missing_val = resolve(val_rec)
    train, val = train - ambiguous, val - ambiguous
    return FolderSplit(
        folder,
        [f for f in files if f in train],
        [f for f in files if f in val],
        [f for f in files if f not in train and f not in val and f not in ambiguous],
        [f for f in files if f in ambiguous],
        sorted(missing_val),
    )


@dataclass(frozen=True)
class DataPlan:
    """An export's images: ``calib`` (int8 calibration), ``test`` (parity), ``tail`` (whole frames of the tail
    check), ``train`` (the model's training images the calibration is compared with: the overlap warning), what the
    report records as their sources, and ``notes`` (warnings to give)."""

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


def _same_paths(train: list[Path], calib: list[Path]) -> list[Path]:
    """The ``train`` files that are ``calib`` files by path: with the default calibration (val files, which the
    trainers' split keeps apart from the train files) the only overlap to look for; no training file is read."""
    calib_paths = {Path(os.path.abspath(f)) for f in calib}
    return [f for f in train if Path(os.path.abspath(f)) in calib_paths]


def plan_data(
    metadata: ModelMetadata,
    calib: str | os.PathLike[str] | None = None,
    test: str | os.PathLike[str] | None = None,
    root: str | os.PathLike[str] | None = None,
    calibration: bool = True,
) -> DataPlan:
    """The images an export of ``metadata``'s model calibrates and checks on: the model's own training data decides.

    ``calib`` / ``test``: folders or files of one's own instead. A model trained on a named dataset: its ``val``
    split, its ``test`` split (and for the tail check :data:`TAIL_EXTRA_FRAMES`), under the data ``root``. One
    trained on a folder: the val files its checkpoint records, and the folder's images that are neither its train nor
    its val files; a folder without such images gives its val files for parity too, with a note that they are not
    unseen. ``train``: every training image found here when ``calib`` is given (compared by path and content), else
    only those that are calibration files by path (normally none). ``calibration=False``: the parity and tail sets
    only (the board bundle, the tail tool): ``calib`` stays empty and is not looked for. A missing set raises a
    DataNotFoundError naming it and the option to give instead.
    """
    from edgeae.data import DataNotFoundError, data_root
    from edgeae.datasets import SPLITS, split_files

    data = training_data(metadata)
    own_calib = image_files(Path(calib).resolve()) if calib is not None and calibration else []
    own_test = image_files(Path(test).resolve(), "--test") if test is not None else []
    calib_source = str(Path(calib).resolve()) if calib is not None and calibration else ""
    test_source = str(Path(test).resolve()) if test is not None else ""
    if data not in SPLITS:
        return _folder_plan(metadata, own_calib, calib_source, own_test, test_source, calibration)
    calib_files, test_files, tail = own_calib, own_test, own_test
    if calib is None and calibration:
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
    if calib is None:
        train = _same_paths(train, calib_files)
    return DataPlan(calib_files, calib_source, test_files, test_source, tail, train)


def _ambiguity_note(split: FolderSplit) -> str:
    names = sorted({f.name for f in split.ambiguous})
    return (
        f"{len(names)} file name(s) the checkpoint records ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})"
        f" are each in several subfolders of {split.folder} (it records bare names, as before session 31): which of "
        f"those {len(split.ambiguous)} files were train or val is unknown, so they are left out of calibration and "
        "parity; give --calib DIR / --test DIR, or retrain to record paths"
    )


def _folder_plan(
    metadata: ModelMetadata,
    calib: list[Path],
    calib_source: str,
    test: list[Path],
    test_source: str,
    calibration: bool = True,
) -> DataPlan:
    """:func:`plan_data` for a model trained on a folder; ``calib`` / ``test``: the images given (empty: none)."""
    from edgeae.data import DataNotFoundError

    try:
        split = folder_split(metadata)
    except DataNotFoundError as exc:
        options = (("--calib DIR", calib or not calibration), ("--test DIR", test))
        wanted = " and ".join(o for o, given in options if not given)
        if wanted:
            raise DataNotFoundError(f"{exc}: give {wanted} (images of your own)") from exc
        return DataPlan(calib, calib_source, test, test_source, test, [])
    folder, val, unseen = split.folder, split.val, split.unseen
    notes = [_ambiguity_note(split)] if split.ambiguous else []
    given_calib = bool(calib)
    if not calib and calibration:
        if not val:
            why = f" (its {len(split.ambiguous)} files of ambiguous names are left out)" if split.ambiguous else ""
            raise DataNotFoundError(
                f"none of the model's val files is in {folder}{why}: give --calib DIR (its val images)"
            )
        calib, calib_source = val, f"the model's {len(val)} val files in {folder}"
        missing = split.missing_val
        if missing:
            recorded = metadata.extra.get("val_files")
            n_recorded = len(recorded) if isinstance(recorded, list) else len(missing) + len(val)
            notes.append(
                f"{len(missing)} of the model's {n_recorded} val files are no longer in {folder} "
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
    train = split.train if given_calib else _same_paths(split.train, calib)
    return DataPlan(calib, calib_source, test, test_source, test, train, tuple(notes))

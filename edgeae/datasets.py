"""Named file splits of the shared planetary data. Splits are by file (never by tile of one file).

Every entry is a path relative to the data root (``../shared/data`` or ``$EDGEAE_DATA``). The ``test`` files
are never used for training or model selection anywhere in edgeae; README figures are measured on them.
"""

from __future__ import annotations

import os
from pathlib import Path

from edgeae.data import DataNotFoundError, data_root

SPLITS: dict[str, dict[str, tuple[str, ...]]] = {
    # Mastcam / Mastcam-Z / Navcam colour scenes for the RGB gt-CAE.
    "rover_rgb": {
        "train": (
            "rover_rgb/marsscapes/image/137_1.png",
            "rover_rgb/marsscapes/image/344_2.png",
            "rover_rgb/marsscapes/image/351_1.png",
            "rover_rgb/marsscapes/image/371_2.png",
        ),
        "val": ("rover_rgb/marsscapes/image/410_2.png",),
        "test": (
            "rover_rgb/marsscapes/image/416_1.png",
            "rover_rgb/marsdata_rocks/img_1101.png",
            "rover_rgb/marsdata_rocks/img_332.png",
            "rover_rgb/marsdata_rocks/img_336.png",
            "rover_rgb/marsdata_rocks/img_538.png",
            "rover_rgb/mars2020_raw/ZR0_0897_0746567741_568ECM_N0440820ZCAM08906_1100LMJ02-rjcal-rad.jpg",
            "rover_rgb/mars2020_raw/NLF_0670_0726421423_362ECM_N0320604NCAM08111_01_095J01.png",
        ),
        # Raw Mastcam-Z frames, never trained on: the flight runtime's camera frames. Not a reconstruction
        # test image: ZL0 is an undemosaiced colour-filter-array frame (values repeat in a 2×2 Bayer pattern).
        "flight": ("rover_rgb/mars2020_raw/ZL0_0038_0670307360_057ECM_N0031392ZCAM08007_1100LUJ.png",),
    },
    # Grey orbital tiles (Moon, Mars, Mercury) for the grey gt-CAE and the VAE.
    # lroc_nac_craters is held out entirely: it is the labelled anomaly-evaluation set.
    "orbital_gray": {
        "train": (
            "orbital_gray/pycda/selection0.png",
            "orbital_gray/pycda/selection2.png",
            "orbital_gray/pycda/selection3.png",
            "orbital_gray/pycda/selection4.png",
            "orbital_gray/pycda/selection5.png",
            "orbital_gray/hirise_browse/ESP_073435_1870_RED.NOMAP.browse.jpg",
            "orbital_gray/hirise_browse/ESP_073481_1350_RED.NOMAP.browse.jpg",
        ),
        "val": (
            "orbital_gray/hirise_browse/ESP_073496_0985_RED.NOMAP.browse.jpg",
            "orbital_gray/pycda/mercury.png",
        ),
        "test": (
            "orbital_gray/misc/Tycho_LRO.png",
            "orbital_gray/lroc_nac_craters/M115143943_mosaic_train_small.png",
            "orbital_gray/lroc_nac_craters/M1155395732_mosaic_train_small.png",
            "orbital_gray/lroc_nac_craters/M1183658592_mosaic_train_small.png",
            "orbital_gray/lroc_nac_craters/M1229577647_mosaic_train_small.png",
        ),
    },
}

# train_extra/ (see ../shared/data/README.md): training and validation only, never test. Split by whole file;
# every sixth panorama (in sol order) and two CTX tiles are validation. The test splits are the ones above, kept
# exactly as they are so numbers stay comparable across model generations.
_EXTRA_PANORAMAS = (
    "122", "147", "176", "323", "343", "349", "369", "374", "384", "389", "401", "409", "419", "429", "456", "470",
    "488", "508", "519", "526", "538", "546", "550", "555", "566", "593", "630", "689", "729", "740", "803", "1078",
    "1099", "1144", "1172", "1187", "1216", "1267",
)  # fmt: skip
_PANO = "train_extra/marsscapes_panoramas/image/{}_1.png"
_EXTRA_PANO_VAL = tuple(_PANO.format(s) for i, s in enumerate(_EXTRA_PANORAMAS) if i % 6 == 3)
_EXTRA_PANO_TRAIN = tuple(_PANO.format(s) for i, s in enumerate(_EXTRA_PANORAMAS) if i % 6 != 3)
_CTX = "train_extra/ctx_craters_yolov3/CTX/resized_CTX/CTX{}_1248.png"
_HIRISE_EXTRA = "train_extra/hirise_browse_extra/Mars/ESP_072719_1970_RED.browse.jpg"

SPLITS["rover_rgb_v2"] = {
    "train": SPLITS["rover_rgb"]["train"] + _EXTRA_PANO_TRAIN,
    "val": SPLITS["rover_rgb"]["val"] + _EXTRA_PANO_VAL,
    "test": SPLITS["rover_rgb"]["test"],
    "flight": SPLITS["rover_rgb"]["flight"],
}
SPLITS["orbital_gray_v2"] = {
    "train": SPLITS["orbital_gray"]["train"]
    + tuple(_CTX.format(rc) for rc in ("00", "01", "02", "10", "12", "20", "21"))
    + (_HIRISE_EXTRA,),
    "val": SPLITS["orbital_gray"]["val"] + tuple(_CTX.format(rc) for rc in ("11", "22")),
    "test": SPLITS["orbital_gray"]["test"],
}

# MSL surface set v1 (train_extra/msl_surface_v1_train): 3,746 labelled browse images, split by sol because
# images of one sol often show the same scene. Class 8 (``ground``) is the normal surface.
MSL_SURFACE_DIR = "train_extra/msl_surface_v1_train"
MSL_GROUND_CLASS = 8
# Rover hardware, calibration targets and drill holes: the rare, human-made features (classes of
# msl_synset_words-indexed.txt). Horizon (9) and sun (22) are natural scenes, left out of both sides.
MSL_HARDWARE_CLASSES = frozenset(range(0, 8)) | frozenset(range(10, 22)) | frozenset({23, 24})


def msl_split_of_sol(sol: int) -> str:
    """``val`` for every fourth sol (sol % 4 == 1), ``train`` otherwise: a whole-sol split."""
    return "val" if sol % 4 == 1 else "train"


def msl_surface_items(
    split: str | None = None, root: str | os.PathLike[str] | None = None
) -> list[tuple[Path, int, int]]:
    """``(path, class, sol)`` of the MSL surface images, optionally only those of one sol split."""
    base = data_root(root) / MSL_SURFACE_DIR
    listing = base / "train-calibrated-shuffled.txt"
    if not listing.is_file():
        raise DataNotFoundError(f"{listing} is missing from the data folder")
    items: list[tuple[Path, int, int]] = []
    for n, line in enumerate(listing.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:  # refused, not skipped: a skipped line would drop an image unaccounted for
            raise ValueError(f"{listing}:{n}: expected '<image> <class>', got {line!r}")
        rel, cls = parts
        sol_text = Path(rel).name[:4]
        if not (sol_text.isdigit() and cls.isdigit()):
            raise ValueError(f"{listing}:{n}: expected '<SSSS...image> <class>' (a 4-digit sol, a class number), "
                             f"got {line!r}")  # fmt: skip
        sol = int(sol_text)
        if split is None or msl_split_of_sol(sol) == split:
            items.append((base / rel, int(cls), sol))
    items.sort(key=lambda t: t[0].name)
    return items


# rover_rgb_msl: rover_rgb_v2 plus every other colour MSL browse image of the training sols whose short side is at
# least MSL_MIX_MIN_SIDE px (room for a 128-px crop under the trainer's scale/rotation augmentation): 661 Mastcam
# and MAHLI images of scenes and lighting the panoramas lack (issue 11: it lifts the ground CAE from -1.1 dB to
# +0.08 dB over the best classical fill on the 424 validation-sol images). The listing is packaged (reading 2,474
# image headers at every import would be slow and needs the data); msl_colour_browse() is the rule that made it,
# and tests/test_datasets_msl_mix.py checks they agree. Validation and test stay rover_rgb_v2's.
MSL_MIX_MIN_SIDE = 211
MSL_MIX_LISTING = Path(__file__).with_name("datasets_rover_rgb_msl.txt")


def msl_colour_browse(
    split: str, root: str | os.PathLike[str] | None = None, every: int = 2, start: int = 0
) -> tuple[str, ...]:
    """Every ``every``-th colour MSL browse image of ``split`` (name order, from the ``start``-th) with short side >=
    MSL_MIX_MIN_SIDE."""
    from PIL import Image

    base = data_root(root)
    keep = []
    for path, _cls, _sol in msl_surface_items(split, root):
        with Image.open(path) as im:  # the header only: no pixels decoded
            if im.mode == "RGB" and min(im.size) >= MSL_MIX_MIN_SIDE:
                keep.append(path.relative_to(base).as_posix())
    return tuple(keep[start::every])


SPLITS["rover_rgb_msl"] = {
    "train": SPLITS["rover_rgb_v2"]["train"] + tuple(MSL_MIX_LISTING.read_text().split()),
    "val": SPLITS["rover_rgb_v2"]["val"],
    "test": SPLITS["rover_rgb_v2"]["test"],
}

# rover_rgb_msl_all: rover_rgb_msl plus the other half of those images (msl_colour_browse(start=1), packaged as
# MSL_MIX_OTHER_LISTING): every colour browse image of the training sols with room for a crop, 1,322. Validation and
# test stay rover_rgb_v2's.
MSL_MIX_OTHER_LISTING = Path(__file__).with_name("datasets_rover_rgb_msl_other.txt")
SPLITS["rover_rgb_msl_all"] = {
    "train": SPLITS["rover_rgb_msl"]["train"] + tuple(MSL_MIX_OTHER_LISTING.read_text().split()),
    "val": SPLITS["rover_rgb_v2"]["val"],
    "test": SPLITS["rover_rgb_v2"]["test"],
}


# orbital_gray_lunar: orbital_gray_v2 plus the two LROC NAC mosaics kept apart for the VAE's λ
# (edgeae.train.vae_calibrate.LAMBDA_FILES; tests/test_datasets_lunar.py checks they are the same two files), the
# only lunar NAC images outside every test figure (validation figures only: λ, planted_blocks' val split): the first
# trains the CAE, the second validates it. No other training file is lunar NAC (the grey test split is), so the
# training one is listed LUNAR_REPEAT times: crops are drawn in proportion to valid area, and 16 copies make ~1/5 of
# the crops lunar. Test unchanged. A fine-tune on it (session 43) was tried and not shipped: docs/training.md.
LUNAR_REPEAT = 16
LUNAR_TRAIN = "orbital_gray/lroc_nac_craters/M1266003170_mosaic_train_small.png"
LUNAR_VAL = "orbital_gray/lroc_nac_craters/M1275410097_mosaic_train_small.png"
SPLITS["orbital_gray_lunar"] = {
    "train": SPLITS["orbital_gray_v2"]["train"] + (LUNAR_TRAIN,) * LUNAR_REPEAT,
    "val": SPLITS["orbital_gray_v2"]["val"] + (LUNAR_VAL,),
    "test": SPLITS["orbital_gray_v2"]["test"],
}

# The rover frame the demo shows: calibrated Mastcam-Z colour, never trained on.
DEMO_FRAME = "rover_rgb/mars2020_raw/ZR0_0897_0746567741_568ECM_N0440820ZCAM08906_1100LMJ02-rjcal-rad.jpg"


def split_files(
    dataset: str, split: str, root: str | os.PathLike[str] | None = None, must_exist: bool = True
) -> list[Path]:
    """Absolute paths of one split; raises :class:`DataNotFoundError` naming a missing file."""
    if dataset not in SPLITS:
        raise KeyError(f"unknown dataset {dataset!r}; known: {sorted(SPLITS)}")
    if split not in SPLITS[dataset]:
        raise KeyError(f"unknown split {split!r} of {dataset}; known: {sorted(SPLITS[dataset])}")
    base = data_root(root)
    files = [base / rel for rel in SPLITS[dataset][split]]
    if must_exist:
        for f in files:
            if not f.is_file():
                raise DataNotFoundError(f"{f} (split {dataset}/{split}) is missing from the data folder")
    return files

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

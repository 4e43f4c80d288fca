"""The VAE trainer's images: a named dataset's train files (plus HiRISE class-0 crops or MSL ``ground`` images of
the train sols) and its val split, or a folder split by file as the CAE trainer splits it.

The evaluation patches are never among them (:mod:`edgeae.train.vae` describes each dataset).
"""

from __future__ import annotations

from pathlib import Path

from edgeae.train.vae_config import DATASETS, VAETrainConfig

HIRISE_DIR = "hirise_landmarks"
MSL_MIN_SIDE = 128  # MSL browse images narrower than this cannot give augmented 64-px crops


def msl_ground_files(root: Path, split: str = "train") -> list[Path]:
    """MSL surface images of class ``ground`` of one sol split, at least :data:`MSL_MIN_SIDE` px on each side."""
    from edgeae.datasets import MSL_GROUND_CLASS, msl_surface_items
    from edgeae.imageio import image_shape

    out = []
    for path, cls, _ in msl_surface_items(split, root):
        if cls == MSL_GROUND_CLASS:
            h, w, _c = image_shape(path)
            if min(h, w) >= MSL_MIN_SIDE:
                out.append(path)
    return out


def training_files(root: Path, hirise: bool = True, data: str = "orbital_gray", msl_ground: bool = False) -> list[Path]:
    """The training images of ``data``: its train split, plus HiRISE class-0 crops of the training products
    (grey, ``hirise``) or MSL ``ground`` images of the train sols (RGB, ``msl_ground``)."""
    from edgeae.anomaly.labels import hirise_product, hirise_training_products, read_hirise_labels
    from edgeae.datasets import split_files

    files = split_files(data, "train", root)
    if hirise and DATASETS[data] == 1:
        labels = read_hirise_labels(root / HIRISE_DIR / "labels.txt")
        products = hirise_training_products(labels)
        files += [root / HIRISE_DIR / "images" / f for f, c in labels if c == 0 and hirise_product(f) in products]
    if msl_ground and DATASETS[data] == 3:
        files += msl_ground_files(root, "train")
    return files


def data_files(config: VAETrainConfig, root: Path) -> tuple[list[Path], list[Path]]:
    """(train files, val files) of ``config.data``: a named dataset's (:func:`training_files`, its val split), or a
    folder split by file exactly as ``edgeae train cae`` splits it (:func:`edgeae.train.cae_config.split_data`)."""
    from edgeae.datasets import split_files

    if config.is_folder:
        from edgeae.train.cae_config import CAETrainConfig, split_data

        return split_data(CAETrainConfig(data=config.data, out=config.out))
    files = training_files(root, config.hirise, config.data, config.msl_ground)
    return files, split_files(config.data, "val", root)

"""orbital_gray_lunar: orbital_gray_v2 plus the two LROC NAC mosaics the VAE's λ keeps apart, one to train (weighted
by repetition) and one to validate; no test file anywhere in training or validation, test unchanged."""

from __future__ import annotations

from pathlib import Path

from edgeae.datasets import LUNAR_REPEAT, LUNAR_TRAIN, LUNAR_VAL, SPLITS


def test_the_lunar_files_are_the_ones_kept_apart_for_lambda() -> None:
    from edgeae.train.vae_calibrate import LAMBDA_FILES

    assert {LUNAR_TRAIN, LUNAR_VAL} == set(LAMBDA_FILES)


def test_splits_extend_v2_and_keep_test_apart() -> None:
    lunar, v2 = SPLITS["orbital_gray_lunar"], SPLITS["orbital_gray_v2"]
    assert lunar["train"] == v2["train"] + (LUNAR_TRAIN,) * LUNAR_REPEAT
    assert lunar["val"] == v2["val"] + (LUNAR_VAL,)
    assert lunar["test"] == v2["test"] == SPLITS["orbital_gray"]["test"]
    test_names = {Path(p).name for ds in SPLITS.values() for p in ds.get("test", ())}
    assert not test_names & {Path(p).name for p in lunar["train"] + lunar["val"]}
    assert LUNAR_VAL not in lunar["train"] and LUNAR_TRAIN not in lunar["val"]


def test_about_a_fifth_of_the_training_pixels_are_lunar(data_root: Path) -> None:
    """Crops are drawn in proportion to valid area: by header sizes (no-data not counted out, so the true lunar
    share is a little higher) the repeated mosaic holds 15-30 % of the training pixels."""
    from PIL import Image

    def area(rel: str) -> int:
        with Image.open(data_root / rel) as im:
            return im.size[0] * im.size[1]

    train = SPLITS["orbital_gray_lunar"]["train"]
    lunar = sum(area(r) for r in train if r == LUNAR_TRAIN)
    share = lunar / sum(area(r) for r in train)
    assert 0.15 < share < 0.30, share


def test_the_trainer_knows_its_channels() -> None:
    from edgeae.train.cae_config import DATASET_CHANNELS

    assert DATASET_CHANNELS["orbital_gray_lunar"] == 1

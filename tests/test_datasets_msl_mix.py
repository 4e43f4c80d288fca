"""rover_rgb_msl: the packaged listing of MSL browse images is exactly what its rule selects from the data, the
training sols only, and validation/test stay rover_rgb_v2's (numbers stay comparable)."""

from __future__ import annotations

from pathlib import Path

from edgeae import datasets
from edgeae.datasets import MSL_MIX_LISTING, SPLITS, msl_colour_browse, msl_split_of_sol


def test_listing_is_what_the_rule_selects(data_root: Path) -> None:
    listed = tuple(MSL_MIX_LISTING.read_text().split())
    assert listed == msl_colour_browse("train", data_root)
    assert len(listed) == 661


def test_listing_holds_training_sols_only_and_keeps_val_and_test() -> None:
    msl = SPLITS["rover_rgb_msl"]["train"][len(SPLITS["rover_rgb_v2"]["train"]) :]
    assert len(msl) == len(set(msl)) > 600
    assert all(rel.startswith(datasets.MSL_SURFACE_DIR + "/") for rel in msl)
    assert {msl_split_of_sol(int(Path(rel).name[:4])) for rel in msl} == {"train"}
    assert SPLITS["rover_rgb_msl"]["train"][: len(SPLITS["rover_rgb_v2"]["train"])] == SPLITS["rover_rgb_v2"]["train"]
    for split in ("val", "test"):
        assert SPLITS["rover_rgb_msl"][split] == SPLITS["rover_rgb_v2"][split]
    test_names = {Path(p).name for ds in SPLITS.values() for p in ds.get("test", ())}
    assert not test_names & {Path(p).name for p in msl}


def test_the_trainer_knows_its_channels() -> None:
    from edgeae.train.cae_config import DATASET_CHANNELS

    assert DATASET_CHANNELS["rover_rgb_msl"] == 3


def test_the_other_half_is_what_the_rule_selects(data_root: Path) -> None:
    from edgeae.datasets import MSL_MIX_OTHER_LISTING

    other = tuple(MSL_MIX_OTHER_LISTING.read_text().split())
    assert other == msl_colour_browse("train", data_root, start=1)
    assert len(other) == 661
    every = msl_colour_browse("train", data_root, every=1)
    assert sorted(every) == sorted(tuple(MSL_MIX_LISTING.read_text().split()) + other)


def test_rover_rgb_msl_all_adds_the_other_half_only() -> None:
    base, all_ = SPLITS["rover_rgb_msl"], SPLITS["rover_rgb_msl_all"]
    assert all_["train"][: len(base["train"])] == base["train"]
    added = all_["train"][len(base["train"]) :]
    assert len(added) == len(set(added)) == 661
    assert not set(added) & set(base["train"])
    assert {msl_split_of_sol(int(Path(rel).name[:4])) for rel in added} == {"train"}
    for split in ("val", "test"):
        assert all_[split] == SPLITS["rover_rgb_v2"][split]

    from edgeae.train.cae_config import DATASET_CHANNELS

    assert DATASET_CHANNELS["rover_rgb_msl_all"] == 3

"""The "not used for training" line stays short whatever the folder holds (review s37 r10 #4: 300 numbered
suffixes gave a 5.3 KB line)."""

from __future__ import annotations

from pathlib import Path

from edgeae.train.cae_config import _not_used


def test_many_suffixes_are_summed_up_not_listed() -> None:
    line = _not_used([Path(f"x.{i:03d}") for i in range(300)] + [Path("a.npy")], (".png",))
    assert len(line) < 600
    assert "301 image(s) not used for training" in line and "more with" in line
    assert ".npy frames (which firmware-sim flies) are not read for training" in line  # the advice kept


def test_a_few_suffixes_are_each_named() -> None:
    line = _not_used([Path("a.npy"), Path("b.npy"), Path("c.txt")], (".png",))
    assert "2 .npy: a.npy, b.npy; 1 .txt: c.txt" in line and "more with" not in line

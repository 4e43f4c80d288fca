"""Labels to patches: crater centres in patches, size bins, HiRISE product split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeae.anomaly.labels import (
    hirise_product,
    hirise_training_products,
    largest_crater,
    patch_labels,
    read_craters,
    read_hirise_labels,
)


def test_read_craters_and_patch_labels(tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_text("ID,X,Y,W,H,C_X,CY\n0,10,10,8,8,14,14\n1,60.0,0.0,40.0,30.0,80.0,15.0\n")
    c = read_craters(f)
    np.testing.assert_allclose(c, [[14, 14, 8], [80, 15, 40]])
    # a centre belongs to [x, x + 64): (17, 0) holds cx = 80, (16, 0) does not (80 is its right edge)
    xy = np.array([[0, 0], [64, 0], [14, 14], [17, 0], [0, 64], [16, 0]])
    np.testing.assert_array_equal(patch_labels(xy, 64, c), [True, True, True, True, False, False])
    np.testing.assert_array_equal(patch_labels(xy, 64, c, d_min=16), [False, True, False, True, False, False])
    np.testing.assert_array_equal(largest_crater(xy, 64, c), [8, 40, 8, 40, 0, 0])
    f.write_text("ID,X\n1,2\n")
    with pytest.raises(ValueError, match="7 fields"):
        read_craters(f)


def test_hirise_split_is_by_product_and_keeps_positives(tmp_path: Path) -> None:
    f = tmp_path / "labels.txt"
    lines = [f"ESP_{i:06d}_1000_RED-{j:04d}.jpg {c}" for i in range(40) for j, c in enumerate((0, 0, 6))]
    lines += ["ESP_000001_1000_RED-0099.jpg 1"]  # product 1 holds a crater: never a training product
    f.write_text("\n".join(lines) + "\n")
    labels = read_hirise_labels(f)
    assert hirise_product(labels[0][0]) == "ESP_000000_1000"
    train = hirise_training_products(labels)
    assert "ESP_000001_1000" not in train
    assert 8 < len(train) < 32  # about half of the 39 landmark-free products
    assert train == hirise_training_products(list(reversed(labels)))


def test_real_lroc_labels(data_root: Path) -> None:
    c = read_craters(data_root / "orbital_gray/lroc_nac_craters/M1155395732_mosaic_train_small.txt")
    assert c.shape == (889, 3)
    assert c[:, 2].min() >= 7

"""benchmarks.grey_validation (session 43): a grey candidate's margin over the best classical fill on validation
files, with masks seeded by the file's name (a file's figure does not depend on which other files are listed)."""

from __future__ import annotations

import numpy as np

from benchmarks import grey_validation as gv


def test_mask_seeds_follow_the_name_not_the_order() -> None:
    assert gv.mask_seed("a.png", 0) == gv.mask_seed("a.png", 0) != gv.mask_seed("a.png", 1)
    assert gv.mask_seed("a.png", 0) != gv.mask_seed("b.png", 0)


def test_margins_are_model_minus_best_classical_and_render() -> None:
    from edgeae.predictor import load_predictor

    yy, xx = np.mgrid[0:96, 0:96]
    img = (0.5 + 0.3 * np.sin(xx / 7.0) * np.cos(yy / 5.0)).astype(np.float32)
    pred = {"orbital-gray-unet2-ground": load_predictor("orbital-gray-unet2-ground", threads=1)}
    r = gv.margins(img, "x.png", pred, keep=0.1, masks=2)
    assert set(r) == {"orbital-gray-unet2-ground", "best classical"}
    assert np.isfinite(r["orbital-gray-unet2-ground"]["margin_db"]) and r["best classical"]["psnr"] > 10
    assert gv.margins(img, "x.png", pred, keep=0.1, masks=2) == r  # fixed seeds: exact
    result = {"data_set": "d", "crop": 96, "keep": 0.1, "masks": 2, "models": list(pred), "per_file": {"x.png": r},
              "mean_margin_db": {m: r[m]["margin_db"] for m in pred}, "command": "c", "seconds": 1.0}  # fmt: skip
    md = gv.markdown(result)
    assert "| x.png |" in md and f"{r['orbital-gray-unet2-ground']['margin_db']:+.3f}" in md

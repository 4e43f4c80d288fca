"""Session 38 (v1, audit a2 finding 5): a model whose rebuild is its own normconv pre-fill on every image (a
collapsed U-Net) is marked so in the acceptance tables, whatever it ranks."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.acceptance_report import markdown, prefill_copies


def _row(psnr: float) -> dict[str, float]:
    return {"psnr": psnr, "ssim": 0.5}


# the committed run's grey test crops (benchmarks/results/reconstruction/acceptance, session 37): orbital-gray-gtunet
# against normconv 19.161 / 19.161, 21.983 / 21.983, 20.635 / 20.641, ...
PER = {
    "a.png": {"g-unet2": _row(19.9), "g-gtunet": _row(19.161), "normconv": _row(19.161), "linear": _row(19.0)},
    "b.png": {"g-unet2": _row(22.5), "g-gtunet": _row(21.983), "normconv": _row(21.983), "linear": _row(21.7)},
    "c.png": {"g-unet2": _row(21.2), "g-gtunet": _row(20.635), "normconv": _row(20.641), "linear": _row(20.7)},
}


def test_only_the_model_equal_to_normconv_on_every_image_is_marked() -> None:
    assert prefill_copies(PER, ["g-unet2", "g-gtunet"]) == ["g-gtunet"]
    other = {n: {**r, "g-gtunet": _row(r["normconv"]["psnr"] + (0.3 if n == "b.png" else 0.0))} for n, r in PER.items()}
    assert prefill_copies(other, ["g-unet2", "g-gtunet"]) == []  # ahead of it on one image: learned something
    assert prefill_copies({"a.png": {"m": _row(20.0)}}, ["m"]) == []  # no normconv row: nothing to compare


def test_the_grey_table_says_the_row_is_collapsed() -> None:
    from benchmarks.acceptance_report import summarise

    result = {
        "acceptance": [],
        "rover": {},
        "gray_models": ["g-unet2", "g-gtunet"],
        "gray": {"per_image": PER, **summarise(PER, ["g-unet2", "g-gtunet"])},
        "command": "x",
        "seconds_total": 1.0,
        "machine": {},
        "load_1min": {"before": 0, "after": 0},
    }
    md = markdown(result)
    assert "| g-gtunet (= its normconv pre-fill on every image: collapsed) | 20.59 |" in md
    assert "| g-unet2 | 21.20 |" in md

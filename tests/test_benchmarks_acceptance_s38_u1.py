"""Session 38, fixer u1 (audit a1 #2): `python benchmarks/reconstruction_acceptance.py --out DIR` runs the shipped
set of models the README's acceptance table reports (the stage's command), not the previous default alone."""

from __future__ import annotations

import os
from pathlib import Path

from benchmarks import reconstruction_acceptance as ra
from benchmarks.stages import RECON_ACCEPT

ROOT = Path(__file__).resolve().parents[1]


def _models(args: object, attr: str) -> list[Path]:
    from edgeae.predictor import resolve_model_path

    here = os.getcwd()
    os.chdir(ROOT)  # the stage's relative artifact paths are the repository's (a stage runs there)
    try:
        return [resolve_model_path(m).resolve() for m in getattr(args, attr).split(",") if m]
    finally:
        os.chdir(here)


def test_the_acceptance_scripts_defaults_are_the_stage_that_makes_the_readme_table(tmp_path: Path) -> None:
    """`python benchmarks/reconstruction_acceptance.py --out DIR` runs the models of the published table (until
    session 38 its default was rover-rgb-gtunet alone, judged as the default ground model)."""
    stage = ra.parse_args([a.replace("{out}", str(tmp_path)) for a in RECON_ACCEPT[2:]])
    plain = ra.parse_args(["--out", str(tmp_path)])
    for attr in ("rover_models", "gray_models"):
        assert _models(plain, attr) == _models(stage, attr), attr
    assert ra.judged_models(plain) == ra.judged_models(stage) == ("rover-rgb-unet2-ground", "rover-rgb-unet2-flight")
    assert (plain.keeps, plain.crop, plain.adapt_steps, plain.cross_check) == (
        stage.keeps, stage.crop, stage.adapt_steps, stage.cross_check)  # fmt: skip


def test_other_rover_models_keep_their_own_default_and_no_flight_model(tmp_path: Path) -> None:
    """docs/training.md's run of two ground models: the first is the default, and no flight model is judged."""
    args = ra.parse_args(["--out", str(tmp_path), "--rover-models", "rover-rgb-unet2-ground,runs/plane/p.pt"])
    assert ra.judged_models(args) == ("rover-rgb-unet2-ground", None)
    args = ra.parse_args(["--out", str(tmp_path), "--rover-models", "rover-rgb-gtunet,rover-rgb-unet2-flight"])
    assert ra.judged_models(args) == ("rover-rgb-gtunet", "rover-rgb-unet2-flight")
    args = ra.parse_args(["--out", str(tmp_path), "--rover-models", "a.pt,b.pt", "--flight-model", "b.pt"])
    assert ra.judged_models(args) == ("a.pt", "b.pt")


def test_no_rover_models_runs_the_grey_files_alone(tmp_path: Path, data_root: Path) -> None:
    """Session 43: `--rover-models ''` (a grey candidate measured alone) used to score every rover image with the
    classical fills and then crash in the verdicts; now it runs the grey test files only."""
    import json

    args = ["--out", str(tmp_path), "--rover-models", "", "--gray-models", "orbital-gray-unet2-ground",
            "--skip-demo", "--crop", "128", "--threads", "1", "--data", str(data_root)]  # fmt: skip
    assert ra.main(args) == 0
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["rover"] == {} and "smooth" not in result and "demo" not in result
    assert len(result["gray"]["per_image"]) == 5
    assert [v["check"].split(":")[0] for v in result["acceptance"]] == ["orbital-gray-unet2-ground"]

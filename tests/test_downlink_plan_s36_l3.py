"""``downlink plan`` (review s36 r15 #3, #4): a budget that sends no sample is refused up front, every budget from
the floor sends one for sparse and prioritised, and tests for the up-front refusals and report.json's config."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from edgeae.cli import main
from edgeae.ground import science
from edgeae.ground.budget_downlink import PlanConfig, budget_floor, plan
from edgeae.ground.feature_sets import LabelledFrame
from edgeae.ground.sources import sparse_from_samples

cv2 = pytest.importorskip("cv2")


def _image(tmp_path: Path, shape: tuple[int, ...], name: str = "g.png") -> Path:
    path = tmp_path / name
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8))
    return path


def _no_work(monkeypatch) -> None:
    def fail(*a, **k):
        raise AssertionError("planning started before the refusal")

    monkeypatch.setattr(science, "evaluate", fail)
    monkeypatch.setattr(science, "run_sets", fail)


def _plan(image: Path, *extra: str) -> list[str]:
    return ["downlink", "plan", "--image", str(image), "--links", "perfect", *extra]


def _budget_refusal(monkeypatch, capsys, image: Path, budgets: str, methods: str) -> str:
    """The one line of ``downlink plan --budgets BUDGETS --methods METHODS`` of ``image``, refused (exit 2) before
    any planning or model loading (no models: load_models and the channel check stubbed out)."""
    from edgeae.cli import downlink_plan

    _no_work(monkeypatch)
    monkeypatch.setattr(downlink_plan, "_check_channels", lambda *a: None)
    monkeypatch.setattr(science, "load_models", lambda *a, **k: (None, None))
    rc = main(_plan(image, "--budgets", budgets, "--methods", methods))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    return err[0]


def test_every_budget_from_the_floor_sends_a_sample() -> None:
    """Budgets of 71-98 B sent one 70-B packet of no sample (the keep search missed the few-sample keeps)."""
    logging.disable(logging.WARNING)
    try:
        s = np.random.default_rng(0).integers(0, 256, (64, 64, 1), dtype=np.uint8)
        frame = LabelledFrame("g", "image", s, 32, np.zeros((0, 2), np.int64), "-")
        cfg = PlanConfig()
        floor, why = budget_floor(frame, ("sparse", "prioritised"), cfg)
        assert floor == 71 and "one sample" in why
        scores = np.zeros(len(frame.grid()))
        for budget in range(floor, floor + 30, 3):
            for method in ("sparse", "prioritised"):
                sent = plan(frame, scores, budget, method, cfg)
                n = sparse_from_samples(s, 8, sent.keep, cfg.mask_seed).values.shape[0]
                assert n >= 1 and sent.wire_bytes <= budget, (budget, method, n, sent.wire_bytes)
    finally:
        logging.disable(logging.NOTSET)


def test_an_rgb_budget_under_one_sample_is_refused(tmp_path: Path, capsys, monkeypatch) -> None:
    """An RGB sample takes 3 B: 72 B passed the old floor (one packet + 1 B) and sent no sample."""
    img = _image(tmp_path, (64, 64, 3))
    err = _budget_refusal(monkeypatch, capsys, img, repr(72 / 12288), "sparse,prioritised")
    assert "72 bytes per frame" in err and "one packet with one sample (73 B" in err


def test_a_jpeg2000_budget_under_the_smallest_file_is_refused(tmp_path: Path, capsys, monkeypatch) -> None:
    img = _image(tmp_path, (64, 64))
    frame = LabelledFrame("g", "image", cv2.imread(str(img), 0)[..., None], 64, np.zeros((0, 2), np.int64), "-")
    floor, _ = budget_floor(frame, ("jpeg2000",), PlanConfig())
    assert floor > 200  # well over one packet with a sample
    err = _budget_refusal(monkeypatch, capsys, img, repr(150 / 4096), "jpeg2000")
    assert "150 bytes per frame" in err and "the smallest JPEG 2000 file of the frame" in err


def _zoo(name: str) -> None:
    from edgeae.predictor import resolve_model_path

    try:
        resolve_model_path(name)
    except Exception:
        pytest.skip(f"the zoo model {name} is not installed")


def test_an_rgb_scorer_on_a_grey_image_is_refused_before_any_work(tmp_path: Path, capsys, monkeypatch) -> None:
    _zoo("rover-rgb-vae")
    img = _image(tmp_path, (64, 64))
    _no_work(monkeypatch)

    def no_load(*a, **k):
        raise AssertionError("models loaded for planning before the refusal")

    monkeypatch.setattr(science, "load_models", no_load)
    rc = main(_plan(img, "--scorer", "rover-rgb-vae"))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert "--scorer rover-rgb-vae takes RGB (3 channels) frames" in err[0] and "is grey (1 channel)" in err[0]


def test_a_grey_model_on_mixed_sets_is_refused_before_any_set_is_planned(capsys, monkeypatch) -> None:
    _zoo("orbital-gray-unet2-ground")
    _no_work(monkeypatch)
    try:
        rc = main(["downlink", "plan", "--quick", "--set", "lroc-nac", "--set", "rover-planted", "--model",
                   "orbital-gray-unet2-ground", "--links", "perfect"])  # fmt: skip
    except (FileNotFoundError, OSError) as exc:
        pytest.skip(f"the labelled sets' data is not here: {exc}")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert "--model orbital-gray-unet2-ground takes grey (1 channel) frames; --set rover-planted is RGB" in err[0]


def test_report_json_holds_the_run_config(tmp_path: Path, monkeypatch) -> None:
    from edgeae.cli import downlink_plan

    img = _image(tmp_path, (64, 64))
    monkeypatch.setattr(downlink_plan, "_check_channels", lambda *a: None)
    monkeypatch.setattr(science, "load_models", lambda *a, **k: (None, None))
    monkeypatch.setattr(science, "evaluate", lambda *a, **k: [])
    monkeypatch.setattr(science, "markdown", lambda rows: "| table |")
    out = tmp_path / "o"
    rc = main(_plan(img, "--budgets", "0.5", "--methods", "jpeg2000,sparse", "--seeds", "3", "--out", str(out)))
    assert rc == 0
    config = json.loads((out / "report.json").read_text())["config"]
    assert config["methods"] == ["jpeg2000", "sparse"] and config["budgets"] == [0.5]
    assert set(config["links"]) == {"perfect"} and isinstance(config["links"]["perfect"], dict)
    assert config["seeds"] == 3 and config["image"] == str(img)
    assert config["model"] == science.models_for(1)[0] and config["scorer"] == science.models_for(1)[1]
    assert config["score"] == science.SCORES[1] and config["patch"] == 64
    assert config["max_packet"] == 1024 and config["patch_share"] == 0.5

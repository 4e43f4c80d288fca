"""Session 37 f1 item 4: downlink plan and simulate --compare load each model once (the channel check's model is
the one the run uses)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")


def _counting(monkeypatch, channels: int = 1) -> list[str]:
    import edgeae.predictor

    calls: list[str] = []

    def load(spec, threads=None, device="cpu"):
        calls.append(str(spec))
        kind = "vae" if "vae" in str(spec) else "cae"
        meta = SimpleNamespace(channels=channels, kind=kind, layout="NCHW", input_shape=(-1, channels, 64, 64))
        return SimpleNamespace(metadata=meta, source=str(spec))

    monkeypatch.setattr(edgeae.predictor, "load_predictor", load)
    return calls


def test_plan_image_loads_the_model_and_the_scorer_once(tmp_path, monkeypatch) -> None:
    from edgeae.cli import main
    from edgeae.ground import science

    img = tmp_path / "g.png"
    cv2.imwrite(str(img), np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8))
    calls = _counting(monkeypatch)
    monkeypatch.setattr(science, "evaluate", lambda *a, **k: [])
    monkeypatch.setattr(science, "markdown", lambda rows: "| table |")
    argv = ["downlink", "plan", "--image", str(img), "--links", "perfect", "--methods", "sparse", "--patch", "64"]
    assert main(argv) == 0
    assert sorted(calls) == sorted(set(calls)) and len(calls) == 2, calls  # was 4: each twice


def test_plan_sets_load_a_given_model_once(monkeypatch) -> None:
    from edgeae.cli import main
    from edgeae.ground import feature_sets, science
    from edgeae.ground.feature_sets import LabelledFrame

    calls = _counting(monkeypatch)
    frame = LabelledFrame("g", "lroc-nac", np.zeros((64, 64, 1), np.uint8), 64, np.zeros((0, 2), np.int64), "test")
    monkeypatch.setattr(feature_sets, "build", lambda name, quick=False, **k: [frame])
    monkeypatch.setattr(science, "evaluate", lambda *a, **k: [])
    monkeypatch.setattr(science, "markdown", lambda rows: "| table |")
    argv = ["downlink", "plan", "--set", "lroc-nac", "--set", "hirise-landmarks", "--model", "grey-cae",
            "--scorer", "grey-vae", "--links", "perfect", "--methods", "sparse"]  # fmt: skip
    assert main(argv) == 0
    assert sorted(calls) == ["grey-cae", "grey-vae"], calls  # was 1 + one per set each


def test_compare_filler_loads_the_model_once(monkeypatch) -> None:
    from edgeae.cli.downlink_compare import compare_filler

    calls = _counting(monkeypatch, channels=3)
    _, name = compare_filler("rgb-cae", 3)
    assert calls == ["rgb-cae"] and name == "cae:rgb-cae"
    with pytest.raises(ValueError, match="takes 3 channel"):
        compare_filler("rgb-cae", 1)

"""Mission files: shipped examples load, bad values are refused naming the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from edgeae.firmware_sim.mission import Mission, MissionError, load_mission, mission_from_dict


def test_shipped_missions_load() -> None:
    rover = load_mission("rover_mastcamz")
    # any Mastcam-Z frame size (full frame, subframes, downsampled); raw frames are RGGB mosaics
    assert (rover.camera.channels, rover.camera.height, rover.camera.width) == (3, 0, 0)
    assert rover.camera.bayer == "RGGB"
    assert rover.anomaly.method == "cae-masked" and rover.reconstruction.mode == "check"
    nac = load_mission("orbital_nac")
    assert (nac.camera.source, nac.camera.height, nac.camera.width) == ("strips", 52224, 5064)
    assert nac.camera.strip_rows % nac.anomaly.patch == 0
    assert nac.budget.memory_bytes < nac.camera.height * nac.camera.width  # the point of streaming


def test_defaults_and_overrides() -> None:
    m = mission_from_dict({"name": "x"})
    assert isinstance(m, Mission) and m.sampling.keep == 0.05
    m2 = m.with_overrides(anomaly={"model": "a.onnx"}, runtime={"threads": 4})
    assert (m2.anomaly.model, m2.runtime.threads, m.runtime.threads) == ("a.onnx", 4, 1)
    with pytest.raises(MissionError, match="anomaly"):
        m.with_overrides(anomaly={"nope": 1})


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        ({"name": "x", "sampling": {"keep": 0.0}}, r"\[sampling\].*keep"),
        ({"name": "x", "sampling": {"keep": 0.1, "min_keep": 0.2}}, "min_keep"),
        ({"name": "x", "camera": {"channels": 2}}, "channels"),
        ({"name": "x", "camera": {"fps": 2}}, "unknown keys"),
        ({"name": "x", "anomaly": {"threshold": "high"}}, "threshold"),
        ({"name": "x", "anomaly": {"top_k": 0}}, "top_k"),
        ({"name": "x", "budget": {"frame_ms": 0}}, "frame_ms"),
        ({"name": "x", "runtime": {"heap": "tiny"}}, "heap must be one of compact, system"),
        ({"name": "x", "reconstruction": {"mode": "check"}}, "needs a model"),
        (
            {"name": "x", "camera": {"source": "strips", "strip_rows": 100}, "anomaly": {"patch": 64}},
            "multiple",
        ),
        ({"name": ""}, "name"),
        ({"name": "x", "extra": 1}, "unknown top-level"),
        ({"name": "x", "budget": {"downlink_bytes_per_pass": 500}}, "must hold at least one full packet"),
        ({"name": "x", "anomaly": {"sha256": "abc"}}, "64 hex digits"),
        ({"name": "x", "reconstruction": {"mode": "check", "model": "m.onnx", "sha256": "z" * 64}}, "64 hex"),
    ],
)
def test_invalid_missions_are_refused(doc: dict, match: str) -> None:
    with pytest.raises(MissionError, match=match):
        mission_from_dict(doc, source="m.toml")


def test_error_names_the_file(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text('name = "x"\n[budget]\nmemory_bytes = 10\n')
    with pytest.raises(MissionError, match=r"bad\.toml.*memory_bytes"):
        load_mission(p)
    p.write_text("name = [")
    with pytest.raises(MissionError, match="cannot read"):
        load_mission(p)
    with pytest.raises(MissionError, match="neither a file nor a preset; presets: orbital_nac"):
        load_mission(tmp_path / "absent.toml")

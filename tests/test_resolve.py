"""One vocabulary: zoo names, zoo: names and paths for models; preset names and paths for links/missions."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeae import zoo
from edgeae.resolve import (
    LINKS_DIR,
    NameNotFound,
    link_path,
    model_path,
    preset_path,
    shipped_artifacts,
    zoo_artifact,
)


def test_zoo_names_with_and_without_prefix() -> None:
    for spec in ("orbital-gray-vae", "zoo:orbital-gray-vae"):
        art = model_path(spec, "artifact")
        assert art.parent.name == "orbital-gray-vae" and art.suffix in (".onnx", ".tflite", ".ort")
        assert model_path(spec, "checkpoint") == zoo.WEIGHTS_DIR / "orbital-gray-vae.pt"
    shipped = model_path("zoo:rover-rgb-gtcae/rover-rgb-gtcae-decoder.int8.onnx")
    assert shipped.is_file() and shipped.name == "rover-rgb-gtcae-decoder.int8.onnx"
    assert zoo_artifact("rover-rgb-gtcae", "encoder").name.startswith("rover-rgb-gtcae-encoder.")
    assert all(p.suffix != ".json" for p in shipped_artifacts("rover-rgb-gtcae"))


def test_paths_and_errors(tmp_path: Path) -> None:
    pt = tmp_path / "m.pt"
    pt.write_bytes(b"x")
    assert model_path(pt) == pt and model_path(str(pt), "checkpoint") == pt
    with pytest.raises(NameNotFound, match=r"needs an .onnx, .ort or .tflite artifact"):
        model_path(pt, "artifact")
    with pytest.raises(NameNotFound, match=r"model file .*nope.onnx does not exist"):
        model_path(tmp_path / "nope.onnx")
    with pytest.raises(NameNotFound, match=r"neither a file nor a zoo model; zoo models: .*orbital-gray-vae"):
        model_path("orbital-grey-vae")
    with pytest.raises(NameNotFound, match=r"ships no flight artifact.*edgeae export rover-rgb-gtunet"):
        model_path("rover-rgb-gtunet", "artifact")
    with pytest.raises(NameNotFound, match="no such shipped artifact"):
        model_path("zoo:orbital-gray-vae/nope.onnx")
    assert isinstance(NameNotFound("x"), FileNotFoundError)


def test_link_and_mission_presets(tmp_path: Path) -> None:
    assert link_path("loss20") == LINKS_DIR / "loss20.toml" == link_path("loss20.toml")
    own = tmp_path / "mine.toml"
    own.write_text("[link]\nloss = 0.1\n")
    assert link_path(own) == own
    with pytest.raises(NameNotFound, match=r"presets: .*loss20"):
        link_path("loss21")
    from edgeae.ground.link import load_link

    assert load_link("loss20").loss == pytest.approx(0.2)
    from edgeae.firmware_sim.mission import MISSIONS_DIR, MissionError, load_mission

    assert load_mission("rover_mastcamz").name == "rover_mastcamz"
    assert preset_path("orbital_nac", MISSIONS_DIR, "mission").name == "orbital_nac.toml"
    with pytest.raises(MissionError, match="presets: orbital_nac, rover_mastcamz"):
        load_mission("rover")


def test_flight_side_resolves_zoo_names() -> None:
    pytest.importorskip("spacepackets")
    from edgeae.firmware_sim.mission import MissionError
    from edgeae.firmware_sim.onboard import resolve_model_file

    assert resolve_model_file("orbital-gray-vae").parent.name == "orbital-gray-vae"
    assert resolve_model_file("zoo:orbital-gray-vae").suffix in (".onnx", ".tflite")
    assert resolve_model_file("/no/such/model.onnx") == Path("/no/such/model.onnx")  # the guard reports it
    with pytest.raises(MissionError, match="zoo models"):
        resolve_model_file("orbital-grey-vae")


def test_missing_extra_is_named_before_work() -> None:
    from edgeae._optional import MissingDependencyError, check_extras

    check_extras("edgeae x", {"json": "ground"})
    with pytest.raises(MissingDependencyError, match=r"pip install 'edgeae\[ground,scan\]'"):
        check_extras("edgeae x", {"no_such_module_a": "ground", "no_such_module_b": "scan"})

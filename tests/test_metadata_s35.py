"""Session 35: the embedded edgeae metadata is type-checked on load, and a bad field is refused naming the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeae.metadata import MetadataError, ModelMetadata

ZOO = Path(__file__).resolve().parents[1] / "edgeae" / "zoo" / "artifacts"
VAE_LITE = ZOO / "orbital-gray-vae-lite" / "orbital-gray-vae-lite.int8.onnx"


def _vae_json(**changes: Any) -> str:
    """A valid VAE record (as the shipped ones) with ``changes`` written into its JSON."""
    meta = ModelMetadata(
        kind="vae",
        architecture={"channels": 1, "latent": 64, "patch": 64},
        input_shape=(-1, 1, 64, 64),
        channels=1,
        score={"lambda": 111.3, "threshold": 26602.5},
    )
    d = json.loads(meta.to_json())
    d.update(changes)
    return json.dumps(d)  # allow_nan: NaN and Infinity are written as JSON readers accept them


BAD_FIELDS = [
    ({"score": []}, "score must be a JSON object"),
    ({"extra": "x"}, "extra must be a JSON object"),
    ({"architecture": []}, "architecture must be a JSON object"),
    ({"mask": 3}, "mask must be a JSON object"),
    ({"architecture": {"channels": "a"}}, "architecture channels must be a whole number"),
    ({"input_shape": [-1, 1, float("inf"), 64]}, "input_shape must be a list of whole numbers"),
    ({"input_shape": [-1, 1, "a", 64]}, "input_shape must be a list of whole numbers"),
    ({"input_shape": [-1, 1, 64.5, 64]}, "input_shape must be a list of whole numbers"),
    ({"input_shape": [-1, 1, 0, 64]}, "sizes must be >= 1"),
    ({"input_shape": "-1,1,64,64"}, "input_shape must be a list"),
    ({"channels": "1"}, "channels must be a whole number"),
    ({"score": {"threshold": "abc"}}, "score threshold must be a finite number"),
    ({"score": {"threshold": [1]}}, "score threshold must be a finite number"),
    ({"score": {"threshold": float("nan")}}, "score threshold must be a finite number"),
    ({"score": {"threshold": True}}, "score threshold must be a finite number"),
    ({"score": {"lambda": float("inf")}}, "score lambda must be a finite number >= 0"),
    ({"score": {"lambda": -1.0}}, "score lambda must be a finite number >= 0"),
    ({"normalisation": "x"}, "normalisation must be a JSON object"),
    ({"normalisation": {"range": [0, 0], "method": "divide-by-dtype-max"}}, r"range \[0, 0\] does not match"),
    ({"normalisation": {"range": [0, 255], "method": "divide-by-dtype-max"}}, "which gives \\[0, 1\\]"),
    ({"normalisation": {"method": "zscore"}}, "normalisation method 'zscore' is not one edgeae applies"),
    ({"normalisation": {"method": ["x"], "range": [0, 1]}}, "normalisation method"),
    ({"normalisation": {"method": "divide-by-dtype-max"}}, "range must be two finite numbers"),
    ({"normalisation": {"method": "divide-by-dtype-max", "range": [0, "1"]}}, "range must be two finite numbers"),
    ({"precision": 8}, "precision must be a string"),
]


@pytest.mark.parametrize("changes, message", BAD_FIELDS)
def test_from_json_refuses_a_bad_field_naming_the_file(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(MetadataError, match=message) as info:
        ModelMetadata.from_json(_vae_json(**changes), source="x.int8.onnx")
    assert str(info.value).startswith("x.int8.onnx: edgeae metadata: ")
    assert "\n" not in str(info.value)


def test_the_value_errors_of_construction_name_the_file_too() -> None:
    with pytest.raises(MetadataError, match=r"^m\.tflite: edgeae metadata: unknown model kind 'gan'"):
        ModelMetadata.from_json(_vae_json(kind="gan"), source="m.tflite")


def test_valid_metadata_still_loads_and_round_trips() -> None:
    text = _vae_json(score={"lambda": 0, "threshold": -3}, input_shape=[16, 1, 64.0, 64])
    m = ModelMetadata.from_json(text)
    assert m.input_shape == (16, 1, 64, 64) and all(type(v) is int for v in m.input_shape)
    assert ModelMetadata.from_json(m.to_json()) == m
    no_threshold = ModelMetadata.from_json(_vae_json(score={"lambda": 1.5, "threshold": None}))
    assert no_threshold.score["threshold"] is None  # null: not recorded, as an absent key
    shape = (np.int64(-1), np.int64(3), np.int64(128), np.int64(128))  # numpy sizes, as callers may pass them
    cae = ModelMetadata(kind="cae", architecture={}, input_shape=shape, channels=np.int64(3))  # type: ignore[arg-type]
    assert cae.input_shape == (-1, 3, 128, 128) and type(cae.channels) is int
    decoder = ModelMetadata(kind="cae-decoder", architecture={"channels": 1}, input_shape=(-1, 128, 8, 8), channels=128)
    assert decoder.channels == 128


def test_every_shipped_artifact_still_loads() -> None:
    from firmware_sim.runtime import read_metadata

    files = sorted(p for p in ZOO.glob("*/*") if p.suffix in (".onnx", ".tflite"))
    assert len(files) >= 16
    for p in files:
        if p.suffix == ".onnx":
            pytest.importorskip("onnxruntime")
        else:
            pytest.importorskip("ai_edge_litert")
        meta = read_metadata(p)
        assert meta.normalisation == {"method": "divide-by-dtype-max", "range": [0.0, 1.0]}, p.name


def _edited_model(tmp_path: Path, field: str, value: Any) -> Path:
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(VAE_LITE))
    (prop,) = [p for p in model.metadata_props if p.key == "edgeae"]
    d = json.loads(prop.value)
    d[field] = value
    prop.value = json.dumps(d)
    out = tmp_path / f"edited-{field}.onnx"
    onnx.save(model, str(out))
    return out


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("score", [], "score must be a JSON object"),  # was an AttributeError traceback in edgeae score
        ("extra", "x", "extra must be a JSON object"),  # was an AttributeError traceback in the flight loader
        ("score", {"lambda": 1.0, "threshold": "abc"}, "score threshold must be a finite number"),  # CSV, then --map
        ("normalisation", {"method": "zscore"}, "normalisation method 'zscore'"),  # was scored as divide-by-max
    ],
)
def test_edgeae_score_refuses_an_edited_model_in_one_line(
    tmp_path: Path, moon: np.ndarray, capsys: pytest.CaptureFixture[str], field: str, value: Any, message: str
) -> None:
    pytest.importorskip("onnxruntime")
    from PIL import Image

    from edgeae.cli import main

    model = _edited_model(tmp_path, field, value)
    image = tmp_path / "moon.png"
    Image.fromarray(moon[:128, :128]).save(image)
    out = tmp_path / "scores.csv"
    code = main(["score", str(image), "--model", str(model), "-o", str(out), "--map", str(tmp_path / "map.png")])
    err = capsys.readouterr().err
    assert code != 0
    assert f"{model}: edgeae metadata: {message}" in err
    assert "Traceback" not in err and not out.exists() and not (tmp_path / "map.png").exists()

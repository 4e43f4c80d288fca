from __future__ import annotations

from pathlib import Path

import pytest

from edgeae.metadata import MetadataError, ModelMetadata, manifest_hash, sha256_file


def _meta(**kw: object) -> ModelMetadata:
    base: dict[str, object] = dict(
        kind="cae",
        architecture={"channels": 3, "widths": [16, 32, 64, 128], "tile": 128},
        input_shape=(-1, 3, 128, 128),
        channels=3,
    )
    base.update(kw)
    return ModelMetadata(**base)  # type: ignore[arg-type]


def test_json_round_trip() -> None:
    m = _meta(score={"lambda": 0.5, "threshold": 12.0}, mask={"pattern": "uniform", "destroy": [0.5, 0.99]})
    assert ModelMetadata.from_json(m.to_json()) == m


@pytest.mark.parametrize(
    "text, message",
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"schema": 99}', "schema 99"),
        ('{"schema": 1, "kind": "cae"}', "do not match"),
    ],
)
def test_bad_metadata_is_refused(text: str, message: str) -> None:
    with pytest.raises(MetadataError, match=message):
        ModelMetadata.from_json(text, source="x.onnx")


def test_validation() -> None:
    with pytest.raises(MetadataError, match="unknown model kind"):
        _meta(kind="gan")
    with pytest.raises(MetadataError, match="layout"):
        _meta(layout="CHWN")
    with pytest.raises(MetadataError, match="4 dimensions"):
        _meta(input_shape=(3, 128, 128))


def test_check_input() -> None:
    m = _meta()
    m.check_input((7, 3, 128, 128))
    with pytest.raises(MetadataError, match=r"axis 1"):
        m.check_input((1, 1, 128, 128))
    with pytest.raises(MetadataError, match="4-D"):
        m.check_input((3, 128, 128))


def test_hashes(tmp_path: Path) -> None:
    a = tmp_path / "a.bin"
    a.write_bytes(b"abc")
    assert sha256_file(a) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    b = tmp_path / "b.bin"
    b.write_bytes(b"xyz")
    assert manifest_hash([a, b]) == manifest_hash([b, a])
    b.write_bytes(b"xyzw")
    assert manifest_hash([a, b]) != manifest_hash([a, tmp_path / "a.bin"])

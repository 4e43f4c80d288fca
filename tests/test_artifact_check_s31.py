"""Session 31 audit, item 5: the export tools and the flight runtime refuse the same artifact files (one check,
the flight's), and the recorded-hash check exists once."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from edgeae.export import filetype
from edgeae.firmware_sim import artifact_file
from edgeae.firmware_sim.artifact_file import ArtifactError

CONTENTS = {
    "empty": b"",
    "tflite": b"\x1c\x00\x00\x00TFL3" + bytes(64),
    "ort": b"\x1c\x00\x00\x00ORTM" + bytes(64),
    "onnx": b"\x08\x07\x12\x04" + bytes(64),
    "junk": b"\x00garbage" * 10,
}


def test_an_ort_file_named_onnx_is_refused_by_both_in_one_clear_line(tmp_path: Path, capsys: Any) -> None:
    """The export said "rename it to fake.ort"; the flight accepted the name and ``firmware-sim bench --model
    fake.onnx`` ended with onnxruntime's "INVALID_PROTOBUF ... Protobuf parsing failed"."""
    from edgeae.firmware_sim.cli import main

    fake = tmp_path / "fake.onnx"
    fake.write_bytes(CONTENTS["ort"])
    with pytest.raises(ArtifactError, match=r"fake\.onnx: this is an ORT-format model \(ORTM\), not ONNX; rename it "
                       r"to fake\.ort$"):  # fmt: skip
        filetype.check_artifact_file(fake)
    with pytest.raises(ArtifactError, match=r"fake\.onnx: this is an ORT-format model \(ORTM\), not \.onnx: name it "
                       r"\.ort$"):  # fmt: skip
        artifact_file.check_artifact_file(fake)
    assert main(["bench", "--model", str(fake), "--iters", "1", "--threads", "1"]) == 2
    err = capsys.readouterr().err
    assert "this is an ORT-format model (ORTM), not .onnx" in err and "rotobuf" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(("suffix", "content"), itertools.product([".onnx", ".ort", ".tflite", ".bin"], CONTENTS))
def test_the_export_refuses_exactly_what_the_flight_refuses(tmp_path: Path, suffix: str, content: str) -> None:
    path = tmp_path / f"m{suffix}"
    path.write_bytes(CONTENTS[content])
    try:
        artifact_file.check_artifact_file(path)
        flight = None
    except ArtifactError as exc:
        flight = exc
    try:
        filetype.check_artifact_file(path)
        export = None
    except ArtifactError as exc:
        export = exc
    assert (flight is None) == (export is None), (flight, export)
    accepted = {(".onnx", "onnx"), (".onnx", "junk"), (".ort", "ort"), (".tflite", "tflite")}
    assert (flight is None) == ((suffix, content) in accepted)
    if export is not None:
        assert str(export).startswith(f"{path}: ") and "\n" not in str(export)
        assert (export.expected, export.found) == (flight.expected, flight.found)  # type: ignore[union-attr]


def test_missing_files_and_the_recorded_hash_check_have_one_home(tmp_path: Path, monkeypatch: Any) -> None:
    """``check_recorded_hash`` was written twice (``export.board`` and ``firmware_sim.bench``); the board check now
    calls the flight's, refusing with its own BundleError."""
    from edgeae.export import board
    from edgeae.export.board_bundle import BundleError
    from edgeae.firmware_sim import bench

    with pytest.raises(FileNotFoundError, match=r"nope\.onnx: no such file"):
        filetype.check_artifact_file(tmp_path / "nope.onnx")
    calls: list[tuple[Any, Any]] = []
    monkeypatch.setattr(bench, "check_recorded_hash", lambda path, error=ValueError: calls.append((path, error)))
    board.check_recorded_hash(tmp_path / "m.onnx")
    assert calls == [(tmp_path / "m.onnx", BundleError)]
    monkeypatch.undo()
    art = tmp_path / "m.onnx"
    art.write_bytes(b"model")
    (tmp_path / "m.onnx.sha256").write_text("0" * 64 + "\n")
    with pytest.raises(BundleError, match=r"m\.onnx: SHA-256 .* its sidecar records"):
        board.check_recorded_hash(art)
    with pytest.raises(ValueError, match=r"m\.onnx: SHA-256 .* its sidecar records"):
        bench.check_recorded_hash(art)

"""Review r6, session 33: the boot's check for files of the folder's model that its ``parity.json`` does not record.

Plain bytes stand in for model files (the loader is a stub): no interpreter, no data, milliseconds each.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from edgeae.firmware_sim import guard


def _export(out: Path, model: str, files: dict[str, bytes], passed: bool = True) -> dict[str, Path]:
    """``files`` written into ``out`` with the ``parity.json`` an export of ``model`` writes for them."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, data in files.items():
        paths[name] = out / name
        paths[name].write_bytes(data)
    recs = [
        {"path": str(p), "name": p.name, "sha256": hashlib.sha256(p.read_bytes()).hexdigest(), "passed": passed}
        for p in paths.values()
    ]
    (out / "parity.json").write_text(json.dumps({"model": model, "artifacts": recs}))
    return paths


def _load(path: Path, fallback: Path | None = None) -> guard.ModelGuard:
    g = guard.ModelGuard("anomaly", path, lambda p, t: object(), 1, fallback=str(fallback or ""))
    g.load()
    return g


def test_a_byte_identical_fallback_copy_beside_the_export_flies(tmp_path: Path) -> None:
    """r6 item 4: a mission's fallback ``m.int8.copy.onnx`` (a byte-identical copy kept in the export folder) was
    refused as "not recorded by the export beside it", so with the primary corrupted at load the mission flew
    without scoring. Now the copy loads as the fallback."""
    primary = _export(tmp_path / "exp", "m", {"m.int8.onnx": b"model m, int8" * 100})["m.int8.onnx"]
    copy = primary.with_name("m.int8.copy.onnx")
    copy.write_bytes(primary.read_bytes())
    assert guard.parity_failure(copy) is None
    primary.write_bytes(b"\0" + primary.read_bytes()[1:])  # corrupt-model@load
    g = _load(primary, fallback=copy)
    assert g.path == copy and [e.kind for e in g.events] == ["model_file_corrupt", "model_fallback"]


def test_a_copy_under_an_export_name_is_taken_by_its_hash_only_when_a_passing_record_has_it(tmp_path: Path) -> None:
    """r6 item 4: a name the export gives a file of the model (``MODEL[-encoder|-decoder].PREC.EXT``) with no record
    is refused unless its bytes are those of a file recorded as passing; the backstop of r4 item 1 stays."""
    out = tmp_path / "exp"
    paths = _export(out, "m", {"m.fp32.onnx": b"fp32 bytes", "m-decoder.fp32.tflite": b"decoder bytes"})
    same = out / "m.int8.onnx"  # unrecorded export name, the bytes of a passing record: a copy
    same.write_bytes(paths["m.fp32.onnx"].read_bytes())
    assert guard.parity_failure(same) is None
    _load(same)
    other = out / "m-encoder.int8.ort"  # unrecorded export name, bytes nothing records: still refused
    other.write_bytes(b"an earlier checkpoint's encoder")
    why = guard.parity_failure(other)
    assert why is not None and why.startswith(f"{other} is not recorded by the export beside it") and "\n" not in why
    with pytest.raises(guard.ModelRefused, match="not recorded by the export beside it"):
        _load(other)
    failed = _export(tmp_path / "bad", "m", {"m.fp32.onnx": b"failed its checks"}, passed=False)["m.fp32.onnx"]
    (failed.parent / "m.int8.onnx").write_bytes(failed.read_bytes())  # a copy of a rejected file is no better
    assert "not recorded by the export beside it" in str(guard.parity_failure(failed.parent / "m.int8.onnx"))
    stale = out / "m.int8.STALE.onnx"  # the markers come first: a moved-aside copy is refused whatever its bytes
    stale.write_bytes(paths["m.fp32.onnx"].read_bytes())
    assert "moved aside" in str(guard.parity_failure(stale))


def test_only_the_exact_export_names_are_hashed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """r6 item 4: the hash is computed only for a name the check would refuse, so a recorded file or another name
    costs nothing more than before; names beyond the export's pattern are not the folder's model's files."""
    out = tmp_path / "exp"
    paths = _export(out, "m", {"m.int8.onnx": b"recorded"})
    loose = {n: out / n for n in ("m.int8.copy.onnx", "m.onnx", "mission.int8.onnx", "m-encoderx.int8.onnx")}
    for p in loose.values():
        p.write_bytes(b"unrecorded bytes")

    def no_hash(*args: Any) -> bool:
        raise AssertionError("hashed a file the name check lets through")

    monkeypatch.setattr(guard, "_copy_of_passing_record", no_hash)
    assert guard.parity_failure(paths["m.int8.onnx"]) is None
    assert {n: guard.parity_failure(p) for n, p in loose.items()} == dict.fromkeys(loose)
    assert all(guard._export_name("m", n) for n in ("m.int8.onnx", "m-encoder.fp32.ort", "m-decoder.int8.tflite"))
    assert not any(guard._export_name("m", n) for n in ("m.int8.onnx.bak", "mm.int8.onnx", "m.int8.json"))

"""The flight artifact loader: metadata read-back, calling convention, refusals, and no torch import."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeae.metadata import METADATA_KEY, MetadataError, ModelMetadata

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from edgeae.firmware_sim import runtime  # noqa: E402


def _meta(channels: int = 3, size: int = 16) -> ModelMetadata:
    arch = {"channels": channels, "widths": [4], "tile": size}
    return ModelMetadata(kind="cae", architecture=arch, input_shape=(-1, channels, size, size), channels=channels)


def _onnx_cae(path: Path, channels: int = 3, size: int = 16, meta: ModelMetadata | str | None = None) -> Path:
    """A hand-built ONNX "CAE": x_hat = sigmoid(conv1x1(x)), dynamic batch, written without torch."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.normal(size=(channels, channels, 1, 1)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["h"]), helper.make_node("Sigmoid", ["h"], ["x_hat"])]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", channels, size, size])],
        [helper.make_tensor_value_info("x_hat", TensorProto.FLOAT, ["batch", channels, size, size])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    if meta is not None:
        entry = model.metadata_props.add()
        entry.key = METADATA_KEY
        entry.value = meta if isinstance(meta, str) else meta.to_json()
    onnx.save_model(model, str(path))
    return path


def test_onnx_roundtrip_and_calling_convention(tmp_path: Path) -> None:
    meta = _meta()
    p = _onnx_cae(tmp_path / "m.onnx", meta=meta)
    assert runtime.read_metadata(p) == meta
    pred = runtime.load_artifact(p, threads=1)
    assert pred.metadata == meta
    x = np.random.default_rng(1).random((5, 3, 16, 16), dtype=np.float32)
    y = pred(x)
    assert y.shape == (5, 3, 16, 16) and y.dtype == np.float32
    assert float(y.min()) > 0.0 and float(y.max()) < 1.0
    # batch 1 after batch 5 gives the same numbers for the same image
    np.testing.assert_allclose(pred(x[2:3])[0], y[2], rtol=1e-6, atol=1e-7)


def test_refuses_missing_and_malformed_metadata(tmp_path: Path) -> None:
    bare = _onnx_cae(tmp_path / "bare.onnx")
    with pytest.raises(MetadataError, match=r"bare\.onnx.*no edgeae metadata"):
        runtime.load_artifact(bare)
    with pytest.raises(MetadataError, match="no edgeae metadata"):
        runtime.read_metadata(bare)
    bad = _onnx_cae(tmp_path / "bad.onnx", meta="{not json")
    with pytest.raises(MetadataError, match="not valid JSON"):
        runtime.load_artifact(bad)


def test_refuses_mismatched_input(tmp_path: Path) -> None:
    pred = runtime.load_artifact(_onnx_cae(tmp_path / "m.onnx", meta=_meta()))
    with pytest.raises(MetadataError, match="axis 1"):
        pred(np.zeros((2, 1, 16, 16), np.float32))  # grey into an RGB model
    with pytest.raises(MetadataError, match="axis 2"):
        pred(np.zeros((2, 3, 32, 16), np.float32))
    with pytest.raises(MetadataError, match="4-D"):
        pred(np.zeros((3, 16, 16), np.float32))


def test_metadata_that_lies_about_the_graph_is_refused(tmp_path: Path) -> None:
    """Metadata says grey, the graph wants RGB: refused when the artifact is loaded, naming file and axis."""
    p = _onnx_cae(tmp_path / "liar.onnx", channels=3, meta=_meta(channels=1))
    with pytest.raises(MetadataError, match=r"liar\.onnx.*disagrees with the graph's input.*axis 1"):
        runtime.load_artifact(p)


def test_missing_and_corrupted_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.onnx"):
        runtime.load_artifact(tmp_path / "nope.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(runtime.ArtifactError, match=r"junk\.onnx"):
        runtime.load_artifact(junk)
    tfl = tmp_path / "junk.tflite"
    tfl.write_bytes(b"\x00" * 64)
    with pytest.raises(runtime.ArtifactError, match=r"junk\.tflite.*TFL3"):
        runtime.load_artifact(tfl)
    other = tmp_path / "model.bin"
    other.write_bytes(b"x")
    with pytest.raises(runtime.ArtifactError, match="unknown artifact type"):
        runtime.load_artifact(other)


def test_quantise_dequantise_rule() -> None:
    x = np.array([0.0, 0.4, 1.0, 1.5, -0.2], np.float32)
    q = runtime.quantize(x, 1 / 255, -128, np.dtype(np.int8))
    assert q.tolist() == [-128, -26, 127, 127, -128]  # saturates outside [0, 1]
    np.testing.assert_allclose(runtime.dequantize(q, 1 / 255, -128), [0.0, 0.4, 1.0, 1.0, 0.0], atol=1e-7)


def test_runtime_never_imports_torch(tmp_path: Path) -> None:
    p = _onnx_cae(tmp_path / "m.onnx", meta=_meta())
    code = (
        "import sys, numpy as np\n"
        "from edgeae.firmware_sim.runtime import load_artifact\n"
        f"pred = load_artifact({str(p)!r}, threads=1)\n"
        "y = pred(np.zeros((2, 3, 16, 16), np.float32))\n"
        "assert y.shape == (2, 3, 16, 16)\n"
        "bad = [m for m in sys.modules if m == 'torch' or m.startswith('torch.')]\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"


def test_tflite_metadata_reader_matches_the_generated_schema() -> None:
    """The flight reader (flatbuffers' table accessor, no generated schema module) returns exactly what
    ai_edge_litert's generated schema reads, on every shipped TFLite artifact; damaged files are refused."""
    schema = pytest.importorskip("ai_edge_litert.schema_py_generated")
    files = sorted(Path(__file__).parents[1].joinpath("edgeae", "zoo", "artifacts").glob("*/*.tflite"))
    assert files, "no shipped .tflite artifacts"
    for f in files:
        content = f.read_bytes()
        model = schema.Model.GetRootAs(content, 0)
        want = {}
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            buf = model.Buffers(entry.Buffer())
            want[(entry.Name() or b"").decode()] = buf.DataAsNumpy().tobytes() if buf.DataLength() else b""
        got = runtime.tflite_metadata_entries(content, str(f))
        assert got == want, f
        assert METADATA_KEY in got, f
    content = files[0].read_bytes()
    for n in (0, 7, 12, 100, len(content) // 2):
        with pytest.raises(runtime.ArtifactError, match=r"t\.tflite"):
            runtime.tflite_metadata_entries(content[:n], "t.tflite")
    rng = np.random.default_rng(0)
    for _ in range(100):  # damaged headers: an ArtifactError or a clean read, never another exception
        bad = np.frombuffer(content, np.uint8).copy()
        bad[rng.integers(0, 64, 8)] = rng.integers(0, 256, 8, dtype=np.uint8)
        with contextlib.suppress(runtime.ArtifactError):
            runtime.tflite_metadata_entries(bad.tobytes(), "t.tflite")


def test_flight_loader_does_not_import_the_generated_tflite_schema() -> None:
    """The generated schema module costs ~4 MiB of RSS in the flight process: the loader must not need it."""
    f = next(Path(__file__).parents[1].joinpath("edgeae", "zoo", "artifacts").glob("*/*.tflite"))
    code = (
        "import sys\nfrom edgeae.firmware_sim.runtime import load_artifact\n"
        f"p = load_artifact({str(f)!r}, threads=1)\n"
        "assert p.metadata.kind\nprint('schema_py_generated' in ' '.join(sys.modules))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().endswith("False")


def test_full_range_int8_onnx_warns_once_on_a_saturating_cpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A full-range int8 ONNX file on an x86 CPU without VNNI gets one warning naming the file and the fix;
    a 7-bit file (the default since session 19), an fp32 file, or a VNNI CPU get none; a file that says
    "8-bit (full range)" (``--full-range``) warns like one made before the label existed."""
    import dataclasses

    from edgeae.firmware_sim import cpu

    int8 = dataclasses.replace(_meta(), precision="int8")
    full = _onnx_cae(tmp_path / "full.int8.onnx", meta=int8)
    seven = _onnx_cae(tmp_path / "seven.int8.onnx", meta=dataclasses.replace(int8, extra={"int8_weights": "7-bit"}))
    fp32 = _onnx_cae(tmp_path / "m.fp32.onnx", meta=_meta())
    labelled = _onnx_cae(
        tmp_path / "lab.int8.onnx", meta=dataclasses.replace(int8, extra={"int8_weights": "8-bit (full range)"})
    )
    monkeypatch.setattr(runtime, "_WARNED_SATURATION", set())
    monkeypatch.setattr(cpu, "int8_saturates", lambda: True)
    with caplog.at_level("WARNING"):
        for p in (full, full, seven, fp32, labelled):
            runtime.load_artifact(p, threads=1)
    warned = [r.getMessage() for r in caplog.records if "saturate" in r.getMessage()]
    assert len(warned) == 2 and "full.int8.onnx" in warned[0] and "7-bit weights, the default" in warned[0]
    assert "lab.int8.onnx" in warned[1]
    caplog.clear()
    monkeypatch.setattr(runtime, "_WARNED_SATURATION", set())
    monkeypatch.setattr(cpu, "int8_saturates", lambda: False)
    with caplog.at_level("WARNING"):
        runtime.load_artifact(full, threads=1)
    assert not [r for r in caplog.records if "saturate" in r.getMessage()]


@pytest.mark.parametrize("threads", [1.5, 0, -1, True, "2"])
def test_thread_counts_must_be_whole_numbers(threads: object) -> None:
    """1.5 used to pass the check (int(1.5) is 1) and reach the interpreter as a float."""
    from edgeae.predictor import load_predictor

    with pytest.raises(ValueError, match="threads must be a whole number >= 1"):
        runtime.load_artifact("missing.onnx", threads=threads)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="threads must be a whole number >= 1"):
        load_predictor("missing.onnx", threads=threads)  # type: ignore[arg-type]

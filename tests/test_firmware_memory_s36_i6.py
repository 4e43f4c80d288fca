"""LiteRT's "XNNPack delegate failed to reshape ... failed to prepare." is not counted as out of memory (session 36,
fixer i6; review r18 #2): LiteRT raises those words both when a tensor allocation fails under RLIMIT_AS and for a
shape its graph cannot take with memory to spare, so the text cannot tell them apart; docs/firmware_sim.md says
what a TFLite mission then records."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from edgeae.firmware_sim.interpreters import ArtifactError
from edgeae.firmware_sim.memory_room import is_out_of_memory

XNN = "XNNPack delegate failed to reshape runtimeNode number 43 (TfLiteXNNPackDelegate) failed to prepare."
VAE = Path(__file__).resolve().parents[1] / "edgeae/zoo/artifacts/orbital-gray-vae/orbital-gray-vae.int8.tflite"
DOCS = Path(__file__).resolve().parents[1] / "docs/firmware_sim.md"


def test_litert_reshape_failure_is_not_out_of_memory() -> None:
    assert not is_out_of_memory(RuntimeError(XNN))
    wrapped = ArtifactError(f"/x/m.tflite: cannot be loaded by ai-edge-litert ({XNN})")
    wrapped.__cause__ = RuntimeError(XNN)
    assert not is_out_of_memory(wrapped)
    assert is_out_of_memory(OSError("/x/libLiteRt.so: failed to map segment from shared object"))


def test_litert_says_the_same_words_for_a_shape_with_memory_to_spare() -> None:
    litert = pytest.importorskip("ai_edge_litert.interpreter")
    if not VAE.is_file():
        pytest.skip(f"{VAE} is not here")
    it = litert.Interpreter(model_path=str(VAE), num_threads=1)
    d = it.get_input_details()[0]
    shape = [int(v) for v in d["shape"]]
    shape[1] = shape[2] = 33  # the VAE's decoder cannot take it
    it.resize_tensor_input(d["index"], shape, strict=False)
    with pytest.raises(RuntimeError, match=r"XNNPack delegate failed to reshape .* failed to prepare") as info:
        it.allocate_tensors()
        it.set_tensor(d["index"], np.zeros(shape, d["dtype"]))
    assert not is_out_of_memory(info.value)


def test_the_docs_say_what_a_tflite_mission_records() -> None:
    text = " ".join(DOCS.read_text(encoding="utf-8").split())
    assert "LiteRT is the exception" in text and "failed to reshape runtimeNode" in text
    assert "dropped `frame_error` with that line" in text

"""The ground's default interpreter threads (session 39): the flight runtime now opens every interpreter on an
explicit count, one where none is named; a ground tool that names none (``edgeae reconstruct`` without
``--threads``) still runs an artifact on the machine's cores, as onnxruntime's own default did."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from edgeae.firmware_sim.testing import tiny_vae_onnx

from edgeae.predictor import ground_threads, load_predictor

ROOT = Path(__file__).resolve().parents[1]


def _intra(pred: object) -> int:
    return int(pred._runner.session.get_session_options().intra_op_num_threads)  # type: ignore[attr-defined]


def test_ground_threads_follow_omp_num_threads_else_the_usable_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    usable = len(os.sched_getaffinity(0))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert ground_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "64")
    assert ground_threads() == min(64, usable)  # never more threads than CPUs to run them
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert ground_threads() == len(os.sched_getaffinity(0))
    monkeypatch.setenv("OMP_NUM_THREADS", "not a number")
    assert ground_threads() == len(os.sched_getaffinity(0))


def test_a_ground_load_without_threads_gets_the_ground_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tiny_vae_onnx(tmp_path / "vae.onnx")
    monkeypatch.setenv("OMP_NUM_THREADS", "64")
    assert _intra(load_predictor(path)) == len(os.sched_getaffinity(0))  # the ground's CPUs, not the flight's one
    assert _intra(load_predictor(path, threads=3)) == 3  # a named count wins


def test_a_ground_tflite_load_without_threads_keeps_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    litert = pytest.importorskip("ai_edge_litert.interpreter")
    path = next((ROOT / "edgeae" / "zoo" / "artifacts" / "orbital-gray-vae-lite").glob("*.tflite"), None)
    if path is None:
        pytest.skip("no shipped .tflite artifact in edgeae/zoo/artifacts/orbital-gray-vae-lite")
    seen: list[object] = []
    real = litert.Interpreter

    def spy(*args: object, **kwargs: object) -> object:
        seen.append(kwargs.get("num_threads"))
        return real(*args, **kwargs)

    monkeypatch.setattr(litert, "Interpreter", spy)
    load_predictor(path)
    assert seen == [1]  # as LiteRT ran before session 39: the timings in RESULTS were taken that way

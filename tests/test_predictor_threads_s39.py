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


def _intra(pred: object) -> int:
    return int(pred._runner.session.get_session_options().intra_op_num_threads)  # type: ignore[attr-defined]


def test_ground_threads_follow_omp_num_threads_else_the_usable_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert ground_threads() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert ground_threads() == len(os.sched_getaffinity(0))
    monkeypatch.setenv("OMP_NUM_THREADS", "not a number")
    assert ground_threads() == len(os.sched_getaffinity(0))


def test_a_ground_load_without_threads_gets_the_ground_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tiny_vae_onnx(tmp_path / "vae.onnx")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert _intra(load_predictor(path)) == 3  # not the flight's one
    assert _intra(load_predictor(path, threads=2)) == 2  # a named count wins

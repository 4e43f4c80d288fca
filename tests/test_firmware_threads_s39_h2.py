"""Interpreter threads (session 39, h2): every onnxruntime session and LiteRT interpreter the flight runtime opens
gets an explicit thread count, the mission's ``[runtime] threads`` or, where a caller names none, one (what LiteRT
does): until then an onnxruntime session opened without a count took a thread per core."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from edgeae.firmware_sim.interpreters import DEFAULT_THREADS, interpreter_threads, session_options
from edgeae.firmware_sim.runtime import load_artifact
from edgeae.firmware_sim.testing import small_mission, tiny_models, tiny_vae_onnx

ZOO = Path(__file__).resolve().parents[1] / "edgeae" / "zoo" / "artifacts"


def _pools(predictor: Any) -> tuple[int, int]:
    opts = predictor._runner.session.get_session_options()
    return opts.intra_op_num_threads, opts.inter_op_num_threads


def test_a_session_opened_without_a_count_runs_on_one_thread(tmp_path: Path) -> None:
    pred = load_artifact(tiny_vae_onnx(tmp_path / "vae.onnx"))
    assert DEFAULT_THREADS == 1
    assert _pools(pred) == (1, 1)  # onnxruntime's own default (0) is a thread per core
    assert pred.threads == 1


def test_a_named_count_sizes_the_intra_op_pool(tmp_path: Path) -> None:
    assert _pools(load_artifact(tiny_vae_onnx(tmp_path / "vae.onnx"), threads=3)) == (3, 1)
    opts = session_options(2)
    assert (opts.intra_op_num_threads, opts.inter_op_num_threads) == (2, 1)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_a_count_that_is_no_thread_count_is_refused(bad: Any) -> None:
    with pytest.raises(ValueError, match="interpreter threads must be a whole number >= 1 or None"):
        interpreter_threads(bad)


def test_litert_gets_the_same_count(monkeypatch: pytest.MonkeyPatch) -> None:
    litert = pytest.importorskip("ai_edge_litert.interpreter")
    seen: list[Any] = []
    real = litert.Interpreter

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs.get("num_threads"))
        return real(*args, **kwargs)

    monkeypatch.setattr(litert, "Interpreter", spy)
    path = next((ZOO / "orbital-gray-vae-lite").glob("*.tflite"), None)
    if path is None:
        pytest.skip("no shipped .tflite artifact in edgeae/zoo/artifacts/orbital-gray-vae-lite")
    load_artifact(path)
    load_artifact(path, threads=2)
    assert seen == [1, 2]


@pytest.mark.parametrize(("parallel", "scoring"), [("interpreters", 1), ("intra-op", 3)])
def test_every_session_of_a_boot_has_the_missions_threads(tmp_path: Path, parallel: str, scoring: int) -> None:
    """The guards' models get ``[runtime] threads``; the VAE scoring engine's interpreters one thread each (three
    of them) or, ``intra-op``, one interpreter of that many: each session's pools are what the loader was given."""
    from edgeae.firmware_sim.loop import FlightRuntime
    from edgeae.firmware_sim.onboard import default_loader

    opened: list[tuple[str, int, tuple[int, int]]] = []

    def loader(path: Path, threads: int) -> Any:
        pred = default_loader(path, threads)
        opened.append((Path(path).name, threads, _pools(pred)))
        return pred

    m = small_mission(tiny_models(tmp_path / "models"), runtime={"threads": 3})
    rt = FlightRuntime(m, tmp_path / "out", loader=loader, parallel=parallel)
    try:
        assert rt.models.engine is not None
    finally:
        rt.close()
    assert all(pools == (threads, 1) for _, threads, pools in opened), opened
    engine = [("vae.onnx", scoring)] * (3 if scoring == 1 else 1)
    assert sorted((name, threads) for name, threads, _ in opened) == sorted(
        [("vae.onnx", 3), ("cae.onnx", 3), *engine]
    ), opened

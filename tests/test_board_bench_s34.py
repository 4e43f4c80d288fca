"""Session 34 audit of benchmarking on boards: ``firmware-sim bench`` and ``python -m edgeae.export.board``
(interleaved timing with a noise-aware verdict, up-front output checks, size and memory bounds, the file and path
the flight runs, the flight guard, plain messages). No PyTorch and no data: the zoo's shipped artifacts only."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from edgeae.export import board
from edgeae.export.board_bundle import BundleArrays, BundleError, load_bundle
from edgeae.firmware_sim import bench
from edgeae.firmware_sim.cli import main as fs_main

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "edgeae" / "zoo" / "artifacts"
VAE = ZOO / "orbital-gray-vae" / "orbital-gray-vae.int8.onnx"
SMALL = ["--threads", "1", "--iters", "1", "--batch", "2", "--frame-height", "32", "--frame-width", "32"]


def _window(rate: float, **kw: Any) -> dict[str, Any]:
    rec = {"artifact": "x", "kind": "vae", "precision": "int8", "threads": 1, "workers": 1, "batch": 8,
           "calls": 10, "items_per_s": rate, "ms_per_item": 1.0, "wall_s": 80 / rate, "cpu_s": 0.5,
           "cpu_ms_per_item": 6.25, "load_1min_before": 1.0, "load_1min_after": 2.0,
           "rss_after_load_mib": 1.0, "rss_growth_peak_mib": 2.0}  # fmt: skip
    return {**rec, **kw}


# ------------------------------------------------------------------------ 1: interleaved timing, tie within noise
def test_board_timing_is_interleaved_and_a_gap_within_the_spread_names_no_winner(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    order: list[str] = []
    rates = {"a.onnx": iter([5065.0, 2278.0, 5352.0]), "b.tflite": iter([4863.0, 5204.0, 2443.0])}

    def fake(bundle: str, artifact: str, threads: int, batch: int, seconds: float, workers: int = 1) -> Any:
        order.append(artifact)
        assert seconds == pytest.approx(2.0 / board.TIME_ROUNDS)
        return _window(next(rates[artifact]), artifact=artifact, load_1min_before=len(order))

    monkeypatch.setattr("edgeae.export.board_timing._time_in_subprocess", fake)  # where time_interleaved looks
    speeds = board.time_interleaved("b.npz", ["a.onnx", "b.tflite"], 1, 8, 2.0)
    assert order == ["a.onnx", "b.tflite", "b.tflite", "a.onnx", "a.onnx", "b.tflite"]  # round-robin, rotated
    a, b = speeds
    assert a["items_per_s"] == 5065.0 and a["items_per_s_range"] == [2278.0, 5352.0] and a["windows"] == 3
    assert a["calls"] == 30 and a["cpu_s"] == 1.5 and a["cpu_ms_per_item"] == pytest.approx(1e3 * 1.5 / 240)
    assert a["load_1min_before"] == 1 and a["load_1min_after"] == 2.0
    recs = [{"kind": "vae", "artifact": "a.onnx", "passed": True, "speed": a},
            {"kind": "vae", "artifact": "b.tflite", "passed": True, "speed": b}]  # fmt: skip
    assert board.timing_verdict(recs) == ({}, {"vae": ["a.onnx", "b.tflite"]})
    assert board.fastest_passing(recs) == {}  # the audit's flip-flopping runs: a tie, no winner
    recs[1]["speed"] = {**b, "items_per_s": 9000.0, "items_per_s_range": [8800.0, 9100.0]}
    assert board.timing_verdict(recs) == ({"vae": "b.tflite"}, {})  # clear of the other's spread: named


def test_board_busy_machine_is_said() -> None:
    assert bench.busy_note((0.5, 0.7), 2) is None
    note = bench.busy_note((0.5, 7.0), 2)
    assert note is not None and "7.00 at or above the 2 CPUs" in note and "busy machine" in note
    assert bench.busy_note((None, None), 2) is None


# ------------------------------------------------------------------------ 2, 11, 14: refused before any work
def test_unwritable_outputs_and_thread_counts_are_refused_up_front(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def boom(*a: Any, **k: Any) -> Any:
        raise AssertionError("work started")

    monkeypatch.setattr(bench, "run_bench", boom)
    monkeypatch.setattr(board, "make_bundle", boom)
    for argv, match in (
        (["--model", "orbital-gray-vae", *SMALL, "--json", "/proc/x.json"], "--json /proc/x.json: cannot write"),
        (["--model", "orbital-gray-vae", "--threads", "500"], "--threads must be 1-"),
    ):
        assert fs_main(["bench", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and match in err, err
    assert board.main(["bundle", "orbital-gray-vae", "--no-tail", "--n-test", "4", "--out", "/proc/x.npz"]) == 2
    assert "--out /proc/x.npz: cannot write" in capsys.readouterr().err
    assert board.main(["check", str(tmp_path / "b.npz"), str(VAE), "--threads", "500"]) == 2
    assert "--threads must be 1-" in capsys.readouterr().err


def test_check_time_warns_about_more_threads_than_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeae.export import board_console
    from edgeae.firmware_sim import frame_intake

    monkeypatch.setattr(frame_intake, "usable_cores", lambda: 2)
    args = SimpleNamespace(threads=2, workers=2, time=True)
    warning = board_console._time_warning(args)  # type: ignore[arg-type]
    assert warning is not None and "--workers 2 x --threads 2: 4 threads at once, more than the 2 core" in warning
    assert board_console._time_warning(SimpleNamespace(threads=1, workers=2, time=True)) is None  # type: ignore[arg-type]


# ------------------------------------------------------------------------ 3: --n-test bounded by the bundle's size
def test_bundle_n_test_that_would_exceed_the_bundle_limits_is_refused() -> None:
    from edgeae.export.board_bundle import bundle_size_problem

    vae = SimpleNamespace(kind="vae", architecture={"patch": 64, "channels": 1}, input_shape=(-1, 1, 64, 64),
                          channels=1)  # fmt: skip
    assert bundle_size_problem(vae, None, 64, True) is None
    why = bundle_size_problem(vae, None, 100_000, True)
    assert why is not None and "--n-test 100000 would make a bundle of about" in why and "at most --n-test" in why
    most = int(why.rsplit(" ", 1)[1])
    assert bundle_size_problem(vae, None, most, True) is None and bundle_size_problem(vae, None, most + 1, True)
    assert most * 18_200 < board.MAX_BUNDLE_BYTES  # the zoo VAE's measured 18.2 KB a parity patch fits
    cae = SimpleNamespace(kind="cae", architecture={"variant": "seed", "tile": 128, "channels": 3},
                          input_shape=(-1, 3, 128, 128), channels=3)  # fmt: skip
    assert bundle_size_problem(cae, None, 2000, False)  # three kinds of 128-px RGB patches


# ------------------------------------------------------------------------ 4: memory bounded from a warm-up estimate
def test_bench_memory_is_estimated_with_activations_and_bounded() -> None:
    unet = ZOO / "rover-rgb-unet2-ground" / "rover-rgb-unet2-ground.int8.onnx"
    est = bench.estimate_memory(unet, 1, 16, (64, 64), 0.05)
    assert est["per_patch_bytes"] > 2 * 4 * 3 * 128 * 128  # activations, not only the 196 KB float input
    with pytest.raises(ValueError, match=r"would need about .* GiB .* MiB per patch x --batch 1024"):
        bench.check_memory({**est, "bytes": est["per_patch_bytes"] * 1024}, 1024)
    bench.check_memory(est, 16)
    with pytest.raises(ValueError, match="GiB for the frame"):
        bench.check_memory({**est, "bytes": 5 * 2**30, "sample_bytes": 5 * 2**30}, 16, limit=2**30)


# ------------------------------------------------------------------------ 5, 9, 10: what bench times
def test_bench_times_the_file_and_the_scoring_path_the_flight_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeae.firmware_sim import score

    assert bench.flight_prefer("orbital-gray-vae") == (("tflite", "onnx"), "mission orbital_nac [anomaly] prefer")
    assert bench.flight_prefer("zoo:orbital-gray-vae")[0] == ("tflite", "onnx")
    assert bench.flight_prefer(VAE)[0] == ()
    if importlib.util.find_spec("ai_edge_litert") is not None:
        path, why = bench.resolve_bench_model("orbital-gray-vae")
        assert path.suffix == ".tflite" and "orbital_nac" in why
    path, why = bench.resolve_bench_model("orbital-gray-vae", ["onnx"])
    assert path.suffix == ".onnx" and why == "onnx (--prefer)"
    calls: list[int] = []
    real = score.score_runner

    def spy(pred: Any, raw_max: Any = None, **kw: Any) -> Any:
        run = real(pred, raw_max, **kw)
        calls.append(int(raw_max))
        return run

    monkeypatch.setattr(score, "score_runner", spy)
    for iters in (1, 12):
        r = bench.bench_threads(VAE, 1, 2, iters, (32, 32), 0.1)
        assert r["stages_ms"]["sample"]["n"] == iters  # --iters honoured by every stage
        assert all(s["n"] == iters for s in r["stages_ms"].values())
    assert calls == [255, 255] and "score_runner" in r["infer_path"]
    assert r["patches_per_s_scope"].startswith("normalise + infer + score")
    assert r["patches_per_cpu_s_scope"].startswith("infer only")


# ------------------------------------------------------------------------ 6, 7, 8: what bench records
def test_bench_records_what_compares_boards(monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []
    loads = iter([1.5, 2.5])

    def fake(path: Path, threads: int, batch: int, iters: int, frame: Any, keep: float) -> dict[str, Any]:
        events.append(f"run{threads}")
        return {"threads": threads}

    monkeypatch.setattr(bench, "bench_threads", fake)
    monkeypatch.setattr(bench, "load_1min", lambda: next(loads))
    monkeypatch.setattr(bench, "import_interpreter", lambda p: events.append("import") or 12.5)
    out = bench.run_bench(VAE, threads=(2, 1), iters=7, keep=0.25, frame=(32, 32), batch=2)
    assert events[0] == "import" and events[1:] == ["run2", "run1", "run2"]
    assert out["import_ms"] == 12.5
    assert out["machine"]["loadavg_1min"] == 1.5 and out["machine"]["loadavg_1min_after"] == 2.5
    assert out["settings"] == {"threads": [2, 1], "batch": 2, "iters": 7, "frame": [32, 32], "keep": 0.25}
    assert out["artifact_sha256"] == hashlib.sha256(VAE.read_bytes()).hexdigest()
    cpu = out["machine"]["cpu"]
    assert {"cpu_model", "simd", "vnni", "int8_saturates"} <= set(cpu) and "x86" not in str(cpu.get("simd"))
    assert len(out["memory"]["rss_peak_bytes_per_run"]) == 2  # peak RSS per thread count
    json.dumps(out)


def test_bench_table_labels_each_throughput_and_memory_per_thread_count() -> None:
    stage = {"p50": 1.0, "p90": 1.0, "p99": 1.0, "n": 3}
    run = {"threads": 2, "stages_ms": dict.fromkeys(bench.STAGES, stage), "patches_per_s": 10.0,
           "patches_per_cpu_s": 20.0, "batch": 16, "patch": 64, "load_ms": 1.0, "infer_path": "score_runner: x",
           "model": {"kind": "vae", "precision": "int8"}}  # fmt: skip
    result = {"artifact": "/z/a.int8.tflite", "runs": [run], "import_ms": 80.0, "chosen_by": "tflite,onnx (m)",
              "memory": {"traced_peak_bytes": 1, "rss_peak_bytes": 5, "rss_peak_bytes_per_run": [4]},
              "machine": {"loadavg_1min": 0.5, "loadavg_1min_after": 3.0, "cpus": 2}}  # fmt: skip
    table = bench.format_table(result)
    assert "patches/s wall (normalise + infer + score)" in table and "per CPU-second of infer alone" in table
    assert "import: 80.0 ms (before any model load was timed)" in table and "infer timed through: score_runner" in table
    assert "(2 thread(s) 4 B)" in table and "1-minute load 0.50 before, 3.00 after" in table and "busy" in table


# ------------------------------------------------------------------------ 12: bundle says what it does
def test_bundle_reports_progress_and_an_overwrite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fake(model: str, out: str, *a: Any, progress: Any = None) -> dict[str, Any]:
        progress("loading x.pt")
        Path(out).write_bytes(b"12")
        return {"bytes": 2, "kinds": ["vae"]}

    monkeypatch.setattr(board, "make_bundle", fake)
    target = tmp_path / "b.npz"
    for replaced in (False, True):
        assert board.main(["bundle", "m", "--out", str(target), "--no-tail"]) == 0
        got = capsys.readouterr()
        assert "bundle: loading x.pt" in got.err and ("(overwrote the earlier file)" in got.out) is replaced


# ------------------------------------------------------------------------ 13, 12: the flight guard; atomic JSON
def _bundle_for(artifact: Path) -> tuple[dict[str, Any], BundleArrays]:
    """A bundle whose references are the artifact's own outputs (passes parity exactly), without PyTorch."""
    from edgeae.firmware_sim.runtime import load_artifact

    pred = load_artifact(artifact, threads=1)
    x = np.random.default_rng(0).integers(0, 256, (4, 1, 64, 64), dtype=np.uint8)
    out = pred(x.astype(np.float32) / np.float32(255.0))
    data = BundleArrays({"vae/input.u8": x, **{f"vae/ref/{k}": np.asarray(v) for k, v in out.items()}})
    summary = {"model": "orbital-gray-vae", "kinds": ["vae"],
               "checkpoint_sha256": pred.metadata.source_checkpoint_hash}  # fmt: skip
    return summary, data


def test_check_fails_a_file_the_flight_guard_refuses(tmp_path: Path) -> None:
    for f in ("orbital-gray-vae.int8.onnx", "parity.json"):
        shutil.copy(VAE.parent / f, tmp_path / f)
    failed = tmp_path / "orbital-gray-vae.int8.FAILED.onnx"
    shutil.copy(VAE, failed)
    summary, data = _bundle_for(VAE)
    ok = board.check_artifact(summary, data, tmp_path / "orbital-gray-vae.int8.onnx", threads=1)
    assert ok["passed"] and "refused_by_flight_guard" not in ok
    rec = board.check_artifact(summary, data, failed, threads=1)
    assert not rec["passed"] and ".FAILED." in rec["refused_by_flight_guard"]
    line = board._result_line(rec)
    assert line.startswith("FAIL") and "failed: refused by the flight guard (" in line
    rec["speed"], ok["speed"] = {"items_per_s": 9e9}, {"items_per_s": 1.0}
    assert board.fastest_passing([rec, ok]) == {"vae": ok["artifact"]}  # never the refused one, however fast


def test_check_json_is_written_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeae import atomic

    written: list[str] = []
    monkeypatch.setattr(atomic, "write_text", lambda p, text, **k: written.append(str(p)))
    b = tmp_path / "b.npz"
    summary, data = _bundle_for(VAE)
    summary.update(format_version=1)
    np.savez(b, summary=np.array(json.dumps(summary)), **data)  # type: ignore[arg-type]
    assert board.main(["check", str(b), str(VAE), "--json", str(tmp_path / "r.json")]) == 0
    assert written == [str(tmp_path / "r.json")]


# ------------------------------------------------------------------------ 14: plain messages
def test_misleading_messages_are_plain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert fs_main(["bench", "--model", "", *SMALL]) == 2
    err = capsys.readouterr().err
    assert "--model is empty" in err and "  " not in err.split("error: ", 1)[1]
    with pytest.raises(BundleError, match="is a folder, not a bundle"):
        load_bundle(tmp_path)
    trunc = tmp_path / "t.onnx"
    trunc.write_bytes(VAE.read_bytes()[:20000])
    text = tmp_path / "x.onnx"
    text.write_text("hello, not a model\n")
    for f in (trunc, text):
        with pytest.raises(Exception, match=r"not a valid ONNX model \(truncated or not ONNX") as info:
            bench.load_model(f, 1)
        assert "INVALID_PROTOBUF" not in str(info.value)
    tfl = VAE.with_suffix(".tflite")
    if tfl.exists():
        cut = tmp_path / "t.tflite"
        cut.write_bytes(tfl.read_bytes()[:20000])
        with pytest.raises(Exception, match="not a valid TFLite model") as info:
            bench.load_model(cut, 1)
        assert "unpack_from" not in str(info.value)
    with pytest.raises(SystemExit):
        board.main(["bundle", "--help"])
    assert "vae for a VAE" in " ".join(capsys.readouterr().out.split())  # the --kinds help names the VAE's kind


# ------------------------------------------------------------------------ review r3: names, memory, scoring, rounds
def test_a_shipped_mission_or_zoo_name_wins_over_a_folder_of_that_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """./rover_mastcamz/ (frames, an --out) or ./orbital-gray-vae/ in the current folder: the shipped mission and
    the zoo model are still what the names mean (until review r3 both were refused as folders); a folder that is
    no such name is still said to be a folder."""
    from edgeae.firmware_sim.mission import MissionError, load_mission

    monkeypatch.chdir(tmp_path)
    for name in ("rover_mastcamz", "orbital-gray-vae", "frames"):
        (tmp_path / name).mkdir()
    assert load_mission("rover_mastcamz").name == "rover_mastcamz"
    with pytest.raises(MissionError, match="mission frames is a folder, not a mission file"):
        load_mission("frames")
    with pytest.raises(MissionError, match="neither a file nor a preset"):
        load_mission("nothing_here")
    path, why = bench.resolve_bench_model("orbital-gray-vae", ["onnx"])
    assert path == ZOO / "orbital-gray-vae" / "orbital-gray-vae.int8.onnx" and why == "onnx (--prefer)"
    with pytest.raises(ValueError, match="--model frames is a folder"):
        bench.resolve_bench_model("frames")


def test_bench_rss_peak_is_over_the_whole_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each thread count resets the kernel's high-water mark, which clears ru_maxrss too: a peak in the first thread
    count's run is still the run's peak (until review r3 it was the last thread count's only)."""
    from edgeae.firmware_sim.memory_meter import reset_peak_rss, rss_bytes

    if not reset_peak_rss():
        pytest.skip("needs Linux's /proc/self/clear_refs")
    real = bench.bench_threads
    big = 192 * 2**20
    seen: list[int] = []

    def first_run_peaks(*a: Any, **kw: Any) -> dict[str, Any]:
        if not seen:
            block = np.ones(big, np.uint8)  # touched: resident
            seen.append(rss_bytes())
            del block
        return real(*a, **kw)

    monkeypatch.setattr(bench, "bench_threads", first_run_peaks)
    out = bench.run_bench(VAE, threads=(1, 1), iters=1, batch=2, frame=(32, 32))
    first, last = out["memory"]["rss_peak_bytes_per_run"]
    assert first > seen[0] - big // 4 and last < seen[0] - big // 2  # the second run's own peak misses the block
    assert out["memory"]["rss_peak_bytes"] >= first
    assert out["memory_estimate"]["rss_peak_while_estimating_bytes"] > 0


def test_bench_memory_estimate_is_above_what_the_run_holds() -> None:
    """The U-Net at --batch 8: onnxruntime's second run of a shape holds about twice its first, which the
    estimate measured once (0.36 GB estimated, 0.44 GB measured at --batch 32, review r3); now it runs each twice."""
    unet = ZOO / "rover-rgb-unet2-ground" / "rover-rgb-unet2-ground.int8.onnx"
    out = bench.run_bench(unet, threads=(1,), iters=2, batch=8, frame=(64, 64))
    est = out["memory_estimate"]
    assert est["bytes"] >= out["memory"]["rss_peak_bytes_per_run"][0], (est, out["memory"])
    # (what loading and each batch add to RSS depends on the memory earlier tests freed in this process, which
    # malloc reuses: only the bound above is a property of the estimate)
    assert est["loaded_bytes"] >= 0 and est["per_patch_bytes"] >= 0


def test_bench_times_the_vae_scoring_the_orbital_mission_flies(monkeypatch: pytest.MonkeyPatch) -> None:
    """orbital_nac flies orbital-gray-vae with score = "terms-max" (mu read back beside score): the bench times
    that path for the zoo name, and says so; a file is timed on the score-only path (review r3)."""
    from edgeae.firmware_sim import score

    assert bench.flight_terms("orbital-gray-vae") == (True, 'mission orbital_nac [anomaly] score = "terms-max"')
    assert bench.flight_terms("zoo:orbital-gray-vae")[0] is True
    assert bench.flight_terms(VAE)[0] is False and bench.flight_terms("rover-rgb-unet2-ground")[0] is False
    calls: list[bool] = []
    real = score.score_runner

    def spy(pred: Any, raw_max: Any = None, terms: bool = False, **kw: Any) -> Any:
        calls.append(terms)
        return real(pred, raw_max, terms=terms, **kw)

    monkeypatch.setattr(score, "score_runner", spy)
    out = bench.run_bench("orbital-gray-vae", threads=(1,), iters=1, batch=2, frame=(32, 32), prefer=["onnx"])
    assert calls == [True, True]  # the timed run and the memory pass
    path = out["runs"][0]["infer_path"]
    assert "score and mu outputs" in path and 'mission orbital_nac [anomaly] score = "terms-max"' in path
    assert "infer timed through: score_runner(terms=True)" in bench.format_table(out)
    calls.clear()
    out = bench.run_bench(VAE, threads=(1,), iters=1, batch=2, frame=(32, 32))
    assert calls == [False, False] and "score output only" in out["runs"][0]["infer_path"]


def test_check_time_rounds_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    """``check --time --rounds N``: N windows per artifact (default 3), each of --seconds / N; out of 1-20 or
    without --time refused before the bundle is read."""
    from edgeae.export import board_timing

    windows: list[tuple[str, float]] = []

    def fake(bundle: str, artifact: str, threads: int, batch: int, seconds: float, workers: int = 1) -> Any:
        windows.append((artifact, seconds))
        return _window(100.0, artifact=artifact)

    monkeypatch.setattr(board_timing, "_time_in_subprocess", fake)
    speeds = board.time_interleaved("b.npz", ["a.onnx", "b.tflite"], 1, 8, 2.0, rounds=1)
    assert windows == [("a.onnx", 2.0), ("b.tflite", 2.0)] and [s["windows"] for s in speeds] == [1, 1]
    with pytest.raises(ValueError, match="rounds must be 1-20"):
        board.time_interleaved("b.npz", ["a.onnx"], 1, 8, 2.0, rounds=0)
    missing = str(tmp_path / "missing.npz")
    for argv, match in ((["--rounds", "2"], "--rounds only apply with --time"),
                        (["--time", "--rounds", "0"], "--rounds must be 1-20, got 0")):  # fmt: skip
        assert board.main(["check", missing, "a.onnx", *argv]) == 2
        assert match in capsys.readouterr().err
    got: list[int] = []
    monkeypatch.setattr(board, "time_interleaved", lambda *a: got.append(a[-1]) or [])
    monkeypatch.setattr(board, "check_artifact", lambda *a: {"artifact": "x", "error": "x", "passed": False})
    summary = {"format_version": 1}
    monkeypatch.setattr(board, "load_bundle", lambda p: (summary, {}))
    board.main(["check", missing, "a.onnx", "--time"])
    board.main(["check", missing, "a.onnx", "--time", "--rounds", "1"])
    assert got == [3, 1]

"""Board checks without PyTorch or data (session 29 audit): numpy Spearman, hostile bundles refused by
``load_bundle``, ``board check`` usage errors up front, and ``firmware-sim bench``'s argument checks, untraced
timing and recorded-hash check."""

from __future__ import annotations

import io
import json
import shutil
import tracemalloc
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from edgeae.export.board import BundleError, load_bundle
from edgeae.export.board import main as board_main
from edgeae.export.parity import spearman

ROOT = Path(__file__).resolve().parents[1]
ZOO_VAE = ROOT / "edgeae" / "zoo" / "artifacts" / "orbital-gray-vae"


def test_spearman_is_scipys_without_scipy() -> None:
    """Average ranks for ties, Pearson of the ranks, NaN for a NaN or a constant input: scipy's values."""
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for trial in range(60):
        n = int(rng.integers(3, 300))
        a = rng.normal(size=n)
        b = a + rng.normal(size=n)
        if trial % 2:  # many ties in both
            a, b = np.round(a, 1), np.round(b)
        assert spearman(a, b) == pytest.approx(float(stats.spearmanr(a, b).statistic), abs=1e-12)
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(0.9486832980505139)  # scipy 1.17.1
    assert np.isnan(spearman([1.0, np.nan, 2.0, 3.0], [1, 2, 3, 4]))
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError, match="same length"):
        spearman([1, 2, 3], [1, 2, 3, 4])


def _arrays() -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """A small well-formed VAE bundle's summary and arrays (random numbers: only the layout matters here)."""
    rng = np.random.default_rng(0)
    summary = {
        "format_version": 1,
        "model": "tiny",
        "checkpoint_sha256": "ab" * 32,
        "model_kind": "vae",
        "kinds": ["vae"],
        "tail": {"kind": "vae", "frames": ["a", "b"], "patches": 10},
        "lambda": 5.0,
    }
    f32 = lambda *s: rng.random(s, dtype=np.float32)  # noqa: E731
    arrays = {
        "vae/input.u8": rng.integers(0, 256, (4, 1, 8, 8), dtype=np.uint8),
        "vae/ref/x_hat": f32(4, 1, 8, 8),
        "vae/ref/score": f32(4),
        "vae/ref/mu": f32(4, 3),
        "tail/patches.u8": rng.integers(0, 256, (10, 1, 8, 8), dtype=np.uint8),
        "tail/offsets": np.array([0, 4, 10], np.int64),
        "tail/ref": f32(10),
        "tail/ref_terms_max": f32(10),
        "extremes.f32": f32(3, 1, 8, 8),
        "extremes/ref": f32(3),
    }
    return summary, arrays


def _save(path: Path, summary: Any, arrays: dict[str, np.ndarray]) -> Path:
    np.savez(path, summary=np.array(json.dumps(summary)), **arrays)  # type: ignore[arg-type]
    return path


def test_a_well_formed_bundle_loads(tmp_path: Path) -> None:
    summary, arrays = _arrays()
    got, data = load_bundle(_save(tmp_path / "ok.npz", summary, arrays))
    assert got == summary and sorted(data.files) == sorted(arrays)
    assert np.array_equal(data["tail/offsets"], arrays["tail/offsets"])


def _without(d: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k != key}


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda s, a: (_without(s, "kinds"), a), "'kinds' is None"),
        (lambda s, a: ({**s, "kinds": "vae"}, a), "'kinds' is 'vae'"),
        (lambda s, a: (_without(s, "checkpoint_sha256"), a), "no 'checkpoint_sha256'"),
        (lambda s, a: (s, _without(a, "extremes/ref")), "no 'extremes/ref'"),
        (lambda s, a: (s, _without(a, "vae/ref/score")), "no PyTorch output vae/ref/score"),
        (lambda s, a: (s, {**a, "tail/offsets": np.array([0, 6, 4, 10])}), "tail/offsets must increase"),
        (lambda s, a: (s, {**a, "tail/offsets": np.array([0, 4, 99])}), "tail/offsets must increase"),
        (lambda s, a: (s, {**a, "vae/input.u8": a["vae/input.u8"][:0]}), "not a batch"),
        (lambda s, a: (s, {**a, "vae/ref/x_hat": a["vae/ref/x_hat"][:3]}), "for 4 inputs"),
        (lambda s, a: (s, {**a, "tail/ref": np.full(10, np.nan, np.float32)}), "tail/ref holds NaN"),
        (lambda s, a: (s, {**a, "tail/patches.u8": a["tail/patches.u8"][:, :, :4]}), "tail/patches has shape"),
        (lambda s, a: ({**s, "tail": "vae"}, a), "'tail'"),
    ],
)
def test_damaged_bundles_are_one_bundle_error(tmp_path: Path, change: Any, match: str) -> None:
    """Each of these gave a KeyError, IndexError or a wrong pass in ``board check``; now ``load_bundle`` says why."""
    summary, arrays = change(*_arrays())
    with pytest.raises(BundleError, match=match):
        load_bundle(_save(tmp_path / "bad.npz", summary, arrays))


def test_a_damaged_member_is_refused_at_load(tmp_path: Path) -> None:
    """A flipped byte inside one array: its CRC-32 is checked when the bundle is read, not later in the check."""
    summary, arrays = _arrays()
    path = _save(tmp_path / "crc.npz", summary, arrays)
    raw = bytearray(path.read_bytes())
    at = raw.find(arrays["tail/ref"].tobytes())
    assert at > 0
    raw[at + 5] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(BundleError, match=r"tail/ref: damaged .*CRC"):
        load_bundle(path)


def test_a_forged_array_header_allocates_nothing(tmp_path: Path) -> None:
    """A 3 KB bundle whose member's .npy header declares 52 GB: refused from the header and the member's size."""
    summary, arrays = _arrays()
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for key, v in {"summary": np.array(json.dumps(summary)), **arrays}.items():
            buf = io.BytesIO()
            if key == "vae/ref/x_hat":
                header = {"descr": "<f4", "fortran_order": False, "shape": (8, 1, 64, 25_600_000)}
                np.lib.format.write_array_header_1_0(buf, header)
                buf.write(b"\0" * 1000)
            else:
                np.save(buf, v)
            zf.writestr(key + ".npy", buf.getvalue())
    tracemalloc.start()
    try:
        with pytest.raises(BundleError, match=r"vae/ref/x_hat: its header declares shape \(8, 1, 64, 25600000\)"):
            load_bundle(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 * 2**20


def test_check_usage_errors_come_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Timing options without --time, out-of-range ones and an unwritable --json: exit 2 before the bundle is
    read (the bundle named here does not even exist)."""
    missing = str(tmp_path / "missing.npz")
    for argv, match in (
        (["--workers", "2"], "--workers only apply with --time"),
        (["--batch", "-3", "--seconds", "1"], "--batch, --seconds only apply with --time"),
        (["--time", "--workers", "0"], "--workers must be 1-64"),
        (["--time", "--batch", "100000"], "--batch must be 1-4096"),
        (["--time", "--seconds", "0"], "--seconds must be in (0, 600]"),
        (["--json", str(tmp_path / "nope" / "out.json")], "folder"),
        (["--json", str(tmp_path)], "is a folder"),
    ):
        assert board_main(["check", missing, "a.onnx", *argv]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and match in err and "missing.npz" not in err, (argv, err)


def test_board_refuses_an_artifact_that_differs_from_its_recorded_hash(tmp_path: Path) -> None:
    from edgeae.export.board import check_recorded_hash

    for f in ("orbital-gray-vae.int8.onnx", "parity.json"):
        shutil.copy(ZOO_VAE / f, tmp_path / f)
    target = tmp_path / "orbital-gray-vae.int8.onnx"
    check_recorded_hash(target)  # as exported
    raw = bytearray(target.read_bytes())
    raw[len(raw) // 2] ^= 1
    target.write_bytes(bytes(raw))
    with pytest.raises(BundleError, match=r"SHA-256 .* its parity\.json records"):
        check_recorded_hash(target)


# firmware-sim bench


def test_bench_sizes_are_refused_before_the_model_loads(capsys: pytest.CaptureFixture[str]) -> None:
    """Unbounded or negative sizes: one line, exit 2, about the size (the model named does not exist)."""
    from edgeae.firmware_sim.cli import main as fs_main

    for argv, match in (
        (["--frame-height", "100000", "--frame-width", "100000"], "--frame-height and --frame-width"),
        (["--frame-height", "-5"], "got -5 x 1648"),
        (["--batch", "3000000"], "--batch must be 1-1024"),
        (["--iters", "0"], "--iters must be"),
        (["--keep", "1.5"], "--keep must be a fraction"),
    ):
        assert fs_main(["bench", "--model", "no-such-model.onnx", *argv]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and match in err, (argv, err)


def test_bench_times_untraced_and_measures_memory_in_its_own_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """tracemalloc doubled the sample and normalise stages: every timed pass runs with it off, then one untimed
    pass (one iteration, the first thread count) measures the traced peak."""
    from edgeae.firmware_sim import bench

    calls: list[tuple[int, int, bool]] = []

    def fake(path: Path, threads: int, batch: int, iters: int, frame: Any, keep: float) -> dict[str, Any]:
        calls.append((threads, iters, tracemalloc.is_tracing()))
        np.zeros(1 << 20, np.uint8).sum()  # something for the traced pass to see
        return {"threads": threads}

    monkeypatch.setattr(bench, "bench_threads", fake)
    out = bench.run_bench(ZOO_VAE / "orbital-gray-vae.int8.onnx", threads=(2, 1), iters=7)
    assert calls == [(2, 7, False), (1, 7, False), (2, 1, True)]
    assert out["runs"] == [{"threads": 2}, {"threads": 1}] and not tracemalloc.is_tracing()
    assert out["memory"]["traced_peak_bytes"] >= 1 << 20 and out["memory"]["traced_threads"] == 2


def test_bench_refuses_a_model_that_differs_from_its_recorded_hash(tmp_path: Path) -> None:
    from edgeae.firmware_sim.bench import run_bench

    for f in ("orbital-gray-vae.int8.onnx", "parity.json"):
        shutil.copy(ZOO_VAE / f, tmp_path / f)
    target = tmp_path / "orbital-gray-vae.int8.onnx"
    raw = bytearray(target.read_bytes())
    raw[len(raw) // 2] ^= 1
    target.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"SHA-256 .* its parity\.json records"):
        run_bench(target, threads=(1,), iters=1)

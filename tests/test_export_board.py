"""Parity on the target CPU (edgeae.export.board): bundle where PyTorch is, check where only the runtime is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from edgeae.export import calibration as cal  # noqa: E402
from edgeae.export.api import ExportConfig, export_checkpoint  # noqa: E402
from edgeae.export.board import BundleError, check_artifact, load_bundle, make_bundle  # noqa: E402

from edgeae.checkpoint import save_checkpoint  # noqa: E402
from edgeae.metadata import ModelMetadata, sha256_file  # noqa: E402
from edgeae.models.vae import VAE, VAEConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_vae_run(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> dict[str, Path]:
    """A tiny grey VAE checkpoint, its fp32 and reduce-range int8 ONNX files and its bundle."""
    tmp = tmp_path_factory.mktemp("board")
    torch.manual_seed(0)
    cfg = VAEConfig(channels=1, widths=(4, 8, 8, 8), latent=16, patch=64, score_lambda=5.0)
    meta = ModelMetadata(
        kind="vae", architecture=cfg.to_dict(), input_shape=(-1, 1, 64, 64), channels=1, score={"lambda": 5.0}
    )
    model = VAE(cfg).eval()
    ckpt = save_checkpoint(tmp / "tiny.pt", model, meta)
    meta = meta.replace(source_checkpoint_hash=sha256_file(ckpt))  # as edgeae export records it
    calib = cal.model_patches(meta, cal.split_images(meta, "val", data_root), 16, seed=0)
    test = cal.model_patches(meta, cal.split_images(meta, "test", data_root), 64, seed=1)
    config = ExportConfig(formats=("onnx",), n_calib=16, n_test=64, latency=False, reduce_range=True, tail_check=False)
    export_checkpoint(model, meta, tmp, "tiny", calib, test, config)
    bundle = tmp / "tiny.npz"
    make_bundle(str(ckpt), bundle, data_root=str(data_root))
    return {"bundle": bundle, "fp32": tmp / "tiny.fp32.onnx", "int8": tmp / "tiny.int8.onnx", "dir": tmp}


def test_bundle_checks_artifacts_like_the_export(tiny_vae_run: dict[str, Path]) -> None:
    summary, data = load_bundle(tiny_vae_run["bundle"])
    assert summary["kinds"] == ["vae"] and summary["tail"]["patches"] > 1000
    assert "vae/input.u8" in data.files  # 8-bit frames travel as bytes
    fp32 = check_artifact(summary, data, tiny_vae_run["fp32"])
    assert fp32["passed"] and fp32["psnr_db"] > 100 and fp32["tail"]["extreme_rank_shift"] == 0, fp32
    assert fp32["tail"]["tail_spearman"] > 0.999 and fp32["tail_terms_max"]["passed"]
    q = check_artifact(summary, data, tiny_vae_run["int8"])
    assert q["precision"] == "int8" and q["int8_weights"] == "7-bit (reduce_range)"
    assert q["passed"] and q["psnr_db"] >= 40 and q["tail"]["overlap_16"] >= 0.85, q


def test_check_runs_without_torch_and_writes_json(tiny_vae_run: dict[str, Path]) -> None:
    """The board side needs numpy and the runtime only: PyTorch is never imported. ``--time`` times each
    artifact in a fresh process and names the fastest that passed (one real window each, ``--rounds 1``: three
    interleaved windows of two files launched six processes, 5.7 s; the interleaving is tested with a stub)."""
    out = tiny_vae_run["dir"] / "board.json"
    code = (
        "import sys; from edgeae.export.board import main; "
        f"rc = main(['check', {str(tiny_vae_run['bundle'])!r}, {str(tiny_vae_run['fp32'])!r}, "
        f"{str(tiny_vae_run['int8'])!r}, '--json', {str(out)!r}, '--time', '--seconds', '0.2', '--batch', '16', "
        "'--workers', '2', '--threads', '1', '--rounds', '1']); "
        "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(rc)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "tiny.fp32.onnx: vae fp32" in r.stdout and "extremes rank shift 0" in r.stdout
    assert "items/s (2 x 1 threads, batch 16)" in r.stdout and "fastest passing vae artifact here: " in r.stdout
    rec = json.loads(out.read_text())
    assert rec["results"][0]["passed"] and "int8_saturates" in rec["cpu"]
    speeds = [x["speed"] for x in rec["results"]]
    assert all(sp["items_per_s"] > 0 and sp["calls"] >= 6 and sp["batch"] == 16 for sp in speeds), speeds
    assert all(sp["windows"] == 1 for sp in speeds), speeds  # --rounds 1: one window (process) per artifact
    assert all(sp["workers"] == 2 and sp["threads"] == 1 for sp in speeds), speeds
    assert all(sp["rss_growth_peak_mib"] is not None and sp["rss_growth_peak_mib"] >= 0 for sp in speeds), speeds
    fastest = max(rec["results"], key=lambda x: x["speed"]["items_per_s"])["artifact"]
    # since session 34 no winner is named when the gap is within the timing windows' spread (a tie within noise)
    tie = rec.get("tie_within_noise") or {}
    assert rec["fastest_passing"] == {"vae": fastest} or (not rec["fastest_passing"] and "vae" in tie), rec


def test_timing_a_missing_artifact_reports_the_error(tiny_vae_run: dict[str, Path]) -> None:
    from edgeae.export.board import _time_in_subprocess, fastest_passing, main

    assert main(["check", str(tiny_vae_run["bundle"]), str(tiny_vae_run["int8"]), "--time", "--seconds", "0"]) == 2
    got = _time_in_subprocess(str(tiny_vae_run["bundle"]), str(tiny_vae_run["dir"] / "nope.onnx"), 1, 8, 0.1)
    assert "error" in got and "nope.onnx" in got["error"], got
    recs = [{"kind": "vae", "artifact": "a", "passed": False, "speed": {"items_per_s": 9.0}},
            {"kind": "vae", "artifact": "b", "passed": True, "speed": {"items_per_s": 5.0}},
            {"kind": "vae", "artifact": "c", "passed": True, "speed": got}]  # fmt: skip
    assert fastest_passing(recs) == {"vae": "b"}  # a failed artifact is never named, however fast


def test_bad_bundles_are_refused_with_the_reason(tiny_vae_run: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="no such bundle"):
        load_bundle(tmp_path / "missing.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(BundleError, match="not an edgeae parity bundle"):
        load_bundle(junk)
    old = tmp_path / "old.npz"
    np.savez(old, summary=np.array(json.dumps({"format_version": 0})))
    with pytest.raises(BundleError, match="bundle format 0"):
        load_bundle(old)
    summary, data = load_bundle(tiny_vae_run["bundle"])
    with pytest.raises(BundleError, match="holds \\['cae'\\]"):
        check_artifact({**summary, "kinds": ["cae"]}, data, tiny_vae_run["fp32"])


def test_bundle_sizes_are_bounded_before_unpacking(
    tiny_vae_run: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bundle whose arrays would unpack past the limit is refused from the sizes its archive declares."""
    from edgeae.export import board_bundle

    monkeypatch.setattr(board_bundle, "MAX_UNPACKED_BYTES", 1000)
    with pytest.raises(BundleError, match="unpack to"):
        load_bundle(tiny_vae_run["bundle"])
    monkeypatch.setattr(board_bundle, "MAX_BUNDLE_BYTES", 10)
    with pytest.raises(BundleError, match="more than the 10"):
        load_bundle(tiny_vae_run["bundle"])


def test_artifact_of_another_checkpoint_is_refused(tiny_vae_run: dict[str, Path]) -> None:
    summary, data = load_bundle(tiny_vae_run["bundle"])
    other = {**summary, "checkpoint_sha256": "0" * 64}
    with pytest.raises(BundleError, match="exported from checkpoint"):
        check_artifact(other, data, tiny_vae_run["fp32"])


def test_check_fails_an_artifact_that_misses_its_budget(tiny_vae_run: dict[str, Path], tmp_path: Path) -> None:
    """A bundle whose reference outputs disagree with the artifact (as a saturating CPU's outputs would with
    PyTorch's) makes ``check`` print FAIL and exit 1, with the failed tail budgets named in the JSON."""
    from edgeae.export.board import main

    with np.load(tiny_vae_run["bundle"], allow_pickle=False) as d:
        arrays = {k: d[k] for k in d.files}
    rng = np.random.default_rng(0)
    arrays["vae/ref/x_hat"] = arrays["vae/ref/x_hat"] + rng.normal(0, 0.05, arrays["vae/ref/x_hat"].shape)
    arrays["tail/ref"] = rng.permutation(arrays["tail/ref"])  # another ranking of the tail
    bad = tmp_path / "bad.npz"
    np.savez_compressed(bad, **arrays)
    out = tmp_path / "bad.json"
    assert main(["check", str(bad), str(tiny_vae_run["fp32"]), "--json", str(out)]) == 1
    (rec,) = json.loads(out.read_text())["results"]
    assert not rec["passed"] and rec["psnr_db"] < 40
    assert any("tail_spearman" in f for f in rec["tail"]["fails"]), rec["tail"]


def test_bundle_mistakes_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`board bundle` with a missing model, a folder as --out or --n-test 0: exit 2 and one line (tracebacks)."""
    from edgeae.export.board import main as board_main

    out = str(tmp_path / "b.npz")
    for argv, match in (
        (["bundle", "no-such-model", "--out", out], "no-such-model"),
        (["bundle", "orbital-gray-vae-lite", "--out", str(tmp_path)], "is a folder"),
        (["bundle", "orbital-gray-vae-lite", "--n-test", "0", "--out", out], "--n-test must be at least 1"),
    ):
        assert board_main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and match in err, err


def test_terms_max_failures_are_not_counted_as_the_tails(tiny_vae_run: dict[str, Path], tmp_path: Path) -> None:
    """Only the flight score's reference ranking disagrees: the artifact fails on ``tail_terms_max`` alone, and
    ``tail.fails`` stays empty (it used to list the terms-max failures too: one list object for both)."""
    with np.load(tiny_vae_run["bundle"], allow_pickle=False) as d:
        arrays = {k: d[k] for k in d.files}
    assert "tail/ref_terms_max" in arrays
    arrays["tail/ref_terms_max"] = np.random.default_rng(1).permutation(arrays["tail/ref_terms_max"])
    bad = tmp_path / "tm.npz"
    np.savez_compressed(bad, **arrays)
    summary, data = load_bundle(bad)
    rec = check_artifact(summary, data, tiny_vae_run["fp32"])
    assert not rec["passed"] and not rec["tail_terms_max"]["passed"] and rec["tail_terms_max"]["fails"]
    assert rec["tail"]["passed"] and rec["tail"]["fails"] == [], rec["tail"]


def test_check_runs_without_scipy(tiny_vae_run: dict[str, Path], tmp_path: Path) -> None:
    """Flight installs have no SciPy: ``board check`` (the VAE's score and tail Spearman) runs with it blocked."""
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\n"
        "class _Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('scipy', 'torch'):\n"
        "            raise ImportError(f'blocked {name}')\n"
        "sys.meta_path.insert(0, _Block())\n"
    )
    code = (
        "import sys; from edgeae.export.board import main; "
        f"rc = main(['check', {str(tiny_vae_run['bundle'])!r}, {str(tiny_vae_run['fp32'])!r}]); "
        "assert 'scipy' not in sys.modules; sys.exit(rc)"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok   " in r.stdout and "score Spearman 1.0000, tail Spearman" in r.stdout, r.stdout


def test_one_bad_file_does_not_hide_the_others(
    tiny_vae_run: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file that cannot be checked gets an ``error`` line and a record; the others are checked; exit 1."""
    from edgeae.export.board import main

    readme, out = ROOT / "README.md", tmp_path / "r.json"
    argv = ["check", str(tiny_vae_run["bundle"]), str(tiny_vae_run["fp32"]), str(readme), str(tiny_vae_run["int8"])]
    assert main([*argv, "--json", str(out)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("ok   ") and "tiny.fp32.onnx" in lines[0], lines
    assert lines[1].startswith(f"error {readme}: not an artifact"), lines
    assert lines[2].startswith("ok   ") and "tiny.int8.onnx" in lines[2], lines
    assert lines[3] == f"results: {out}", lines
    recs = json.loads(out.read_text())["results"]
    assert [r["passed"] for r in recs] == [True, False, True] and "not an artifact" in recs[1]["error"]
    assert main([*argv[:3], "--json", str(out)]) == 0  # the good file alone; the JSON is replaced, and says so
    assert f"results: {out} (overwrote the earlier file)" in capsys.readouterr().out


def test_fail_line_names_the_failed_checks(
    tiny_vae_run: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only the terms-max (flight score) tail fails: the FAIL line shows its numbers and the failed budgets."""
    from edgeae.export.board import main

    with np.load(tiny_vae_run["bundle"], allow_pickle=False) as d:
        arrays = {k: d[k] for k in d.files}
    arrays["tail/ref_terms_max"] = np.random.default_rng(1).permutation(arrays["tail/ref_terms_max"])
    bad = tmp_path / "tm.npz"
    np.savez_compressed(bad, **arrays)
    assert main(["check", str(bad), str(tiny_vae_run["fp32"])]) == 1
    line = capsys.readouterr().out.splitlines()[0]
    assert line.startswith("FAIL ") and "; terms-max tail Spearman " in line, line
    assert "; failed: terms-max tail tail_spearman " in line and "(budget ≥ 0.99)" in line, line


def test_a_failed_timing_exits_1(
    tiny_vae_run: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgeae.export import board, board_timing

    monkeypatch.setattr(board_timing, "_time_in_subprocess", lambda *a, **k: {"error": "timed out after 160 s"})
    assert board.main(["check", str(tiny_vae_run["bundle"]), str(tiny_vae_run["fp32"]), "--time"]) == 1
    assert "ok   " in (out := capsys.readouterr().out) and "; timing failed: timed out after 160 s" in out, out

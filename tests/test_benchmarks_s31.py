"""Benchmark plumbing fixes of the session-31 audit: what RESULTS.md attributes to which run, option checks of the
stage scripts, progress bars only on a terminal, one-line errors for bad folders."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import report
from benchmarks.__main__ import PY, STAGES, Stage, main
from benchmarks.report import simd_level, write_results

OLD = 1_000_000_000.0  # an mtime long before any run of these tests
FAKE_FLAGS = ["avx", "avx2", "fma"]

ROOT = Path(__file__).resolve().parents[1]  # the repository: tests run from any folder


def _fake_machine() -> dict:
    return {"date": "2026-12-07T00:00:00+00:00", "commit": "new0001", "cpu": "Test CPU", "logical_cores": 2,
            "gpu": None, "cpu_flags": FAKE_FLAGS, "versions": {"numpy": "2.0"}}  # fmt: skip


def _legacy(size: str, commit: str) -> dict:
    """A stage record from before records listed their files (its run showed the whole folder)."""
    where = {"date": "2026-12-04T21:16:45+00:00", "commit": commit, "cpu": "AMD EPYC", "logical_cores": 2,
             "gpu": None, "amx": False}  # fmt: skip
    return {"title": "Demo stage", "commands": ["python old.py --full"], "returncode": 0, "seconds": 9.0,
            "size": size, "machine": where}  # fmt: skip


def _write_old(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.utime(path, (OLD, OLD))


@pytest.fixture
def fake_stage(monkeypatch: pytest.MonkeyPatch):
    """Register a stage named ``demo`` running the given python code (``{out}``: its folder)."""
    import benchmarks.__main__ as bm

    monkeypatch.setattr(bm, "machine_info", _fake_machine)

    def make(code: str) -> None:
        cmd = (PY, "-c", code, "{out}")
        monkeypatch.setitem(STAGES, "demo", Stage("Demo stage", (cmd,), (cmd,)))

    return make


# ------------------------------------------------------------------------------------------ item 1: export parity
OLD_PARITY = (
    "# Export report: m\n\n| artifact | kind | format | precision | size (KB) | PSNR vs torch (dB) |\n"
    "|---|---|---|---|---:|---:|\n| m.fp32.onnx | vae | onnx | fp32 | 1917 | 148.2 |\n"
)


def test_export_section_shows_the_parity_tables_and_says_their_layout_is_older(tmp_path: Path) -> None:
    out = tmp_path / "results"
    _write_old(out / "export" / "m" / "parity.md", OLD_PARITY)
    (out / "stages.json").write_text(json.dumps({"export": {**_legacy("quick", "d62c69e"), "title": "Export"}}))
    page = write_results(out, tmp_path / "RESULTS.md").read_text()
    section = page.split("## Export", 1)[1]
    assert "### m" in section and "| m.fp32.onnx | vae | onnx | fp32 | 1917 | 148.2 |" in section
    assert "predates the budget and passed columns" in section
    _write_old(out / "export" / "m" / "parity.md", OLD_PARITY.replace("| PSNR vs torch (dB) |", "| budget |"))
    assert "predates" not in write_results(out, tmp_path / "RESULTS.md").read_text()


# ------------------------------------------------------------------------------------------ item 2: stale tables
def test_a_failed_stage_is_marked_failed_and_keeps_its_last_good_tables(tmp_path: Path, fake_stage) -> None:
    """Session 31 hid the old tables of a failed rerun; since session 34 a failed rerun publishes nothing, so the
    last good run's tables stay, under a line saying the latest rerun failed (test_benchmarks_harness_s34)."""
    out = tmp_path / "stale"
    _write_old(out / "demo" / "results.md", "| old | 1.23 |\n")
    (out / "stages.json").write_text(json.dumps({"demo": _legacy("quick", "30e3f40")}))
    fake_stage("import sys; sys.exit(1)")
    assert main(["--only", "demo", "--out", str(out)]) == 1
    page = (out / "RESULTS.md").read_text()
    assert "FAILED" in page and "| old | 1.23 |" in page
    record = json.loads((out / "stages.json").read_text())["demo"]
    assert record["returncode"] == 0 and record["last_failure"]["returncode"] == 1


def test_a_rerun_shows_only_its_own_tables(tmp_path: Path, fake_stage) -> None:
    """(A quick run over a full-size record is not published since session 34: test_benchmarks_harness_s34.)"""
    out = tmp_path / "mix"
    _write_old(out / "demo" / "results.md", "| full | 0.9855 |\n")
    _write_old(out / "demo" / "onnx" / "results.md", "| nac_52224x5064.tif | 64 |\n")
    (out / "stages.json").write_text(json.dumps({"demo": _legacy("quick", "3adbefc+dirty")}))
    fake_stage("import sys, pathlib; pathlib.Path(sys.argv[1], 'results.md').write_text('| quick | 0.9856 |')")
    assert main(["--only", "demo", "--out", str(out)]) == 0
    page = (out / "RESULTS.md").read_text()
    assert "| quick | 0.9856 |" in page and "Size: quick" in page
    assert "nac_52224x5064.tif" not in page  # the full run's onnx table is not presented as this run's
    assert "`onnx/results.md`" in page and "from the quick run of" in page and "commit `3adbefc+dirty`" in page
    record = json.loads((out / "stages.json").read_text())["demo"]
    assert record["files"] == ["results.md"] and record["earlier"]["onnx/results.md"]["commit"] == "3adbefc+dirty"
    # a second quick run keeps the onnx table attributed to the full run, not to the first quick run
    assert main(["--only", "demo", "--out", str(out)]) == 0
    record = json.loads((out / "stages.json").read_text())["demo"]
    assert record["earlier"]["onnx/results.md"]["commit"] == "3adbefc+dirty"


def test_a_record_from_before_files_were_listed_shows_its_whole_folder(tmp_path: Path) -> None:
    out = tmp_path / "results"
    _write_old(out / "demo" / "results.md", "| a | 1 |\n")
    _write_old(out / "demo" / "onnx" / "results.md", "| b | 2 |\n")
    (out / "stages.json").write_text(json.dumps({"demo": _legacy("full", "3adbefc")}))
    page = write_results(out, tmp_path / "RESULTS.md").read_text()
    assert "| a | 1 |" in page and "### onnx" in page and "| b | 2 |" in page and "Not shown" not in page


# ------------------------------------------------------------------------------------------ item 4: SIMD level
def test_simd_level_names_what_moves_float_results() -> None:
    assert simd_level(["avx", "avx2", "fma"]) == "AVX2"
    assert simd_level(["avx2", "avx512f", "avx512_vnni"]) == "AVX-512 + VNNI"
    assert simd_level(["avx2", "avx_vnni"]) == "AVX2 + VNNI"
    assert simd_level(["avx2", "avx512f", "avx512_vnni", "amx_tile"]) == "AVX-512 + VNNI + AMX"


def test_the_run_header_states_the_simd_level(tmp_path: Path) -> None:
    out = tmp_path / "results"
    rec = _legacy("quick", "d62c69e")
    (out / "demo").mkdir(parents=True)
    (out / "demo" / "results.json").write_text(json.dumps({"machine": {"cpu_flags": FAKE_FLAGS, "commit": "d62c69e"}}))
    (out / "stages.json").write_text(json.dumps({"demo": rec}))
    page = write_results(out, tmp_path / "RESULTS.md").read_text()
    assert "SIMD, from the CPU flags its JSON recorded: AVX2 (results.json)." in page
    assert "move with its SIMD level" in page  # the note on fp32-vs-PyTorch figures
    rec["machine"]["cpu_flags"] = ["avx2", "avx512f"]
    (out / "stages.json").write_text(json.dumps({"demo": rec}))
    assert "AMX no, GPU none). SIMD: AVX-512." in write_results(out, tmp_path / "RESULTS.md").read_text()


# ------------------------------------------------------------------------------------------ item 6: plots
def test_plots_past_the_linked_ones_are_counted_with_their_folders(tmp_path: Path) -> None:
    out = tmp_path / "results"
    for sub, n in (("hirise", 13), ("lroc", 3)):
        for i in range(n):
            _write_old(out / "demo" / sub / f"p{i:02d}.png", "png")
    (out / "stages.json").write_text(json.dumps({"demo": _legacy("quick", "abc")}))
    page = write_results(out, tmp_path / "RESULTS.md").read_text()
    assert page.count("![p") == report.MAX_PLOTS
    assert "4 more plot(s) not linked here (the first 12 are): 1 in `results/demo/hirise/`, 3 in " in page


# ------------------------------------------------------------------------------------------ item 8: bad folders
def test_bad_out_folders_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a_file = tmp_path / "afile"
    a_file.write_text("")
    cases = [
        (["--report-only", "--out", str(a_file)], "is a file, not a folder"),
        (["--only", "lossless", "--out", str(a_file / "sub")], "cannot create the folder"),
        (["--report-only", "--out", str(tmp_path / "typo")], "holds no stages.json: nothing to report"),
    ]
    for argv, said in cases:
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2 and said in capsys.readouterr().err
    assert not (tmp_path / "typo").exists()  # no empty RESULTS.md written into a typo


def test_lossless_without_data_is_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "EDGEAE_DATA": str(tmp_path / "nonexistent")}
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "lossless_coding.py"), "--out", str(tmp_path / "x")],
                       capture_output=True, text=True, env=env, timeout=60, check=False)  # fmt: skip
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().startswith("lossless_coding: planetary data folder not found")


# ------------------------------------------------------------------------------------------ item 10: footers
def test_lossless_footer_command_runs_from_the_repository_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import benchmarks.lossless_coding as lc

    monkeypatch.setattr(lc, "split_files", lambda ds, split: [])
    monkeypatch.setattr(lc, "machine_info", lambda: {})
    assert lc.main(["--out", str(tmp_path)]) == 0
    assert "`python benchmarks/lossless_coding.py --out " in (tmp_path / "results.md").read_text()


@pytest.mark.parametrize("script", ["rate_distortion.py", "quantisation_quality.py"])
def test_other_footers_name_the_script_path(script: str) -> None:
    # their main() needs models and data; the command line is built from this literal
    assert f'" ".join(["python benchmarks/{script}", ' in (ROOT / "benchmarks" / script).read_text()


# ------------------------------------------------------------------------------------------ item 3: the NAC strip
def test_local_z_int8_refuses_a_missing_strip_with_the_command_that_writes_it(tmp_path: Path) -> None:
    from benchmarks.local_z_int8 import main as lz

    with pytest.raises(SystemExit) as e:
        lz(["--out", str(tmp_path), "--strip", str(tmp_path / "nac_52224x5064.tif")])
    msg = str(e.value.code)
    assert "is missing" in msg and "--only frame" in msg and "--only nac --full" in msg


def test_local_z_int8_results_say_the_strip_row_was_left_out() -> None:
    from benchmarks.local_z_int8 import markdown

    row = {"frame": "f.png", "stride": 64, "patches": 100, "resolution floor": {"top8": 8, "spearman": 0.9},
           "fixed floor only": {"top8": 7, "spearman": 0.8}}  # fmt: skip
    meta = {"int8": "a.tflite", "fp32": "a.pt", "seconds": 1.0}
    assert "left out" not in markdown([row], {**meta, "strip": "runs/frames/nac.tif"})
    md = markdown([row], {**meta, "strip": None})
    assert "The NAC-size strip row is left out" in md and "--only frame" in md


# ------------------------------------------------------------------------------------------ item 5: link options
@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--seeds", "0"], "--seeds must be at least 1"),
        (["--limit", "-6"], "--limit must be 0 (every test image) or a positive count"),
        (["--methods", "bogus"], "--methods: unknown classical fill 'bogus'"),
    ],
)
def test_link_comparison_refuses_bad_options(argv: list[str], said: str, capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks.link_comparison import main as link

    with pytest.raises(SystemExit) as e:
        link(argv)
    assert e.value.code == 2 and said in capsys.readouterr().err


def test_link_comparison_help_says_limit_0_is_every_image(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks.link_comparison import main as link

    with pytest.raises(SystemExit):
        link(["--help"])
    assert "(0: every one)" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------ item 7: progress bars
class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_evaluate_and_export_draw_bars_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("tqdm")
    from edgeae.anomaly.evaluate import progress_bar as eval_bar
    from export.api import progress_bar as export_bar

    log = io.StringIO()  # a redirected log
    monkeypatch.setattr(sys, "stderr", log)
    assert eval_bar("msl_surface", True) is iter
    assert list(export_bar([1, 2], "m")) == [1, 2]
    assert log.getvalue() == ""
    tty = _Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    assert eval_bar("msl_surface", False) is iter  # --no-progress still wins
    assert list(eval_bar("msl_surface", True)([1, 2])) == [1, 2]
    assert list(export_bar([1, 2], "m")) == [1, 2]
    assert "msl_surface" in tty.getvalue() and "export m" in tty.getvalue()


def test_no_simd_level_is_named_without_x86_flags() -> None:
    """An ARM host (or none recorded) records no avx/fma flags: the header says not recorded, not 'SSE' (review)."""
    from benchmarks.report import simd_note

    assert simd_note({"cpu_flags": []}, Path("."), []) == " SIMD level not recorded."
    assert simd_note({"cpu_flags": ["asimd", "neon"]}, Path("."), []) == " SIMD level not recorded."
    assert simd_note({"cpu_flags": ["avx", "avx2"]}, Path("."), []) == " SIMD: AVX2."

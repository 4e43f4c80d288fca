"""Benchmark provenance fixes of audit a4 (session 35): a section whose files come from other runs or commits says
so, records without threads/versions say since when they are kept, old records of timed stages started under load
are marked, the float note's wording, link_comparison's commit and machine, and seeds that leave torch's global RNG
alone."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks.report import write_results
from benchmarks.stages import Stage

AVX2 = ["avx", "avx2", "fma"]
AVX512_VNNI = ["avx", "avx2", "avx512_vnni", "avx512f", "fma"]


def _where(**extra: Any) -> dict[str, Any]:
    return {"date": "2026-12-06T00:04:22+00:00", "commit": "00e4291+dirty", "cpu": "AMD EPYC", "logical_cores": 2,
            "gpu": None, "amx": False, "vnni": True, **extra}  # fmt: skip


def _record(where: dict[str, Any] | None, load: float = 0.4, **extra: Any) -> dict[str, Any]:
    rec = {"title": "Demo stage", "commands": ["python demo.py"], "returncode": 0, "seconds": 1457.5, "size": "full",
           "load_average_before_after": [[load, 1.0, 1.0], [2.66, 2.0, 2.0]], **extra}  # fmt: skip
    if where is not None:
        rec["machine"] = where
    return rec


def _json(path: Path, commit: str, date: str, flags: list[str], **extra: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    machine = {"date": date, "commit": commit, "cpu": "AMD EPYC", "cpu_flags": flags}
    path.write_text(json.dumps({"machine": machine, **extra}))


def _page(tmp_path: Path, records: dict[str, dict[str, Any]]) -> str:
    out = tmp_path / "results"
    out.mkdir(exist_ok=True)
    (out / "stages.json").write_text(json.dumps(records))
    return write_results(out, tmp_path / "RESULTS.md").read_text()


def _section(page: str, title: str = "Demo stage") -> str:
    return page.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


# ------------------------------------------------------------------------------------------ items 1, 2
def test_a_section_whose_files_come_from_other_runs_says_so_at_its_top(tmp_path: Path) -> None:
    """context_scale's record said one run (00e4291, load 1.4) while its three JSONs were three other runs."""
    folder = tmp_path / "results" / "demo"
    _json(folder / "bank" / "results.json", "8d6060e+dirty", "2026-12-05T11:22:43+00:00", AVX2,
          load_1min_at_start=0.96, seconds=529.7)  # fmt: skip
    _json(folder / "scan" / "results.json", "88e6022+dirty", "2026-12-06T00:39:13+00:00", AVX512_VNNI,
          wait_for_quiet={"load_at_start": 0.93}, wall_seconds=213.2)  # fmt: skip
    _json(folder / "same" / "results.json", "00e4291", "2026-12-06T00:05:00+00:00", AVX512_VNNI)  # this run's
    section = _section(_page(tmp_path, {"demo": _record(_where(), load=1.4)}))
    top = section.split("Reproduce:", 1)[0]
    assert (
        "**Parts from other runs or commits:** the record of this section's run says commit `00e4291+dirty`, "
        "2026-12-06T00:04:22+00:00, 1-minute load 1.4 at its start;" in top
    )
    assert (
        "`bank/results.json` (commit 8d6060e+dirty, 2026-12-05T11:22:43+00:00, AVX2, load 0.96, 529.7 s: another "
        "commit, dated before this run started, VNNI no where this run's record says yes)" in top
    )
    assert (
        "`scan/results.json` (commit 88e6022+dirty, 2026-12-06T00:39:13+00:00, AVX-512 + VNNI, load 0.93, "
        "213.2 s: another commit)" in top
    )
    assert "same/results.json" not in top  # same commit (+dirty aside), after the start, same CPU


def test_a_file_of_the_same_run_at_another_commit_is_named(tmp_path: Path) -> None:
    """lossless: its record says commit 30e3f40 (the run's), its JSON 1b6a94d+dirty (committed during the run)."""
    where = _where(commit="30e3f40", date="2026-12-05T22:08:08+00:00", cpu_flags=AVX512_VNNI)
    _json(tmp_path / "results" / "demo" / "results.json", "1b6a94d+dirty", "2026-12-05T22:13:03+00:00", AVX512_VNNI)
    top = _section(_page(tmp_path, {"demo": _record(where)})).split("Reproduce:", 1)[0]
    assert "`results.json` (commit 1b6a94d+dirty, 2026-12-05T22:13:03+00:00, AVX-512 + VNNI: another commit)" in top
    _json(tmp_path / "results" / "demo" / "results.json", "30e3f40+dirty", "2026-12-05T22:13:03+00:00", AVX512_VNNI)
    assert "Parts from other runs" not in _page(tmp_path, {"demo": _record(where)})  # agrees: no line


def test_a_section_without_a_machine_record_names_what_its_files_recorded(tmp_path: Path) -> None:
    _json(tmp_path / "results" / "demo" / "results.json", "461fab9", "2026-11-21T21:47:39+00:00", AVX2, seconds=608.7)
    section = _section(_page(tmp_path, {"demo": _record(None)}))
    assert (
        "Its files' own records: `results.json` (commit 461fab9, 2026-11-21T21:47:39+00:00, AVX2, 608.7 s)." in section
    )
    assert "Run before stages recorded their machine" in section


# ------------------------------------------------------------------------------------------ item 3
def test_a_record_without_threads_or_versions_says_since_when_they_are_kept(tmp_path: Path) -> None:
    page = _page(tmp_path, {"demo": _record(_where())})
    assert "Threads/versions not recorded (run before commit a8be202 of 2026-12-05 added versions" in page
    page = _page(tmp_path, {"demo": _record(_where(versions={"numpy": "2.4.6"}))})
    assert "Threads not recorded (run before commit 0e595ac of 2026-12-06 added them to stage records)." in page
    threads = {"env": {"OMP_NUM_THREADS": None}, "cpu_count": 2, "affinity": 2}
    page = _page(tmp_path, {"demo": _record(_where(versions={"numpy": "2.4.6"}, threads=threads))})
    assert "Threads not recorded" not in page and "versions not recorded" not in page


# ------------------------------------------------------------------------------------------ item 4
@pytest.mark.parametrize(
    ("timed", "load", "quiet", "warned"),
    [(True, 1.43, False, True), (True, 0.9, False, False), (False, 2.5, False, False), (True, 1.43, True, False)],
)
def test_an_old_record_of_a_timed_stage_started_under_load_is_not_to_be_quoted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, timed: bool, load: float, quiet: bool, warned: bool
) -> None:
    """reconstruction (1.43), export (1.25), lossless (2.0), context_scale (1.4) predate ``under_load``."""
    import benchmarks.stages

    monkeypatch.setitem(benchmarks.stages.STAGES, "demo", Stage("Demo stage", (), (), timed=timed))
    extra = {"quiet": {"load_at_start": 0.5, "quiet": True}} if quiet else {}  # the harness judged it: no fallback
    page = _page(tmp_path, {"demo": _record(_where(), load=load, **extra)})
    line = f"**Measured at 1-minute load {load} (its record's load at the start; the record predates the harness's"
    assert (line in page) is warned
    assert ("timings not to be quoted" in page) is warned


# ------------------------------------------------------------------------------------------ item 5
def test_the_float_note_says_what_moves_between_cpus(tmp_path: Path) -> None:
    page = _page(tmp_path, {})
    assert "do not move" not in page
    assert "Quality figures against the original images are identical at the printed precision where a rerun" in page
    assert "bit-identical" not in page and "classical and int8 ONNX figures the same to every printed digit" in page


def test_short_and_long_hashes_of_one_commit_are_the_same_commit() -> None:
    """pytest-benchmark cuts commits to 7 characters; git short hashes grow to 8; $EDGEAE_BENCHMARK_COMMIT: 40."""
    from benchmarks.report_machine import _differs

    rec = {"commit": "414ff47", "date": None, "cpu": None, "flags": None}
    for theirs in ("414ff47a", "414ff47a" + "0" * 32, "414ff47+dirty"):
        assert _differs({"commit": theirs}, rec) == []
    assert _differs({"commit": "515ff47a"}, rec) == ["another commit"]


# ------------------------------------------------------------------------------------------ item 2: link
def test_link_comparison_records_the_harness_commit_and_its_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It ran `git rev-parse` itself: a dirty tree labelled clean, and $EDGEAE_BENCHMARK_COMMIT ignored."""
    from PIL import Image

    import benchmarks.link_comparison as lc

    img = tmp_path / "rover.png"
    Image.fromarray((np.random.default_rng(0).random((72, 72, 3)) * 255).astype(np.uint8)).save(img)
    monkeypatch.setattr(lc, "split_files", lambda *a: [img])
    monkeypatch.setenv("EDGEAE_BENCHMARK_COMMIT", "abc1234+dirty")
    monkeypatch.setattr("benchmarks.machine._gpu", lambda: None)  # its torch import is not what this test is about
    out = tmp_path / "link"
    assert lc.main(["--out", str(out), "--limit", "1", "--seeds", "1", "--methods", "linear", "--crop", "64"]) == 0
    got = json.loads((out / "results.json").read_text())
    assert got["meta"]["commit"] == got["machine"]["commit"] == "abc1234+dirty"
    assert {"versions", "thread_settings", "cpu_flags", "date"} <= set(got["machine"])
    assert set(got["load_1min"]) == {"before", "after"}
    assert "commit abc1234+dirty" in (out / "results.md").read_text()


# ------------------------------------------------------------------------------------------ item 6: seeds
def test_peak_leaves_the_global_torch_rng_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    import benchmarks.peak as peak

    def no_tflite(n: int, threads: int) -> Any:
        raise ImportError("not in this test")

    monkeypatch.setattr(peak, "_tflite_fc", no_tflite)
    torch.manual_seed(7)
    state = torch.get_rng_state().clone()
    threads = torch.get_num_threads()
    try:
        got = peak.measure_peak(1, n=32, repeats=1)
    finally:
        torch.set_num_threads(threads)
    assert "torch_fp32_gops" in got
    assert torch.equal(torch.get_rng_state(), state)


def test_peak_fc_file_draws_seed_0_as_before_without_the_global_rng(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The layer and its calibration input are seed 0's draws (as the published peak's file), in a forked RNG."""
    torch = pytest.importorskip("torch")
    import benchmarks.peak as peak

    seen: dict[str, Any] = {}

    class Model:
        def export(self, path: str) -> None:
            Path(path).write_bytes(b"tflite")

    def convert(module: Any, args: tuple[Any, ...], quant_config: Any = None) -> Model:
        seen["weight"], seen["x"] = module.weight.detach().clone(), args[0].clone()
        return Model()

    class Quantizer:
        def set_global(self, config: Any) -> Quantizer:
            return self

    fakes = {
        "litert_torch": types.SimpleNamespace(convert=convert),
        "litert_torch.quantize": types.SimpleNamespace(
            pt2e_quantizer=types.SimpleNamespace(PT2EQuantizer=Quantizer,
                                                 get_symmetric_quantization_config=lambda **kw: None),
            quant_config=types.SimpleNamespace(QuantConfig=lambda **kw: None),
        ),
        "torchao.quantization.pt2e.quantize_pt2e": types.SimpleNamespace(
            prepare_pt2e=lambda module, quantizer: module, convert_pt2e=lambda module, fold_quantize: module
        ),
    }  # fmt: skip
    for name, module in fakes.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(torch.export, "export", lambda layer, args: types.SimpleNamespace(module=lambda: layer))
    monkeypatch.setenv("EDGEAE_BENCH_ARTIFACTS", str(tmp_path))
    torch.manual_seed(7)
    state = torch.get_rng_state().clone()
    assert peak.tflite_fc_file(16).read_bytes() == b"tflite"
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(0)  # the draws the file was always made from
    layer, x = torch.nn.Linear(16, 16, bias=False), torch.rand(16, 16)
    assert torch.equal(seen["weight"], layer.weight.detach()) and torch.equal(seen["x"], x)


def test_the_contrastive_encoder_draws_its_weights_from_its_seed_only() -> None:
    """Its weights were built before torch was seeded: from torch's per-process seed, another encoder each run."""
    torch = pytest.importorskip("torch")
    from benchmarks.hirise_contrastive import build_encoder

    torch.manual_seed(7)
    state = torch.get_rng_state().clone()
    a, ha = build_encoder(0)
    torch.rand(3)  # whatever the caller drew in between
    b, hb = build_encoder(0)
    c, _ = build_encoder(1)
    torch.set_rng_state(state)
    same = [torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True)]
    assert all(same) and all(torch.equal(p, q) for p, q in zip(ha.parameters(), hb.parameters(), strict=True))
    assert not torch.equal(a[0].weight, c[0].weight)
    build_encoder(0)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's generator is left as it was

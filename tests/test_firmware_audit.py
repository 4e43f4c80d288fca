"""The defects a user audit of the flight runtime found (one test or more each, numbered as in the audit):
cost model, summaries across boots, lost products, Ctrl-C, mission types, colour filter, report of an
incomplete run, frame arguments, drop reasons, damaged TIFFs, the documented NAC strip, minor ones."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from edgeae.firmware_sim.budget import LADDER, CostModel, StageCost
from edgeae.firmware_sim.cli import EXIT_INTERRUPTED, EXIT_REBOOT, main
from edgeae.firmware_sim.faults import SimulatedReboot
from edgeae.firmware_sim.frames import FrameError, collect_frames, open_frame
from edgeae.firmware_sim.loop import FlightRuntime
from edgeae.firmware_sim.mission import MissionError, mission_from_dict

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from edgeae.firmware_sim.report import write_report
from edgeae.firmware_sim.testing import small_mission as mission
from edgeae.firmware_sim.testing import textured_frame as frame
from edgeae.firmware_sim.testing import tiny_models, tiny_vae_onnx

REPO = Path(__file__).resolve().parents[1]
P = 32


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return tiny_models(tmp_path_factory.mktemp("models"), 1, P)


def _lines(out: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (out / "telemetry.jsonl").read_text().splitlines()]


def _save_frames(d: Path, n: int) -> list[Path]:
    paths = []
    for i in range(n):
        np.save(d / f"f{i}.npy", frame(i))
        paths.append(d / f"f{i}.npy")
    return paths


# ----------------------------------------------------------------------------- 1: a thumbnail's fixed cost
def test_a_thumbnail_does_not_switch_scoring_off_for_the_next_full_frame() -> None:
    """A full 2 Mpix frame, then a 0.001 Mpix thumbnail whose time is the per-frame overhead: the next full
    frame must still be planned at its own cost (it ran sparse_only, predicted 2.6 s for 0.25 s of work)."""
    cost = CostModel(ms_per_patch=2.0)
    full = {"mpix": 2.0, "base_ms": 300.0, "kept_mpix": 0.1, "products_ms": 60.0, "patches": 130, "score_ms": 260.0}
    cost.update(**full, recon_ms=None)
    thumb = {"mpix": 0.001, "base_ms": 18.0, "kept_mpix": 5e-5, "products_ms": 5.0, "patches": 0, "score_ms": 0.0}
    cost.update(**thumb, recon_ms=None)
    nominal = cost.predict(LADDER[0], 2.0, 130, False, 0.05)
    assert nominal == pytest.approx(300 + 60 + 260, rel=0.02)  # the full frame's own cost, not 1/Mpix-fold
    assert cost.predict(LADDER[0], 0.001, 0, False, 0.05) == pytest.approx(18 + 5, rel=0.05)
    assert cost.choose(3000.0, 2.0, 130, False, 0.05, 0.85).name == "nominal"
    assert cost.base.fixed == pytest.approx(18, rel=0.05) and cost.base.rate == pytest.approx(141, rel=0.02)


def test_stage_cost_of_one_frame_size_is_its_rate() -> None:
    """Frames of one size cannot tell a fixed cost from a rate: the rate is what such a frame costs per unit
    (the estimate of every frame before), and a rate never goes negative on noise."""
    c = StageCost(rate=20.0)
    for ms in (100.0, 120.0):
        c.update(2.0, ms)
    assert c.fixed == 0.0 and 50.0 < c.rate < 60.0
    c.update(1.0, 500.0)  # a smaller frame that was slower: no negative rate
    assert c.rate >= 0 and c.fixed >= 0
    c.update(0.0, 1e6)  # no units: nothing learned
    assert c.predict(0.0) < 1e6


def test_a_part_batch_does_not_teach_the_per_patch_cost() -> None:
    cost = CostModel(ms_per_patch=1.0)
    cost.min_patches = 16
    cost.update(mpix=0.01, base_ms=1, kept_mpix=0.001, products_ms=1, patches=1, score_ms=16.0, recon_ms=None)
    assert cost.ms_per_patch == 1.0  # one patch in a batch of 16 costs the whole batch
    cost.update(mpix=0.01, base_ms=1, kept_mpix=0.001, products_ms=1, patches=32, score_ms=96.0, recon_ms=None)
    assert cost.ms_per_patch == pytest.approx(2.0)


# ----------------------------------------------------------------------------- 2: every boot in the summary
def test_summary_after_a_reboot_and_a_rerun_counts_every_boot(tmp_path: Path, models: dict[str, Path]) -> None:
    files = _save_frames(tmp_path, 5)
    m = mission(models, budget={"frame_ms": 5000.0})
    inject = ["seu@frame1", "late@frame2:9000", "reboot@frame3", "bad-frame@frame0:shape"]
    with pytest.raises(SimulatedReboot):
        FlightRuntime(m, tmp_path / "out", inject=inject).run(files)
    s = FlightRuntime(m, tmp_path / "out", inject=inject).run(files)
    assert s["boots"] == 2 and s["this_boot"]["frames"] == 2
    assert s["frames"]["acquired"] == 5 and s["frames"]["processed"] == 4 and s["frames"]["dropped"] == 1
    assert s["timing_ms"]["deadline_missed"] == 1 and [x["frame_id"] for x in s["timing_ms"]["late"]] == [2]
    assert sum(s["degradations"].values()) == 4 and s["scrub_reloads"] == 1
    assert s["faults_not_fired"] == []
    html = write_report(tmp_path / "out", s).read_text()
    assert "1 deadline(s) missed" in html
    # the same command on the finished folder: nothing new, and the summary keeps what the boots measured
    again = FlightRuntime(m, tmp_path / "out", inject=inject).run(files)
    assert again["skipped_already_acquired"] == 5 and again["this_boot"]["frames"] == 0
    for key in ("frames", "timing_ms", "degradations", "anomalies", "faults_not_fired", "scrub_reloads"):
        assert again[key] == s[key], key
    # the peak over every boot is kept (a boot inside a long test process may grow RSS by nothing at all: the
    # allocator reuses what earlier tests freed, so 0 is a valid measurement, not a missing one)
    assert again["memory"]["rss_growth_peak_bytes"] >= s["memory"]["rss_growth_peak_bytes"] >= 0
    assert s["memory"]["rss_growth_peak_bytes"] is not None


def test_a_fresh_state_does_not_count_old_telemetry(tmp_path: Path, models: dict[str, Path]) -> None:
    files = _save_frames(tmp_path, 2)
    m = mission(models)
    FlightRuntime(m, tmp_path / "out").run(files)
    import shutil

    shutil.rmtree(tmp_path / "out" / "queue")  # the state is gone; the old telemetry lines stay in the file
    # since session 35 a state folder whose index is gone is refused (it silently started over, reusing frame ids,
    # pass numbers and sequence counts already sent); --fresh discards it, and the old lines do not count
    with pytest.raises(ValueError, match=r"index\.json is missing but the state folder holds earlier boots"):
        FlightRuntime(m, tmp_path / "out")
    s = FlightRuntime(m, tmp_path / "out", fresh=True).run(files[:1])
    assert s["frames"]["acquired"] == 1 and len(s["anomalies"]) == 1 and s["boots"] == 1


# ----------------------------------------------------------------------------- 3: science all lost
def test_a_frame_whose_science_was_all_refused_is_dropped_not_queued(tmp_path: Path, models: dict[str, Path]) -> None:
    """Sparse pixels only (no anomaly model), storage for one frame's: the second frame's sparse pixels are
    refused. Only its telemetry record waits (it was "queued", reason ''), later is sent ("partial")."""
    files = _save_frames(tmp_path, 2)
    m = mission(
        models,
        anomaly={"model": ""},
        sampling={"keep": 0.15},  # ~2.8 kB of sparse pixels a frame
        reconstruction={"mode": "off"},
        budget={"queue_capacity_bytes": 4096, "pass_every_frames": 100},
    )
    rt = FlightRuntime(m, tmp_path / "out")
    recs = [rt.process(f) for f in files]
    assert recs[1]["refused_items"]
    rt.downlink_pass()  # everything that waits is sent, the second frame's telemetry record among it
    s = rt.finish()
    ledger = {e["frame_id"]: e for e in s["ledger"]}
    assert ledger[0]["outcome"] == "downlinked"
    assert ledger[1]["outcome"] == "dropped" and ledger[1]["code"] == "products_lost"
    assert "sparse: queue_full" in ledger[1]["reason"]
    assert s["frames"]["drop_reasons"] == {"products_lost": 1} and s["frames"]["accounted"]


def test_a_queued_frame_names_the_products_it_lost(models: dict[str, Path]) -> None:
    from edgeae.firmware_sim.queue import EVICTED, PENDING, Item
    from edgeae.firmware_sim.queue_ledger import processed_outcome

    items = [
        Item(0, "patch", 0, 7, 1, 100, status=PENDING),
        Item(1, "sparse", 2, 7, 1, 100, status=EVICTED, reason="evicted for higher-priority item 9"),
        Item(2, "telemetry", 1, 7, 1, 100, status=PENDING),
    ]
    o = processed_outcome(items)
    assert o.outcome == "queued" and o.reason == "sparse: evicted for higher-priority item 9"


# ----------------------------------------------------------------------------- 4: Ctrl-C
MISSION = """
name = "audit"
[camera]
channels = 1
[sampling]
keep = 0.1
[anomaly]
model = "{model}"
patch = 32
stride = 32
top_k = 2
[budget]
frame_ms = 5000.0
downlink_bytes_per_pass = 100000
"""


@pytest.fixture
def cli_setup(tmp_path: Path) -> tuple[Path, list[str]]:
    model = tiny_vae_onnx(tmp_path / "vae.onnx", 1, P)
    (tmp_path / "m.toml").write_text(MISSION.format(model=model))
    return tmp_path, [str(p) for p in _save_frames(tmp_path, 3)]


def test_ctrl_c_writes_the_report_exits_130_and_a_rerun_retries_the_frame(
    cli_setup: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    d, frames = cli_setup
    out = d / "out"
    real = FlightRuntime._queue_products

    def interrupted_once(self: FlightRuntime, work: Any, rec: dict[str, Any]) -> dict[str, int]:
        queued = real(self, work, rec)
        if rec["frame_id"] == 1:
            raise KeyboardInterrupt  # after frame 1's products were queued
        return queued

    monkeypatch.setattr(FlightRuntime, "_queue_products", interrupted_once)
    args = ["run", "--mission", str(d / "m.toml"), "--frames", *frames, "--out", str(out)]
    try:
        rc = main(args)
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped firmware-sim run as a traceback")
    assert rc == EXIT_INTERRUPTED
    printed = capsys.readouterr()
    assert "interrupted after 1 frame(s)" in printed.err and "Traceback" not in printed.err
    assert (out / "report.html").is_file() and "mission audit: 2 frames acquired" in printed.out
    s = json.loads((out / "summary.json").read_text())
    ledger = {e["frame_id"]: e for e in s["ledger"]}
    assert ledger[1]["outcome"] == "dropped" and ledger[1]["code"] == "interrupted" and s["frames"]["accounted"]
    index = json.loads((out / "queue" / "index.json").read_text())
    assert {i["status"] for i in index["items"] if i["frame_id"] == 1} == {"evicted"}  # its products withdrawn
    monkeypatch.setattr(FlightRuntime, "_queue_products", real)
    assert main(args) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["frames"]["acquired"] == 3 and s["frames"]["downlinked"] == 3 and s["skipped_already_acquired"] == 1
    names = [(e["frame_id"], Path(e["source"]).name) for e in s["ledger"]]
    assert names == [(0, "f0.npy"), (1, "f1.npy"), (2, "f2.npy")]  # frame 1 taken again under its own id
    retried = [x for x in _lines(out) if x["type"] == "frame" and x["frame_id"] == 1]
    assert len(retried) == 1 and "retried_after_interrupt" in retried[0]["flags"]


# ----------------------------------------------------------------------------- 5: mission field types
BASE = {"name": "t", "anomaly": {"model": "m.onnx"}}


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("camera", "bit_depth", 8.5, "[camera]: bit_depth must be an integer, got 8.5"),
        ("camera", "channels", 3.0, "[camera]: channels must be an integer, got 3.0"),
        ("sampling", "seed", 2020.5, "[sampling]: seed must be an integer"),
        ("anomaly", "stride", 100.5, "[anomaly]: stride must be an integer"),
        ("anomaly", "top_k", 2.5, "[anomaly]: top_k must be an integer"),
        ("reconstruction", "tile", 128.5, "[reconstruction]: tile must be an integer"),
        ("downlink", "max_packet_bytes", 1024.5, "[downlink]: max_packet_bytes must be an integer"),
        ("runtime", "threads", True, "[runtime]: threads must be an integer, got True (bool)"),
        ("runtime", "measure_memory", "no", "[runtime]: measure_memory must be true or false"),
        ("budget", "pass_every_frames", 1.5, "[budget]: pass_every_frames must be an integer"),
        ("budget", "memory_bytes", float("inf"), "[budget]: memory_bytes must be an integer"),
        ("budget", "frame_ms", float("inf"), "[budget]: frame_ms must be a finite number"),
        ("sampling", "keep", "0.05", "[sampling]: keep must be a finite number, got '0.05' (str)"),
        ("camera", "margin", [1.7, 2, 3, 4], "[camera]: margin must be a list of integers"),
        ("runtime", "inject", 5, "[runtime]: inject must be a list of strings"),
    ],
)
def test_mission_fields_are_type_checked(section: str, key: str, value: Any, message: str) -> None:
    doc = {**BASE, section: {**BASE.get(section, {}), key: value}}  # type: ignore[dict-item]
    with pytest.raises(MissionError) as err:
        mission_from_dict(doc, source="m.toml")
    assert str(err.value).startswith("m.toml: ") and message in str(err.value)


def test_numbers_that_fit_their_field_are_kept() -> None:
    m = mission_from_dict({**BASE, "budget": {"frame_ms": 3000}, "camera": {"margin": 4}})
    assert m.budget.frame_ms == 3000.0 and isinstance(m.budget.frame_ms, float) and m.camera.margin == (4,)


def test_a_margin_wider_than_the_frame(tmp_path: Path, models: dict[str, Path]) -> None:
    with pytest.raises(MissionError, match="margin \\[300\\] leaves no row of the camera's 560"):
        mission_from_dict({**BASE, "camera": {"height": 560, "width": 800, "margin": [300]}})
    rt = FlightRuntime(mission(models, camera={"margin": [100]}), tmp_path)  # any size: decided per frame
    rec = rt.process(frame())  # 128 x 192
    rt.finish()
    assert rec["status"] == "dropped" and rec["reason"] == "invalid_margin" and "leaves no pixel" in rec["detail"]


def test_set_and_frame_ms_are_checked_like_the_file(
    cli_setup: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    d, frames = cli_setup
    args = ["run", "--mission", str(d / "m.toml"), "--frames", frames[0], "--out", str(d / "o")]
    assert main([*args, "--set", "anomaly.batch=2.5"]) == 2
    assert "[anomaly]: batch must be an integer, got 2.5" in capsys.readouterr().err
    assert main([*args, "--frame-ms", "inf"]) == 2
    assert "[budget]: frame_ms must be a finite number" in capsys.readouterr().err


def test_a_mission_without_an_anomaly_model_says_so(
    cli_setup: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    d, frames = cli_setup
    (d / "plain.toml").write_text('name = "plain"\n[camera]\nchannels = 1\n')
    assert main(["run", "--mission", str(d / "plain.toml"), "--frames", frames[0], "--out", str(d / "p")]) == 0
    assert "WARNING: the mission names no [anomaly] model" in capsys.readouterr().err
    s = json.loads((d / "p" / "summary.json").read_text())
    assert len(s["warnings"]) == 1 and "no [anomaly] model" in s["warnings"][0]


# ----------------------------------------------------------------------------- 6, 7: colour filter
def _mosaic(h: int = 128, w: int = 192) -> np.ndarray:
    """An RGGB mosaic of a smooth colour scene (neighbours differ more than same-colour pixels two apart)."""
    y, x = np.mgrid[0:h, 0:w]
    m = np.empty((h, w), np.uint8)
    m[0::2, 0::2] = (180 + x[0::2, 0::2] // 16)[...]
    m[0::2, 1::2] = 90 + y[0::2, 1::2] // 16
    m[1::2, 0::2] = 90 + y[1::2, 0::2] // 16
    m[1::2, 1::2] = 30 + x[1::2, 1::2] // 16
    return m


@pytest.fixture(scope="module")
def rgb_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return tiny_models(tmp_path_factory.mktemp("rgb"), 3, P)


def test_frames_demosaiced_counts_only_frames_demosaiced_and_processed(
    tmp_path: Path, rgb_models: dict[str, Path]
) -> None:
    m = mission(rgb_models, camera={"channels": 3, "bayer": "RGGB"}, reconstruction={"mode": "off"})
    nan = _mosaic().astype(np.float32) / 255
    nan[:40] = np.nan
    rt = FlightRuntime(m, tmp_path)
    recs = [rt.process(a) for a in (_mosaic(), _mosaic().astype(np.uint16), nan)]
    s = rt.finish()
    assert [r["status"] for r in recs] == ["processed", "dropped", "dropped"]
    assert recs[0]["camera"] == {"bayer": "RGGB", "demosaiced": True} and recs[1]["reason"] == "invalid_dtype"
    assert s["colour_filter"]["frames_demosaiced"] == 1


def test_a_wrong_channel_count_in_a_colour_filter_mission_is_dropped_with_its_reason(
    tmp_path: Path, rgb_models: dict[str, Path]
) -> None:
    m = mission(rgb_models, camera={"channels": 3, "bayer": "RGGB"}, reconstruction={"mode": "off"})
    rt = FlightRuntime(m, tmp_path, inject=["bad-frame@frame0:shape"])
    recs = [rt.process(_mosaic()) for _ in range(2)]
    rt.finish()
    assert recs[0]["status"] == "dropped" and recs[0]["reason"] == "invalid_channels"
    assert "2 channels" in recs[0]["detail"] and recs[1]["status"] == "processed"


# ----------------------------------------------------------------------------- 8: report of an incomplete run
def test_report_of_a_rebooted_run(cli_setup: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]) -> None:
    d, frames = cli_setup
    out = d / "rb"
    args = ["run", "--mission", str(d / "m.toml"), "--frames", *frames, "--out", str(out)]
    assert main([*args, "--inject", "reboot@frame1"]) == EXIT_REBOOT
    assert not (out / "summary.json").exists()
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    assert "run incomplete (rebooted or interrupted)" in capsys.readouterr().out
    html = (out / "report.html").read_text()
    assert "Run incomplete" in html and "1 frame(s) acquired: 1 downlinked" in html
    (out / "telemetry.jsonl").unlink()
    assert main(["report", str(out)]) == 0
    assert "missing: telemetry.jsonl" in capsys.readouterr().out
    html = (out / "report.html").read_text()
    assert "telemetry.jsonl is missing" in html and "No frame was processed" not in html
    assert main(["report", str(d / "nothing")]) == 2
    assert "nothing does not exist: give the --out folder of a firmware-sim run" in capsys.readouterr().err
    (d / "empty").mkdir()
    assert main(["report", str(d / "empty")]) == 2
    assert "holds no summary.json, telemetry.jsonl or queue/index.json" in capsys.readouterr().err


# ----------------------------------------------------------------------------- 9: frame arguments
def test_frame_arguments_that_give_no_frame_are_reported(tmp_path: Path) -> None:
    (tmp_path / "b_dir.png").mkdir()
    folder = tmp_path / "fold"
    (folder / "sub.png").mkdir(parents=True)
    np.save(folder / "a.npy", frame())
    (folder / "x.txt").write_text("x")
    (folder / "y.bmp").write_bytes(b"BM")
    found = collect_frames([tmp_path / "b_dir.png", folder])
    assert [p.name for p in found.files] == ["a.npy"]
    assert len(found.empty) == 1 and "b_dir.png: is a directory (named like a frame file)" in found.empty[0]
    assert [Path(x.split("/ ")[0]).name for x in found.skipped] == ["sub.png", "x.txt", "y.bmp"]
    with pytest.raises(FrameError, match="is a directory"):
        open_frame(folder / "sub.png")


def test_skipped_entries_are_one_console_line_and_in_the_summary(
    cli_setup: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    d, _ = cli_setup
    folder = d / "fold"
    folder.mkdir()
    np.save(folder / "a.npy", frame())
    (folder / "notes.txt").write_text("x")
    (d / "empty.png").mkdir()
    args = ["run", "--mission", str(d / "m.toml"), "--frames", str(folder), str(d / "empty.png"), "--out", str(d / "o")]
    assert main(args) == 0
    printed = capsys.readouterr()
    assert "empty.png: is a directory" in printed.err
    assert "1 entries of --frames folders are not frame files, skipped (notes.txt" in printed.out
    s = json.loads((d / "o" / "summary.json").read_text())
    assert s["inputs"]["skipped_in_folders"] == [str(folder / "notes.txt")]


# ----------------------------------------------------------------------------- 10: drop reasons by code
def test_drop_reasons_are_counted_by_code(
    cli_setup: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    d, _ = cli_setup
    bad = []
    for i in range(6):
        (d / f"garbage_{i:02d}_{'x' * 60}.npy").write_bytes(b"not numpy %d" % i)
        bad.append(str(d / f"garbage_{i:02d}_{'x' * 60}.npy"))
    args = ["run", "--mission", str(d / "m.toml"), "--frames", *bad, "--out", str(d / "o")]
    assert main(args) == 1
    s = json.loads((d / "o" / "summary.json").read_text())
    assert s["frames"]["drop_reasons"] == {"unreadable": 6}
    assert all(e["code"] == "unreadable" and e["source"] in e["reason"] for e in s["ledger"])  # detail kept
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("mission audit"))
    assert len(line) < 120 and "unreadable x6" in line


# ----------------------------------------------------------------------------- 11: damaged TIFF
def test_a_truncated_tiff_is_unreadable_not_a_frame_error(tmp_path: Path, models: dict[str, Path]) -> None:
    tifffile = pytest.importorskip("tifffile")
    path = tmp_path / "t.tif"
    img = np.random.default_rng(0).integers(0, 250, (512, 512), dtype=np.uint8)
    tifffile.imwrite(path, img, tile=(128, 128))
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.6)])  # the header and tile offsets survive, the last tiles do not
    rt = FlightRuntime(mission(models, camera={"source": "strips", "strip_rows": 64}), tmp_path / "out")
    rec = rt.process(path)
    rt.finish()
    assert rec["status"] == "dropped" and rec["reason"] == "unreadable", rec.get("detail")
    assert str(path) in rec["detail"]


# ----------------------------------------------------------------------------- 12: the documented NAC strip
def _call_keywords(source: str, func: str) -> dict[str, Any]:
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == func:
            return {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg}
    raise AssertionError(f"no call of {func}")


def test_documented_nac_strip_is_the_benchmarks_strip() -> None:
    docs = (REPO / "docs" / "firmware_sim.md").read_text()
    snippet = re.search(r'python -c "(from edgeae\.strips import write_tiled_bigtiff.*?)"', docs, re.S)
    assert snippet, "docs/firmware_sim.md lost its strip-building command"
    documented = _call_keywords(snippet.group(1).replace("\\\n", ""), "write_tiled_bigtiff")
    bench = _call_keywords((REPO / "benchmarks" / "frame_costs.py").read_text(), "write_tiled_bigtiff")
    defaults = {"tile": 512, "seed": 0, "nodata_margin": 0}
    assert {**defaults, **documented} == {**defaults, **bench}


# ----------------------------------------------------------------------------- 13: minor
def test_no_passes_means_no_pass_files(tmp_path: Path, models: dict[str, Path]) -> None:
    rt = FlightRuntime(mission(models, budget={"downlink_bytes_per_pass": 0}), tmp_path)
    rt.process(frame())
    s = rt.finish()
    assert s["queue"]["passes"] == 0 and not list(tmp_path.glob("downlink/pass_*.bin"))
    assert s["frames"]["queued"] == 1


def test_the_timeline_shows_no_level_for_a_dropped_frame(tmp_path: Path, models: dict[str, Path]) -> None:
    bad = frame().astype(np.float32) / 255
    bad[:40] = np.nan  # dropped by the strip check, after its level was chosen
    rt = FlightRuntime(mission(models), tmp_path)
    rec = rt.process(bad)
    s = rt.finish()
    assert rec["status"] == "dropped" and "level" in rec
    html = write_report(tmp_path, s).read_text()
    row = re.search(r"<tr><td class='l'>0</td>.*?</tr>", html)
    assert row and ">dropped</td><td class='l'>–</td>" in row.group(0)


def test_a_refused_first_boot_leaves_nothing(tmp_path: Path, models: dict[str, Path]) -> None:
    m = mission(models, anomaly={"model": str(tmp_path / "missing.onnx")})
    with pytest.raises(MissionError, match="does not exist"):
        FlightRuntime(m, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("x")
    with pytest.raises(MissionError):
        FlightRuntime(m, tmp_path / "mine")
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["keep.txt"]


# ----------------------------------------------------------------------------- export audit: models named
def test_a_relative_model_path_in_a_mission_file_is_beside_the_file(
    cli_setup: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    d, frames = cli_setup
    sub = d / "missions"
    sub.mkdir()
    (sub / "vae.onnx").write_bytes((d / "vae.onnx").read_bytes())
    text = (d / "m.toml").read_text().replace(str(d / "vae.onnx"), "vae.onnx")
    (sub / "rel.toml").write_text(text)
    elsewhere = d / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # was read from the current folder: "does not exist"
    assert main(["run", "--mission", str(sub / "rel.toml"), "--frames", frames[0], "--out", str(d / "r")]) == 0
    s = json.loads((d / "r" / "summary.json").read_text())
    assert s["frames"]["downlinked"] + s["frames"].get("queued", 0) == 1


def test_a_model_named_on_the_command_line_is_checked_before_the_run(
    cli_setup: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    import hashlib

    d, frames = cli_setup
    args = ["run", "--mission", str(d / "m.toml"), "--frames", frames[0], "--out", str(d / "o"), "--anomaly-model"]
    (d / "empty.onnx").write_bytes(b"")
    assert main([*args, str(d / "empty.onnx")]) == 2
    assert "empty file (0 bytes)" in capsys.readouterr().err
    (d / "renamed.onnx").write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(64))
    assert main([*args, str(d / "renamed.onnx")]) == 2
    assert "this is a TFLite flatbuffer (TFL3), not .onnx" in capsys.readouterr().err
    assert main([*args, str(d / "nope.onnx")]) == 2
    assert "no such file" in capsys.readouterr().err
    # a bit flipped after export: parity.json beside it records the exported file's SHA-256
    good = (d / "vae.onnx").read_bytes()
    record = {"artifacts": [{"path": "runs/x/flipped.onnx", "sha256": hashlib.sha256(good).hexdigest()}]}
    (d / "parity.json").write_text(json.dumps(record))
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0x10
    (d / "flipped.onnx").write_bytes(bytes(bad))
    assert main([*args, str(d / "flipped.onnx")]) == 2
    assert "differs from the" in capsys.readouterr().err
    assert not (d / "o").exists()  # refused before anything was written


def test_golden_hash_reads_the_exports_parity_record(tmp_path: Path) -> None:
    from edgeae.firmware_sim.guard import golden_hash

    f = tmp_path / "m.tflite"
    f.write_bytes(b"model")
    assert golden_hash(f, "")[1] == "first-load"
    (tmp_path / "parity.json").write_text(json.dumps({"artifacts": [{"path": "a/m.tflite", "sha256": "ab" * 32}]}))
    assert golden_hash(f, "") == ("ab" * 32, "parity.json")
    assert golden_hash(f, "CD" * 32) == ("cd" * 32, "mission")  # the mission's own hash comes first
    (tmp_path / "parity.json").write_text("{not json")
    assert golden_hash(f, "")[1] == "first-load"  # a broken record is no record


def test_checking_a_named_model_loads_nothing_before_the_boot(
    cli_setup: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An interpreter opened by the check would sit in the RSS baseline the memory budget is measured from."""
    import edgeae.firmware_sim.runtime as runtime
    from edgeae.firmware_sim.cli import _check_named_model

    d, _ = cli_setup

    def no_load(*a: Any, **k: Any) -> Any:
        raise AssertionError("the check loaded the model")

    monkeypatch.setattr(runtime, "load_artifact", no_load)
    _check_named_model("--anomaly-model", str(d / "vae.onnx"))


def test_set_takes_a_fault_list(cli_setup: tuple[Path, list[str]]) -> None:
    d, frames = cli_setup
    args = ["run", "--mission", str(d / "m.toml"), "--frames", *frames[:2], "--out", str(d / "f")]
    assert main([*args, "--set", "runtime.inject=late@frame1:10"]) == 0
    assert any(e.get("fault") == "late@frame1:10" for e in _lines(d / "f") if e.get("kind") == "fault_injected")


# ----------------------------------------------------------------------------- review of the audit fixes
@pytest.mark.parametrize("where", ["downlink_pass", "probe"])
def test_ctrl_c_after_a_frame_was_processed_keeps_its_record(
    tmp_path: Path, models: dict[str, Path], monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """Ctrl-C in the downlink pass after frame 1 (or in its probe, after the ledger said processed): frame 1 is
    not taken again, so its one frame line (anomalies, timing, level) must be written; it was lost for good."""
    from edgeae.firmware_sim.loop import RunInterrupted
    from edgeae.firmware_sim.queue import DownlinkQueue

    files = _save_frames(tmp_path, 3)
    m = mission(models, reconstruction={"mode": "off"})
    out = tmp_path / "out"
    calls = {"n": 0}
    owner: Any = DownlinkQueue if where == "downlink_pass" else FlightRuntime
    name = "downlink_pass" if where == "downlink_pass" else "_probe"
    real = getattr(owner, name)

    def stop_at_frame_1(self: Any, *a: Any, **k: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:  # one pass / one probe per frame: the second is frame 1's
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(owner, name, stop_at_frame_1)
    with pytest.raises(RunInterrupted) as stopped:
        FlightRuntime(m, out).run(files)
    s = stopped.value.summary
    assert s["frames"]["processed"] == 2 and [a["frame_id"] for a in s["anomalies"]] == [0, 1]
    assert sum(s["degradations"].values()) == 2
    monkeypatch.setattr(owner, name, real)
    s = FlightRuntime(m, out).run(files)
    assert s["skipped_already_acquired"] == 2 and s["frames"]["processed"] == 3
    assert [a["frame_id"] for a in s["anomalies"]] == [0, 1, 2] and sum(s["degradations"].values()) == 3
    assert [x["frame_id"] for x in _lines(out) if x["type"] == "frame"] == [0, 1, 2]  # exactly one line each


def test_a_refused_first_boot_keeps_the_users_files_in_an_existing_out(tmp_path: Path, models: dict[str, Path]) -> None:
    """A refused first boot removes what it created (queue/, telemetry.jsonl), not a user's summary.json,
    report.html, downlink/, report_img/ or faults/ that were there before it (they were deleted)."""
    out = tmp_path / "results"
    mine = {
        "summary.json": b'{"mine": 1}',
        "report.html": b"<html>my report</html>",
        "downlink/ground_capture.bin": b"x" * 10,
        "report_img/p.png": b"png",
        "faults/note.txt": b"n",
        "notes.txt": b"keep me",
    }
    for rel, data in mine.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(data)
    m = mission(models, anomaly={"model": str(tmp_path / "missing.onnx")})  # refused after queue/ was opened
    with pytest.raises(MissionError, match="does not exist"):
        FlightRuntime(m, out)
    left = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert left == set(mine) and all((out / rel).read_bytes() == data for rel, data in mine.items())
    assert not (out / "queue").exists() and not (out / "telemetry.jsonl").exists()


def test_a_thumbnail_as_the_first_frame_does_not_switch_scoring_off() -> None:
    """Each boot starts a fresh cost model: a thumbnail first set the rate to its ms / 0.001 Mpixel (the next full
    frame predicted 13 s, ran sparse_only); a frame below ``min_units`` never sets the rate, its time is fixed
    cost, and two small frames of different sizes fit no line either."""
    cost = CostModel(ms_per_patch=2.0)
    thumb = {"mpix": 0.001, "base_ms": 18.0, "kept_mpix": 5e-5, "products_ms": 5.0, "patches": 0, "score_ms": 0.0}
    cost.update(**thumb, recon_ms=None)
    assert cost.base.rate == 20.0 and cost.base.fixed == pytest.approx(18.0, abs=0.1)  # the prior rate kept
    assert cost.predict(LADDER[0], 0.001, 0, False, 0.05) == pytest.approx(18 + 5, rel=0.01)  # its own cost
    assert cost.predict(LADDER[0], 2.0, 130, False, 0.05) < 400  # 18 + 40 + 5 + 20 + 260, not 46,000
    assert cost.choose(3000.0, 2.0, 130, False, 0.05, 0.85).name == "nominal"
    full = {"mpix": 2.0, "base_ms": 300.0, "kept_mpix": 0.1, "products_ms": 60.0, "patches": 130, "score_ms": 260.0}
    cost.update(**full, recon_ms=None)  # two sizes: the line separates fixed cost and rate
    assert cost.base.fixed == pytest.approx(18, rel=0.05) and cost.base.rate == pytest.approx(141, rel=0.02)
    one_pixel = StageCost(rate=100.0)
    one_pixel.update(1e-9, 5.0)
    assert one_pixel.rate == 100.0 and one_pixel.predict(1.0) == pytest.approx(105.0)  # was 5e9 ms per Mpixel
    one_pixel.update(0.001, 23.0)  # 18 ms more for 0.001 Mpixel more: noise, not 18,000 ms per Mpixel
    assert one_pixel.rate == 100.0 and one_pixel.predict(1.0) < 150


def test_a_boot_that_starts_with_a_thumbnail_scores_the_next_full_frame(
    tmp_path: Path, models: dict[str, Path]
) -> None:
    rng = np.random.default_rng(0)
    thumb, full = ((rng.random(shape) * 200).astype(np.uint8) for shape in ((32, 32), (1024, 1024)))
    rt = FlightRuntime(mission(models, budget={"frame_ms": 2000.0}, reconstruction={"mode": "off"}), tmp_path)
    recs = [rt.process(thumb), rt.process(full)]
    rt.finish()
    assert recs[1]["level"]["name"] == "nominal", recs[1]["predicted_ms"]  # was sparse_only, predicted 13-24 s
    assert recs[1]["predicted_ms"] < 1000


def test_bigger_frames_that_ran_faster_do_not_plan_a_big_frame_at_their_mean() -> None:
    """A cold 0.25 Mpixel frame at 400 ms, then 2 Mpixel at 300 ms: a negative slope made the stage flat (333 ms
    for a 264 Mpixel frame that takes ~40 s); now the larger of the mean and the line through the origin."""
    c = StageCost(rate=20.0)
    c.update(0.25, 400.0)
    c.update(2.0, 300.0)
    assert c.predict(264.0) > 35_000  # ~150 ms per Mpixel
    assert c.predict(2.0) >= 300.0 and c.predict(0.25) >= 300.0  # never below what either frame cost
    assert c.predict(2.0) < 400.0  # and not the cold frame's rate applied to the big one


def test_a_part_batch_is_predicted_as_a_whole_one() -> None:
    """A model with a static batch of 8 pads 12 patches to 16: predicted (and learned) per slot run."""
    cost = CostModel(ms_per_patch=10.0, ms_per_mpix=0.0, ms_recon=0.0, ms_per_mkept=0.0)
    cost.batch = cost.min_patches = 8
    predicted = [cost.predict(LADDER[i], 0.01, 12, False, 0.1) for i in (0, 2, 3, 5)]
    assert predicted == [160.0, 80.0, 80.0, 0.0]  # 12 -> 16, 6 -> 8, 3 -> 8, none (was 120, 60, 30)
    cost.update(mpix=0.01, base_ms=0, kept_mpix=0.001, products_ms=0, patches=12, score_ms=160.0, recon_ms=None)
    assert cost.ms_per_patch == pytest.approx(10.0)  # 160 ms for 16 slots, not 13.3 per patch
    cost.batch = 1  # a dynamic batch: a call runs only its patches
    assert cost.predict(LADDER[0], 0.01, 12, False, 0.1) == pytest.approx(120.0)


def test_the_runtime_knows_the_models_static_batch(tmp_path: Path, models: dict[str, Path]) -> None:
    from edgeae.firmware_sim.loop import padded_batch
    from edgeae.firmware_sim.runtime import ArtifactPredictor

    rt = FlightRuntime(mission(models), tmp_path)
    rt.finish()
    assert rt.cost.batch == 1 and rt.cost.min_patches == 8  # the ONNX stand-in has a dynamic batch
    pytest.importorskip("ai_edge_litert")
    lite = REPO / "edgeae" / "zoo" / "artifacts" / "orbital-gray-vae-lite" / "orbital-gray-vae-lite.int8.tflite"
    if not lite.is_file():
        pytest.skip("the shipped LiteRT VAE is not in this checkout")
    assert padded_batch(ArtifactPredictor(lite)) == 16  # converted with a static batch of 16

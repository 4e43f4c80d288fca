"""Session 30 audit of flight-only installs: each flight extra alone flies both shipped missions (zoo models take
the file for the installed interpreter), ``check`` exits 1 when a model would be refused, a damaged TIFF leaves no
reader behind, ccsds121 without libaec is refused at boot, the codec ``auto`` chose is recorded, and the smaller
command-line fixes (bench --json, BrokenPipe, board zoo names, height x width, artifact messages).

An install without onnxruntime (or LiteRT) is simulated by ``edgeae.resolve._installed``, the one place the
runtime asks; the interpreter that stays "installed" really is, so what loads is real.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("spacepackets")

from edgeae import resolve
from edgeae.resolve import ARTIFACTS_DIR, interpreter_missing, model_path

REPO = Path(__file__).resolve().parents[1]


def _only(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Pretend only ``modules`` of the two interpreters are installed."""
    real = resolve._installed
    interpreters = {"onnxruntime", "ai_edge_litert"}
    monkeypatch.setattr(resolve, "_installed", lambda m: m in modules if m in interpreters else real(m))


def _resolved(mission: str) -> tuple[str, str]:
    from edgeae.firmware_sim.mission import load_mission
    from edgeae.firmware_sim.onboard import resolve_model_file

    m = load_mission(mission)
    an = resolve_model_file(m.anomaly.model, m.anomaly.prefer).name
    rc = resolve_model_file(m.reconstruction.model, m.reconstruction.prefer).name if m.reconstruction.model else ""
    return an, rc


# ---------------------------------------------------------------- 1: zoo models, the mission's order of preference
def test_shipped_missions_fly_todays_files_with_both_interpreters(monkeypatch: pytest.MonkeyPatch) -> None:
    _only(monkeypatch, "onnxruntime", "ai_edge_litert")
    assert _resolved("orbital_nac") == ("orbital-gray-vae.int8.tflite", "")
    assert _resolved("rover_mastcamz") == ("rover-rgb-gtcae.int8.onnx", "rover-rgb-unet2-flight.int8.onnx")


def test_one_interpreter_takes_the_file_that_exists_for_it(monkeypatch: pytest.MonkeyPatch) -> None:
    _only(monkeypatch, "onnxruntime")
    assert _resolved("orbital_nac")[0] == "orbital-gray-vae.int8.onnx"
    _only(monkeypatch, "ai_edge_litert")
    an, rc = _resolved("rover_mastcamz")
    assert an == "rover-rgb-gtcae.int8.tflite"
    # the U-Net ships as .onnx only: said in one line with the extra that runs it
    why = interpreter_missing(ARTIFACTS_DIR / "rover-rgb-unet2-flight" / rc, "--recon-model")
    assert why is not None and "ships only .onnx" in why and "pip install 'edgeae[flight-onnx]'" in why


def test_a_pinned_file_names_the_installed_interpreters_file_not_a_second_interpreter(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _only(monkeypatch, "ai_edge_litert")
    pinned = model_path("zoo:rover-rgb-gtcae/rover-rgb-gtcae.int8.onnx", "artifact")
    why = interpreter_missing(pinned, "--anomaly-model")
    assert why is not None and "pip install" not in why
    assert "use --anomaly-model zoo:rover-rgb-gtcae/rover-rgb-gtcae.int8.tflite" in why
    own = tmp_path / "mine.onnx"
    own.write_bytes(b"x")
    assert "pip install 'edgeae[flight-onnx]'" in (interpreter_missing(own) or "")
    assert interpreter_missing(pinned.with_suffix(".tflite")) is None
    _only(monkeypatch, "onnxruntime", "ai_edge_litert")
    assert interpreter_missing(pinned) is None


def test_prefer_is_checked() -> None:
    from edgeae.firmware_sim.mission import MissionError, mission_from_dict

    with pytest.raises(MissionError, match=r"\[anomaly\].*prefer takes artifact formats"):
        mission_from_dict({"name": "x", "anomaly": {"model": "zoo:orbital-gray-vae", "prefer": ["tfl"]}})
    with pytest.raises(MissionError, match="prefer names a format twice"):
        mission_from_dict({"name": "x", "reconstruction": {"prefer": ["onnx", "onnx"]}})


def test_check_exits_1_and_run_flies_degraded_without_the_interpreter(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgeae.firmware_sim.cli import main

    _only(monkeypatch, "ai_edge_litert")  # flight-tflite: the rover's U-Net check has no file for it
    assert main(["check", "--mission", "rover_mastcamz"]) == 1
    cap = capsys.readouterr()
    out, err = cap.out, cap.err  # WARNING lines on stderr since session 34
    assert "boots degraded, without its reconstruction model" in out + err
    assert "rover-rgb-gtcae.int8.tflite" in out  # the anomaly model flies, from the file this install runs
    assert err.count("WARNING: the reconstruction model would be refused") == 1 and "ships only .onnx" in err
    frame = tmp_path / "f.npy"
    np.save(frame, np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8))
    args = ["run", "--mission", "rover_mastcamz", "--frames", str(frame), "--out", str(tmp_path / "o")]
    assert main([*args, "--frame-ms", "60000"]) == 0  # a run keeps flying, without the check
    err = capsys.readouterr().err  # every WARNING on stderr (session 34)
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert [r["role"] for r in s["models_refused"]] == ["reconstruction"] and s["frames"]["downlinked"] == 1
    assert Path(s["models"]["anomaly"]).name == "rover-rgb-gtcae.int8.tflite"
    assert err.count("WARNING: the reconstruction model was refused at boot") == 1


def test_flight_install_benchmark_flags_runs_without_their_models() -> None:
    from benchmarks.flight_install import mission_ok, model_outcome, to_markdown

    summary = {
        "models": {"anomaly": None, "reconstruction": "/x/rover-rgb-unet2-flight.int8.onnx"},
        "models_refused": [{"role": "anomaly", "detail": "a.onnx needs onnxruntime", "consequence": "..."}],
    }
    entry = {"rc": 0, "frames": {"acquired": 3, "downlinked": 3, "queued": 0, "dropped": 0}, **model_outcome(summary)}
    assert entry["flew_without"] == ["anomaly"] and not mission_ok(entry)  # rc 0 and 3/3 processed, unscored
    recon_only = {**entry, "flew_without": ["reconstruction"]}
    assert mission_ok(recon_only) and mission_ok({**entry, "flew_without": []})
    res = {"extra": "flight-onnx", "pip_ok": True, "venv_mb": 1, "site_packages_mb": 1, "added_by_install_mb": 1,
           "within_budget": True, "heavy_modules_present": [], "largest_mb": {}, "bench": {"rc": 0},
           "missions": {"orbital_nac": entry}}  # fmt: skip
    md = to_markdown([res], 10.0)
    assert "flew WITHOUT its anomaly model" in md and "a.onnx needs onnxruntime" in md


# ------------------------------------------------------------------------ 2: a damaged TIFF leaves nothing behind
def _live_readers() -> tuple[list[str], int]:
    """Generators of the TIFF reader still alive (uncollected included) and TiffFiles still open."""
    objs = gc.get_objects()
    gens = [o.__qualname__ for o in objs if type(o).__name__ == "generator" and "TiffFrame" in o.__qualname__]
    opened = sum(1 for o in objs if type(o).__name__ == "TiffFile" and not o.filehandle.closed)
    return gens, opened


_GROWTH_RUN = """
import json, sys
from pathlib import Path
from edgeae.firmware_sim.loop import FlightRuntime
from edgeae.firmware_sim.mission import load_mission
h, w, out, *frames = sys.argv[1:]
m = load_mission("orbital_nac").with_overrides(
    camera={"height": int(h), "width": int(w)}, anomaly={"model": ""}, budget={"downlink_bytes_per_pass": 0}
)
rt = FlightRuntime(m, Path(out))
recs = [rt.process(f) for f in frames]
rt.finish()
print(json.dumps({"status": [r["status"] for r in recs], "growth": recs[-1]["memory"]["rss_growth_peak"]}))
"""


def test_a_damaged_tiff_leaves_no_reader_and_no_memory_behind(tmp_path: Path) -> None:
    tifffile = pytest.importorskip("tifffile")
    from edgeae.firmware_sim.loop import FlightRuntime
    from edgeae.firmware_sim.mission import load_mission

    h, w = 4096, 5064  # NAC-wide strips: each strip buffer 1.3 MB
    img = np.random.default_rng(0).integers(20, 220, (h, w), dtype=np.uint8)
    good = tmp_path / "good.tif"
    tifffile.imwrite(good, img, tile=(512, 512), bigtiff=True)
    bad = tmp_path / "bad.tif"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])  # truncated: tiles past the middle missing
    m = load_mission("orbital_nac").with_overrides(
        camera={"height": h, "width": w}, anomaly={"model": ""}, budget={"downlink_bytes_per_pass": 0}
    )
    rt = FlightRuntime(m, tmp_path / "in_process")
    try:
        for _ in range(2):
            rec = rt.process(bad)
            assert rec["status"] == "dropped" and rec["reason"] == "unreadable", rec
            assert _live_readers() == ([], 0)  # without a gc.collect(): freed when the frame was dropped
    finally:
        rt.finish()
    # memory: the good frame's RSS growth after two damaged frames vs after a good one, each in a fresh process
    # (in a long test process the garbage of earlier tests moves RSS by more than the effect measured)
    growth = {}
    for name, frames in (("after_good", (good, good)), ("after_bad", (bad, bad, good))):
        argv = [sys.executable, "-c", _GROWTH_RUN, str(h), str(w), str(tmp_path / name), *map(str, frames)]
        run = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=REPO)
        assert run.returncode == 0, run.stderr[-2000:]
        got = json.loads(run.stdout.strip().splitlines()[-1])
        assert got["status"][-1] == "processed", got
        growth[name] = got["growth"]
    # the strip and band buffers of the dropped frames (about 6 MiB each, uncollected) no longer sit in the good
    # frame's memory (two of them kept: +12 MiB)
    assert growth["after_bad"] <= growth["after_good"] + 4 * 2**20, growth


# ------------------------------------------------------------------- 3, 4: the sample codec at boot and in the summary
def _tiny_mission(tmp_path: Path, **downlink: Any) -> Path:
    text = 'name = "tiny"\n[camera]\nchannels = 1\nheight = 128\nwidth = 192\n[sampling]\nkeep = 0.1\n'
    text += "[budget]\nframe_ms = 60000.0\n"
    if downlink:
        text += "[downlink]\n" + "".join(f'{k} = "{v}"\n' for k, v in downlink.items())
    path = tmp_path / "tiny.toml"
    path.write_text(text)
    return path


def test_ccsds121_without_libaec_is_refused_at_boot(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgeae.firmware_sim import boot
    from edgeae.firmware_sim.cli import main

    from edgeae.wire.codec import CodecError, encode_samples

    monkeypatch.setattr(boot, "aec_available", lambda: False)
    assert main(["check", "--mission", str(_tiny_mission(tmp_path, codec="ccsds121"))]) == 2
    err = capsys.readouterr().err
    assert 'codec = "ccsds121" needs libaec' in err and "pip install 'edgeae[flight-ccsds121]'" in err
    monkeypatch.setitem(sys.modules, "imagecodecs", None)  # the codec's own hint names the extra too
    with pytest.raises(CodecError, match=r"pip install 'edgeae\[flight-ccsds121\]'"):
        encode_samples(np.zeros(4, np.uint8), 3)


def test_the_codec_auto_chose_is_in_the_summary_and_on_the_console(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgeae.firmware_sim.cli import main

    from edgeae.wire import codec

    monkeypatch.setattr(codec, "aec_available", lambda: False)
    frame = tmp_path / "f.npy"
    np.save(frame, np.full((128, 192), 100, np.uint8))
    out = tmp_path / "o"
    assert main(["run", "--mission", str(_tiny_mission(tmp_path)), "--frames", str(frame), "--out", str(out)]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["sample_codec"]["configured"] == "auto" and s["sample_codec"]["used"] == "delta-deflate"
    assert "libaec is not installed" in s["sample_codec"]["why"]
    console = capsys.readouterr().out
    assert console.count("samples coded delta-deflate (codec auto: libaec is not installed") == 1


# ------------------------------------------------------------------------------ 6, 9: firmware-sim bench
def test_bench_json_folder_is_refused_first_and_an_overwrite_is_said(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgeae.firmware_sim.cli import main

    small = ["--model", "orbital-gray-vae", "--threads", "1", "--iters", "1", "--batch", "4"]
    small += ["--frame-height", "64", "--frame-width", "64"]
    assert main(["bench", *small, "--json", str(tmp_path)]) == 2
    err = capsys.readouterr()
    assert "is a folder" in err.err and "p50" not in err.out  # refused before the benchmark ran
    target = tmp_path / "b.json"
    target.write_text("{}")
    assert main(["bench", *small, "--json", str(target)]) == 0
    out = capsys.readouterr().out
    assert "replaced the file that was there" in out and json.loads(target.read_text())["runs"]
    assert "artifact orbital-gray-vae.int8." in out and "1-minute load " in out


def test_bench_table_names_what_it_measured_and_warns_about_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeae.firmware_sim import bench, frame_intake

    stage = {"p50": 1.0, "p90": 1.0, "p99": 1.0}
    run = {"threads": 64, "stages_ms": dict.fromkeys(bench.STAGES, stage), "patches_per_s": 1.0,
           "patches_per_cpu_s": 1.0, "batch": 16, "patch": 64, "load_ms": 1.0,
           "model": {"kind": "vae", "precision": "int8"}}  # fmt: skip
    monkeypatch.setattr(frame_intake, "usable_cores", lambda: 2)
    result = {"artifact": "/z/orbital-gray-vae.int8.tflite", "versions": {"ai-edge-litert": "2.3.0"}, "runs": [run],
              "memory": {"traced_peak_bytes": 1, "rss_peak_bytes": 1}, "warnings": [bench.thread_warning([1, 64])],
              "machine": {"loadavg_1min": 1.97705078125, "cpus": 2}}  # fmt: skip
    table = bench.format_table(result)
    assert table.splitlines()[0].startswith("artifact orbital-gray-vae.int8.tflite (ai-edge-litert 2.3.0, vae int8)")
    assert "1-minute load 1.98" in table and "1.977" not in table
    assert "WARNING" not in table and "WARNING: --threads 64: more than the 2 core(s)" in bench.warning_lines(result)[0]
    assert bench.thread_warning([1, 2]) is None


# ------------------------------------------------------------------------------ 7, 9: python -m edgeae.export.board
def test_board_check_takes_zoo_names_and_prints_the_cpu_readably(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeae.export.board import BundleError, check_artifact, cpu_line, resolve_artifact

    pinned = "zoo:orbital-gray-vae/orbital-gray-vae.int8.tflite"
    assert resolve_artifact(pinned) == str(ARTIFACTS_DIR / "orbital-gray-vae" / "orbital-gray-vae.int8.tflite")
    assert Path(resolve_artifact("orbital-gray-vae")).parent == ARTIFACTS_DIR / "orbital-gray-vae"
    assert resolve_artifact("missing.onnx") == "missing.onnx"  # its check says "no such file"
    with pytest.raises(FileNotFoundError, match="zoo models"):
        resolve_artifact("orbital-grey-vae")
    line = cpu_line({"machine": "x86_64", "int8_saturates": True, "vnni": False, "cpu_model": "EPYC",
                     "onnxruntime": None})  # fmt: skip
    assert (
        line == ("x86_64; EPYC; VNNI no; full-range int8 ONNX saturates here: yes; onnxruntime not installed")
        and "{" not in line
    )
    _only(monkeypatch, "ai_edge_litert")  # a shipped .onnx on a LiteRT board: the file to check instead
    with pytest.raises(BundleError, match=r"use zoo:orbital-gray-vae/orbital-gray-vae.int8.tflite") as info:
        check_artifact({}, None, resolve_artifact("zoo:orbital-gray-vae/orbital-gray-vae.int8.onnx"))
    assert "pip install" not in str(info.value)


# ------------------------------------------------------------------------------ 8: a closed pipe
def test_a_closed_pipe_ends_quietly() -> None:
    code = (
        "import sys; from edgeae.firmware_sim import cli\n"
        "def closed(args): raise BrokenPipeError(32, 'Broken pipe')\n"
        "cli._missions = closed\n"
        "sys.exit(cli.main(['missions', '--json']))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    # since session 37 one line says so, as edgeae's commands do (README, exit statuses); never a traceback
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    assert "a pipe it wrote to was closed" in r.stderr


# ------------------------------------------------------------------------------ 10: height x width
def test_frame_sizes_are_height_by_width(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgeae.firmware_sim.cli import main

    assert main(["missions"]) == 0
    out = capsys.readouterr().out
    assert "52224x5064" in out and "height x width" in out
    assert main(["check", "--mission", str(_tiny_mission(tmp_path))]) == 0
    assert "a 128 x 192 px (height x width) frame's buffers" in capsys.readouterr().out


# ------------------------------------------------------------------------------ 11: not an artifact
def test_a_file_that_is_no_artifact_is_named_for_what_it_is(tmp_path: Path) -> None:
    from edgeae.resolve import NameNotFound

    plain = tmp_path / "passwd"
    plain.write_text("root:x:0:0\n")
    with pytest.raises(NameNotFound) as info:
        model_path(str(plain), "artifact")
    assert "passwd has no artifact suffix" in str(info.value) and "export" not in str(info.value)
    ckpt = tmp_path / "m.pt"
    ckpt.write_bytes(b"x")
    with pytest.raises(NameNotFound, match=r"m.pt is a PyTorch checkpoint: make an artifact from it with edgeae "):
        model_path(str(ckpt), "artifact")


def test_a_resumed_out_compares_the_files_flown_not_how_the_model_was_named(tmp_path: Path) -> None:
    """A folder started when orbital_nac pinned zoo:orbital-gray-vae/orbital-gray-vae.int8.tflite, resumed with
    today's zoo:orbital-gray-vae + prefer (the same file on this install): no settings change is reported. The
    file flown changing (another interpreter installed between boots) is."""
    import json

    from edgeae.firmware_sim.mission import load_mission
    from edgeae.firmware_sim.state import check_mission_state, write_mission_state

    m = load_mission(str(REPO / "firmware_sim" / "missions" / "orbital_nac.toml"))
    write_mission_state(tmp_path, m)
    doc = json.loads((tmp_path / "mission.json").read_text())
    flown = doc["settings"]["anomaly.model_file"]
    assert flown and flown.endswith(".tflite")
    old = dict(doc["settings"])
    old["anomaly.model"] = f"zoo:orbital-gray-vae/{flown}"
    old["anomaly.prefer"] = "()"
    del old["anomaly.model_file"]  # written before session 30
    (tmp_path / "mission.json").write_text(json.dumps({"name": doc["name"], "settings": old}))
    assert check_mission_state(tmp_path, m) == []
    doc["settings"]["anomaly.model_file"] = flown.replace(".tflite", ".onnx")
    (tmp_path / "mission.json").write_text(json.dumps(doc))
    assert check_mission_state(tmp_path, m) == [
        f"anomaly.model_file: {flown.replace('.tflite', '.onnx')!r} -> {flown!r}"
    ]

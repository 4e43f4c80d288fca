"""``firmware-sim run`` and ``bench`` end to end; the flight runtime never imports torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from edgeae.firmware_sim.cli import EXIT_REBOOT, main

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from _helpers_firmware import save_frames, write_mission


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, list[str]]:
    write_mission(tmp_path, "cli-test", frame_ms=5000.0)
    return tmp_path, [str(p) for p in save_frames(tmp_path, 3)]


def test_run_writes_outputs(setup: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]) -> None:
    d, frames = setup
    out = d / "out"
    cmd = ["run", "--mission", str(d / "m.toml"), "--frames", *frames, "--out", str(out)]
    assert main([*cmd, "--set", "anomaly.top_k=2", "--set", "sampling.pattern=jittered"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["frames"]["acquired"] == 3 and s["frames"]["downlinked"] == 3 and s["frames"]["accounted"]
    assert [len(a["patches"]) for a in s["anomalies"]] == [2, 2, 2] and s["anomalies"][0]["patches"][0] == {
        **s["anomalies"][0]["patches"][0],
        "x": 96,
        "y": 64,
    }
    lines = [json.loads(x) for x in (out / "telemetry.jsonl").read_text().splitlines()]
    assert [x["type"] for x in lines if x["type"] in ("start", "end")] == ["start", "end"]
    frame_recs = [x for x in lines if x["type"] == "frame"]
    assert all({"timing_ms", "memory", "level", "queued_bytes", "flags"} <= set(x) for x in frame_recs)
    assert sorted(p.name for p in (out / "downlink").glob("pass_*.bin")) == [f"pass_0000{i}.bin" for i in (1, 2, 3)]
    printed = capsys.readouterr().out  # no threshold: the top 2 by rank, none judged anomalous (session 36)
    assert "frame 0: highest-scoring patches (no threshold set)" in printed and "anomalous" not in printed


def test_run_errors_and_reboot(setup: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]) -> None:
    d, frames = setup
    assert main(["run", "--mission", str(d / "nope.toml"), "--frames", *frames, "--out", str(d / "o")]) == 2
    assert "nope.toml" in capsys.readouterr().err
    assert (
        main(
            [
                "run",
                "--mission",
                str(d / "m.toml"),
                "--frames",
                *frames,
                "--out",
                str(d / "o"),
                "--inject",
                "seu@frameX",
            ]
        )
        == 2
    )
    bad_set = ["run", "--mission", str(d / "m.toml"), "--frames", *frames, "--out", str(d / "o"), "--set"]
    assert main([*bad_set, "anomaly.top_k=0"]) == 2 and "top_k" in capsys.readouterr().err
    assert main([*bad_set, "nosuch.x=1"]) == 2 and "unknown mission section" in capsys.readouterr().err
    assert main([*bad_set, "camera.foo=1"]) == 2 and "[camera] has no key 'foo'; its keys:" in capsys.readouterr().err
    assert main([*bad_set, "budget.memory_bytes=true"]) == 2 and "takes an integer, not True" in capsys.readouterr().err
    # a TOML array sets a list field (it was refused as "takes a tuple, not [2, 2, 2, 2]")
    ok = ["run", "--mission", str(d / "m.toml"), "--frames", frames[0], "--out", str(d / "arr"), "--set"]
    assert main([*ok, "camera.margin=[2, 2, 2, 2]"]) == 0
    args = ["run", "--mission", str(d / "m.toml"), "--frames", *frames, "--out", str(d / "r")]
    assert main([*args, "--inject", "reboot@frame1"]) == EXIT_REBOOT
    assert main(args) == 0
    s = json.loads((d / "r" / "summary.json").read_text())
    assert s["frames"]["acquired"] == 3 and s["recovered_from_reboot"]


def test_bench_json(setup: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]) -> None:
    d, _ = setup
    rc = main(
        [
            "bench",
            "--model",
            str(d / "vae.onnx"),
            "--threads",
            "1",
            "--iters",
            "3",
            "--batch",
            "4",
            "--frame-height",
            "64",
            "--frame-width",
            "64",
            "--json",
            str(d / "b.json"),
        ]
    )
    assert rc == 0
    r = json.loads((d / "b.json").read_text())
    run = r["runs"][0]
    assert run["threads"] == 1 and run["patch"] == 32 and run["patches_per_s"] > 0
    assert set(run["stages_ms"]) == {"sample", "normalise", "infer", "score", "scrub", "packetise"}
    assert "throughput" in capsys.readouterr().out
    # a decoder is not a scorer: one clear line (was a numpy broadcasting error)
    dec = "zoo:rover-rgb-gtcae/rover-rgb-gtcae-decoder.int8.onnx"
    assert main(["bench", "--model", dec, "--threads", "1", "--iters", "1"]) == 2
    assert "is a cae-decoder artifact" in capsys.readouterr().err
    vae = str(d / "vae.onnx")
    assert main(["bench", "--model", vae, "--threads", "a"]) == 2 and "comma-separated" in capsys.readouterr().err
    assert main(["bench", "--model", vae, "--json", str(d / "no" / "b.json")]) == 2  # before the benchmark
    assert "does not exist" in capsys.readouterr().err


FLIGHT_IMPORTS_FROM_EDGEAE = {  # docs/firmware_sim.md, "What the flight runtime imports": numpy-only, shared
    *("edgeae._optional", "edgeae._version", "edgeae._headers", "edgeae.imagedecode", "edgeae.metadata"),
    *("edgeae.masks", "edgeae.cae_input", "edgeae.nodata", "edgeae.tiling", "edgeae.bayer", "edgeae.logs"),
    *("edgeae.resolve", "edgeae.zoo", "edgeae.zoo.registry", "edgeae.anomaly", "edgeae.anomaly.terms"),
    *("edgeae.wire", "edgeae.atomic", "edgeae.folder_lock", "edgeae.cli_conventions", "edgeae.memory_probe"),
    *("edgeae.printable", "edgeae.zoo.user", "edgeae.zoo.checkpoints"),
}


def test_flight_runtime_never_imports_torch(setup: tuple[Path, list[str]]) -> None:
    """A run (with an SEU), a board benchmark and both missions' checks (zoo names, terms-max, raw frames) load no
    torch/OpenCV/SciPy/onnx and, of edgeae, only the numpy-only modules docs/firmware_sim.md lists."""
    d, frames = setup
    code = (
        "import sys\n"
        "from edgeae.firmware_sim.cli import main\n"
        f"rc = main(['run', '--mission', {str(d / 'm.toml')!r}, '--frames', *{frames!r},"
        f" '--out', {str(d / 'x')!r}, '--inject', 'seu@frame1'])\n"
        f"rc |= main(['bench', '--model', {str(d / 'vae.onnx')!r}, '--threads', '1', '--iters', '2',"
        " '--frame-height', '64', '--frame-width', '64', '--json', '/dev/null'])\n"
        "rc |= main(['check', '--mission', 'orbital_nac']) | main(['check', '--mission', 'rover_mastcamz'])\n"
        "bad = [m for m in ('torch', 'cv2', 'scipy', 'onnx') if m in sys.modules]\n"
        f"ok = {sorted(FLIGHT_IMPORTS_FROM_EDGEAE)!r}\n"
        "bad += [m for m in sys.modules if m.startswith('edgeae.') and not m.startswith('edgeae.firmware_sim')"
        " and m not in ok and not m.startswith('edgeae.wire.')]\n"
        "print('FORBIDDEN', bad)\n"
        "sys.exit(rc or (3 if bad else 0))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "FORBIDDEN []" in proc.stdout


def test_missions_as_json_give_every_setting(capsys: pytest.CaptureFixture[str]) -> None:
    """`firmware-sim missions --json`, as `edgeae links --json` and `edgeae zoo --json` (it was unrecognised)."""
    from edgeae.firmware_sim.mission import load_mission

    assert main(["missions", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {"rover_mastcamz", "orbital_nac"} <= set(doc)
    nac = doc["orbital_nac"]
    m = load_mission(nac["file"])
    assert nac["camera"]["height"] == m.camera.height == 52224 and nac["camera"]["width"] == m.camera.width
    assert nac["budget"]["memory_bytes"] == m.budget.memory_bytes and nac["summary"]

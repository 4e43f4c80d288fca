"""Session 34, audit a2 (a new mission written from scratch): fault arguments no run could fly, error lines that
name the option, field and file, frame arguments that do not exist or are not frames, the mission-field table of
docs/firmware_sim.md, and ``bench --prefer``."""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from edgeae.firmware_sim import cli
from edgeae.firmware_sim.cli import main
from edgeae.firmware_sim.faults import MAX_LATE_MS, MAX_SEU_BITS, FaultSpecError, flip_bits, parse_fault
from edgeae.firmware_sim.frames import collect_frames
from edgeae.firmware_sim.mission import _SECTIONS, Anomaly, Camera, MissionError, load_mission, mission_from_dict
from edgeae.firmware_sim.score import ScoringError, check_model

REPO = Path(__file__).resolve().parents[1]
MISSION = """name = "s34"
[camera]
channels = 1
[anomaly]
patch = 32
stride = 32
"""


@pytest.fixture
def mission_file(tmp_path: Path) -> Path:
    (tmp_path / "m.toml").write_text(MISSION)
    return tmp_path / "m.toml"


# ----------------------------------------------------------------------------- 3: fault arguments
@pytest.mark.parametrize(
    "spec",
    [
        "seu@frame1:nan",
        "seu@frame1:inf",
        "seu@frame1:1e30",  # hung, growing its list of flips for ever
        "seu@frame1:2.5",  # silently 2 bits
        "seu@frame1:0",
        f"seu@frame1:{MAX_SEU_BITS + 1}",
        "seu-recon@frame1:-1",
        "seu@frame1:" + "9" * 5000,  # int() refuses 4,300 digits: a ValueError, not a fault error
        "late@frame1:nan",
        "late@frame1:inf",
        "late@frame1:1e300",
        f"late@frame1:{MAX_LATE_MS * 2}",
        "late@frame1:abc",
        "reboot@frame1:3",
        "corrupt-model@load:x",
        "seu@frame²",
        "bad-frame@frame1:",
    ],
)
def test_fault_arguments_no_run_could_fly_are_refused_when_parsed(spec: str) -> None:
    with pytest.raises(FaultSpecError, match="fault"):
        parse_fault(spec)


def test_fault_arguments_within_their_limits_are_kept() -> None:
    assert str(parse_fault(f"seu@frame1:{MAX_SEU_BITS}")) == f"seu@frame1:{MAX_SEU_BITS}"
    assert parse_fault("late@frame2:0.5").arg == "0.5" and parse_fault(f"late@frame2:{MAX_LATE_MS:.0f}").frame == 2
    assert parse_fault("seu-recon@frame0").arg == "" and parse_fault("reboot@frame4").frame == 4
    image = np.zeros(64, np.uint8)
    assert len(flip_bits(image, 3, np.random.default_rng(0))) == 3
    with pytest.raises(ValueError, match="outside"):
        flip_bits(image, MAX_SEU_BITS + 1, np.random.default_rng(0))


@pytest.mark.parametrize("command", ["run", "check"])
def test_inject_is_refused_before_the_boot_naming_the_option(
    command: str, mission_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    np.save(tmp_path / "f.npy", np.zeros((32, 32), np.uint8))
    out = tmp_path / "out"
    run = ["--frames", str(tmp_path / "f.npy"), "--out", str(out)] if command == "run" else []
    assert main([command, "--mission", str(mission_file), *run, "--inject", "seu@frame0,late@frame1:nan"]) == 2
    err = capsys.readouterr().err
    assert "--inject fault 'late@frame1:nan': the lateness must be a number of ms" in err, err
    assert not out.exists()


# ----------------------------------------------------------------------------- 8: error lines
def _args(mission: Path, **kw: object) -> argparse.Namespace:
    base = {"mission": str(mission), "anomaly_model": None, "recon_model": None, "threads": None, "frame_ms": None}
    return argparse.Namespace(**{**base, "set": None, **kw})


@pytest.mark.parametrize(
    ("kw", "start"),
    [
        ({"set": ["camera.height=3.0"]}, "--set camera.height=3.0: [camera]: height must be an integer"),
        ({"threads": 0}, "--threads 0: [runtime]: threads must be in 1..256"),
        ({"frame_ms": float("nan")}, "--frame-ms nan: [budget]: frame_ms must be a finite number"),
        ({"set": ["sampling.keep=0.001"]}, "--set sampling.keep=0.001: [sampling]: min_keep must be in (0, keep]"),
        ({"set": ["camera.margin=[1, 2]"]}, "--set camera.margin=[1, 2]: [camera]: margin must be N or"),
    ],
)
def test_an_option_refused_by_its_section_is_named(mission_file: Path, kw: dict[str, object], start: str) -> None:
    with pytest.raises(MissionError) as info:
        cli._mission_for(_args(mission_file, **kw))
    assert str(info.value).startswith(start), str(info.value)


def test_a_margin_of_the_wrong_length_is_shown_as_written() -> None:
    with pytest.raises(MissionError, match=r"got \[1, 2\]$"):
        Camera(margin=(1, 2))  # what --set gives: a tuple, "(1, 2)" until session 34


def test_a_missing_model_on_the_command_line_names_the_folder_it_was_read_from(
    mission_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "x.onnx").write_bytes(b"x")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with pytest.raises(MissionError) as info:
        cli._mission_for(_args(mission_file, anomaly_model="models/x.onnx"))
    msg = str(info.value)
    assert msg.startswith(f"--anomaly-model models/x.onnx: no such file in the current folder {elsewhere}"), msg
    assert f"{tmp_path / 'models' / 'x.onnx'} exists: give that path" in msg


def test_an_empty_mission_a_nameless_one_and_a_folder_say_so(tmp_path: Path) -> None:
    (tmp_path / "empty.toml").write_text("# nothing yet\n")
    with pytest.raises(MissionError, match=r"empty\.toml: the mission file is empty"):
        load_mission(tmp_path / "empty.toml")
    (tmp_path / "noname.toml").write_text("[camera]\nchannels = 1\n")
    with pytest.raises(MissionError, match=r"noname\.toml: no name: a mission file needs a top-level name"):
        load_mission(tmp_path / "noname.toml")
    with pytest.raises(MissionError, match="is a folder, not a mission file"):
        load_mission(tmp_path)
    with pytest.raises(MissionError, match="name must not be empty"):  # given, but empty: as before
        mission_from_dict({"name": ""})


def _meta(kind: str = "vae", channels: int = 1, hw: int = 64) -> SimpleNamespace:
    return SimpleNamespace(kind=kind, channels=channels, input_shape=(-1, channels, hw, hw), layout="NCHW")


def test_a_model_that_does_not_fit_names_the_mission_key_and_file() -> None:
    an = Anomaly(patch=128, stride=128)
    with pytest.raises(ScoringError) as info:
        check_model(_meta(), an, 1, "vae.tflite", mission_file="ctx.toml")
    assert str(info.value) == (
        "vae.tflite: the model takes 64-px patches (input (-1, 1, 64, 64)), but ctx.toml [anomaly] patch = 128: "
        "set patch = 64"
    )
    with pytest.raises(ScoringError) as info:
        check_model(_meta(channels=1), Anomaly(), 3, "vae.tflite")
    assert str(info.value) == "vae.tflite: the model takes 1 channel, but [camera] channels = 3"  # not "1 channels"
    with pytest.raises(ScoringError) as info:
        check_model(_meta(kind="cae"), Anomaly(), 1, "cae.onnx", mission_file="m.toml")
    assert "m.toml [anomaly] method = 'vae' needs a vae model" in str(info.value)
    assert "(method = 'cae-masked' scores with it)" in str(info.value)


# ----------------------------------------------------------------------------- 6: frame arguments
def test_frames_that_do_not_exist_refuse_the_run_before_the_boot(
    mission_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    args = ["run", "--mission", str(mission_file), "--out", str(out), "--frames"]
    assert main([*args, str(tmp_path / "nothere.png")]) == 2
    err = capsys.readouterr().err
    assert f"no frames: --frames names no file that exists ({tmp_path / 'nothere.png'} does not exist)" in err, err
    assert not out.exists()  # nothing created (it booted, made --out and exited 1)


def test_a_named_file_that_is_not_a_frame_is_noted_as_in_a_folder(tmp_path: Path) -> None:
    (tmp_path / "m.toml").write_text(MISSION)
    np.save(tmp_path / "f.npy", np.zeros((8, 8), np.uint8))
    found = collect_frames([tmp_path / "m.toml", tmp_path / "f.npy", tmp_path / "gone.png"])
    assert found.files == [tmp_path / "f.npy", tmp_path / "gone.png"]  # a missing one is kept: the loop drops it
    assert found.missing == [str(tmp_path / "gone.png")]
    assert len(found.empty) == 1 and found.empty[0].startswith(f"{tmp_path / 'm.toml'}: not a frame file")
    assert found.notes()["arguments_without_frames"] == found.empty


# ----------------------------------------------------------------------------- 9: the mission-field table
def test_every_mission_field_is_in_the_docs_table_with_its_default() -> None:
    text = (REPO / "docs" / "firmware_sim.md").read_text(encoding="utf-8")
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `\[(\w+)\]` \| (.*) \|$", text, re.M)}
    top = re.search(r"^\| \(top level\) \| (.*) \|$", text, re.M)
    assert top is not None and "`name` (required" in top.group(1) and "`description`" in top.group(1)
    assert set(rows) == set(_SECTIONS)
    for name, cls in _SECTIONS.items():
        for f in dataclasses.fields(cls):
            assert f"`{f.name}`" in rows[name], f"[{name}] {f.name} is not in docs/firmware_sim.md's table"
        assert rows[name].count("[") >= len(dataclasses.fields(cls)), f"[{name}]: a field without its default"
    assert "see Memory below" not in text
    assert "--prefer" in text


def test_run_help_lists_every_frame_type(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "PGM/PPM/PNM" in " ".join(capsys.readouterr().out.split())


# ----------------------------------------------------------------------------- bench --prefer
def test_bench_prefer_is_parsed_and_checked(capsys: pytest.CaptureFixture[str]) -> None:
    parser = cli.build_parser()
    assert parser.parse_args(["bench", "--model", "x"]).prefer is None  # bench's own order, as before
    assert parser.parse_args(["bench", "--model", "x", "--prefer", " tflite, onnx"]).prefer == "tflite,onnx"
    for bad in ("tfl", "onnx,onnx", ","):
        with pytest.raises(SystemExit):
            parser.parse_args(["bench", "--model", "x", "--prefer", bad])
        assert "argument --prefer: takes comma-separated artifact formats" in capsys.readouterr().err


def test_bench_prefer_reaches_the_benchmark(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgeae.firmware_sim import bench

    seen: list[object] = []

    def fake(model: str, **kw: object) -> dict[str, object]:
        seen.append(kw["prefer"])
        raise ValueError("stop here")

    monkeypatch.setattr(bench, "run_bench", fake)
    assert main(["bench", "--model", "orbital-gray-vae", "--threads", "1", "--prefer", "onnx"]) == 2
    assert main(["bench", "--model", "orbital-gray-vae", "--threads", "1"]) == 2
    assert seen == [["onnx"], None] and "stop here" in capsys.readouterr().err

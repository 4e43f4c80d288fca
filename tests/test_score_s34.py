"""Session 34 (p1): ``edgeae score``'s settings JSON names its maps relative to itself, and a rerun removes only the
earlier maps in the folder of -o that the earlier record names: a results folder copied whole, or a JSON edited by
hand, cannot point the removal at another folder's files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from edgeae.cli.score_outputs import _recorded_paths, _remove_earlier, _replace_earlier


def _args(out: Path, map_: Path | None) -> argparse.Namespace:
    return argparse.Namespace(output=str(out), map=None if map_ is None else str(map_))


def _record(js: Path, **fields: object) -> None:
    js.write_text(json.dumps({"csv": js.name.removesuffix(".json"), **fields}))


def test_a_copied_folder_with_an_older_absolute_record_never_removes_the_original_folders_maps(
    tmp_path: Path,
) -> None:
    """The audit's repro: run1 scored with --map, copied to run2, rerun in run2 (with an older JSON that holds
    absolute paths into run1): run1's map stays, and the note names it as outside the folder."""
    run1, run2 = tmp_path / "run1", tmp_path / "run2"
    for d in (run1, run2):
        d.mkdir()
        (d / "s.csv").write_text("file,x,y,score\n")
        (d / "map.png").write_bytes(b"png")
    _record(run2 / "s.csv.json", map="run1/map.png", maps=[str(run1 / "map.png")])  # as copied from run1
    image = tmp_path / "gray256.png"
    stale, note = _replace_earlier(_args(run2 / "s.csv", run2 / "map_other.png"), [run2 / "map_other.png"], [image])
    assert stale == [] and "kept 1 map(s) its settings list outside" in note and str(run1 / "map.png") in note
    _remove_earlier(stale, note)
    assert (run1 / "map.png").read_bytes() == b"png" and (run2 / "map.png").is_file()


def test_a_relative_record_in_a_copied_folder_names_the_copys_own_maps(tmp_path: Path) -> None:
    run1, run2 = tmp_path / "run1", tmp_path / "run2"
    run1.mkdir()
    args = _args(run1 / "s.csv", run1 / "m.png")
    rec = _recorded_paths(args, [run1 / "m_a.png", run1 / "m_b.png"])
    assert rec == {"map": "m_<stem>.png", "maps": ["m_a.png", "m_b.png"]}  # no file "m.png" is claimed
    assert _recorded_paths(_args(run1 / "s.csv", run1 / "m.png"), [run1 / "m.png"]) == {
        "map": "m.png",
        "maps": ["m.png"],
    }
    assert _recorded_paths(_args(run1 / "s.csv", tmp_path / "maps" / "m"), [tmp_path / "maps" / "m.png"])["maps"] == [
        "../maps/m.png"
    ]
    (run1 / "s.csv").write_text("")
    _record(run1 / "s.csv.json", **rec)
    for n in ("m_a.png", "m_b.png"):
        (run1 / n).write_bytes(b"png")
    import shutil

    shutil.copytree(run1, run2)
    stale, note = _replace_earlier(_args(run2 / "s.csv", run2 / "m.png"), [run2 / "m.png"], [])
    assert sorted(stale) == [run2 / "m_a.png", run2 / "m_b.png"]  # the copy's own maps, not run1's
    _remove_earlier(stale, note)
    assert sorted(p.name for p in run1.iterdir()) == ["m_a.png", "m_b.png", "s.csv", "s.csv.json"]
    assert sorted(p.name for p in run2.iterdir()) == ["s.csv", "s.csv.json"]


def test_a_hostile_record_cannot_point_the_removal_outside_the_folder(tmp_path: Path) -> None:
    """Absolute paths, ``..``, a link out of the folder, an input image, the CSV itself: none is removed."""
    res, other = tmp_path / "res", tmp_path / "other"
    res.mkdir()
    other.mkdir()
    victims = [other / "m_x.png", tmp_path / "m_up.png", res / "m_in.png", res / "m_link.png"]
    for v in victims[:3]:
        v.write_bytes(b"keep")
    (res / "m_link.png").symlink_to(other / "m_x.png")
    (res / "s.csv").write_text("")
    names = [
        str(other / "m_x.png"),
        "../m_up.png",
        "m_in.png",
        "m_link.png",
        "s.csv",
        "s.csv.json",
        "../other",
        "m_" + "x" * 300 + ".png",
        "m\x00.png",
    ]
    _record(res / "s.csv.json", map="m.png", maps=names)  # as an older run wrote it
    stale, note = _replace_earlier(_args(res / "s.csv", res / "m.png"), [res / "m.png"], [res / "m_in.png"])
    assert stale == []  # m_in.png is this run's input; the link is never followed out
    _remove_earlier(stale, note)
    assert all(v.exists() for v in victims) and (other / "m_x.png").read_bytes() == b"keep"
    assert "kept 2 map(s)" in note  # the absolute one and ../m_up.png are named, not removed


@pytest.mark.filterwarnings("ignore")
def test_score_records_relative_map_paths_end_to_end(
    tmp_path: Path, moon: np.ndarray, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    from edgeae.cli import main
    from edgeae.imageio import write_image

    monkeypatch.chdir(tmp_path)
    write_image(tmp_path / "g.png", np.ascontiguousarray(moon[:64, :64]))
    argv = ["--model", "orbital-gray-vae", "--no-progress", "--threads", "1"]
    assert main(["score", "g.png", "-o", "run1/s.csv", "--map", "run1/map.png", *argv]) == 0
    settings = json.loads((tmp_path / "run1" / "s.csv.json").read_text())
    assert settings["map"] == "map.png" and settings["maps"] == ["map.png"] and settings["csv"] == "s.csv"
    assert settings["images"] == ["g.png"] and settings["images_resolved"] == [str((tmp_path / "g.png").resolve())]
    import shutil

    shutil.copytree(tmp_path / "run1", tmp_path / "run2")
    capsys.readouterr()
    assert main(["score", "g.png", "-o", "run2/s.csv", "--map", "run2/other.png", *argv]) == 0
    assert "removed its 1 map(s) this run does not write: map.png" in capsys.readouterr().err
    assert (tmp_path / "run1" / "map.png").is_file() and not (tmp_path / "run2" / "map.png").exists()

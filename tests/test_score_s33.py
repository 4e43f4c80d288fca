"""Audit a2 of `edgeae score` (session 33): a rerun into the same CSV says what it replaces and removes the maps
the run before listed (only those), the maps say what their cyan outlines are and the settings JSON holds the
threshold, and a junk .pt file is called what it is."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeae.anomaly.score import PatchScores
from edgeae.cli import main


@pytest.fixture()
def two(tmp_path: Path, moon: np.ndarray) -> list[Path]:
    from edgeae.imageio import write_image

    return [
        write_image(tmp_path / "blank.png", np.ascontiguousarray(moon[:96, :96])),
        write_image(tmp_path / "flat.png", np.ascontiguousarray(moon[96:192, :96])),
    ]


def test_a_rerun_says_what_it_replaces_and_removes_only_the_maps_the_run_before_listed(
    tmp_path: Path, two: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("torch")
    out, m = tmp_path / "s.csv", tmp_path / "m.png"
    mine = tmp_path / "m_mine.png"  # a file of the user's with a name like a map's: never listed, never removed
    mine.write_bytes(b"mine")
    argv = ["--model", "orbital-gray-vae", "-o", str(out), "--map", str(m), "--no-progress", "--threads", "1"]
    assert main(["score", *map(str, two), *argv]) == 0
    assert "replaced" not in capsys.readouterr().err
    first = json.loads((tmp_path / "s.csv.json").read_text())
    assert [Path(p).name for p in first["maps"]] == ["m_blank.png", "m_flat.png"] and first["map"] == "m_<stem>.png"
    assert first["threshold"] > 0 and "cyan" in first["threshold_meaning"]  # the zoo VAE's calibrated a(x) threshold
    # a rerun that fails while writing leaves the earlier run whole: its JSON still lists maps that exist (review
    # s33 r2: the maps were removed before the writes)
    from edgeae.anomaly import plots

    def full(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plots, "save_score_map", full)
        assert main(["score", str(two[0]), *argv]) != 0
    assert "replaced" not in capsys.readouterr().err
    assert all((tmp_path / p).is_file() for p in json.loads((tmp_path / "s.csv.json").read_text())["maps"])
    assert main(["score", str(two[0]), *argv]) == 0
    err = capsys.readouterr().err
    assert f"replaced {out} and {out}.json of an earlier run" in err
    assert "removed its 2 map(s) this run does not write: m_blank.png, m_flat.png" in err
    assert sorted(p.name for p in tmp_path.glob("m*.png")) == ["m.png", "m_mine.png"]
    assert [Path(p).name for p in json.loads((tmp_path / "s.csv.json").read_text())["maps"]] == ["m.png"]
    # a CSV from before the maps were listed: said, and nothing removed
    (tmp_path / "s.csv.json").write_text(json.dumps({"csv": "s.csv"}))
    plain = ["--model", "orbital-gray-vae", "-o", str(out), "--no-progress", "--threads", "1"]
    assert main(["score", str(two[1]), *plain]) == 0
    assert "its settings list no maps: any maps it wrote stay" in capsys.readouterr().err
    assert (tmp_path / "m.png").is_file() and mine.read_bytes() == b"mine"
    settings = json.loads((tmp_path / "s.csv.json").read_text())
    assert settings["maps"] == [] and settings["map"] is None


def test_the_map_says_what_the_cyan_outlines_are(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from edgeae.anomaly import plots

    kept: dict[str, Any] = {}

    def save(fig: Any, path: Any) -> Path:
        kept["fig"] = fig
        return Path(path)

    monkeypatch.setattr(plots, "_save", save)
    r = PatchScores("f.png", np.array([0, 32]), np.array([0, 0]), np.array([1.0, 2.0]), np.ones(2), 32, (32, 96))
    plots.save_score_map(tmp_path / "m.png", r, threshold=1.5, title="f.png")
    texts = [t.get_text() for t in kept["fig"].findobj(lambda a: hasattr(a, "get_text")) if t.get_text()]
    note = [t for t in texts if "cyan outline" in t]
    assert note and "above the model's threshold 1.5 (1 of 2)" in note[0] and "white: not scored" in note[0]
    plots.save_score_map(tmp_path / "m.png", r, title="f.png")
    texts = [t.get_text() for t in kept["fig"].findobj(lambda a: hasattr(a, "get_text")) if t.get_text()]
    assert not any("cyan" in t for t in texts)


def test_a_junk_pt_file_is_called_not_a_pytorch_file(
    tmp_path: Path, two: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("torch")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"junk\n")
    assert main(["score", str(two[0]), "--model", str(junk), "-o", str(tmp_path / "s.csv")]) == 2
    err = capsys.readouterr().err
    assert "not a readable edgeae checkpoint: not a PyTorch file at all" in err and "KeyError" not in err

"""Session 37 audit a1, finding 5: `EDGEAE_DATA=/work/shared/dta edgeae demo` (a typo) ran on skimage's moon with
no word on the console (a log.info shown only with -v), where `edgeae export` and `edgeae demo --data` refuse the
same folder. A set $EDGEAE_DATA that does not hold the demo frame is now refused as --data is: one line, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeae.demo import DemoConfig, load_frame


def test_a_set_but_missing_edgeae_data_is_refused_as_data_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    typo = tmp_path / "dta"
    monkeypatch.setenv("EDGEAE_DATA", str(typo))
    with pytest.raises(FileNotFoundError) as exc:
        load_frame(DemoConfig())
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(f"$EDGEAE_DATA {typo} is not a folder: point it at the shared data")
    assert "unset it for skimage's moon, or use --source moon" in msg
    # a folder without the demo frame: the same, as --data says
    monkeypatch.setenv("EDGEAE_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"^\$EDGEAE_DATA .* has no rover_rgb/.*use --source moon"):
        load_frame(DemoConfig(source="rover"))
    # --source moon does not read the data: the moon, whatever $EDGEAE_DATA says
    pytest.importorskip("skimage")
    assert load_frame(DemoConfig(source="moon"))[1] == "moon"
    # --data given: it is the folder looked at (and named), not $EDGEAE_DATA
    with pytest.raises(FileNotFoundError, match=r"^--data .*nope is not a folder"):
        load_frame(DemoConfig(data_root=tmp_path / "nope"))


def test_an_unset_edgeae_data_still_falls_back_to_the_moon(monkeypatch: pytest.MonkeyPatch) -> None:
    import edgeae.data

    pytest.importorskip("skimage")
    for value in (None, ""):  # unset, or set empty: no folder named on purpose
        if value is None:
            monkeypatch.delenv("EDGEAE_DATA", raising=False)
        else:
            monkeypatch.setenv("EDGEAE_DATA", value)
        monkeypatch.setattr(edgeae.data, "_candidates", lambda: [])  # no ../shared/data either
        assert load_frame(DemoConfig())[1] == "moon"


def test_the_demo_command_refuses_it_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgeae.cli import main

    monkeypatch.setenv("EDGEAE_DATA", str(tmp_path / "dta"))
    assert main(["demo", "--out", str(tmp_path / "o"), "--no-cross-check", "--no-anomaly"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"$EDGEAE_DATA {tmp_path / 'dta'} is not a folder" in err

"""Session-37 fixer l1 (review r2 #2 and #6): the user zoo's default folder depended on whether some other package
had installed platformdirs (on macOS and Windows another folder, so user models disappeared without a word when it
came or went); a relative $EDGEAE_ZOO named another folder from every working folder (a model installed from one
was not found from another); the `edgeae zoo` footer spoke of "installs before session 37"."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from edgeae import zoo


def _home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.delenv("EDGEAE_ZOO", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path / "home" / ".local" / "share" / "edgeae" / "zoo"


def test_the_default_folder_is_the_same_with_or_without_platformdirs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The review's stub: platformdirs giving the macOS folder moved the user zoo there."""
    want = _home(monkeypatch, tmp_path)
    stub = types.ModuleType("platformdirs")
    stub.user_data_dir = lambda *a, **k: str(tmp_path / "home" / "Library" / "Application Support" / "edgeae")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "platformdirs", stub)
    assert zoo.user_dir() == want
    monkeypatch.setitem(sys.modules, "platformdirs", None)
    assert zoo.user_dir() == want
    monkeypatch.setenv("XDG_DATA_HOME", "relative/xdg")  # not absolute: ignored, as the XDG specification says
    assert zoo.user_dir() == want


def test_a_relative_edgeae_zoo_is_refused_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`EDGEAE_ZOO=uz` named `<cwd>/uz` afresh on every call. An install is refused (one line, the absolute path to
    set); the shipped models still resolve; an unknown name says the user zoo was not read, and why."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EDGEAE_ZOO", "uz")
    with pytest.raises(RuntimeError) as info:
        zoo.user_dir()
    msg = str(info.value)
    assert "\n" not in msg and "$EDGEAE_ZOO='uz' is a relative path" in msg and str(tmp_path / "uz") in msg, msg
    with pytest.raises(zoo.ZooFolderError, match=r"^--zoo-name my-vae: \$EDGEAE_ZOO='uz' is a relative path"):
        zoo.check_folder("my-vae")
    assert "orbital-gray-vae" in zoo.models()
    with pytest.raises(zoo.UnknownModelError, match=r"unknown zoo model 'my-vae'.*the user zoo was not read: "):
        zoo.weights_path("my-vae")
    monkeypatch.setenv("EDGEAE_ZOO", "~/models")  # the home folder is absolute
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert zoo.user_dir() == tmp_path / "home" / "models"


def _user_model(folder: Path, name: str = "my-vae") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.pt").write_bytes(b"")  # listed by its name; not loaded
    (folder / f"{name}.entry.json").write_text('{"kind": "vae", "channels": 1}')


def test_the_zoo_listing_footer_speaks_of_older_installs_not_sessions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgeae.cli import main

    _user_model(tmp_path / "uz")
    monkeypatch.setenv("EDGEAE_ZOO", str(tmp_path / "uz"))
    assert main(["zoo"]) == 0
    out = capsys.readouterr().out
    footer = [line for line in out.splitlines() if line.startswith("+ user-installed")]
    assert len(footer) == 1 and "session" not in out, out
    assert f"$EDGEAE_ZOO ({tmp_path / 'uz'}; older installs of a checkout: edgeae/zoo/weights)" in footer[0]


def test_the_zoo_listing_says_when_the_user_zoo_was_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgeae.cli import main

    monkeypatch.chdir(tmp_path)
    _user_model(tmp_path / "uz")
    monkeypatch.setenv("EDGEAE_ZOO", "uz")
    assert main(["zoo"]) == 0
    out = capsys.readouterr().out
    assert "my-vae" not in out and "the user zoo was not read: $EDGEAE_ZOO='uz' is a relative path" in out, out


def test_the_docs_give_one_rule() -> None:
    root = Path(__file__).resolve().parents[1]
    text = " ".join((root / "docs" / "training.md").read_text().split())
    assert "platformdirs' user data folder for edgeae plus `zoo` when platformdirs is installed" not in text
    assert "`$EDGEAE_ZOO` when set (an absolute path: a relative one is refused" in text

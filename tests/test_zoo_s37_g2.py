"""Session 37 audit a1, finding 4: `--zoo-name` wrote user models into the installed package (site-packages):
`pip uninstall` left them behind, a new environment lost them, and a read-only install refused them with a bare
errno after the run was complete. User models now live in the user zoo folder ($EDGEAE_ZOO, default
~/.local/share/edgeae/zoo), looked up after the shipped zoo; a folder that cannot be written is one line, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _helpers_zoo import move_zoo, vae_run

from edgeae import zoo
from edgeae.cli import main
from edgeae.resolve import model_path

torch = pytest.importorskip("torch")


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The zoo's own folders, moved to temporary ones (as a package install's site-packages would be); the user
    zoo is $EDGEAE_ZOO = tmp/user-zoo. No test writes into the real zoo or the real user folder."""
    site = tmp_path / "site-packages"
    return move_zoo(monkeypatch, site / "weights", site / "artifacts", tmp_path / "user-zoo")


def test_a_user_model_goes_to_the_user_zoo_and_resolves_by_name(
    tmp_path: Path, package: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It was written to site-packages/edgeae/zoo/weights/NAME.pt (outside the wheel's RECORD)."""
    user = tmp_path / "user-zoo"
    ck = vae_run(tmp_path / "run")
    target = zoo.install("my-vae", ck, ck.parent / "metrics.json")
    assert target == user / "my-vae.pt" and target.read_bytes() == ck.read_bytes()
    assert sorted(p.name for p in user.iterdir()) == ["my-vae.entry.json", "my-vae.json", "my-vae.pt"]
    assert not package.exists()  # nothing written into the package
    entry = zoo.models()["my-vae"]
    assert entry["user_installed"] is True and entry["kind"] == "vae" and entry["folder"] == str(user)
    for spec in ("my-vae", "zoo:my-vae"):
        assert model_path(spec, "checkpoint") == target
    assert zoo.resolve("my-vae") == target and zoo.metrics("my-vae")["epochs_run"] == 1
    assert "the user zoo: $EDGEAE_ZOO" in zoo.installed_message("my-vae", target)
    # edgeae zoo lists it, marked as a user model; --json gives its real path
    assert main(["zoo"]) == 0
    table = capsys.readouterr().out
    assert any(line.startswith("my-vae +") for line in table.splitlines())
    assert main(["zoo", "--json"]) == 0
    row = next(r for r in json.loads(capsys.readouterr().out) if r["name"] == "my-vae")
    assert row["user_installed"] is True and row["weights_path"] == str(target) and row["available"] is True


def test_the_shipped_zoo_comes_first_and_older_checkout_installs_still_resolve(tmp_path: Path, package: Path) -> None:
    user = tmp_path / "user-zoo"
    ck = vae_run(tmp_path / "run")
    # a model a checkout installed into edgeae/zoo/weights before session 37: still taken by name
    package.mkdir(parents=True)
    (package / "old-vae.pt").write_bytes(ck.read_bytes())
    (package / "old-vae.entry.json").write_text(json.dumps({"kind": "vae", "channels": 1, "run": "/r"}))
    assert model_path("old-vae", "checkpoint") == package / "old-vae.pt"
    assert zoo.models()["old-vae"]["kind"] == "vae"
    # the same name in the user zoo wins over the checkout's (installs go there)
    user.mkdir()
    (user / "old-vae.pt").write_bytes(ck.read_bytes())
    assert model_path("old-vae", "checkpoint") == user / "old-vae.pt"
    # a shipped name in the user zoo is never taken: the shipped model comes first
    (user / "orbital-gray-vae.pt").write_bytes(ck.read_bytes())
    assert "user_installed" not in zoo.models()["orbital-gray-vae"]
    assert zoo.weights_path("orbital-gray-vae") == package / "orbital-gray-vae.pt"
    # the run that made the checkout's model is still the only one that replaces it without --force
    other = vae_run(tmp_path / "other", 1)
    (user / "old-vae.pt").unlink()
    with pytest.raises(zoo.ZooInstallError, match=r"made by run /r\)"):
        zoo.install("old-vae", other, other.parent / "metrics.json")


def test_the_user_zoo_folder_defaults_to_the_user_data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGEAE_ZOO", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert zoo.user_dir() == tmp_path / "home" / ".local" / "share" / "edgeae" / "zoo"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert zoo.user_dir() == tmp_path / "xdg" / "edgeae" / "zoo"
    monkeypatch.setenv("EDGEAE_ZOO", "~/models")
    assert zoo.user_dir() == tmp_path / "home" / "models"
    # no home folder at all (a bare container user): the shipped zoo still lists; an install says what to set
    monkeypatch.delenv("EDGEAE_ZOO")
    monkeypatch.delenv("XDG_DATA_HOME")

    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    assert "orbital-gray-vae" in zoo.models()
    with pytest.raises(zoo.ZooFolderError, match=r"my-vae: no home folder to keep the user zoo in: set \$EDGEAE_ZOO"):
        zoo.check_install("my-vae", "vae")


def test_an_unwritable_user_zoo_is_one_line_naming_it(
    tmp_path: Path, package: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-only install said `[Errno 30] Read-only file system: '.../site-packages/edgeae/zoo/weights/.edgeae.lock'`
    with no advice."""
    from edgeae.zoo import user

    ck = vae_run(tmp_path / "run")
    (tmp_path / "a-file").write_text("x")
    bad = tmp_path / "a-file" / "zoo"
    monkeypatch.setenv("EDGEAE_ZOO", str(bad))
    with pytest.raises(zoo.ZooFolderError) as exc:
        zoo.install("my-vae", ck, ck.parent / "metrics.json")
    msg = str(exc.value)
    assert "\n" not in msg and f"the user zoo folder {bad} cannot be written ({tmp_path / 'a-file'} is a file" in msg
    assert "set $EDGEAE_ZOO to a folder you can write" in msg and f"give the checkpoint {ck} itself as MODEL" in msg
    # no write permission (as a non-root user sees a read-only folder): said before any work
    ok = tmp_path / "ro"
    ok.mkdir()
    with monkeypatch.context() as m:
        m.setenv("EDGEAE_ZOO", str(ok))
        m.setattr(user.os, "access", lambda *a, **k: False)
        with pytest.raises(zoo.ZooFolderError, match=rf"{ok} cannot be written \((no write permission|read-only)"):
            zoo.check_install("my-vae", "vae", run=tmp_path / "run")
    # an error only the write meets (the check passed): the same line, not the bare errno
    with monkeypatch.context() as m:
        m.setattr(user, "unwritable", lambda folder: None)
        with pytest.raises(zoo.ZooFolderError, match=rf"user zoo folder {bad} cannot be written \(not a directory\)"):
            zoo.install("my-vae", ck, ck.parent / "metrics.json")
    # a shipped name in a read-only package: says to use a checkout or a new name
    monkeypatch.setattr(zoo, "WEIGHTS_DIR", bad)
    with pytest.raises(zoo.ZooFolderError, match=r"shipped zoo model 'orbital-gray-vae' is in .* a new name"):
        zoo.check_install("orbital-gray-vae", "vae", force=True)


def _images(folder: Path, n: int = 5) -> Path:
    cv2 = pytest.importorskip("cv2")
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        img = cv2.GaussianBlur(rng.random((128, 136, 1)).astype(np.float32), (0, 0), 2)
        cv2.imwrite(
            str(folder / f"im{i}.png"), (40 + 160 * (img - img.min()) / (img.max() - img.min())).astype(np.uint8)
        )
    return folder


def test_train_refuses_an_unwritable_user_zoo_before_training(
    tmp_path: Path, package: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a-file").write_text("x")
    monkeypatch.setenv("EDGEAE_ZOO", str(tmp_path / "a-file" / "zoo"))
    data = _images(tmp_path / "data")
    argv = ["train", "vae", "--data", str(data), "--out", str(tmp_path / "run"), "--widths", "4,4,4,4", "--latent",
            "8", "--epochs", "1", "--crops", "16", "--batch-size", "16", "--val-crops", "16", "--threads", "1",
            "--no-progress", "--no-bf16", "--zoo-name", "my-vae"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()  # the log may say what the data holds first
    assert err[-1].startswith("edgeae train: error: --zoo-name my-vae: the user zoo folder")
    assert "$EDGEAE_ZOO" in err[-1] and not any("Traceback" in line for line in err)
    assert not (tmp_path / "run").exists()

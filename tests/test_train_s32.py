"""Session 32 audit: one training run per run folder (a second trainer on a held folder is refused and writes
nothing), and a user-installed zoo name is replaced only with --force."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

from _helpers_train import cae_config, smooth_images, vae_config  # noqa: E402
from _helpers_zoo import move_zoo, vae_run  # noqa: E402

from edgeae import zoo  # noqa: E402
from edgeae.cli import main  # noqa: E402
from edgeae.folder_lock import LOCK_NAME, FolderBusy, hold  # noqa: E402
from edgeae.train.cae import train_cae  # noqa: E402
from edgeae.train.vae import train_vae  # noqa: E402


def _images(folder: Path, n: int = 5, channels: int = 1) -> Path:
    return smooth_images(folder, n, (128, 136, channels))


# a unet2 CAE of 16 crops and a grey VAE, one epoch each (bfloat16 the CAE's default)
_cae = functools.partial(
    cae_config, variant="unet2", epochs=1, crops=16, val_crops=8, batch_size=8, channels=1, bf16=None
)
_vae = functools.partial(vae_config, channels=1, epochs=1, crops=16, seed=0)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# 1. one trainer per run folder


@pytest.mark.parametrize("kind", ["cae", "vae"])
def test_a_held_run_folder_refuses_a_second_trainer_and_nothing_is_written(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two `edgeae train cae --resume tr3` at once both trained every epoch and left config.json of one and the
    loss curve of the other; two new runs into one --out both printed `-> OUT/best.pt`. The trainer holds the run
    folder before its checks: a second one is refused (FolderBusy, exit 2, one line) and writes nothing."""
    data = _images(tmp_path / "data")
    make, train = (_cae, train_cae) if kind == "cae" else (_vae, train_vae)
    run = tmp_path / "run"
    stopped = train(make(data, run, epochs=2, crops=32, time_budget=1e-9))  # type: ignore[operator]
    assert stopped["complete"] is False
    before = _files(run)
    cfg = make(data, run, epochs=3, crops=32)  # type: ignore[operator]
    with hold(run, "training run"):
        with pytest.raises(FolderBusy, match=r"in use by another training run \(pid \d+"):
            train(cfg, resume=True)  # type: ignore[operator]
        with pytest.raises(FolderBusy):  # a new run into it: refused as busy, not as "already holds a run"
            train(make(data, run, seed=9))  # type: ignore[operator]
        assert main(["train", kind, "--resume", str(run), "--epochs", "3", "--no-progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and f"{run} is in use by another training run" in err
        # a new --out held by another run: refused, left as it was (empty)
        fresh = tmp_path / "fresh"
        fresh.mkdir()
        with hold(fresh, "training run"), pytest.raises(FolderBusy):
            train(make(data, fresh))  # type: ignore[operator]
        assert [p.name for p in fresh.iterdir()] == []
        assert {k: v for k, v in _files(run).items() if k != LOCK_NAME} == before
    assert _files(run) == before  # nothing of the first run's changed, and no lock file left
    # a lock file left by a killed run does not make a folder look busy or hold a run
    (run / LOCK_NAME).write_text("pid 1, 'killed', since then\n")
    with pytest.raises(FileExistsError, match="already holds a run"):
        train(make(data, run, seed=9))  # type: ignore[operator]
    assert not (run / LOCK_NAME).exists()


def test_a_refused_new_run_removes_the_folders_it_made(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b"
    with pytest.raises((OSError, ValueError)):
        train_cae(_cae(tmp_path / "no-such-data", out))
    assert not (tmp_path / "a").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file, not a run folder"):
        train_cae(_cae(tmp_path / "no-such-data", tmp_path / "file"))


# 2. a user-installed zoo name is replaced only by the run that made it, or with --force


@pytest.fixture
def weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    w = tmp_path / "zoo-weights"
    return move_zoo(monkeypatch, w, tmp_path / "zoo-artifacts", w)  # user models in the same folder


def test_a_user_installed_model_is_replaced_only_by_its_own_run_or_with_force(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """install('myvae', tr2) then install('myvae', tr3) both succeeded: the second run silently replaced the
    first's model (a shipped name was protected, a user's not)."""
    tr2, tr3 = vae_run(tmp_path / "tr2", 2), vae_run(tmp_path / "tr3", 3)
    target = zoo.install("myvae", tr2, tr2.parent / "metrics.json")
    assert zoo.install("myvae", tr2, tr2.parent / "metrics.json") == target  # its own run: replaced (retrained)
    assert zoo.models()["myvae"]["run"] == str(tr2.parent.resolve())
    with pytest.raises(zoo.ZooInstallError, match=rf"made by run {tmp_path.resolve() / 'tr2'}\) .* --force"):
        zoo.install("myvae", tr3, tr3.parent / "metrics.json")
    assert target.read_bytes() == tr2.read_bytes() and not (weights / LOCK_NAME).exists()
    # checked before training, as the other zoo checks are: nothing is trained or written
    data = _images(tmp_path / "data")
    argv = ["train", "vae", "--data", str(data), "--out", str(tmp_path / "tr4"), "--widths", "4,4,4,4", "--latent",
            "8", "--epochs", "1", "--crops", "16", "--batch-size", "16", "--val-crops", "16", "--threads", "1",
            "--no-progress", "--no-bf16", "--zoo-name", "myvae"]  # fmt: skip
    assert main(argv) == 2
    assert "refusing to replace the user-installed zoo model 'myvae' (made by run" in capsys.readouterr().err
    assert not (tmp_path / "tr4").exists()
    assert zoo.install("myvae", tr3, tr3.parent / "metrics.json", force=True) == target
    assert target.read_bytes() == tr3.read_bytes() and zoo.models()["myvae"]["run"] == str(tr3.parent.resolve())
    # an entry from before runs were recorded: replaced with --force only
    (weights / "old.pt").write_bytes(tr2.read_bytes())
    with pytest.raises(zoo.ZooInstallError, match="made by a run it does not record"):
        zoo.install("old", tr2, tr2.parent / "metrics.json")
    assert zoo.install("old", tr2, tr2.parent / "metrics.json", force=True).is_file()


def test_a_zoo_install_holds_the_zoo_folder(tmp_path: Path, weights: Path) -> None:
    tr2 = vae_run(tmp_path / "tr2")
    weights.mkdir()
    with hold(weights, "zoo install"), pytest.raises(FolderBusy, match="in use by another zoo install"):
        zoo.install("myvae", tr2, tr2.parent / "metrics.json")
    assert sorted(p.name for p in weights.iterdir()) == []


def test_a_gated_model_is_installed_as_its_training_runs_and_refused_before_tuning(
    tmp_path: Path, weights: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python -m edgeae.train.gate --zoo-name NAME` of a user model another run made tuned τ in full, wrote OUT,
    OUT.gate.json and OUT.zoo.json, then exited 2; and gating a run's own model with --out outside its folder counted
    as "another run" (the gated checkpoint's folder was recorded as the run). The training run is the one checked,
    before tuning, and recorded."""
    from edgeae.train import gate

    data = _images(tmp_path / "data")
    r1 = tmp_path / "r1"
    assert train_cae(_cae(data, r1))["complete"] is True
    tr0 = vae_run(tmp_path / "tr0")
    zoo.install("mygated", tr0, tr0.parent / "metrics.json")  # a user model of another run
    out = tmp_path / "gated" / "g.pt"
    argv = [str(r1 / "best.pt"), "--data", str(data), "--out", str(out), "--taus", "0,0.016", "--zoo-name", "mygated",
            "--threads", "1"]  # fmt: skip
    with monkeypatch.context() as m:
        m.setattr(gate, "tune", lambda *a, **k: pytest.fail("tuned before the zoo name was checked"))
        assert gate.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"(made by run {tr0.parent.resolve()}) with a model of run {r1.resolve()}" in err
    assert not out.parent.exists()
    # the run's own model, gated into a folder outside the run: replaced, and the entry names the training run
    zoo.install("mygated", r1 / "best.pt", r1 / "metrics.json", force=True)
    assert gate.main(argv) == 0
    entry = zoo.models()["mygated"]
    assert entry["run"] == str(r1.resolve()) and entry["description"].endswith(f"from {out.resolve()}")
    assert (weights / "mygated.pt").read_bytes() == out.read_bytes()
    # the library call: run= defaults to the checkpoint's folder
    with pytest.raises(zoo.ZooInstallError, match=rf"with a model of run {out.parent.resolve()};"):
        zoo.install("mygated", out, Path(str(out) + ".zoo.json"))
    assert zoo.install("mygated", out, Path(str(out) + ".zoo.json"), run=r1).is_file()


def test_a_complete_run_refused_by_a_busy_zoo_says_how_to_install_it_later(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A complete run whose install met another install in the zoo's folder said "wait for it to finish or stop it,
    or choose another folder" (there is one zoo folder) and not how to install the run afterwards."""
    data = _images(tmp_path / "data")
    run = tmp_path / "run"
    assert train_cae(_cae(data, run))["complete"] is True
    weights.mkdir()
    with hold(weights, "zoo install"):
        assert main(["train", "cae", "--resume", str(run), "--zoo-name", "mine"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"the run {run} is complete but was not installed ({weights} is in use by" in err
    assert err.endswith(f"once that one has finished: edgeae train cae --resume {run} --zoo-name mine")
    assert "choose another folder" not in err and not (weights / "mine.pt").exists()
    assert main(["train", "cae", "--resume", str(run), "--zoo-name", "mine"]) == 0  # the command it gives
    assert (weights / "mine.pt").read_bytes() == (run / "best.pt").read_bytes()


def test_a_gated_model_refused_by_a_busy_zoo_says_how_to_install_it_without_tuning_again(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The gate met a busy zoo only after tuning and printed the lock's generic advice (review s32); the command it
    now gives installs the gated file as it is, with --force when the gate had it, whatever the path's quotes."""
    import shlex

    from edgeae.train import gate

    data = _images(tmp_path / "data")
    r1 = tmp_path / "r1"
    assert train_cae(_cae(data, r1))["complete"] is True
    out = tmp_path / "it's" / "g.pt"
    argv = [str(r1 / "best.pt"), "--data", str(data), "--out", str(out), "--taus", "0", "--zoo-name", "gbusy",
            "--threads", "1", "--force"]  # fmt: skip
    tr0 = vae_run(tmp_path / "tr0")
    zoo.install("gbusy", tr0, tr0.parent / "metrics.json")  # another run's: only --force replaces it
    weights.mkdir(exist_ok=True)
    with hold(weights, "zoo install"):
        assert gate.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "is gated and written but not installed" in err and out.is_file()
    python, flag, code = shlex.split(err.split("once that one has finished: ")[1])
    assert (python, flag) == ("python", "-c") and "force=True" in code
    exec(code, {})  # the command as given (the zoo folder is this test's: the fixture patched edgeae.zoo)
    assert (weights / "gbusy.pt").read_bytes() == out.read_bytes()

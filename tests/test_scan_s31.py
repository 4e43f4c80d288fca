"""`edgeae scan` after the session-31 audit: SIGTERM with Ray, a cluster address that does not answer, a rerun with
another archive, hostile headers in the set's size and the progress total, options of the other engine, the bar on
terminals only, the help's figures, clear refusals of --out, wording, a stop during worker start-up, closed files."""

from __future__ import annotations

import json
import logging
import signal
import socket
import struct
import time
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("pyarrow")
from test_scan_support import mean_scorer_factory

from edgeae.scan.archive import ArchiveEntry, walk_archive
from edgeae.scan.pipeline import ScanConfig, count_patches
from edgeae.scan.scoring import ModelSpec
from edgeae.scan.state import ScanStateError, ScanStore

SPEC = ModelSpec(path="m.onnx", model_id="m", artifact_hash="0" * 64, kind="cae", patch=32, channels=1)
VAE = ModelSpec(path="v.onnx", model_id="v", artifact_hash="1" * 64, kind="vae", patch=32, channels=1, latent=8)


def _crops(root: Path, moon: np.ndarray, names: tuple[str, ...] = ("b.png", "c.png")) -> Path:
    from edgeae.imageio import write_image

    root.mkdir(parents=True, exist_ok=True)
    for i, n in enumerate(names):
        write_image(root / n, np.ascontiguousarray(moon[40 * i : 40 * i + 70, 30 * i : 30 * i + 90]))
    return root


def _bomb_png(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header claims ``width`` x ``height`` (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(10))) + chunk(b"IEND", b"")
    )
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    from test_scan_support import tiny_cae

    return tiny_cae(tmp_path_factory.mktemp("model") / "tiny.pt")


def _scan(archive: object, model: Path, out: Path, **kw: Any) -> dict:
    from edgeae.scan.run import EngineOptions, scan_archive

    kw.setdefault("engine", EngineOptions(workers=0))
    kw.setdefault("scorer_factory", mean_scorer_factory)
    return scan_archive(archive, model, out, progress=False, **kw)  # type: ignore[arg-type]


class _FakeRay:
    """Stands in for the ``ray`` module in ``_init_ray``: records ``init`` and does what the test asks there."""

    def __init__(self, on_init: Any = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.on_init = on_init

    def is_initialized(self) -> bool:
        return False

    def init(self, **kw: Any) -> None:
        self.calls.append(kw)
        if self.on_init is not None:
            self.on_init()


# -- 1: SIGTERM with --engine ray ----------------------------------------------------------------------------------
def test_ray_init_puts_the_commands_sigterm_handler_back() -> None:
    from edgeae.scan.ray_engine import _init_ray

    def ours(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    def rays(signum: int, frame: Any) -> None:  # what ray.init installs: sys.exit(signum)
        raise SystemExit(signum)

    before = signal.signal(signal.SIGTERM, ours)
    try:
        fake = _FakeRay(on_init=lambda: signal.signal(signal.SIGTERM, rays))
        assert _init_ray(fake, None, 2) is True
        assert signal.getsignal(signal.SIGTERM) is ours
        assert fake.calls[0]["include_dashboard"] is False and fake.calls[0]["num_cpus"] == 2
    finally:
        signal.signal(signal.SIGTERM, before)


def test_ray_shutdown_does_not_leave_sigterm_killing_the_command(tmp_path) -> None:
    """``ray.shutdown`` resets SIGTERM to the default disposition behind Python's back (checked with Ray 2.60): the
    handler is installed again after it, so a SIGTERM during the report still gives the "interrupted" line."""
    import subprocess
    import sys

    script = tmp_path / "t.py"
    script.write_text(
        "import ctypes, os, signal, time\n"
        "from edgeae.scan.ray_engine import _sigterm_kept\n"
        "def ours(s, f): raise KeyboardInterrupt\n"
        "signal.signal(signal.SIGTERM, ours)\n"
        "with _sigterm_kept():\n"
        "    ctypes.CDLL(None).signal(signal.SIGTERM, 0)  # what ray.shutdown does: SIG_DFL\n"
        "try:\n"
        "    os.kill(os.getpid(), signal.SIGTERM); time.sleep(2)\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted')\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "interrupted", (done.returncode, done.stderr[-500:])


# -- 2 and 10: a cluster that does not answer, a Ray that cannot start ---------------------------------------------
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_cluster_address_that_does_not_answer_is_refused_in_one_line_at_once() -> None:
    from edgeae.scan.ray_engine import _init_ray

    fake = _FakeRay()
    address = f"127.0.0.1:{_closed_port()}"
    t0 = time.perf_counter()
    with pytest.raises(
        ConnectionError, match=rf"^cannot reach the Ray cluster at {address}: .* \(waited up to 10 s;"
    ) as info:
        _init_ray(fake, address, None)
    assert time.perf_counter() - t0 < 5 and not fake.calls and "\n" not in str(info.value)
    with socket.socket() as listening:  # an address that answers goes on to ray.init
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        assert _init_ray(fake, f"127.0.0.1:{port}", None) is True  # (ray:// is refused since session 34)
    assert fake.calls[-1]["address"] == f"127.0.0.1:{port}"


def test_a_local_ray_that_cannot_start_says_it_is_ray() -> None:
    from edgeae.scan.ray_engine import _init_ray

    def fail() -> None:
        raise NotADirectoryError(20, "Not a directory", "/dev/null/x")

    with pytest.raises(OSError, match=r"^cannot start a local Ray instance: NotADirectoryError: .*RAY_TMPDIR"):
        _init_ray(_FakeRay(on_init=fail), None, 1)


# -- 3: a rerun with another archive -------------------------------------------------------------------------------
def test_a_rerun_with_another_archive_says_what_it_leaves_out(moon, model, tmp_path, caplog) -> None:
    root = _crops(tmp_path / "arc", moon)
    out = tmp_path / "out"
    first = _scan(root, model, out)
    assert first["done"] == 2 and first["recorded_not_in_archive"] == 0
    with caplog.at_level(logging.WARNING, logger="edgeae.scan.run"):
        again = _scan(root / "b.png", model, out)
    assert again["done"] == 1 and again["recorded_not_in_archive"] == 1
    assert again["recorded_not_in_archive_files"] == ["c.png"]
    assert "1 recorded image(s) (1 done) that this archive does not give (c.png)" in caplog.text
    assert "1 image recorded in this folder by earlier runs not in this archive" in (out / "report.md").read_text()
    assert json.loads((out / "report.json").read_text())["recorded_not_in_archive"] == 1
    assert len(list((out / "parts").glob("*.parquet"))) == 2  # kept: the first archive brings it back unscored
    back = _scan(root, model, out)
    assert back["images_scanned"] == 0 and back["done"] == 2 and back["recorded_not_in_archive"] == 0


# -- 4 and 5: hostile headers in the set's size and the progress total --------------------------------------------
def test_a_header_over_the_decode_limit_counts_no_patch(moon, tmp_path) -> None:
    root = _crops(tmp_path / "arc", moon, ("b.png",))
    bomb = _bomb_png(root / "bomb.png", 100_000, 100_000)
    wide = _bomb_png(root / "wide.png", 2_147_483_647, 1)
    config = ScanConfig(SPEC, 32)
    assert count_patches(bomb, config) == 0 and count_patches(wide, config) == 0  # they fail as bombs when read
    assert count_patches(root / "b.png", config) == 3 * 3


def test_context_knn_set_size_skips_bombs_and_names_the_largest_images(moon, tmp_path, monkeypatch) -> None:
    from edgeae.scan.context import check_set_size

    root = _crops(tmp_path / "arc", moon)
    _bomb_png(root / "bomb.png", 100_000, 100_000)
    config = ScanConfig(VAE, 32, score="context-knn")
    entries = walk_archive(root)
    check_set_size(entries, config)  # 18 patches: the bomb's header does not count
    monkeypatch.setattr("edgeae.anomaly.baselines.KNN_MAX", 10)
    with pytest.raises(ValueError, match=r"give 18 patches .* \(most from b\.png \(9\), c\.png \(9\)\)"):
        check_set_size(entries, config)


# -- 7 and 8: options of the other engine, the bar on terminals only ----------------------------------------------
@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--num-cpus", "1", "--actors", "7"], "--num-cpus and --actors need --engine ray"),
        (["--address", "auto"], "--address needs --engine ray"),
        (["--engine", "ray", "--workers", "5"], "--workers sets the local engine's processes"),
        (["--engine", "ray", "--address", "auto", "--num-cpus", "2"], "--num-cpus sizes the local Ray instance"),
    ],
)
def test_options_of_the_other_engine_are_refused(extra, says, tmp_path, capsys) -> None:
    pytest.importorskip("ray")
    from edgeae.cli import main

    assert main(["scan", str(tmp_path), "--out", str(tmp_path / "out"), *extra]) == 2
    assert says in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_the_progress_bar_is_drawn_on_a_terminal_only(tmp_path, monkeypatch, capsys) -> None:
    import sys

    from edgeae.cli import main

    seen: list[tuple[bool, int]] = []

    def fake_scan(archive, model, out, **kw):
        seen.append((kw["progress"], kw["engine"].workers))
        raise ValueError("stop here")

    monkeypatch.setattr("edgeae.scan.run.scan_archive", fake_scan)
    args = ["scan", str(tmp_path), "--out", str(tmp_path / "out")]
    assert main(args) == 2  # pytest's stderr is not a terminal
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert main(args) == 2 and main([*args, "--no-progress"]) == 2
    assert seen == [(False, 2), (True, 2), (False, 2)]  # --workers left out is still 2


# -- 9: the help's figures ------------------------------------------------------------------------------------------
def test_help_gives_the_scans_own_context_knn_figures(capsys) -> None:
    from edgeae.cli import main

    with pytest.raises(SystemExit):
        main(["scan", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "ROC AUC 0.814 with --views 8" in text and "0.787 with one view" in text and "0.805" not in text


# -- 10: clear refusals of --out, nothing left by a run that failed before scanning -----------------------------
def test_an_out_that_is_or_lies_below_a_file_is_refused_in_words(tmp_path) -> None:
    f = tmp_path / "a.png"
    f.write_bytes(b"x")
    with pytest.raises(ScanStateError, match=r"--out .*a\.png is a file, not a folder"):
        ScanStore(f, ScanConfig(SPEC, 32))
    with pytest.raises(ScanStateError, match=r"cannot create the results folder --out .*deeper: .*a\.png is a file"):
        ScanStore(f / "sub" / "deeper", ScanConfig(SPEC, 32))
    assert f.read_bytes() == b"x"


def test_an_empty_archive_is_named_as_given(model, tmp_path) -> None:
    (tmp_path / "emptyd").mkdir()
    with pytest.raises(FileNotFoundError, match=r"^archive .*emptyd holds no image files$"):
        _scan([tmp_path / "emptyd"], model, tmp_path / "out")  # as the command passes it
    assert not (tmp_path / "out").exists()


def test_a_run_that_fails_before_its_first_image_leaves_no_scan_folder(moon, model, tmp_path, monkeypatch) -> None:
    root = _crops(tmp_path / "arc", moon)
    kept = tmp_path / "kept"  # a folder that holds a scan keeps its records
    _scan(root, model, kept)

    def no_engine(*a: Any, **k: Any) -> Any:
        raise OSError("cannot start a local Ray instance: NotADirectoryError: ...")
        yield  # a generator, as the engines are

    monkeypatch.setattr("edgeae.scan.local.iter_local", no_engine)
    out = tmp_path / "new" / "out"
    with pytest.raises(OSError, match="cannot start"):
        _scan(root, model, out)
    assert not (tmp_path / "new").exists()
    with pytest.raises(OSError, match="cannot start"):
        _scan(root, model, kept, force=True)
    assert (kept / "scan.json").exists() and (kept / "topk").is_dir()


# -- 11: wording ----------------------------------------------------------------------------------------------------
def test_the_report_counts_in_words(moon, model, tmp_path) -> None:
    root = _crops(tmp_path / "arc", moon, ("b.png",))
    first = (tmp_path / "out" / "report.md", _scan(root, model, tmp_path / "out"))[0].read_text()
    assert "- this run: 1 image, 9 patches in " in first
    _scan(root, model, tmp_path / "out")
    again = (tmp_path / "out" / "report.md").read_text()
    assert "- this run: no image scanned (every image of the archive is recorded" in again and "0 images" not in again


# -- 12: a stop while the local engine's workers start --------------------------------------------------------------
def test_a_stop_during_worker_start_up_ends_the_workers(tmp_path, monkeypatch) -> None:
    import concurrent.futures as cf
    import multiprocessing as mp

    from edgeae.scan.local import iter_local

    def interrupted(*a: Any, **k: Any) -> Any:  # Ctrl-C / SIGTERM right after the first images were submitted
        raise KeyboardInterrupt

    entries = [ArchiveEntry(tmp_path / f"{i}.png", f"{i}.png") for i in range(4)]
    monkeypatch.setattr(cf, "wait", interrupted)
    before = set(mp.active_children())
    with pytest.raises(KeyboardInterrupt):
        next(iter_local(entries, ScanConfig(SPEC, 32), mean_scorer_factory, workers=2))
    left = [p for p in mp.active_children() if p not in before and p.is_alive()]
    assert not left, f"worker processes still running after the stop: {left}"


# -- 13: the best patches' file is closed ---------------------------------------------------------------------------
def test_writing_an_image_leaves_no_file_open(moon, model, tmp_path) -> None:
    root = _crops(tmp_path / "arc", moon, ("b.png",))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        r = _scan(root, model, tmp_path / "out")
    assert r["done"] == 1 and (tmp_path / "out" / "parts").glob("*.top.npz")
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)], [str(w.message) for w in caught]
    assert not list((tmp_path / "out" / "parts").glob(".*.tmp-*"))


def test_a_store_whose_scan_json_cannot_be_written_leaves_no_folder(tmp_path, monkeypatch) -> None:
    """A full disk while the store writes scan.json: the folders it made are removed (review, session 31)."""
    import errno

    from edgeae.scan import state

    def full(path, write) -> None:  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(state, "_atomic_write", full)
    with pytest.raises(OSError):
        ScanStore(tmp_path / "a" / "b", ScanConfig(SPEC, 32))
    assert not (tmp_path / "a").exists()


def test_ray_is_left_its_own_sigterm_handler_where_the_program_had_none() -> None:
    """Only a handler of the program's own is put back after ray.init: with the default one, Ray's (which shuts Ray
    down) stays, not the default (which would kill the driver and leave Ray's processes)."""
    from edgeae.scan.ray_engine import _sigterm_kept

    def rays(signum: int, frame: Any) -> None:
        raise SystemExit(signum)

    before = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        with _sigterm_kept():
            signal.signal(signal.SIGTERM, rays)
        assert signal.getsignal(signal.SIGTERM) is rays
    finally:
        signal.signal(signal.SIGTERM, before)

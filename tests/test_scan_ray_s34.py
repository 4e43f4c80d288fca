"""`edgeae scan --engine ray` after the session-34 audit: paths the workers can open, a worker that dies on an image,
Ray's messages off stdout, a connection deadline, RAY_ADDRESS, token authentication, ray:// refused. Ray itself is
stood in for (no instance is started): each test runs in well under a second."""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("pyarrow")
from test_scan_support import mean_scorer_factory

from edgeae.scan import ray_engine

try:  # the real map_batches, called on a stub: its warnings without a Ray instance
    from ray.data import Dataset

    ray_dataset: Any = Dataset
except ImportError:
    ray_dataset = None
from edgeae.scan.archive import walk_archive
from edgeae.scan.pipeline import ScanConfig
from edgeae.scan.scoring import ModelSpec

SPEC = ModelSpec(path="m.onnx", model_id="m", artifact_hash="0" * 64, kind="cae", patch=32, channels=1)


def _crops(root: Path, moon: np.ndarray, names: tuple[str, ...]) -> Path:
    from edgeae.imageio import write_image

    root.mkdir(parents=True, exist_ok=True)
    for i, n in enumerate(names):
        write_image(root / n, np.ascontiguousarray(moon[40 * i : 40 * i + 70, 30 * i : 30 * i + 90]))
    return root


class _FakeDataset:
    """One pass's dataset: its items split into blocks as Ray's ``from_items`` splits them (in order, the remainder
    spread over the first blocks), each stage applied row by row in ``worker_cwd`` (a Ray worker's working directory
    is its raylet's); a block holding an image whose name has ``poison`` in it is dropped whole, as Ray Data drops the
    block of a task whose worker died past its retries (the images scanned before the crash included)."""

    def __init__(self, data: _FakeData, items: list[dict[str, str]], blocks: int) -> None:
        self.data, self.items, self.blocks = data, items, blocks
        self.stages: list[tuple[Any, dict[str, Any]]] = []

    def map_batches(self, fn: Any, **kw: Any) -> _FakeDataset:
        self.stages.append((fn, kw))
        if ray_dataset is not None:  # Ray's own argument handling and deprecation warnings, no instance needed
            stub = type("Stub", (), {"map_batches_internal": lambda *a, **k: None})()
            ray_dataset.map_batches(stub, fn, **kw)
        return self

    def _rows(self, item: dict[str, str]) -> list[dict[str, np.ndarray]]:
        rows: list[dict[str, np.ndarray]] = [{k: np.array([v], dtype=object) for k, v in item.items()}]
        driver_cwd = os.getcwd()
        os.chdir(self.data.worker_cwd)
        try:
            for fn, kw in self.stages:
                if isinstance(fn, type):
                    actor = fn(**kw["fn_constructor_kwargs"])
                    out = [actor(r) for r in rows]
                else:
                    out = [fn(r, **kw["fn_kwargs"]) for r in rows]
                rows = [x for o in out for x in (o if isinstance(o, Iterator) else [o])]
        finally:
            os.chdir(driver_cwd)
        return rows

    def iter_batches(self, batch_size: Any, batch_format: str) -> Iterator[dict[str, np.ndarray]]:
        self.data.errored_blocks_seen.append(self.data.context.max_errored_blocks)
        size, extra = divmod(len(self.items), self.blocks)
        for i in range(self.blocks):
            block = self.items[i * size + min(i, extra) : (i + 1) * size + min(i + 1, extra)]
            rows = [r for item in block for r in self._rows(item)]
            if not any("poison" in item["name"] for item in block):
                yield from rows


class _FakeData:
    """``ray.data`` run in this process; ``passes`` keeps each dataset built (one a pass)."""

    def __init__(self, worker_cwd: Path) -> None:
        self.worker_cwd = worker_cwd
        self.passes: list[_FakeDataset] = []
        self.context = type("Ctx", (), {"enable_progress_bars": True, "max_errored_blocks": 0})()
        self.errored_blocks_seen: list[int] = []
        self.DataContext = type("DataContext", (), {"get_current": staticmethod(lambda: self.context)})

    def ActorPoolStrategy(self, size: int) -> tuple[str, int]:  # Ray's name
        return ("actors", size)

    def from_items(self, items: list[dict[str, str]], override_num_blocks: int) -> _FakeDataset:
        self.passes.append(_FakeDataset(self, items, override_num_blocks))
        return self.passes[-1]


class _FakeRayModule:
    def __init__(self, worker_cwd: Path) -> None:
        self.data = _FakeData(worker_cwd)

    def is_initialized(self) -> bool:
        return True  # "already initialised": nothing is started or shut down

    def cluster_resources(self) -> dict[str, float]:
        return {"CPU": 2.0}


# -- 1: relative archive paths -------------------------------------------------------------------------------------
def test_workers_get_absolute_paths_and_results_keep_their_names(moon, tmp_path, monkeypatch) -> None:
    """The driver resolves each path against its own working directory; a worker elsewhere (where a decoy folder of
    the same name may lie) opens the driver's files. The results' names are unchanged."""
    here = tmp_path / "here"
    _crops(here / "arch2", moon, ("a.png", "b.png"))
    worker = tmp_path / "raylet_cwd"
    _crops(worker / "arch2", moon[::-1].copy(), ("a.png", "b.png"))  # the decoy
    monkeypatch.chdir(here)
    entries = walk_archive("arch2")
    assert [e.name for e in entries] == ["a.png", "b.png"] and not entries[0].path.is_absolute()
    items = ray_engine.worker_items(entries)
    assert [i["name"] for i in items] == ["a.png", "b.png"]
    assert [Path(i["path"]) for i in items] == [here / "arch2" / "a.png", here / "arch2" / "b.png"]

    fake = _FakeRayModule(worker)
    monkeypatch.setattr(ray_engine, "require", lambda name: fake)
    config = ScanConfig(SPEC, 32)
    got = {e.name: (r, err) for e, r, err in ray_engine.iter_ray(entries, config, mean_scorer_factory)}
    assert set(got) == {"a.png", "b.png"} and all(r is not None and not err for r, err in got.values())
    from edgeae.scan.local import iter_local

    want = {e.name: r for e, r, _ in iter_local(entries, config, mean_scorer_factory, workers=0)}
    for name, (r, _) in got.items():  # the driver's files were scored, not the decoy's
        np.testing.assert_array_equal(r.scores, want[name].scores)


# -- 2: a worker that dies on an image -----------------------------------------------------------------------------
# pytest imports the category named in a filter: without Ray the filter would end the whole session (review r5)
RAY_DEPRECATION = "error::ray.util.annotations.RayDeprecationWarning" if ray_dataset is not None else "default"


@pytest.mark.filterwarnings(RAY_DEPRECATION)
def test_an_image_that_kills_its_worker_is_retried_a_bounded_number_of_times_then_failed(
    moon, tmp_path, monkeypatch, caplog
) -> None:
    root = _crops(tmp_path / "arc", moon, ("a.png", "poison.png", "z.png"))
    entries = walk_archive(root)
    fake = _FakeRayModule(tmp_path)
    monkeypatch.setattr(ray_engine, "require", lambda name: fake)
    out = list(ray_engine.iter_ray(entries, ScanConfig(SPEC, 32), mean_scorer_factory))
    assert {e.name: err for e, r, err in out if r is None} == {"poison.png": ray_engine.WORKER_DIED}
    assert sorted(e.name for e, r, _ in out if r is not None) == ["a.png", "z.png"]
    assert "3 times" in ray_engine.WORKER_DIED and "1 image(s) recorded as failed" in caplog.text
    # one pass, one image a block; one actor stage (tiling on the actors), its retries bounded; a dropped block does
    # not end the dataset
    [one] = fake.data.passes
    assert one.blocks == len(one.items) == 3
    [(stage, kw)] = one.stages
    assert stage is ray_engine.TileScoreActor
    assert kw["max_task_retries"] == ray_engine.WORKER_RETRIES == 2 and kw["max_restarts"] == -1
    assert fake.data.errored_blocks_seen == [-1] and fake.data.context.max_errored_blocks == 0  # put back


@pytest.mark.filterwarnings(RAY_DEPRECATION)
def test_only_the_image_that_kills_its_worker_fails_when_a_task_holds_several(moon, tmp_path, monkeypatch) -> None:
    """Beyond MAX_BLOCKS images a task holds several: the images that went down with the poisoned one (scanned
    before it or not yet) are scanned again, fewer to a task, and only the poisoned one is recorded as failed."""
    names = ("a.png", "b.png", "c.png", "m.png", "poison.png", "x.png", "y.png", "z.png")
    entries = walk_archive(_crops(tmp_path / "arc", moon, names))
    fake = _FakeRayModule(tmp_path)
    monkeypatch.setattr(ray_engine, "require", lambda name: fake)
    monkeypatch.setattr(ray_engine, "MAX_BLOCKS", 2)  # as 2,000 do for an archive of more than 2,000 images
    config = ScanConfig(SPEC, 32)
    out = list(ray_engine.iter_ray(entries, config, mean_scorer_factory))
    assert {e.name: err for e, r, err in out if r is None} == {"poison.png": ray_engine.WORKER_DIED}
    assert sorted(e.name for e, r, _ in out if r is not None) == sorted(set(names) - {"poison.png"})
    assert len(out) == len(names)  # each image once
    # 8 images in 2 blocks (the 4 of poison.png's lost), then those 4 in 4 (twice the blocks): one image a task
    assert [(len(p.items), p.blocks) for p in fake.data.passes] == [(8, 2), (4, 4)]
    assert [i["name"] for i in fake.data.passes[-1].items] == ["poison.png", "x.png", "y.png", "z.png"]
    from edgeae.scan.local import iter_local

    want = {e.name: r for e, r, _ in iter_local(entries, config, mean_scorer_factory, workers=0)}
    for e, r, _ in out:
        if r is not None:
            np.testing.assert_array_equal(r.scores, want[e.name].scores)


def test_a_task_that_holds_every_image_is_split_until_only_the_poisoned_image_fails(
    moon, tmp_path, monkeypatch
) -> None:
    """One block for the whole archive (as the reviewer's crash_blk.py forced): scanned again in 2, then 1 a task."""
    entries = walk_archive(_crops(tmp_path / "arc", moon, ("a_ok.png", "m_poison.png", "z_ok.png")))
    fake = _FakeRayModule(tmp_path)
    monkeypatch.setattr(ray_engine, "require", lambda name: fake)
    monkeypatch.setattr(ray_engine, "MAX_BLOCKS", 1)
    out = list(ray_engine.iter_ray(entries, ScanConfig(SPEC, 32), mean_scorer_factory))
    assert {e.name: err for e, r, err in out if r is None} == {"m_poison.png": ray_engine.WORKER_DIED}
    assert sorted(e.name for e, r, _ in out if r is not None) == ["a_ok.png", "z_ok.png"]
    assert [(len(p.items), p.blocks) for p in fake.data.passes] == [(3, 1), (3, 2), (2, 2)]
    # no more actors than a pass has images to tile (2 CPUs here)
    assert [p.stages[0][1]["compute"] for p in fake.data.passes] == [("actors", 1), ("actors", 2), ("actors", 2)]


def test_a_pass_that_loses_every_task_ends_the_retries(moon, tmp_path, monkeypatch) -> None:
    """Every one of several tasks died: a systematic failure, not one image; no further pass, all recorded failed."""
    names = ("a.png", "poison1.png", "poison2.png", "z.png")
    entries = walk_archive(_crops(tmp_path / "arc", moon, names))
    fake = _FakeRayModule(tmp_path)
    monkeypatch.setattr(ray_engine, "require", lambda name: fake)
    monkeypatch.setattr(ray_engine, "MAX_BLOCKS", 2)
    out = list(ray_engine.iter_ray(entries, ScanConfig(SPEC, 32), mean_scorer_factory))
    assert {e.name: err for e, r, err in out} == dict.fromkeys(names, ray_engine.WORKER_DIED)
    assert [(len(p.items), p.blocks) for p in fake.data.passes] == [(4, 2)]


# -- 7: Ray's messages off stdout ----------------------------------------------------------------------------------
def test_rays_worker_died_lines_stay_off_stdout_and_are_counted(monkeypatch, capsys) -> None:
    printed: list[Any] = []
    worker = type("W", (), {"print_to_stdstream": staticmethod(lambda data, ignore_prefix: printed.append(data))})
    fake = type("R", (), {"_private": type("P", (), {"worker": worker})})
    original = worker.print_to_stdstream
    unregistered: list[Any] = []
    colorama = type(sys)("colorama.initialise")
    colorama.reset_all = lambda: None  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "colorama.initialise", colorama)
    monkeypatch.setattr(ray_engine.atexit, "unregister", unregistered.append)
    quiet = ray_engine._RayMessages(fake, verbose=False)
    line = "\x1b[33m(raylet)\x1b[0m A worker died or was killed while executing a task by an unexpected system error."
    worker.print_to_stdstream({"lines": [line], "pid": "raylet", "is_err": False}, ignore_prefix=False)
    worker.print_to_stdstream({"lines": ["something else"], "pid": "raylet", "is_err": False}, ignore_prefix=False)
    assert quiet.deaths == 1 and not printed and capsys.readouterr().out == ""
    quiet.close()
    assert worker.print_to_stdstream is original and unregistered == [colorama.reset_all]  # no colour reset at exit
    verbose = ray_engine._RayMessages(fake, verbose=True)  # -v: shown, on stderr
    worker.print_to_stdstream({"lines": [line], "pid": "raylet", "is_err": False}, ignore_prefix=False)
    verbose.close()
    assert len(printed) == 1 and printed[0]["is_err"] is True


# -- 4, 5, 6, 9: connecting ----------------------------------------------------------------------------------------
class _FakeRay:
    def __init__(self, on_init: Any = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.on_init = on_init

    def is_initialized(self) -> bool:
        return False

    def init(self, **kw: Any) -> None:
        self.calls.append(kw)
        if self.on_init is not None:
            self.on_init()


@pytest.fixture
def listening() -> Iterator[str]:
    """An address that accepts TCP connections (and never answers as Ray)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield f"127.0.0.1:{s.getsockname()[1]}"


def test_an_address_that_accepts_tcp_but_is_not_ray_is_refused_at_the_deadline(listening, monkeypatch) -> None:
    release = threading.Event()
    monkeypatch.setattr("edgeae.scan.ray_connect.CONNECT_DEADLINE_S", 0.5)  # read where _init_ray lives
    t0 = time.perf_counter()
    with pytest.raises(ConnectionError, match=rf"^cannot reach the Ray cluster at {listening}: no answer .* 0\.5 s"):
        ray_engine._init_ray(_FakeRay(on_init=lambda: release.wait(10)), listening, None)
    release.set()
    assert time.perf_counter() - t0 < 3


def test_sigterm_during_the_connect_ends_it_as_an_interrupt(listening, monkeypatch) -> None:
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach the main thread only")
    release = threading.Event()

    def interrupt(signum: int, frame: Any) -> None:  # what the command installs for SIGTERM
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, interrupt)
    try:
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM)).start()
        t0 = time.perf_counter()
        with pytest.raises(KeyboardInterrupt):
            ray_engine._init_ray(_FakeRay(on_init=lambda: release.wait(10)), listening, None)
        assert time.perf_counter() - t0 < 3
    finally:
        release.set()
        signal.signal(signal.SIGTERM, old)


def test_a_cluster_with_token_authentication_is_named_with_the_fix(listening) -> None:
    def fail() -> None:
        try:
            raise RuntimeError("Failed to connect to GCS. ... Unauthenticated: RPC error: InvalidAuthToken: ...")
        except RuntimeError as exc:
            raise ConnectionError("Failed to connect to Ray cluster at 192.0.2.2:6390") from exc

    with pytest.raises(ConnectionError) as info:
        ray_engine._init_ray(_FakeRay(on_init=fail), listening, None)
    text = str(info.value)
    assert text.startswith(f"cannot reach the Ray cluster at {listening}: it requires token authentication: set ")
    assert "RAY_AUTH_MODE=token" in text and "192.0.2.2" not in text and "\n" not in text

    def other() -> None:
        raise ConnectionError("Failed to connect to Ray cluster at 192.0.2.2:6390")

    with pytest.raises(ConnectionError, match=rf"^cannot reach the Ray cluster at {listening}: ConnectionError: "):
        ray_engine._init_ray(_FakeRay(on_init=other), listening, None)


def test_ray_address_names_the_cluster_when_no_address_is_given(listening, monkeypatch) -> None:
    monkeypatch.setenv("RAY_ADDRESS", listening)
    fake = _FakeRay()
    assert ray_engine._init_ray(fake, None, None) is True
    assert fake.calls[-1]["address"] == listening and "object_store_memory" not in fake.calls[-1]
    with pytest.raises(ValueError, match=r"^--num-cpus sizes the local Ray instance .*RAY_ADDRESS="):
        ray_engine._init_ray(_FakeRay(), None, 2)
    monkeypatch.setenv("RAY_ADDRESS", "local")  # Ray's word for "start one here"
    assert "object_store_memory" in (local := _FakeRay(), ray_engine._init_ray(local, None, 1), local.calls[-1])[2]


def test_a_local_ray_that_fails_for_another_reason_does_not_blame_ray_tmpdir(monkeypatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)

    def fail() -> None:
        raise ValueError("When connecting to an existing cluster, object_store_memory must not be provided.")

    with pytest.raises(OSError, match=r"^cannot start a local Ray instance: ValueError: When connecting") as info:
        ray_engine._init_ray(_FakeRay(on_init=fail), None, 1)
    assert "RAY_TMPDIR" not in str(info.value)


def test_ray_client_addresses_are_refused_in_one_line(listening) -> None:
    fake = _FakeRay()
    with pytest.raises(ValueError, match=r"Ray Client \(ray://\) is not supported; give the head node's GCS address"):
        ray_engine._init_ray(fake, f"ray://{listening}", None)
    assert not fake.calls

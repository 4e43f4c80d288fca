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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("pyarrow")
from test_scan_support import mean_scorer_factory

from edgeae.scan import ray_engine
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


class _FakeRef:
    """One call in flight: run when the stand-in's ``wait`` picks it (oldest first)."""

    def __init__(self, handle: _FakeActor, method: str, args: tuple[Any, ...]) -> None:
        self.handle, self.method, self.args = handle, method, args
        self.done, self.value, self.error = False, None, None


class _FakeActor:
    """A Ray actor run in this process, in ``worker_cwd`` (a Ray worker's working directory is its raylet's). An image
    whose name has ``poison`` in it kills its worker every time: after ``WORKER_RETRIES + 1`` deaths its call fails
    with ``RayActorError``, as Ray's does; one with ``once`` in it kills it the first time only (the retry succeeds).
    Each death builds the actor anew (``restarts``), as Ray restarts it, until its ``max_restarts`` are spent: then it
    is dead for good and every call fails (the one in flight too). ``fake.crashes_init(actor)`` true: the worker dies
    in the constructor (os._exit, SIGILL, the OOM killer), a death and a restart like any other."""

    def __init__(self, fake: _FakeRayModule, cls: type, args: tuple[Any, ...], options: dict[str, Any]) -> None:
        self.fake, self.cls, self.args, self.restarts = fake, cls, args, 0
        self.max_restarts = int(options.get("max_restarts", 0))
        self.dead = False
        self.instance: Any = None

    def __getattr__(self, method: str) -> Any:  # actor.method.remote(*args)
        fake = self.fake
        return type("Method", (), {"remote": lambda _, *a: fake.submit(self, method, a)})()

    def _build(self) -> Any:
        instance = self.cls(*self.args)
        instance.whoami = f"fake-{id(self)}-{self.restarts}"  # a new worker process each restart
        return instance

    def start(self) -> None:
        """Build the instance; a worker that dies in the constructor is restarted until max_restarts are spent."""
        while self.fake.crashes_init is not None and self.fake.crashes_init(self):
            assert self.restarts < 1000, "an actor restarted for ever (max_restarts=-1): the scan would hang"
            if not self._death():
                return
        if self.fake.init_error is None:  # else the constructor raised: no instance
            self.instance = self._build()

    def _death(self) -> bool:
        """One worker death; False when the actor is dead for good (its max_restarts spent)."""
        self.fake.deaths += 1
        if 0 <= self.max_restarts <= self.restarts:
            self.dead = True
            return False
        self.restarts += 1
        return True

    def _die(self) -> None:
        if self._death():
            self.start()

    def run(self, ref: _FakeRef) -> None:
        died = self.fake.exceptions.RayActorError("The actor died unexpectedly before finishing this task.")
        if self.dead:
            ref.error = died
            return
        if self.fake.init_error is not None:  # the actor's constructor raised: every call fails, saying so
            ref.error = self.fake.init_error
            return
        if ref.method != "scan":
            ref.value = getattr(self.instance, ref.method)(*ref.args)
            return
        path, name = ref.args
        self.fake.scanned_by.append((name, self.fake.actors.index(self)))
        tries = ray_engine.WORKER_RETRIES + 1
        if "poison" in name:
            for _ in range(tries):
                self._die()
                if self.dead:
                    ref.error = died
                    return
            ref.error = self.fake.exceptions.RayActorError("The actor is temporarily unavailable")
            return
        if "once" in name and name not in self.fake.died_once:
            self.fake.died_once.add(name)
            self._die()
            if self.dead:
                ref.error = died
                return
        driver_cwd = os.getcwd()
        os.chdir(self.fake.worker_cwd)
        try:
            ref.value = self.instance.scan(path, name)
        finally:
            os.chdir(driver_cwd)


class _RayActorError(Exception):
    def __init__(self, message: str, actor_init_failed: bool = False) -> None:
        super().__init__(message)
        self.actor_init_failed = actor_init_failed


class _FakeRayModule:
    """Ray Core (``remote``, ``wait``, ``get``, ``kill``) run in this process, already initialised: nothing is started
    or shut down. ``max_in_flight`` is the most ``scan`` calls (images) submitted and not yet fetched at once."""

    def __init__(self, worker_cwd: Path, resources: dict[str, float] | None = None) -> None:
        self.worker_cwd = worker_cwd
        self.resources = resources or {"CPU": 2.0}
        self.exceptions = type("exceptions", (), {"RayActorError": _RayActorError, **{
            n: type(n, (Exception,), {}) for n in ("WorkerCrashedError", "OutOfMemoryError", "NodeDiedError",
                                                  "ObjectLostError")}})  # fmt: skip
        self.options: list[dict[str, Any]] = []
        self.actors: list[_FakeActor] = []
        self.killed: list[_FakeActor] = []
        self.calls: list[_FakeRef] = []
        self.scans: list[_FakeRef] = []
        self.in_flight = self.max_in_flight = self.deaths = 0
        self.died_once: set[str] = set()
        self.scanned_by: list[tuple[str, int]] = []  # (image, actor) of each scan call run, retries not repeated
        self.init_error: BaseException | None = None
        self.crashes_init: Callable[[_FakeActor], bool] | None = None
        self.startable = 1 << 30  # actors beyond this many never start (the cluster has no CPU left for them)
        self.timeouts = 0

    def is_initialized(self) -> bool:
        return True

    def cluster_resources(self) -> dict[str, float]:
        return self.resources

    def remote(self, cls: type) -> Any:
        fake = self

        class Options:
            def options(self, **kw: Any) -> Any:
                fake.options.append(kw)
                return type("ActorClass", (), {"remote": lambda _, *args: fake._create(cls, args, kw)})()

        return Options()

    def _create(self, cls: type, args: tuple[Any, ...], options: dict[str, Any]) -> _FakeActor:
        self.actors.append(_FakeActor(self, cls, args, options))
        self.actors[-1].start()
        return self.actors[-1]

    def submit(self, actor: _FakeActor, method: str, args: tuple[Any, ...]) -> _FakeRef:
        ref = _FakeRef(actor, method, args)
        self.calls.append(ref)
        if method == "scan":
            self.scans.append(ref)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        return ref

    def wait(self, refs: list[_FakeRef], num_returns: int, timeout: float) -> tuple[list[_FakeRef], list[_FakeRef]]:
        startable = [r for r in refs if self.actors.index(r.handle) < self.startable]
        if not startable:  # only calls of actors that cannot start: none is ready in ``timeout``
            self.timeouts += 1
            assert self.timeouts < 3, "the driver waits for actors that cannot start"
            return [], refs
        oldest = min(startable, key=self.calls.index)
        for ref in self.calls[: self.calls.index(oldest) + 1]:  # an actor runs its calls in the order sent
            if ref.handle is oldest.handle and not ref.done:
                ref.handle.run(ref)
                ref.done = True
        return [oldest], [r for r in refs if r is not oldest]

    def get(self, ref: _FakeRef) -> Any:
        if not ref.done:  # a call not waited for: run now (Ray's get blocks until it is done)
            self.wait([ref], 1, 0)
        if ref.method == "scan":
            self.in_flight -= 1
        if ref.error is not None:
            raise ref.error
        return ref.value

    def kill(self, actor: _FakeActor) -> None:
        self.killed.append(actor)


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
def test_an_image_that_kills_its_worker_is_retried_a_bounded_number_of_times_then_failed(
    moon, tmp_path, monkeypatch, caplog
) -> None:
    """Each image is a call of its own: only the image that kills its worker (every time) is recorded as failed,
    after WORKER_RETRIES retries on the restarted actor; the others are those of the local engine."""
    names = ("a.png", "b.png", "c.png", "m.png", "poison.png", "x.png", "y.png", "z.png")
    entries = walk_archive(_crops(tmp_path / "arc", moon, names))
    fake = _FakeRayModule(tmp_path)
    monkeypatch.setattr(ray_engine, "require", lambda name: fake)
    config = ScanConfig(SPEC, 32)
    out = list(ray_engine.iter_ray(entries, config, mean_scorer_factory))
    assert {e.name: err for e, r, err in out if r is None} == {"poison.png": ray_engine.WORKER_DIED}
    assert sorted(e.name for e, r, _ in out if r is not None) == sorted(set(names) - {"poison.png"})
    assert len(out) == len(names) == len(fake.scans)  # each image once, one call each
    assert "3 times" in ray_engine.WORKER_DIED and "1 image(s) recorded as failed" in caplog.text
    assert "(3 worker death(s) in this scan" in caplog.text
    # the retries are the actors' own options (not deprecated), the actors one per CPU, ended at the end
    [options] = fake.options
    assert options["max_task_retries"] == ray_engine.WORKER_RETRIES == 2
    assert options["max_restarts"] == ray_engine.ACTOR_RESTARTS == 4  # bounded: a worker dying as it loads the model
    assert options["num_cpus"] == 1 and options["num_gpus"] == 0
    assert len(fake.actors) == 2 and fake.killed == fake.actors
    from edgeae.scan.local import iter_local

    want = {e.name: r for e, r, _ in iter_local(entries, config, mean_scorer_factory, workers=0)}
    for e, r, _ in out:
        if r is not None:
            np.testing.assert_array_equal(r.scores, want[e.name].scores)


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
    monkeypatch.setattr("atexit.unregister", unregistered.append)
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

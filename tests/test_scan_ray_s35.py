"""`edgeae scan --engine ray` on Ray Core (session 35): one actor call per image, so a worker that dies takes only its
image with it; retries bounded by the actors' own options; one call in flight per actor, sent as results come back.

The first tests stand Ray in (``test_scan_ray_s34._FakeRayModule``: no instance, well under a second each); the
``slow`` ones start a local Ray instance and kill real worker processes (``os._exit``)."""

from __future__ import annotations

import functools
import logging
import os
import re
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("pyarrow")
from test_scan_ray_s34 import SPEC, _crops, _FakeRayModule
from test_scan_support import mean_scorer_factory

from edgeae.scan import ray_engine
from edgeae.scan.archive import walk_archive
from edgeae.scan.local import iter_local
from edgeae.scan.pipeline import ImageResult, ScanConfig

NAMES = tuple(f"img_{i:02d}.png" for i in range(12))


def _same(got: ImageResult, want: ImageResult) -> None:
    """Bit-identical results: positions, scores and the best patches' thumbnails."""
    for field in ("xs", "ys", "valid", "scores"):
        np.testing.assert_array_equal(getattr(got, field), getattr(want, field))
    np.testing.assert_array_equal(got.top.scores, want.top.scores)
    np.testing.assert_array_equal(got.top.thumbs, want.top.thumbs)
    assert got.n_skipped == want.n_skipped


def _scan(fake: _FakeRayModule, entries: list[Any], monkeypatch: pytest.MonkeyPatch, **kw: Any) -> list[Any]:
    monkeypatch.setattr(ray_engine, "require", lambda name: fake)
    return list(ray_engine.iter_ray(entries, ScanConfig(SPEC, 32), mean_scorer_factory, **kw))


def test_only_the_image_that_kills_its_worker_fails_and_one_that_dies_once_is_done(
    moon, tmp_path, monkeypatch, caplog
) -> None:
    names = ("a.png", "m_once.png", "poison.png", "x.png", "z.png")
    entries = walk_archive(_crops(tmp_path / "arc", moon, names))
    fake = _FakeRayModule(tmp_path)
    reported: list[int] = []
    out = _scan(fake, entries, monkeypatch, on_patches=reported.append)
    assert {e.name: err for e, r, err in out if r is None} == {"poison.png": ray_engine.WORKER_DIED}
    done = {e.name: r for e, r, _ in out if r is not None}
    assert sorted(done) == ["a.png", "m_once.png", "x.png", "z.png"] and fake.deaths == 3 + 1
    want = {e.name: r for e, r, _ in iter_local(entries, ScanConfig(SPEC, 32), mean_scorer_factory, workers=0)}
    for name, r in done.items():
        _same(r, want[name])
    # the death of m_once.png's first worker is counted too (its actor answered from a new process)
    assert "1 image(s) recorded as failed" in caplog.text and "(4 worker death(s) in this scan" in caplog.text
    assert sum(reported) == sum(len(r.scores) + r.n_skipped for r in done.values())  # a dead image reports none


def test_a_worker_that_dies_once_is_counted_in_a_warning_and_its_image_done(moon, tmp_path, monkeypatch, caplog):
    entries = walk_archive(_crops(tmp_path / "arc", moon, ("once_first.png", "b.png", "c.png")))
    fake = _FakeRayModule(tmp_path)
    caplog.set_level(logging.WARNING, "edgeae")
    out = _scan(fake, entries, monkeypatch)
    assert [err for _, _, err in out] == ["", "", ""] and fake.deaths == 1
    warned = [r.getMessage() for r in caplog.records if r.name == "edgeae.scan.ray_engine"]
    assert warned == [
        "1 Ray worker process(es) died during the scan; their images were scanned again and every one finished"
    ]


def test_the_driver_holds_one_call_per_actor_and_sends_the_next_as_results_come_back(
    moon, tmp_path, monkeypatch
) -> None:
    entries = walk_archive(_crops(tmp_path / "arc", moon, NAMES))
    fake = _FakeRayModule(tmp_path, {"CPU": 64.0})
    monkeypatch.setattr(ray_engine, "require", lambda name: fake)
    ready: list[int] = []
    outcomes = ray_engine.iter_ray(
        entries, ScanConfig(SPEC, 32), mean_scorer_factory, actors=3, on_ready=lambda: ready.append(len(fake.scans))
    )
    first = next(outcomes)
    assert ready == [0] and len(fake.actors) == 3  # on_ready once the actors exist, before any image is sent
    assert len(fake.scans) == 4  # the three first images, and the next one sent before the first is handed over
    rest = list(outcomes)
    assert len(rest) + 1 == len(NAMES) == len(fake.scans) and fake.max_in_flight == 3
    assert [e.name for e, _, _ in [first, *rest]] == list(NAMES)  # each image once (here, in order)
    # each actor got one image at a time, in turn as it came back
    assert [fake.actors.index(c.handle) for c in fake.scans[:6]] == [0, 1, 2, 0, 1, 2]


def test_no_more_actors_than_images_and_one_per_cpu_by_default(moon, tmp_path, monkeypatch) -> None:
    entries = walk_archive(_crops(tmp_path / "arc", moon, NAMES[:2]))
    fake = _FakeRayModule(tmp_path, {"CPU": 16.0})
    assert len(_scan(fake, entries, monkeypatch)) == 2 and len(fake.actors) == 2
    fake = _FakeRayModule(tmp_path, {"CPU": 3.0})
    entries = walk_archive(_crops(tmp_path / "arc5", moon, NAMES[:5]))
    assert len(_scan(fake, entries, monkeypatch)) == 5 and len(fake.actors) == 3


def test_an_actor_that_cannot_start_gets_no_image(moon, tmp_path, monkeypatch) -> None:
    """--actors above what the cluster can place (3 on 2 CPUs): an image sent to the actor that never starts would
    wait for ever; each actor gets its first image once it is up, so the two that start scan everything."""
    entries = walk_archive(_crops(tmp_path / "arc", moon, NAMES[:7]))
    fake = _FakeRayModule(tmp_path)
    fake.startable = 2
    out = _scan(fake, entries, monkeypatch, actors=3)
    assert len(out) == 7 and all(not err for _, _, err in out) and len(fake.actors) == 3
    assert {fake.actors.index(c.handle) for c in fake.scans} == {0, 1} and fake.max_in_flight == 2
    assert fake.killed == fake.actors  # the one still waiting for a CPU too


def test_gpu_actors_run_the_gpu_scorer_one_gpu_each(moon, tmp_path, monkeypatch) -> None:
    entries = walk_archive(_crops(tmp_path / "arc", moon, NAMES[:5]))
    gpu_factory = functools.partial(mean_scorer_factory)  # another factory, told apart by identity
    fake = _FakeRayModule(tmp_path, {"CPU": 16.0, "GPU": 2.0})
    out = _scan(fake, entries, monkeypatch, gpu_factory=gpu_factory)
    assert all(not err for _, _, err in out) and len(out) == 5
    [options] = fake.options
    assert options["num_gpus"] == 1 and options["num_cpus"] == 1
    assert options["max_restarts"] == ray_engine.ACTOR_RESTARTS
    assert len(fake.actors) == 2 and all(a.args[0] is gpu_factory for a in fake.actors)
    fake = _FakeRayModule(tmp_path, {"CPU": 4.0, "GPU": 2.0})  # no GPU scorer given: CPU actors
    _scan(fake, entries, monkeypatch)
    assert fake.options[0]["num_gpus"] == 0 and len(fake.actors) == 4
    assert all(a.args[0] is mean_scorer_factory for a in fake.actors)


def test_a_model_the_actors_cannot_load_ends_the_scan_in_one_line(moon, tmp_path, monkeypatch) -> None:
    entries = walk_archive(_crops(tmp_path / "arc", moon, NAMES[:3]))
    fake = _FakeRayModule(tmp_path)
    fake.init_error = fake.exceptions.RayActorError(
        "The actor died because of an error raised in its creation task\nTraceback ...\nValueError: bad model file",
        actor_init_failed=True,
    )
    with pytest.raises(ray_engine.ModelLoadError) as info:
        _scan(fake, entries, monkeypatch)
    # the local engine's words (session 36): the model file, then the loader's error (before: "the Ray actors ...")
    assert str(info.value) == f"cannot load the model {SPEC.path}: ValueError: bad model file"
    assert fake.killed == fake.actors and len(fake.actors) == 2


def test_another_error_of_a_call_is_that_images_failure_and_an_early_stop_ends_the_actors(
    moon, tmp_path, monkeypatch
) -> None:
    entries = walk_archive(_crops(tmp_path / "arc", moon, NAMES[:6]))
    fake = _FakeRayModule(tmp_path)
    get = fake.get

    def failing_get(ref: Any) -> Any:
        if ref.method == "scan" and ref.args[1] == "img_01.png":
            get(ref)
            raise ValueError("could not deserialise\nthe reply")
        return get(ref)

    fake.get = failing_get  # type: ignore[method-assign]
    out = _scan(fake, entries, monkeypatch)
    assert {e.name: err for e, r, err in out if r is None} == {
        "img_01.png": "ValueError: could not deserialise the reply"
    }
    fake = _FakeRayModule(tmp_path)
    monkeypatch.setattr(ray_engine, "require", lambda name: fake)
    outcomes = ray_engine.iter_ray(entries, ScanConfig(SPEC, 32), mean_scorer_factory)
    next(outcomes)
    outcomes.close()  # Ctrl-C, or a caller that stops early
    assert fake.killed == fake.actors and len(fake.scans) == 3  # nothing sent after the stop


# -- workers that die while loading the model (review r3, session 35) ----------------------------------------------
def test_workers_that_die_loading_the_model_end_the_scan_in_one_line_instead_of_a_silent_hang(
    moon, tmp_path, monkeypatch
) -> None:
    """Every worker dies in the actor's constructor (the OOM killer, SIGILL from a runtime): with unbounded restarts
    the probes never answered and the scan waited for ever. Each actor is restarted ACTOR_RESTARTS times, replaced
    once per place, then the scan ends with one line; no image is recorded either way."""
    entries = walk_archive(_crops(tmp_path / "arc", moon, NAMES[:3]))
    fake = _FakeRayModule(tmp_path)
    fake.crashes_init = lambda actor: True
    with pytest.raises(ray_engine.ActorsDiedError) as info:
        _scan(fake, entries, monkeypatch)
    text = str(info.value)
    assert text.startswith(ray_engine.ACTORS_DIED + ": 4 actor(s) died for good before") and "\n" not in text
    assert "-v shows Ray's messages" in text and ray_engine.ACTOR_RESTARTS == 4
    assert len(fake.actors) == 2 + 2 and not fake.scans  # two places, each refilled once; nothing sent
    assert fake.deaths == 4 * (ray_engine.ACTOR_RESTARTS + 1) and fake.killed == fake.actors


def test_an_actor_whose_workers_die_loading_the_model_is_replaced_and_the_scan_goes_on(
    moon, tmp_path, monkeypatch, caplog
) -> None:
    """One actor lands where the model cannot load (its first): it is replaced, every image is done by the others."""
    entries = walk_archive(_crops(tmp_path / "arc", moon, NAMES[:5]))
    fake = _FakeRayModule(tmp_path)
    fake.crashes_init = lambda actor: actor is fake.actors[0]
    caplog.set_level(logging.WARNING, "edgeae")
    out = _scan(fake, entries, monkeypatch)
    assert sorted(e.name for e, r, err in out if r is not None and not err) == list(NAMES[:5])
    assert len(fake.actors) == 3 and {a for _, a in fake.scanned_by} == {1, 2}
    warned = [r.getMessage() for r in caplog.records if r.name == "edgeae.scan.ray_engine"]
    assert warned == [f"1 Ray actor(s) died for good before they could scan an image ({ray_engine.ACTORS_DIED})"]


def test_an_image_whose_actor_dies_for_good_is_sent_to_another_once_then_recorded_as_failed(
    moon, tmp_path, monkeypatch, caplog
) -> None:
    """One actor: poison_1 kills its worker 3 times (failed; 3 restarts spent), poison_2 spends the last restart and
    the actor is dead for good: poison_2 goes to a fresh actor, whose restarts after it crash loading the model, so
    it is dead for good too: poison_2 is failed (not sent on for ever) and a third actor scans the rest."""
    names = ("poison_1.png", "poison_2.png", "x.png", "y.png")
    entries = walk_archive(_crops(tmp_path / "arc", moon, names))
    fake = _FakeRayModule(tmp_path)
    fake.crashes_init = lambda actor: len(fake.actors) == 2 and actor is fake.actors[1] and actor.restarts > 0
    caplog.set_level(logging.WARNING, "edgeae")
    out = _scan(fake, entries, monkeypatch, actors=1)
    assert [(e.name, err) for e, _, err in out] == [
        ("poison_1.png", ray_engine.WORKER_DIED), ("poison_2.png", ray_engine.WORKER_DIED), ("x.png", ""),
        ("y.png", ""),
    ]  # fmt: skip
    assert fake.scanned_by == [("poison_1.png", 0), ("poison_2.png", 0), ("poison_2.png", 1), ("x.png", 2),
                               ("y.png", 2)]  # fmt: skip
    assert fake.killed == fake.actors and fake.deaths == 3 + 2 + (1 + ray_engine.ACTOR_RESTARTS)
    assert "2 image(s) recorded as failed" in caplog.text and "actor(s) died for good" not in caplog.text


def test_a_restart_that_crashes_loading_the_model_after_an_image_death_reschedules_that_image(
    moon, tmp_path, monkeypatch
) -> None:
    """a_once.png kills its worker once; the restarts after it all crash in the constructor, so its actor is dead for
    good: the image, which a restart would have scanned, goes to another actor and is done."""
    entries = walk_archive(_crops(tmp_path / "arc", moon, ("a_once.png", "b.png", "c.png", "d.png")))
    fake = _FakeRayModule(tmp_path)
    fake.crashes_init = lambda actor: actor is fake.actors[0] and actor.restarts > 0
    out = _scan(fake, entries, monkeypatch)
    assert all(r is not None and not err for _, r, err in out) and len(out) == 4
    assert [a for n, a in fake.scanned_by if n == "a_once.png"] == [0, 1] and len(fake.actors) == 3
    assert fake.deaths == 1 + ray_engine.ACTOR_RESTARTS


def test_the_command_says_in_one_line_that_the_actors_cannot_load_the_model_or_die_loading_it(
    moon, tmp_path, monkeypatch, capsys
) -> None:
    """`edgeae scan --engine ray`: a model the actors cannot load is one line and status 2 (not a 70-line
    traceback and 1); workers that die loading it, one line and status 1 (a worker process that died)."""
    from edgeae.cli import main

    arc = _crops(tmp_path / "arc", moon, NAMES[:2])
    fake = _FakeRayModule(tmp_path)
    fake.init_error = fake.exceptions.RayActorError(
        "The actor died because of an error raised in its creation task\nTraceback ...\n"
        "FileNotFoundError: /nfs/models/orbital.tflite: not mounted on this node",
        actor_init_failed=True,
    )
    monkeypatch.setattr(ray_engine, "require", lambda name: fake)
    argv = ["scan", str(arc), "--out", str(tmp_path / "o"), "--engine", "ray", "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    from edgeae.scan.scoring import resolve_model

    model = resolve_model("orbital-gray-vae").path  # the command's default model, as it resolves it
    assert err == (
        f"edgeae scan: error: cannot load the model {model}: FileNotFoundError: /nfs/models/orbital.tflite: "
        "not mounted on this node\n"
    )
    fake = _FakeRayModule(tmp_path)
    fake.crashes_init = lambda actor: True
    monkeypatch.setattr(ray_engine, "require", lambda name: fake)
    assert main(argv) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"edgeae scan: error: {ray_engine.ACTORS_DIED}: 4 actor(s) died for good")
    assert not (tmp_path / "o").exists()  # no image recorded: the folder it made is gone again


def test_the_ray_reports_start_up_names_what_it_is_now() -> None:
    from edgeae.scan.report_text import _facts, _text

    r = {"images": 2, "done": 2, "failed": 0, "pending": 0, "patches_per_s_scoring": 10.0, "scoring_seconds": 2.0,
         "startup_seconds": 1.5}  # fmt: skip
    [line] = [x for x in _facts({**r, "engine": "ray"}, _text) if x.startswith("- scoring:")]
    assert line.endswith("after 1.5 s of start-up (Ray up and the actors asked for; their start and model loading "
                         "count as scoring)")  # fmt: skip
    assert "dataset" not in line
    [line] = [x for x in _facts({**r, "engine": "local"}, _text) if x.startswith("- scoring:")]
    assert line.endswith("(processes, models, first chunk)")


# -- real worker processes killed (a local Ray instance) -----------------------------------------------------------
class _DyingScorer:
    """The mean brightness of each patch (as ``mean_scorer``), but a patch whose top-left 4×8 pixels are 255 then 0
    ends its worker process (``os._exit``) every time; 255 then 1, the first time only (``marker`` says it did)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        for corner in batch[:, 0, :4, :8]:
            if np.all(corner[:, :4] == 1.0) and np.all(corner[:, 4:] == 0.0):
                os._exit(1)
            once = np.all(corner[:, :4] == 1.0) and np.all((corner[:, 4:] > 0) & (corner[:, 4:] < 0.01))
            if once and not os.path.exists(self.marker):
                Path(self.marker).touch()
                os._exit(1)
        return batch.reshape(len(batch), -1).mean(axis=1).astype(np.float64)


def _marked_crops(root: Path, moon: np.ndarray, marks: dict[int, int]) -> Path:
    """``_crops``' images, those in ``marks`` with their top-left 4×4 pixels 255 and the 4×4 beside them its value."""
    from edgeae.imageio import write_image

    root.mkdir(parents=True, exist_ok=True)
    for i, n in enumerate(NAMES[:8]):
        img = np.ascontiguousarray(moon[40 * i : 40 * i + 70, 30 * i : 30 * i + 90])
        if i in marks:
            img[:4, :4], img[:4, 4:8] = 255, marks[i]
        write_image(root / n, img)
    return root


@pytest.fixture(scope="module")
def local_ray():
    """A 2-CPU, loopback-only Ray instance for this module's slow tests; skipped when Ray cannot start here."""
    ray = pytest.importorskip("ray")
    try:
        started = ray_engine._init_ray(ray, None, 2)
    except Exception as exc:
        pytest.skip(f"Ray cannot start a local instance here: {type(exc).__name__}: {exc}")
    # the dying scorer is defined in this test module, which Ray's workers cannot import: it travels by value
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield ray
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    if started:
        ray.shutdown()


@pytest.mark.slow
@pytest.mark.ray
def test_a_real_worker_that_kills_itself_fails_only_its_image(local_ray, moon, tmp_path, caplog) -> None:
    """Ray 2.60, 2 actors: one image ends its worker process each time it is scored (3 deaths, then recorded as
    failed), one the first time only (retried and done); every other image done, bit-identical to the local engine."""
    root = _marked_crops(tmp_path / "arc", moon, {3: 0, 5: 1})  # img_03 kills its worker every time, img_05 once
    entries = walk_archive(root)
    config = ScanConfig(SPEC, 32)
    factory = functools.partial(_DyingScorer, str(tmp_path / "died_once"))
    caplog.set_level(logging.WARNING, "edgeae")
    out = list(ray_engine.iter_ray(entries, config, factory, actors=2))
    assert {e.name: err for e, r, err in out if r is None} == {"img_03.png": ray_engine.WORKER_DIED}
    assert len(out) == len(entries) and (tmp_path / "died_once").exists()
    want = {e.name: r for e, r, _ in iter_local(entries, config, mean_scorer_factory, workers=0)}
    for e, r, _ in out:
        if r is not None:
            _same(r, want[e.name])
    [warning] = [r.getMessage() for r in caplog.records if r.name == "edgeae.scan.ray_engine"]
    deaths = re.search(r"^1 image\(s\) recorded as failed: .* died on them 3 times \((\d+) worker death", warning)
    assert deaths is not None and int(deaths.group(1)) >= 3 + 1, warning


@pytest.mark.slow
@pytest.mark.ray
def test_a_real_worker_that_dies_loading_the_model_ends_the_scan_in_one_line(local_ray, moon, tmp_path) -> None:
    """Ray 2.60: the model factory ends its worker process (``os._exit``, as SIGILL or the OOM killer would) in every
    actor: before, restarted for ever, a silent hang; now one actor and its replacement, each restarted ACTOR_RESTARTS
    times, then the one-line error."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("the hang guard (SIGALRM) needs the main thread")
    entries = walk_archive(_crops(tmp_path / "arc", moon, NAMES[:3]))

    def hang(signum: int, frame: Any) -> None:  # the driver's ray.wait loop wakes every second: this gets through
        raise TimeoutError("the scan still waits after 120 s: the actors are restarted for ever")

    old = signal.signal(signal.SIGALRM, hang)
    signal.alarm(120)
    try:
        with pytest.raises(ray_engine.ActorsDiedError, match=r"^the Ray actors' worker processes die while loading "):
            list(ray_engine.iter_ray(entries, ScanConfig(SPEC, 32), functools.partial(os._exit, 132), actors=1))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_a_place_whose_actors_never_come_up_is_left_empty_and_the_scan_goes_on(
    moon: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Review r10: every actor made for place 0 dies loading the model while place 1's works: place 0 is refilled
    at most ``size`` times in a row, then left empty, and the other actor scans every image."""
    names = tuple(f"img_{i}.png" for i in range(5))
    entries = walk_archive(_crops(tmp_path / "arc", moon, names))
    fake = _FakeRayModule(tmp_path)

    def crash(actor: Any) -> bool:  # the first actor, and every replacement made after actor 1 exists
        return actor is fake.actors[0] or (len(fake.actors) > 2 and actor is not fake.actors[1])

    fake.crashes_init = crash
    caplog.set_level(logging.WARNING, "edgeae")
    out = _scan(fake, entries, monkeypatch)
    assert sorted(e.name for e, _, err in out if not err) == sorted(names)
    assert any("the scan went on with 1 of 2" in r.getMessage() for r in caplog.records)
    # place 0 refilled at most size (2) times in a row; the count starts again once, when actor 1 comes up
    assert len(fake.actors) <= 2 + 1 + 2

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
    assert options["num_gpus"] == 1 and options["num_cpus"] == 1 and options["max_restarts"] == -1
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
    with pytest.raises(RuntimeError, match=r"^the Ray actors cannot load the model: ValueError: bad model file$"):
        _scan(fake, entries, monkeypatch)
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

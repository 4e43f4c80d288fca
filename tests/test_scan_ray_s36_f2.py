"""The Ray engine's start budget (session 36, fixer f2): a place whose actors never come up is refilled at most
``size`` times in a row, and the count starts again only when a fresh actor first answers (review r13), not when an
actor that is up answers again after an image killed its worker. Ray is stood in for (test_scan_ray_s34's fake)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pyarrow")
from test_scan_ray_s34 import SPEC, _crops, _FakeRayModule
from test_scan_support import mean_scorer_factory

from edgeae.scan import ray_engine
from edgeae.scan.archive import walk_archive
from edgeae.scan.pipeline import ScanConfig


def test_an_image_that_kills_an_up_actors_worker_does_not_refill_the_start_budget(
    moon: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Two places: every actor made for place 0 dies loading the model; place 1's actor is up and scans every image,
    the first of which kills its worker 3 times (recorded as failed), after which that actor answers its probe again.
    That answer is not a fresh actor coming up: after actor 1 came up, place 0 is refilled ``size`` = 2 times, then
    left empty (5 actors in all). When every answer restarted the count (before review r13), place 0 got two more
    (7 actors): one more round of ``size`` for each image that killed a worker."""
    names = ("a_poison.png", "b.png", "c.png", "d.png", "e.png")
    entries = walk_archive(_crops(tmp_path / "arc", moon, names))
    fake = _FakeRayModule(tmp_path)
    fake.crashes_init = lambda actor: len(fake.actors) < 2 or actor is not fake.actors[1]  # place 1's first: up
    monkeypatch.setattr(ray_engine, "require", lambda name: fake)
    caplog.set_level(logging.WARNING, "edgeae")
    out = list(ray_engine.iter_ray(entries, ScanConfig(SPEC, 32), mean_scorer_factory))
    assert [(e.name, err) for e, _, err in out] == [("a_poison.png", ray_engine.WORKER_DIED)] + [
        (n, "") for n in names[1:]
    ]
    assert {a for _, a in fake.scanned_by} == {1}
    # place 1's actor; place 0's first, its replacement made before actor 1 came up, and size = 2 more after it
    assert len(fake.actors) == 1 + 2 + 2
    warned = [r.getMessage() for r in caplog.records if r.name == "edgeae.scan.ray_engine"]
    assert warned[0] == (
        f"4 Ray actor(s) died for good before they could scan an image ({ray_engine.ACTORS_DIED}); the scan went on "
        "with 1 of 2"
    )

"""The "N Ray node(s) were lost" warning counts only the nodes that held an actor of the scan; the "worker
process(es) died" warning stays for deaths on the nodes that were not lost (review s36 r12 #4)."""

from __future__ import annotations

import logging

from test_scan_ray_s34 import SPEC, _crops, _FakeActor, _FakeRayModule
from test_scan_support import mean_scorer_factory

from edgeae.scan import ray_engine
from edgeae.scan.archive import walk_archive
from edgeae.scan.pipeline import ScanConfig

A, B = "aa" * 28, "bb" * 28


def _scan(moon, tmp_path, monkeypatch, caplog, actors_on: str) -> list[str]:
    """A scan of 4 images (one kills its worker once) on a fake Ray of nodes A and B, B gone at the end, with every
    actor on ``actors_on``: the warnings it says."""
    entries = walk_archive(_crops(tmp_path / "arc", moon, ("a.png", "b_once.png", "c.png", "d.png")))
    fake = _FakeRayModule(tmp_path)
    states = iter([[True, True], [True, False]])  # at the start, then at the end: B is gone
    fake.nodes = lambda: [  # type: ignore[attr-defined]
        {"NodeID": nid, "NodeManagerAddress": addr, "Alive": alive}
        for (nid, addr), alive in zip(((A, "10.0.0.1"), (B, "10.0.0.2")), next(states), strict=True)
    ]
    build = _FakeActor._build

    def on_node(actor: _FakeActor) -> object:  # the stand-in's worker process "fake-ID-RESTARTS", on a node
        instance = build(actor)
        instance.whoami = f"{actors_on}:{instance.whoami}"
        return instance

    monkeypatch.setattr(_FakeActor, "_build", on_node)
    monkeypatch.setattr(ray_engine, "require", lambda name: fake)
    caplog.set_level(logging.WARNING, "edgeae")
    out = list(ray_engine.iter_ray(entries, ScanConfig(SPEC, 32), mean_scorer_factory))
    assert all(r is not None and not err for _, r, err in out) and len(out) == 4
    return [r.getMessage() for r in caplog.records if r.name == "edgeae.scan.ray_engine"]


def test_a_node_that_held_no_actor_is_not_said_lost_and_deaths_elsewhere_are_said(
    moon, tmp_path, monkeypatch, caplog
) -> None:
    """Before: "1 Ray node(s) were lost ... the images their actors held were scanned again" for B, which held none,
    and the death on A not said at all."""
    assert _scan(moon, tmp_path, monkeypatch, caplog, A) == [
        "1 Ray worker process(es) died during the scan; their images were scanned again and every one finished"
    ]


def test_a_lost_node_that_held_the_actors_is_said_with_its_deaths(moon, tmp_path, monkeypatch, caplog) -> None:
    assert _scan(moon, tmp_path, monkeypatch, caplog, B) == [
        "1 Ray node(s) were lost during the scan (10.0.0.2 (node bbbbbbbb); Ray marked them dead): the images their "
        "actors held were scanned again on the actors left"
    ]


def test_deaths_on_a_node_lost_and_elsewhere_are_each_said_once(caplog) -> None:
    pool = ray_engine._Pool.__new__(ray_engine._Pool)
    pool.size, pool.actors, pool.up = 2, [object(), object()], [True, True]
    pool.deaths, pool.lost, pool.failed_starts, pool.empty = 3, 0, 0, 0
    caplog.set_level(logging.WARNING, "edgeae")
    lost = {B: "10.0.0.2"}
    pool.warn(3, lost, ray_engine.deaths_on({A: 1, B[:12]: 2}, lost))  # Ray's messages may cut an id short
    assert [r.getMessage() for r in caplog.records][1:] == [
        "1 Ray worker process(es) died during the scan; their images were scanned again and every one finished"
    ]

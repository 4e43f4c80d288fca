"""The loop waits for the scoring engine only when the memory budget needs it (session 39, fixer h13). Since fixer h12
the loop drained the engine's batches before every strip's pixel check on the VAE's fast path, so the memory plan
could count the batches and the no-data mask one at a time; that made every frame 4-25 % slower (review r6 of session
39), also where the budget had room for both. Now a frame waits only when its plan with the batches held beside the
loop's work (``overlap``, the plan before h12) does not fit but the plan with them one at a time does; the in-flight
deadline projection adds the loop's work to the scoring when the frame waits."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import pytest
from _helpers_firmware import DeferredEngine, stand_in_work

MIB = 2**20


def _mission(name: str, *sets: str) -> Any:
    from edgeae.firmware_sim.cli_overrides import _mission_with_overrides

    ns = argparse.Namespace(mission=name, set=list(sets), anomaly_model=None, recon_model=None, threads=None,
                            frame_ms=None)  # fmt: skip
    return _mission_with_overrides(ns)


def test_the_overlap_plan_holds_the_batches_beside_every_step_as_before_h12() -> None:
    from edgeae.firmware_sim.memory_plan import WholeDecode, plan_memory

    m = _mission("orbital_nac", "camera.width=2048", "camera.height=3190")
    whole = WholeDecode(2048 * 3190, 0, 1)
    wait = plan_memory(m, 2048, 3190, 0, 1, whole=whole)
    lap = plan_memory(m, 2048, 3190, 0, 1, whole=whole, overlap=True)
    items = dict(lap.items)
    assert "patch_batch_f32" not in lap.steps and "patch_batch_f32" in wait.steps
    held = sum(v for n, v in lap.items if n not in lap.steps)
    assert lap.total == held + lap.step_peak and items["patch_batch_f32"] == dict(wait.items)["patch_batch_f32"]
    # 17.9 MiB before fixer h12 (the 3190-row strip's plan in the h12 commit), 15.5 since session 40's fixer h8 (the
    # no-data temporaries planned as measured); 14.2 with the wait
    assert 15.3 * MIB < lap.total < 15.8 * MIB and 14.0 * MIB < wait.total < 14.5 * MIB, (lap.total, wait.total)
    # the PatchScorer path (cae-masked, no engine) has one plan
    c = _mission("orbital_nac", "camera.width=2048", 'anomaly.method="cae-masked"', 'anomaly.score="a"')
    assert plan_memory(c, 2048, 3190, 0, 1, overlap=True) == plan_memory(c, 2048, 3190, 0, 1)


def _rt(m: Any, engine: Any, held: int) -> Any:  # held: what rss_bytes says (monkeypatched), over rss_boot 0
    return argparse.Namespace(m=m, engine=engine, rss_boot=0, _model_bytes=lambda: 0)


@pytest.mark.parametrize("engine", [True, False])
def test_a_frame_waits_only_when_the_overlap_plan_does_not_fit(monkeypatch: pytest.MonkeyPatch, engine: bool) -> None:
    from edgeae.firmware_sim import frame_work
    from edgeae.firmware_sim.budget import LADDER
    from edgeae.firmware_sim.frame_intake import level_plan, reader_plan
    from edgeae.firmware_sim.frames import ArrayFrame

    held = 40 * MIB
    monkeypatch.setattr(frame_work, "rss_bytes", lambda: held)
    reader = ArrayFrame(np.zeros((1024, 2048, 1), np.uint8))
    m0 = _mission("orbital_nac", "camera.width=2048", "camera.height=1024", 'budget.board_memory="budget-only"')
    lap = level_plan(reader_plan(m0, reader, 0, overlap=True), LADDER[0]).total
    assert lap > level_plan(reader_plan(m0, reader, 0), LADDER[0]).total  # the wait saves memory on this strip
    for budget, want in ((held + lap, False), (held + lap - 1, True), (256 * MIB, False)):
        m = _mission("orbital_nac", "camera.width=2048", "camera.height=1024", 'budget.board_memory="budget-only"',
                     f"budget.memory_bytes={budget}")  # fmt: skip
        rt = _rt(m, object() if engine else None, held)
        assert frame_work.needs_wait(rt, reader, LADDER[0]) is (want and engine), budget
    # lower on the ladder the frame scores nothing: no batches, no wait
    m = _mission("orbital_nac", "camera.width=2048", "camera.height=1024", 'budget.board_memory="budget-only"',
                 f"budget.memory_bytes={held + lap - 1}")  # fmt: skip
    sparse = level_plan(reader_plan(m, reader, 0, overlap=True), LADDER[-1]).total
    assert held + sparse <= m.budget.memory_bytes
    assert not frame_work.needs_wait(_rt(m, object(), held), reader, LADDER[-1])


_work = stand_in_work  # tests/_helpers_firmware.py


_SMALL = ("camera.width=64", "camera.height=256", "camera.strip_rows=64", "anomaly.patch=16", "anomaly.stride=16",
          "anomaly.batch=4")  # fmt: skip


@pytest.mark.parametrize("wait", [True, False])
def test_the_loop_overlaps_the_engine_unless_the_frame_waits(monkeypatch: pytest.MonkeyPatch, wait: bool) -> None:
    from edgeae.firmware_sim import frame_work, strip_scoring

    eng, seen = DeferredEngine(), []
    real_check = frame_work.check_pixels
    monkeypatch.setattr(frame_work, "check_pixels", lambda *a: (seen.append(eng.pending), real_check(*a))[1])
    fw = _work(wait, eng, _mission("orbital_nac", *_SMALL))
    rng = np.random.default_rng(0)
    for r0 in range(0, 256, 64):
        assert fw._strip(r0, rng.integers(40, 120, (64, 64, 1)).astype(np.uint8), None)
    strip_scoring.score_flush(fw, final=True)
    # waiting, nothing is in flight at a pixel check; else the strips before are still being scored (4 batches each)
    assert seen == ([0, 0, 0, 0] if wait else [0, 4, 8, 12]), seen
    assert fw.n["scored"] == 16 * 4 and fw.report()["score_wait"] is wait


@pytest.mark.parametrize("wait", [True, False])
def test_the_deadline_projection_adds_the_loops_work_when_the_frame_waits(
    monkeypatch: pytest.MonkeyPatch, wait: bool
) -> None:
    """Half the frame (256 of 512 rows) done in 400 ms of the loop's own work (none of it waiting), 128 patches left
    at 1 ms each: 400 ms of the loop's work and 128 ms of scoring left, one after the other when the frame waits
    (until fixer h13 projected as overlapped, the larger of the two), 928 ms over
    the 0.9 x 960 ms target where 800 overlapped is not: the waiting frame is sent down a rung in flight."""
    from edgeae.firmware_sim import frame_work

    monkeypatch.setattr(frame_work, "_ms", lambda t0: 400.0)
    m = _mission("orbital_nac", *_SMALL, "budget.safety=0.9")
    products = argparse.Namespace(predict=lambda mpix: 0.0)
    fw = _work(wait, DeferredEngine(), m, available=960.0, strips_done=11, pace0=(0.0, 0.0, 0), h=512, streamed=True,
               ys=list(range(0, 497, 16)), xs=list(range(0, 57, 8)))  # fmt: skip
    fw.rt.cost = argparse.Namespace(ms_per_patch=1.0, products=products)
    assert fw._scoring_left(256, 1.0) == 16 * 8  # 16 grid rows of 8 patches from row 256 on
    fw._replan(256)  # loop: 256 rows left x 400 / 256 ms = 400 ms; projected 400 + 400 + 128 (waiting) or 800
    assert [(d["projected_ms"], d["score_every"]) for d in fw.in_flight] == ([(928.0, 2)] if wait else [])

"""Session 37, fixer n1: review s37-r1 of the downlink plan's keep search and context floor.

3. a prioritised-j2k plan encoded its frame's smallest JPEG 2000 file at every budget: now once a frame."""

from __future__ import annotations

import numpy as np
import pytest


def test_a_plan_encodes_its_frames_jpeg2000_floor_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Three budgets of prioritised-j2k encoded the frame three times for its context floor (plus once more in
    ``downlink plan``'s budget check); now once, shared by the check and every budget."""
    from edgeae.cli.downlink_plan import _check_budgets
    from edgeae.ground import budget_downlink, science
    from edgeae.ground.feature_sets import LabelledFrame
    from edgeae.ground.link import LinkConfig

    calls: list[str] = []
    real = budget_downlink.context_floor

    def counting(frame, method, cfg):
        calls.append(method)
        return real(frame, method, cfg)

    monkeypatch.setattr(budget_downlink, "context_floor", counting)
    s = np.random.default_rng(0).normal(128, 20, (192, 192, 1)).clip(0, 255).astype(np.uint8)
    frame = LabelledFrame("g", "image", s, 64, np.array([[0, 0], [64, 64]]), "-")
    cfg = budget_downlink.PlanConfig(budgets=(0.3, 0.5, 0.8))
    args = dict(cfg=cfg, links={"perfect": LinkConfig()}, methods=("prioritised-j2k",), oracle=True)
    rows = science.evaluate([frame], None, None, **args)
    assert calls == ["jpeg2000"] and all(r["patches_sent"] for r in rows)
    calls.clear()
    floors = _check_budgets([frame], cfg, ("prioritised-j2k",))
    science.evaluate([frame], None, None, floors=floors, **args)
    assert calls == ["jpeg2000"]

"""``downlink plan`` at a deeper frame's own depth (session 34): the budget plan, its sparse samples, patches and
JPEG 2000 file carry the frame's 12 bits, and the ground's rebuild is scored on the 12-bit scale."""

from __future__ import annotations

import numpy as np
import pytest

from edgeae.ground.budget_downlink import PlanConfig, plan, receive
from edgeae.ground.feature_sets import LabelledFrame
from edgeae.ground.link import LinkConfig
from edgeae.ground.science import metrics


def _frame12() -> LabelledFrame:
    """Low-contrast 12-bit terrain (a smooth swell of ~160 levels, a little noise): an 8-bit copy keeps ~10 levels."""
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:128, 0:128]
    swell = 80 * np.sin(x / 9.0) * np.cos(y / 13.0)
    s = np.round(1080 + swell + rng.integers(0, 4, (128, 128)))[..., None].astype(np.uint16)
    return LabelledFrame("f12", "image", s, 64, np.array([[64, 0]]), "-", bits=12)


def test_a_labelled_frame_checks_its_samples_against_its_depth() -> None:
    with pytest.raises(ValueError, match="uint16 for 12-bit"):
        LabelledFrame("f", "s", np.zeros((8, 8, 1), np.uint8), 4, np.zeros((0, 2), int), "-", bits=12)
    with pytest.raises(ValueError, match=r"\(H, W, C\) uint8"):
        LabelledFrame("f", "s", np.zeros((8, 8), np.uint8), 4, np.zeros((0, 2), int), "-")
    f = _frame12()
    assert f.raw_bytes == 128 * 128 * 12 // 8 and f.top == 4095.0


def test_sparse_plan_of_a_12_bit_frame_arrives_exact_on_its_scale() -> None:
    f = _frame12()
    sent = plan(f, None, int(0.25 * f.raw_bytes), "sparse", PlanConfig())
    assert 0.0 < sent.keep < 1.0
    got = receive(f, sent, LinkConfig(), None)  # no filler: the known samples as they arrived
    known = got.image[..., 0] > 0
    assert known.mean() == pytest.approx(sent.keep, abs=0.02)
    ref = f.samples[..., 0].astype(np.float32) / np.float32(4095)
    np.testing.assert_array_equal(got.image[..., 0][known], ref[known])  # 12-bit exact, not 8-bit rounded


def test_prioritised_patches_and_jpeg2000_context_keep_12_bits() -> None:
    f = _frame12()
    scores = np.array([1.0 if (x, y) == (64, 0) else -np.inf for x, y in f.grid()])
    budget = int(0.5 * f.raw_bytes)
    sent = plan(f, scores, budget, "prioritised-j2k", PlanConfig())
    assert sent.patches == ((64, 0),) and sent.wire_bytes <= budget
    got = receive(f, sent, LinkConfig(), None)
    m = metrics(f, got)
    assert m["feature_recall"] == 1.0 and m["feature_psnr"] == 100.0  # the patch is lossless at 12 bits
    # the JPEG 2000 context coded at 12 bits: planned on an 8-bit copy, no rebuild passes its rounding (58.9 dB)
    eight = np.round(f.samples / 4095 * 255) / 255
    ref = f.samples.astype(np.float64) / 4095
    rounding = 10 * np.log10(1 / np.mean((eight - ref) ** 2))
    assert m["frame_psnr"] > rounding + 3

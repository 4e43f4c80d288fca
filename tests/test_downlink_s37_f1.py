"""Session 37, fixer f1: ``downlink plan`` and the ground's downlink helpers (left items of session 36).

1. a ``--model`` of another channel count than a labelled set is refused before any set is built;
2. ``keep_for_bytes`` finds the most samples that fit every budget (it gave up just over one packet);
3. the prioritised split leaves the context at least its smallest send, whatever ``--patch-share``;
5. ``as_float`` holds one float array at its peak, bit for bit the same values."""

from __future__ import annotations

import numpy as np
import pytest

from edgeae.ground.pipeline import _kept_hashes, keep_for_bytes
from edgeae.ground.sources import sparse_from_samples
from edgeae.masks import hash_counter, make_mask, stream_key, unit_float
from edgeae.wire.codec import DEFAULT_SAMPLE_CODEC
from edgeae.wire.packets import WireConfig, packetise

WIRE = WireConfig(1024, DEFAULT_SAMPLE_CODEC)


def _bytes(samples: np.ndarray, bits: int, keep: float, seed: int) -> int:
    return sum(map(len, packetise(sparse_from_samples(samples, bits, keep, seed), config=WIRE)))


def _next_keep(shape: tuple[int, int], seed: int, keep: float) -> float:
    """The least keep whose uniform mask keeps one pixel more than ``keep``'s (from the mask's definition:
    a pixel is kept when the uniform of its hash is under the keep)."""
    u = unit_float(hash_counter(stream_key(seed, "uniform"), np.arange(shape[0] * shape[1], dtype=np.uint64)))
    return float(np.nextafter(u[u >= keep].min(), 2.0))


@pytest.mark.parametrize(("shape", "bits"), [((48, 64, 1), 8), ((24, 40, 3), 8), ((32, 32, 1), 12)])
def test_keep_for_bytes_sends_the_most_samples_that_fit(shape: tuple[int, int, int], bits: int) -> None:
    """Budgets of 71-92 B sent one grey sample where up to ~20 fit, and larger ones stopped within 1.5 %: now the
    frame fits and the frame with the mask's next pixel does not, for every budget from one packet up."""
    rng = np.random.default_rng(1)
    samples = rng.integers(0, 2**bits, shape, dtype=np.uint8 if bits <= 8 else np.uint16)
    seed = 7
    empty = _bytes(samples, bits, 1e-300, seed)  # a frame of no sample: one packet of headers
    budgets = [*range(empty, empty + 120), *range(empty + 120, samples.nbytes + 400, 97)]
    for budget in budgets:
        keep = keep_for_bytes(samples, bits, budget, WIRE, seed)
        sent = _bytes(samples, bits, keep, seed)
        assert sent <= budget, (budget, keep, sent)
        if keep < 1.0:
            more = _next_keep(shape[:2], seed, keep)
            n = int(make_mask(seed, shape[:2], keep).sum())
            assert int(make_mask(seed, shape[:2], more).sum()) == n + 1
            assert _bytes(samples, bits, more, seed) > budget, (budget, n)
        else:
            assert budget >= _bytes(samples, bits, 1.0, seed)
    # just over one packet: dozens of samples, not one (the session-36 search sent one up to ~92 B)
    k = keep_for_bytes(samples, bits, empty + 20, WIRE, seed)
    assert sparse_from_samples(samples, bits, k, seed).values.shape[0] > 5


def test_keep_for_bytes_refuses_a_budget_under_a_frame_of_no_sample() -> None:
    samples = np.zeros((16, 16, 1), np.uint8)
    empty = _bytes(samples, 8, 1e-300, 0)
    with pytest.raises(ValueError, match=f"under the smallest sparse frame \\(0 sample\\(s\\), {empty} bytes"):
        keep_for_bytes(samples, 8, empty - 1, WIRE, 0)


def test_keep_for_bytes_other_patterns_fit_the_budget() -> None:
    samples = np.random.default_rng(2).integers(0, 256, (40, 48, 1), dtype=np.uint8)
    for budget in (200, 700, 1500):
        keep = keep_for_bytes(samples, 8, budget, WIRE, 3, pattern="jittered")
        fr = sparse_from_samples(samples, 8, keep, 3, "jittered")
        assert sum(map(len, packetise(fr, config=WIRE))) <= budget


def test_kept_hashes_are_the_uniform_mask() -> None:
    """The pixels and hashes the exact search packs from are those of ``make_mask`` (blocks that do not divide
    the frame)."""
    for seed, keep in ((0, 0.01), (7, 0.3), (99, 0.9)):
        t = int(np.ceil(keep * 2.0**53))
        idx, top = _kept_hashes(seed, 40 * 50, t, block=333)
        mask = make_mask(seed, (40, 50), keep)
        np.testing.assert_array_equal(idx, np.flatnonzero(mask))
        assert (top < t).all()
        for cut in np.sort(top)[[0, len(top) // 2, -1]]:
            assert int((top < int(cut) + 1).sum()) == int(make_mask(seed, (40, 50), (int(cut) + 1) / 2.0**53).sum())

"""Golden values, determinism, row-range equality and keep fractions of the sampling masks."""

from __future__ import annotations

import numpy as np
import pytest

from edgeae.masks import (
    PATTERNS,
    PRNG_VERSION,
    MaskError,
    MaskSpec,
    apply_mask,
    hash_counter,
    iter_mask_strips,
    jitter_grid,
    make_mask,
    make_mask_rows,
    mask_indices,
    mix64,
    stream_key,
)

M64 = (1 << 64) - 1


def _ref_mix64(z: int) -> int:
    """Pure-Python SplitMix64 finaliser, independent of numpy (the C reference in docs/masks.md)."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def _ref_uniform(seed: int, shape: tuple[int, int], keep: float, pid: int = 1) -> np.ndarray:
    key = _ref_mix64(seed ^ ((pid * 0x9E3779B97F4A7C15) & M64))
    h, w = shape
    out = np.zeros(shape, bool)
    for i in range(h * w):
        hv = _ref_mix64((key + (i + 1) * 0x9E3779B97F4A7C15) & M64)
        out.flat[i] = (hv >> 11) * 2.0**-53 < keep
    return out


def test_prng_version_and_patterns() -> None:
    assert PRNG_VERSION == 1
    assert PATTERNS == ("uniform", "jittered")


def test_mix64_is_splitmix64() -> None:
    # SplitMix64 seeded with 0 produces these first outputs (Vigna's reference splitmix64.c)
    first = hash_counter(0, np.arange(3))
    assert [int(v) for v in first] == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]
    assert int(mix64(np.array([0], np.uint64))[0]) == 0


@pytest.mark.parametrize(
    ("seed", "pattern", "key", "outputs"),
    [
        (0, "uniform", 0xE220A8397B1DCDAF, [0xA706DD2F4D197E6F, 0xB382A305F4414F5E, 0x631A9154FBABF717]),
        (0, "jittered", 0x6E789E6AA1B965F4, [0x46B73E79F0C37C00, 0x374327C63D0CC8A6, 0xE10CF86AE3079278]),
        (42, "uniform", 0xBDD732262FEB6E95, [0x57E1FABA65107204, 0xF4ABD143FEB24055, 0x7C816738C12903B2]),
        (42, "jittered", 0xD9639A006C85ADB0, [0x304EB8FF7A2F5DDB, 0x3BC97287FAA94F3F, 0x7F6F801C87E8DDD3]),
        (
            2**64 - 1,
            "uniform",
            0xDE0A564CBCD060C4,
            [0xA636EEB448342D16, 0x509353471568FCC9, 0x98167F8F16F38BBF],
        ),
    ],
)
def test_golden_hash_outputs(seed: int, pattern: str, key: int, outputs: list[int]) -> None:
    assert stream_key(seed, pattern) == key
    assert [int(v) for v in hash_counter(key, np.arange(3))] == outputs


def test_golden_packed_masks() -> None:
    assert np.packbits(make_mask(42, (8, 8), 0.1)).tolist() == [20, 0, 1, 0, 0, 0, 0, 0]
    assert np.packbits(make_mask(42, (8, 8), 0.5)).tolist() == [182, 156, 81, 0, 80, 134, 108, 50]
    assert np.packbits(make_mask(42, (8, 8), 0.25, "jittered")).tolist() == [149, 0, 1, 88, 85, 0, 165, 0]
    assert mask_indices(make_mask(7, (5, 13), 0.2)).tolist() == [4, 7, 19, 32, 34, 37, 39, 45, 46, 57, 59, 63]
    assert mask_indices(make_mask(7, (5, 13), 0.2, "jittered")).tolist() == [
        0, 2, 5, 6, 21, 25, 42, 52, 57, 59, 61, 64,
    ]  # fmt: skip


@pytest.mark.parametrize("seed", [0, 3, 2**63 + 11])
def test_uniform_matches_pure_python_reference(seed: int) -> None:
    assert np.array_equal(make_mask(seed, (9, 11), 0.3), _ref_uniform(seed, (9, 11), 0.3))


@pytest.mark.parametrize("pattern", PATTERNS)
def test_deterministic_and_seed_dependent(pattern: str) -> None:
    a = make_mask(123, (64, 80), 0.2, pattern)
    assert a.dtype == bool and a.shape == (64, 80)
    assert np.array_equal(a, make_mask(123, (64, 80), 0.2, pattern))
    assert not np.array_equal(a, make_mask(124, (64, 80), 0.2, pattern))


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("keep", [0.01, 0.1, 0.5, 0.9])
def test_keep_fraction(pattern: str, keep: float) -> None:
    m = make_mask(5, (400, 500), keep, pattern)
    # uniform: binomial, 200k pixels -> sd <= 0.0012; jittered: exact cell count, rounding of the grid
    assert abs(m.mean() - keep) < max(0.005, 0.03 * keep)


def test_keep_one_keeps_everything() -> None:
    for pattern in PATTERNS:
        assert make_mask(9, (17, 5), 1.0, pattern).all()


def test_jittered_one_sample_per_cell() -> None:
    h, w = 50, 70
    m = make_mask(1, (h, w), 0.1, "jittered")
    ny, nx = jitter_grid((h, w), 0.1)
    assert m.sum() == ny * nx
    for cy in range(ny):
        for cx in range(nx):
            cell = m[cy * h // ny : (cy + 1) * h // ny, cx * w // nx : (cx + 1) * w // nx]
            assert cell.sum() == 1


@pytest.mark.parametrize("pattern", PATTERNS)
def test_row_slices_equal_full_mask(pattern: str) -> None:
    for shape, keep in [((13, 17), 0.37), ((31, 8), 0.05), ((7, 5), 1.0), ((1, 1), 0.5)]:
        full = make_mask(77, shape, keep, pattern)
        for r0 in range(shape[0] + 1):
            for r1 in range(r0, shape[0] + 1):
                assert np.array_equal(make_mask_rows(77, shape, keep, pattern, r0, r1), full[r0:r1])
    big = make_mask(2, (1000, 300), 0.1, pattern)
    strips = [s for _, s in iter_mask_strips(2, (1000, 300), 0.1, pattern, strip_rows=96)]
    assert np.array_equal(np.concatenate(strips), big)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((0, (8, 8), 0.0), "keep fraction"),
        ((0, (8, 8), 1.5), "keep fraction"),
        ((0, (8, 8), float("nan")), "keep fraction"),
        ((-1, (8, 8), 0.5), "seed"),
        ((2**64, (8, 8), 0.5), "seed"),
        ((1.5, (8, 8), 0.5), "seed"),
        ((0, (0, 8), 0.5), "shape"),
        ((0, (8,), 0.5), "shape"),
        ((0, (8, 8, 3), 0.5), "shape"),
    ],
)
def test_invalid_arguments(args: tuple, match: str) -> None:
    with pytest.raises(MaskError, match=match):
        make_mask(*args)


def test_invalid_pattern_and_rows() -> None:
    with pytest.raises(MaskError, match="pattern"):
        make_mask(0, (8, 8), 0.5, "bluenoise")
    with pytest.raises(MaskError, match="row range"):
        make_mask_rows(0, (8, 8), 0.5, "uniform", 3, 9)
    with pytest.raises(MaskError, match="PRNG version"):
        MaskSpec(seed=1, keep=0.1, prng_version=2)


def test_mask_spec_matches_function() -> None:
    spec = MaskSpec(seed=5, keep=0.25, pattern="jittered")
    assert np.array_equal(spec.make((20, 30)), make_mask(5, (20, 30), 0.25, "jittered"))


def test_indices_and_apply_mask() -> None:
    m = np.array([[True, False, True], [False, False, True]])
    assert mask_indices(m).tolist() == [0, 2, 5]
    img = np.arange(18, dtype=np.float32).reshape(2, 3, 3) + 1
    out = apply_mask(img, m)
    assert np.array_equal(out[m], img[m]) and (out[~m] == 0).all()
    assert apply_mask(img[..., 0], m)[1, 0] == 0
    with pytest.raises(MaskError, match="does not match"):
        apply_mask(img, m.T)


def _float_uniform_rows(seed: int, w: int, keep: float, r0: int, r1: int) -> np.ndarray:
    """The spec's formula in plain numpy (float comparison, one hash per pixel index): the vectorised
    block generator must equal it bit for bit."""
    from edgeae.masks import unit_float

    key = stream_key(seed, "uniform")
    idx = np.arange(r0 * w, r1 * w, dtype=np.uint64)
    return (unit_float(hash_counter(key, idx)) < keep).reshape(r1 - r0, w)


@pytest.mark.parametrize("keep", [0.02, 0.1, 0.5, 1 - 2**-53, 2**-40, 0.3333333333333333])
def test_vectorised_uniform_equals_spec_formula(keep: float) -> None:
    # a NAC-wide frame (5,064 px) far down the strip, spanning several internal hash blocks
    shape = (52_224, 5_064)
    for r0, r1 in [(0, 7), (40_000, 40_009), (52_220, 52_224)]:
        got = make_mask_rows(1009, shape, keep, "uniform", r0, r1)
        assert np.array_equal(got, _float_uniform_rows(1009, shape[1], keep, r0, r1))


@pytest.mark.parametrize("pattern", PATTERNS)
def test_out_buffer_is_filled_and_reused(pattern: str) -> None:
    shape = (300, 211)
    buf = np.ones((40, 211), bool)
    got = make_mask_rows(5, shape, 0.1, pattern, 100, 140, out=buf)
    assert got.base is buf or got is buf
    assert np.array_equal(buf, make_mask(5, shape, 0.1, pattern)[100:140])
    with pytest.raises(MaskError, match="out must be"):
        make_mask_rows(5, shape, 0.1, pattern, 100, 141, out=buf)


ROW_CASES = [
    ((97, 131), 0.02, (0, 97)),
    ((300, 77), 0.1, (41, 203)),
    ((64, 64), 0.5, (63, 64)),
    ((50, 40), 0.3, (10, 10)),
]


@pytest.mark.parametrize("pattern", ["uniform", "jittered"])
@pytest.mark.parametrize(("shape", "keep", "rows"), ROW_CASES)
def test_kept_indices_rows_equal_the_mask(
    pattern: str, shape: tuple[int, int], keep: float, rows: tuple[int, int]
) -> None:
    from edgeae.masks import kept_indices_rows, mask_rows_and_indices

    r0, r1 = rows
    mask = make_mask_rows(5, shape, keep, pattern, r0, r1)
    idx = kept_indices_rows(5, shape, keep, pattern, r0, r1)
    np.testing.assert_array_equal(idx, np.flatnonzero(mask))
    out = np.ones((r1 - r0, shape[1]), bool)  # stale contents must not leak into the result
    m2, idx2 = mask_rows_and_indices(5, shape, keep, pattern, r0, r1, out=out)
    assert m2.size == 0 or np.shares_memory(m2, out)  # filled in place
    np.testing.assert_array_equal(m2, mask)
    np.testing.assert_array_equal(idx2, idx)


def test_kept_indices_rows_checks_its_arguments() -> None:
    from edgeae.masks import kept_indices_rows

    with pytest.raises(MaskError, match="row range"):
        kept_indices_rows(1, (10, 10), 0.1, "jittered", 5, 11)
    with pytest.raises(MaskError):
        kept_indices_rows(1, (10, 10), 1.5, "jittered")

"""Planted anomalies in real test frames (issue 12): where the shipped VAE score ranks a bright block and a
textured block (4-px checkerboard 40/220, uniform noise), in fp32 (PyTorch) and in the shipped int8 ONNX.

The int8 artifact must rank every planted block as fp32 does: within one place in the top 5 % of the frame, within
5 % of the frame below that (a score computed in float from dequantised outputs: no ceiling, no ties). Whether the
textured blocks reach the top 2 % depends on the score definition: with the zoo λ the λ·||μ||² term dominates a(x)
and sees brightness, not texture (no single λ of a(x) = rec + λ·mu2 puts both kinds in the top 2 % of the Tycho and
M1229577647 frames), so a(x) keeps a strict expected failure. The ``terms-max`` score (:mod:`edgeae.anomaly.terms`:
each term over its frame median, the larger; the orbital mission's flight score) puts the bright block and the
checkerboard in the top 2 % of every test frame, in fp32 and int8; uniform noise too, except on M1229577647 (7 of
144 patches above it: top 5 %).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from edgeae.anomaly.planted import TOP_FRACTION, planted_ranks

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

INT8 = Path(__file__).resolve().parents[1] / "edgeae/zoo/artifacts/orbital-gray-vae/orbital-gray-vae.int8.onnx"


@pytest.fixture(scope="module")
def scorers() -> dict:
    from edgeae.firmware_sim.runtime import load_artifact

    from edgeae.predictor import load_predictor

    fp32 = load_predictor("orbital-gray-vae", threads=2)
    int8 = load_artifact(INT8, threads=2)

    def run(p):
        return lambda b: np.concatenate([p(b[i : i + 256])["score"] for i in range(0, len(b), 256)])

    return {"fp32": run(fp32), "int8": run(int8)}


@pytest.fixture(scope="module")
def terms_ranks(data_root: Path) -> dict:
    from edgeae.firmware_sim.runtime import load_artifact

    from edgeae.anomaly.terms import frame_terms_max, terms_from_outputs
    from edgeae.datasets import split_files
    from edgeae.imageio import read_image
    from edgeae.predictor import load_predictor

    fp32 = load_predictor("orbital-gray-vae", threads=2)
    lam = float(fp32.metadata.score["lambda"])

    def run(p):
        def terms(b):
            outs = [p(b[i : i + 256]) for i in range(0, len(b), 256)]
            return np.concatenate([np.stack(terms_from_outputs(o["score"], o["mu"], lam), 1) for o in outs])

        return terms

    runs = {"fp32": run(fp32), "int8": run(load_artifact(INT8, threads=2))}
    out: dict = {}
    for f in split_files("orbital_gray", "test", data_root):
        img = read_image(f, channels=1)
        for name, terms in runs.items():
            rs = planted_ranks(terms, img.pixels, img.valid, frame_score=lambda t: frame_terms_max(t[:, 0], t[:, 1]))
            out[(f.name, name)] = {r.kind: r for r in rs}
    return out


@pytest.fixture(scope="module")
def ranks(scorers: dict, data_root: Path) -> dict:
    from edgeae.datasets import split_files
    from edgeae.imageio import read_image

    out: dict = {}
    for f in split_files("orbital_gray", "test", data_root):
        img = read_image(f, channels=1)
        for name, score in scorers.items():
            out[(f.name, name)] = {r.kind: r for r in planted_ranks(score, img.pixels, img.valid)}
    return out


def _rank_tolerance(ref_fraction: float, n: int) -> int:
    """How many frame patches an int8 rank may differ from fp32's: one in the tail (top 5 %), where flagging
    happens; 5 % of the frame in the dense middle of the score distribution, where 7-bit weights move a block
    by a few places (measured, session 19: the noise block at the 53rd percentile of M1183658592, 76 patches
    above it in int8 vs 81 in fp32; the full-range file on a VNNI host moved it by at most 3 %)."""
    return 1 if ref_fraction < 0.05 else max(1, round(0.05 * n))


def test_int8_ranks_planted_blocks_like_fp32(ranks: dict) -> None:
    for (frame, precision), rs in ranks.items():
        if precision != "int8":
            continue
        ref = ranks[(frame, "fp32")]
        for kind, r in rs.items():
            tol = _rank_tolerance(ref[kind].fraction, r.n)
            assert abs(r.above - ref[kind].above) <= tol, (frame, kind, r.above, ref[kind].above)
            assert r.score == pytest.approx(ref[kind].score, rel=0.05), (frame, kind)


def test_bright_block_ranks_in_the_top_2_percent(ranks: dict) -> None:
    for key, rs in ranks.items():
        assert rs["bright"].fraction < TOP_FRACTION, (key, rs["bright"])


@pytest.mark.xfail(strict=True, reason="the zoo VAE's a(x) sees brightness, not texture (issue 12)")
def test_textured_blocks_rank_in_the_top_2_percent_by_a(ranks: dict) -> None:
    for key, rs in ranks.items():
        for kind in ("checker", "noise"):
            assert rs[kind].fraction < TOP_FRACTION, (key, rs[kind])


def test_terms_max_ranks_bright_and_checkerboard_in_the_top_2_percent(terms_ranks: dict) -> None:
    for key, rs in terms_ranks.items():
        for kind in ("bright", "checker"):
            assert rs[kind].fraction < TOP_FRACTION, (key, rs[kind])
        assert rs["noise"].fraction < 0.05, (key, rs["noise"])  # top 2 % on 4 of the 5 frames, see above
    frames = {f for f, _ in terms_ranks}
    noise_found = {f for f in frames if terms_ranks[(f, "fp32")]["noise"].in_top}
    assert len(noise_found) >= len(frames) - 1, sorted(frames - noise_found)


def test_terms_max_int8_ranks_planted_blocks_like_fp32(terms_ranks: dict) -> None:
    for (frame, precision), rs in terms_ranks.items():
        if precision == "int8":
            ref = terms_ranks[(frame, "fp32")]
            for kind, r in rs.items():
                assert abs(r.above - ref[kind].above) <= _rank_tolerance(ref[kind].fraction, r.n), (frame, kind)
                assert r.in_top == ref[kind].in_top, (frame, kind, r, ref[kind])


@pytest.mark.xfail(strict=True, reason="noise ranks 8th of 144 patches on M1229577647 (issue 12)")
def test_terms_max_ranks_noise_in_the_top_2_percent_everywhere(terms_ranks: dict) -> None:
    for key, rs in terms_ranks.items():
        assert rs["noise"].fraction < TOP_FRACTION, (key, rs["noise"])


def test_local_novelty_ranks_planted_texture_and_brightness_on_most_test_frames(data_root: Path) -> None:
    """The ground candidate ``local z (mu, rec)`` (:func:`edgeae.anomaly.context.local_novelty`), each block in
    the frame in place of the grid patch nearest its centre: all three blocks in the top 2 % on 3 of the 5 grey
    test frames (python -m benchmarks --only planted_blocks: Tycho and M1155395732 miss), M1229577647 among them,
    where the flight score misses the noise block; μ alone finds the textured blocks on none."""
    from edgeae.anomaly.context import local_novelty
    from edgeae.anomaly.planted import grid
    from edgeae.datasets import split_files
    from edgeae.imageio import read_image
    from edgeae.predictor import load_predictor

    fp32 = load_predictor("orbital-gray-vae", threads=2)

    def features(b: np.ndarray) -> np.ndarray:  # per patch: μ, then the reconstruction error
        rows = []
        for i in range(0, len(b), 256):
            x = b[i : i + 256]
            o = fp32(x)
            rec = ((x - o["x_hat"]) ** 2).reshape(len(x), -1).sum(axis=1)
            rows.append(np.concatenate([o["mu"], rec[:, None]], axis=1))
        return np.concatenate(rows)

    def ranking(xy: np.ndarray, rec_weight: float) -> Callable[[np.ndarray], np.ndarray]:
        return lambda t: local_novelty(t[:, :-1], t[:, -1], xy, rec_weight=rec_weight)

    found, mu_only_texture = set(), 0
    for f in split_files("orbital_gray", "test", data_root):
        img = read_image(f, channels=1)
        h, w = img.pixels.shape[:2]
        xy = np.array([(x, y) for y, x in grid(h, w, 64) if img.valid[y : y + 64, x : x + 64].mean() >= 0.9], float)
        if all(r.in_top for r in planted_ranks(features, img.pixels, img.valid, frame_score=ranking(xy, 0.5))):
            found.add(f.name)
        mu_alone = planted_ranks(features, img.pixels, img.valid, frame_score=ranking(xy, 0.0))
        mu_only_texture += sum(r.in_top for r in mu_alone if r.kind != "bright")
    assert len(found) >= 3 and any(n.startswith("M1229577647") for n in found), sorted(found)
    assert mu_only_texture == 0

"""The Python API as a notebook uses it (session 32 audit a7): metrics with no-data and inf samples, one LiteRT
runner called from several threads."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

import edgeae


def test_masked_ssim_is_not_nan_beside_nan_no_data() -> None:
    """Every 7x7 window touching a NaN outside ``valid`` made the valid pixels beside it NaN: SSIM of identical
    images was NaN."""
    a = np.random.default_rng(0).random((20, 20)).astype(np.float32)
    a[:, :3] = np.nan
    m = edgeae.image_metrics(a, a.copy(), valid=np.isfinite(a))
    assert m["ssim"] == 1.0 and m["psnr"] == math.inf


def test_an_inf_sample_gives_nan_psnr_not_a_math_domain_error() -> None:
    a = np.full((20, 20), 0.5, np.float32)
    b = a.copy()
    b[0, 0] = np.inf
    assert math.isnan(edgeae.image_metrics(a, b)["psnr"])
    assert math.isnan(edgeae.metrics.psnr(a, b))


def test_a_litert_runner_can_be_called_from_several_threads() -> None:
    """LiteRT raised "at least 1 reference to internal data" in 52 of 60 calls from 4 threads."""
    pytest.importorskip("ai_edge_litert")
    from edgeae.firmware_sim.runtime import load_artifact

    from edgeae.resolve import model_path

    pr = load_artifact(model_path("zoo:orbital-gray-vae/orbital-gray-vae.int8.tflite"))
    batch = np.random.default_rng(1).random((16, 1, 64, 64)).astype(np.float32)
    want = pr(batch)
    errors: list[BaseException] = []
    same: list[bool] = []

    def equal(x: object, y: object) -> bool:
        if isinstance(x, dict) and isinstance(y, dict):
            return x.keys() == y.keys() and all(equal(x[k], y[k]) for k in x)
        if isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)):
            return len(x) == len(y) and all(equal(u, v) for u, v in zip(x, y, strict=True))
        return bool(np.array_equal(np.asarray(x), np.asarray(y)))

    def work() -> None:
        try:
            for _ in range(6):
                same.append(equal(pr(batch), want))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(same) == 24 and all(same)


def _scorer(x: np.ndarray) -> dict[str, np.ndarray]:
    return {"score": x.reshape(len(x), -1).mean(axis=1)}


@pytest.mark.parametrize("batch", [0, -1, 1.5, True])
def test_a_batch_below_1_is_refused_by_both_scoring_calls(batch: object, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``score_file(batch=0)`` failed inside numpy; ``score_array`` ran 0 and -1 one patch at a time."""
    from edgeae.anomaly.score import score_array, score_file

    img = np.random.default_rng(2).random((64, 64)).astype(np.float32)
    p = edgeae.write_image(tmp_path / "a.png", (img * 255).astype(np.uint8))
    with pytest.raises(ValueError, match="batch must be an int >= 1"):
        score_array(img, _scorer, 32, 32, batch=batch)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch must be an int >= 1"):
        score_file(p, _scorer, 32, 32, batch=batch)  # type: ignore[arg-type]


def test_a_margin_may_be_given_as_text_or_numbers(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``margin="3"`` or ``(3, 3, 3, 3)`` was an AttributeError from deep inside; a bad one is a ValueError."""
    from edgeae.nodata import Margin

    img = np.full((32, 40), 120, np.uint8)
    p = edgeae.write_image(tmp_path / "a.png", img)
    want = edgeae.read_image(p, margin=Margin.parse("3")).valid
    for m in ("3", 3, (3, 3, 3, 3)):
        np.testing.assert_array_equal(edgeae.read_image(p, margin=m).valid, want)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        edgeae.read_image(p, margin="a,b")  # type: ignore[arg-type]


def test_a_nan_inside_valid_still_makes_masked_ssim_nan() -> None:
    """Zeroing every non-finite sample hid a NaN inside ``valid`` (SSIM 0.9995 while PSNR was NaN; review s32)."""
    a = np.random.default_rng(0).random((20, 20)).astype(np.float32)
    a[:, :3] = np.nan
    b = a.copy()
    b[10, 10] = np.nan
    m = edgeae.image_metrics(a, b, valid=np.isfinite(a))
    assert math.isnan(m["ssim"]) and math.isnan(m["psnr"])


def test_margins_of_numpy_integers_and_a_bad_type() -> None:
    from edgeae.nodata import Margin

    assert Margin.parse(np.int64(3)) == Margin(3, 3, 3, 3) == Margin.parse((np.int32(3),) * 4)
    assert Margin.parse(np.array([1, 1, 2, 2])) == Margin(1, 1, 2, 2)  # an array of them too
    for bad in (3.0, True, "x"):
        with pytest.raises(ValueError, match="margin"):
            Margin.parse(bad)  # type: ignore[arg-type]


def test_a_grey_alpha_png_flies_as_grey(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """probe says 1 channel, the decoder gives 2 (grey + alpha): refused with 'the header promised 1' (review s32)."""
    image = pytest.importorskip("PIL.Image")
    from edgeae.firmware_sim.frames import ImageFileFrame

    la = np.zeros((8, 10, 2), np.uint8)
    la[..., 0], la[..., 1] = 90, 255
    image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    f = ImageFileFrame(tmp_path / "la.png")
    assert f.header.channels == 1 and next(iter(f.strips(8)))[1].shape == (8, 10, 1)


def test_image_metrics_refuses_a_mask_that_is_not_bool() -> None:
    """``known=np.full(shape, 0.1)`` was coerced to all True (keep_actual 1.0) while fill refuses it (audit
    s32-a7)."""
    a = np.random.default_rng(3).random((16, 16)).astype(np.float32)
    for name in ("known", "valid"):
        with pytest.raises(ValueError, match=f"{name} must be a bool array"):
            edgeae.image_metrics(a, a, **{name: np.full((16, 16), 0.1)})
    assert edgeae.image_metrics(a, a, known=np.ones((16, 16), bool))["psnr"] == math.inf

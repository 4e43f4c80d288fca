"""Audit s36-a4 (downlink plan / simulate --compare, the Python API): one PSNR rule (reconstruct's pixels with
data) for the ground, --compare and plan, plan's up-front refusals (models of another channel count, budgets under
one send), its reports written both or neither, and torch's process-wide thread count."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from edgeae.cli import main
from edgeae.ground.link import LinkConfig, simulate
from edgeae.ground.outputs import psnr_fields
from edgeae.ground.validity import coverage, mark_no_data, samples_valid

cv2 = pytest.importorskip("cv2")


def _margin_frame(h: int = 64, w: int = 64, margin: int = 6) -> np.ndarray:
    """Grey uint8 (H, W, 1) texture with a black no-data margin on the left."""
    rng = np.random.default_rng(3)
    img = rng.integers(60, 200, (h, w, 1), dtype=np.uint8)
    img[:, :margin] = 0
    return img


def test_psnr_fields_leave_out_no_data_and_say_so() -> None:
    rng = np.random.default_rng(0)
    orig = rng.random((16, 16, 1), dtype=np.float32)
    recon = np.clip(orig + rng.normal(0, 0.05, orig.shape).astype(np.float32), 0, 1)
    whole = psnr_fields(orig.copy(), recon, None)
    # a frame with every pixel valid: the figure as before (edgeae.metrics.psnr over the whole frame)
    from edgeae.metrics import psnr

    assert whole["psnr"] == pytest.approx(float(psnr(orig, recon)), rel=1e-12)  # unrounded (review s36 r15 #6)
    assert whole["psnr_over"] == "all 256 pixels"
    valid = np.ones((16, 16), bool)
    valid[:, :4] = False
    recon2 = recon.copy()
    recon2[:, :4] = 1 - orig[:, :4]  # far off where there is no data: must not count
    part = psnr_fields(mark_no_data(orig.copy(), valid), recon2, np.zeros((16, 16), bool))
    expect = 10 * np.log10(1 / np.mean((orig[valid] - recon[valid]).astype(np.float64) ** 2))
    assert part["psnr"] == pytest.approx(expect, abs=1e-3)
    assert part["psnr_unknown_pixels"] == pytest.approx(expect, abs=1e-3)
    assert "192 pixels with data" in part["psnr_over"] and "25.0% no-data" in part["psnr_over"]


def test_samples_valid_is_the_rule_reconstruct_reads_a_file_with(tmp_path: Path) -> None:
    from edgeae.imageio import read_image

    img = _margin_frame()
    cv2.imwrite(str(tmp_path / "m.png"), img[..., 0])
    valid = samples_valid(img, 8)
    assert np.array_equal(valid, read_image(tmp_path / "m.png").valid) and not valid[:, :6].any()
    assert coverage(np.ones((2, 2), bool)) == "all 4 pixels"


def test_compare_scores_every_row_over_the_pixels_with_data(tmp_path: Path) -> None:
    """The sparse row is reconstruct's figure for the same rebuild; the codec rows use the same pixels."""
    from edgeae.cli.downlink_compare import compare, compare_table, same_bytes_over
    from edgeae.ground.sources import sparse_from_samples
    from edgeae.ground.station import make_filler
    from edgeae.wire.packets import SequenceCounters, WireConfig, packetise

    samples = _margin_frame()
    valid = samples_valid(samples, 8)
    frame = sparse_from_samples(samples, 8, 0.3, 0, "uniform", 0)
    packets = packetise(frame, config=WireConfig(1024, "delta-deflate", 2, 0), counters=SequenceCounters())
    received, _ = simulate(packets, LinkConfig())
    args = argparse.Namespace(frame_id=0, keep=0.3, max_packet=1024)
    steps: list[str] = []
    wire = sum(map(len, packets))
    rows = compare(args, ["jpeg2000"], make_filler(None, "telea"), samples, 8, received, wire, LinkConfig(), valid,
                   steps.append)  # fmt: skip
    assert len(steps) == 2 and steps[1].startswith("jpeg2000")
    assert all("pixels with data" in r["psnr_over"] for r in rows)
    assert "pixels with data" in compare_table(rows)
    # the same rebuild through edgeae.image_metrics with reconstruct's valid mask
    import edgeae
    from edgeae.masks import make_mask

    known = make_mask(0, (64, 64), 0.3, "uniform")
    ref = samples.astype(np.float32) / 255
    out = np.asarray(edgeae.fill(ref, known, "telea"), np.float32).reshape(ref.shape)
    m = edgeae.image_metrics(ref, out, known, valid=valid)
    assert rows[0]["psnr"] == pytest.approx(m["psnr"], abs=0.02)
    # the codec row over every pixel (no no-data) is baselines.same_bytes' own figure
    from edgeae.ground.baselines import same_bytes

    full = np.ones(valid.shape, bool)
    mine = same_bytes_over(samples, "jpeg2000", wire, LinkConfig(), 1024, 8, full)
    assert mine == same_bytes(samples, ["jpeg2000"], wire, LinkConfig(), 1024, 8)
    part = same_bytes_over(samples, "jpeg2000", wire, LinkConfig(), 1024, 8, valid)[0]
    assert part["psnr"] != mine[0]["psnr"] and part["file_bytes"] == mine[0]["file_bytes"]


def test_plan_metrics_unchanged_on_a_frame_without_no_data() -> None:
    """A published figure on frames without no-data pixels must not move: all-valid is the old whole-frame PSNR."""
    from edgeae.ground.budget_downlink import Received
    from edgeae.ground.feature_sets import LabelledFrame
    from edgeae.ground.science import MAX_PSNR, metrics
    from edgeae.metrics import psnr_db

    rng = np.random.default_rng(1)
    s = rng.integers(30, 220, (64, 64, 1), dtype=np.uint8)
    frame = LabelledFrame("f", "t", s, 32, np.array([[0, 0]]), "test")
    img = np.clip(s / np.float32(255) + rng.normal(0, 0.03, s.shape).astype(np.float32), 0, 1)
    got = Received(image=img, exact=np.zeros(s.shape[:2], bool), whole=(), lost=False)
    old = psnr_db(s / np.float32(255), img, cap=MAX_PSNR)
    for valid in (None, samples_valid(s, 8)):
        m = metrics(frame, got, valid)
        assert m["frame_psnr"] == old
    ok = np.ones((64, 64), bool)
    ok[:, :8] = False
    m = metrics(frame, got, ok)
    assert m["frame_psnr"] == psnr_db((s / np.float32(255))[ok], img[ok], cap=MAX_PSNR) != old


def test_plan_refuses_a_budget_under_one_send_before_any_work(tmp_path: Path, capsys) -> None:
    img = tmp_path / "g.png"
    cv2.imwrite(str(img), np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8))
    rc = main(["downlink", "plan", "--image", str(img), "--budgets", "0.001", "--links", "perfect", "--methods",
               "sparse"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert (
        "4 bytes per frame for g" in err[0] and "less than one packet with one sample (71 B: 70 B of headers" in err[0]
    )


def test_plan_reports_are_written_both_or_neither(tmp_path: Path, monkeypatch) -> None:
    from edgeae.cli import downlink_plan

    out = tmp_path / "o"
    out.mkdir()
    (out / "report.md").write_text("old")
    real = Path.write_text

    def full(self: Path, text: str, *a, **k):
        if self.name.startswith(".report.md") or (self.parent == out and "report.md" in self.name):
            raise OSError(28, "No space left on device")
        return real(self, text, *a, **k)

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(OSError):
        downlink_plan._write_reports(out, {"config": {}, "rows": []}, "# new")
    monkeypatch.setattr(Path, "write_text", real)
    assert sorted(p.name for p in out.iterdir()) == ["report.md"] and (out / "report.md").read_text() == "old"
    downlink_plan._write_reports(out, {"config": {"links": {}}, "rows": []}, "# new")
    assert json.loads((out / "report.json").read_text())["config"] == {"links": {}}
    assert (out / "report.md").read_text() == "# new"


def test_step_bar_counts_every_step_it_was_given() -> None:
    from edgeae.cli.downlink_compare import StepBar

    with StepBar(3, on=False) as bar:
        for name in "abc":
            bar(name)
    assert bar.started == 3 and bar.bar is None


def test_threads_on_a_second_torch_model_is_warned_once(caplog, monkeypatch) -> None:
    torch = pytest.importorskip("torch")
    from edgeae import predictor
    from edgeae.predictor import resolve_model_path

    try:
        resolve_model_path("rover-rgb-vae")
    except Exception:
        pytest.skip("the zoo model rover-rgb-vae is not installed")
    before = torch.get_num_threads()
    monkeypatch.setattr(predictor, "_TORCH_STATE", {"loaded": True, "warned": False})
    want = 1 if before != 1 else 2
    try:
        with caplog.at_level(logging.WARNING, logger="edgeae.predictor"):
            predictor.load_predictor("rover-rgb-vae", threads=want)
            predictor.load_predictor("rover-rgb-vae", threads=before)
        lines = [r.getMessage() for r in caplog.records if "process-wide" in r.getMessage()]
        assert len(lines) == 1 and f"now run on {want} thread(s) too, not {before}" in lines[0]
    finally:
        torch.set_num_threads(before)

"""Audit s33-a8 (simulating downlinks): --compare with a model of another channel count, the link's good-state
loss, bit errors that reshuffled losses, tiny data rates, plan's deeper frames, file seeds, lost cells and budget
labels, and the simulate CLI's checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeae.cli import main
from edgeae.ground.link import LinkConfig, simulate

cv2 = pytest.importorskip("cv2")
PKTS = [bytes([i % 256]) * 200 + i.to_bytes(4, "big") for i in range(2000)]


def _png(path: Path, shape: tuple[int, ...], seed: int = 0) -> Path:
    cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8))
    return path


# ------------------------------------------------------------------ item 1: --compare --model, channels
def test_compare_refuses_a_model_of_another_channel_count(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")
    from edgeae.predictor import resolve_model_path

    try:
        resolve_model_path("orbital-gray-gtunet")
    except Exception:
        pytest.skip("the zoo model orbital-gray-gtunet is not installed")
    img = _png(tmp_path / "rgb.png", (32, 32, 3))
    out = tmp_path / "m.bin"
    args = ["downlink", "simulate", "--image", str(img), "--out", str(out), "--compare", "jpeg2000"]
    assert main([*args, "--model", "orbital-gray-gtunet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--model orbital-gray-gtunet takes 1 channel(s), the --image frame has 3" in err[0]
    assert not out.exists() and not out.with_suffix(".json").exists()


def test_a_frame_the_ground_could_not_rebuild_is_not_called_lost(tmp_path: Path) -> None:
    """The ground's reason is in the row and the table; ``lost`` stays False (every packet arrived)."""
    import argparse

    from edgeae.cli.downlink_compare import compare, compare_table
    from edgeae.ground.sources import sparse_from_samples
    from edgeae.wire.packets import SequenceCounters, WireConfig, packetise

    samples = np.random.default_rng(1).integers(0, 256, (32, 32, 1), dtype=np.uint8)
    frame = sparse_from_samples(samples, 8, 0.2, 0, "uniform", 0)
    packets = packetise(frame, config=WireConfig(1024, "delta-deflate", 2, 0), counters=SequenceCounters())
    received, _ = simulate(packets, LinkConfig())

    def broken(image, known, notes=None):
        raise RuntimeError("the fill broke")

    args = argparse.Namespace(frame_id=0, keep=0.2, max_packet=1024)
    rows = compare(args, [], (broken, "broken"), samples, 8, received, sum(map(len, packets)), LinkConfig())
    assert rows[0]["lost"] is False and rows[0]["psnr"] is None and "the fill broke" in rows[0]["error"]
    assert "the fill broke" in compare_table(rows) and "| lost |" not in compare_table(rows)


# ------------------------------------------------------------------ items 2, 5, 7: the link
def test_good_state_loss_applies_without_bursts_and_draws_stay_the_same() -> None:
    _, st = simulate(PKTS, LinkConfig(burst_loss_good=0.5))
    assert 900 < st.lost_packets < 1100  # was 0: ignored unless burst_p > 0
    _, st2 = simulate(PKTS, LinkConfig(burst_loss_good=0.5, burst_p=1e-12))
    assert st2.lost_packets == st.lost_packets
    # unchanged where burst_loss_good is 0
    out_a, _ = simulate(PKTS, LinkConfig(loss=0.2))
    out_b, _ = simulate(PKTS, LinkConfig(loss=0.2, burst_loss_good=0.0))
    assert out_a == out_b


def test_bit_errors_do_not_reshuffle_which_packets_are_lost() -> None:
    def arrived(cfg: LinkConfig) -> list[bytes]:
        return [p[-4:] for _, p in simulate(PKTS, cfg)[0]]  # the packet number (its last 4 bytes)

    base = arrived(LinkConfig(loss=0.2, reorder=0.1, duplicate=0.05))
    for ber in (1e-9, 1e-5):
        cfg = LinkConfig(loss=0.2, reorder=0.1, duplicate=0.05, ber=ber)
        _, st = simulate(PKTS, cfg)
        numbers = [p[-4:] for _, p in simulate(PKTS, cfg)[0]]
        # the arrivals are the same packets in the same order (a flip may hit a packet's number: count those)
        assert sum(a != b for a, b in zip(base, numbers, strict=True)) <= st.corrupted_packets
    assert simulate(PKTS, LinkConfig(loss=0.2, ber=1e-5))[1].corrupted_packets > 0


def test_a_data_rate_below_one_bit_per_second_is_refused() -> None:
    for rate in (1e-306, 0.5):
        with pytest.raises(ValueError, match=r"data_rate_bps must be a finite rate of at least 1 bit/s"):
            LinkConfig(data_rate_bps=rate)
    _, st = simulate(PKTS[:2], LinkConfig(data_rate_bps=1.0))
    assert st.delivered_packets == 2 and np.isfinite(st.last_arrival_s)


# ------------------------------------------------------------------ items 6, 10, 11, 12, 15: simulate's checks
def test_simulate_checks_name_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img = _png(tmp_path / "g.png", (8, 8))
    base = ["downlink", "simulate", "--image", str(img)]
    cases = {
        ("--out", str(tmp_path / "a.bin"), "--link-seed", "3"): "--link-seed overrides the seed of a --link file",
        ("--out", str(tmp_path / "a.bin"), "--link", "loss5", "--link-seed", "-1"): "--link-seed -1: seed must be",
        ("--out", str(tmp_path / "a.bin"), "--keep", "0"): "--keep 0.0: the fraction of pixels kept",
        ("--out", str(tmp_path / "a.bin"), "--frame-id", "-1"): "--frame-id -1: a frame id",
        ("--out", str(tmp_path / "a.bin"), "--seed", "-1"): "--seed -1: the mask seed",
        ("--out", ""): "--out '.': name the packet file to write",
        ("--out", "."): "--out '.': name the packet file to write",
    }
    for extra, said in cases.items():
        assert main([*base, *extra]) == 2, extra
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and said in err[0], (extra, err)
    assert main([*base, "--out", str(tmp_path / "one.bin")]) == 0
    assert capsys.readouterr().out.startswith("1 packet (")  # not "1 packets"


def test_an_out_inside_the_products_folder_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img = _png(tmp_path / "g.png", (16, 16))
    prod = tmp_path / "downlink"
    assert main(["downlink", "simulate", "--image", str(img), "--out", str(prod / "pass_0.bin")]) == 0
    capsys.readouterr()
    assert main(["downlink", "simulate", "--products", str(prod), "--out", str(prod / "rx.bin")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is one of the --products folder's packet files" in err[0]
    assert not (prod / "rx.bin").exists()
    assert main(["downlink", "simulate", "--products", str(prod), "--out", str(tmp_path / "rx.bin")]) == 0
    # a subfolder's files are never read as products (review s33 r7): allowed
    assert main(["downlink", "simulate", "--products", str(prod), "--out", str(prod / "sim" / "rx.bin")]) == 0


# ------------------------------------------------------------------ items 3, 4, 11: plan --image
def _fake_models(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeae.ground import science

    def fill(image, known, notes=None):
        return image

    monkeypatch.setattr(science, "load_models", lambda model, scorer, threads=None, loaded=None: (fill, lambda x: {}))


def test_plan_plans_a_12_bit_frame_at_its_depth_and_uses_the_file_seed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Session 33 planned a deeper frame on an 8-bit copy (and said so); session 34 plans it at its own depth."""
    tifffile = pytest.importorskip("tifffile")
    pytest.importorskip("imagecodecs")
    _fake_models(monkeypatch)
    img = tmp_path / "h12.tif"
    y, x = np.mgrid[0:64, 0:64]
    tifffile.imwrite(img, (1000 + 20 * (x + y)).astype(np.uint16), extratags=[(281, "H", 1, 4095, False)])
    link = tmp_path / "l42.toml"
    link.write_text("[link]\nseed = 42\nloss = 0.2\n")
    out = tmp_path / "plan"
    args = ["downlink", "plan", "--image", str(img), "--budgets", "0.125", "--links", f"perfect,{link}"]
    assert main([*args, "--methods", "jpeg2000", "--seeds", "2", "--out", str(out)]) == 0
    cap = capsys.readouterr()
    assert "8-bit copy" not in cap.err + cap.out
    rows = json.loads((out / "report.json").read_text())["rows"]
    assert {r["input"] for r in rows} == {"12-bit"} and {r["bit_depth"] for r in rows} == {12}
    assert {r["budget_bytes"] for r in rows} == {64 * 64 * 12 // 8 // 8}  # 12.5 % of the frame packed at 12 bits
    assert sorted(r["seed"] for r in rows if r["link"] == str(link)) == [43, 60]  # 42 + 1, 42 + 17 + 1
    assert "| 12.5% | jpeg2000 |" in cap.out and "Input: a 12-bit frame" in cap.out
    assert main(["downlink", "plan", "--image", str(tmp_path), "--links", "perfect"]) == 2
    assert "is a folder: --image takes one image file" in capsys.readouterr().err


# ------------------------------------------------------------------ items 8, 9: the plan table
def test_plan_table_marks_lost_frames_and_keeps_budget_precision() -> None:
    from edgeae.ground.science import budget_label, markdown

    assert [budget_label(b) for b in (0.02, 0.025, 0.005, 0.1, 0.07)] == ["2%", "2.5%", "0.5%", "10%", "7%"]
    row = {"set": "image", "frame": "f", "split": "-", "method": "sparse", "wire_bytes": 10, "patches_sent": 0,
           "features_in_sent": 0, "features": 0, "feature_recall": None, "feature_psnr": None}  # fmt: skip
    rows = [
        {**row, "budget": 0.025, "link": "perfect", "frame_psnr": 30.0, "lost": False},
        {**row, "budget": 0.025, "link": "dead", "frame_psnr": 13.1, "lost": True},
        {**row, "budget": 0.025, "link": "half", "frame_psnr": 30.0, "lost": False},
        {**row, "budget": 0.025, "link": "half", "frame_psnr": 13.1, "lost": True},
    ]
    md = markdown(rows)
    assert "| 2.5% | sparse | 10 | 0 (0) | - · - / 30.0 | lost | - · - / 21.6 (1/2 lost) |" in md, md

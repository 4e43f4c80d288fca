"""Session 39 (h10, review r4 #1 #2): tiled JPEG 2000 in the link benchmark. A tile whose share of the wire bytes
was a little over one packet sent a full packet and a 3-25-byte sliver, and was lost with either (the benchmark's
img_336 crop: 26 of its 64 tiles, 24.59 dB at 20% loss against 26.86 held to one packet); ``--crop 200`` and
``--keep 0.01`` ended the link benchmark with a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("imagecodecs")
pytest.importorskip("cv2")

from edgeae.ground import tiled_j2k as tj
from edgeae.ground.link import LinkConfig
from edgeae.wire.layout import overhead

PER = 1024 - overhead("telemetry")  # a 1024-byte packet's payload


def _busy(h: int, w: int, c: int = 3, seed: int = 0) -> np.ndarray:
    """A frame with texture everywhere (uint8): every tile's codestream fills whatever share it gets."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([(x + 2 * y + 40 * k) % 180 for k in range(c)], -1) + rng.integers(0, 70, (h, w, c))
    return base.clip(0, 255).astype(np.uint8)


def test_a_share_a_little_over_one_packet_is_held_to_one_packet() -> None:
    """img_336's case: 1,079 wire bytes a tile. Each tile now takes one full packet; the old rule (kept as
    whole_packets=False) sends a second packet of a few bytes with most tiles."""
    img = _busy(128, 128)
    streams, _, wb = tj.at_wire_bytes(img, 64, 4 * 1079, 1024)
    pkts = tj.tile_packets(streams, 1024)
    assert len(pkts) == len(streams) == 4 and wb <= 4 * 1079
    assert all(PER - 60 < len(s) <= PER for s in streams)  # the packet is filled, not left half empty
    old, _, _ = tj.at_wire_bytes(img, 64, 4 * 1079, 1024, whole_packets=False)
    assert len(tj.tile_packets(old, 1024)) > 4 and max(map(len, old)) > PER  # the sliver the rule removes


def test_no_tile_ends_in_a_partial_packet_at_any_share() -> None:
    """Shares of 1.5 and 2.7 packets: each tile takes whole packets (1 and 2), every packet but a tile's last full,
    the packets within the budget; the share rule itself, and a share under one packet, unchanged."""
    img = _busy(128, 128)
    for share, k in ((1536, 1), (2765, 2)):
        streams, _, wb = tj.at_wire_bytes(img, 64, 4 * share, 1024)
        assert wb <= 4 * share and all(-(-len(s) // PER) == k for s in streams)
        assert len(tj.tile_packets(streams, 1024)) == 4 * k
    assert tj.share_budget(1079, 1024) == PER and tj.share_budget(2765, 1024) == 2 * PER
    assert tj.share_budget(1000, 1024) == 1000 - overhead("telemetry")  # under a packet: as before
    assert tj.share_budget(2765, 1024, whole_packets=False) == 2 * PER + 2765 - 2048 - overhead("telemetry")


def test_the_floor_is_whole_packets_when_one_tile_needs_more_than_one() -> None:
    """floor_bytes is the least budget that sends: a tile over one packet at its lowest quality needs whole
    packets under the rule, and one byte less does not fit."""
    img = np.random.default_rng(0).integers(0, 256, (256, 256, 3)).astype(np.uint8)  # noise: ~3 KB at the lowest
    need, why = tj.floor_bytes(img, 512)  # the frame as one tile
    size = len(tj.encode_tile(img, 10.0))
    per = 512 - overhead("telemetry")
    assert size > per and need == -(-size // per) * 512 and f"{need:,} B in their packets" in why
    streams, side, _ = tj.within(img, need, 512)
    assert side == 256 and sum(map(len, tj.tile_packets(streams, 512))) <= need
    with pytest.raises(ValueError, match="over its"):
        tj.within(img, need - 1, 512)


# ------------------------------------------------------------------------------------------- the link benchmark
def _ramp(size: int) -> np.ndarray:
    """Review r4's synthetic rover frame (uint8 RGB): every codec row fits 1% of its pixels' sparse frame."""
    y, x = np.mgrid[0:size, 0:size]
    rng = np.random.default_rng(0)
    a = np.stack([(x + y) % 200 + 20 + 10 * c for c in range(3)], -1) + rng.integers(0, 30, (size, size, 3))
    return a.clip(0, 255).astype(np.uint8)


def _run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, img: np.ndarray, argv: list[str]) -> int:
    from PIL import Image

    import benchmarks.link_comparison as lc

    path = tmp_path / "rover.png"
    Image.fromarray(img).save(path)
    monkeypatch.setattr(lc, "split_files", lambda *a: [path])
    monkeypatch.setattr(lc, "LINKS", {"perfect": LinkConfig(), "loss 20%": LinkConfig(loss=0.2)})
    monkeypatch.setattr("benchmarks.machine._gpu", lambda: None)
    return lc.main(["--out", str(tmp_path / "link"), "--limit", "1", "--seeds", "1", "--methods", "linear", *argv])


def test_link_benchmark_crop_200_codes_its_8_px_corner_tile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--crop 200 in 64-px tiles leaves an 8x8 corner tile (the run stopped: 'tile side must be at least 16')."""
    assert _run(tmp_path, monkeypatch, _ramp(200), ["--crop", "200", "--j2k-tile", "64"]) == 0
    got = json.loads((tmp_path / "link" / "results.json").read_text())
    rows = [r for r in got["rows"] if "tiles" in r]
    assert len(rows) == 2 and all(r["tiles"] == 16 for r in rows) and rows[0]["tiles_lost"] == 0
    size = got["sizes"][0]
    assert size["jpeg2000-tiles"]["wire_bytes"] <= size["sparse_wire_bytes"] and size["jpeg2000-tiles"]["tile"] == 64


def test_link_benchmark_tiny_keep_sends_larger_tiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--keep 0.01 gives a 64-px tile ~100 bytes, under its ~120-byte codestream at the lowest quality (a traceback
    until now): the default tile side is the rule's (tiles held to one packet, larger while a tile cannot fit its
    share), so the row is sent in larger tiles within the same bytes."""
    assert _run(tmp_path, monkeypatch, _ramp(320), ["--crop", "320", "--keep", "0.01"]) == 0
    got = json.loads((tmp_path / "link" / "results.json").read_text())
    size = got["sizes"][0]["jpeg2000-tiles"]
    assert size["tile"] > 64 and size["wire_bytes"] <= got["sizes"][0]["sparse_wire_bytes"]
    md = (tmp_path / "link" / "results.md").read_text()
    assert "| jpeg2000 tiles (a packet each) + telea conceal |" in md


def test_link_benchmark_refuses_a_fixed_tile_its_share_cannot_hold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A fixed --j2k-tile whose tiles cannot fit their share: one line and exit 2, not a traceback."""
    with pytest.raises(SystemExit) as e:
        _run(tmp_path, monkeypatch, _busy(128, 128), ["--crop", "128", "--j2k-tile", "16"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--j2k-tile 16: rover.png: a 16x16 JPEG 2000 tile needs" in err
    assert "give a larger --j2k-tile, or leave it out" in err and "Traceback" not in err
    assert not (tmp_path / "link" / "results.json").exists()

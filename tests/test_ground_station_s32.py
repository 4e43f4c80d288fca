"""Session 32: hostile telemetry JSON, products that change after serve decoded them, overlapping pieces, the
station's memory across frames, and what latent frames' reports say (audit a1)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from edgeae.ground.decode import TELEMETRY_MAX_DEPTH
from edgeae.ground.outputs import strict_json
from edgeae.ground.sources import sparse_from_samples
from edgeae.ground.station import GroundStation
from edgeae.wire.packets import APIDS, COMMON, PATCH, TELEMETRY, SequenceCounters, WireConfig, build_packet, packetise
from edgeae.wire.products import AnomalyPatch, LatentFrame, TelemetryRecord


def _telemetry(frame_id: int, data: bytes) -> list[bytes]:
    return packetise(TelemetryRecord(frame_id, data), config=WireConfig(1024))


def _nested(depth: int) -> bytes:
    """A JSON object whose value nests ``depth - 1`` lists: ``depth`` levels in all."""
    return b'{"a": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


def _decode(out: Path | None, packets: list[bytes], **kw) -> tuple[GroundStation, dict]:
    gs = GroundStation(out=out, **kw)
    for p in packets:
        gs.receive(p)
    return gs, gs.finish()


def test_telemetry_nested_to_the_bound_is_kept_and_deeper_is_refused_with_its_reason(tmp_path: Path) -> None:
    pkts = []
    for fid, depth in ((1, TELEMETRY_MAX_DEPTH), (2, TELEMETRY_MAX_DEPTH + 1), (3, 492), (4, 2000)):
        pkts += _telemetry(fid, _nested(depth))
    pkts += _telemetry(5, b"[" * TELEMETRY_MAX_DEPTH + b"]" * TELEMETRY_MAX_DEPTH)  # a list record: no extra level
    _, report = _decode(tmp_path, pkts)  # 492 levels raised RecursionError out of finish() before
    prods = report["products"]
    assert "error" not in prods["telemetry_1"] and isinstance(prods["telemetry_1"]["telemetry"]["a"], list)
    assert "error" not in prods["telemetry_5"] and isinstance(prods["telemetry_5"]["telemetry"]["value"], list)
    for fid in (2, 3, 4):  # the bound, the old crash, and past the JSON parser's own stack: one reason for all
        rep = prods[f"telemetry_{fid}"]
        assert rep["error_reason"] == "decode"
        assert rep["error"] == f"telemetry {fid}: the record's JSON is nested deeper than 64 levels: record refused"
    stream = json.loads((tmp_path / "stream.json").read_text())["stream"]
    assert stream["complete"] is True and stream["products_failed"] == {"decode": 3}
    assert json.loads((tmp_path / "telemetry_4.json").read_text())["error_reason"] == "decode"


def test_a_long_integer_in_telemetry_is_refused_naming_the_record() -> None:
    _, report = _decode(None, _telemetry(2, b'{"big": ' + b"9" * 5000 + b', "ok": -12}'))
    rep = report["products"]["telemetry_2"]
    assert rep["error_reason"] == "decode"
    assert rep["error"].startswith("telemetry 2: the record's JSON holds an integer of 5,000 digits, over the 4,300")
    assert "set_int_max_str_digits" not in rep["error"]
    _, report = _decode(None, _telemetry(3, b'{"ok": -' + b"9" * 4300 + b"}"))  # at Python's limit: parsed
    assert report["products"]["telemetry_3"]["telemetry"]["ok"] == -int("9" * 4300)


def test_strict_json_refuses_a_report_nested_too_deep_with_a_value_error() -> None:
    deep: list = []
    for _ in range(3000):
        deep = [deep]
    with pytest.raises(ValueError, match="nested deeper than 128 levels"):  # not RecursionError
        strict_json({"a": deep})
    assert json.loads(strict_json({"a": [[float("nan")]]})) == {"a": [[None]]}


def _frame(seed: int, mask_seed: int, packet: int, counters: SequenceCounters) -> list[bytes]:
    counts = np.random.default_rng(seed).integers(0, 256, (48, 64, 1)).astype(np.uint8)
    return packetise(
        sparse_from_samples(counts, 8, 0.5, mask_seed, frame_id=3), config=WireConfig(packet), counters=counters
    )


def test_a_product_whose_pieces_changed_after_it_was_decoded_is_decoded_again(tmp_path: Path, caplog) -> None:
    ctr = SequenceCounters()
    first, second = _frame(1, 9, 256, ctr), _frame(2, 10, 128, ctr)  # two frames 3: the second in more packets
    gs = GroundStation(out=tmp_path)
    for p in first:
        gs.receive(p)
    early = gs.decode(gs.complete())  # what serve's decode worker does as soon as a product is complete
    assert early["frame_3"]["packets_received"] == len(first)
    for p in second:
        gs.receive(p)
    assert gs.changed() == [("sparse", 3, 0)] and gs.complete() == [("sparse", 3, 0)]
    with caplog.at_level(logging.WARNING, logger="edgeae.ground.station"):
        rep = gs.finish()["products"]["frame_3"]
    assert "frame_3 was decoded before more of its packets arrived" in caplog.text
    # as `ground decode` of the same packets: the larger frame, the first one's packets set aside (before: 9/9)
    assert (rep["packets_received"], rep["packets_expected"]) == (len(second), len(second))
    assert rep["packets_inconsistent"] == len(first)
    assert json.loads((tmp_path / "frame_3.json").read_text())["packets_inconsistent"] == len(first)
    assert gs.changed() == [] and gs.complete() == []


def _raw(kind: str, frame_id: int, part: int, parts: int, head: bytes, data: bytes, seq: int) -> bytes:
    return build_packet(APIDS[kind], seq, COMMON.pack(2, 0, frame_id, part, parts) + head + data)


def test_a_failed_product_decoded_again_is_counted_once(tmp_path: Path) -> None:
    gs = GroundStation(out=tmp_path)
    gs.receive(_raw("patch", 3, 0, 1, PATCH.pack(0, 0, 2, 1, 8, 0, float("nan"), 0, 4), bytes(4), 0))
    gs.decode()
    gs.decode()  # again: the first failure is undone, not added to
    report = gs.finish()
    assert report["products"]["patch_3_0"]["error_reason"] == "decode"
    assert report["stream"]["products_failed"] == {"decode": 1}


def test_a_station_that_does_not_keep_images_holds_no_frame_after_writing(tmp_path: Path) -> None:
    counts = np.random.default_rng(0).integers(0, 256, (32, 32, 3)).astype(np.uint8)
    ctr = SequenceCounters()
    pkts = [
        p for fid in range(3) for p in packetise(sparse_from_samples(counts, 8, 0.2, 1, frame_id=fid), counters=ctr)
    ]
    gs, report = _decode(tmp_path, pkts, keep_images=False)
    assert gs.images == {} and gs.known == {}  # they were kept for the whole session before (~3.4 MB a 512² frame)
    assert sorted(report["products"]) == ["frame_0", "frame_1", "frame_2"]
    assert all((tmp_path / f"frame_{i}.png").is_file() for i in range(3))
    assert gs.sibling(None).keep_images is False
    kept, _ = _decode(None, pkts)  # the default (API callers, pipeline.py) keeps them
    assert sorted(kept.images) == [0, 1, 2] and kept.known[1].shape == (32, 32)


def test_overlapping_pieces_are_refused_and_uncovered_elements_are_not_called_lost(tmp_path: Path) -> None:
    px = bytes(range(100, 164))  # an 8x8 grey patch
    pkts = [  # patch 3 of frame 3: two parts, both [0, 10); the second one zeros
        _raw("patch", 3, 0, 2, PATCH.pack(16, 16, 8, 1, 8, 3, 1.0, 0, 10), px[:10], 0),
        _raw("patch", 3, 1, 2, PATCH.pack(16, 16, 8, 1, 8, 3, 1.0, 0, 10), bytes(10), 1),
        # telemetry of 10 bytes in two parts, both [0, 5)
        _raw("telemetry", 3, 0, 2, TELEMETRY.pack(10, 0, 5), b'{"a":', 0),
        _raw("telemetry", 3, 1, 2, TELEMETRY.pack(10, 0, 5), b'{"a":', 1),
    ]
    counts = np.arange(48 * 64).reshape(48, 64, 1).astype(np.uint8)
    pkts += packetise(sparse_from_samples(counts, 8, 0.1, 9, frame_id=3))
    gs, report = _decode(tmp_path, pkts)
    patch = report["products"]["patch_3_3"]
    assert patch["packets_lost"] == 0 and patch["pieces_overlapping"] == 1 and patch["elements_not_covered"] == 54
    assert patch["coverage_note"] == (
        "54 of 64 samples not covered by any received piece (all 2 packets arrived; 1 piece(s) overlapping an "
        "earlier part refused)"
    )
    assert patch["pixels_received"] == 10
    # the first piece's pixels went into the frame, not the zeros of the second (before: last piece won)
    got = np.round(gs.images[3][16:24, 16:24, 0] * 255).astype(np.uint8)
    np.testing.assert_array_equal(got.reshape(-1)[:10], np.frombuffer(px[:10], np.uint8))
    tel = report["products"]["telemetry_3"]
    assert tel["packets_lost"] == 0 and tel["elements_not_covered"] == 5
    assert tel["telemetry_error"].startswith("5 of 10 bytes not covered by any received piece (all 2 packets arrived")


def _latent_frame(frame_id: int, dtype: str, latents: np.ndarray, scale: float = 0.5) -> LatentFrame:
    return LatentFrame(frame_id, "enc01", 16, 32, 1, 16, 16, 1, 2, scale, dtype, latents)  # type: ignore[arg-type]


def _upsample(z: np.ndarray) -> np.ndarray:  # (N, 1, 4, 4) -> (N, 1, 16, 16)
    return np.repeat(np.repeat(z, 4, axis=2), 4, axis=3) / 100.0


def test_a_latent_frame_says_how_far_its_image_can_be_trusted_and_why_patches_are_not_used(tmp_path: Path) -> None:
    z = np.arange(2 * 16, dtype=np.float16).reshape(2, 1, 4, 4)
    bad = z.copy()
    bad.flat[::3], bad.flat[1::3] = np.nan, np.inf
    half = z.copy()
    half[1, 0, 0, 0] = np.nan  # one value of the second tile
    counts = np.zeros((16, 32, 1), np.uint8)
    pkts = packetise(AnomalyPatch(2, 4, 4, 8, 1.0, counts[4:12, 4:12], 8, 0))
    for fid, lat in ((1, z), (2, bad), (3, half)):
        pkts += packetise(_latent_frame(fid, "fp16", lat), config=WireConfig(128))
    _, report = _decode(tmp_path, pkts, decoder=_upsample)
    prods = report["products"]
    assert "image_note" not in prods["latent_1"] and "patches_not_used" not in prods["latent_1"]
    assert prods["latent_2"]["image_note"] == (
        "22 of 32 latent values not received (22 of them NaN or infinite), decoded as 0: the image is unusable: no "
        "tile's latents arrived whole"
    )
    assert prods["latent_3"]["image_note"].endswith(
        "the image is partial: 1 of its 2 tiles are decoded from incomplete latents"
    )
    assert prods["latent_2"]["patches_used"] == 0
    assert prods["latent_2"]["patches_not_used"] == [
        {"patch": 0, "reason": "a latent frame is rebuilt by its decoder from the latents alone: anomaly patches are "
         "not pasted into it (each is written as a product of its own)"}
    ]  # fmt: skip
    assert (tmp_path / "latent_2.png").is_file()


def test_an_int8_scale_float32_cannot_hold_fails_the_latent_frame_with_a_latent_reason() -> None:
    gs = GroundStation(decoder=_upsample)
    for p in packetise(_latent_frame(2, "int8", np.ones((2, 1, 4, 4), np.int8))):
        gs.receive(p)
    for piece in gs.receiver.products[("latent", 2, 0)].pieces.values():  # the wire now refuses such a scale
        piece.header["scale"] = 1e300
    with np.errstate(all="raise"):  # no overflow warning either
        rep = gs.finish()["products"]["latent_2"]
    assert rep["error_reason"] == "decode"
    assert rep["error"] == (
        "latent frame 2: its int8 scale 1e+300 gives 32 dequantised latent values that are not finite in float32: "
        "latents not decoded"
    )

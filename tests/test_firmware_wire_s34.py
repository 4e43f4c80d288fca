"""The flight runtime as a third-party wire-format implementer reads it (session 34, audit a6): a frame smaller
than the latent tile is padded as the spec says, a latent frame with stride > tile is refused by the sender, and
the telemetry record lists every anomaly patch sent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeae.wire.packets import WireConfig, packetise
from edgeae.wire.parse import parse_packet
from edgeae.wire.products import LatentFrame, TelemetryRecord

T = 32  # the stand-in models' tile


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from edgeae.firmware_sim.testing import tiny_models

    return tiny_models(tmp_path_factory.mktemp("models"), 1, T)


def _fly(models: dict[str, Path], out: Path, img: np.ndarray, **sections: dict[str, Any]) -> tuple[dict, list[bytes]]:
    """The frame record and every packet the flight runtime sent for ``img``."""
    from edgeae.firmware_sim.loop import FlightRuntime
    from edgeae.firmware_sim.queue import split_packets
    from edgeae.firmware_sim.testing import small_mission

    rt = FlightRuntime(small_mission(models, **sections), out)
    rec = rt.process(img)
    rt.finish()
    return rec, [p for f in sorted((out / "downlink").glob("pass_*.bin")) for p in split_packets(f.read_bytes())]


def _upsample(z: np.ndarray) -> np.ndarray:
    """A stand-in decoder for the 8x8 block-mean encoder: (N, 1, 4, 4) -> (N, 1, 32, 32)."""
    return np.repeat(np.repeat(np.asarray(z, np.float32), 8, axis=2), 8, axis=3)


# ------------------------------------------------------------- item 1: a frame smaller than the latent tile
@pytest.mark.parametrize("shape", [(20, 24), (20, 100), (100, 20), (1, 50), (50, 1)])
def test_a_frame_smaller_than_the_latent_tile_is_padded_as_the_spec_says(
    tmp_path: Path, models: dict[str, Path], shape: tuple[int, int]
) -> None:
    """Smaller than the tile in both axes or in one (1 px: edge padding): the flight encodes the frame as the
    ground's encoder does (reflect padding; it failed with a numpy broadcast error, ``recon_failed``, no latent
    frame), and the ground rebuilds an image of the frame's size from the packets."""
    from edgeae.firmware_sim.testing import textured_frame

    from edgeae.ground.pipeline import downlink_latents, encode_latents
    from edgeae.ground.station import GroundStation
    from edgeae.predictor import load_predictor

    img = textured_frame(3, h=shape[0], w=shape[1], spot=None)
    img[:, ::3] += 60  # columns differ, so reflect, edge and zero padding give other latents
    img[::2] += 40
    rec, packets = _fly(models, tmp_path, img, reconstruction={"mode": "latent", "model": str(models["encoder"])})
    assert "recon_failed" not in rec["flags"] and "error" not in rec["reconstruction"], rec["reconstruction"]
    lat = sorted((q for q in map(parse_packet, packets) if q.kind == "latent"), key=lambda q: q.header["e0"])
    assert lat, "no latent frame sent"
    flight = np.concatenate([q.samples for q in lat]).astype(np.float32)
    r = rec["reconstruction"]
    lib = encode_latents(
        img[..., None], 8, load_predictor(str(models["encoder"])), tile=T, dtype="fp16",
        input_keep=r["input_keep"], seed=rec["seed"],
    )  # fmt: skip
    assert (lat[0].header["grid_rows"], lat[0].header["grid_cols"]) == (lib.grid_rows, lib.grid_cols)
    np.testing.assert_allclose(flight, lib.latents.astype(np.float32).ravel(), rtol=2e-3, atol=1e-4)
    gs = GroundStation(decoder=_upsample, keep_images=True)
    for p in packets:
        gs.receive(p)
    rep = gs.finish()["products"][f"latent_{rec['frame_id']}"]
    assert "error" not in rep, rep
    image = gs.images[rec["frame_id"]]
    assert image.shape == (*shape, 1)
    _, want, _ = downlink_latents(lib, _upsample)
    assert want is not None
    np.testing.assert_allclose(image, want, atol=2e-3)


# ----------------------------------------------------------------------- item 2: stride > tile is refused
def test_a_latent_frame_with_a_stride_over_its_tile_is_refused_by_the_sender() -> None:
    z = np.zeros((1, 1, 1, 1), np.int8)
    LatentFrame(7, "ab12", 4, 4, 1, 4, 4, 1, 1, 0.5, "int8", z)  # stride == tile: the spec's largest
    with pytest.raises(ValueError, match=r"^stride must be in 1\.\.tile \(4\): 5 would leave gaps between tiles$"):
        LatentFrame(7, "ab12", 4, 4, 1, 4, 5, 1, 1, 0.5, "int8", z)


def test_a_mission_cannot_configure_a_latent_stride(models: dict[str, Path]) -> None:
    """The flight's latent stride is its tile (``onboard_recon.encode_latents``); no key sets another."""
    from edgeae.firmware_sim.mission import MissionError
    from edgeae.firmware_sim.testing import small_mission

    with pytest.raises(MissionError, match=r"\[reconstruction\]: unknown keys \['stride'\]"):
        small_mission(models, reconstruction={"mode": "latent", "model": str(models["encoder"]), "stride": 64})


# --------------------------------------------------------------- item 3: the record lists every patch sent
def test_the_telemetry_record_lists_every_patch_sent(tmp_path: Path, models: dict[str, Path]) -> None:
    """top_k 20: the record lists all 20 patches (it listed 16), so the ground names patch 18 when it is lost."""
    from edgeae.firmware_sim.testing import textured_frame

    from edgeae.ground.patch_checks import announced_not_received
    from edgeae.ground.station import GroundStation

    rec, packets = _fly(models, tmp_path, textured_frame(), anomaly={"top_k": 20})
    parsed = [parse_packet(p) for p in packets]
    heads = {q.header["index"]: q.header for q in parsed if q.kind == "patch"}
    tm = sorted((q for q in parsed if q.kind == "telemetry"), key=lambda q: q.header["e0"])
    record = json.loads(b"".join(q.samples.tobytes() for q in tm).decode())
    assert len(heads) == 20 and len(record["anomaly"]) == 20
    for i, a in enumerate(record["anomaly"]):  # entry i is patch index i
        assert (a["x"], a["y"], a["score"]) == (heads[i]["x"], heads[i]["y"], round(heads[i]["score"], 6))
    gs = GroundStation()
    for p, q in zip(packets, parsed, strict=True):
        if not (q.kind == "patch" and q.header["index"] == 18):
            gs.receiver.receive(p)
    gs.decode()
    missing = announced_not_received(gs)
    assert missing is not None and missing["count"] == 1
    assert missing["patches"][0] == {"frame_id": rec["frame_id"], "index": 18, **record["anomaly"][18]}


def test_the_largest_telemetry_record_fits_both_sides() -> None:
    """top_k = 65,535 patches at the largest coordinates and the longest score: under the ground's
    max_telemetry_bytes, and under 65,536 packets (the part count) at the smallest packet a mission allows."""
    from edgeae.firmware_sim.frame_outcome import _json_bytes, telemetry_summary
    from edgeae.firmware_sim.mission_sections import Anomaly, Downlink

    from edgeae.ground.limits import GroundLimits

    top_k = 65535
    with pytest.raises(Exception, match="top_k"):
        Anomaly(top_k=top_k + 1)
    smallest = 128
    with pytest.raises(Exception, match="max_packet_bytes"):
        Downlink(max_packet_bytes=smallest - 1)
    worst = {"x": 2**32 - 1, "y": 2**32 - 1, "score": -1.7976931348623157e308}

    def record(n: int) -> bytes:
        return _json_bytes(
            telemetry_summary(
                {
                    "frame_id": 2**32 - 1,
                    "level": {"index": 3, "name": "score_quarter_patches"},
                    "flags": ["late", "deadline_cut", "memory_degraded", "recon_failed"],
                    "anomaly": {"patches": [worst] * n},
                }
            )
        )

    assert len(json.loads(record(100))["anomaly"]) == 100  # every entry listed
    one, per = len(record(1)), len(record(2)) - len(record(1))  # each further entry adds the same bytes
    size = one + (top_k - 1) * per
    assert per == 65 and size < 4.3e6 < GroundLimits().max_telemetry_bytes
    first = parse_packet(packetise(TelemetryRecord(1, record(100)), config=WireConfig(smallest))[0])
    assert first.size == smallest and -(-size // first.header["n"]) < 2**16  # codec none: the most packets

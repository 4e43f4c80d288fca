"""Raw Mastcam-Z frames in flight (issue 12): the Bayer mosaic is demosaiced and says so; no patch of the
dark sensor margins is ever flagged; any frame size the camera produces is accepted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from edgeae.firmware_sim.loop import FlightRuntime
from edgeae.firmware_sim.mission import load_mission

pytest.importorskip("onnxruntime")
cv2 = pytest.importorskip("cv2")

ZL0 = "rover_rgb/mars2020_raw/ZL0_0038_0670307360_057ECM_N0031392ZCAM08007_1100LUJ.png"
MARGIN_COLS = (23, 1631)  # raw columns [0, 23) and [1631, 1648) are the dark sensor margins


@pytest.fixture(scope="module")
def raw_frame(data_root: Path) -> Path:
    p = data_root / ZL0
    if not p.is_file():
        pytest.skip(f"{p} not in the data folder")
    return p


def _run(tmp_path: Path, frames: list, **camera: object) -> tuple[dict, list[dict]]:
    m = load_mission("rover_mastcamz")
    m = m.with_overrides(anomaly={"top_k": 64}, reconstruction={"mode": "off"}, budget={"frame_ms": 600000.0},
                         camera=camera)  # fmt: skip
    rt = FlightRuntime(m, tmp_path)
    summary = rt.run(frames)
    return summary, rt.records


def _touches_margin(x: int, patch: int = 128) -> bool:
    return x < MARGIN_COLS[0] or x + patch > MARGIN_COLS[1]


def test_raw_mastcam_z_frame_is_demosaiced_and_margins_never_flagged(raw_frame: Path, tmp_path: Path) -> None:
    summary, recs = _run(tmp_path, [raw_frame])
    rec = recs[0]
    assert rec["status"] == "processed"
    assert rec["camera"] == {"bayer": "RGGB", "demosaiced": True}
    assert summary["colour_filter"]["frames_demosaiced"] == 1
    flagged = rec["anomaly"]["patches"]
    assert flagged and not [p for p in flagged if _touches_margin(p["x"])]
    assert rec["patches"]["nodata_skipped"] >= 2 * 10  # the two patch columns over the margins, every row
    tm = (tmp_path / "telemetry.jsonl").read_text()
    assert '"demosaiced":true' in tm


def test_subframes_and_undeclared_mosaics(raw_frame: Path, tmp_path: Path) -> None:
    raw = cv2.imread(str(raw_frame), cv2.IMREAD_UNCHANGED)[:, :, ::-1]
    sub = np.ascontiguousarray(raw[200:712, 300:1068])  # a 768 x 512 subframe (even offsets: same RGGB phase)
    summary, recs = _run(tmp_path / "sub", [sub])
    assert recs[0]["status"] == "processed" and recs[0]["camera"]["demosaiced"]
    summary, recs = _run(tmp_path / "undeclared", [sub], bayer="")
    assert "looks_like_bayer_mosaic" in recs[0]["flags"]
    assert summary["colour_filter"]["frames_looking_like_mosaic"] == 1
    # a grey frame (equal channels, no 2x2 filter pattern) is not demosaiced into false colour
    grey = cv2.GaussianBlur(np.ascontiguousarray(raw[200:712, 300:1068, 1]), (0, 0), 3)
    summary, recs = _run(tmp_path / "grey", [np.repeat(grey[:, :, None], 3, axis=2)])
    assert recs[0]["status"] == "processed" and recs[0]["camera"]["demosaiced"] is False
    assert recs[0]["camera"].get("grey_not_a_mosaic")


def test_camera_margin_and_bayer_are_validated() -> None:
    from edgeae.firmware_sim.mission import MissionError

    m = load_mission("rover_mastcamz")
    assert m.camera.bayer == "RGGB" and m.camera.height == 0 and m.camera.width == 0
    assert m.with_overrides(camera={"margin": 4}).camera.margin == (4,)
    assert m.with_overrides(camera={"margin": [1, 2, 3, 4]}).camera.margin == (1, 2, 3, 4)
    with pytest.raises(MissionError, match="margin"):
        m.with_overrides(camera={"margin": [1, 2]})
    with pytest.raises(MissionError, match="bayer"):
        m.with_overrides(camera={"bayer": "RGBW"})
    with pytest.raises(MissionError, match="channels = 3"):
        m.with_overrides(camera={"channels": 1})


def test_fixed_margin_is_never_flagged(raw_frame: Path, tmp_path: Path) -> None:
    raw = cv2.imread(str(raw_frame), cv2.IMREAD_UNCHANGED)[:, :, ::-1]
    sub = np.ascontiguousarray(raw[200:712, 300:1068])
    _, recs = _run(tmp_path, [sub], margin=[0, 0, 256, 0])  # the two left patch columns are off limits
    flagged = recs[0]["anomaly"]["patches"]
    assert flagged and min(p["x"] for p in flagged) >= 256


def test_a_one_channel_grey_frame_flies_in_the_colour_mission(tmp_path: Path) -> None:
    """A grey Navcam JPEG (one stored channel) in the Bayer rover mission was demosaic-skipped, passed on with one
    channel and failed mid-frame after its patches were queued (session 27 audit)."""
    y, x = np.mgrid[0:256, 0:384]
    grey = ((np.sin(x / 9.0) * np.cos(y / 13.0) + 1) * 100 + 20).astype(np.uint8)[:, :, None]
    _, recs = _run(tmp_path, [grey])
    assert recs[0]["status"] == "processed", recs[0].get("detail")
    assert recs[0]["camera"]["channels_replicated"] and recs[0]["camera"]["demosaiced"] is False


def test_a_frame_that_fails_after_queueing_withdraws_its_products(tmp_path: Path, monkeypatch) -> None:
    from edgeae.firmware_sim import frame_work

    def broken(self: object) -> object:
        raise RuntimeError("simulated failure after the patches were queued")

    monkeypatch.setattr(frame_work.FrameWork, "sparse_frame", broken)
    rgb = (np.random.default_rng(0).integers(0, 255, (256, 384, 3))).astype(np.uint8)
    _, recs = _run(tmp_path, [rgb])
    assert recs[0]["status"] == "dropped" and recs[0]["evicted_items"]
    import json

    items = json.loads((tmp_path / "queue" / "index.json").read_text())["items"]
    mine = [it for it in items if it["frame_id"] == recs[0]["frame_id"]]
    assert mine and all(it["status"] == "evicted" and it["reason"] == "frame_dropped" for it in mine)

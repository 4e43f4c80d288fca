"""Ground station audit fixes (session 29): strict JSON reports, the fill fallback, failure accounting, plain
mistakes before ``--out`` exists, addresses in network errors, ``--original`` folders."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeae.cli import main
from edgeae.ground.station import GroundStation, make_filler
from edgeae.wire.packets import SequenceCounters, WireConfig, packetise
from edgeae.wire.products import AnomalyPatch, SparseFrame, TelemetryRecord
from edgeae.wire.stream import write_packet_file


def _samples(shape: tuple[int, int, int]) -> np.ndarray:
    return (np.arange(np.prod(shape)).reshape(shape) % 251).astype(np.uint8)


def _frame(frame_id: int = 7, shape: tuple[int, int, int] = (32, 40, 3), keep: float = 0.2) -> SparseFrame:
    from edgeae.ground.sources import sparse_from_samples

    return sparse_from_samples(_samples(shape), 8, keep, 1, frame_id=frame_id)


def _bin(path: Path, packets: list[bytes]) -> Path:
    write_packet_file(path, [(float(i), p) for i, p in enumerate(packets)])
    return path


def _strict(text: str) -> Any:
    """JSON as a strict reader takes it: NaN and Infinity are errors."""

    def refuse(name: str) -> None:
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def _png(path: Path, shape: tuple[int, int, int]) -> Path:
    cv2 = pytest.importorskip("cv2")
    cv2.imwrite(str(path), _samples(shape)[:, :, ::-1] if shape[2] == 3 else _samples(shape)[:, :, 0])
    return path


# item 1: NaN / Infinity never reach a report


def test_a_lossless_frame_has_a_capped_psnr_and_strict_json_reports(tmp_path: Path) -> None:
    gs = GroundStation(out=tmp_path / "g")
    gs.default_original = _samples((32, 40, 3)).astype(np.float32) / 255
    for p in packetise(_frame(keep=1.0), config=WireConfig(256)):
        gs.receive(p)
    gs.finish()
    rep = _strict((tmp_path / "g" / "frame_7.json").read_text())
    assert rep["psnr"] == 120.0 and "identical" in rep["psnr_note"]  # the cap, not Infinity
    assert _strict((tmp_path / "g" / "stream.json").read_text())["products"]["frame_7"]["psnr"] == 120.0


def test_a_patch_with_a_nan_score_is_a_failed_product_not_a_nan_in_the_report(tmp_path: Path) -> None:
    ap = AnomalyPatch(3, 0, 0, 16, 1.0, _samples((16, 16, 1)), 8)
    object.__setattr__(ap, "score", float("inf"))  # a sender without the check
    gs = GroundStation(out=tmp_path)
    for p in packetise(ap, config=WireConfig(128)):
        assert gs.receive(p)  # CRC-valid: accepted, accounted as one product
    gs.finish()
    stream = _strict((tmp_path / "stream.json").read_text())
    assert stream["stream"]["products_failed"] == {"decode": 1}
    rep = stream["products"]["patch_3_0"]
    assert "score" not in rep and "not finite" in rep["error"] and rep["error_reason"] == "decode"
    assert not list(tmp_path.glob("patch_3_0.*png"))


def test_nan_telemetry_values_are_null_and_named(tmp_path: Path) -> None:
    gs = GroundStation(out=tmp_path)
    for p in packetise(TelemetryRecord(4, b'{"temp": NaN, "ok": 1.5, "v": [1, Infinity, {"w": -Infinity}]}')):
        gs.receive(p)
    gs.finish()
    rep = _strict((tmp_path / "telemetry_4.json").read_text())
    assert rep["telemetry"] == {"temp": None, "ok": 1.5, "v": [1, None, {"w": None}]}
    assert rep["telemetry_nonfinite"] == ["temp", "v[1]", "v[2].w"]


# item 4: a frame the --model cannot fill is filled classically, written and said why


def _broken_cae(image: np.ndarray, known: np.ndarray, notes: dict | None = None) -> np.ndarray:
    raise ValueError(f"the model expects 3 channels, the frame has {image.shape[2]}")


def test_a_frame_the_cae_cannot_fill_gets_the_classical_fill(tmp_path: Path) -> None:
    fallback, name = make_filler(None, "nearest")
    gs = GroundStation(out=tmp_path, fill=_broken_cae, fill_name="cae:x", fallback=fallback, fallback_name=name)
    for p in packetise(_frame(2, (24, 32, 1)), config=WireConfig(256)):
        gs.receive(p)
    rep = gs.finish()
    assert not rep["stream"]["products_failed"]
    fr = rep["products"]["frame_2"]
    assert fr["reconstruction"] == "nearest" and "expects 3 channels" in fr["fill_fallback"]
    assert (tmp_path / "frame_2.png").is_file() and (tmp_path / "frame_2_valid.png").is_file()
    assert gs.images[2].shape == (24, 32, 1) and gs.known[2].any()


def test_ground_decode_with_a_model_falls_back_per_frame(tmp_path: Path, capsys, monkeypatch) -> None:
    import edgeae.ground.station as station

    real = station.make_filler
    monkeypatch.setattr(station, "make_filler", lambda model, method="telea", *a: (
        (_broken_cae, f"cae:{model}") if model else real(None, method)))  # fmt: skip
    counters = SequenceCounters()
    pk = _bin(tmp_path / "a.bin", packetise(_frame(7, (24, 32, 1)), config=WireConfig(256), counters=counters))
    rc = main(["ground", "decode", str(pk), "--model", "m.onnx", "--method", "nearest", "--out", str(tmp_path / "g")])
    out = capsys.readouterr().out
    assert rc == 0
    assert (tmp_path / "g" / "frame_7.png").is_file() and (tmp_path / "g" / "frame_7_valid.png").is_file()
    assert "filled with nearest" in out and "expects 3 channels" in out


# items 15 and 16: a failed product is counted once and said once


def test_a_failed_product_is_counted_and_reported_once(tmp_path: Path, capsys) -> None:
    out = tmp_path / "g"
    (out / "frame_7.png").mkdir(parents=True)  # the image cannot be written ...
    (out / "frame_7.json").mkdir()  # ... nor its report
    pk = _bin(tmp_path / "a.bin", packetise(_frame(), config=WireConfig(256)))
    assert main(["ground", "decode", str(pk), "--out", str(out)]) == 1
    cap = capsys.readouterr()
    stream = _strict((out / "stream.json").read_text())
    assert stream["stream"]["products_failed"] == {"io": 1}
    assert "write_error" in stream["products"]["frame_7"]
    assert "products not rebuilt: io 1" in cap.out
    assert sum("frame_7" in line and "Is a directory" in line for line in (cap.out + cap.err).splitlines()) == 1


# items 10, 11, 12: plain mistakes exit 2 before --out is created, and say where


def test_plain_mistakes_leave_no_out_folder(tmp_path: Path, capsys) -> None:
    out = tmp_path / "g"
    head = tmp_path / "head.bin"
    head.write_bytes(b"EAPK")
    assert main(["ground", "decode", str(head), "--out", str(out)]) == 2
    assert "version missing" in capsys.readouterr().err and not out.exists()
    empty = tmp_path / "nothing"
    empty.mkdir()
    assert main(["ground", "decode", str(empty), "--out", str(out)]) == 2
    assert "no *.bin" in capsys.readouterr().err and not out.exists()
    rc = main(["ground", "serve", "--port", "0", "--out", str(out), "--ready-file", str(tmp_path / "no" / "p")])
    assert rc == 2 and "--ready-file" in capsys.readouterr().err and not out.exists()
    pk = _bin(tmp_path / "a.bin", packetise(_frame(7, (24, 32, 3)), config=WireConfig(256)))
    text = tmp_path / "notimg.png"  # a single --original that is no image: found before --out (was after the packets)
    text.write_text("not an image")
    assert main(["ground", "decode", str(pk), "--out", str(out), "--original", str(text)]) == 1  # unreadable: 1
    assert "notimg.png" in capsys.readouterr().err and not out.exists()


def test_a_busy_port_is_named_and_leaves_no_out_folder(tmp_path: Path, capsys) -> None:
    busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    busy.bind(("127.0.0.1", 0))
    port = busy.getsockname()[1]
    try:
        rc = main(["ground", "serve", "--port", str(port), "--out", str(tmp_path / "u"), "--idle-timeout", "1"])
    finally:
        busy.close()
    err = capsys.readouterr().err
    assert rc == 2 and f"udp://127.0.0.1:{port}" in err and "in use" in err
    assert not (tmp_path / "u").exists()


def test_original_folder_problems_are_refused_before_reading_or_noted(tmp_path: Path, capsys) -> None:
    pk = _bin(tmp_path / "a.bin", packetise(_frame(7, (24, 32, 3)), config=WireConfig(256)))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "frame_7.png").write_bytes(b"not an image at all")
    assert main(["ground", "decode", str(pk), "--out", str(tmp_path / "g1"), "--original", str(bad)]) == 1
    assert "frame_7.png" in capsys.readouterr().err and not (tmp_path / "g1").exists()
    two = tmp_path / "two"
    two.mkdir()
    _png(two / "frame_7.png", (24, 32, 3))
    _png(two / "frame_07.png", (24, 32, 3))
    assert main(["ground", "decode", str(pk), "--out", str(tmp_path / "g2"), "--original", str(two)]) == 2
    err = capsys.readouterr().err
    assert "2 files for frame 7 (frame_07.png, frame_7.png)" in err and not (tmp_path / "g2").exists()
    other = tmp_path / "other"
    other.mkdir()
    _png(other / "frame_8.png", (24, 32, 3))
    assert main(["ground", "decode", str(pk), "--out", str(tmp_path / "g3"), "--original", str(other)]) == 0
    rep = _strict((tmp_path / "g3" / "frame_7.json").read_text())
    assert "no original for frame 7" in rep["psnr_error"] and "psnr" not in rep
    assert "no PSNR: no original for frame 7" in capsys.readouterr().out


def test_image_samples_say_how_many_pixels_hold_no_data(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A float TIFF with NaN pixels went out as real zeros without a word (audit a2, item 19)."""
    tifffile = pytest.importorskip("tifffile")
    from edgeae.ground.sources import image_samples

    img = np.full((16, 16), 0.5, np.float32)
    img[2:4, 2:5] = np.nan
    path = tmp_path / "nan.tif"
    tifffile.imwrite(path, img)
    with caplog.at_level("WARNING", logger="edgeae.ground.sources"):
        samples, bits = image_samples(path)
    assert bits == 16 and samples[2, 2, 0] == 0
    assert "6 pixel(s) hold no data" in caplog.text

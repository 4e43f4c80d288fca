"""``edgeae downlink`` / ``edgeae ground`` in-process, and the UDP loopback path end to end."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edgeae.cli import main


@pytest.fixture()
def image(tmp_path: Path) -> Path:
    cv2 = pytest.importorskip("cv2")
    y, x = np.mgrid[0:80, 0:120]
    img = np.stack([x * 2, y * 3, (x + y)], axis=2).astype(np.uint8)
    p = tmp_path / "scene.png"
    cv2.imwrite(str(p), img[:, :, ::-1])
    return p


def test_simulate_then_decode(tmp_path: Path, image: Path) -> None:
    link = tmp_path / "link.toml"
    link.write_text("[link]\nseed = 2\nloss = 0.1\nber = 1e-5\nduplicate = 0.05\n")
    pk = tmp_path / "packets.bin"
    rc = main(
        [
            "downlink",
            "simulate",
            "--image",
            str(image),
            "--keep",
            "0.1",
            "--seed",
            "4",
            "--frame-id",
            "9",
            "--max-packet",
            "256",
            "--codec",
            "delta-deflate",
            "--link",
            str(link),
            "--out",
            str(pk),
        ]
    )
    assert rc == 0 and pk.is_file()
    sim = json.loads(pk.with_suffix(".json").read_text())
    assert sim["link_stats"]["offered_packets"] == sim["packets"] > 5
    assert sim["product"]["raw_bytes"] == 80 * 120 * 3
    out = tmp_path / "ground"
    rc = main(["ground", "decode", str(pk), "--out", str(out), "--original", str(image)])
    assert rc == 0
    rep = json.loads((out / "frame_9.json").read_text())
    assert rep["packets_expected"] == sim["packets"]
    assert rep["packets_received"] + rep["packets_lost"] + rep["packets_corrupt"] == rep["packets_expected"]
    assert rep["psnr"] > 22
    assert (out / "frame_9.png").is_file() and (out / "frame_9_valid.png").is_file()
    stream = json.loads((out / "stream.json").read_text())
    assert stream["stream"]["duplicates"] == sim["link_stats"]["duplicated_packets"]


def test_decode_reads_raw_pass_files_and_reports_garbage(tmp_path: Path, image: Path) -> None:
    from edgeae.ground.sources import image_samples, sparse_from_samples
    from edgeae.wire.packets import WireConfig, packetise

    s, bits = image_samples(image)
    pkts = packetise(sparse_from_samples(s, bits, 0.2, 1, frame_id=3), config=WireConfig(512))
    d = tmp_path / "passes"
    d.mkdir()
    (d / "pass_00001.bin").write_bytes(b"".join(pkts[:3]) + b"\x00garbage")
    (d / "pass_00002.bin").write_bytes(b"".join(pkts[3:]))
    out = tmp_path / "g"
    assert main(["ground", "decode", str(d), "--out", str(out)]) == 0
    rep = json.loads((out / "stream.json").read_text())
    assert rep["products"]["frame_3"]["packets_received"] == len(pkts)
    assert rep["stream"]["bytes_outside_packets"] == 8


def test_float_and_sixteen_bit_images_travel_with_their_values(tmp_path: Path) -> None:
    """A float image is sent as 16-bit samples of its values (not 0/1 counts of [0, 1]); a 16-bit frame is
    decoded into a 16-bit PNG whose received samples are those sent."""
    tifffile = pytest.importorskip("tifffile")
    from edgeae.ground.sources import image_samples
    from edgeae.imageio import read_image, write_image

    y, x = np.mgrid[0:48, 0:64]
    img = ((x + 2 * y) / (63 + 94)).astype(np.float32)
    tifffile.imwrite(tmp_path / "f.tif", img)
    s, bits = image_samples(tmp_path / "f.tif")
    assert bits == 16 and s.dtype == np.uint16
    assert np.abs(s[..., 0] / 65535.0 - img).max() <= 0.5 / 65535 + 1e-7
    deep = write_image(tmp_path / "d.png", img, bit_depth=16)
    pk, out = tmp_path / "p.bin", tmp_path / "g"
    assert main(["downlink", "simulate", "--image", str(deep), "--keep", "0.3", "--out", str(pk)]) == 0
    assert main(["ground", "decode", str(pk), "--out", str(out), "--original", str(deep)]) == 0
    frame = next(out.glob("frame_*[0-9].png"))
    got, sent = read_image(frame), read_image(deep)
    assert got.bit_depth == 16
    rx = read_image(frame.with_name(frame.stem + "_valid.png")).pixels[..., 0] > 0.5
    assert rx.any() and np.array_equal(got.pixels[rx], sent.pixels[rx])


def test_missing_file_is_a_clean_error(tmp_path: Path, capsys) -> None:
    assert main(["ground", "decode", str(tmp_path / "nope.bin"), "--out", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_udp_loopback_end_to_end(tmp_path: Path, image: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A ground-station server process, a sender through the lossy link, decode as packets arrive."""
    pk = tmp_path / "sent.bin"
    assert (
        main(
            [
                "downlink",
                "simulate",
                "--image",
                str(image),
                "--keep",
                "0.2",
                "--frame-id",
                "1",
                "--max-packet",
                "512",
                "--out",
                str(pk),
            ]
        )
        == 0
    )
    out = tmp_path / "live"
    ready = tmp_path / "port"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edgeae",
            "ground",
            "serve",
            "--port",
            "0",
            "--ready-file",
            str(ready),
            "--out",
            str(out),
            "--idle-timeout",
            "5",
            "--max-time",
            "30",
            "--original",
            str(image),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        t0 = time.monotonic()
        while not ready.exists() or not ready.read_text():
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() - t0 < 20, "server did not start"
            time.sleep(0.05)
        port = ready.read_text()
        link = tmp_path / "l.toml"
        link.write_text("[link]\nseed = 1\nloss = 0.2\nreorder = 0.3\nreorder_delay_s = 0.001\n")
        assert main(["downlink", "send", str(pk), "--port", port, "--link", str(link)]) == 0
        said = capsys.readouterr().out
        assert ", 0 unsent\n" in said and "contact window" not in said  # no window in this link: nothing unsent
        stdout, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stdout
    rep = json.loads((out / "stream.json").read_text())
    assert rep["serve"]["stopped"] == "end_of_transmission"
    f = rep["products"]["frame_1"]
    assert 0 < f["packets_lost"] < f["packets_expected"]
    assert f["packets_received"] + f["packets_lost"] == f["packets_expected"]
    assert f["psnr"] > 20
    assert (out / "frame_1.png").is_file()


def test_serve_in_process_decodes_complete_frames_on_arrival(tmp_path: Path, image: Path) -> None:
    from edgeae.ground.sources import image_samples, sparse_from_samples
    from edgeae.ground.station import GroundStation
    from edgeae.ground.transport import send_udp, serve_udp
    from edgeae.wire.packets import WireConfig, packetise

    s, bits = image_samples(image)
    pkts = packetise(sparse_from_samples(s, bits, 0.1, 1, frame_id=2), config=WireConfig(1024))
    gs = GroundStation()
    port: list[int] = []
    result: dict = {}
    th = threading.Thread(
        target=lambda: result.update(serve_udp(gs, port=0, idle_timeout=3, max_time=20, ready=port.append))
    )
    th.start()
    while not port:
        time.sleep(0.01)
    send_udp([(0.0, p) for p in pkts], port=port[0])
    th.join(25)
    assert result["serve"]["datagrams"] == len(pkts)
    assert result["products"]["frame_2"]["packets_lost"] == 0


def test_decode_says_why_there_is_no_psnr_and_checks_the_method(
    tmp_path: Path, image: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An original of another shape: the line says why there is no PSNR (was only in the JSON); an unknown
    --method is refused before any packet is read (was exit 0 with 'products not rebuilt')."""
    from edgeae.imageio import write_image

    pk = tmp_path / "p.bin"
    assert main(["downlink", "simulate", "--image", str(image), "--keep", "0.3", "--out", str(pk)]) == 0
    capsys.readouterr()
    other = write_image(tmp_path / "other.png", np.zeros((10, 10), np.uint8))
    assert main(["ground", "decode", str(pk), "--out", str(tmp_path / "g"), "--original", str(other)]) == 0
    assert "no PSNR: original shape" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["ground", "decode", str(pk), "--out", str(tmp_path / "g2"), "--method", "bogus"])
    assert exc.value.code == 2 and "invalid choice: 'bogus'" in capsys.readouterr().err
    # one original for a stream of two frames: refused (every frame was compared with that one image)
    pk2 = tmp_path / "p2.bin"
    argv = ["downlink", "simulate", "--image", str(image), "--keep", "0.3", "--frame-id", "1", "--out", str(pk2)]
    assert main(argv) == 0
    both = ["ground", "decode", str(pk), str(pk2), "--out", str(tmp_path / "g3"), "--original", str(image)]
    assert main(both) == 2 and "packets hold 2 frames (ids 0, 1)" in capsys.readouterr().err

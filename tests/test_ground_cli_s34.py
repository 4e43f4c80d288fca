"""Session 34 audit of ``edgeae ground serve`` / ``decode``: ``--original`` in serve (one image, a folder), a part
count no product can need, the restart advice for an unfinished serve session, why serve stopped, ``--decoder``
errors and the status line during a pass."""

from __future__ import annotations

import contextlib
import io
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edgeae.cli import main
from edgeae.ground.sources import sparse_from_samples
from edgeae.wire.packets import SequenceCounters, WireConfig, build_packet, packetise


def _frame(seed: int) -> np.ndarray:
    """A smooth 32 × 32 grey frame, different for each seed (a rebuild compares well only with its own)."""
    y, x = np.mgrid[0:32, 0:32]
    angle = seed * 1.3
    v = 128 + 100 * np.sin((x * np.cos(angle) + y * np.sin(angle)) / 5.0 + seed)
    return np.clip(v, 0, 255).astype(np.uint8)[..., None]


def _packets(frame_ids: list[int], ctr: SequenceCounters | None = None) -> list[bytes]:
    ctr = ctr or SequenceCounters()
    out: list[bytes] = []
    for i in frame_ids:
        out += packetise(sparse_from_samples(_frame(i), 8, 0.5, 7, frame_id=i), counters=ctr, config=WireConfig(256))
    return out


def _serve(tmp_path: Path, argv: list[str], send) -> tuple[int, str, str, dict]:  # type: ignore[no-untyped-def]
    """``main(["ground", "serve", ...])`` in this (the main) thread while ``send(port)`` runs in another; returns
    the exit status, stdout, stderr and stream.json."""
    ready, out = tmp_path / "port", tmp_path / "live"
    errors: list[BaseException] = []

    def sender() -> None:
        try:
            t0 = time.monotonic()
            while not (ready.exists() and ready.read_text()):
                assert time.monotonic() - t0 < 10, "serve did not start"
                time.sleep(0.01)
            send(int(ready.read_text()))
        except BaseException as exc:  # shown by the test, not lost in the thread
            errors.append(exc)

    th = threading.Thread(target=sender, daemon=True)
    th.start()
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        rc = main(["ground", "serve", "--port", "0", "--ready-file", str(ready), "--out", str(out), *argv])
    th.join(10)
    assert not errors, errors
    return rc, stdout.getvalue(), stderr.getvalue(), json.loads((out / "stream.json").read_text())


# ------------------------------------------------------------------------------------------------------------
# item 2: serve --original: one image is compared with the pass's first frame only; a folder by frame id


def test_serve_compares_one_original_image_with_the_first_frame_only(tmp_path: Path) -> None:
    """Was: every frame compared with that one image (frame_1 9.16 dB, frame_2 12.91 dB against the wrong image)."""
    from edgeae.ground.transport import send_udp
    from edgeae.imageio import write_image

    image = write_image(tmp_path / "lroc_0.png", _frame(0)[..., 0])
    pkts = _packets([0, 1, 2])
    rc, out, _, rep = _serve(
        tmp_path,
        ["--idle-timeout", "5", "--max-time", "30", "--original", str(image)],
        lambda port: send_udp([(0.0, p) for p in pkts], port=port),
    )
    assert rc == 0, out
    products = rep["products"]
    assert products["frame_0"]["psnr"] > 25
    for name in ("frame_1", "frame_2"):
        assert "psnr" not in products[name]
        assert "is one image, compared with the pass's first frame (0) only" in products[name]["psnr_error"]
    assert f"WARNING: --original {image} is one image" in out and "(ids 1, 2)" in out
    assert "frame_1: " in out and "no PSNR: --original" in out


def test_serve_takes_a_folder_of_originals_by_frame_id(tmp_path: Path) -> None:
    """Was refused ("serve takes --original as one image file") although --help promised a folder."""
    from edgeae.ground.transport import send_udp
    from edgeae.imageio import write_image

    folder = tmp_path / "origs"
    folder.mkdir()
    for i in (0, 1):  # none for frame 2
        write_image(folder / f"frame_{i}.png", _frame(i)[..., 0])
    pkts = _packets([0, 1, 2])
    rc, out, _, rep = _serve(
        tmp_path,
        ["--idle-timeout", "5", "--max-time", "30", "--original", str(folder)],
        lambda port: send_udp([(0.0, p) for p in pkts], port=port),
    )
    assert rc == 0, out
    products = rep["products"]
    assert products["frame_0"]["psnr"] > 25 and products["frame_1"]["psnr"] > 25
    assert "psnr" not in products["frame_2"]
    assert products["frame_2"]["psnr_error"] == f"no original for frame 2 in {folder} (a file whose name ends in 2)"
    assert "WARNING" not in out


def test_the_help_of_original_says_what_serve_does_with_it(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["ground", "serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "or a folder of them by frame id" in text and "the pass's first frame only" in text


# ------------------------------------------------------------------------------------------------------------
# item 8: a part count larger than the product's declared size can need is refused


def _patch_packet(parts: int, size: int = 64, channels: int = 1, part: int = 0, frame_id: int = 5) -> bytes:
    from edgeae.wire.layout import COMMON, PATCH

    n = 16
    body = COMMON.pack(2, 0, frame_id, part, parts) + PATCH.pack(0, 0, size, channels, 8, 0, 1.0, 0, n) + bytes(n)
    return build_packet(0x102, 0, body)


def test_a_part_count_no_product_can_need_is_refused_as_a_header_error() -> None:
    """Was: a 64-byte patch packet of a 64 × 64 grey patch claiming 65,535 parts was taken, and its product
    reported 65,534 lost packets (60,000 such packets: 582 MB, 180,000 files, 305 s)."""
    from edgeae.wire.parse import WireError, parse_packet

    assert parse_packet(_patch_packet(4096)).parts == 4096  # one sample a packet: the most a 64 × 64 grey patch needs
    with pytest.raises(WireError) as exc:
        parse_packet(_patch_packet(4097))
    assert exc.value.reason == "header" and "part count 4097 for a patch product of 4,096 samples" in str(exc.value)
    with pytest.raises(WireError, match="part count 65535"):
        parse_packet(_patch_packet(65535, size=8, channels=3))  # 192 samples
    # the other kinds: telemetry bytes, latent elements, sparse pixels
    from edgeae.wire.layout import COMMON, LATENT, TELEMETRY

    def tm(parts: int, total: int) -> bytes:
        return build_packet(0x103, 0, COMMON.pack(2, 0, 1, 0, parts) + TELEMETRY.pack(total, 0, 2) + b"{}")

    assert parse_packet(tm(2, 2)).parts == 2
    with pytest.raises(WireError, match="part count 3 for a telemetry product of 2 bytes"):
        parse_packet(tm(3, 2))
    empty = build_packet(0x103, 0, COMMON.pack(2, 0, 1, 0, 1) + TELEMETRY.pack(0, 0, 0))
    assert parse_packet(empty).parts == 1  # an empty record is one packet

    def lat(parts: int) -> bytes:  # 1 tile of (2, 1, 1): 2 elements
        head = LATENT.pack(b"ab12", 4, 4, 1, 4, 4, 1, 1, 0, 0.5, 2, 1, 1, 0, 2)
        return build_packet(0x101, 0, COMMON.pack(2, 0, 7, 0, parts) + head + bytes([255, 2]))

    assert parse_packet(lat(2)).parts == 2
    with pytest.raises(WireError, match="part count 3 for a latent product of 2 latent elements"):
        parse_packet(lat(3))
    frame = packetise(sparse_from_samples(np.full((2, 3, 1), 10, np.uint8), 8, 1.0, 1, frame_id=7))[0]
    forged = bytearray(frame[:-2])
    forged[6 + 8 : 6 + 10] = (7).to_bytes(2, "big")  # 7 parts for a 2 × 3 frame (6 pixels)
    with pytest.raises(WireError, match="part count 7 for a sparse product of 6 pixels"):
        parse_packet(build_packet(0x100, 0, bytes(forged[6:])))
    assert parse_packet(frame).parts == 1


def test_forged_part_counts_are_counted_as_refused_not_as_lost_packets() -> None:
    from edgeae.ground.reassembly import Receiver

    rx = Receiver()
    for fid in range(3):
        rx.receive(_patch_packet(65535, frame_id=fid))
    st = rx.stream_report()
    assert st["rejected"] == {"header": 3} and not rx.products
    assert st["packets_received"] == 3


# ------------------------------------------------------------------------------------------------------------
# item 9: the advice for an unfinished serve session keeps its recording


def test_an_unfinished_serve_session_is_named_and_its_recording_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Was: "remove that folder (or move it away) and rerun the same command" (which deletes received.bin, the only
    copy of the pass), and before any stream.json just "already holds a ground session (received.bin)"."""
    out = tmp_path / "live"
    out.mkdir()
    (out / "received.bin").write_bytes(b"EDGEAEPK\x01")  # killed during the pass: no stream.json yet
    argv = ["ground", "serve", "--port", "0", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "holds a serve session that did not finish (stopped before it wrote stream.json" in err
    assert f"edgeae ground decode {out / 'received.bin'} --out NEW_FOLDER" in err and "remove" not in err
    # killed during the final decode: stream.json says complete: false
    (out / "stream.json").write_text(json.dumps({"stream": {"complete": False, "products_not_decoded": 4}}))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "did not finish (stopped before its end" in err and "4 products not decoded" in err
    assert f"edgeae ground decode {out / 'received.bin'} --out NEW_FOLDER" in err and "remove" not in err
    assert sorted(p.name for p in out.iterdir()) == ["received.bin", "stream.json"]
    # a decode session (no recording there): the advice to decode again into it is unchanged
    (out / "received.bin").unlink()
    assert main(argv) == 2
    assert "remove that folder" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------------------
# item 10: why serve stopped; a pass cut by --max-time is exit status 1


def test_serve_says_why_it_stopped() -> None:
    from edgeae.cli.ground_output import serve_stop

    out = Path("o")

    def stop(why: str, n: int = 12) -> tuple[str, int | None]:
        return serve_stop({"stopped": why, "seconds": 3.5, "datagrams": n}, 10.0, 600.0, out)

    assert stop("end_of_transmission") == (
        "stopped: end-of-transmission packet received after 3.5 s (12 datagrams)",
        None,
    )
    line, code = stop("idle_timeout")
    assert code is None and "no packet for 10 s (--idle-timeout) after 12 datagrams" in line
    assert "the pass may be incomplete" in line
    assert stop("idle_timeout", 0) == ("stopped: no packet arrived in 10 s (--idle-timeout)", None)
    line, code = stop("max_time")
    assert code == 1 and line.startswith("WARNING: stopped at --max-time (600 s) before the end-of-transmission")
    assert "may be incomplete" in line
    assert stop("interrupted")[1] == 130 and stop("error: OSError: x")[1] == 1
    line, code = serve_stop({"stopped": "interrupted", "reception_stopped": "end_of_transmission"}, 10, 600, out)
    assert code == 130 and line.startswith("interrupted during the final decode (reception had stopped: end_of_")
    assert f"edgeae ground decode {out / 'received.bin'} --out NEW_FOLDER" in line


def test_a_pass_cut_by_max_time_says_so_and_exits_1(tmp_path: Path) -> None:
    """Was: exit 0 and nothing on the console (the reason only in stream.json serve.stopped)."""
    import socket

    big = np.tile(_frame(0), (4, 4, 1))  # 128 × 128: ~45 packets of 256 bytes
    pkts = packetise(sparse_from_samples(big, 8, 0.5, 7, frame_id=0), config=WireConfig(256))

    def send(port: int) -> None:  # still sending when --max-time is reached, no end-of-transmission packet
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            t0 = time.monotonic()
            for p in pkts:
                s.sendto(p, ("127.0.0.1", port))
                time.sleep(0.05)
                if time.monotonic() - t0 > 1.6:
                    break

    assert len(pkts) > 40  # ~2 s of sending at 0.05 s a packet
    rc, out, _, rep = _serve(tmp_path, ["--idle-timeout", "5", "--max-time", "1"], send)
    assert rep["serve"]["stopped"] == "max_time"
    assert rep["products"]["frame_0"]["packets_lost"] > 0  # the pass was cut: a frame in part
    assert rc == 1
    assert "WARNING: stopped at --max-time (1 s) before the end-of-transmission packet" in out.splitlines()[-1]


# ------------------------------------------------------------------------------------------------------------
# item 13: --decoder errors name the flag


def test_a_missing_decoder_or_model_names_its_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgeae.wire.stream import write_packet_file

    pk = tmp_path / "p.bin"
    write_packet_file(pk, [(0.0, p) for p in _packets([0])])
    for flag in ("--decoder", "--model"):
        out = tmp_path / f"g{flag}"
        assert main(["ground", "decode", str(pk), "--out", str(out), flag, "/nonexist.onnx"]) == 2
        err = capsys.readouterr().err
        assert f"error: {flag}: model file /nonexist.onnx does not exist; zoo models:" in err
        assert not out.exists()


# ------------------------------------------------------------------------------------------------------------
# item 11: a status line during the pass


def test_the_status_line_says_what_arrived_while_it_changes() -> None:
    from edgeae.cli.ground_output import PassStatus
    from edgeae.ground.station import GroundStation

    gs = GroundStation()
    buf = io.StringIO()
    pkts = _packets([0, 1])
    for p in pkts:
        gs.receiver.receive(p)
    status = PassStatus(gs, every=0.05, stream=buf)
    status.start()
    try:
        time.sleep(0.3)  # several periods: one line, then nothing while nothing changes
    finally:
        status.stop()
    assert buf.getvalue() == f"serve: {len(pkts)} packets so far, 2 products, 0 decoded\n"


# ------------------------------------------------------------------------------------------------------------
# review r1 of 23ae193 / a1001f5


def test_the_limits_warning_names_sequence_missing_only_where_serve_charged_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Item 3: ``ground decode --limit`` refusing a whole product said it was counted in sequence.<kind>.missing,
    which stayed 0 (only serve's receiver charges the datagrams its byte caps drop)."""
    from edgeae.cli.ground_output import print_report
    from edgeae.wire.stream import write_packet_file

    pkts = _packets([0, 1, 2])
    first = pkts[: len(_packets([0]))]
    pk = tmp_path / "three.bin"
    write_packet_file(pk, [(0.0, p) for p in pkts])
    limit = sum(map(len, first))  # frame 0's packets only: frames 1 and 2 refused whole
    out = tmp_path / "d1"
    assert main(["ground", "decode", str(pk), "--out", str(out), "--limit", f"max_session_bytes={limit}"]) == 1
    text = capsys.readouterr().out
    stream = json.loads((out / "stream.json").read_text())["stream"]
    refused = len(pkts) - len(first)
    assert stream["rejected"] == {"session_limit": refused} and stream["sequence"]["sparse"]["missing"] == 0
    assert (
        f"WARNING: {refused} packets refused by this station's limits (session_limit {refused}): the products "
        "below count them as lost (a product none of whose packets were kept has no line); raise the limit" in text
    )
    assert "sequence.<kind>.missing" not in text
    # serve's receiver charged its drops: the sequence counts say so
    seq = {"sparse": {**stream["sequence"]["sparse"], "missing": refused, "not_recorded": refused}}
    print_report({"stream": {**stream, "sequence": seq}, "products": {}})
    assert "or for a product none of whose packets were kept, in stream.json sequence.<kind>.missing" in (
        capsys.readouterr().out
    )


def test_serve_says_when_its_receiver_process_failed_or_was_stopped() -> None:
    """Items 1 and 6: a receiver error read as "stopped at --max-time"; one that died without a status, or was
    stopped by a signal to it alone, could exit 0 or 130."""
    from edgeae.cli.ground_output import serve_stop

    out = Path("o")
    err = "error: OSError: [Errno 28] No space left on device"
    line, code = serve_stop({"stopped": err, "reception_stopped": err, "datagrams": 31}, 3, 600, out)
    assert code == 1 and line.startswith(
        "stopped: the receiver process failed (OSError: [Errno 28] No space left on device) after 31 datagrams: "
        "nothing sent after that was recorded"
    )
    line, code = serve_stop({"stopped": "receiver_failed", "reception_stopped": "receiver_failed"}, 3, 600, out)
    assert code == 1 and line.startswith("stopped: the receiver process ended without a status (killed?)")
    sv = {"stopped": "receiver_interrupted", "reception_stopped": "interrupted", "receiver_signal": "SIGTERM"}
    line, code = serve_stop(sv, 3, 600, out)
    assert code == 1 and "stopped by SIGTERM (sent to it, not to this server)" in line
    # the server's own receive loop failing is still said as such
    line, code = serve_stop({"stopped": "error: ValueError: x", "reception_stopped": "interrupted"}, 3, 600, out)
    assert code == 1 and line.startswith("stopped: the receive loop failed (error: ValueError: x)")


def test_an_interrupted_session_that_decoded_everything_is_not_called_partial(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Item 4: a serve stopped by SIGTERM that decoded every product wrote complete: false, and a second session
    into its folder was told its outputs were partial."""
    out = tmp_path / "live"
    out.mkdir()
    (out / "received.bin").write_bytes(b"EDGEAEPK\x01")
    argv = ["ground", "serve", "--port", "0", "--out", str(out)]
    for stream in (  # as session 34 writes it, and as serve wrote it before
        {"complete": True, "interrupted": "SIGTERM", "products_not_decoded": 0},
        {"complete": False, "interrupted": "SIGTERM", "products_not_decoded": 0},
    ):
        (out / "stream.json").write_text(json.dumps({"stream": stream}))
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "already holds a ground session (stream.json, received.bin)" in err and "partial" not in err
    (out / "stream.json").write_text(
        json.dumps({"stream": {"complete": False, "interrupted": "SIGTERM", "products_not_decoded": 2}})
    )
    assert main(argv) == 2
    assert "did not finish (interrupted by SIGTERM; stream.json says complete: false, 2 products not decoded)" in (
        capsys.readouterr().err
    )

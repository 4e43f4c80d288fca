"""Ground station fixes of session 32 (audits a1, a2, a3): a second piece under one part is not a duplicate, the
console says which patches a frame's rebuild left out, a latent scale must hold in float32, memory refusals name
lighter fills and tell need from room, an ``--original`` is read only for a frame that is rebuilt, pipes and
foreign APIDs are named, and one ``--out`` takes one ground session at a time."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edgeae.cli import main
from edgeae.cli.ground_output import print_report
from edgeae.ground.reassembly import Receiver
from edgeae.ground.sources import sparse_from_samples
from edgeae.imageio import write_image
from edgeae.wire.packets import SequenceCounters, WireConfig, build_packet, packetise
from edgeae.wire.parse import WireError, parse_packet
from edgeae.wire.products import AnomalyPatch, LatentFrame, TelemetryRecord
from edgeae.wire.stream import PacketFileError, iter_packet_file, iter_stream_file, write_packet_file

H, W = 24, 32


def _counts(seed: int, shape: tuple[int, int, int] = (H, W, 1)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _bin(path: Path, packets: list[bytes]) -> Path:
    write_packet_file(path, [(i * 0.001, p) for i, p in enumerate(packets)])
    return path


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _frame_packets(ctr: SequenceCounters, seed: int, frame_id: int = 3) -> list[bytes]:
    return packetise(
        sparse_from_samples(_counts(seed), 8, 0.5, 9, frame_id=frame_id), counters=ctr, config=WireConfig(256)
    )


# ------------------------------------------------------------------------------------------------------------
# a1-3: a piece under a part already held, with other contents, is conflicting, not a duplicate


def test_a_second_frame_under_one_id_is_conflicting_not_duplicates(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    ctr = SequenceCounters()
    first, second = _frame_packets(ctr, 1), _frame_packets(ctr, 2)  # same id and headers, other samples
    assert len(first) == len(second) >= 2
    rc = main(["ground", "decode", str(_bin(tmp_path / "a.bin", first + second)), "--out", str(tmp_path / "o")])
    out = capsys.readouterr().out
    assert rc == 0
    st = _json(tmp_path / "o" / "stream.json")["stream"]
    n = len(first)
    assert (st["packets_accepted"], st["duplicates"], st["conflicting"]) == (n, 0, n)
    assert st["packets_received"] == st["packets_accepted"] + st["duplicates"] + st["conflicting"]
    assert _json(tmp_path / "o" / "frame_3.json")["packets_conflicting"] == n
    assert f"0 duplicates, {n} conflicting" in out
    assert f"WARNING: {n} packets came under a part of a product already received, with other contents" in out
    assert f"{n} with other contents under a part already received set aside" in out


def test_real_copies_and_resends_stay_duplicates() -> None:
    ctr = SequenceCounters()
    product = sparse_from_samples(_counts(1), 8, 0.5, 9, frame_id=3)
    pkts = packetise(product, counters=ctr, config=WireConfig(256))
    resend = packetise(product, counters=ctr, config=WireConfig(256), parts=[0])  # the same piece under a later count
    r = Receiver()
    for p in [*pkts, pkts[0], *resend]:  # a second recording of one packet, then a resend
        r.receive(p)
    assert (r.accepted, r.duplicates, r.conflicting) == (len(pkts), 2, 0)
    assert r.product_report(r.products[("sparse", 3, 0)])["packets_conflicting"] == 0


def test_a_patch_or_telemetry_record_sent_twice_with_other_contents_is_conflicting() -> None:
    ctr = SequenceCounters()
    a, b = _counts(1), _counts(2)
    pkts = packetise(AnomalyPatch(3, 8, 8, 8, 1.0, np.ascontiguousarray(a[8:16, 8:16])), counters=ctr)
    pkts += packetise(AnomalyPatch(3, 8, 8, 8, 1.0, np.ascontiguousarray(b[8:16, 8:16])), counters=ctr)
    pkts += packetise(TelemetryRecord(3, b'{"a": 1}'), counters=ctr)
    pkts += packetise(TelemetryRecord(3, b'{"a": 2}'), counters=ctr)  # same length, other content
    r = Receiver()
    for p in pkts:
        r.receive(p)
    assert (r.accepted, r.duplicates, r.conflicting) == (2, 0, 2)
    for key in (("patch", 3, 0), ("telemetry", 3, 0)):
        assert r.product_report(r.products[key])["packets_conflicting"] == 1
    assert r.stream_report()["conflicting"] == 2


# ------------------------------------------------------------------------------------------------------------
# a1-6 and a1-10: the frame's console line says which patches its rebuild used and left out; latent NaN/inf


def test_the_frame_line_counts_patches_pasted_and_left_out(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    ctr = SequenceCounters()
    c = _counts(5)
    c3 = _counts(6, (H, W, 3))
    wire = WireConfig(128)
    pkts = packetise(
        AnomalyPatch(3, 4, 4, 8, 1.0, np.ascontiguousarray(c[4:12, 4:12]), index=0), counters=ctr, config=wire
    )
    pkts += packetise(
        AnomalyPatch(3, 8, 8, 8, 1.0, np.ascontiguousarray(c3[8:16, 8:16]), index=1), counters=ctr, config=wire
    )
    pkts += _frame_packets(ctr, 5)
    rc = main(
        ["ground", "decode", str(_bin(tmp_path / "p.bin", pkts)), "--out", str(tmp_path / "o"), "--method", "nearest"]
    )
    out = capsys.readouterr().out
    assert rc == 0
    rep = _json(tmp_path / "o" / "frame_3.json")
    assert rep["patches_used"] == 1 and [p["patch"] for p in rep["patches_not_used"]] == [1]
    frame_line = next(line for line in out.splitlines() if line.startswith("frame_3:"))
    assert frame_line.endswith(", 1 patches pasted, 1 not used (see frame_3.json)")
    patch_line = next(line for line in out.splitlines() if line.startswith("patch_3_1:"))
    assert "(not used in its frame: 3 channel(s), the frame has 1)" in patch_line
    assert "not used" not in next(line for line in out.splitlines() if line.startswith("patch_3_0:"))


def test_a_latent_frame_with_nonfinite_values_says_so_on_its_line(capsys) -> None:  # type: ignore[no-untyped-def]
    stream = {"packets_received": 35, "packets_accepted": 35, "duplicates": 0, "rejected": {}, "sequence": {}}
    rep = {"packets_received": 35, "packets_expected": 35, "packets_lost": 0, "packets_corrupt": 0}
    print_report({"stream": stream, "products": {"latent_3": {**rep, "latent_nonfinite": 1200}}})
    assert "latent_3: 35/35 packets, 0 lost, 0 corrupt, 1,200 latent values NaN or infinite" in capsys.readouterr().out
    note = (
        "1,200 of 1,500 latent values not received (1,200 of them NaN or infinite), decoded as 0: the image is partial"
    )
    print_report({"stream": stream, "products": {"latent_3": {**rep, "latent_nonfinite": 1200, "image_note": note}}})
    assert f"latent_3: 35/35 packets, 0 lost, 0 corrupt ({note})" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------------------
# a1-8: an int8 latent scale must be a positive, finite float32 (the ground computes q * scale in float32)


def _latent_packet(scale: float) -> bytes:
    q = np.array([-1, 2], dtype=np.int8).reshape(1, 2, 1, 1)
    frame = LatentFrame(0, "ab12", 4, 4, 1, 4, 4, 1, 1, 1.0, "int8", q)
    object.__setattr__(frame, "scale", scale)  # past the sender's own check: a hostile or broken sender
    return packetise(frame)[0]


@pytest.mark.parametrize("scale", [1e300, 1e37, 1e-300, 1e-40])
def test_a_latent_scale_outside_float32_is_refused(scale: float) -> None:
    with pytest.raises(WireError, match="latent scale") as err:
        parse_packet(_latent_packet(scale))
    assert err.value.reason == "header"


@pytest.mark.parametrize("scale", [0.5, 1e-30, 2e36])
def test_a_latent_scale_inside_float32_is_taken(scale: float) -> None:
    pkt = parse_packet(_latent_packet(scale))
    assert pkt.header["scale"] == scale
    assert np.isfinite(np.float32(scale) * np.float32(-128))


# ------------------------------------------------------------------------------------------------------------
# a1-9, a3-2: a memory refusal names only lighter fills and tells the need (with its margin) from the room


def test_a_memory_refusal_names_only_lighter_fills_and_its_margin() -> None:
    from edgeae.ground import limits

    need = limits.rebuild_bytes(1000, 1000, 1, "nearest")
    with pytest.raises(limits.LimitError) as err:  # fits without the margin, not with it
        limits.check_memory("sparse", 3, 1000, 1000, 1, "nearest", available=int(need * 1.1))
    msg = str(err.value)
    assert "with the x1.25 safety margin" in msg
    shown = msg.split("needs about ")[1]
    need_s, margin_s = shown.split(" to rebuild")[0], shown.split("(")[1].split(" with")[0]
    avail_s = msg.split("), ")[1].split(" is available")[0]
    assert len({need_s, margin_s, avail_s}) == 3, msg
    lighter = msg.split("with --method ")[1].split(":")[0].split(" or ")
    assert "nearest" not in lighter and set(lighter) == {"ns", "telea"}  # 34.2 and 36.8 B a grey pixel, not 45.9
    with pytest.raises(limits.LimitError, match="no --method fill is lighter than ns for this frame"):
        limits.check_memory("sparse", 3, 1000, 1000, 1, "ns", available=1)


def test_an_original_is_not_read_for_a_frame_refused_for_memory(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    import edgeae.ground.limits as limits
    import edgeae.ground.sources as sources

    write_image(tmp_path / "orig.png", _counts(1), bit_depth=8)
    pkts = _frame_packets(SequenceCounters(), 1)
    read: list[object] = []
    real = sources.image_samples
    monkeypatch.setattr(sources, "image_samples", lambda *a, **k: read.append(a) or real(*a, **k))
    monkeypatch.setattr(limits, "available_memory", lambda: 1 << 10)
    args = ["ground", "decode", str(_bin(tmp_path / "a.bin", pkts)), "--original", str(tmp_path / "orig.png")]
    assert main([*args, "--out", str(tmp_path / "o")]) == 1
    assert _json(tmp_path / "o" / "frame_3.json")["error_reason"] == "memory"
    assert read == []  # the original was never decoded for a frame that is not rebuilt
    monkeypatch.setattr(limits, "available_memory", lambda: None)
    assert main([*args, "--out", str(tmp_path / "o2")]) == 0
    assert len(read) == 1 and _json(tmp_path / "o2" / "frame_3.json")["psnr"] > 0  # read when compared


# ------------------------------------------------------------------------------------------------------------
# a1-11: pipes and foreign APIDs are named


def _feed_fifo(fifo: Path, seconds: float = 3.0) -> None:
    """Write a packet-file header into ``fifo`` each time something opens it for reading, for ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # no reader yet
            time.sleep(0.01)
            continue
        with contextlib.suppress(OSError):
            os.write(fd, b"EAPK\x01")
        os.close(fd)
        time.sleep(0.05)  # the reader has it; the next open of it is fed again


def test_a_pipe_is_refused_with_its_name(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    fifo = tmp_path / "rx.fifo"
    os.mkfifo(fifo)
    threading.Thread(target=_feed_fifo, args=(fifo,), daemon=True).start()  # a reader that opens it never hangs
    assert main(["ground", "decode", str(fifo), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"packet file {fifo} is not a regular file (a pipe or a device)" in err
    assert not (tmp_path / "o").exists()
    r, w = os.pipe()
    os.write(w, b"EAPK\x01")
    os.close(w)
    try:
        for reader in (iter_packet_file, iter_stream_file):
            with pytest.raises(PacketFileError, match="not a regular file"):
                list(reader(f"/dev/fd/{r}"))
    finally:
        os.close(r)


@pytest.mark.parametrize("raw", [False, True])
def test_packets_of_other_apids_are_counted_by_apid(tmp_path: Path, raw: bool, capsys) -> None:  # type: ignore[no-untyped-def]
    pkts = _frame_packets(SequenceCounters(), 1)
    other = [build_packet(0x123, 5, bytes(30)), build_packet(0x123, 6, bytes(30)), build_packet(0x45, 0, bytes(20))]
    stream = [pkts[0], *other, *pkts[1:]]
    path = tmp_path / "s.raw"
    if raw:
        path.write_bytes(b"".join(stream))
    else:
        _bin(path, stream)
    assert main(["ground", "decode", str(path), "--out", str(tmp_path / "o")]) == 0
    st = _json(tmp_path / "o" / "stream.json")["stream"]
    assert st["rejected"] == {"apid": 3} and st["rejected_apids"] == {"0x045": 1, "0x123": 2}
    assert st["bytes_outside_packets"] == 0
    assert "3 valid packets under APIDs this ground does not decode (0x045: 1, 0x123: 2)" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------------------
# a2-3: one ground session per --out


def test_a_folder_held_by_another_session_is_refused_and_left_alone(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from edgeae.folder_lock import LOCK_NAME, hold

    pkts = _bin(tmp_path / "a.bin", _frame_packets(SequenceCounters(), 1))
    out = tmp_path / "o"
    out.mkdir()
    (out / "frame_0.png").write_bytes(b"the first session's")
    with hold(out, "ground session"):
        before = sorted(p.name for p in out.iterdir())
        for args in (
            ["ground", "decode", str(pkts), "--out", str(out)],
            ["ground", "serve", "--port", "0", "--idle-timeout", "1", "--out", str(out)],
        ):
            assert main(args) == 2
            err = capsys.readouterr().err
            assert f"{out} is in use by another ground session (pid {os.getpid()}" in err
            assert sorted(p.name for p in out.iterdir()) == before
    assert (out / "frame_0.png").read_bytes() == b"the first session's"
    (out / LOCK_NAME).write_text("pid 1, left by a killed run")  # a lock file alone is no session
    assert main(["ground", "decode", str(pkts), "--out", str(out)]) == 0
    assert (out / "stream.json").exists() and not (out / LOCK_NAME).exists()


def test_the_folder_is_held_while_the_session_runs(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from edgeae.cli import ground as cli_ground
    from edgeae.folder_lock import FolderBusy, hold

    out = tmp_path / "new" / "o"  # created by the session, then held
    seen: list[str] = []
    real = cli_ground._decode

    def during(args, gs, signal_name):  # type: ignore[no-untyped-def]
        try:
            with hold(out, "test"):
                seen.append("free")
        except FolderBusy:
            seen.append("held")
        return real(args, gs, signal_name)

    monkeypatch.setattr(cli_ground, "_decode", during)
    pkts = _bin(tmp_path / "a.bin", _frame_packets(SequenceCounters(), 1))
    assert main(["ground", "decode", str(pkts), "--out", str(out)]) == 0
    assert seen == ["held"]


# ------------------------------------------------------------------------------------------------------------
# a2-10: --out that cannot be a folder, or that is an input folder


def test_out_below_a_file_or_in_an_input_folder_is_refused(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    pkts = _frame_packets(SequenceCounters(), 1)
    folder = tmp_path / "downlink"
    folder.mkdir()
    _bin(folder / "pass_00000.bin", pkts)
    (tmp_path / "same.png").write_bytes(b"x")
    originals = tmp_path / "orig"
    originals.mkdir()
    write_image(originals / "frame_3.png", _counts(1), bit_depth=8)
    cases = {
        str(tmp_path / "same.png" / "x"): f"cannot create the output folder --out {tmp_path / 'same.png' / 'x'}: "
        f"{tmp_path / 'same.png'} is a file, not a folder",
        str(folder) + "/": f"is the packet folder {folder}",
        str(originals): f"is the --original folder {originals}",
    }
    for out, want in cases.items():
        rc = main(["ground", "decode", str(folder), "--original", str(originals), "--out", out])
        err = capsys.readouterr().err
        assert rc == 2 and want in err and "Errno" not in err, err
    assert sorted(p.name for p in folder.iterdir()) == ["pass_00000.bin"]
    assert sorted(p.name for p in originals.iterdir()) == ["frame_3.png"]


def test_the_cli_station_keeps_no_frame_after_writing_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``ground decode`` held every frame's rebuild for the whole session (~3.4 MB per 512x512 RGB frame: 80 frames
    362 MB, audit s32-a1): the CLI's station keeps none."""
    from edgeae.ground import station as station_module

    made: list[station_module.GroundStation] = []
    real_init = station_module.GroundStation.__init__

    def spy(self: station_module.GroundStation, *a: object, **k: object) -> None:
        real_init(self, *a, **k)  # type: ignore[arg-type]
        made.append(self)

    monkeypatch.setattr(station_module.GroundStation, "__init__", spy)
    ctr = SequenceCounters()
    f = _bin(tmp_path / "f.bin", _frame_packets(ctr, 1, 1) + _frame_packets(ctr, 2, 2))
    assert main(["ground", "decode", str(f), "--out", str(tmp_path / "o"), "--method", "nearest"]) == 0
    assert made and all(not gs.keep_images and not gs.images and not gs.known for gs in made)
    assert (tmp_path / "o" / "frame_1.png").is_file() and (tmp_path / "o" / "frame_2.png").is_file()


@pytest.mark.parametrize("scale", [1e300, 1e37, 1e-300, 1e-40, float("nan")])
def test_a_sender_cannot_build_a_latent_scale_the_ground_refuses(scale: float) -> None:
    """The ground refuses a scale outside float32 (1e300 overflowed to inf there); the sender built it without a
    word (fixer's note, s32)."""
    with pytest.raises(ValueError, match="positive normal float32"):
        LatentFrame(0, "ab12", 4, 4, 1, 4, 4, 1, 1, scale, "int8", np.zeros((1, 2, 1, 1), np.int8))


def test_a_nearly_silent_encoder_output_is_sent_not_refused_by_the_sender() -> None:
    """max |z| <= ~1.5e-36 gave a scale below float32's normals: the sender raised and the frame was lost on board
    (review s32); the scale is clamped to the smallest normal, q stays within +-127."""
    from edgeae.ground.pipeline import encode_latents

    lf = encode_latents(np.full((16, 16, 1), 90, np.uint8), 8, lambda x: np.full((len(x), 1, 2, 2), 1e-39, np.float32),
                        tile=16)  # fmt: skip
    assert lf.scale == float(np.finfo(np.float32).tiny) and int(np.abs(lf.latents).max()) <= 127


def test_a_frame_compared_with_its_original_counts_that_in_its_memory_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--original`` is read when the frame is compared, after the memory check, which did not count it (review
    s32: a 2048² RGB frame peaked 529 MB with it, 307 without)."""
    from edgeae.ground import limits
    from edgeae.ground.station import GroundStation

    h, w, c = 512, 512, 3
    need = limits.rebuild_bytes(h, w, c, "telea", model_loaded=True)
    room = int(need * limits.MEMORY_MARGIN) + 1
    limits.check_memory("sparse", 1, h, w, c, "telea", available=room)  # fits without the comparison
    with pytest.raises(limits.LimitError, match="and compare with its --original"):
        limits.check_memory("sparse", 1, h, w, c, "telea", available=room, original=True)

    from edgeae.cli.ground_originals import _LazyOriginals

    gs = GroundStation(fill_name="telea")
    gs.originals = _LazyOriginals({7: Path("frame_7.png")}, None, {})  # files known, nothing read
    assert gs._has_original(7) and not gs._has_original(8)
    gs2 = GroundStation(fill_name="telea", originals={8: np.zeros((2, 2, 1), np.float32)})
    assert gs2._has_original(8) and not gs2._has_original(7)


@pytest.mark.parametrize(("h", "w", "c", "keep", "size", "band_rows"), [
    (600, 500, 1, 0.02, 1024, 0), (600, 500, 3, 0.1, 1024, 0), (400, 300, 1, 0.25, 512, 64),
    (300, 640, 3, 0.05, 4096, 0), (2048, 5064, 1, 0.02, 1024, 64),
])  # fmt: skip
def test_the_raw_packet_estimate_is_what_the_packetiser_sends(
    h: int, w: int, c: int, keep: float, size: int, band_rows: int
) -> None:
    """The flight's check estimated layout 1's per-row packets, about 2x too many for layout 2 (NAC strip at keep
    0.02: 12,073 against 5,604), and refused missions that fit (audit s32-a6)."""
    from edgeae.wire.sparse import raw_packet_estimate

    samples = np.random.default_rng(h + w).integers(0, 256, (h, w, c), dtype=np.uint8)
    cfg = WireConfig(size, band_rows=band_rows)
    sent = len(packetise(sparse_from_samples(samples, 8, keep, seed=3), config=cfg))
    est = raw_packet_estimate(h, w, keep, c, 1, cfg)
    assert sent <= est <= sent * 1.05 + 3, (est, sent)  # an upper bound, and a tight one


def test_the_orbital_mission_s_packet_estimate_matches_the_wire_planner() -> None:
    from edgeae.firmware_sim.frame_intake import sparse_packet_estimate
    from edgeae.firmware_sim.mission import load_mission

    m = load_mission("orbital_nac")
    est = sparse_packet_estimate(m, m.camera.width, m.camera.height)
    assert 5604 <= est <= 5604 * 1.02  # the wire planner's count at the expected number of kept pixels, and a margin


@pytest.mark.parametrize("seed", range(8))
def test_the_raw_packet_estimate_bounds_every_uniform_mask(seed: int) -> None:
    """A uniform mask keeps each pixel with probability keep: frames came out above an estimate made at the
    expected count for some seeds (review s32: -2..+2 packets at rover size)."""
    from edgeae.wire.sparse import raw_packet_estimate

    samples = np.zeros((1200, 1648, 3), np.uint8)  # the rover camera
    cfg = WireConfig(1024)
    sent = len(packetise(sparse_from_samples(samples, 8, 0.05, seed=seed), config=cfg))
    assert sent <= raw_packet_estimate(1200, 1648, 0.05, 3, 1, cfg)


def test_the_station_counts_the_original_in_a_frame_s_memory_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check must be wired through the station, not only exist in limits (review s32)."""
    from edgeae.ground import limits
    from edgeae.ground.station import GroundStation

    ctr = SequenceCounters()
    need = limits.rebuild_bytes(H, W, 1, "telea", model_loaded=True)
    monkeypatch.setattr(limits, "available_memory", lambda: int(need * limits.MEMORY_MARGIN) + 1)
    for originals, failed in (({}, {}), ({3: np.zeros((H, W, 1), np.float32)}, {"memory": 1})):
        gs = GroundStation(fill_name="telea", originals=originals)
        for p in _frame_packets(ctr, 1):
            gs.receive(p)
        assert gs.finish(write=False)["stream"]["products_failed"] == failed

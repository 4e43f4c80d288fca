"""Several packet files decoded together: one stream, or captures of their own (session 30).

Two captures whose sequence counts restart (two `downlink simulate` runs, two missions) used to merge into one
stream: frames under one id were set aside or taken for resends, and damaged packets of one were attributed to
counts of the other. Flight passes (counts continuing from pass to pass, a frame spanning two files) and two
receptions of one transmission must still merge. The pass files here come from the flight queue itself
(`firmware_sim.queue.DownlinkQueue`, which stamps the counts at send time).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeae.cli import main
from edgeae.ground.reassembly import SEQUENCE_SCOPE, Receiver
from edgeae.ground.sources import sparse_from_samples
from edgeae.imageio import read_image, write_image
from edgeae.masks import make_mask
from edgeae.wire.layout import APIDS
from edgeae.wire.packets import SequenceCounters, WireConfig, packetise
from edgeae.wire.products import SparseFrame
from edgeae.wire.stream import write_packet_file
from firmware_sim.queue import DownlinkQueue

WIRE = WireConfig(256)


def _image(value_seed: int, shape: tuple[int, int, int] = (32, 40, 3)) -> np.ndarray:
    return np.random.default_rng(value_seed).integers(0, 256, shape, dtype=np.uint8)


def _frame(image: np.ndarray, frame_id: int = 0, keep: float = 1.0) -> SparseFrame:
    return sparse_from_samples(image, 8, keep, 1, frame_id=frame_id)


def _bin(path: Path, packets: list[bytes]) -> Path:
    write_packet_file(path, [(float(i), p) for i, p in enumerate(packets)])
    return path


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _pixels(path: Path) -> np.ndarray:
    return np.round(read_image(path).pixels * 255).astype(np.uint8)


def _mission(root: Path, frames: list[SparseFrame], budget: int) -> list[Path]:
    """The flight queue's pass files for ``frames`` (queued in order, sent ``budget`` bytes a pass)."""
    q = DownlinkQueue(root / "queue", 1 << 24)
    for fr in frames:
        q.put("sparse", fr.frame_id, packetise(fr, config=WIRE))
    q.save()
    passes = []
    while q.pending():
        passes.append(Path(q.downlink_pass(budget, root / "downlink").path))
    return passes


def test_two_captures_whose_counts_restart_are_decoded_apart(tmp_path: Path, capsys) -> None:
    a_img, b_img = _image(1), _image(2)
    a = packetise(_frame(a_img), config=WIRE, counters=SequenceCounters())  # each capture counts from 0
    b = packetise(_frame(b_img), config=WIRE, counters=SequenceCounters())
    originals = tmp_path / "orig"
    write_image(originals / "frame_0.png", a_img)
    out = tmp_path / "g"
    argv = ["ground", "decode", str(_bin(tmp_path / "a.bin", a)), str(_bin(tmp_path / "b.bin", b)), "--out", str(out)]
    assert main([*argv, "--original", str(originals)]) == 0
    said = capsys.readouterr().out
    assert "WARNING: " in said and "b.bin does not continue the stream" in said and "capture 2" in said
    # both frames rebuilt, each from its own packets (was: one frame_0, the other's packets set aside)
    ra, rb = _json(out / "frame_0.json"), _json(out / "capture_2" / "frame_0.json")
    assert (ra["packets_received"], ra["packets_inconsistent"]) == (len(a), 0)
    assert (rb["packets_received"], rb["packets_inconsistent"], rb["packets_lost"]) == (len(b), 0, 0)
    assert np.array_equal(_pixels(out / "frame_0.png"), a_img)
    assert np.array_equal(_pixels(out / "capture_2" / "frame_0.png"), b_img)
    # one frame id in two captures: which of them the --original shows is not known, so neither gets a PSNR
    assert "2 captures" in ra["psnr_error"] and "2 captures" in rb["psnr_error"]
    caps = _json(out / "stream.json")["stream"]["captures"]
    assert [c["out"] for c in caps] == [".", "capture_2"]
    assert [c["packets_received"] for c in caps] == [len(a), len(b)]
    assert "count 0 was already received with other contents" in caps[1]["reason"]
    st2 = _json(out / "capture_2" / "stream.json")["stream"]
    assert st2["capture"] == 2 and st2["packets_accepted"] == len(b) and st2["sequence"]["sparse"]["missing"] == 0


def test_a_restart_with_the_same_headers_is_not_taken_for_resends(tmp_path: Path) -> None:
    """Capture a is 10,000 counts into its mission, b counts from 0 (unwrapped past a's counts, so no count is
    received twice) with the same frame-level headers: b's pieces were dropped as resends of a's."""
    a_img, b_img = _image(3), _image(4)
    a = packetise(_frame(a_img), config=WIRE, counters=SequenceCounters({APIDS["sparse"]: 10_000}))
    b = packetise(_frame(b_img), config=WIRE, counters=SequenceCounters())
    r = Receiver()
    for p in a:
        r.receive(p)
    assert "a piece with the same headers arrives at count 0" in (r.clash(b[0]) or "")
    assert r.clash(a[3]) is None  # a copy of a packet received continues the stream
    out = tmp_path / "g"
    assert main(["ground", "decode", str(_bin(tmp_path / "a.bin", a)), str(_bin(tmp_path / "b.bin", b)), "--out",
                 str(out)]) == 0  # fmt: skip
    assert _json(out / "frame_0.json")["packets_received"] == len(a)
    assert _json(out / "capture_2" / "frame_0.json")["packets_received"] == len(b)
    assert np.array_equal(_pixels(out / "capture_2" / "frame_0.png"), b_img)
    assert _json(out / "stream.json")["stream"]["duplicates"] == 0


def test_flight_passes_stay_one_stream_and_a_second_mission_is_its_own(tmp_path: Path, capsys) -> None:
    """Counts continue from pass to pass and a frame spans passes: one stream. A second mission (fresh queue,
    frame ids and counts from 0 again) given in the same decode is a capture of its own, both passes of it."""
    frames = [_frame(_image(10 + i), i, 0.5) for i in range(3)]
    budget = sum(map(len, packetise(frames[0], config=WIRE))) * 2 // 3  # each frame spans two passes
    one = _mission(tmp_path / "m1", frames, budget)
    assert len(one) >= 4
    out = tmp_path / "g1"
    assert main(["ground", "decode", str(tmp_path / "m1" / "downlink"), "--out", str(out)]) == 0
    assert not (out / "capture_2").exists() and "WARNING" not in capsys.readouterr().out
    st = _json(out / "stream.json")
    assert "captures" not in st["stream"] and st["stream"]["sequence"]["sparse"]["missing"] == 0
    for i in range(3):
        rep = st["products"][f"frame_{i}"]
        assert (rep["packets_received"], rep["packets_lost"]) == (rep["packets_expected"], 0)
    two = _mission(tmp_path / "m2", [_frame(_image(20), 0, 0.5)], budget)
    assert len(two) == 2
    out2 = tmp_path / "g2"
    assert main(["ground", "decode", str(tmp_path / "m1" / "downlink"), str(tmp_path / "m2" / "downlink"), "--out",
                 str(out2)]) == 0  # fmt: skip
    caps = _json(out2 / "stream.json")["stream"]["captures"]
    assert [c["files"] for c in caps] == [[str(p) for p in one], [str(p) for p in two]]
    rep = _json(out2 / "capture_2" / "frame_0.json")
    assert (rep["packets_received"], rep["packets_inconsistent"]) == (rep["packets_expected"], 0)
    assert _json(out2 / "frame_0.json")["packets_inconsistent"] == 0


def test_two_receptions_of_one_transmission_are_one_stream(tmp_path: Path) -> None:
    """Two stations, or two recordings, of the same packets with different losses: merged, each loss filled."""
    img = _image(5)
    pkts = packetise(_frame(img), config=WIRE, counters=SequenceCounters())
    first = _bin(tmp_path / "rx1.bin", [p for i, p in enumerate(pkts) if i % 3 != 0])
    second = _bin(tmp_path / "rx2.bin", [p for i, p in enumerate(pkts) if i % 3 != 1])
    out = tmp_path / "g"
    assert main(["ground", "decode", str(first), str(second), "--out", str(out)]) == 0
    assert not (out / "capture_2").exists()
    rep = _json(out / "frame_0.json")
    assert (rep["packets_received"], rep["packets_lost"]) == (len(pkts), 0)
    assert np.array_equal(_pixels(out / "frame_0.png"), img)


def test_two_streams_mixed_in_one_file_are_counted_and_said(tmp_path: Path, capsys) -> None:
    """One file cannot be split: packets under counts received already with other contents are counted
    (`count_conflicts`) and said in a WARNING line."""
    a = packetise(_frame(_image(6)), config=WIRE, counters=SequenceCounters())
    b = packetise(_frame(_image(7, (20, 24, 1))), config=WIRE, counters=SequenceCounters())
    out = tmp_path / "g"
    assert main(["ground", "decode", str(_bin(tmp_path / "mixed.bin", a + b)), "--out", str(out)]) == 0
    assert "WARNING: " in capsys.readouterr().out
    seq = _json(out / "stream.json")["stream"]["sequence"]["sparse"]
    assert seq["count_conflicts"] == min(len(a), len(b))


def test_what_the_sequence_counts_can_and_cannot_see(tmp_path: Path) -> None:
    """A frame sent whole in pass 2: lost with that pass, it is counted missing when passes 1 and 3 are
    decoded together (inside their counts) but cannot be seen from pass 3 alone; stream.json says where the
    counts it checked start and end, and that nothing outside them can be seen."""
    frames = [_frame(_image(30 + i), i, 0.5) for i in range(3)]
    sizes = [sum(map(len, packetise(f, config=WIRE))) for f in frames]
    assert len(set(sizes)) == 1
    passes = _mission(tmp_path / "m", frames, budget=sizes[0])  # one frame a pass
    n = len(packetise(frames[1], config=WIRE))
    assert len(passes) == 3
    out = tmp_path / "g13"
    assert main(["ground", "decode", str(passes[0]), str(passes[2]), "--out", str(out)]) == 0
    seq = _json(out / "stream.json")["stream"]["sequence"]["sparse"]
    assert (seq["missing"], seq["missing_ranges"], seq["first_count"], seq["last_count"]) == (
        n, [[n, 2 * n - 1]], 0, 3 * n - 1
    )  # fmt: skip
    out = tmp_path / "g3"
    assert main(["ground", "decode", str(passes[2]), "--out", str(out)]) == 0
    st = _json(out / "stream.json")["stream"]
    assert (st["sequence"]["sparse"]["missing"], st["sequence"]["sparse"]["first_count"]) == (0, 2 * n)
    assert st["sequence_scope"] == SEQUENCE_SCOPE and "cannot be seen" in SEQUENCE_SCOPE


@pytest.mark.parametrize("lost_first", [False, True])
def test_a_capture_is_recognised_even_when_its_first_counterpart_was_lost(tmp_path: Path, lost_first: bool) -> None:
    a = packetise(_frame(_image(8)), config=WIRE, counters=SequenceCounters())
    b = packetise(_frame(_image(9)), config=WIRE, counters=SequenceCounters())
    out = tmp_path / "g"
    kept = a[1:] if lost_first else a  # a's count 0 lost: b's count 0 is new there, its count 1 is not
    assert main(["ground", "decode", str(_bin(tmp_path / "a.bin", kept)), str(_bin(tmp_path / "b.bin", b)), "--out",
                 str(out)]) == 0  # fmt: skip
    assert _json(out / "capture_2" / "frame_0.json")["packets_received"] == len(b)
    assert _json(out / "frame_0.json")["packets_inconsistent"] == 0


def test_the_later_passes_of_a_longer_second_mission_join_its_own_capture(tmp_path: Path) -> None:
    """Mission 1: one frame over 2 passes; mission 2: three frames over 5 passes. Mission 2's later passes clash
    with nothing in capture 1 (their counts run past mission 1's last one, their frame ids are new there): they
    joined capture 1 and split mission 2's frame 1 in two. They continue capture 2's counts: they go there."""
    budget = sum(map(len, packetise(_frame(_image(10), 0, 0.5), config=WIRE))) * 2 // 3
    _mission(tmp_path / "m1", [_frame(_image(10), 0, 0.5)], budget)
    m2 = _mission(tmp_path / "m2", [_frame(_image(20 + i), i, 0.5) for i in range(3)], budget)
    assert len(m2) >= 4
    out = tmp_path / "g"
    argv = ["ground", "decode", str(tmp_path / "m1" / "downlink"), str(tmp_path / "m2" / "downlink"), "--out", str(out)]
    assert main(argv) == 0
    caps = _json(out / "stream.json")["stream"]["captures"]
    assert [len(c["files"]) for c in caps] == [2, len(m2)]
    for fid in range(3):
        rep = _json(out / "capture_2" / f"frame_{fid}.json")
        assert rep["packets_lost"] == 0 and rep["packets_received"] == rep["packets_expected"]
    assert not (out / "frame_1.json").exists()


def test_the_session_limits_bound_every_capture_together(tmp_path: Path) -> None:
    """Four captures whose counts restart, each under max_session_bytes: together over it. Each capture had a
    budget of its own (N captures held N times the limit); the limit is the decode's."""
    files = []
    for k in range(4):
        p = packetise(_frame(_image(k)), config=WIRE, counters=SequenceCounters())
        files.append(str(_bin(tmp_path / f"f{k}.bin", p)))
    one = sum(map(len, p))
    out = tmp_path / "g"
    assert main(["ground", "decode", *files, "--limit", f"max_session_bytes={one + 100}", "--out", str(out)]) != 0
    accepted = sum(_json(s)["stream"]["packets_accepted"] for s in out.rglob("stream.json"))
    assert accepted == len(p)  # the first capture's packets; the others refused by the limit, and counted
    refused = sum(_json(s)["stream"]["rejected"].get("session_limit", 0) for s in out.rglob("stream.json"))
    assert refused == 3 * len(p)


def test_two_spacecraft_whose_passes_alternate_keep_their_own_captures(tmp_path: Path) -> None:
    """A station alternating between two spacecraft of the same configuration (same frame ids, same mask seed):
    A1 B1 A2 B2. A2 follows both captures' highest count exactly; it joined the newest, so each frame_0 was
    rebuilt from half of A and half of B and reported whole. It joins the capture of the product it continues."""
    fa = sparse_from_samples(_image(1), 8, 0.5, 1, frame_id=0)
    fb = sparse_from_samples(_image(2), 8, 0.5, 1, frame_id=0)
    budget = sum(map(len, packetise(fa, config=WIRE))) // 2 + 10
    a = _mission(tmp_path / "A", [fa], budget)
    b = _mission(tmp_path / "B", [fb], budget)
    files = [str(x) for pair in zip(a, b, strict=False) for x in pair]
    out = tmp_path / "g"
    assert main(["ground", "decode", *files, "--out", str(out)]) == 0
    caps = _json(out / "stream.json")["stream"]["captures"]
    assert [{Path(f).parent.parent.name for f in c["files"]} for c in caps] == [{"A"}, {"B"}]
    known = make_mask(fa.seed, (fa.height, fa.width), fa.keep, fa.pattern)  # both frames: same seed and keep
    for folder, image in ((out, _image(1)), (out / "capture_2", _image(2))):
        assert np.array_equal(_pixels(folder / "frame_0.png")[known], image[known])


def test_passes_on_a_tight_budget_are_one_stream_with_nothing_lost(tmp_path: Path) -> None:
    """A pass filled its end with smaller packets of later items: a product resumed in the next pass then sat at
    non-consecutive counts, and the ground split the flight's own passes into two captures with phantom losses
    (audit a8, session 31). Strict priority order keeps every product's counts consecutive: one stream, nothing
    lost, on a lossless copy."""
    big = packetise(_frame(_image(40), 0), config=WIRE)
    small = packetise(_frame(_image(41, (2, 2, 1)), 1), config=WIRE)
    assert len(big) > 3 and len(big[2]) > len(small[0]) + 10
    q = DownlinkQueue(tmp_path / "m" / "queue", 1 << 24)
    q.put("sparse", 0, big)
    q.put("sparse", 1, small)  # the same APID: its packet fitted where the big frame's next did not
    q.save()
    budget = len(big[0]) + len(big[1]) + len(small[0]) + 10
    while q.pending():
        q.downlink_pass(budget, tmp_path / "m" / "downlink")
    out = tmp_path / "g"
    assert main(["ground", "decode", str(tmp_path / "m" / "downlink"), "--out", str(out)]) == 0
    st = _json(out / "stream.json")
    assert "captures" not in st["stream"] and st["stream"]["sequence"]["sparse"]["missing"] == 0
    for name, rep in st["products"].items():
        assert (rep["packets_received"], rep["packets_lost"]) == (rep["packets_expected"], 0), name

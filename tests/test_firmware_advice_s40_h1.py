"""Session 40, fixer h1: the memory advice tells the truth for the frames a run takes.

1. ``firmware-sim check`` on a strip camera gave the strips' verdict alone ("fits at nominal"), but a PNG, JPEG or
   PNM frame is decoded whole and the run sent it down the ladder: check gives a second verdict for those; the boot's
   room check planned by strips though it knew the frame types.
2. The boot's ``sparse_only`` floor and check's figures left out what the loop's heap grows by over the first frames
   (``HELD_RISE``): at that floor the first frames flew and the next were dropped ``memory_budget``.
3. ``packet_advice`` parsed the refusal's text; it reads ``TooManyPackets.packets``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from _helpers_firmware import ADVICE_HELD, advice_mission, advice_runtime

pytest.importorskip("onnx")

MIB = 2**20
HELD = ADVICE_HELD


_mission, _rt = advice_mission, advice_runtime  # tests/_helpers_firmware.py


def _plans(m: Any, suffix: str = ".jpg", sizes: dict[str, int] | None = None) -> tuple[Any, Any]:
    from edgeae.firmware_sim.boot_memory import whole_decode_at_boot
    from edgeae.firmware_sim.budget import plan_memory

    h, w = m.camera.height, m.camera.width  # its file's bytes: ``sizes``, else the stated bound
    whole = whole_decode_at_boot(_rt(m, sizes=sizes), suffix)
    assert whole is not None
    return plan_memory(m, w, h, 0, 1), plan_memory(m, w, h, 0, 1, whole=whole[0])


def _memory_lines(rt: Any) -> list[str]:
    from edgeae.firmware_sim.boot_memory import frame_plans
    from edgeae.firmware_sim.cli_advice import _memory_level_lines

    c = rt.m.camera
    return [
        line
        for t, p, _ in frame_plans(rt, c.width, c.height)
        for line in _memory_level_lines(rt, p, HELD, t and t + ": ")
    ]


def test_check_gives_frames_decoded_whole_their_own_verdict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeae.firmware_sim import memory_plan
    from edgeae.firmware_sim.boot_memory import HELD_RISE

    monkeypatch.setattr(memory_plan, "JPEG_WORK", 0)  # the advice's logic, on plans without the decoder's 1 MiB
    from edgeae.firmware_sim.budget import LADDER
    from edgeae.firmware_sim.frame_intake import level_plan

    m = _mission(tmp_path, MIB)
    strips, whole = _plans(m, ".png")  # told no frame type, check plans the type that takes most: a PNG (session 40)
    assert whole.total > strips.total + 4 * MIB  # the 8 MiB decoded image
    # a budget the strips fit at nominal with the heap's rise: every JPEG would be dropped, with the floor it needs
    m = dataclasses.replace(
        m, budget=dataclasses.replace(m.budget, memory_bytes=HELD + HELD_RISE + strips.total + MIB // 2)
    )
    strip_line, whole_line = _memory_lines(_rt(m))
    assert strip_line.startswith("  held + buffers:") and strip_line.endswith("fits at nominal"), strip_line
    assert whole_line.startswith("WARNING: PNG, JPEG or PNM frames (decoded whole): held + buffers: "), whole_line
    floor = -(-(HELD + HELD_RISE + level_plan(whole, LADDER[-1]).total) // MIB)
    # told no frame type, the held figure has every decoder loaded: "may be" (review r1 #3), and how to be sure
    assert whole_line.endswith("check --frame-type .jpg, or the run's type, for the run's figure)"), whole_line
    assert f"may be dropped (memory_budget); raise [budget] memory_bytes to at least {floor} MiB (held" in whole_line
    # at that floor they fit (a PNG's decode, its file's bytes twice, outweighs its buffers at nominal)
    m = dataclasses.replace(m, budget=dataclasses.replace(m.budget, memory_bytes=floor * MIB))
    whole_line = _memory_lines(_rt(m))[1]
    assert whole_line.startswith("  PNG, JPEG or PNM frames (decoded whole): held + buffers: "), whole_line
    assert whole_line.endswith("fits at nominal"), whole_line
    # a JPEG at its own floor runs at sparse_only, told what nominal needs
    told = {".jpg": 64 * 1024}  # its file's bytes told (a run's largest file; check --frame-bytes)
    _, jpeg = _plans(m, ".jpg", told)
    jfloor = -(-(HELD + HELD_RISE + level_plan(jpeg, LADDER[-1]).total) // MIB)
    m = dataclasses.replace(m, budget=dataclasses.replace(m.budget, memory_bytes=jfloor * MIB))
    [whole_line] = _memory_lines(_rt(m, {".jpg"}, told))
    assert "does not fit at nominal; frames of this size run at sparse_only" in whole_line, whole_line
    need = -(-(HELD + HELD_RISE + jpeg.total) // MIB)
    assert f"raise [budget] memory_bytes to at least {need} MiB for nominal" in whole_line, whole_line
    strip_line = _memory_lines(_rt(m))[0]
    # told the frame types (a run; check with types): one verdict, of the plan the boot checks them by
    assert len(_memory_lines(_rt(m, {".jpg"}))) == 1 and _memory_lines(_rt(m, {".tif"})) == [strip_line]
    assert "does not fit at nominal" in _memory_lines(_rt(m, {".jpg"}, told))[0]
    # its file's bytes not told: the stated bound (as large as the image), which this budget does not hold
    assert "every frame of this size would be dropped" in _memory_lines(_rt(m, {".jpg"}))[0]
    mixed = _memory_lines(_rt(m, {".tif", ".png"}))
    assert len(mixed) == 2 and "the .png frames (decoded whole): held + buffers:" in mixed[1], mixed


def test_check_lines_print_both_verdicts_for_a_strip_camera(tmp_path: Path) -> None:
    from edgeae.firmware_sim.cli_advice import check_lines
    from edgeae.firmware_sim.loop import FlightRuntime

    rt = FlightRuntime(_mission(tmp_path, 1024 * MIB, height=512, width=256), tmp_path / "out")
    try:
        out = check_lines(rt)
    finally:
        rt.close()
    buffers = [x for x in out if "frame's buffers:" in x]
    assert len(buffers) == 2 and buffers[1].startswith("  PNG, JPEG or PNM frames (decoded whole): a 512 x 256"), out
    assert "its file's bytes assumed at most 198,656 B (the decoded image's + 1/64 + 64 KiB" in buffers[1], out
    assert sum("fits at nominal" in x for x in out) == 2, out


def test_the_room_check_plans_the_frame_types_it_is_told(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeae.firmware_sim import memory_plan, memory_room
    from edgeae.firmware_sim.mission import MissionError

    monkeypatch.setattr(memory_plan, "JPEG_WORK", 0)  # a JPEG whose decode peak is under its buffers at nominal

    m = _mission(tmp_path, HELD)
    told = {".jpg": 64 * 1024}  # a small file: its decode peak under its buffers at nominal
    strips, whole = _plans(m, ".jpg", told)
    from edgeae.firmware_sim.budget import LADDER
    from edgeae.firmware_sim.frame_intake import level_plan

    whole_least = level_plan(whole, LADDER[-1]).total
    assert strips.total < whole_least < whole.total
    room = memory_room.Room((whole_least + whole.total) // 2, "MemAvailable")  # a JPEG fits lower on the ladder
    monkeypatch.setattr(memory_room, "room_now", lambda: room)
    assert memory_room.check_room(_rt(m, {".tif"}, told)) == []
    [warned] = memory_room.check_room(_rt(m, {".jpg"}, told))
    assert "frames run lower on the ladder" in warned and f"{whole.total / MIB:,.1f} MiB" in warned, warned
    assert "frames run lower on the ladder" in memory_room.check_room(_rt(m, {".jpg", ".tif"}, told))[0]
    monkeypatch.setattr(memory_room, "room_now", lambda: memory_room.Room(MIB, "MemAvailable"))
    with pytest.raises(MissionError, match="even at sparse_only"):
        memory_room.check_room(_rt(m, {".jpg"}, told))


def _boot(m: Any, types: set[str] | None = None) -> tuple[list[str], str]:
    from edgeae.firmware_sim.frame_intake import check_loaded_memory
    from edgeae.firmware_sim.mission import MissionError

    try:
        return check_loaded_memory(_rt(m, types)), ""
    except MissionError as exc:
        return [], str(exc)


def test_the_sparse_only_floor_counts_the_heaps_rise(tmp_path: Path) -> None:
    """Measured (session 40): the orbital TIFF strip in onnxruntime, five frames, refused at 64 MiB with "at least 66
    MiB for frames with no patch scored": at 66 MiB two ran sparse_only and three were dropped memory_budget (the
    held RSS 1.7 MiB over the boot's from the third frame on); at 67 MiB all five ran sparse_only (twice)."""
    from edgeae.firmware_sim.budget import LADDER
    from edgeae.firmware_sim.frame_intake import HELD_RISE, level_plan

    m = _mission(tmp_path, MIB)
    strips, _ = _plans(m)
    least = level_plan(strips, LADDER[-1]).total
    refused = _boot(m, {".tif"})[1]
    floor = -(-(HELD + HELD_RISE + least) // MIB)
    assert f"raise [budget] memory_bytes to at least {floor} MiB for frames with no patch scored" in refused, refused
    # at the old floor the boot passes (the first frame fits) and says the frames after it may be dropped
    at_old = dataclasses.replace(m, budget=dataclasses.replace(m.budget, memory_bytes=HELD + least))
    [warned] = _boot(at_old, {".tif"})[0]
    assert "frames after the first may be dropped memory_budget" in warned and f"at least {floor} MiB" in warned
    at_new = dataclasses.replace(m, budget=dataclasses.replace(m.budget, memory_bytes=floor * MIB))
    assert _boot(at_new, {".tif"}) == ([], "")


def test_packet_advice_reads_the_count_the_refusal_carries() -> None:
    from edgeae.firmware_sim.mission import load_mission
    from edgeae.firmware_sim.packet_check import packet_advice

    from edgeae.wire.sparse_plan import TooManyPackets, too_many_packets

    m = load_mission("orbital_nac")
    exc = TooManyPackets("a front end's own words: " + too_many_packets("sparse", 3, 70000), packets=70000)
    advice = packet_advice(m, exc)
    assert advice.startswith("sparse product needs 70,000 packets, over the 65,535 a product can have"), advice
    assert "lower [sampling] keep" in advice and "a front end" not in advice, advice
    patch = packet_advice(m, TooManyPackets(too_many_packets("patch", 3, 66000), packets=66000))
    assert patch.startswith("patch product needs 66,000 packets") and "keep" not in patch, patch
    legacy = packet_advice(m, too_many_packets("sparse", 3, 70000))  # the text alone (the loop until session 40)
    assert legacy.startswith("sparse product 3 needs 70,000 packets") and "keep" in legacy, legacy

"""The downlink queue's storage after a long-duration audit (a1, session 35): a damaged item file, a bit flipped in a
stored packet, a missing or malformed index, a lowered capacity, room checked before a product is written."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from edgeae.firmware_sim.queue import DownlinkQueue, PacketDamaged, restamp, split_packets

from edgeae.wire.packets import WireConfig, packetise
from edgeae.wire.parse import WireError, parse_packet
from edgeae.wire.products import AnomalyPatch, TelemetryRecord

WIRE = WireConfig(max_packet_size=256)


def _patch(fid: int, size: int = 32) -> list[bytes]:
    px = np.random.default_rng(fid).integers(0, 255, (size, size, 1), dtype=np.uint8)
    return packetise(AnomalyPatch(fid, 0, 0, size, 1.0, px), config=WIRE)


def _tm(fid: int, n: int = 300) -> list[bytes]:
    return packetise(TelemetryRecord(fid, b"x" * n), config=WIRE)


def _sent(dl: Path) -> list[bytes]:
    return [p for f in sorted(dl.glob("pass_*.bin")) for p in split_packets(f.read_bytes())]


def _queue_of_three(root: Path) -> tuple[DownlinkQueue, list[Any]]:
    q = DownlinkQueue(root, 1 << 20)
    items = [q.put("patch", 0, _patch(0))[0], q.put("patch", 1, _patch(1))[0], q.put("telemetry", 1, _tm(1))[0]]
    q.save()
    return q, items


# ------------------------------------------------------------------------------ 1: a cut-short item file
def test_split_packets_names_the_byte_where_a_length_field_runs_past_the_end() -> None:
    """It said "-626 trailing bytes are not a whole space packet": a negative count, no place."""
    data = b"".join(_patch(0))[:700]
    with pytest.raises(ValueError, match=r"the packet at byte 512 claims 256 B but only 188 B are left"):
        split_packets(data)


def test_an_item_cut_short_is_evicted_at_recovery_and_the_others_are_sent(tmp_path: Path) -> None:
    """`head -c` on one item file: every later pass died with a ValueError (exit 2, every boot). The reboot finds
    it (its size is not what was queued), evicts it with the reason, and the pass sends the rest."""
    q, (_a, b, _c) = _queue_of_three(tmp_path / "queue")
    f = q.items_dir / b.file
    f.write_bytes(f.read_bytes()[:300])
    q2 = DownlinkQueue(tmp_path / "queue", 1 << 20)
    assert q2.lost_on_recovery == [b.id] and q2.items[b.id].status == "evicted"
    assert q2.items[b.id].reason == f"item file damaged (300 B, {b.wire_bytes:,} B were queued) after reboot"
    rep = q2.downlink_pass(1 << 20, tmp_path / "dl")
    assert rep.items_completed == 2 and not rep.damaged and not q2.pending()
    assert {parse_packet(p).frame_id for p in _sent(tmp_path / "dl")} == {0, 1}
    assert not f.exists()  # removed once the index recorded it evicted


def test_an_item_cut_short_after_the_boot_is_evicted_by_the_pass_which_goes_on(tmp_path: Path) -> None:
    """Damage the pass finds (the file cut after the boot read the index): the packets before the damage are sent,
    the item is evicted ``storage corruption`` naming the file and the byte, and the next item is sent."""
    q, (a, b, c) = _queue_of_three(tmp_path / "queue")
    f = q.items_dir / a.file
    f.write_bytes(f.read_bytes()[:600])  # two whole packets and part of a third
    rep = q.downlink_pass(1 << 20, tmp_path / "dl")
    assert rep.damaged == (a.id,) and a.status == "evicted" and a.sent_packets == 2
    assert a.reason.startswith(f"storage corruption: item file {f}: packet 2 at byte 512 claims 256 B")
    assert b.status == c.status == "sent" and rep.packets_sent == 2 + b.n_packets + c.n_packets
    assert all(parse_packet(p) for p in _sent(tmp_path / "dl"))  # every packet sent is whole and checks
    assert DownlinkQueue(tmp_path / "queue", 1 << 20).items[a.id].status == "evicted"  # saved


def test_a_damaged_item_is_an_evicted_event_and_the_loop_pass_goes_on(tmp_path: Path) -> None:
    """``stops.downlink_pass`` (the loop's pass): the damaged item is an ``evicted`` event with its reason, the
    pass line follows; until session 35 the ValueError went through (it caught OSError only) and stopped the run."""
    from edgeae.firmware_sim.stops import downlink_pass
    from edgeae.firmware_sim.telemetry import TelemetryWriter, read_lines

    q, (a, _b, _c) = _queue_of_three(tmp_path / "out" / "queue")
    (q.items_dir / a.file).write_bytes(b"\x08\x01\xc0\x00\xff\xff" + bytes(10))  # a length field past the end
    tm = TelemetryWriter(tmp_path / "out" / "telemetry.jsonl")
    budget = SimpleNamespace(downlink_bytes_per_pass=1 << 20)
    rt = SimpleNamespace(queue=q, tm=tm, out=tmp_path / "out", since_pass=3, m=SimpleNamespace(budget=budget))
    downlink_pass(rt)  # type: ignore[arg-type]
    tm.close()
    lines = read_lines(tmp_path / "out" / "telemetry.jsonl")
    assert [(r["type"], r.get("kind")) for r in lines] == [("event", "evicted"), ("pass", None)]
    assert lines[0]["item"] == a.id and lines[0]["reason"].startswith("storage corruption: item file ")
    assert lines[0]["bytes"] == a.wire_bytes and lines[1]["completed"] == 2


# ------------------------------------------------------------------------------ 2: a bit flipped in storage
def test_restamp_refuses_a_packet_whose_crc_does_not_match() -> None:
    """A bit flipped in storage was re-signed with a valid CRC and parsed on the ground, 106 samples wrong."""
    p = bytearray(_patch(3)[1])
    p[-40] ^= 1
    with pytest.raises(WireError):
        parse_packet(bytes(p))
    with pytest.raises(PacketDamaged, match="fails its CRC-16"):
        restamp(bytes(p), 7)
    assert parse_packet(restamp(_patch(3)[1], 7)).seq_count == 7


@pytest.mark.parametrize("legacy", [False, True], ids=["crc32", "queued-before-s35"])
def test_a_bit_flipped_in_a_stored_item_is_never_sent(tmp_path: Path, legacy: bool) -> None:
    """The pass sends the packets before the flipped one, evicts the item (storage corruption, naming the packet)
    and goes on; an item an older version queued (no CRC-32 in the index) is checked packet by packet."""
    q, (a, b, c) = _queue_of_three(tmp_path / "queue")
    if legacy:
        for it in q.items.values():
            it.crc32 = None
    f = q.items_dir / a.file
    data = bytearray(f.read_bytes())
    data[3 * 256 - 40] ^= 1  # in packet 2 (256-byte packets), as the audit's repro flipped it
    f.write_bytes(bytes(data))
    rep = q.downlink_pass(1 << 20, tmp_path / "dl")
    assert rep.damaged == (a.id,) and a.sent_packets == 2 and a.status == "evicted"
    assert a.reason == f"storage corruption: item file {f}: packet 2 (at byte 512) fails its CRC-16"
    sent = _sent(tmp_path / "dl")
    assert len(sent) == 2 + b.n_packets + c.n_packets and all(parse_packet(p) for p in sent)


# ------------------------------------------------------------------------------ 3: the index gone
def test_a_state_folder_without_its_index_is_refused(tmp_path: Path) -> None:
    """`rm queue/index.json` started the mission over: frame ids, pass numbers and sequence counts from 0 again,
    pending products overwritten. The folder's item files, pass files and telemetry frame lines are named."""
    out = tmp_path / "out"
    q, _ = _queue_of_three(out / "queue")
    q.downlink_pass(300, out / "downlink")
    (out / "telemetry.jsonl").write_text(json.dumps({"type": "frame", "frame_id": 0}) + "\n")
    (out / "queue" / "index.json").unlink()
    with pytest.raises(ValueError) as err:
        DownlinkQueue(out / "queue", 1 << 20)
    msg = str(err.value)
    assert msg.startswith(f"{out / 'queue' / 'index.json'} is missing but the state folder holds earlier boots'")
    for what in ("3 item files in", "1 pass file in", "1 frame, pass or recovery line in", "--fresh"):
        assert what in msg
    assert "\n" not in msg


def test_a_new_state_and_a_first_boot_that_saved_no_index_start_fresh(tmp_path: Path) -> None:
    """A boot's own empty telemetry file and mission.json (written before any index: a first boot stopped by a
    full disk at its first save) are no earlier state: the rerun starts fresh, as the docs say."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "telemetry.jsonl").write_text(json.dumps({"type": "start", "resumed": False}) + "\n")
    (out / "mission.json").write_text("{}")
    q = DownlinkQueue(out / "queue", 1 << 20)
    assert not q.recovered and not q.items


def test_the_cli_refuses_a_run_on_a_state_without_its_index(tmp_path: Path, capsys: Any) -> None:
    """``firmware-sim run`` on such a folder: exit 2, one line naming the index and the way on; the queued item
    files stay, no index is written (until session 35: exit 0, ``resumed`` false, items overwritten)."""
    from edgeae.firmware_sim.cli import main

    out = tmp_path / "out"
    _queue_of_three(out / "queue")
    (out / "queue" / "index.json").unlink()
    items = {p.name: p.read_bytes() for p in (out / "queue" / "items").iterdir()}
    (tmp_path / "m.toml").write_text('name = "s35"\n[camera]\nchannels = 1\n')
    np.save(tmp_path / "f.npy", np.zeros((64, 64), np.uint8))
    rc = main(["run", "--mission", str(tmp_path / "m.toml"), "--frames", str(tmp_path / "f.npy"), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith(f"firmware-sim run: error: {out / 'queue' / 'index.json'} is missing but the state")
    assert "3 item files in" in err[0] and "--fresh" in err[0]
    assert {p.name: p.read_bytes() for p in (out / "queue" / "items").iterdir()} == items
    assert not (out / "queue" / "index.json").exists()


# ------------------------------------------------------------------------------ 4: an index of the wrong structure
@pytest.mark.parametrize(
    ("doc", "what"),
    [
        ({"version": 1}, "no 'state' object"),
        ({"version": 1, "state": {"next_id": 0}, "items": []}, "state 'passes' is None, not an integer"),
        ([1, 2], "version None is not 3 (or 1, 2)"),
        (
            {"version": 1, "state": {"next_id": 1, "passes": 0, "seq": {}, "frames": {}, "next_frame_id": 0}},
            "no 'items' list",
        ),
        ("item-extra", "item 0: unknown field(s) colour"),
        ("item-status", "item 0: kind 'patch' / status 'gone' unknown"),
        ("frame", "frame 0 of the ledger is 'x'"),
        ("item-type", "item 0: field 'wire_bytes' is '12', of the wrong type"),
    ],
)
def test_an_index_of_the_wrong_structure_is_one_line_naming_it(tmp_path: Path, doc: Any, what: str) -> None:
    """Valid JSON of the wrong structure was a KeyError or TypeError traceback (exit 1, "every frame dropped")."""
    _q, _ = _queue_of_three(tmp_path / "queue")
    index = tmp_path / "queue" / "index.json"
    if isinstance(doc, str):
        good = json.loads(index.read_text())
        if doc == "item-extra":
            good["items"][0]["colour"] = "red"
        elif doc == "item-status":
            good["items"][0]["status"] = "gone"
        elif doc == "item-type":
            good["items"][0]["wire_bytes"] = "12"
        else:
            good["state"]["frames"]["0"] = "x"
        doc = good
    index.write_text(json.dumps(doc))
    with pytest.raises(ValueError) as err:
        DownlinkQueue(tmp_path / "queue", 1 << 20)
    assert str(err.value).startswith(f"{index}: queue index ") and what in str(err.value)


# ------------------------------------------------------------------------------ 6: capacity and room
def test_a_capacity_lowered_below_what_is_stored_is_said_at_load(tmp_path: Path) -> None:
    """117,146 B stored against a new 20,000 B budget: nothing said it. Nothing is evicted for it (the queue evicts
    only for a newcomer of higher priority): the queue says so."""
    q, _ = _queue_of_three(tmp_path / "queue")
    stored = q.stored_bytes
    assert DownlinkQueue(tmp_path / "queue", 1 << 20).over_capacity == ""
    low = DownlinkQueue(tmp_path / "queue", 1000)
    assert low.over_capacity.startswith(f"{stored:,} B of queued products are stored, over queue_capacity_bytes = ")
    assert f"1,000 B ({stored / 1000:.1f}x" in low.over_capacity and low.stored_bytes == stored


def test_a_product_with_no_room_is_refused_before_a_byte_is_written(tmp_path: Path, monkeypatch: Any) -> None:
    """put() wrote the whole product to flash, then found no room: storage briefly held capacity plus a product."""
    import edgeae.atomic

    q = DownlinkQueue(tmp_path / "queue", 4096)
    q.put("telemetry", 0, _tm(0, 3000))
    opened: list[str] = []
    real = edgeae.atomic.temp_name
    monkeypatch.setattr(edgeae.atomic, "temp_name", lambda p: opened.append(str(p)) or real(p))
    item, evicted = q.put("telemetry", 1, _tm(1, 3000))  # the same priority: no room is made
    assert item.status == "evicted" and item.reason == "queue_full" and not evicted and opened == []
    assert item.wire_bytes == sum(map(len, _tm(1, 3000))) and item.n_packets == len(_tm(1, 3000))


def test_a_lazy_product_with_no_room_writes_no_more_than_the_room(tmp_path: Path) -> None:
    """A lazy packetiser (a sparse frame's packets): its bytes past the room are counted, not written."""
    q = DownlinkQueue(tmp_path / "queue", 10_000)
    q.put("sparse", 0, [b"x" * 6000])
    peak: list[int] = []

    def packets() -> Iterator[bytes]:
        for _ in range(5):
            yield b"y" * 3000
            peak.append(sum(os.path.getsize(p) for p in q.items_dir.glob(".*.tmp-*")))

    item, _ = q.put("sparse", 1, packets())
    assert item.status == "evicted" and item.wire_bytes == 15_000 and item.n_packets == 5
    assert max(peak) <= 4000 and not list(q.items_dir.glob(".*"))


# ------------------------------------------------------------------------------ 5: what a pass costs
def test_sent_files_are_removed_by_the_save_that_records_them(tmp_path: Path, monkeypatch: Any) -> None:
    """A pass removed the file of every item ever sent (a syscall per item of the mission's history, each pass);
    the files of the items a save records as sent go with that save, and a failed save keeps them for the next."""
    import edgeae.firmware_sim.queue as queue_module

    q, (a, b, c) = _queue_of_three(tmp_path / "queue")
    real = queue_module.atomic_write

    def full_disk(path: Path, data: bytes) -> None:
        if path.name == "index.json":
            raise OSError(28, "No space left on device")
        real(path, data)

    monkeypatch.setattr(queue_module, "atomic_write", full_disk)
    rep = q.downlink_pass(1 << 20, tmp_path / "dl")
    assert rep.index_error and rep.items_completed == 3
    assert all((q.items_dir / it.file).exists() for it in (a, b, c))  # a reboot would load the old index
    monkeypatch.setattr(queue_module, "atomic_write", real)
    q.save()
    assert not list(q.items_dir.iterdir())


# ------------------------------------------------------------------------------ review r6 of session 35
class _PowerLost(BaseException):
    """``kill -9`` at a chosen instant: nothing after it runs (not an Exception, so nothing catches it)."""


def test_sent_files_a_power_loss_kept_are_removed_by_the_next_boot(tmp_path: Path, monkeypatch: Any) -> None:
    """Power lost after the pass's save renamed index.json into place but before its unlinks: the sent items' files
    stayed on flash for good (nothing but the save that records an item removes its file), outside the capacity.
    The next boot's sweep removes every file of an item the index records sent or evicted, and only those."""
    root = tmp_path / "queue"
    q, (a, b, c) = _queue_of_three(root)
    d = q.put("sparse", 2, _tm(2))[0]
    q.save()

    def die(self: Path, *args: Any, **kw: Any) -> None:
        if self.suffix == ".pkt":
            raise _PowerLost
        os.unlink(self)

    monkeypatch.setattr(Path, "unlink", die)
    with pytest.raises(_PowerLost):
        q.downlink_pass(a.wire_bytes + b.wire_bytes + c.wire_bytes, tmp_path / "dl")  # d stays pending
    monkeypatch.undo()
    q2 = DownlinkQueue(root, 1 << 20)
    assert [q2.items[i.id].status for i in (a, b, c, d)] == ["sent", "sent", "sent", "pending"]  # the index saved
    assert sorted(p.name for p in q2.items_dir.iterdir()) == sorted(i.file for i in (a, b, c, d))  # the leak
    assert q2.sweep_stale_temps() == []  # no temporary file: what it returns is unchanged
    assert q2.leftover_files == sorted(i.file for i in (a, b, c))
    assert [p.name for p in q2.items_dir.iterdir()] == [d.file]  # the pending item's file is kept
    assert q2.downlink_pass(1 << 20, tmp_path / "dl").items_completed == 1 and not list(q2.items_dir.iterdir())


@pytest.mark.parametrize(
    ("where", "value", "what"),
    [
        ("seq", {"258": "x"}, "state 'seq' of APID 258 is 'x', not a sequence count (0..16383)"),
        ("seq", {"258": 16384}, "state 'seq' of APID 258 is 16384, not a sequence count (0..16383)"),
        ("seq", {"258": True}, "state 'seq' of APID 258 is True"),
        ("seq", {"abc": 1}, "state 'seq' has the key 'abc', not an APID (0..2047)"),
        ("seq", {"4096": 1}, "state 'seq' has the key '4096', not an APID (0..2047)"),
        ("faults_fired", 5, "state 'faults_fired' is 5, not a list of strings"),
        ("faults_fired", ["seu@frame1", 2], "state 'faults_fired' is ['seu@frame1', 2], not a list of strings"),
        ("frames", {"abc": {"source": "f", "status": "processed"}}, "state 'frames' has the key 'abc', not a frame id"),
    ],
)
def test_wrong_sequence_counts_faults_or_ledger_keys_are_one_line_naming_the_index(
    tmp_path: Path, where: str, value: Any, what: str
) -> None:
    """``seq = {"258": "x"}`` and ``faults_fired = 5`` were TypeError tracebacks at the first pass or frame (exit
    1), a ledger key ``"abc"`` an ``invalid literal for int()`` naming no file: the load refuses each in one line."""
    _queue_of_three(tmp_path / "queue")
    index = tmp_path / "queue" / "index.json"
    doc = json.loads(index.read_text())
    doc["state"][where] = value
    index.write_text(json.dumps(doc))
    with pytest.raises(ValueError) as err:
        DownlinkQueue(tmp_path / "queue", 1 << 20)
    assert str(err.value).startswith(f"{index}: queue index unreadable (") and what in str(err.value)


def test_the_index_is_version_2_and_a_version_1_state_still_boots(tmp_path: Path) -> None:
    """Items carry ``crc32`` since session 35 but the index stayed version 1: the firmware rolled back read a new
    state and crashed (``Item.__init__() got an unexpected keyword argument 'crc32'``). Version 2 is written (the
    old reader's ``version != 1`` refuses it in one line), and a version-1 state, items without a CRC-32 as the
    versions before session 35 wrote them, still boots and sends."""
    _q, (a, b, c) = _queue_of_three(tmp_path / "queue")
    index = tmp_path / "queue" / "index.json"
    doc = json.loads(index.read_text())
    assert doc["version"] == 3 and all(isinstance(d["crc32"], int) for d in doc["items"])  # 3 since session 36
    doc["version"] = 1
    for d in doc["items"]:
        del d["crc32"]
    index.write_text(json.dumps(doc))
    old = DownlinkQueue(tmp_path / "queue", 1 << 20)
    assert [old.items[i.id].crc32 for i in (a, b, c)] == [None] * 3 and len(old.pending()) == 3
    assert old.downlink_pass(1 << 20, tmp_path / "dl").items_completed == 3
    assert all(parse_packet(p) for p in _sent(tmp_path / "dl"))
    assert json.loads(index.read_text())["version"] == 3  # saved in the new version
    index.write_text(json.dumps({**json.loads(index.read_text()), "version": 4}))
    with pytest.raises(ValueError, match=r"queue index version 4 is not 3 \(or 1, 2\)"):
        DownlinkQueue(tmp_path / "queue", 1 << 20)


def test_an_item_damaged_after_part_of_it_was_sent_leaves_its_frame_partial(tmp_path: Path) -> None:
    """The audit's outD: item 186 had 1 of 7 packets sent, a bit flipped in packet 4, the pass sent 1-3 and evicted
    it; the ground holds 4 of its 7 packets, but the summary said frame 34 ``dropped``, ``products_lost``, and the
    report listed its whole size as lost. Now the frame is ``partial`` and the report shows the bytes not sent."""
    from edgeae.firmware_sim.report import _queue
    from edgeae.firmware_sim.telemetry import frame_outcomes, summarise

    out = tmp_path / "out"
    q = DownlinkQueue(out / "queue", 1 << 20)
    packets = _patch(34)
    a = q.put("patch", 34, packets)[0]
    t = q.put("telemetry", 34, _tm(34))[0]
    q.state["frames"]["34"] = {"source": "f34", "status": "processed", "reason": ""}
    q.save()
    assert q.downlink_pass(len(packets[0]), out / "downlink").packets_sent == 1  # 1 of its packets sent
    f = q.items_dir / a.file
    data = bytearray(f.read_bytes())
    data[sum(map(len, packets[:4])) + 10] ^= 0x10  # a bit flipped in packet 4
    f.write_bytes(bytes(data))
    rep = q.downlink_pass(1 << 20, out / "downlink")
    assert rep.damaged == (a.id,) and a.sent_packets == 4 and t.status == "sent"
    o = frame_outcomes(q)[34]
    assert (o.outcome, o.code) == ("partial", "lost patch")
    assert o.reason.startswith("patch: storage corruption: item file ") and o.reason.endswith(
        f"(4 of {a.n_packets} packets sent)"
    )
    s = summarise(q, [], {})
    assert s["frames"]["partial"] == 1 and s["frames"]["dropped"] == 0 and s["frames"]["accounted"]
    lost = a.wire_bytes - a.sent_bytes
    html = _queue(out, [], {})
    assert "bytes lost" in html and f"{lost:,} (of {a.wire_bytes:,}; 4 of {a.n_packets} packets sent)" in html


def test_storage_corruption_is_counted_apart_from_queue_full(tmp_path: Path, capsys: Any) -> None:
    """m_big.toml, a bit flipped in a pending item: the console said "queue full: 1 products evicted or refused
    (...; raise budget.queue_capacity_bytes ...)". Items evicted because their file was damaged (by a pass) or
    missing (at boot) are ``summary.queue.corrupted_items``, said as lost to storage corruption."""
    from edgeae.firmware_sim.cli_outputs import _print_summary
    from edgeae.firmware_sim.telemetry import storage_damage, summarise

    root = tmp_path / "out" / "queue"
    q = DownlinkQueue(root, 1 << 20)
    a, b = q.put("patch", 0, _patch(0))[0], q.put("patch", 1, _patch(1))[0]
    q.save()
    (q.items_dir / b.file).unlink()  # gone: evicted at the next boot
    q2 = DownlinkQueue(root, 4096)
    assert q2.lost_on_recovery == [b.id]
    f = q2.items_dir / a.file
    f.write_bytes(bytes([f.read_bytes()[0] ^ 1]) + f.read_bytes()[1:])  # a bit flipped in its first packet
    assert q2.downlink_pass(1 << 20, tmp_path / "out" / "downlink").damaged == (a.id,)
    refused = q2.put("telemetry", 2, _tm(2, 5000))[0]
    assert refused.reason == "queue_full"
    assert [storage_damage(q2.items[i].reason) for i in (a.id, b.id, refused.id)] == [True, True, False]
    assert not storage_damage("evicted for higher-priority item 3") and not storage_damage("frame_dropped")
    s = summarise(q2, [], {"mission": "m", "budgets": {"memory_bytes": 1 << 28}})
    assert s["queue"]["evicted_items"] == 3 and s["queue"]["corrupted_items"] == 2
    _print_summary(s, str(tmp_path / "out"))
    cap = capsys.readouterr()
    assert "WARNING: 2 products lost to storage corruption (an item file damaged or missing in " in cap.err
    assert "queue full: 1 products evicted or refused" in cap.out

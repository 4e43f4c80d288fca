"""Ground station audit fixes (session 31): a frame's received anomaly patches are known pixels of its rebuild,
patches are written on their frame's scale with the bit depth recorded, and a ``--model`` that is no CAE is refused
at start."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from edgeae.cli import main
from edgeae.ground.sources import sparse_from_samples
from edgeae.ground.station import GroundStation, make_filler
from edgeae.wire.packets import SequenceCounters, WireConfig, packetise
from edgeae.wire.products import AnomalyPatch
from edgeae.wire.stream import write_packet_file

SHAPE = (48, 64, 1)


def _counts(bits: int = 12, shape: tuple[int, int, int] = SHAPE) -> np.ndarray:
    """A textured frame of ``bits``-bit counts (a smooth fill cannot guess it)."""
    rng = np.random.default_rng(5)
    return rng.integers(0, 2**bits, size=shape).astype(np.uint16 if bits > 8 else np.uint8)


def _patch(counts: np.ndarray, x: int, y: int, size: int, index: int, bits: int = 12) -> AnomalyPatch:
    px = np.ascontiguousarray(counts[y : y + size, x : x + size])
    return AnomalyPatch(3, x, y, size, 1.0, px, bit_depth=bits, index=index)


def _pass(counts: np.ndarray, patches: list[AnomalyPatch], bits: int = 12, drop: dict | None = None) -> list[bytes]:
    """The flight's order: patches first, then the sparse frame; ``drop``: patch index -> packet numbers lost."""
    pk, fr = _products(counts, patches, bits, drop)
    return pk + fr


def _products(
    counts: np.ndarray, patches: list[AnomalyPatch], bits: int = 12, drop: dict | None = None
) -> tuple[list[bytes], list[bytes]]:
    """(the patches' packets, the sparse frame's packets) of one pass."""
    ctr = SequenceCounters()
    out: list[bytes] = []
    for p in patches:
        pk = packetise(p, config=WireConfig(128), counters=ctr)
        assert len(pk) > 2 or not drop
        out += [b for i, b in enumerate(pk) if i not in (drop or {}).get(p.index, ())]
    return out, packetise(sparse_from_samples(counts, bits, 0.1, 9, frame_id=3), counters=ctr)


def _station(out: Path | None, counts: np.ndarray, bits: int = 12) -> GroundStation:
    fill, name = make_filler(None, "nearest")
    return GroundStation(out=out, fill=fill, fill_name=name, originals={3: counts.astype(np.float32) / (2**bits - 1)})


# ------------------------------------------------------------------ item 1: patches are known pixels of the frame
def test_received_patches_are_known_pixels_of_the_rebuilt_frame(tmp_path: Path) -> None:
    counts = _counts()
    whole, part = _patch(counts, 8, 16, 16, 0), _patch(counts, 40, 0, 16, 1)
    gs = _station(tmp_path / "g", counts)
    for p in _pass(counts, [whole, part], drop={1: {0}}):  # the second patch's first packet is lost
        gs.receive(p)
    rep = gs.finish()["products"]["frame_3"]
    want = counts.astype(np.float32) / 4095
    got, known = gs.images[3], gs.known[3]
    assert np.array_equal(got[16:32, 8:24], want[16:32, 8:24])  # the whole patch, exactly (was: the fill's guess)
    assert known[16:32, 8:24].all()
    part = _read(tmp_path / "g" / "patch_3_1_valid.png") == 255  # the pixels of the second patch that arrived
    assert 0 < part.sum() < 256 and known[0:16, 40:56][part].all()  # a partly received patch gives those
    assert np.array_equal(got[0:16, 40:56][part], want[0:16, 40:56][part])
    assert rep["patches_used"] == 2 and "patches_not_used" not in rep
    assert rep["patch_pixels_used"] == 256 + int(part.sum())
    assert rep["pixels_known"] == int(known.sum()) > rep["pixels_received"]
    valid = _read(tmp_path / "g" / "frame_3_valid.png")
    assert (valid[16:32, 8:24] == 255).all()  # the validity map marks them
    # PSNR of the frame with them, above the same frame rebuilt from its samples alone
    alone = _station(None, counts)
    for p in _pass(counts, []):
        alone.receive(p)
    assert rep["psnr"] > alone.finish()["products"]["frame_3"]["psnr"] + 0.3


def test_serve_uses_the_patches_that_came_before_the_frame(tmp_path: Path) -> None:
    """``serve`` decodes a frame when it completes (what its decode worker does): the patches the flight sent first
    are used; one that comes after the frame was decoded cannot be, and the report says none was."""
    counts = _counts()
    patch, frame = _products(counts, [_patch(counts, 8, 16, 16, 0)])
    for order, used in ((patch + frame, 1), (frame + patch, 0)):
        gs = _station(None, counts)
        for p in order:
            gs.receive(p)
            gs.decode(gs.complete())
        assert gs.reports["frame_3"]["patches_used"] == used
        assert gs.known[3][16:32, 8:24].all() == bool(used)


def test_a_patch_that_does_not_fit_its_frame_is_not_used_and_said_why(tmp_path: Path) -> None:
    counts = _counts()
    grey8 = AnomalyPatch(3, 0, 0, 8, 1.0, np.zeros((8, 8, 1), np.uint8), bit_depth=8, index=0)
    past = _patch(np.pad(counts, ((0, 8), (0, 8), (0, 0))), 60, 40, 8, 1)  # runs past the 64x48 frame
    gs = _station(tmp_path / "g", counts)
    for p in _pass(counts, [grey8, past]):
        gs.receive(p)
    rep = gs.finish()["products"]["frame_3"]
    assert rep["patches_used"] == 0 and rep["patch_pixels_used"] == 0
    why = {d["patch"]: d["reason"] for d in rep["patches_not_used"]}
    assert why[0] == "8-bit samples, the frame's are 12-bit" and "runs past the frame" in why[1]
    assert not gs.known[3][0:8, 0:8].all()  # the zeros of the 8-bit patch did not go in


# ------------------------------------------------------------ item 2: one scale for patches and frames, recorded
def _read(path: Path) -> np.ndarray:
    cv2 = pytest.importorskip("cv2")
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


@pytest.mark.parametrize("bits", [12, 8])
def test_patches_are_written_on_their_frames_scale_and_the_bit_depth_is_recorded(tmp_path: Path, bits: int) -> None:
    counts = _counts(bits)
    gs = _station(tmp_path, counts, bits)
    for p in _pass(counts, [_patch(counts, 8, 16, 16, 0, bits)], bits):
        gs.receive(p)
    gs.finish()
    patch, frame = _read(tmp_path / "patch_3_0.png"), _read(tmp_path / "frame_3.png")
    assert patch.dtype == frame.dtype == (np.uint16 if bits > 8 else np.uint8)
    assert np.array_equal(patch, frame[16:32, 8:24])  # was: raw 12-bit counts, 16x darker than the frame
    for name in ("patch_3_0.json", "frame_3.json"):
        rep = json.loads((tmp_path / name).read_text())
        assert rep["bit_depth"] == bits
        out = rep["output_samples"]
        assert out["bits"] == (16 if bits > 8 else 8) and out["scale"] == 2**bits - 1
    top = 2 ** out["bits"] - 1
    back = np.round(patch.astype(np.float64) * out["scale"] / top).astype(int)  # the recorded rule
    assert np.array_equal(back, counts[16:32, 8:24, 0])


def test_a_partly_received_patch_gets_a_validity_map(tmp_path: Path) -> None:
    counts = _counts()
    gs = _station(tmp_path, counts)
    for p in _pass(counts, [_patch(counts, 8, 16, 16, 0)], drop={0: {1}}):
        gs.receive(p)
    rep = gs.finish()["products"]["patch_3_0"]
    valid = _read(tmp_path / "patch_3_0_valid.png")
    assert rep["valid_map"] == "patch_3_0_valid.png" and rep["missing_pixels_written_as"] == 0
    assert rep["pixels_received"] == int((valid == 255).sum()) < 256
    assert (_read(tmp_path / "patch_3_0.png")[valid == 0] == 0).all()
    assert gs.known[3][16:32, 8:24][valid == 255].all()  # those pixels went into the frame
    assert gs.reports["frame_3"]["patch_pixels_used"] == rep["pixels_received"]
    assert not (tmp_path / "patch_3_1_valid.png").exists()


def test_a_partial_patch_past_its_frame_loses_its_validity_map_too(tmp_path: Path) -> None:
    ctr = SequenceCounters()
    counts = _counts()
    big = np.pad(counts, ((0, 16), (0, 16), (0, 0)))
    outside = packetise(_patch(big, 56, 40, 16, 0), config=WireConfig(128), counters=ctr)
    assert len(outside) > 1
    gs = _station(tmp_path, counts)
    for p in outside[1:]:  # its first packet lost: written with a validity map
        gs.receive(p)
    gs.decode(list(gs.receiver.products))  # serve decodes it before its frame arrives
    assert (tmp_path / "patch_3_0_valid.png").exists()
    for p in packetise(sparse_from_samples(counts, 12, 0.1, 9, frame_id=3), counters=ctr):
        gs.receive(p)
    assert gs.finish()["products"]["patch_3_0"]["error_reason"] == "decode"
    assert not list(tmp_path.glob("patch_3_0*.png"))


# ------------------------------------------------------- item 3: a model of the wrong kind, a channel mismatch
def test_ground_decode_refuses_a_model_that_is_not_a_cae(tmp_path: Path, capsys) -> None:
    pytest.importorskip("torch")
    counts = _counts()
    pk = tmp_path / "a.bin"
    write_packet_file(pk, [(float(i), p) for i, p in enumerate(_pass(counts, []))])
    out = tmp_path / "g"
    assert main(["ground", "decode", str(pk), "--model", "orbital-gray-vae", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--model orbital-gray-vae is a 'vae' model, not a 'cae'" in err[0]
    assert not out.exists()  # refused before any packet is read


def test_a_channel_mismatch_falls_back_per_frame_and_is_said_once(monkeypatch, caplog) -> None:
    import edgeae.predictor

    rgb = SimpleNamespace(metadata=SimpleNamespace(kind="cae", channels=3), source="rgb.pt")
    monkeypatch.setattr(edgeae.predictor, "load_predictor", lambda *a, **k: rgb)
    fill, name = make_filler("rgb.pt")
    fallback, fname = make_filler(None, "nearest")
    gs = GroundStation(fill=fill, fill_name=name, fallback=fallback, fallback_name=fname)
    ctr = SequenceCounters()
    for fid in (1, 2):
        for p in packetise(sparse_from_samples(_counts(), 12, 0.1, 9, frame_id=fid), counters=ctr):
            gs.receive(p)
    with caplog.at_level(logging.WARNING, logger="edgeae.ground.station"):
        reps = gs.finish()["products"]
    for fid in (1, 2):
        assert reps[f"frame_{fid}"]["reconstruction"] == "nearest"
        assert "the frame has 1 channel(s), the model takes 3" in reps[f"frame_{fid}"]["fill_fallback"]
    said = [r.getMessage() for r in caplog.records if "cannot fill frame" in r.getMessage()]
    assert len(said) == 1 and "--model rgb.pt cannot fill frame 1" in said[0] and "filled with nearest" in said[0]


# ----------------------------------------------------------------------- review r5 (session 31) of the patch paste
class _CountingDict(dict):
    """A receiver's products that count the keys handed out by iterating them (either way round)."""

    handed_out = 0

    def __iter__(self):
        for k in super().__iter__():
            self.handed_out += 1
            yield k

    def __reversed__(self):
        for k in super().__reversed__():
            self.handed_out += 1
            yield k


def test_the_patch_index_takes_only_the_products_added_since_it_was_last_used() -> None:
    """``serve`` looks up a frame's patches for every frame it decodes, holding the lock the parser takes for every
    record: the index is brought up to date with the new keys alone, not rebuilt over every product (was: 12 ms at
    100k products, for nearly every frame)."""
    ctr = SequenceCounters()
    gs = GroundStation()
    small = np.zeros((4, 4, 1), np.uint8)
    for fid in range(200):  # patches of 200 frames, one packet each
        for p in packetise(AnomalyPatch(fid, 0, 0, 4, 1.0, small, index=0), counters=ctr):
            gs.receive(p)
    gs.receiver.products = _CountingDict(gs.receiver.products)
    assert [i for i, _ in gs._frame_patches(3)] == [0]  # another products dict: indexed anew, once
    gs.receiver.products.handed_out = 0
    for p in packetise(AnomalyPatch(3, 4, 4, 4, 1.0, small, index=1), counters=ctr):
        gs.receive(p)
    assert [i for i, _ in gs._frame_patches(3)] == [0, 1]  # the new patch is found
    assert gs.receiver.products.handed_out == 1  # was: all 201
    gs.receiver.products.handed_out = 0
    assert [i for i, _ in gs._frame_patches(7)] == [0]
    assert gs.receiver.products.handed_out == 0  # nothing new: nothing read


def test_a_failed_partial_patch_report_names_no_file_that_was_removed(tmp_path: Path) -> None:
    """A partial patch found past its frame at the end of the session loses its files: its report (and its JSON) no
    longer names the validity map, nor describes the written pixels (was: ``valid_map`` named a deleted file)."""
    ctr = SequenceCounters()
    counts = _counts()
    big = np.pad(counts, ((0, 16), (0, 16), (0, 0)))
    outside = packetise(_patch(big, 56, 40, 16, 0), config=WireConfig(128), counters=ctr)
    gs = _station(tmp_path, counts)
    for p in outside[1:]:  # its first packet lost: written with a validity map
        gs.receive(p)
    gs.decode(list(gs.receiver.products))  # serve decodes it before its frame arrives
    assert gs.reports["patch_3_0"]["valid_map"] == "patch_3_0_valid.png"
    for p in packetise(sparse_from_samples(counts, 12, 0.1, 9, frame_id=3), counters=ctr):
        gs.receive(p)
    rep = gs.finish()["products"]["patch_3_0"]
    on_disk = json.loads((tmp_path / "patch_3_0.json").read_text())
    for r in (rep, on_disk):
        assert r["error_reason"] == "decode" and r["bit_depth"] == 12
        for gone in ("valid_map", "missing_pixels_written_as", "pixels_received", "output_samples"):
            assert gone not in r, gone
    assert not list(tmp_path.glob("patch_3_0*.png"))


def _patch_assemblies(patches: list[AnomalyPatch]) -> list:
    rx = GroundStation()
    ctr = SequenceCounters()
    for p in patches:
        for b in packetise(p, config=WireConfig(128), counters=ctr):
            rx.receive(b)
    return [(k[2], a.snapshot()) for k, a in rx.receiver.products.items()]


def test_pasting_patches_allocates_no_frame_size_array() -> None:
    """The memory check of a frame counts its rebuild, not a second frame-size array that the paste would take (was:
    a full-frame ``taken`` array for every frame with patches, and a copy of ``known`` in the station)."""
    import tracemalloc

    from edgeae.ground.decode import paste_patches

    h, w = 1200, 1600  # 1.9 MB of bool per frame-size array
    counts = _counts(shape=(64, 64, 1))
    pairs = _patch_assemblies([_patch(counts, 0, 0, 16, 0), _patch(counts, 8, 8, 16, 1)])
    image, known = np.zeros((h, w, 1), np.float32), np.zeros((h, w), bool)
    tracemalloc.start()
    try:
        pasted = paste_patches(image, known, 12, pairs)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert pasted.used == [0, 1] and pasted.pixels == 256 + 256 - 64
    assert peak < h * w // 4, peak  # was: over h * w


def test_pasted_pixels_are_counted_once_and_known_stays_a_plain_mask(monkeypatch) -> None:
    """Overlapping patches over received samples: each frame pixel taken from a patch is counted once, samples or
    not, and ``known`` holds only True / False after it (also when a patch fails part way)."""
    import edgeae.ground.decode as decode

    counts = _counts()
    pairs = _patch_assemblies([_patch(counts, 0, 0, 16, 0), _patch(counts, 8, 8, 16, 1), _patch(counts, 4, 4, 4, 2)])
    image, known = np.zeros(SHAPE, np.float32), np.zeros(SHAPE[:2], bool)
    known[::2, ::2] = True  # received samples, some inside the patches
    before = known.copy()
    pasted = decode.paste_patches(image, known, 12, pairs)
    assert pasted.used == [0, 1, 2] and pasted.pixels == 256 + 256 - 64
    want = before.copy()
    want[0:16, 0:16] = want[8:24, 8:24] = True
    assert np.array_equal(known, want) and known.view(np.uint8).max() == 1
    assert np.array_equal(image[8:24, 8:24], counts[8:24, 8:24].astype(np.float32) / 4095)
    real = decode.decode_flat
    calls = iter([real, lambda *a: (_ for _ in ()).throw(RuntimeError("disk"))])
    monkeypatch.setattr(decode, "decode_flat", lambda *a: next(calls)(*a))
    known = before.copy()
    with pytest.raises(RuntimeError, match="disk"):
        decode.paste_patches(image, known, 12, pairs)
    assert known.view(np.uint8).max() == 1 and known[0:16, 0:16].all()


def test_the_station_pastes_into_the_decoded_mask_not_a_copy(monkeypatch) -> None:
    """The frame's known mask is the decode's own (its samples counted first), not a second frame-size copy."""
    import edgeae.ground.rebuild as rebuild

    got = []
    real = rebuild.place_sparse
    monkeypatch.setattr(rebuild, "place_sparse", lambda *a, **k: got.append(real(*a, **k)) or got[-1])
    counts = _counts()
    gs = _station(None, counts)
    for p in _pass(counts, [_patch(counts, 8, 16, 16, 0)]):
        gs.receive(p)
    rep = gs.finish()["products"]["frame_3"]
    assert gs.known[3] is got[0].known and gs.known[3][16:32, 8:24].all()
    assert rep["pixels_received"] == rep["pixels_sent"]  # every sample arrived; counted before the paste
    assert rep["pixels_known"] == rep["pixels_sent"] + 256 - int(got[0].mask[16:32, 8:24].sum())


def test_patches_announced_in_telemetry_but_never_received_are_listed() -> None:
    """A frame's telemetry record lists its anomaly patches (rank order = patch index); patches lost whole left no
    trace on the ground (audit a8, session 31): stream.json now lists them."""
    import json as _json

    from edgeae.ground.station import GroundStation
    from edgeae.wire.packets import SequenceCounters, WireConfig, packetise
    from edgeae.wire.products import AnomalyPatch, TelemetryRecord

    counters, cfg = SequenceCounters(), WireConfig(256)
    tel = {"frame_id": 4, "anomaly": [{"x": 0, "y": 0, "score": 2.0}, {"x": 16, "y": 0, "score": 1.0}]}
    px = np.full((16, 16, 1), 7, np.uint8)
    pkts = packetise(TelemetryRecord(4, _json.dumps(tel).encode()), config=cfg, counters=counters)
    pkts += packetise(AnomalyPatch(4, 0, 0, 16, 2.0, px, 8, 0), config=cfg, counters=counters)  # index 1 never sent
    gs = GroundStation()
    for p in pkts:
        gs.receive(p)
    st = gs.finish(write=False)["stream"]
    assert st["patches_announced_not_received"] == {
        "count": 1,
        "patches": [{"frame_id": 4, "index": 1, "x": 16, "y": 0, "score": 1.0}],
    }


def test_a_telemetry_record_with_a_strange_frame_id_cannot_stop_the_report() -> None:
    """The listing keyed on the JSON's own frame_id: a list there raised TypeError out of report() (review r7)."""
    import json as _json

    from edgeae.ground.station import GroundStation
    from edgeae.wire.packets import SequenceCounters, WireConfig, packetise
    from edgeae.wire.products import TelemetryRecord

    tel = {"frame_id": [1, 2], "anomaly": [{"x": 0, "y": 0, "score": 1.0}]}
    gs = GroundStation()
    for p in packetise(
        TelemetryRecord(9, _json.dumps(tel).encode()), config=WireConfig(256), counters=SequenceCounters()
    ):
        gs.receive(p)
    st = gs.finish(write=False)["stream"]
    assert st["patches_announced_not_received"]["patches"][0]["frame_id"] == 9  # the header's id

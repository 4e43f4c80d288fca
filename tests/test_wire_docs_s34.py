"""docs/wire-format.md and docs/masks.md checked against the code (audit a6, session 34): the codec each sender writes
and a ground accepts, the latent tile grid and blend, the telemetry payload, the conventions, the layout-2 step
rule, the cost of small bands and the keep = 1 threshold of the uniform mask."""

from __future__ import annotations

import inspect
import json
import math
import re
import zlib
from pathlib import Path

import numpy as np
import pytest

from edgeae.masks import make_mask, uniform_threshold
from edgeae.tiling import blend_tiles, tile_positions
from edgeae.wire import interleave as il
from edgeae.wire.codec import CODECS, CodecError, encode_samples
from edgeae.wire.layout import COMMON, PRIMARY_HEADER, kind_header
from edgeae.wire.packets import WireConfig, build_packet, packetise
from edgeae.wire.parse import WireError, parse_packet
from edgeae.wire.products import AnomalyPatch, LatentFrame, SparseFrame, TelemetryRecord

DOCS = Path(__file__).parents[1] / "docs"
KINDS = ("sparse", "patch", "latent", "telemetry")  # the column order of the doc's codec table


def _wire_doc() -> str:
    return (DOCS / "wire-format.md").read_text(encoding="utf-8")


def _flat(text: str) -> str:
    """``text`` with its line breaks and indents as single spaces (a phrase may wrap)."""
    return " ".join(text.split())


def _section(doc: str, start: str, end: str) -> str:
    i = doc.index(start)
    return doc[i : doc.index(end, i)]


# ------------------------------------------------------------------------------------- item 2: codec table
def _codec_table() -> tuple[dict[str, dict[str, set[int]]], dict[str, set[int]]]:
    block = _section(_wire_doc(), "**Which codec a sender writes.**", '"or 0"')
    sent: dict[str, dict[str, set[int]]] = {}
    accepts: dict[str, set[int]] = {}
    for line in block.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 5 or not line.startswith("|"):
            continue
        sets = [{int(v) for v in re.findall(r"\d", c)} for c in cells[1:]]
        if cells[0].startswith("`"):
            sent[cells[0].strip("`")] = dict(zip(KINDS, sets, strict=True))
        elif "ground accepts" in cells[0]:
            accepts = dict(zip(KINDS, sets, strict=True))
    return sent, accepts


def _products() -> dict[str, list]:
    """Per kind, one product every codec shrinks and one no codec does (so both the codec and codec 0 show)."""
    rng = np.random.default_rng(3)
    keep = 0.5
    n = int(make_mask(3, (48, 40), keep, "uniform").sum())

    def sparse(v: np.ndarray) -> SparseFrame:
        return SparseFrame(1, 48, 40, 3, 8, keep, "uniform", 3, 1, v)

    return {
        "sparse": [sparse(np.full((n, 3), 7, np.uint8)), sparse(rng.integers(0, 256, (n, 3), dtype=np.uint8))],
        "patch": [
            AnomalyPatch(1, 0, 0, 16, 0.5, np.full((16, 16, 3), 5, np.uint8)),
            AnomalyPatch(1, 0, 0, 16, 0.5, rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)),
        ],
        "latent": [
            LatentFrame(1, "ab", 8, 8, 1, 8, 8, 1, 1, 0.5, "int8", np.zeros((1, 4, 4, 4), np.int8)),
            LatentFrame(
                1, "ab", 8, 8, 1, 8, 8, 1, 1, 0.5, "int8", rng.integers(-127, 128, (1, 4, 4, 4), dtype=np.int8)
            ),
        ],
        "telemetry": [TelemetryRecord(1, b'{"a":"' + b"x" * 400 + b'"}'), TelemetryRecord(1, rng.bytes(400))],
    }


def test_the_codec_table_is_what_every_sender_writes() -> None:
    pytest.importorskip("imagecodecs")  # ccsds121
    sent, _ = _codec_table()
    assert set(sent) == set(CODECS)  # a row per codec a sender can be configured with
    products = _products()
    for name in CODECS:
        for kind in KINDS:
            got = {
                parse_packet(p).codec
                for layout in (1, 2)
                for prod in products[kind]
                for p in packetise(prod, config=WireConfig(codec=name, layout=layout))
            }
            assert got == sent[name][kind], (name, kind)


def _recoded(packet: bytes, codec: int) -> bytes:
    """``packet`` (codec 0) with its samples coded with ``codec`` (any bytes where the samples' type has no such
    coding: the ground must refuse those on the header)."""
    p = parse_packet(packet)
    start = PRIMARY_HEADER + COMMON.size + kind_header(p.kind, p.header["layout"]).size
    bits = p.header.get("bit_depth") if codec == 3 else None
    try:
        data = encode_samples(p.samples, codec, bits)
    except CodecError:
        data = zlib.compress(p.samples.tobytes())
    head = bytearray(packet[PRIMARY_HEADER:start])
    head[1] = codec
    return build_packet(p.apid, 0, bytes(head) + data)


def test_the_ground_accepts_what_the_codec_table_says() -> None:
    pytest.importorskip("imagecodecs")
    _, accepts = _codec_table()
    grey_patch = AnomalyPatch(1, 2, 3, 8, 0.5, np.arange(64, dtype=np.uint8).reshape(8, 8, 1))
    for kind in KINDS:
        prod = grey_patch if kind == "patch" else _products()[kind][0]
        packet = packetise(prod)[0]
        ok = set()
        for codec in range(4):
            try:
                back = parse_packet(_recoded(packet, codec))
            except WireError as exc:
                assert exc.reason in ("codec", "header"), (kind, codec, exc)
                continue
            assert np.array_equal(back.samples, parse_packet(packet).samples)
            ok.add(codec)
        assert ok == accepts[kind], kind


# ------------------------------------------------------------------------------ item 3: tile grid, blending
def _starts(n: int, tile: int, stride: int) -> list[int]:
    """Tile starts along an axis as docs/wire-format.md "Tile grid" words them."""
    if n <= tile:
        return [0]
    out = [k * stride for k in range((n - tile) // stride + 1)]
    return [*out, n - tile] if out[-1] + tile < n else out


def _blend(tiles: np.ndarray, pos: list[tuple[int, int]], h: int, w: int, tile: int) -> np.ndarray:
    """docs/wire-format.md "Blending", pixel by pixel."""
    s = [math.sin(math.pi * (k + 0.5) / tile) ** 2 for k in range(tile)]
    out = np.zeros((h, w, tiles.shape[3]), np.float64)
    for yy in range(h):
        for xx in range(w):
            num, den = np.zeros(tiles.shape[3]), 0.0
            for t, (y, x) in zip(tiles, pos, strict=True):
                if y <= yy < y + tile and x <= xx < x + tile:
                    wt = s[yy - y] * s[xx - x]
                    num += wt * t[yy - y, xx - x]
                    den += wt
            out[yy, xx] = num / den
    return out.astype(np.float32)


def test_the_latent_tile_grid_and_blend_are_as_the_spec_states() -> None:
    doc = _flat(_wire_doc())
    assert "**Tile grid** (`edgeae.tiling.tile_positions(H, W, tile, stride)`" in doc
    assert "w(r, c) = s(r) · s(c), s(k) = sin²(π · (k + ½) / tile)" in doc
    assert "H = 300, tile = 128, stride = 96 gives rows 0, 96, 172" in doc
    assert sorted({y for y, _ in tile_positions(300, 5, 128, 96)}) == [0, 96, 172]
    from edgeae.ground import latent

    assert "blend_tiles(" in inspect.getsource(latent.rebuild_latent)  # the ground blends with the default window
    assert inspect.signature(blend_tiles).parameters["window"].default == "hann"
    rng = np.random.default_rng(0)
    for h, w, tile, stride in ((11, 13, 4, 3), (9, 9, 4, 4), (3, 10, 4, 2), (2, 2, 4, 4), (7, 5, 5, 1)):
        ys, xs = _starts(h, tile, stride), _starts(w, tile, stride)
        pos = [(y, x) for y in ys for x in xs]  # row-major
        assert tile_positions(h, w, tile, stride) == pos
        tiles = rng.random((len(pos), tile, tile, 2))
        assert np.allclose(blend_tiles(tiles, pos, (h, w, 2), tile), _blend(tiles, pos, h, w, tile), atol=1e-6)


# -------------------------------------------------------------------------------- item 4: telemetry payload
def test_the_telemetry_payload_is_the_flight_record_the_spec_describes(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from edgeae.firmware_sim.budget import LADDER
    from edgeae.firmware_sim.loop import FlightRuntime
    from edgeae.firmware_sim.queue import split_packets
    from edgeae.firmware_sim.testing import small_mission, textured_frame, tiny_models

    from edgeae.ground.patch_checks import announced_not_received
    from edgeae.ground.station import GroundStation

    section = _section(_wire_doc(), "### Telemetry payload", "## Sample codecs")
    keys = re.findall(r"^\| `(\w+)` \|", section, flags=re.M)
    assert keys == ["frame_id", "level", "flags", "anomaly", "demosaiced"]  # the last only for a demosaiced frame
    assert "one entry for every patch sent" in _flat(section)
    names = re.findall(r"\d `(\w+)`", section)
    assert names == [lv.name for lv in LADDER]

    models = tiny_models(tmp_path / "models", 1, 32)
    rt = FlightRuntime(small_mission(models, anomaly={"top_k": 20}), tmp_path / "out")
    img = textured_frame()
    rt.process(img)
    rt.finish()
    packets = [
        p for f in sorted((tmp_path / "out" / "downlink").glob("pass_*.bin")) for p in split_packets(f.read_bytes())
    ]
    parsed = [parse_packet(p) for p in packets]
    tm = sorted((p for p in parsed if p.kind == "telemetry"), key=lambda p: p.header["e0"])
    raw = b"".join(p.samples.tobytes() for p in tm)
    assert b" " not in raw  # compact
    rec = json.loads(raw.decode("utf-8"))
    assert list(rec) == keys[:-1]  # a camera without a colour filter: no "demosaiced"
    assert rec["frame_id"] == tm[0].frame_id and isinstance(rec["flags"], list)
    assert set(rec["level"]) == {"index", "name"} and LADDER[rec["level"]["index"]].name == rec["level"]["name"]
    heads = {p.header["index"]: p.header for p in parsed if p.kind == "patch"}
    assert len(heads) == 20 and len(rec["anomaly"]) == 20  # every patch sent is listed
    for i, a in enumerate(rec["anomaly"]):  # entry i is patch index i
        hd = heads[i]
        assert (a["x"], a["y"], a["score"]) == (hd["x"], hd["y"], round(hd["score"], 6))
    scores = [heads[i]["score"] for i in range(20)]
    assert scores == sorted(scores, reverse=True)  # rank order
    top = np.concatenate([p.samples for p in parsed if p.kind == "patch" and p.header["index"] == 0])
    x, y = heads[0]["x"], heads[0]["y"]  # x the column, y the row of the top-left pixel
    assert np.array_equal(top.reshape(32, 32), img[y : y + 32, x : x + 32])
    # the ground reads the list so: patch 2 lost whole is announced, not received
    gs = GroundStation()
    for p, q in zip(packets, parsed, strict=True):
        if not (q.kind == "patch" and q.header["index"] == 2):
            gs.receiver.receive(p)
    gs.decode()
    missing = announced_not_received(gs)
    assert missing is not None and missing["count"] == 1
    assert missing["patches"][0] == {"frame_id": rec["frame_id"], "index": 2, **rec["anomaly"][2]}


# ------------------------------------------------------------------------------------- item 6: conventions
def test_the_conventions_hold() -> None:
    doc = _flat(_wire_doc())
    assert "C = 3 is red, green, blue in that order (RGB, not BGR)" in doc
    assert "An anomaly patch's x is the *column* and y the *row* of its top-left pixel" in doc
    assert "(a 12-bit full-scale sample is `0fff`, not `fff0`)" in doc
    assert "The contract allows C = 1 … 255" in doc
    # raw counts, not scaled: a 12-bit full-scale sample travels as 0x0fff
    fr = SparseFrame(1, 1, 1, 1, 12, 1.0, "uniform", 0, 1, np.array([[4095]], np.uint16))
    (pkt,) = packetise(fr)
    assert pkt[-4:-2] == b"\x0f\xff"
    too_high = bytearray(packetise(SparseFrame(1, 1, 1, 1, 12, 1.0, "uniform", 0, 1, np.array([[1]], np.uint16)))[0])
    too_high[-4:-2] = b"\x10\x00"
    with pytest.raises(WireError, match="samples"):
        parse_packet(build_packet(0x100, 0, bytes(too_high[PRIMARY_HEADER:-2])))
    # any C in 1 ... 255 decodes; PNG for 1 and 3, TIFF for the others
    from edgeae.ground.outputs import image_ext

    for c in (1, 2, 3, 4, 255):
        n = int(make_mask(1, (4, 4), 0.5, "uniform").sum())
        v = np.arange(n * c, dtype=np.uint16).reshape(n, c).astype(np.uint8)
        back = [parse_packet(q).samples for q in packetise(SparseFrame(1, 4, 4, c, 8, 0.5, "uniform", 1, 1, v))]
        assert sum(b.shape[0] for b in back) == n and {b.shape[1] for b in back} == {c}
        assert image_ext(np.zeros((4, 4, c))) == (".png" if c in (1, 3) else ".tif")


def _step(p: int) -> int:
    """The layout-2 interleave step as docs/wire-format.md words it (pure Python)."""
    if p <= 2:
        return 1
    c, k = round(p * (math.sqrt(5.0) - 1.0) / 2.0), min(p - 1, 6)

    def d(a: int) -> int:
        return min(min(m * a % p, p - m * a % p) for m in range(1, k + 1))

    cands = [g for g in range(max(1, c - 64), min(p - 1, c + 64) + 1) if math.gcd(g, p) == 1]
    best, score = 1, -1
    for g in sorted(cands, key=lambda g: (abs(g - c), g)):
        s = min(d(g), d(pow(g, -1, p)))
        if s > score:
            best, score = g, s
    return best


def test_the_step_rule_is_the_sender_s() -> None:
    doc = _flat(_wire_doc())
    assert "P = 4 gives g = 1 (c = 2 is not coprime with 4; 1 and 3 both score 1 and 1 comes first)" in doc
    m = re.search(r"P = 5 … 12 give ([\d, ]+), and P = 100 gives (\d+)", doc)
    assert m is not None
    assert [il.interleave_step(p) for p in range(5, 13)] == [int(v) for v in m.group(1).split(",")]
    assert il.interleave_step(100) == int(m.group(2))
    assert (il.interleave_step(3), il.interleave_step(4)) == (2, 1)
    for p in [*range(1, 400), 1000, 4097, 65535]:
        assert il.interleave_step(p) == _step(p), p


# ----------------------------------------------------------------------------------- item 7: band_rows cost
def test_the_band_rows_cost_in_the_spec_is_measured() -> None:
    doc = _flat(_wire_doc())
    assert (
        "`band_rows = 1` on a 512 × 640 grey 8-bit frame at keep 0.01 (jittered, 3,264 kept pixels, codec none) "
        "sends 512 packets, 39,104 bytes of which 35,840 are headers, against 4 packets, 3,544 bytes, with "
        "whole-frame bands"
    ) in doc
    n = int(make_mask(1, (512, 640), 0.01, "jittered").sum())
    assert n == 3264
    fr = SparseFrame(1, 512, 640, 1, 8, 0.01, "jittered", 1, 1, np.full((n, 1), 9, np.uint8))
    small = packetise(fr, config=WireConfig(band_rows=1))
    whole = packetise(fr)
    assert (len(small), sum(map(len, small)), len(small) * 70) == (512, 39104, 35840)
    assert (len(whole), sum(map(len, whole))) == (4, 3544)


# ------------------------------------------------------------------------------ item 5: keep = 1 in masks.md
def test_the_integer_threshold_hint_says_keep_1_overflows() -> None:
    doc = _flat((DOCS / "masks.md").read_text(encoding="utf-8"))
    assert "at keep = 1 that threshold is 2⁶⁴, which wraps to 0 in a `uint64_t`" in doc
    assert ((math.ceil(1.0 * 2**53) << 11) & (2**64 - 1)) == 0  # what a C port would compare against
    assert uniform_threshold(1.0) is None and make_mask(0, (3, 5), 1.0).all()
    assert uniform_threshold(1.0 - 2.0**-53) == 2**64 - 2048  # the largest keep below 1 fits

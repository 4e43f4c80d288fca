"""Hostile and broken files: decompression bombs, truncated and corrupt images, decoder errors, edited metadata.

One decoding path (``edgeae.imagedecode``) serves the ground (``read_image``) and the flight loop
(``firmware_sim.frames``): it reads the header first, refuses sizes over the limits before decoding, checks
the structure and names the file in every error. The flight loop drops such a frame with its reason and
goes on. Artifacts whose metadata disagrees with their graph are refused on load.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest

from edgeae._headers import ImageReadError
from edgeae.imagedecode import ImageLimits, decode_file
from edgeae.imageio import read_image, write_image

GB = 1 << 30
PNG_SIG = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(path: Path, w: int = 30000, h: int = 30000) -> Path:
    """A real decompression bomb: a ~100 KB 1-bit PNG whose pixels inflate to 30000×30000 (900 M pixels)."""
    row = b"\x00" * (1 + (w + 7) // 8)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row * 1000) for _ in range(h // 1000)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)
    path.write_bytes(PNG_SIG + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b""))
    return path


def png_bad_header(path: Path) -> Path:
    """A structurally complete RGB PNG whose IHDR (bit depth 3) the decoders refuse (OpenCV: cv2.error)."""
    ihdr = struct.pack(">IIBBBBB", 16, 16, 3, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (16 * 19))
    path.write_bytes(PNG_SIG + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b""))
    return path


def scene(h: int = 256, w: int = 384) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([(x * 255 // w), (y * 255 // h), ((x + y) % 256)], axis=2).astype(np.uint8)


def test_decompression_bomb_is_refused_from_its_header(tmp_path: Path) -> None:
    bomb = png_bomb(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 300_000
    with pytest.raises(ImageReadError, match=r"bomb\.png: 30000x30000 = 900,000,000 pixels is over the limit"):
        read_image(bomb)
    with pytest.raises(ImageReadError, match="over the limit of 1,000"):
        decode_file(tmp_path / "bomb.png", ImageLimits(max_pixels=1000))


def test_limits_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = write_image(tmp_path / "a.png", scene(40, 50))
    monkeypatch.setenv("EDGEAE_MAX_IMAGE_PIXELS", "1999")
    with pytest.raises(ImageReadError, match="over the limit of 1,999"):
        read_image(p)
    monkeypatch.setenv("EDGEAE_MAX_IMAGE_PIXELS", "2000")
    assert read_image(p).shape == (40, 50, 3)
    monkeypatch.setenv("EDGEAE_MAX_IMAGE_BYTES", "5999")
    with pytest.raises(ImageReadError, match="decoding needs 6,000 B"):
        read_image(p)
    monkeypatch.setenv("EDGEAE_MAX_IMAGE_BYTES", "lots")
    with pytest.raises(ValueError, match="EDGEAE_MAX_IMAGE_BYTES"):
        read_image(p)


def _truncated_jpeg(tmp_path: Path) -> Path:
    good = write_image(tmp_path / "full.jpg", scene())
    data = good.read_bytes()
    p = tmp_path / "cut.jpg"
    p.write_bytes(data[: len(data) // 2] + b"\xff\xd9")  # an end marker glued on: only the scan is short
    return p


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda d: png_bad_header(d / "hdr.png"), r"hdr\.png: the PNG decoder refused the file"),
        (_truncated_jpeg, r"cut\.jpg: the JPEG decoder refused the file"),
        (lambda d: _cut(write_image(d / "t.png", scene()), 0.6), r"t\.png: truncated PNG"),
        (lambda d: _flip(write_image(d / "f.png", scene())), r"f\.png: corrupt PNG \(CRC mismatch"),
    ],
)
def test_broken_files_give_one_clear_error_naming_the_file(tmp_path: Path, make, match: str) -> None:
    p = make(tmp_path)
    with pytest.raises(ImageReadError, match=match):
        read_image(p)
    from edgeae.firmware_sim.frames import FrameError, open_frame

    with pytest.raises(FrameError, match=match):
        reader = open_frame(p)
        list(reader.strips(64))


def _cut(p: Path, frac: float) -> Path:
    p.write_bytes(p.read_bytes()[: int(p.stat().st_size * frac)])
    return p


def _flip(p: Path) -> Path:
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x01
    p.write_bytes(bytes(data))
    return p


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".ppm", ".pgm", ".tif"])
def test_flight_and_ground_decode_the_same_samples(tmp_path: Path, suffix: str) -> None:
    from edgeae.firmware_sim.frames import open_frame

    from edgeae.imageio import read_raw

    img = scene(70, 90)[:, :, :1] if suffix == ".pgm" else scene(70, 90)
    p = write_image(tmp_path / f"x{suffix}", img)
    raw, _, _ = read_raw(p)
    reader = open_frame(p)
    assert (reader.header.height, reader.header.width, reader.header.channels) == raw.shape
    flight = np.concatenate([s.copy() for _, s in reader.strips(32)])  # a strip buffer is reused
    assert flight.dtype == raw.dtype and np.array_equal(flight, raw)
    if suffix != ".jpg":
        assert np.array_equal(raw, img if img.ndim == 3 else img[:, :, None])


def test_sixteen_bit_rgb_png_keeps_its_samples(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 65536, (20, 30, 3), dtype=np.uint16)
    p = write_image(tmp_path / "d.png", img)
    arr, info = decode_file(p)
    assert info.bit_depth == 16 and arr.dtype == np.uint16 and np.array_equal(arr, img)


def _flight_script(frames: list[Path], out: Path, block_cv2: bool) -> str:
    args = ["run", "--mission", "rover_mastcamz", "--frames", *map(str, frames), "--out", str(out)]
    args += ["--set", "camera.height=0", "--set", "camera.width=0", "--set", "budget.memory_bytes=1073741824"]
    return textwrap.dedent(
        f"""
        import json, resource, sys
        if {block_cv2}:
            sys.modules["cv2"] = None  # as on a board: the flight extras do not install OpenCV
        from edgeae.firmware_sim.cli import main
        rc = main({args!r})
        # VmHWM: this process's own high-water mark (ru_maxrss would carry the forking pytest's peak)
        hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")]
        peak = int(hwm[0].split()[1]) * 1024 if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(json.dumps({{"rc": rc, "peak": peak, "cv2": "cv2" in sys.modules and sys.modules["cv2"] is not None}}))
        """
    )


def test_flight_loop_drops_bad_frames_with_reasons_and_goes_on(tmp_path: Path) -> None:
    """good, bomb, truncated JPEG, decoder-refused PNG, good (PNG/JPEG/TIFF): without OpenCV, under 1 GB."""
    pytest.importorskip("onnxruntime")
    frames = [
        write_image(tmp_path / "a.png", scene()),
        png_bomb(tmp_path / "bomb.png"),
        _truncated_jpeg(tmp_path),
        png_bad_header(tmp_path / "hdr.png"),
        write_image(tmp_path / "b.jpg", scene()),
        write_image(tmp_path / "c.tif", scene()),
    ]
    out = tmp_path / "run"
    res = subprocess.run(
        [sys.executable, "-c", _flight_script(frames, out, block_cv2=True)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["rc"] == 0 and not got["cv2"]
    assert got["peak"] <= GB, f"peak RSS {got['peak'] / 2**20:.0f} MiB"
    s = json.loads((out / "summary.json").read_text())
    f = s["frames"]
    assert f["acquired"] == 6 and f["dropped"] == 3 and f["accounted"]
    ledger = [json.loads(x) for x in (out / "telemetry.jsonl").read_text().splitlines()]
    recs = {Path(r["source"]).name: r for r in ledger if r.get("type", r.get("kind")) == "frame" or "status" in r}
    for name in ("a.png", "b.jpg", "c.tif"):
        assert recs[name]["status"] == "processed", recs[name]
    for name, text in (("bomb.png", "over the limit"), ("cut.jpg", "JPEG decoder"), ("hdr.png", "PNG decoder")):
        assert recs[name]["status"] == "dropped" and recs[name]["reason"] == "unreadable", recs[name]
        assert text in recs[name]["detail"] and name in recs[name]["detail"]


# ------------------------------------------------------------------------------------------ edited metadata
def _edited_artifact(tmp_path: Path, zoo_name: str, edit: dict) -> Path:
    onnx = pytest.importorskip("onnx")
    from edgeae.metadata import METADATA_KEY
    from edgeae.resolve import ARTIFACTS_DIR

    src = ARTIFACTS_DIR / zoo_name / f"{zoo_name}.int8.onnx"
    model = onnx.load(str(src))
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            meta = json.loads(prop.value)
            meta.update(edit)
            prop.value = json.dumps(meta)
    dst = tmp_path / f"edited-{zoo_name}.onnx"
    onnx.save(model, str(dst))
    return dst


@pytest.mark.parametrize(
    ("zoo_name", "edit", "command"),
    [
        ("rover-rgb-gtcae", {"input_shape": [-1, 3, 100000, 100000]}, "reconstruct"),
        ("rover-rgb-gtcae", {"input_shape": [-1, 1, 128, 128], "channels": 1}, "reconstruct"),
        ("orbital-gray-vae", {"input_shape": [-1, 1, 100000, 100000]}, "score"),
        ("orbital-gray-vae", {"input_shape": [-1, 3, 64, 64], "channels": 3}, "score"),
    ],
)
def test_edited_metadata_is_refused_on_load(tmp_path: Path, capsys, zoo_name: str, edit: dict, command: str) -> None:
    from edgeae.cli import main

    art = _edited_artifact(tmp_path, zoo_name, edit)
    img = write_image(tmp_path / "i.png", scene(128, 128))
    if command == "reconstruct":
        argv = ["reconstruct", str(img), "--model", str(art), "--method", "cae", "-o", str(tmp_path / "o.png")]
    else:
        argv = ["score", str(img), "--model", str(art), "-o", str(tmp_path / "s.csv"), "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "disagrees with the graph's input" in err and art.name in err, err


# ------------------------------------------------------------------------------------------ CLI mistakes
@pytest.fixture()
def grey_png(tmp_path: Path) -> Path:
    return write_image(tmp_path / "g.png", scene(128, 128)[:, :, :1])


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--model", "no-such-model", "-o", "{d}/s.csv"], "no-such-model"),
        (["--model", "orbital-gray-vae", "-o", "{d}"], "is a directory"),
        (["--model", "orbital-gray-vae", "--patch", "0", "-o", "{d}/s.csv"], "--patch must be a positive"),
        (["--model", "orbital-gray-vae", "--min-valid", "nan", "-o", "{d}/s.csv"], "--min-valid must be"),
    ],
)
def test_score_mistakes_exit_2_with_one_line(tmp_path: Path, grey_png: Path, capsys, argv, match) -> None:
    from edgeae.cli import main

    assert main(["score", str(grey_png), *(a.format(d=tmp_path) for a in argv), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err, err


def test_non_toml_link_names_the_file(tmp_path: Path, grey_png: Path, capsys) -> None:
    from edgeae.cli import main

    link = tmp_path / "bad.toml"
    link.write_bytes(b"\x00\xff\xfe binary")
    assert (
        main(["downlink", "simulate", "--image", str(grey_png), "--link", str(link), "--out", str(tmp_path / "p")]) == 2
    )
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.toml" in err and "not a TOML text file" in err


@pytest.mark.parametrize(
    ("toml", "match"),
    [
        ("[link]\nseed = 1.5\n", "seed must be a whole number"),  # was a TypeError from numpy's SeedSequence
        ("link = 5\n", "'link' must be a table"),  # was "'int' object is not iterable"
        ('[link]\nloss = "high"\n', "loss must be a number"),
        ("[link]\nloss = true\n", "loss must be a number"),  # was taken as 100 % loss
    ],
)
def test_link_file_mistakes_are_one_line_errors(tmp_path: Path, grey_png: Path, capsys, toml, match) -> None:
    from edgeae.cli import main

    link = tmp_path / "l.toml"
    link.write_text(toml)
    argv = ["downlink", "simulate", "--image", str(grey_png), "--link", str(link), "--out", str(tmp_path / "p")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "l.toml" in err and match in err, err


def test_ports_outside_the_udp_range_are_refused(tmp_path: Path, capsys) -> None:
    from edgeae.cli import main

    for argv in (["downlink", "send", str(tmp_path / "p.bin"), "--port", "70000"],
                 ["ground", "serve", "--port", "-1", "--out", str(tmp_path / "g")]):  # fmt: skip
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2 and "a UDP port is 0-65535" in capsys.readouterr().err
    assert not (tmp_path / "g").exists()
    (tmp_path / "empty.bin").write_bytes(b"")  # nothing to send: refused (it sent only end-of-transmission)
    assert main(["downlink", "send", str(tmp_path / "empty.bin"), "--port", "9"]) == 1  # a data error (s37)
    assert "holds no packets" in capsys.readouterr().err


def test_firmware_sim_mistakes_exit_2_with_one_line(tmp_path: Path, grey_png: Path, capsys) -> None:
    from edgeae.firmware_sim.cli import main

    taken = tmp_path / "taken"
    taken.write_text("x")
    base = ["run", "--mission", "orbital_nac", "--frames", str(grey_png)]
    assert main([*base, "--out", str(taken)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "existing file" in err
    assert main([*base, "--out", str(tmp_path / "o"), "--set", "sampling.keep=abc"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "keep takes a number" in err and "'abc'" in err

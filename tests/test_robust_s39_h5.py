"""Session-39 fixer h5: three robustness gaps left from earlier reviews.

(a) An LZW-, JPEG-, ZSTD-compressed or floating-point-predicted TIFF read on the ground without ``imagecodecs`` failed
    with ``ImageReadError`` "not a readable TIFF (... requires the 'imagecodecs' package)" (a whole read) or "cannot
    decode TIFF segment 0 (...)" (a streamed one): a corrupt file, to the user and to every caller that skips
    unreadable files. It is now :class:`~edgeae._optional.MissingDependencyError` naming the package, the file's codec
    and the extra to install (the flight's own check, ``firmware_sim.frame_decoders``, is unchanged).
(b) ``keep_for_bytes`` raised ``TooManyPackets`` from inside its search (its first probe) whenever a probed frame
    needed 65,536 packets or more, also when the budget's own frame needs far fewer. A budget whose frame cannot be one
    product is now refused before any frame is packed, in one line (frame size, packets needed, what helps); a probe
    over the packet limit is a frame that does not fit, and the search goes on below it.
(c) ``edgeae score --score frame-z-knn / context-knn / local-z`` counted a frame's declared patches by building the
    list of every patch position (``tile_positions``): a 100-byte PNG claiming 2**31 × 2**31 pixels took all the
    memory (MemoryError under a 4 GB address-space limit) before the set-size bound could refuse it.
"""

from __future__ import annotations

import resource
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest
from _helpers_decoders import TIFF_PIP, hide_imagecodecs

tifffile = pytest.importorskip("tifffile")
pytest.importorskip("imagecodecs")  # writes the LZW/JPEG/ZSTD files (its encoders) before it is hidden

ROOT = Path(__file__).resolve().parents[1]
AS_LIMIT = 4_000_000 * 1024  # ulimit -v 4000000, as the hostile-header runs of the brief


def _noise(shape: tuple[int, ...], dtype: type = np.uint8) -> np.ndarray:
    return np.random.default_rng(3).integers(0, np.iinfo(dtype).max, shape, dtype=dtype)


# ------------------------------------------------------------------------------------------- (a) TIFF codecs
def _tiffs(folder: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    rgb = (rng.random((64, 80, 3)) * 255).astype(np.uint8)
    out = {}
    for name, kw in {
        "LZW compression": {"compression": "lzw"},
        "JPEG compression": {"compression": "jpeg"},
        "ZSTD compression": {"compression": "zstd"},
    }.items():
        out[name] = folder / f"{name.split()[0].lower()}.tif"
        tifffile.imwrite(out[name], rgb, **kw)
    out["FLOATINGPOINT predictor"] = folder / "fp.tif"
    tifffile.imwrite(out["FLOATINGPOINT predictor"], rng.random((64, 80)).astype(np.float32), predictor=3,
                     compression="zlib")  # fmt: skip
    return out


@pytest.mark.parametrize("reader", ["read_image", "rows"])
def test_a_tiff_codec_without_imagecodecs_is_a_missing_dependency(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reader: str
) -> None:
    """Whole (``read_image``) and streamed (``RowReader``: ``edgeae score``, ``scan``) reads: the pip line, the
    file and its codec, and not an ImageReadError (callers skip those as bad files); a deflate TIFF still reads."""
    from edgeae._headers import ImageReadError
    from edgeae._optional import MissingDependencyError
    from edgeae.imageio import read_image
    from edgeae.row_bands import RowReader
    from edgeae.scan.manifest import _NEEDED

    files = _tiffs(tmp_path)
    deflate = tmp_path / "deflate.tif"
    tifffile.imwrite(deflate, np.arange(64 * 80, dtype=np.uint16).reshape(64, 80), compression="zlib")
    hide_imagecodecs(monkeypatch)

    def read(p: Path) -> tuple[int, ...]:
        if reader == "read_image":
            return read_image(p).shape
        with RowReader(p) as r:
            return r.read_rows(0, 8)[0].shape

    for what, path in files.items():
        with pytest.raises(MissingDependencyError) as got:
            read(path)
        msg = str(got.value)
        assert not isinstance(got.value, ImageReadError)
        assert msg.startswith("'imagecodecs' is needed here but is not installed (to decode"), msg
        assert str(path) in msg and what in msg and TIFF_PIP in msg and "\n" not in msg, msg
        assert _NEEDED.match(f"MissingDependencyError: {msg}").group(1) == "imagecodecs"  # a scan's rerun retakes it
    assert read(deflate)[:2] in ((64, 80), (8, 80))


def test_an_imagecodecs_without_the_codec_says_reinstall(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """imagecodecs installed (it imports) but without the LZW codec tifffile asks it for: reinstall, not install."""
    import types

    import tifffile.tifffile as tf

    from edgeae._optional import MissingDependencyError
    from edgeae.imageio import read_image

    path = _tiffs(tmp_path)["LZW compression"]
    monkeypatch.setattr(tf, "imagecodecs", types.SimpleNamespace())  # no lzw_decode: tifffile's AttributeError
    monkeypatch.setattr(tifffile.TIFF, "DECOMPRESSORS", tf.CompressionCodec(encode=False))
    want = r"'imagecodecs' is installed here but does not decode .*lzw\.tif's LZW compression .*--force-reinstall"
    with pytest.raises(MissingDependencyError, match=want):
        read_image(path)


def test_edgeae_score_on_an_lzw_tiff_without_imagecodecs_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command: one line with the pip line, status 2 (a usage/installation error), no traceback."""
    from edgeae.cli import main

    path = tmp_path / "lzw.tif"
    tifffile.imwrite(path, (np.random.default_rng(1).random((96, 96)) * 255).astype(np.uint8), compression="lzw")
    hide_imagecodecs(monkeypatch)
    model = "zoo:orbital-gray-vae/orbital-gray-vae.int8.onnx"  # no torch to load: the read fails first
    rc = main(["score", str(path), "--model", model, "--no-progress", "-o", str(tmp_path / "s.csv")])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "error: 'imagecodecs' is needed here but is not installed" in err and TIFF_PIP in err, err
    assert "Traceback" not in err, err
    assert "not a readable TIFF" not in err and "cannot decode TIFF segment" not in err, err


# ------------------------------------------------------------------------------------------- (b) packet limit
def test_a_budget_whose_frame_needs_too_many_packets_is_refused_before_any_packing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """2304×2304 grey at 128-byte packets: 10,000,000 B fill at least 78,125 packets, over the 65,535 of a product.
    Refused in one line that says the frame, the packets and what helps, before a single frame is packed."""
    from edgeae.ground import keep_search
    from edgeae.wire.layout import WireConfig
    from edgeae.wire.sparse_plan import TooManyPackets

    def never(*_a: object, **_k: object) -> None:
        raise AssertionError("a frame was packed before the refusal")

    monkeypatch.setattr(keep_search, "_packed", never)
    samples = _noise((2304, 2304, 1))
    with pytest.raises(TooManyPackets) as got:
        keep_search.keep_for_bytes(samples, 8, 10_000_000, WireConfig(128), seed=1)
    msg = str(got.value)
    assert "\n" not in msg and "2304x2304x1" in msg and "78,125 packets" in msg and "65,535" in msg, msg
    assert f"{65_535 * 128:,} B" in msg and "coarser keep" in msg and "2 tiles" in msg, msg


def test_a_probe_over_the_packet_limit_does_not_stop_the_search() -> None:
    """272×272 pixels of 16 bands of 16 bits at 128-byte packets (one pixel a packet): the budget's frame fits in
    ~18,700 packets, the search's first probe (the whole frame, 73,984 packets) did not: TooManyPackets from inside the
    search until now. The search now finds the keep whose frame fits, within two packets of the budget, in fewer
    than 65,536 packets."""
    from edgeae.ground.keep_search import _packed, keep_for_bytes
    from edgeae.ground.sources import sparse_from_samples
    from edgeae.wire.layout import WireConfig

    samples, wire, budget = _noise((272, 272, 16), np.uint16), WireConfig(128), 2_400_000
    keep = keep_for_bytes(samples, 16, budget, wire, seed=5)
    size, packets = _packed(sparse_from_samples(samples, 16, keep, 5), wire)
    assert size <= budget < size + 2 * 128 and packets < 2**16 and 0.2 < keep < 0.4, (size, packets, keep)


def test_a_frame_that_compresses_under_a_large_budget_is_sent_whole() -> None:
    """A budget over 65,535 packets' bytes is not refused when the whole frame, coded, fits it in fewer packets."""
    from edgeae.ground.keep_search import keep_for_bytes
    from edgeae.wire.layout import WireConfig

    flat = np.full((1024, 1024, 1), 7, np.uint8)  # delta-deflate codes it to almost nothing
    assert keep_for_bytes(flat, 8, 65_536 * 128 + 1, WireConfig(128, codec="delta-deflate"), seed=2) == 1.0


# ------------------------------------------------------------------------------------------- (c) hostile headers
def _png_header_only(path: Path, w: int, h: int) -> Path:
    """A ~70-byte PNG whose IHDR claims ``w`` × ``h`` grey pixels (its IDAT holds next to nothing)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def _limited(code: str, timeout: int = 60) -> subprocess.CompletedProcess[str]:
    """``code`` in a child under a 4 GB address-space limit, killed after ``timeout`` s (as the brief's ulimit -v
    4000000 and timeout -s KILL 60): a regression fails the test, not the machine."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))

    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, preexec_fn=limit, cwd=ROOT)  # fmt: skip


def test_header_patches_of_a_hostile_header_are_counted_without_allocating(tmp_path: Path) -> None:
    """2**31 - 1 pixels a side at patch 64, stride 1: 4.6e18 patches, counted from the header in a few KB."""
    bomb = _png_header_only(tmp_path / "bomb.png", 2**31 - 1, 2**31 - 1)
    assert bomb.stat().st_size < 100
    proc = _limited(f"""
        import tracemalloc
        from pathlib import Path
        from edgeae.cli.score_checks import _header_patches
        _header_patches(Path({str(bomb)!r}), 64, 64)  # its lazy imports, before the count is traced
        tracemalloc.start()
        n = _header_patches(Path({str(bomb)!r}), 64, 1)
        print(n, tracemalloc.get_traced_memory()[1])
    """)
    assert proc.returncode == 0, proc.stderr[-2000:]
    n, peak = map(int, proc.stdout.split())
    assert n == (2**31 - 1 - 64 + 1) ** 2 and peak < 1 << 20, (n, peak)


def test_score_knn_refuses_a_hostile_header_before_allocating(tmp_path: Path) -> None:
    """The set's bound applies to the count, before any allocation: one line naming the hostile image and its size,
    status 2 (was MemoryError and a traceback, or every byte of memory without the limit); ``local-z``'s per-image
    bound too. The int8 ONNX artifact keeps torch out of the child (the checks come before any scoring)."""
    from edgeae.imageio import write_image

    ok = write_image(tmp_path / "ok.png", _noise((128, 128, 1)))
    bomb = _png_header_only(tmp_path / "bomb.png", 2**31 - 1, 2**31 - 1)
    model = "zoo:orbital-gray-vae/orbital-gray-vae.int8.onnx"
    runs = {
        score: ["score", str(ok), str(bomb), "--model", model, "--score", score, "-o", str(tmp_path / f"{score}.csv")]
        for score in ("frame-z-knn", "context-knn", "local-z")
    }
    for argv in runs.values():
        argv += ["--no-progress", "--threads", "1"]
    proc = _limited(f"""
        import sys
        from edgeae.cli import main
        for score, argv in {runs!r}.items():
            print(score, main(argv), file=sys.stderr)
    """)
    err = proc.stderr
    assert proc.returncode == 0 and "MemoryError" not in err and "Traceback" not in err, err[-3000:]
    for score in ("frame-z-knn", "context-knn"):
        assert f"\n{score} 2\n" in err, err
        line = next(x for x in err.splitlines() if x.startswith(f"edgeae score: error: --score {score} ranks"))
        assert "over the limit" in line and "bomb.png alone declares 2147483647x2147483647 pixels" in line, line
        assert not (tmp_path / f"{score}.csv").exists()
    assert "\nlocal-z 2\n" in err and "bomb.png" in err.split("context-knn 2\n")[1], err


def test_the_count_is_the_positions_count(tmp_path: Path) -> None:
    """:func:`_header_patches` counts the positions ``score_file`` scores, on ordinary sizes."""
    from edgeae.cli.score_checks import _header_patches
    from edgeae.imageio import write_image
    from edgeae.tiling import tile_positions

    for h, w, patch, stride in [(64, 64, 64, 64), (100, 300, 64, 32), (63, 500, 64, 64), (1000, 999, 128, 17)]:
        path = write_image(tmp_path / f"{h}x{w}.png", np.zeros((h, w, 1), np.uint8))
        assert _header_patches(path, patch, stride) == len(tile_positions(h, w, patch, stride)), (h, w, patch, stride)

"""Session-39 fixer h7: four problems review r2 found in (or beside) 9970812, 272d43c and 80bed52.

1. ``edgeae score`` over several files stopped with status 2 and wrote no CSV when one TIFF needed ``imagecodecs``
   (9970812 made that a MissingDependencyError, which went past the per-file skip): every score was lost.
2. ``keep_for_bytes`` near the packet limit packed 47-143 frames (22-27 s) instead of 5-11: a frame over the limit
   was given the size ``budget + 1``, and false position crawled from it a sample at a time.
3. At budgets between the largest frame one product can carry and 65,535 full packets it returned a frame up to
   20 % under the budget without a word, and the refusal one byte above sent users into that range.
4. ``edgeae score`` on a terminal listed every patch position of the header's size for its progress bar: a 130-byte
   TIFF claiming 2**31 - 1 pixels a side ended in MemoryError.
"""

from __future__ import annotations

import json
import resource
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from _helpers_decoders import TIFF_PIP, hide_imagecodecs
from _helpers_keep_search import count_packings

ROOT = Path(__file__).resolve().parents[1]
AS_LIMIT = 4_000_000 * 1024  # ulimit -v 4000000
MODEL = "zoo:orbital-gray-vae/orbital-gray-vae.int8.onnx"  # no torch to load


def _grey(shape: tuple[int, int], seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random((*shape, 1)) * 255).astype(np.uint8)


# ------------------------------------------------------------------------------ 1. a TIFF codec in a set of images
def _set_with_an_lzw_tiff(folder: Path) -> list[Path]:
    """a.png, b_lzw.tif (needs imagecodecs to decode), c.png: 128x128 grey noise each."""
    tifffile = pytest.importorskip("tifffile")
    pytest.importorskip("imagecodecs")  # its LZW encoder writes the file before it is hidden
    from edgeae.imageio import write_image

    lzw = folder / "b_lzw.tif"
    tifffile.imwrite(lzw, _grey((128, 128), 2)[..., 0], compression="lzw")
    a, c = (write_image(folder / f"{n}.png", _grey((128, 128), seed)) for n, seed in (("a", 1), ("c", 3)))
    return [a, lzw, c]


def test_score_skips_a_tiff_that_needs_imagecodecs_and_keeps_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The other images are scored and written (status 1, as for any unreadable file); the skipped one is named with
    the pip line, on its skip line, in the closing summary and in the settings' ``skipped``."""
    from edgeae.cli import main

    files = _set_with_an_lzw_tiff(tmp_path)
    hide_imagecodecs(monkeypatch)
    out = tmp_path / "s.csv"
    rc = main(["score", *map(str, files), "--model", MODEL, "--no-progress", "--threads", "1", "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert out.exists(), err
    scored = {line.split(",")[0] for line in out.read_text().splitlines()[1:]}
    assert scored == {str(files[0]), str(files[2])}, scored
    skip = next(x for x in err.splitlines() if x.startswith("skipped: "))
    assert str(files[1]) in skip and "'imagecodecs' is needed here but is not installed" in skip and TIFF_PIP in skip
    summary = err.strip().splitlines()[-1]
    assert "1 image(s) could not be read and were skipped" in summary and str(files[1]) in summary, summary
    assert TIFF_PIP in summary, summary
    assert json.loads(Path(f"{out}.json").read_text())["skipped"] == [str(files[1])]
    assert "Traceback" not in err


def test_score_of_images_that_all_need_imagecodecs_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nothing could be scored, for want of a package only: the one-line pip line and status 2, as for one image;
    with a damaged file as well, the command's own line says how many, and the pip line."""
    from edgeae.cli import main

    lzw = _set_with_an_lzw_tiff(tmp_path)[1]
    other = tmp_path / "d_lzw.tif"
    other.write_bytes(lzw.read_bytes())
    hide_imagecodecs(monkeypatch)
    out = tmp_path / "s.csv"
    rc = main(["score", str(lzw), str(other), "--model", MODEL, "--no-progress", "--threads", "1", "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 2, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("edgeae score: error: 'imagecodecs' is needed here but is not installed"), last
    assert TIFF_PIP in last and not out.exists(), err
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)  # a damaged file beside it: the count, and the pip line
    rc = main(["score", str(bad), str(lzw), "--model", MODEL, "--no-progress", "--threads", "1", "-o", str(out)])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2 and last.startswith("edgeae score: error: no image could be read (2 skipped"), last
    assert "1 of them for a package not installed here: 'imagecodecs' is needed" in last and TIFF_PIP in last, last


def test_scan_records_a_tiff_that_needs_imagecodecs_and_its_rerun_takes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``edgeae scan`` (local engine, in process): the TIFF is a failure for a missing package, the PNGs are scanned;
    a plain rerun with imagecodecs back scans it (the manifest retakes it) and leaves the others."""
    from edgeae.scan.run import EngineOptions, scan_archive

    folder = tmp_path / "in"
    folder.mkdir()
    _set_with_an_lzw_tiff(folder)
    out = tmp_path / "o"
    with monkeypatch.context() as m:
        hide_imagecodecs(m)
        first = scan_archive(folder, "orbital-gray-vae", out, engine=EngineOptions(workers=0), progress=False)
    assert first["failed"] == 1, first
    (why,) = [f["error"] for f in first["failures"]]
    assert why.startswith("MissingDependencyError: 'imagecodecs' is needed here") and TIFF_PIP in why, why
    again = scan_archive(folder, "orbital-gray-vae", out, engine=EngineOptions(workers=0), progress=False)
    assert again["failed"] == 0, again


# ------------------------------------------------------------------------------ 2-3. keep_for_bytes, packet limit
LARGEST = 65_535 * 102  # 272x272x16 and 1040x1040x1 16-bit frames in 128-byte packets: 102 B a packet at the most


def test_a_budget_over_the_largest_frame_one_product_carries_is_refused_in_a_few_packings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """1040x1040 grey 16-bit pixels in 128-byte packets: the planner puts 16 of them (102 B) in a packet where 29 fit,
    so one product carries at most 6,684,570 B, under 65,535 x 128 = 8,388,480. A budget of 7,000,000 B returned that
    frame, 4.5 % under, without a word, after 95 packings (the frames over the limit counted budget + 1); it is
    refused in a few, naming that frame's size as the budget to give."""
    from edgeae.ground.keep_search import keep_for_bytes
    from edgeae.wire.layout import WireConfig
    from edgeae.wire.sparse_plan import TooManyPackets

    samples = np.random.default_rng(3).integers(0, 65535, (1040, 1040, 1), dtype=np.uint16)
    packed = count_packings(monkeypatch)
    with pytest.raises(TooManyPackets) as got:
        keep_for_bytes(samples, 16, 7_000_000, WireConfig(128), seed=5)
    msg = str(got.value)
    assert len(packed) <= 10, len(packed)
    assert "\n" not in msg and "over the largest frame of it one product carries" in msg, msg
    assert f"give a budget of at most {LARGEST:,} B" in msg and "65,535 packets" in msg, msg


@pytest.mark.parametrize("over", [0, 101, 102, 129])
def test_the_budget_the_refusal_gives_is_sent_and_a_next_frame_that_would_fit_is_refused(
    monkeypatch: pytest.MonkeyPatch, over: int
) -> None:
    """272x272x16 16-bit (one 32-byte pixel a packet): the largest frame one product carries is 6,684,570 B. A budget
    up to the next frame's bytes (a pixel and a packet's headers more, 102 B) gets it; from there the packet limit,
    not the budget, stops the keep: refused (by the search, or before it when the budget is more than a packet over
    65,535 full packets), in both cases with that frame's size. Until review r2 #3 every budget up to 8,388,480 B was
    answered with this frame without a word, and one byte more was refused with "a budget under 8,388,480 B"."""
    from edgeae.ground.keep_search import _packed, keep_for_bytes
    from edgeae.ground.sources import sparse_from_samples
    from edgeae.wire.layout import WireConfig
    from edgeae.wire.sparse_plan import TooManyPackets

    samples, wire = np.random.default_rng(3).integers(0, 65535, (272, 272, 16), dtype=np.uint16), WireConfig(128)
    packed = count_packings(monkeypatch)
    if over < 102:
        keep = keep_for_bytes(samples, 16, LARGEST + over, wire, seed=5)
        assert _packed(sparse_from_samples(samples, 16, keep, 5), wire) == (LARGEST, 65_535), keep
        assert len(packed) <= 8, len(packed)
        return
    with pytest.raises(TooManyPackets, match=f"at most {LARGEST:,} B") as got:
        keep_for_bytes(samples, 16, LARGEST + over, wire, seed=5)
    assert ("over the largest frame" in str(got.value)) == (over == 102) and bool(packed) == (over == 102), got.value


# ------------------------------------------------------------------------------ 4. the progress bar's total
def _tiff_header_only(path: Path, side: int) -> Path:
    """A ~130-byte little-endian grey 8-bit TIFF of one strip whose tags claim ``side`` x ``side`` pixels."""
    tags = [(256, 4, side), (257, 4, side), (258, 3, 8), (259, 3, 1), (262, 3, 1), (273, 4, 0), (277, 3, 1),
            (278, 4, side), (279, 4, 8)]  # fmt: skip
    data_at = 8 + 2 + 12 * len(tags) + 4
    out = b"II*\x00" + struct.pack("<IH", 8, len(tags))
    for tag, kind, value in tags:
        value = data_at if tag == 273 else value
        packed = struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
        out += struct.pack("<HHI", tag, kind, 1) + packed
    path.write_bytes(out + struct.pack("<I", 0) + b"\0" * 8)
    return path


def test_score_file_progress_bar_of_a_hostile_header_allocates_nothing(tmp_path: Path) -> None:
    """On a terminal, under a 4 GB address-space limit: the read's own one-line refusal, not MemoryError."""
    pytest.importorskip("tqdm")
    pytest.importorskip("tifffile")
    bomb = _tiff_header_only(tmp_path / "bomb.tif", 2**31 - 1)
    assert bomb.stat().st_size < 200
    code = f"""
        from edgeae._headers import ImageReadError
        from edgeae.anomaly import score
        score._on_terminal = lambda: True
        class Scorer:  # a scorer of one channel (score_file refuses what is not one: session 46)
            channels = 1

            def __call__(self, batch):
                return {{"score": batch.sum(axis=(1, 2, 3))}}

        try:
            score.score_file({str(bomb)!r}, Scorer(), 64, 64, progress=True)
        except ImageReadError as exc:
            print("refused:", exc)
    """

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))

    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60,
                          preexec_fn=limit, cwd=ROOT)  # fmt: skip
    assert proc.returncode == 0 and "MemoryError" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stdout.startswith("refused: ") and "reading rows 0..1 takes" in proc.stdout, proc.stdout


def test_score_file_progress_bar_total_is_the_patch_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bar's total (counted, not listed) is the number of positions scored."""
    tqdm = pytest.importorskip("tqdm")
    from edgeae.anomaly import score
    from edgeae.imageio import write_image
    from edgeae.tiling import tile_positions

    totals: list[int] = []

    class Bar(tqdm.tqdm):  # type: ignore[misc]
        def __init__(self, *a: object, total: int, **k: object) -> None:
            totals.append(total)
            super().__init__(*a, total=total, disable=True, **k)

    monkeypatch.setattr(tqdm, "tqdm", Bar)
    monkeypatch.setattr(score, "_on_terminal", lambda: True)

    class Scorer:
        channels = 1

        def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
            return {"score": x.reshape(len(x), -1).mean(axis=1)}

    path = write_image(tmp_path / "g.png", _grey((100, 300), 4))
    r = score.score_file(path, Scorer(), 64, 40, progress=True)  # type: ignore[arg-type]
    assert totals == [len(tile_positions(100, 300, 64, 40))] == [len(r)], (totals, len(r))

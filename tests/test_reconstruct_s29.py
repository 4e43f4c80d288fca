"""`edgeae reconstruct` (session 29): no-data is not received, outputs keep the input's counts and mark no-data,
outputs are checked (links, folders, flags) and memory estimated before the fill, ignored options are noted."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeae.imageio import read_image
from edgeae.masks import make_mask


def _cli(*argv: Any) -> int:
    from edgeae.cli import main

    return main([str(a) for a in argv])


def _pgm12(path: Path, counts: np.ndarray) -> Path:
    """A binary 12-bit PGM (maxval 4095, big-endian 16-bit samples)."""
    h, w = counts.shape
    path.write_bytes(f"P5\n{w} {h}\n4095\n".encode() + counts.astype(">u2").tobytes())
    return path


@pytest.fixture
def ramp_png(tmp_path: Path) -> Path:
    from edgeae.imageio import write_image

    y, x = np.mgrid[0:48, 0:64]
    return write_image(tmp_path / "ramp.png", ((x * 2 + y) % 256).astype(np.uint8))


def test_no_data_pixels_are_not_received(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A NaN hole in a float TIFF: its sampled pixels are left out of the fill (not used as black samples), counted
    in the JSON, written as 0, and the valid map is saved beside the output."""
    tifffile = pytest.importorskip("tifffile")
    y, x = np.mgrid[0:64, 0:64]
    truth = (0.3 + 0.004 * x + 0.003 * y).astype(np.float32)
    img = truth.copy()
    img[20:44, 20:44] = np.nan
    src = tmp_path / "hole.tif"
    tifffile.imwrite(src, img)
    out, mj = tmp_path / "r.tif", tmp_path / "m.json"
    assert _cli("reconstruct", src, "--method", "linear", "--keep", 0.3, "-o", out, "--metrics-json", mj) == 0
    assert "sampled pixels hold no data" in capsys.readouterr().out
    valid = np.isfinite(img)
    sampled = make_mask(0, img.shape, 0.3)
    m = json.loads(mj.read_text())
    assert m["sampled_no_data"] == int((sampled & ~valid).sum()) > 0
    assert m["received"] == int((sampled & valid).sum()) and m["sampled"] == int(sampled.sum())
    rec = tifffile.imread(out).astype(np.float64) / 65535
    ring = np.zeros_like(valid)
    ring[18:46, 18:46] = True
    ring &= valid  # the pixels with data next to the hole: filled from their own neighbours, not from black
    assert np.abs(rec[ring] - truth[ring]).max() < 0.01
    assert (rec[~valid] == 0).all() and m["output_samples"]["nodata_written_as"] == 0
    vmap = tmp_path / "r.valid.png"
    assert m["valid_map"] == str(vmap)
    from edgeae.imageio import read_image

    assert np.array_equal(read_image(vmap).pixels[..., 0] > 0.5, valid)


def test_twelve_bit_counts_come_back_exactly_and_the_output_reads_as_the_same_image(tmp_path: Path) -> None:
    """A 12-bit image is written at full 16-bit scale, from which the kept counts come back exactly
    (raw = round(v * 4095 / 65535)); its own counts in a 16-bit file read back 16x darker (review of the first fix)."""
    tifffile = pytest.importorskip("tifffile")
    cv2 = pytest.importorskip("cv2")
    y, x = np.mgrid[0:40, 0:56]
    counts = (1000 + 40 * x + 13 * y).astype(np.uint16)  # 1000..3707
    src = _pgm12(tmp_path / "deep.pgm", counts)
    known = make_mask(2, counts.shape, 0.25)
    for name in ("r.tif", "r.png"):
        out, mj = tmp_path / name, tmp_path / f"{name}.json"
        assert _cli("reconstruct", src, "--method", "nearest", "--keep", 0.25, "--seed", 2, "-o", out,
                    "--metrics-json", mj, "--save-masked") == 0  # fmt: skip
        rec = tifffile.imread(out) if name.endswith(".tif") else cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
        back = np.rint(rec.astype(np.float64) * 4095 / 65535).astype(np.uint16)
        assert rec.dtype == np.uint16 and np.array_equal(back[known], counts[known])
        again = read_image(out, detect_nodata=False).pixels[..., 0]  # reads back as bright as the input
        assert abs(float(again.mean()) - float(read_image(src, detect_nodata=False).pixels.mean())) < 0.02
        masked = tmp_path / f"r.masked.{'png'}"
        mrec = cv2.imread(str(masked), cv2.IMREAD_UNCHANGED)
        mback = np.rint(mrec.astype(np.float64) * 4095 / 65535).astype(np.uint16)
        assert np.array_equal(mback[known], counts[known]) and (mrec[~known] == 0).all()
        s = json.loads(mj.read_text())
        assert s["scale"] == 4095 and s["output_samples"]["scale"] == 4095 and s["output_samples"]["raw_lo"] == 0
        assert "exact" in s["output_samples"]["rule"]


def test_hard_and_symbolic_links_to_the_input_are_refused(
    ramp_png: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hard, soft = tmp_path / "hard.png", tmp_path / "soft.png"
    os.link(ramp_png, hard)
    soft.symlink_to(ramp_png)
    before = ramp_png.read_bytes()
    for link, flag in ((hard, "-o"), (soft, "--save-masked")):
        argv = ["-o", link] if flag == "-o" else ["-o", tmp_path / "r.png", "--save-masked", link]
        assert _cli("reconstruct", ramp_png, "--method", "linear", *argv) == 2
        err = capsys.readouterr().err
        assert f"{flag} {link} is the input image" in err
    assert ramp_png.read_bytes() == before


def test_folders_and_unwritable_outputs_refused_before_the_fill(
    ramp_png: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder given as any output, and an output that cannot be written, are refused before the fill, naming
    the flag given (not "-o" for every non-JSON file)."""
    import edgeae.reconstruct

    def no_fill(*a: Any, **k: Any) -> None:
        raise AssertionError("the fill ran")

    monkeypatch.setattr(edgeae.reconstruct, "run_method", no_fill)
    folder = tmp_path / "outdir.png"
    folder.mkdir()
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    out = tmp_path / "ok.png"
    cases = [
        (["-o", folder], "-o"),
        (["-o", out, "--save-error-map", folder], "--save-error-map"),
        (["-o", out, "--save-masked", folder], "--save-masked"),
        (["-o", out, "--metrics-json", blocker / "m.txt"], "--metrics-json"),
        (["-o", out, "--save-masked", blocker / "m.png"], "--save-masked"),
    ]
    for argv, flag in cases:
        assert _cli("reconstruct", ramp_png, "--method", "linear", *argv) == 2
        err = capsys.readouterr().err
        assert f"{flag} " in err and ("is a folder" in err or "cannot write in" in err), err
        if flag != "-o":
            assert "-o " not in err
    assert not out.exists()


def test_memory_estimate_refuses_before_the_fill(
    ramp_png: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgeae.cli.reconstruct_memory import fill_bytes

    # linear triangulates the kept samples: at keep 0.9 a 1 Mpx grey image peaked at 1.65 GB (review, measured)
    assert fill_bytes("linear", 10**6, 1, False, kept=900_000) > 1.65e9 > fill_bytes("linear", 10**6, 1, False)
    from edgeae.ground import limits

    monkeypatch.setattr(limits, "available_memory", lambda: 100_000)
    out = tmp_path / "r.png"
    assert _cli("reconstruct", ramp_png, "--method", "linear", "-o", out) == 2
    err = capsys.readouterr().err
    assert "GiB available" in err and "crop the image" in err and "--method linear" in err and not out.exists()
    # the audit's measurements (peak RSS, whole process): grey linear 673 MB at 4.2 Mpx, RGB CAE 1.24 GB at 4.2 Mpx
    assert fill_bytes("linear", 4_200_000, 1, False) >= 450e6
    assert fill_bytes("cae", 4_200_000, 3, False) >= 1.0e9
    monkeypatch.setattr(limits, "available_memory", lambda: None)  # unknown: no refusal
    assert _cli("reconstruct", ramp_png, "--method", "linear", "-o", out) == 0


def test_cae_only_options_are_noted_and_validated(
    ramp_png: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.png"
    assert _cli("reconstruct", ramp_png, "--method", "linear", "-o", out, "--batch", 4, "--tile", 64,
                "--overlap", 500, "--convert-channels", "--threads", 4) == 0  # fmt: skip
    note = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note:")]
    assert note == ["note: --tile, --overlap, --batch, --threads, --convert-channels are ignored by --method linear"]
    for flag, value in (("--batch", 0), ("--tile", 0), ("--overlap", -1)):
        with pytest.raises(SystemExit) as exc:
            _cli("reconstruct", ramp_png, "--method", "linear", "-o", out, flag, value)
        assert exc.value.code == 2 and flag in capsys.readouterr().err


def test_jpeg_output_is_noted_lossy(ramp_png: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mj = tmp_path / "m.json"
    assert _cli("reconstruct", ramp_png, "--method", "linear", "-o", tmp_path / "r.jpg", "--metrics-json", mj) == 0
    text = capsys.readouterr().out
    assert "JPEG is lossy" in text and "metrics are of the rebuilt image before encoding" in text
    assert "before quantising and encoding" in json.loads(mj.read_text())["metrics_of"]
    assert _cli("reconstruct", ramp_png, "--method", "linear", "-o", tmp_path / "r.png") == 0
    assert "lossy" not in capsys.readouterr().out


def test_real_products_no_data_and_counts(formats: Path, tmp_path: Path) -> None:
    """The DTEEC DEM: no-data left out of the received samples (PSNR 34 dB, not 24.5); dawnEqui1 (ISIS int16):
    its kept counts come back exactly from the 16-bit output, ISIS Null written as 0 (declared as the GeoTIFF's
    no-data value only where no pixel with data was written as 0), the valid map beside it."""
    rasterio = pytest.importorskip("rasterio")
    from edgeae.imageio import read_image

    dem = formats / "geotiff" / "DTEEC_017825_1760_018458_1760_A01.tif"
    mj = tmp_path / "dem.json"
    assert _cli("reconstruct", dem, "--method", "linear", "-o", tmp_path / "dem.tif", "--metrics-json", mj) == 0
    m = json.loads(mj.read_text())
    assert m["psnr"] > 32 and m["sampled_no_data"] > 0 and m["scaling"]["kind"] == "range"
    assert m["output_samples"]["raw_lo"] == m["scaling"]["raw_lo"] and m["output_samples"]["bits"] == 16

    cub = formats / "isis3" / "dawnEqui1.cub"
    data = read_image(cub)
    lo = data.extra["scaling"]["raw_lo"]
    with rasterio.open(cub) as f:
        raw = f.read(1)
    out = tmp_path / "dawn.tif"
    assert _cli("reconstruct", cub, "--method", "linear", "-o", out, "--metrics-json", mj) == 0
    known = make_mask(0, raw.shape, 0.1) & data.valid
    scale = data.extra["scaling"]["raw_hi"] - lo
    with rasterio.open(out) as f:
        rec = f.read(1)
        nodata = f.nodata
        assert f.crs is not None
    back = np.rint(rec.astype(np.float64) * scale / 65535) + lo
    assert rec.dtype == np.uint16 and np.array_equal(back[known], raw[known].astype(np.float64))
    assert (rec[~data.valid] == 0).all()
    tagged = not (rec[data.valid] == 0).any()
    assert (nodata == 0) == tagged and json.loads(mj.read_text())["output_samples"]["nodata_tag"] == tagged
    assert (tmp_path / "dawn.valid.png").is_file()


def test_guessed_dark_margins_stay_samples_and_are_written(tmp_path: Path) -> None:
    """A plain image's dark border is only guessed to be a margin: its pixels stay received samples and are
    written back (dark content is content; the first fix wrote them as 0), while the metrics leave them out."""
    cv2 = pytest.importorskip("cv2")
    img = np.full((64, 64), 120, np.uint8)
    img[:, :6] = 3  # what the margin heuristics call no-data
    src, out, mj = tmp_path / "dm.png", tmp_path / "o.png", tmp_path / "m.json"
    cv2.imwrite(str(src), img)
    assert read_image(src).valid[:, :6].sum() == 0  # the guess
    assert _cli("reconstruct", src, "--method", "linear", "-o", out, "--metrics-json", mj) == 0
    rec = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    known = make_mask(0, img.shape, 0.1)
    assert np.array_equal(rec[known], img[known]) and (rec[:, :6] > 0).all()
    m = json.loads(mj.read_text())
    assert m["sampled_no_data"] == 0 and m["valid_fraction"] < 1.0

"""Session-39 fixer h5: robustness gaps left from earlier reviews.

(a) An LZW-, JPEG-, ZSTD-compressed or floating-point-predicted TIFF read on the ground without ``imagecodecs`` failed
    with ``ImageReadError`` "not a readable TIFF (... requires the 'imagecodecs' package)" (a whole read) or "cannot
    decode TIFF segment 0 (...)" (a streamed one): a corrupt file, to the user and to every caller that skips
    unreadable files. It is now :class:`~edgeae._optional.MissingDependencyError` naming the package, the file's codec
    and the extra to install (the flight's own check, ``firmware_sim.frame_decoders``, is unchanged).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _helpers_decoders import TIFF_PIP, hide_imagecodecs

tifffile = pytest.importorskip("tifffile")
pytest.importorskip("imagecodecs")  # writes the LZW/JPEG/ZSTD files (its encoders) before it is hidden


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
    rc = main(["score", str(path), "--model", "orbital-gray-vae", "--no-progress", "-o", str(tmp_path / "s.csv")])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "error: 'imagecodecs' is needed here but is not installed" in err and TIFF_PIP in err, err
    assert "Traceback" not in err, err
    assert "not a readable TIFF" not in err and "cannot decode TIFF segment" not in err, err

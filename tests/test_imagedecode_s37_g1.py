"""Session-37 fixer g1 (audit a1 #3): a missing image decoder is no fault of the file. ``edgeae.imagedecode`` turned
the MissingDependencyError of a decoder not installed into an ImageReadError, "the JPEG decoder refused the file
(MissingDependencyError: ...)", which the flight took for a damaged frame and dropped for good. The decoder is
simulated missing by putting None in ``sys.modules``; OpenCV, the fallback decoder, is hidden with it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

PIP = "pip install 'edgeae[flight-tflite]'"


def _hide(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """Imports of ``names`` fail as if they were not installed (undone by monkeypatch at the end of the test)."""
    for name in (*names, "cv2"):
        monkeypatch.setitem(sys.modules, name, None)


def _jpeg(path: Path, seed: int = 0) -> Path:
    from edgeae.firmware_sim.testing import textured_frame

    from edgeae.imageio import write_image

    write_image(path, textured_frame(seed))
    return path


# ----------------------------------------------------------------------------------- the decoder module
@pytest.mark.parametrize(("suffix", "module"), [(".jpg", "simplejpeg"), (".png", "pyspng")])
def test_decode_file_lets_a_missing_decoder_through_with_its_pip_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str, module: str
) -> None:
    """It was an ImageReadError, "the JPEG decoder refused the file (MissingDependencyError: ...)": a bad file."""
    from edgeae.firmware_sim.testing import textured_frame

    from edgeae._headers import ImageReadError
    from edgeae._optional import MissingDependencyError
    from edgeae.imagedecode import decode_file
    from edgeae.imageio import write_image

    path = write_image(tmp_path / f"f{suffix}", textured_frame())
    _hide(monkeypatch, module)
    with pytest.raises(MissingDependencyError) as info:
        decode_file(path)
    assert not isinstance(info.value, ImageReadError)
    assert str(info.value) == f"{module!r} is needed here but is not installed: run  {PIP}"


def test_missing_decoder_names_the_pip_line_and_imports_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeae.imagedecode import decoder_of, missing_decoder

    assert missing_decoder("jpeg") is None and missing_decoder("pnm") is None and decoder_of("pnm") is None
    _hide(monkeypatch, "simplejpeg")
    assert decoder_of("jpeg") == "simplejpeg"
    assert str(missing_decoder("jpeg")).endswith(PIP)
    assert missing_decoder("png") is None  # pyspng is there


# ----------------------------------------------------------------------------------- edgeae commands
def test_edgeae_score_still_refuses_up_front_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgeae.cli import main

    frame = _jpeg(tmp_path / "f.jpg")
    _hide(monkeypatch, "simplejpeg")
    rc = main(["score", str(frame), "--output", str(tmp_path / "s.csv")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "'cv2'" in err and "pip install 'edgeae[ground]'" in err, err

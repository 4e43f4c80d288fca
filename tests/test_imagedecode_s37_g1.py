"""Session-37 fixer g1 (audit a1 #3): a missing image decoder is no fault of the file. ``edgeae.imagedecode`` turned
the MissingDependencyError of a decoder not installed into an ImageReadError, "the JPEG decoder refused the file
(MissingDependencyError: ...)", which the flight took for a damaged frame and dropped for good. The decoder is
simulated missing by putting None in ``sys.modules``; OpenCV, the fallback decoder, is hidden with it."""

from __future__ import annotations

from pathlib import Path

import pytest
from _helpers_decoders import DECODER_PIP as PIP
from _helpers_decoders import hide_decoders, jpeg_frame


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
    hide_decoders(monkeypatch, module)
    with pytest.raises(MissingDependencyError) as info:
        decode_file(path)
    assert not isinstance(info.value, ImageReadError)
    assert str(info.value) == f"{module!r} is needed here but is not installed: run  {PIP}"


def test_missing_decoder_names_the_pip_line_and_imports_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeae.imagedecode import decoder_of, missing_decoder

    assert missing_decoder("jpeg") is None and missing_decoder("pnm") is None and decoder_of("pnm") is None
    hide_decoders(monkeypatch, "simplejpeg")
    assert decoder_of("jpeg") == "simplejpeg"
    assert str(missing_decoder("jpeg")).endswith(PIP)
    assert missing_decoder("png") is None  # pyspng is there


# ----------------------------------------------------------------------------------- edgeae commands
def test_edgeae_score_still_refuses_up_front_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgeae.cli import main

    frame = jpeg_frame(tmp_path / "f.jpg")
    hide_decoders(monkeypatch, "simplejpeg")
    rc = main(["score", str(frame), "--output", str(tmp_path / "s.csv")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "'cv2'" in err and "pip install 'edgeae[ground]'" in err, err

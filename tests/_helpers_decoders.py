"""Frame decoders made missing, and the frames and flight that meet them: shared by the session-37 decoder tests
(test_firmware_s37_g1, test_imagedecode_s37_g1, test_firmware_s37_l1, test_firmware_s37_s1; each wrote its own copy,
or imported another test module's, until session 38).

Imports of the flight runtime, tifffile and imagecodecs stay inside the functions, so a test module's
``pytest.importorskip`` lines run first."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

DECODER_PIP = "pip install 'edgeae[flight-tflite]'"  # what a missing simplejpeg or pyspng says to run
TIFF_PIP = "pip install 'edgeae[flight-ccsds121]'"  # what a TIFF codec that needs imagecodecs says to run


def hide_decoders(monkeypatch: Any, *names: str) -> None:
    """Imports of ``names`` and of OpenCV (the fallback decoder) fail as if they were not installed: None in
    ``sys.modules``, undone with ``monkeypatch``."""
    for name in (*names, "cv2"):
        monkeypatch.setitem(sys.modules, name, None)


def hide_imagecodecs(monkeypatch: Any) -> Any:
    """tifffile as it is where imagecodecs is not installed (undone with ``monkeypatch``, which is returned): None in
    ``sys.modules`` and tifffile's codec tables rebuilt over its pure-Python fallback. Write frames before (tifffile's
    LZW encoder is imagecodecs too)."""
    import tifffile
    import tifffile._imagecodecs as fallback
    import tifffile.tifffile as tf

    monkeypatch.setitem(sys.modules, "imagecodecs", None)
    monkeypatch.setattr(tf, "imagecodecs", fallback)
    monkeypatch.setattr(tifffile.TIFF, "DECOMPRESSORS", tf.CompressionCodec(encode=False))
    monkeypatch.setattr(tifffile.TIFF, "UNPREDICTORS", tf.PredictorCodec(encode=False))
    return monkeypatch


def jpeg_frame(path: Path, seed: int = 0) -> Path:
    """The textured test frame ``seed`` written at ``path`` (a JPEG by its ``.jpg`` name)."""
    from edgeae.firmware_sim.testing import textured_frame

    from edgeae.imageio import write_image

    write_image(path, textured_frame(seed))
    return path


def tiff_frame(path: Path, compression: str | None, seed: int = 0) -> Path:
    """The textured test frame ``seed`` as a TIFF at ``path``, tifffile's ``compression`` (None: uncompressed)."""
    import tifffile
    from edgeae.firmware_sim.testing import textured_frame

    tifffile.imwrite(path, textured_frame(seed), compression=compression)
    return path


def flight_mission(folder: Path) -> Any:
    """The small test mission over the tiny models written to ``folder/models``, no reconstruction."""
    from edgeae.firmware_sim.testing import small_mission, tiny_models

    return small_mission(tiny_models(folder / "models"), reconstruction={"mode": "off"})


def ledger(out: Path) -> dict[str, dict[str, Any]]:
    """The frame ledger of the run folder ``out``: each frame's entry by its id."""
    frames: dict[str, dict[str, Any]] = json.loads((out / "queue" / "index.json").read_text())["state"]["frames"]
    return frames


def mark_unreadable(out: Path, whys: dict[str, str]) -> None:
    """The ledger of the run folder ``out`` as a run before session 37 left it: each frame of ``whys`` (id: the
    decoder's words) dropped ``unreadable`` for good at boot 1, "unreadable: SOURCE: WHY"."""
    path = out / "queue" / "index.json"
    index = json.loads(path.read_text())
    for key, why in whys.items():
        source = index["state"]["frames"][key]["source"]
        index["state"]["frames"][key] = {"source": source, "status": "dropped", "code": "unreadable",
                                         "reason": f"unreadable: {source}: {why}", "boot": 1}  # fmt: skip
    path.write_text(json.dumps(index))


def boot_no_imagecodecs(monkeypatch: Any, mission: Any, out: Path, frames: list[Path]) -> tuple[Any, Any]:
    """One boot of the flight runtime of ``mission`` on ``frames`` into ``out`` while imagecodecs is hidden
    (:func:`hide_imagecodecs`, undone when it returns): its summary and the runtime."""
    from edgeae.firmware_sim.loop import FlightRuntime

    with monkeypatch.context() as m:
        hide_imagecodecs(m)
        rt = FlightRuntime(mission, out)
        return rt.run(frames), rt

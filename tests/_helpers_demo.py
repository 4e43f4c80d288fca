"""The demo's session-36 tests (g1, h3, j1) each wrote these out until session 37: a PNG written by its bytes, a
small RGB frame and the demo's stages that need no model; its session-37 no-data tests (h3, p1) until session 38: the
command line, a smooth texture, float TIFFs with NaN (no-data) columns, the HiRISE GeoTIFF, the linear stand-in for
the CAE and a context ready for the downlink stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeae.demo import DemoConfig, DemoContext, stage_frame, stage_metrics
from edgeae.demo.rebuild import stage_reconstruct

FAST = [stage_frame, stage_reconstruct, stage_metrics]  # no model, no codec: well under a second
ESP = Path("/work/shared/data/formats/geotiff/ESP_037156_1800_RED.byte.tif")  # 30.1% no-data; skip where absent


def write_png(path: Path, pixels: np.ndarray) -> Path:
    """``pixels`` as a PNG at ``path``, written by bytes: OpenCV cannot open every name Python can."""
    cv2 = pytest.importorskip("cv2")
    ok, data = cv2.imencode(".png", pixels)
    assert ok
    path.write_bytes(data.tobytes())
    return path


def small_frame() -> np.ndarray:
    """A 40×48 RGB uint8 frame of three ramps."""
    y, x = np.mgrid[0:40, 0:48]
    return np.stack([(x * 5 + y * 3) % 256, (x * 2) % 256, (y * 6) % 256], axis=2).astype(np.uint8)


def cli(*argv: Any) -> int:
    """``edgeae ARGV`` (each argument as ``str``): its exit status."""
    from edgeae.cli import main

    return main([str(a) for a in argv])


def texture(h: int, w: int) -> np.ndarray:
    """An ``h``×``w`` float32 frame of smooth texture in 0.2 … 0.8."""
    y, x = np.mgrid[0:h, 0:w]
    return (0.5 + 0.3 * np.sin(x / 3.0) * np.cos(y / 4.0)).astype(np.float32)


def float_tif(path: Path, frame: np.ndarray) -> Path:
    """``frame`` as a float32 TIFF at ``path`` (NaN and inf kept: declared no-data)."""
    tifffile = pytest.importorskip("tifffile")
    tifffile.imwrite(path, frame.astype(np.float32))
    return path


def nan_tif(path: Path, h: int, w: int, cols: int) -> Path:
    """A float TIFF of ``h``×``w`` :func:`texture` whose ``cols`` left columns are NaN (declared no-data)."""
    frame = texture(h, w)
    frame[:, :cols] = np.nan
    return float_tif(path, frame)


def linear_for_the_cae(monkeypatch: Any, seen: list[np.ndarray]) -> None:
    """The CAE's stand-in in the downlink's ground fill: linear interpolation; records each mask it is given."""
    import edgeae.reconstruct

    real = edgeae.reconstruct.reconstruct

    def linear(img: np.ndarray, known: np.ndarray, method: str, predictor: object = None, **kw: Any) -> np.ndarray:
        seen.append(known.copy())
        return real(img, known, "linear")

    monkeypatch.setattr(edgeae.reconstruct, "reconstruct", linear)


def downlink_ctx(tmp_path: Path, image: Path) -> DemoContext:
    """The demo of ``image`` (the perfect link, linear rebuilds) after its frame stage, ready for the downlink stage
    (a stand-in predictor: the fill is :func:`linear_for_the_cae`'s)."""
    cfg = DemoConfig(out=tmp_path / "d", image=image, links=("perfect",), methods=("linear",))
    ctx = DemoContext(cfg, say=lambda _: None)
    stage_frame(ctx)
    ctx.extra["predictor"] = object()
    return ctx

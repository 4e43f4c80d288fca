"""The demo (session 36, fixer g1): an image name that is not UTF-8, index.html and metrics.json replaced together."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest

from edgeae.demo import DemoConfig, run_demo, stage_frame, stage_metrics
from edgeae.demo.rebuild import stage_reconstruct


def _write_png(path: Path, pixels: np.ndarray) -> Path:
    cv2 = pytest.importorskip("cv2")
    ok, data = cv2.imencode(".png", pixels)
    assert ok
    path.write_bytes(data.tobytes())  # by bytes: OpenCV cannot open every name Python can
    return path


def _frame() -> np.ndarray:
    y, x = np.mgrid[0:40, 0:48]
    return np.stack([(x * 5 + y * 3) % 256, (x * 2) % 256, (y * 6) % 256], axis=2).astype(np.uint8)


FAST = [stage_frame, stage_reconstruct, stage_metrics]  # no model, no codec: well under a second


def test_demo_on_an_image_named_with_bytes_that_are_not_utf8(tmp_path: Path) -> None:
    image = _write_png(tmp_path / os.fsdecode(b"t\xff.png"), _frame())
    said: list[str] = []
    cfg = DemoConfig(out=tmp_path / "demo", image=image, methods=("nearest",), cross_check=None)
    res = run_demo(cfg, FAST, say=said.append)
    page = res.html.read_text(encoding="utf-8")
    assert "t\\xff.png" in page and "\udcff" not in page
    assert json.loads((tmp_path / "demo" / "metrics.json").read_text(encoding="utf-8"))["image"] == "t\\xff.png"
    assert said and all(line.encode("utf-8") for line in said)  # printable in any UTF-8 terminal
    assert any("t\\xff.png" in line for line in said)


def test_a_failed_page_write_leaves_the_earlier_index_and_metrics_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "demo"
    run_demo(DemoConfig(out=out, image=_write_png(tmp_path / "a.png", _frame()), methods=("nearest",)), FAST)
    before = {n: (out / n).read_bytes() for n in ("index.html", "metrics.json")}
    real = Path.write_text

    def full_disk(self: Path, data: str, *args: object, **kwargs: object) -> int:
        if "index.html" in self.name:
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, data, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "write_text", full_disk)
    cfg = DemoConfig(out=out, image=_write_png(tmp_path / "b.png", 255 - _frame()), methods=("nearest", "linear"))
    with pytest.raises(OSError, match="No space left"):
        run_demo(cfg, FAST)
    monkeypatch.undo()
    assert {n: (out / n).read_bytes() for n in before} == before
    assert sorted(p.name for p in out.iterdir()) == ["img", "index.html", "metrics.json"]  # no temporary file left

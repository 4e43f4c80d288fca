"""The demo (session 36, fixer h3): a failed run leaves the earlier report's images too."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from edgeae.demo import DemoConfig, run_demo, stage_frame, stage_metrics
from edgeae.demo.rebuild import stage_reconstruct

FAST = [stage_frame, stage_reconstruct, stage_metrics]  # no model, no codec: well under a second


def _write_png(path: Path, pixels: np.ndarray) -> Path:
    cv2 = pytest.importorskip("cv2")
    ok, data = cv2.imencode(".png", pixels)
    assert ok
    path.write_bytes(data.tobytes())  # by bytes: OpenCV cannot open every name Python can
    return path


def _frame() -> np.ndarray:
    y, x = np.mgrid[0:40, 0:48]
    return np.stack([(x * 5 + y * 3) % 256, (x * 2) % 256, (y * 6) % 256], axis=2).astype(np.uint8)


def _tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones too), by relative path, with a hash of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# ----------------------------------------------------------------------------- a failed run and the earlier images
def test_an_image_write_failing_part_way_leaves_the_earlier_report_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import edgeae.imageio

    out = tmp_path / "demo"
    run_demo(DemoConfig(out=out, image=_write_png(tmp_path / "a.png", _frame()), methods=("nearest",)), FAST)
    before = _tree(out)
    real = edgeae.imageio.write_image
    calls = []

    def third_fails(path: Path, array: np.ndarray, **kwargs: object) -> Path:
        calls.append(path)
        if len(calls) == 3:
            raise OSError(28, "No space left on device", str(path))
        return real(path, array, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(edgeae.imageio, "write_image", third_fails)
    cfg = DemoConfig(out=out, image=_write_png(tmp_path / "b.png", 255 - _frame()), methods=("nearest",))
    with pytest.raises(OSError, match="No space left"):
        run_demo(cfg, FAST)
    assert len(calls) == 3
    assert _tree(out) == before  # the page, metrics.json and every image: the earlier run's, no staged file left
    assert sorted(p.name for p in (out / "img").iterdir()) == sorted(Path(n).name for n in before if "img/" in n)


def test_a_rerun_shows_its_own_images_and_leaves_no_staging_folder(tmp_path: Path) -> None:
    cv2 = pytest.importorskip("cv2")
    out = tmp_path / "demo"
    run_demo(DemoConfig(out=out, image=_write_png(tmp_path / "a.png", _frame()), methods=("nearest",)), FAST)
    stale = out / "img" / ".new-999999999"  # a staging folder that a killed run (no such process) left behind
    stale.mkdir()
    (stale / "00-original.png").write_bytes(b"half")
    said: list[str] = []
    cfg = DemoConfig(out=out, image=_write_png(tmp_path / "b.png", 255 - _frame()), methods=("nearest",))
    res = run_demo(cfg, FAST, say=said.append)
    shown = cv2.imread(str(out / "img" / "00-original.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(shown, 255 - _frame())  # the new frame under the new page
    assert sorted(p.name for p in (out / "img").iterdir() if p.name.startswith(".")) == []
    assert "index.html, metrics.json" in said[-1] and res.html.is_file()

"""The library's entry points from ``import edgeae``, and the README's Python example run as written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import edgeae

README = Path(__file__).resolve().parents[1] / "README.md"
MARKER = "<!-- python-api-example -->\n```python\n"


def test_import_is_light() -> None:
    code = "import sys, edgeae; print(sorted(m for m in ('torch', 'cv2', 'onnxruntime', 'ray') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_public_name_resolves_to_its_module_function() -> None:
    from edgeae import imageio, masks, metrics, predictor
    from edgeae import reconstruct as reconstruct_module
    from edgeae.anomaly import score

    expected = {
        "read_image": imageio.read_image,
        "write_image": imageio.write_image,
        "make_mask": masks.make_mask,
        "apply_mask": masks.apply_mask,
        "fill": reconstruct_module.reconstruct,
        "load_predictor": predictor.load_predictor,
        "make_scorer": score.make_scorer,
        "score_array": score.score_array,
        "score_file": score.score_file,
        "image_metrics": metrics.compare,
    }
    assert set(edgeae.__all__) == {"__version__", *expected}
    for name, func in expected.items():
        assert getattr(edgeae, name) is func, name
        assert name in dir(edgeae)


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'reconstruct_image'"):
        edgeae.reconstruct_image  # noqa: B018
    assert not hasattr(edgeae, "nope")


def test_fill_and_metrics_on_an_array() -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64].astype(np.float32)
    image = np.stack([(yy + xx) / 128.0] * 3, axis=2)  # a smooth gradient every fill gets nearly right
    known = edgeae.make_mask(seed=3, shape=(64, 64), keep=0.25)
    out = edgeae.fill(image + rng.normal(0, 1e-3, image.shape).astype(np.float32), known, "linear")
    assert out.shape == image.shape
    assert edgeae.image_metrics(image, out, known)["psnr"] > 40.0


def test_readme_example_runs(data_root: Path, tmp_path: Path) -> None:
    text = README.read_text(encoding="utf-8")
    assert MARKER in text, "README lost its Python example marker"
    code = text.split(MARKER, 1)[1].split("```", 1)[0]
    env = {**os.environ, "EDGEAE_DATA": str(data_root)}
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.splitlines()
    cae = float(lines[0].split()[1])
    normconv = float(lines[1].split()[1])
    assert lines[0].startswith("cae ") and lines[1].startswith("normconv ")
    assert cae > normconv  # what the example shows: the ground CAE ahead of the classical fill on this crop
    assert lines[2].startswith("most anomalous 64-px patch at x, y =")
    assert (tmp_path / "rebuilt.png").stat().st_size > 0

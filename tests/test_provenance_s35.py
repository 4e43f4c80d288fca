"""What `edgeae reconstruct --metrics-json` records beyond the metrics: the version, the model file and its hash, the
threads (audit a4, session 35: a zoo name is retrained between releases, and thread counts move fp32 results)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest


def _cli(*argv: object) -> int:
    from edgeae.cli import main

    return main([str(a) for a in argv])


def test_reconstruct_metrics_json_records_the_model_hash_version_and_threads(tmp_path: Path, moon: np.ndarray) -> None:
    pytest.importorskip("onnxruntime")
    from edgeae.firmware_sim.testing import tiny_cae_onnx

    from edgeae._version import __version__
    from edgeae.imageio import write_image
    from edgeae.metadata import sha256_file

    grey = write_image(tmp_path / "moon.png", np.ascontiguousarray(moon[200:296, 200:296]))
    model = tiny_cae_onnx(tmp_path / "cae.onnx", 1, 32)
    js = tmp_path / "r.json"
    argv = ["reconstruct", grey, "--model", model, "--no-cross-check", "--threads", 1, "-o", tmp_path / "r.png"]
    assert _cli(*argv, "--metrics-json", js) == 0
    rec = json.loads(js.read_text())
    assert rec["edgeae_version"] == __version__ and rec["threads"] == 1
    assert Path(rec["model_file"]).resolve() == Path(model).resolve()
    assert rec["model_sha256"] == sha256_file(model)
    assert _cli("reconstruct", grey, "--method", "linear", "-o", tmp_path / "l.png", "--metrics-json", js) == 0
    rec = json.loads(js.read_text())
    assert rec["model_file"] is None and rec["model_sha256"] is None and rec["edgeae_version"] == __version__

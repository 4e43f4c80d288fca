"""Session 37, j1 (audit a3 finding 3): every exported artifact says what made it: the training command and
hyper-parameters (from the checkpoint's metrics), the export command and options, the toolchain's versions and the
code revision; artifacts written before load as they did."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
cv2 = pytest.importorskip("cv2")

from edgeae.export import producer  # noqa: E402
from edgeae.firmware_sim.runtime import read_metadata  # noqa: E402

from edgeae.checkpoint import save_checkpoint  # noqa: E402
from edgeae.cli import main  # noqa: E402
from edgeae.metadata import ModelMetadata  # noqa: E402
from edgeae.models.cae import CAE, CAEConfig  # noqa: E402

TRAIN = "edgeae train cae --data mycam --out runs/cae1 --epochs 4 --lr 0.0005"
HYPER = {"data": "mycam", "epochs": 4, "lr": 0.0005, "variant": "seed", "widths": [4, 8, 8, 8]}


def _checkpoint(path: Path, metrics: dict) -> Path:
    torch.manual_seed(0)
    cfg = CAEConfig(channels=3, widths=(4, 8, 8, 8), tile=128)
    meta = ModelMetadata(kind="cae", architecture=cfg.to_dict(), input_shape=(-1, 3, 128, 128), channels=3)
    return save_checkpoint(path, CAE(cfg).eval(), meta, metrics=metrics)


def _images(folder: Path) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        img = cv2.GaussianBlur(rng.random((280, 280, 3)).astype(np.float32), (0, 0), 2)
        cv2.imwrite(str(folder / f"t{i}.png"), (40 + 160 * (img - img.min()) / np.ptp(img)).astype(np.uint8))
    return folder


def _export(ckpt: Path, out: Path, images: Path) -> int:
    return main(
        ["export", str(ckpt), "--format", "onnx", "--precision", "fp32", "--kinds", "cae", "--out", str(out),
         "--test", str(images), "--n-test", "8", "--no-latency", "--seed", "5"]
    )  # fmt: skip


def test_an_artifact_says_what_made_it(tmp_path: Path) -> None:
    """The one real export here (an fp32 ONNX of a tiny CAE: ~7 s, most of it torch's ONNX exporter)."""
    ckpt = _checkpoint(tmp_path / "best.pt", {"best_epoch": 3, "command": TRAIN, "hyper_parameters": HYPER})
    images = _images(tmp_path / "imgs")
    assert _export(ckpt, tmp_path / "art", images) == 0
    extra = read_metadata(tmp_path / "art" / "best.fp32.onnx").extra
    assert extra["training_command"] == TRAIN and extra["training_hyper_parameters"] == HYPER
    assert extra["export_command"].startswith(f"edgeae export {ckpt} --format onnx --precision fp32")
    options = extra["export_options"]
    assert options["formats"] == ["onnx"] and options["precisions"] == ["fp32"] and options["kinds"] == ["cae"]
    assert options["seed"] == 5 and options["reduce_range"] is True and options["test"] == str(images)
    assert set(extra["toolchain"]) == {"python", "torch", "onnx", "onnxruntime"}
    assert all(extra["toolchain"].values())
    assert extra["code_revision"] == producer.code_revision() and extra["code_revision"]


def test_a_checkpoint_that_records_no_training_facts() -> None:
    assert producer.training_facts({"best_epoch": 1}) == {}  # as written before session 37: nothing made up
    assert producer.training_facts({"command": TRAIN}) == {"training_command": TRAIN}


def test_toolchain_per_format_and_code_revision() -> None:
    assert set(producer.toolchain("tflite")) == {"python", "torch", "litert-torch", "ai-edge-litert"}
    assert set(producer.toolchain("ort")) == {"python", "torch", "onnx", "onnxruntime"}
    rev = producer.code_revision()
    if (Path(producer.__file__).resolve().parents[1] / ".git").exists():
        assert not rev.startswith("edgeae ")  # a checkout: git describe, with -dirty for uncommitted changes
    else:
        assert rev.startswith("edgeae ")

"""Session 31 audit, items 2 and 3: the training, zoo and export writers go through ``edgeae.atomic`` (an
interrupted write leaves the old file and no temporary file), and ``parity.json`` is strict JSON."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from edgeae.metadata import ModelMetadata  # noqa: E402
from edgeae.models.vae import VAE, VAEConfig  # noqa: E402


def _cut_short(target_arg: int = 1) -> Callable[..., Any]:
    """A writer (of the file in positional argument ``target_arg``) that writes 10 bytes, then is interrupted
    (Ctrl-C)."""

    def cut(*args: Any, **kwargs: Any) -> Any:
        with open(args[target_arg], "wb") as f:  # not Path.write_bytes: a test patches it
            f.write(b"\x00" * 10)
        raise KeyboardInterrupt

    return cut


def _vae() -> Any:
    return VAE(VAEConfig(channels=1, widths=(4, 4, 4, 4), latent=8, patch=32))


def _meta() -> ModelMetadata:
    cfg = VAEConfig(channels=1, widths=(4, 4, 4, 4), latent=8, patch=32)
    return ModelMetadata(kind="vae", architecture=cfg.to_dict(), input_shape=(-1, 1, 32, 32), channels=1)


def _interrupted(folder: Path, target: Path, old: bytes, write: Callable[[], Any]) -> None:
    """``write`` interrupted: the target keeps ``old`` and the folder holds nothing else new."""
    before = sorted(p.name for p in folder.iterdir())
    with pytest.raises(KeyboardInterrupt):
        write()
    assert target.read_bytes() == old
    assert sorted(p.name for p in folder.iterdir()) == before  # no best.pt.tmp, .best.pt.tmp-PID, ...


def test_an_interrupted_checkpoint_or_training_state_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``save_checkpoint`` and ``save_state`` left ``best.pt.tmp`` / ``last.pt.tmp`` behind when interrupted."""
    from edgeae.checkpoint import load_checkpoint, save_checkpoint
    from edgeae.train.resume import TrainState, save_state

    model = _vae()
    best = save_checkpoint(tmp_path / "best.pt", model, _meta())
    optimizer = torch.optim.Adam(model.parameters())
    last = save_state(tmp_path, model, optimizer, None, TrainState(), {"a": 1}, "hash", kind="vae")
    old_best, old_last = best.read_bytes(), last.read_bytes()
    monkeypatch.setattr(torch, "save", _cut_short())
    _interrupted(tmp_path, best, old_best, lambda: save_checkpoint(best, model, _meta()))
    _interrupted(tmp_path, last, old_last, lambda: save_state(tmp_path, model, optimizer, None, TrainState(), {}, "h"))
    monkeypatch.undo()
    assert load_checkpoint(best).metadata.kind == "vae"


def test_an_interrupted_zoo_install_keeps_the_old_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeae import zoo
    from edgeae.checkpoint import save_checkpoint

    weights = tmp_path / "weights"
    monkeypatch.setattr(zoo, "WEIGHTS_DIR", weights)
    monkeypatch.setenv("EDGEAE_ZOO", str(weights))  # a user model goes to the user zoo
    ckpt = save_checkpoint(tmp_path / "run" / "best.pt", _vae(), _meta())
    metrics = tmp_path / "run" / "metrics.json"
    metrics.write_text(json.dumps({"complete": True, "epochs_run": 1, "best_epoch": 1}))
    target = zoo.install("my-s31-model", ckpt, metrics)
    old = target.read_bytes()
    monkeypatch.setattr(shutil, "copyfile", _cut_short())
    _interrupted(weights, target, old, lambda: zoo.install("my-s31-model", ckpt, metrics))


def test_interrupted_tflite_metadata_and_report_writes_leave_the_old_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgeae.export import report, tflite_metadata

    tfl = tmp_path / "m.tflite"
    tfl.write_bytes(b"old model")
    monkeypatch.setattr(tflite_metadata, "embed_tflite_metadata", lambda content, text, key: content + b" + meta")
    monkeypatch.setattr(Path, "write_bytes", _cut_short(target_arg=0))
    _interrupted(tmp_path, tfl, b"old model", lambda: tflite_metadata.write_tflite_metadata(tfl, "{}"))
    monkeypatch.undo()
    rep = report.ExportReport("m", str(tmp_path), {}, {})
    j, _ = report.write_report(rep, tmp_path)
    old = j.read_bytes()
    monkeypatch.setattr(Path, "write_text", _cut_short(target_arg=0))
    _interrupted(tmp_path, j, old, lambda: report.write_report(rep, tmp_path))


def _record(psnr: float, spearman: float) -> Any:
    from edgeae.export.report import ArtifactRecord

    outputs = {"score": {"max_abs": 0.0, "mean_abs": 0.0, "psnr_db": psnr, "peak": 1.0}}
    return ArtifactRecord(
        path="m.fp32.onnx", kind="vae", format="onnx", precision="fp32", size_bytes=1024, sha256="0" * 64,
        checker="ok", parity={"outputs": outputs, "main_output": "score", "spearman": spearman, "passed": True},
    )  # fmt: skip


def test_parity_json_is_strict_json_and_reads_back_its_infinite_psnr(tmp_path: Path) -> None:
    """Outputs identical to PyTorch have an infinite PSNR: ``parity.json`` held ``"psnr_db": Infinity``, which a
    strict JSON parser (the ground station's) refuses."""
    import numpy as np
    from edgeae.export.report import ArtifactRecord, ExportReport, markdown_table, read_report, write_report

    rep = ExportReport("m", str(tmp_path), {}, {}, artifacts=[_record(math.inf, float("nan"))])
    rep.tail = {"worst": np.float32("-inf"), "fine": np.float32(0.5)}
    j, _ = write_report(rep, tmp_path)

    def refuse(token: str) -> Any:
        raise ValueError(f"non-standard JSON token {token}")

    data = json.loads(j.read_text(), parse_constant=refuse)
    assert data["artifacts"][0]["parity"]["outputs"]["score"]["psnr_db"] == "Infinity"
    assert data["artifacts"][0]["parity"]["spearman"] == "NaN"
    assert data["tail"] == {"worst": "-Infinity", "fine": 0.5}
    back = ArtifactRecord.from_dict(read_report(j)["artifacts"][0])
    assert back.parity["outputs"]["score"]["psnr_db"] == math.inf and math.isnan(back.parity["spearman"])
    assert back.checker == "ok" and back.path == "m.fp32.onnx"
    assert "| inf |" in markdown_table(ExportReport("m", str(tmp_path), {}, {}, artifacts=[back]))

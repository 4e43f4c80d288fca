"""Session 31 audit, library and runtime: the flight loader refuses non-finite input and names a wrong batch as it
was passed (NCHW); a TFLite file converted with a static batch records it; the seed CAE's latent follows
``--widths``; the trainers' refusals name only flags they have."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeae.metadata import MetadataError, ModelMetadata

ZOO = Path(__file__).resolve().parents[1] / "edgeae" / "zoo" / "artifacts"
RGB_CAE_TFLITE = ZOO / "rover-rgb-gtcae" / "rover-rgb-gtcae.int8.tflite"
GRAY_VAE_TFLITE = ZOO / "orbital-gray-vae" / "orbital-gray-vae.int8.tflite"


def _litert() -> None:
    pytest.importorskip("ai_edge_litert.interpreter")


# 1. non-finite input


@pytest.mark.filterwarnings("error::RuntimeWarning")  # numpy's "invalid value encountered in cast" was all it said
def test_nan_and_inf_input_are_refused_before_the_interpreter() -> None:
    _litert()
    from edgeae.firmware_sim.runtime import load_artifact

    pred = load_artifact(RGB_CAE_TFLITE, threads=1)
    with pytest.raises(ValueError, match=r"rover-rgb-gtcae\.int8\.tflite.*49152 non-finite values \(NaN or inf\)"):
        pred(np.full((1, 3, 128, 128), np.nan, np.float32))
    x = np.full((1, 3, 128, 128), 0.5, np.float32)
    x[0, 1, 7, 9] = np.inf
    with pytest.raises(ValueError, match=r"holds 1 non-finite value \(NaN or inf\) of 49152"):
        pred(x)
    x[0, 1, 7, 9] = 0.5
    y = pred(x)  # finite input still runs
    assert y.shape == (1, 3, 128, 128) and np.isfinite(y).all()


def test_the_finite_check_alone() -> None:
    from edgeae.firmware_sim.runtime import check_finite

    check_finite(np.zeros((16, 1, 64, 64), np.float32), "m")
    bad = np.zeros((16, 1, 64, 64), np.float32)
    bad[3, 0, :2, :2] = -np.inf
    with pytest.raises(ValueError, match=r"^m: the input batch \(shape \(16, 1, 64, 64\)\) holds 4 non-finite values"):
        check_finite(bad, "m")


# 2. a wrong batch named as passed


def test_a_grey_batch_into_an_rgb_tflite_is_named_as_passed() -> None:
    _litert()
    from edgeae.firmware_sim.runtime import load_artifact

    pred = load_artifact(RGB_CAE_TFLITE, threads=1)
    with pytest.raises(MetadataError) as err:
        pred(np.zeros((2, 1, 128, 128), np.float32))  # NCHW, as docs/export.md says to pass it
    msg = str(err.value)
    assert "input shape (2, 1, 128, 128) (NCHW)" in msg, msg  # it used to say (2, 128, 128, 1)
    assert "the batch has 1 channel, the model takes 3 (axis 1)" in msg, msg
    with pytest.raises(MetadataError, match=r"\(2, 3, 128, 96\) \(NCHW\).*width 96, the model takes 128 \(axis 3\)"):
        pred(np.zeros((2, 3, 128, 96), np.float32))


def test_check_input_in_the_callers_layout() -> None:
    meta = ModelMetadata(kind="cae", architecture={}, input_shape=(-1, 128, 128, 3), channels=3, layout="NHWC")
    meta.check_input((5, 3, 128, 128), "m", layout="NCHW")
    meta.check_input((5, 128, 128, 3), "m")  # the model's own layout by default
    with pytest.raises(MetadataError, match=r"\(5, 1, 128, 128\) \(NCHW\).*1 channel, the model takes 3 \(axis 1\)"):
        meta.check_input((5, 1, 128, 128), "m", layout="NCHW")
    with pytest.raises(MetadataError, match=r"\(5, 64, 128, 3\) \(NHWC\).*height 64, the model takes 128 \(axis 1\)"):
        meta.check_input((5, 64, 128, 3), "m")


# 3. the static batch of a TFLite file


def test_tflite_metadata_records_the_static_batch() -> None:
    from edgeae.export.graphs import VAE_TFLITE_BATCH, Graph

    vae = ModelMetadata(kind="vae", architecture={}, input_shape=(-1, 1, 64, 64), channels=1)
    g = Graph("vae", None, vae, "x", ("score", "x_hat", "mu"), VAE_TFLITE_BATCH, "NCHW")
    assert g.tflite_metadata().input_shape == (VAE_TFLITE_BATCH, 1, 64, 64)
    assert g.metadata.input_shape == (-1, 1, 64, 64)  # ONNX files keep the dynamic batch
    cae = ModelMetadata(kind="cae", architecture={}, input_shape=(-1, 3, 128, 128), channels=3)
    g = Graph("cae", None, cae, "x", ("x_hat",), None, "NHWC")
    got = g.tflite_metadata()
    assert (got.input_shape, got.layout) == ((-1, 128, 128, 3), "NHWC")


def test_the_shipped_vae_tflite_batch_is_read_from_the_interpreter() -> None:
    """The shipped file predates the fix (its sha256 is pinned): the tensor's batch is the authority."""
    _litert()
    from ai_edge_litert.interpreter import Interpreter
    from edgeae.firmware_sim.runtime import read_metadata

    assert read_metadata(GRAY_VAE_TFLITE).input_shape == (-1, 1, 64, 64)
    interp = Interpreter(model_path=str(GRAY_VAE_TFLITE))
    assert tuple(interp.get_input_details()[0]["shape"]) == (16, 1, 64, 64)


# 4. the seed CAE's latent follows --widths


def test_the_seed_cae_latent_follows_the_widths() -> None:
    torch = pytest.importorskip("torch")
    from edgeae.export.graphs import graphs_for

    from edgeae.models.cae import CAE, CAEConfig

    cfg = CAEConfig(channels=1, widths=(4, 8), tile=128)
    assert cfg.latent_shape == (8, 32, 32)
    model = CAE(cfg).eval()
    meta = ModelMetadata(kind="cae", architecture=cfg.to_dict(), input_shape=(-1, 1, 128, 128), channels=1)
    graphs = {g.kind: g for g in graphs_for(model, meta)}
    assert graphs["cae-decoder"].metadata.input_shape == (-1, 8, 32, 32)
    with torch.inference_mode():
        z = graphs["cae-encoder"].module(torch.zeros(2, 1, 128, 128))
    assert tuple(z.shape) == (2, 8, 32, 32)


# 5. --init with a VAE checkpoint


def test_init_with_a_vae_checkpoint_names_its_kind(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from edgeae.checkpoint import save_checkpoint
    from edgeae.models.cae import CAEConfig
    from edgeae.models.vae import VAE, VAEConfig
    from edgeae.train.cae import _warm_start

    cfg = VAEConfig(channels=1, widths=(4, 8, 8, 8), latent=8, patch=64)
    meta = ModelMetadata(kind="vae", architecture=cfg.to_dict(), input_shape=(-1, 1, 64, 64), channels=1)
    path = save_checkpoint(tmp_path / "vae.pt", VAE(cfg), meta)
    with pytest.raises(MetadataError) as err:
        _warm_start(None, str(path), CAEConfig(channels=1))
    msg = str(err.value)
    assert "this is a vae checkpoint, not a cae" in msg, msg
    assert "seed" not in msg and "architecture" not in msg, msg  # it used to describe the VAE as a seed CAE


# 6. train vae's refusals name only its own flags


def _vae_run(folder: Path) -> Path:
    from edgeae.train.vae_config import VAETrainConfig

    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"kind": "vae", **VAETrainConfig(out=str(folder)).to_dict()}))
    return folder


def test_train_vae_resume_refusals_do_not_offer_init(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgeae.cli import main

    run = _vae_run(tmp_path / "run")
    other = tmp_path / "other"
    assert main(["train", "vae", "--resume", str(run), "--out", str(other)]) == 2
    err = capsys.readouterr().err
    assert "continues in its own folder" in err and f"start a new one with --out {other}" in err, err
    assert "--init" not in err, err
    assert main(["train", "vae", "--resume", str(run), "--lr", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "these flags would change it: --lr 0.5" in err and "start a new run with --out" in err, err
    assert "--init" not in err, err
    assert not other.exists()


def test_train_cae_resume_refusal_still_offers_init(tmp_path: Path) -> None:
    import argparse

    from edgeae.cli import CLIError
    from edgeae.cli.train_flags import refuse_out_on_resume, refuse_resume_changes

    args = argparse.Namespace(resume=str(tmp_path / "run"), out=str(tmp_path / "o"), init=None, lr=0.5, _argv=None)
    with pytest.raises(CLIError, match=r"--init .*best\.pt"):
        refuse_out_on_resume(args)
    args = argparse.Namespace(
        resume="run", out=None, init=None, lr=0.5, _flag_options={"lr": ("--lr",)}, _argv=["--lr", "0.5"]
    )
    with pytest.raises(CLIError, match=r"--init CHECKPOINT to start from its weights"):
        refuse_resume_changes(args, argparse.Namespace(lr=1e-3), {"lr": "lr"})

"""`edgeae demo` end to end on the moon with a tiny CAE: HTML with every section, images and metrics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeae.demo import SECTIONS, DemoConfig, DemoContext, run_demo
from edgeae.metadata import ModelMetadata
from edgeae.report import Section


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch = pytest.importorskip("torch")
    from edgeae.checkpoint import save_checkpoint
    from edgeae.models.cae import CAE, CAEConfig

    torch.manual_seed(0)
    cfg = CAEConfig(channels=1, widths=(4, 8), tile=32)
    meta = ModelMetadata(kind="cae", architecture=cfg.to_dict(), input_shape=(-1, 1, 32, 32), channels=1)
    return save_checkpoint(tmp_path_factory.mktemp("ck") / "tiny.pt", CAE(cfg), meta)


def test_demo_cli_on_moon(tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("skimage")
    from edgeae.cli import main

    out = tmp_path / "demo"
    assert main(["demo", "--source", "moon", "--model", str(tiny_checkpoint), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert str((out / "index.html").resolve()) in printed
    html = (out / "index.html").read_text()
    for title in (
        "Input",
        "Reconstructions",
        "Metrics",
        "Downlink: CCSDS packets over a lossy link, rebuilt on the ground",
    ):
        assert f"<h2>{title}</h2>" in html
    for method in ("cae", "telea", "ns", "linear", "nearest", "normconv"):
        assert (out / "img" / f"01-recon-{method}.png").is_file()
        assert (out / "img" / f"01-error-{method}.png").is_file()
        assert f"<td>{method}" in html
    assert (out / "img" / "00-original.png").is_file() and (out / "img" / "00-masked.png").is_file()
    m = json.loads((out / "metrics.json").read_text())
    assert m["image"] == "moon" and m["keep"] == 0.1 and m["shape"] == [512, 512, 1]
    assert set(m["results"]) == {"cae", "telea", "ns", "linear", "nearest", "normconv"}
    assert 30 < m["results"]["linear"]["psnr"] < 45  # measured 36.9 dB (seed 0)


def test_demo_sections_are_extensible(tmp_path: Path) -> None:
    pytest.importorskip("skimage")

    def extra(ctx: DemoContext) -> Section:
        ctx.extra["seen"] = ctx.known.sum()
        return Section("Downlink", paragraphs=[f"{int(ctx.known.sum())} pixels to send"])

    cfg = DemoConfig(out=tmp_path / "d", source="moon", methods=("nearest",))
    res = run_demo(cfg, [*SECTIONS, extra])
    html = res.html.read_text()
    assert "<h2>Downlink</h2>" in html and html.index("Metrics") < html.index("Downlink")
    assert res.context.extra["seen"] == int(np.sum(res.context.known))


def test_demo_config_validation() -> None:
    with pytest.raises(ValueError, match="keep"):
        DemoConfig(keep=0.0)
    with pytest.raises(ValueError, match="methods"):
        DemoConfig(methods=("jpeg",))
    with pytest.raises(ValueError, match="source"):
        DemoConfig(source="mars")

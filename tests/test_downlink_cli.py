"""``edgeae downlink simulate --compare`` and ``edgeae downlink plan`` in-process."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeae.cli import main

pytest.importorskip("imagecodecs")


@pytest.fixture()
def image(tmp_path: Path) -> Path:
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:96, 0:128]
    img = np.stack([x * 2, y * 2, (x + y)], axis=2) + rng.integers(0, 6, (96, 128, 3))
    p = tmp_path / "scene.png"
    cv2.imwrite(str(p), img.astype(np.uint8)[:, :, ::-1])
    return p


def test_simulate_compare_sends_codecs_at_the_same_bytes(tmp_path: Path, image: Path, capsys) -> None:
    out = tmp_path / "rx.bin"
    argv = ["downlink", "simulate", "--image", str(image), "--keep", "0.2", "--link", "loss20", "--link-seed", "1",
            "--out", str(out), "--compare", "jpeg2000,jpeg,webp"]  # fmt: skip
    assert main(argv) == 0
    rep = json.loads(out.with_suffix(".json").read_text())
    assert rep["product"]["codec"] == "ccsds121" and rep["product"]["layout"] == 2
    rows = {r["method"]: r for r in rep["compare"]}
    assert set(rows) == {"sparse keep 0.2 + blend", "jpeg2000", "jpeg", "webp"}
    assert all(r["wire_bytes"] <= rep["wire_bytes"] for r in rows.values())
    assert rows["sparse keep 0.2 + blend"]["psnr"] > 20 and rows["sparse keep 0.2 + blend"]["longest_row_gap"] <= 2
    assert "| jpeg2000 |" in capsys.readouterr().out
    assert main(["downlink", "simulate", "--image", str(image), "--out", str(out), "--compare", "gif"]) != 0


def test_plan_on_an_image(tmp_path: Path, image: Path, monkeypatch, capsys) -> None:
    from edgeae.ground import science

    def classical(model: str, scorer: str, threads=None, loaded=None):  # no model weights in a fast test
        from edgeae.inpaint import inpaint

        def fill(img: np.ndarray, known: np.ndarray) -> np.ndarray:
            return np.asarray(inpaint(img, known, "telea"), np.float32)

        return fill, lambda b: {"score": b.reshape(len(b), -1).std(axis=1)}

    monkeypatch.setattr(science, "load_models", classical)
    out = tmp_path / "plan"
    argv = ["downlink", "plan", "--image", str(image), "--budgets", "0.05,0.2", "--links", "perfect,burst",
            "--patch", "32", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    rows = json.loads((out / "report.json").read_text())["rows"]
    assert {r["method"] for r in rows} == set(science.METHODS)
    assert {r["link"] for r in rows} == {"perfect", "burst"}
    assert all(r["wire_bytes"] <= r["budget_bytes"] for r in rows)
    assert "| 20% | prioritised |" in capsys.readouterr().out
    assert main(["downlink", "plan", "--set", "moon"]) != 0


def test_compare_fill_names_the_classical_fill_and_is_checked(tmp_path: Path, image: Path, capsys) -> None:
    """--compare rebuilds the sparse frame with blend (the best classical fill) unless --fill names another; --fill
    without --compare, or with --model, is refused before any work."""
    from edgeae.inpaint import METHODS

    out = tmp_path / "rx.bin"
    base = ["downlink", "simulate", "--image", str(image), "--keep", "0.2", "--out", str(out)]
    assert main([*base, "--compare", "jpeg", "--fill", "telea"]) == 0
    rows = {r["method"]: r for r in json.loads(out.with_suffix(".json").read_text())["compare"]}
    assert set(rows) == {"sparse keep 0.2 + telea", "jpeg"}
    capsys.readouterr()
    assert main([*base, "--force", "--fill", "linear"]) == 2
    assert "--fill rebuilds the sparse frame for --compare" in capsys.readouterr().err
    assert main([*base, "--force", "--compare", "jpeg", "--fill", "ns", "--model", "rgb-cae"]) == 2
    assert "--fill ns and --model rgb-cae" in capsys.readouterr().err
    # the parser's choices are the classical fills the ground station has
    import argparse

    from edgeae.cli import build_parser

    def sub(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
        return next(a.choices[name] for a in parser._actions if isinstance(a, argparse._SubParsersAction))

    sim = sub(sub(build_parser(), "downlink"), "simulate")
    assert tuple(next(a for a in sim._actions if "--fill" in a.option_strings).choices) == METHODS

"""The model zoo: registry, listing, JSON, resolve errors, and the shipped weights themselves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeae import zoo
from edgeae.cli import main

CAE_MODELS = ("rover-rgb-gtcae", "orbital-gray-gtcae")


def test_registry_entries_are_complete() -> None:
    for name in CAE_MODELS:
        assert name in zoo.ZOO
    for name, entry in zoo.ZOO.items():
        for key in ("kind", "channels", "file", "training_data", "command"):
            assert entry.get(key), f"{name}: {key} missing"
        assert entry["kind"] in ("cae", "vae") and entry["channels"] in (1, 3)
        assert entry["command"].startswith("edgeae train ")
    assert zoo.ZOO["rover-rgb-gtcae"]["channels"] == 3 and zoo.ZOO["orbital-gray-gtcae"]["channels"] == 1


def test_list_models_adds_name_availability_and_metrics() -> None:
    models = zoo.list_models()
    assert [m["name"] for m in models] == list(zoo.ZOO)
    for m in models:
        assert isinstance(m["available"], bool) and isinstance(m["metrics"], dict)


def test_resolve_unknown_name_lists_known_models() -> None:
    with pytest.raises(zoo.UnknownModelError) as exc:
        zoo.resolve("no-such-model")
    msg = str(exc.value)
    assert "no-such-model" in msg and all(name in msg for name in CAE_MODELS)


def test_resolve_missing_weights_says_how_to_reproduce(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(zoo, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="edgeae train cae --data rover_rgb"):
        zoo.resolve("rover-rgb-gtcae")
    assert not zoo.list_models()[0]["available"]


def test_cli_zoo_table_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["zoo"]) == 0
    table = capsys.readouterr().out
    assert all(name in table for name in CAE_MODELS) and "params" in table and "flight file" in table
    assert max(map(len, table.splitlines())) <= 100  # fits a terminal
    assert main(["zoo", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert isinstance(rows, list) and {r["name"] for r in rows} >= set(CAE_MODELS)
    for r in rows:
        assert {"name", "kind", "channels", "weights_path", "flight_artifacts"} <= set(r)
    # the table's "flight file" column, for machines too (the JSON had no artifact and a bare file name)
    vae = next(r for r in rows if r["name"] == "orbital-gray-vae")
    assert Path(vae["weights_path"]).is_file() and Path(vae["weights_path"]).name == vae["file"]
    assert sorted(Path(p).suffix for p in vae["flight_artifacts"]) == [".onnx", ".tflite"]
    gtcae = next(r for r in rows if r["name"] == "rover-rgb-gtcae")  # its latent downlink's encoder/decoder too
    assert any("-encoder." in p for p in gtcae["flight_artifacts"]) and any(
        "-decoder." in p for p in gtcae["flight_artifacts"]
    )


@pytest.mark.parametrize("name", CAE_MODELS)
def test_shipped_cae_weights_load_and_match_the_registry(name: str) -> None:
    pytest.importorskip("torch")
    from edgeae.checkpoint import load_checkpoint
    from edgeae.models.cae import count_parameters

    entry = zoo.ZOO[name]
    path = zoo.resolve(name)
    assert path.stat().st_size <= 2 * 1024 * 1024, "zoo weights must stay small enough to commit"
    ck = load_checkpoint(path)
    assert ck.metadata.kind == "cae" and ck.metadata.channels == entry["channels"]
    assert ck.metadata.mask["mode"] == "gt"
    assert count_parameters(ck.model) == entry["parameters"]
    metrics = zoo.metrics(name)
    assert metrics["parameters"] == entry["parameters"]
    assert 0 < metrics["val_loss"] < 0.05
    assert metrics["val_levels"]["0.5"]["mae"] < metrics["val_levels"]["0.99"]["mae"]


def test_cli_zoo_names_each_cae_validation_split(capsys: pytest.CaptureFixture[str]) -> None:
    """A CAE's PSNR is named with the dataset whose validation files gave it: the rover U-Nets (fine-tuned on
    rover_rgb_msl, validated on rover_rgb_v2's panoramas) do not read as worse than rover-rgb-gtunet, whose figure
    is on another split (rover_rgb's one panorama)."""
    from edgeae.cli.zoo import val_split

    assert val_split(zoo.ZOO["rover-rgb-gtunet"]["command"]) == "rover_rgb"
    assert val_split(zoo.ZOO["rover-rgb-unet2-ground"]["command"]) == "rover_rgb_v2"  # its last step: rover_rgb_msl
    assert val_split("edgeae train cae --data rover_rgb_msl_all --out r") == "rover_rgb_v2"
    assert val_split("edgeae train cae --data ./my_images --out r") == "-" and val_split(None) == "-"
    # a resume names no --data: a later step's (the gate's) is not read as the run's
    chain = "edgeae train cae --data rover_rgb --out r  &&  edgeae train cae --resume r  &&  gate --data orbital_gray"
    assert val_split(chain) == "rover_rgb"
    assert main(["zoo"]) == 0
    lines: dict[str, str] = {}
    for ln in capsys.readouterr().out.splitlines():  # the table's rows first (the notes below may name models too)
        if ln.strip():
            lines.setdefault(ln.split()[0], ln)
    assert lines["rover-rgb-gtunet"].endswith(", rover_rgb val")
    assert lines["orbital-gray-unet2-ground"].endswith(", orbital_gray_v2 val")

"""Session 37 fixer t1 (review r7 #1, #2, #4): scan.json's options for ``--model zoo:NAME`` pick the same file again;
``**`` globs with a wildcard part between two ``**`` do not name files through a link loop; the finalize cost script
rescans its base when the stride or archive changed and scans with the runtime an ``edgeae[scan]`` install has."""

from __future__ import annotations

import importlib.util
import json
import shlex

import pytest


# -- #1: scan.json's recorded options for zoo:NAME ---------------------------------------------------------------------
def test_zoo_prefixed_name_is_recorded_with_the_options_that_pick_its_file() -> None:
    """``--model zoo:NAME`` (README: another spelling of the zoo name) was recorded as ``--model zoo:NAME`` alone: the
    runtime and precision that picked the file were left out, as for ``zoo:NAME/FILE`` (one exact file)."""
    from edgeae.scan.scoring import ModelSpec, resolve_model

    name = "orbital-gray-vae"
    assert resolve_model(f"zoo:{name}", runtime="onnx").options() == f"--model zoo:{name} --runtime onnx"
    if importlib.util.find_spec("ai_edge_litert") is not None:
        assert resolve_model(f"zoo:{name}", runtime="tflite").options() == f"--model zoo:{name} --runtime tflite"
    fp32 = ModelSpec(f"/s/{name}.pt", name, "0" * 64, "vae", 64, 1, given=f"zoo:{name}", zoo=True)
    assert fp32.options() == f"--model zoo:{name} --precision fp32"
    one_file = f"zoo:{name}/{name}.int8.onnx"  # names one file: nothing else picks it
    exact = ModelSpec(f"/s/{name}.int8.onnx", name, "0" * 64, "vae", 64, 1, given=one_file, zoo=True)
    assert exact.options() == f"--model {one_file}"


def test_the_recorded_options_of_a_zoo_prefixed_name_resume_the_same_folder(tmp_path, moon) -> None:  # type: ignore[no-untyped-def]
    """Scanned with ``--model zoo:NAME --runtime R`` where ``--runtime auto`` picks the other int8 file on this CPU: the
    recorded options, rerun in the same folder, were refused ("this run would score with ...")."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("ai_edge_litert")
    from edgeae.cli import main
    from edgeae.imageio import write_image
    from edgeae.scan.scoring import shipped_int8

    name = "orbital-gray-vae"
    auto = shipped_int8(name)
    if auto is None:
        pytest.skip(f"no shipped int8 artifact of {name} that passed parity")
    other = "onnx" if auto.suffix == ".tflite" else "tflite"  # the file --runtime auto does not pick here
    for i in range(2):
        write_image(tmp_path / "arc" / f"c{i}.png", moon[64 * i : 64 * i + 64, :64].copy())
    out = tmp_path / "out"
    common = [str(tmp_path / "arc"), "--out", str(out), "--workers", "0", "--no-progress"]
    assert main(["scan", *common, "--model", f"zoo:{name}", "--runtime", other, "--max-images", "1"]) == 0
    options = json.loads((out / "scan.json").read_text())["config"]["model"]["options"]
    assert options == f"--model zoo:{name} --runtime {other}"
    assert main(["scan", *common, *shlex.split(options)]) == 0  # accepted: resumes with the same file
    report = json.loads((out / "report.json").read_text())
    assert report["done"] == 2 and report["artifact"] == f"{name}.int8.{other}"

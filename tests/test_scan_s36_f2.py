"""Archive scan items of session 36 (fixer f2): a model the local engine's workers cannot load ends the scan in one
line with status 2, as with the Ray engine (before: each image recorded as failed with the loader's error, or "a
worker process died" and status 1); a local scan imports nothing of the Ray engine."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pyarrow")

from edgeae.scan.archive import walk_archive
from edgeae.scan.errors import ModelLoadError
from edgeae.scan.local import iter_local
from edgeae.scan.pipeline import ScanConfig
from edgeae.scan.scoring import ModelSpec, load_scorer


def _archive(root: Path, n: int) -> Path:
    from edgeae.imageio import write_image

    rng = np.random.default_rng(0)
    for i in range(n):
        write_image(root / f"img_{i}.png", rng.integers(0, 256, (64, 64), dtype=np.uint8))
    return root


# -- 1: a model the local workers cannot load ------------------------------------------------------------------------
@pytest.mark.parametrize(("workers", "images"), [(0, 2), (2, 1), (2, 3)], ids=["this-process", "threads", "processes"])
def test_a_model_the_local_workers_cannot_load_ends_the_scan_naming_the_file_and_the_reason(
    tmp_path: Path, workers: int, images: int
) -> None:
    """The model file changed after the scan resolved it (the real loader refuses it in each worker): before, every
    image was recorded as failed with the loader's error (threads, processes), the scan went on and exited 1."""
    model = tmp_path / "m.onnx"
    model.write_bytes(b"replaced since the scan started")
    spec = ModelSpec(path=str(model), model_id="m", artifact_hash="0" * 64, kind="vae", patch=32, channels=1)
    entries = walk_archive(_archive(tmp_path / "arc", images))
    outcomes = iter_local(entries, ScanConfig(spec, 32), functools.partial(load_scorer, spec), workers=workers)
    reason = f"ValueError: {model}: model file changed since the scan started (hash mismatch)"
    with pytest.raises(ModelLoadError) as info:
        next(outcomes)  # nothing is yielded: no image is recorded as failed for the model's fault
    assert str(info.value) == f"cannot load the model {model}: {reason}"


def test_the_command_says_in_one_line_that_the_model_cannot_be_loaded_and_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """README's exit statuses: a model that cannot be loaded is status 2 with either engine (Ray's: test_scan_ray_s35);
    no image is recorded, so the results folder the command made is gone again."""
    import edgeae.scan.run as scan_run
    from edgeae.cli import main

    paths: list[str] = []

    def unloadable(spec: ModelSpec, *args: object) -> object:
        paths.append(spec.path)
        raise RuntimeError("cannot create the interpreter\n(the runtime's details)")

    monkeypatch.setattr(scan_run, "load_scorer", unloadable)
    arc, out = _archive(tmp_path / "arc", 1), tmp_path / "o"
    assert main(["scan", str(arc), "--out", str(out), "--workers", "2", "--no-progress"]) == 2
    assert capsys.readouterr().err == (
        f"edgeae scan: error: cannot load the model {paths[0]}: RuntimeError: cannot create the interpreter (the "
        "runtime's details)\n"
    )
    assert not out.exists()


# -- 2: a local scan leaves the Ray engine alone -----------------------------------------------------------------------
def test_a_local_scan_imports_neither_the_ray_engine_nor_ray(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: the command imported edgeae.scan.ray_engine on every scan (for its two errors), a cost and a
    dependency the local engine does not have. The modules are taken out of sys.modules for this test only."""
    import sys

    from edgeae.cli import main

    for name in [m for m in sys.modules if m == "ray" or m.startswith(("ray.", "edgeae.scan.ray_"))]:
        monkeypatch.delitem(sys.modules, name)
    arc = _archive(tmp_path / "arc", 2)
    assert main(["scan", str(arc), "--out", str(tmp_path / "o"), "--workers", "0", "--no-progress"]) == 0
    assert "- images: 2 (2 done, 0 failed" in capsys.readouterr().out
    loaded = sorted(m for m in sys.modules if m == "ray" or m.startswith(("ray.", "edgeae.scan.ray_")))
    assert loaded == []

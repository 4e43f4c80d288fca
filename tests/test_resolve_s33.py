"""Review r6, session 33: files an export rejected or moved aside are no zoo model's shipped artifacts.

Empty files stand in for artifacts (only their names are looked at): no interpreter, no data.
"""

from __future__ import annotations

from fnmatch import fnmatch
from pathlib import Path

import pytest

from edgeae import resolve, zoo

REAL = ("orbital-gray-vae.int8.onnx", "orbital-gray-vae.int8.tflite")
ASIDE = (
    "orbital-gray-vae.int8.STALE.onnx",
    "orbital-gray-vae.int8.STALE.tflite",
    "orbital-gray-vae.int8.STALE.2.onnx",
    "orbital-gray-vae.int8.FAILED.onnx",
    "orbital-gray-vae.fp32.FAILED.tflite",
)


def _folder(root: Path, name: str, files: tuple[str, ...]) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    for f in files:
        (folder / f).write_bytes(b"")
    return folder


def test_a_moved_aside_file_is_never_chosen_from_a_zoo_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """r6 item 7: ``X.int8.STALE.onnx`` sorts before ``X.int8.onnx`` and has the same first name part, so
    zoo_artifact picked it (and the boot then refused it). Now ``.STALE.`` and ``.FAILED.`` files are not listed."""
    _folder(tmp_path, "orbital-gray-vae", REAL + ASIDE)
    monkeypatch.setattr(resolve, "ARTIFACTS_DIR", tmp_path)
    assert [p.name for p in resolve.shipped_artifacts("orbital-gray-vae")] == list(REAL)
    assert resolve.zoo_artifact("orbital-gray-vae").name in REAL
    for prefer in ("onnx", "tflite"):
        assert resolve.zoo_artifact("orbital-gray-vae", prefer=(prefer,)).name == f"orbital-gray-vae.int8.{prefer}"
    assert resolve.model_path("orbital-gray-vae", "artifact").name in REAL
    for f in REAL:
        (tmp_path / "orbital-gray-vae" / f).unlink()
    with pytest.raises(resolve.NameNotFound, match="ships no flight artifact"):  # only moved-aside files: none ship
        resolve.zoo_artifact("orbital-gray-vae")


@pytest.mark.parametrize("tflite", [True, False])
def test_the_re_export_command_copies_only_the_files_the_export_accepted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tflite: bool
) -> None:
    """r6 item 7: the command printed after a zoo model is replaced copied ``runs/export/NAME/*.int8.*``, which
    takes the ``.STALE.`` and ``.FAILED.`` files a re-export leaves there; now it copies ``*.int8.onnx`` (and
    ``*.int8.tflite`` where TFLite files ship), and the files it lists as stale are the real ones."""
    real = REAL if tflite else REAL[:1]
    _folder(tmp_path, "orbital-gray-vae", real + ASIDE)
    monkeypatch.setattr(zoo, "ARTIFACTS_DIR", tmp_path)
    line = zoo.stale_artifacts_warning("orbital-gray-vae")
    assert line is not None and "\n" not in line and "*.int8.*" not in line
    assert f"({', '.join(real)})" in line  # the moved-aside files are not named as shipped artifacts
    assert ("--format onnx" in line) is not tflite
    cp = line.split(" && cp ", 1)[1].split()
    globs = [Path(a).name for a in cp if a.startswith("runs/export/orbital-gray-vae/")]
    assert globs[-1] == "parity.*"
    export = real + ASIDE + ("orbital-gray-vae.fp32.onnx", "orbital-gray-vae.int8.onnx.required_operators.config")
    copied = sorted(f for f in export if any(fnmatch(f, g) for g in globs[:-1]))
    assert copied == sorted(real)
    for f in real:
        (tmp_path / "orbital-gray-vae" / f).unlink()
    assert zoo.stale_artifacts_warning("orbital-gray-vae") is None  # nothing of the old weights ships


def test_the_zoo_skips_exactly_the_names_the_flight_runtime_refuses() -> None:
    from edgeae.firmware_sim.guard import FAILED_MARK, STALE_MARK

    from edgeae.zoo import REJECTED_MARKS

    assert set(REJECTED_MARKS) == {FAILED_MARK, STALE_MARK}

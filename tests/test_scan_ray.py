"""The Ray engine on a local Ray instance: same results as the local engine, corrupt files recorded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pyarrow")
pytest.importorskip("torch")
ray = pytest.importorskip("ray")
import pyarrow.parquet as pq  # noqa: E402
from test_scan_support import build_small_archive, tiny_cae  # noqa: E402

from edgeae.scan.run import EngineOptions, scan_archive  # noqa: E402

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def local_ray():
    """A 2-CPU, loopback-only Ray instance for this module; skipped when Ray cannot start here."""
    from edgeae.scan.ray_engine import _init_ray

    try:
        started = _init_ray(ray, None, 2)
    except Exception as exc:  # no shared memory, ports, ... in this sandbox
        pytest.skip(f"Ray cannot start a local instance here: {type(exc).__name__}: {exc}")
    yield ray
    if started:
        ray.shutdown()


def test_ray_engine_matches_the_local_engine(local_ray, moon: np.ndarray, tmp_path: Path) -> None:
    root = tmp_path / "archive"
    names = build_small_archive(root, moon, n=6)
    model = tiny_cae(tmp_path / "tiny.pt")
    local = scan_archive(root, model, tmp_path / "local", engine=EngineOptions(workers=0), progress=False)
    r = scan_archive(root, model, tmp_path / "ray", engine=EngineOptions(engine="ray", actors=2), progress=False)
    assert r["engine"] == "ray" and r["done"] == len(names["good"]) and r["failed"] == 2
    assert sorted(f["file"] for f in r["failures"]) == names["corrupt"]
    assert [f["error"] for f in r["failures"]] == [f["error"] for f in local["failures"]]
    a = pq.read_table(tmp_path / "local" / "results.parquet")
    b = pq.read_table(tmp_path / "ray" / "results.parquet")
    assert b.num_rows == r["patches"] > 0 and a.equals(b)
    assert r["top"] == local["top"]
    again = scan_archive(root, model, tmp_path / "ray", engine=EngineOptions(engine="ray"), progress=False)
    assert again["images_scanned"] == 0 and pq.read_table(tmp_path / "ray" / "results.parquet").equals(b)

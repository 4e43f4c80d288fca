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

# Ray's deprecations fail these tests: the engine uses Ray Core's current API only (no warning filter of its own)
pytestmark = [pytest.mark.ray, pytest.mark.filterwarnings("error::ray.util.annotations.RayDeprecationWarning")]


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


def test_ray_engine_local_z_matches_the_local_engine(local_ray, moon: np.ndarray, tmp_path: Path) -> None:
    """``--score local-z`` on Ray: each image ranked whole in the driver (chunks in any order), thumbnails read
    back there, the same results as the local engine; corrupt images recorded as failed, not the scan."""
    pytest.importorskip("ai_edge_litert")
    root = tmp_path / "archive"
    names = build_small_archive(root, moon, n=4)
    kw = {"stride": 32, "top_k": 4, "score": "local-z", "progress": False}
    local = scan_archive(root, "orbital-gray-vae", tmp_path / "local", engine=EngineOptions(workers=0), **kw)
    r = scan_archive(root, "orbital-gray-vae", tmp_path / "ray", engine=EngineOptions(engine="ray", actors=2), **kw)
    assert r["done"] == len(names["good"]) and r["failed"] == len(names["corrupt"]) and r["score"] == "local-z"
    a = pq.read_table(tmp_path / "local" / "results.parquet")
    b = pq.read_table(tmp_path / "ray" / "results.parquet")
    assert b.num_rows == r["patches"] > 0 and "rec" in b.column_names
    np.testing.assert_allclose(b["score"].to_numpy(), a["score"].to_numpy(), rtol=1e-6)
    assert [(t["file"], t["x"], t["y"]) for t in r["top"]] == [(t["file"], t["x"], t["y"]) for t in local["top"]]


def test_ray_engine_context_knn_matches_the_local_engine(local_ray, moon: np.ndarray, tmp_path: Path) -> None:
    """``--score context-knn`` on Ray: each image's latents come back to the driver with it, the set is ranked there
    once every image is in: the same results as the local engine; corrupt images recorded as failed."""
    root = tmp_path / "archive"
    names = build_small_archive(root, moon, n=4)
    kw = {"stride": 32, "top_k": 4, "score": "context-knn", "views": 2, "group": "^[^/]+", "progress": False}
    local = scan_archive(root, "orbital-gray-vae", tmp_path / "local", engine=EngineOptions(workers=0), **kw)
    r = scan_archive(root, "orbital-gray-vae", tmp_path / "ray", engine=EngineOptions(engine="ray", actors=2), **kw)
    assert r["done"] == len(names["good"]) and r["failed"] == len(names["corrupt"])
    assert r["context_knn"]["images"] == local["context_knn"]["images"] == len(names["good"])
    a = pq.read_table(tmp_path / "local" / "results.parquet")
    b = pq.read_table(tmp_path / "ray" / "results.parquet")
    assert b.num_rows == r["patches"] > 0
    np.testing.assert_allclose(b["score"].to_numpy(), a["score"].to_numpy(), rtol=1e-6)
    assert [(t["file"], t["x"], t["y"]) for t in r["top"]] == [(t["file"], t["x"], t["y"]) for t in local["top"]]

"""``edgeae scan --score context-knn``: the two-context kNN ranking of the whole scanned set, made once every image
is in (and again on each resume), equal to ``edgeae score --score context-knn`` on the same images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeae.scan.pipeline import ScanConfig
from edgeae.scan.scoring import ModelSpec

SPEC = ModelSpec(path="m.pt", model_id="m", artifact_hash="0" * 64, kind="vae", patch=64, channels=1, latent=256)


@pytest.fixture
def crops(tmp_path: Path, moon: np.ndarray) -> Path:
    """Four 160-px crops of the real moon image, two 'products' (A, B) by name."""
    from edgeae.imageio import write_image

    arc = tmp_path / "arc"
    for i, (y, x) in enumerate([(0, 0), (0, 300), (300, 0), (320, 330)]):
        write_image(arc / f"{'AB'[i // 2]}_{i}.png", np.ascontiguousarray(moon[y : y + 160, x : x + 160]))
    return arc


def _table(out: Path) -> object:
    pq = pytest.importorskip("pyarrow.parquet")
    return pq.read_table(out / "results.parquet").to_pandas().sort_values(["file", "y", "x"]).reset_index(drop=True)


def test_scan_context_knn_equals_edgeae_score_and_reranks_the_set_on_resume(crops: Path, tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    import pandas as pd

    from edgeae.cli import main
    from edgeae.scan.run import EngineOptions, scan_archive

    kw = dict(engine=EngineOptions(workers=0), stride=32, progress=False, score="context-knn", precision="fp32",
              views=2, group="^[AB]", top_k=3)  # fmt: skip
    report = scan_archive(crops, "orbital-gray-vae", tmp_path / "full", **kw)
    assert report["context_knn"]["images"] == 4 and report["context_knn"]["patches"] == 4 * 16
    assert "ranked together" in (tmp_path / "full" / "report.md").read_text()
    full = _table(tmp_path / "full")
    csv = tmp_path / "score.csv"
    files = sorted(str(p) for p in crops.glob("*.png"))
    argv = ["score", *files, "--model", "orbital-gray-vae", "--score", "context-knn", "--views", "2"]
    assert (
        main([*argv, "--group", "^[AB]", "--stride", "32", "--min-valid", "0.5", "-o", str(csv), "--no-progress"]) == 0
    )
    ref = pd.read_csv(csv)
    ref["file"] = ref["file"].map(lambda s: Path(s).name)
    both = full.merge(ref, on=["file", "x", "y"], suffixes=("", "_ref"))
    assert len(both) == len(full) == len(ref)
    np.testing.assert_allclose(both["score"], both["score_ref"], rtol=1e-4, atol=1e-4)
    # an interrupted scan ranks what it has; the resumed one ranks the whole set again: the same scores
    scan_archive(crops, "orbital-gray-vae", tmp_path / "part", max_images=2, **kw)
    assert len(_table(tmp_path / "part")) == 2 * 16
    scan_archive(crops, "orbital-gray-vae", tmp_path / "part", **kw)
    np.testing.assert_allclose(_table(tmp_path / "part")["score"], full["score"], rtol=1e-6)
    # the gallery and each image's best patches follow the set's ranking
    best = full.loc[full["score"].idxmax()]
    assert sorted((tmp_path / "full" / "topk").glob("000_*"))[0].name.startswith(f"000_{Path(best['file']).stem}_")


def test_scan_context_knn_refusals_and_lost_latents(
    crops: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("pyarrow")
    from edgeae.anomaly import context
    from edgeae.scan.run import EngineOptions, scan_archive

    kw = dict(engine=EngineOptions(workers=0), stride=32, progress=False, score="context-knn")
    with pytest.raises(ValueError, match=r"A_0\.png: its name does not match --group '\^B'"):
        scan_archive(crops, "orbital-gray-vae", tmp_path / "g", group="^B", **kw)
    monkeypatch.setattr(context, "LOCAL_Z_MAX_BYTES", 100 << 10)  # 64 patches x 257 x 4 bytes = 64 KiB; x2 views
    with pytest.raises(ValueError, match=r"64 patches .*--views 2"):
        scan_archive(crops, "orbital-gray-vae", tmp_path / "big", views=2, **kw)
    assert not (tmp_path / "big" / "parts").exists() or not any((tmp_path / "big" / "parts").iterdir())
    monkeypatch.undo()
    out = tmp_path / "lost"
    scan_archive(crops, "orbital-gray-vae", out, **kw)
    next((out / "parts").glob("B_3-*.latents.npy")).unlink()
    damaged = next((out / "parts").glob("A_0-*.latents.npy"))
    damaged.write_bytes(damaged.read_bytes()[:300])  # a torn file
    report = scan_archive(crops, "orbital-gray-vae", out, **kw)  # nothing left to scan: the set is ranked again
    assert report["context_knn"]["images_failed"] == 2 and report["failed"] == 2
    assert report["context_knn"]["images"] == 2
    errors = {f["file"]: f["error"] for f in report["failures"]}
    assert "latents for --score context-knn missing" in errors["B_3.png"]
    assert "latents for --score context-knn unreadable" in errors["A_0.png"]
    report = scan_archive(crops, "orbital-gray-vae", out, retry_failed=True, **kw)
    assert report["failed"] == 0 and report["context_knn"]["images"] == 4
    # the folder resumed with another score: refused naming the change (was a KeyError on 'views')
    from edgeae.scan.state import ScanStateError

    with pytest.raises(ScanStateError, match=r"score: 'context-knn' -> 'a'.*views: 1 -> '\(none\)'"):
        scan_archive(crops, "orbital-gray-vae", out, **{**kw, "score": "a"})
    # an image moved away after its scan: the set is still ranked, its scores kept, its thumbnails left out
    import json

    from edgeae.scan.archive import walk_archive
    from edgeae.scan.context import rank_set
    from edgeae.scan.state import ScanStore

    entries = walk_archive(crops)
    store = ScanStore(out, ScanConfig.from_dict(json.loads((out / "scan.json").read_text())["config"]))
    (crops / "B_2.png").rename(tmp_path / "B_2.png")
    info = rank_set(store, entries)
    assert info["images"] == 4 and info["thumbnails_unread"] == 1 and info["images_failed"] == 0
    # a damaged part: that image is recorded as failed, the others ranked
    part = next((out / "parts").glob("A_1-*.parquet"))
    part.write_bytes(b"not parquet")
    info = rank_set(store, entries)
    assert info["images_failed"] == 1 and info["images"] == 3
    assert "part unreadable" in store.records()["A_1.png"].error


def test_context_knn_config_is_checked_and_old_fingerprints_are_unchanged() -> None:
    with pytest.raises(ValueError, match="views 2 belongs to score 'context-knn'"):
        ScanConfig(SPEC, stride=32, score="local-z", views=2)
    with pytest.raises(ValueError, match="group 'x' belongs to score 'context-knn'"):
        ScanConfig(SPEC, stride=32, group="x")
    with pytest.raises(ValueError, match="not a regular expression"):
        ScanConfig(SPEC, stride=32, score="context-knn", group="(")
    with pytest.raises(ValueError, match="1 to 8"):
        ScanConfig(SPEC, stride=32, score="context-knn", views=9)
    cae = ModelSpec(path="c.pt", model_id="c", artifact_hash="0" * 64, kind="cae", patch=64, channels=1)
    with pytest.raises(ValueError, match=r"'context-knn' ranks a VAE's latents; c is a cae"):
        ScanConfig(cae, stride=32, score="context-knn")
    a = ScanConfig(SPEC, stride=32, score="local-z")
    assert "views" not in a.result_fingerprint()  # scans made before context-knn existed resume unchanged
    old = {k: v for k, v in a.to_dict().items() if k not in ("views", "group")}
    assert ScanConfig.from_dict(old).result_fingerprint() == a.result_fingerprint()
    c = ScanConfig(SPEC, stride=32, score="context-knn", views=8, group="ESP_[0-9]+")
    assert c.latents and c.result_fingerprint()["views"] == 8
    assert (
        c.product("ESP_0123_RED-0001.jpg") == "ESP_0123"
        and ScanConfig(SPEC, 32, score="context-knn").product("x") is None
    )


def test_scan_cli_views_and_group_belong_to_context_knn(
    crops: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgeae.cli import main

    base = ["scan", str(crops), "--out", str(tmp_path / "o"), "--workers", "0", "--no-progress"]
    assert main([*base, "--views", "2"]) == 2
    assert "--views 2 averages latents for --score context-knn only" in capsys.readouterr().err
    assert main([*base, "--group", "^A"]) == 2
    assert "--group sets the product context of --score context-knn only" in capsys.readouterr().err


def test_scan_context_knn_refuses_a_set_over_the_knn_patch_bound(
    crops: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgeae.anomaly import baselines
    from edgeae.scan.run import EngineOptions, scan_archive

    monkeypatch.setattr(baselines, "KNN_MAX", 60)  # the four crops give 64 patches at stride 32
    with pytest.raises(ValueError, match=r"64 patches .*over the limit of 60 patches"):
        scan_archive(crops, "orbital-gray-vae", tmp_path / "o", engine=EngineOptions(workers=0), stride=32,
                     progress=False, score="context-knn")  # fmt: skip

"""Session 40: the link benchmark ended with a traceback when a whole-file codec's lowest quality did not fit the
sparse frame's wire bytes (``--keep 0.01 --crop 256``: 'jpeg-rst needs 1776 file bytes at its lowest quality, over
the 1742-byte file budget'). Such a codec cannot send that frame within the budget: it sends nothing and the frame is
counted lost (the mid-grey stand-in of a file that never arrived), in every link condition."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("imagecodecs")
pytest.importorskip("cv2")

from edgeae.ground.link import LinkConfig


def _noise(size: int) -> np.ndarray:
    """Texture no codec compresses: every file's lowest quality is large."""
    return np.random.default_rng(0).integers(0, 256, (size, size, 3)).astype(np.uint8)


def test_a_codec_over_the_budget_sends_nothing_and_the_frame_is_counted_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image

    import benchmarks.link_comparison as lc
    from edgeae.ground.baselines import at_bytes

    path = tmp_path / "rover.png"
    Image.fromarray(_noise(256)).save(path)
    monkeypatch.setattr(lc, "split_files", lambda *a: [path])
    monkeypatch.setattr(lc, "LINKS", {"perfect": LinkConfig(), "loss 20%": LinkConfig(loss=0.2)})
    monkeypatch.setattr("benchmarks.machine._gpu", lambda: None)
    argv = ["--out", str(tmp_path / "link"), "--limit", "1", "--seeds", "1", "--methods", "linear", "--keep", "0.01",
            "--crop", "256", "--j2k-tile", "0"]  # fmt: skip
    assert lc.main(argv) == 0
    got = json.loads((tmp_path / "link" / "results.json").read_text())
    size = got["sizes"][0]
    over = [c for c in lc.CODECS if size[c]["bytes"] is None]
    assert over, size  # noise at keep 0.01: at least one codec cannot fit
    budget = lc.file_budget(size["sparse_wire_bytes"], 1024)
    for c in lc.CODECS:
        if c in over:
            assert size[c]["fits"] is False and "over the" in size[c]["why"]
            with pytest.raises(ValueError):
                at_bytes(np.asarray(Image.open(path)), c, budget)
            rows = [r for r in got["rows"] if r["method"] == c]
            assert len(rows) == 2 and all(
                r["lost"] and r["wire_bytes"] == 0 and r["how"] == "over budget" for r in rows
            )
        else:
            assert 0 < size[c]["bytes"] <= budget
    md = (tmp_path / "link" / "results.md").read_text()
    assert "its lowest quality is over the budget on every crop: nothing sent, counted lost" in md
    line = next(x for x in md.splitlines() if x.startswith(f"| {over[0]} |"))
    assert line.startswith(f"| {over[0]} | - |") and "(1/1)" in line  # no wire bytes; lost in both conditions

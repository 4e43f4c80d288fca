"""Session 31 audit polish: score's progress bars on a terminal only, the scan report's name for a CAE's score and
the patch size it is given, a ``firmware-sim --set`` model path that is missing, the trainer's "best epoch" line."""

from __future__ import annotations

import io
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest


def _tiny_cae(path: Path, tile: int = 128) -> Path:
    """A seeded, untrained grey CAE checkpoint with a fixed ``tile``-px input (fast to run)."""
    torch = pytest.importorskip("torch")
    from edgeae.checkpoint import save_checkpoint
    from edgeae.metadata import ModelMetadata
    from edgeae.models.cae import CAE, CAEConfig

    torch.manual_seed(0)
    cfg = CAEConfig(channels=1, widths=(4, 8), tile=tile)
    meta = ModelMetadata(kind="cae", architecture=cfg.to_dict(), input_shape=(-1, 1, tile, tile), channels=1)
    return save_checkpoint(path, CAE(cfg).eval(), meta)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


# -- 1: edgeae score draws its bars on a terminal only ---------------------------------------------------------------
def test_score_draws_no_progress_bars_into_a_log(
    moon: np.ndarray, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``edgeae score a.png b.png ... 2> log`` (stderr not a terminal) wrote two nested tqdm bars per image into the
    log; on a terminal they are still drawn, and ``--no-progress`` still turns them off there."""
    pytest.importorskip("tqdm")
    from edgeae.cli import main
    from edgeae.imageio import write_image

    ck = _tiny_cae(tmp_path / "cae.pt")
    a = write_image(tmp_path / "a.png", np.ascontiguousarray(moon[:128, :128]))
    b = write_image(tmp_path / "b.png", np.ascontiguousarray(moon[128:256, :128]))
    argv = ["score", str(a), str(b), "--model", str(ck), "-o", str(tmp_path / "s.csv"), "--threads", "1"]
    assert main(argv) == 0  # capsys: stderr is not a terminal
    err = capsys.readouterr().err
    assert "\r" not in err and "patch/s" not in err and "image/s" not in err, err
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert main(argv) == 0
    assert "\r" in terminal.getvalue() and "images" in terminal.getvalue()  # drawn on a terminal
    terminal.seek(0)
    terminal.truncate()
    assert main([*argv, "--no-progress"]) == 0
    assert "\r" not in terminal.getvalue()


def test_library_scoring_draws_no_bar_into_a_log(moon: np.ndarray, tmp_path: Path, capsys) -> None:
    """``score_array`` / ``score_file`` with ``progress=True`` draw on a terminal only, as the CLI."""
    pytest.importorskip("tqdm")
    from edgeae.anomaly.score import score_array, score_file
    from edgeae.imageio import write_image

    def mean(batch: np.ndarray) -> dict[str, np.ndarray]:
        return {"score": batch.reshape(len(batch), -1).mean(axis=1).astype(np.float64)}

    class Scorer:
        channels = 1

        def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
            return mean(batch)

    img = np.ascontiguousarray(moon[:128, :128])
    score_array(img.astype(np.float32) / 255, mean, 64, 64, progress=True)
    score_file(write_image(tmp_path / "m.png", img), Scorer(), 64, 64, progress=True)  # type: ignore[arg-type]
    assert "\r" not in capsys.readouterr().err


# -- 2: the scan report names a CAE's score and its patch; score --patch gives the same numbers ----------------------
def test_scan_names_a_cae_score_and_score_matches_it_at_the_scans_patch(
    moon: np.ndarray, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A CAE trained on 128-px tiles is scanned in 128-px patches; ``edgeae score`` defaults a CAE to 64 px (other
    numbers) and gives the scan's numbers with ``--patch 128`` (docs/scan.md). The report calls the score ``cae``,
    the CAE's masked-reconstruction error of 128-px patches, not score ``a``."""
    pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    from edgeae.anomaly.score import read_csv
    from edgeae.cli import main
    from edgeae.imageio import write_image
    from edgeae.scan.run import EngineOptions, scan_archive

    ck = _tiny_cae(tmp_path / "cae.pt")
    arch = tmp_path / "arch"
    img = write_image(arch / "m.png", np.ascontiguousarray(moon[:256, :256]))
    r = scan_archive(arch, ck, tmp_path / "scan", progress=False, engine=EngineOptions(workers=0))
    t = pq.read_table(tmp_path / "scan" / "results.parquet").to_pydict()
    scanned = {(x, y): s for x, y, s in zip(t["x"], t["y"], t["score"], strict=True)}
    assert r["patch"] == 128 and set(scanned) == {(0, 0), (0, 128), (128, 0), (128, 128)}
    md = (tmp_path / "scan" / "report.md").read_text()
    assert "score `cae` (the CAE's masked-reconstruction error of each 128-px patch" in md
    assert "score `a`" not in md and "`edgeae score --patch 128` gives these numbers" in md

    base = ["score", str(img), "--model", str(ck), "--threads", "1", "--no-progress", "--min-valid", "0.9"]
    assert main([*base, "--patch", "128", "-o", str(tmp_path / "p128.csv")]) == 0
    same = {(x, y): s for _, x, y, s in read_csv(tmp_path / "p128.csv")}
    assert same.keys() == scanned.keys()
    assert [same[k] for k in sorted(same)] == pytest.approx([scanned[k] for k in sorted(same)], rel=1e-4)
    assert main([*base, "-o", str(tmp_path / "p64.csv")]) == 0
    default = {(x, y): s for _, x, y, s in read_csv(tmp_path / "p64.csv")}
    assert len(default) == 16 and "(patch 64, stride 64)" in capsys.readouterr().out  # another patch: other numbers


def test_report_label_of_other_scores_is_unchanged() -> None:
    from edgeae.scan.report_text import report_markdown

    r = {"out": "o", "model": "m", "artifact_hash": "0" * 64, "images": 0, "done": 0, "failed": 0, "pending": 0,
         "failures": [], "score": "a", "patch": 64}  # fmt: skip
    assert "score `a` (the VAE's a(x)" in report_markdown({**r, "model_kind": "vae"})
    assert "score `terms-max` (each of the VAE's terms" in report_markdown({**r, "score": "terms-max"})
    old = report_markdown({**r, "model_kind": "cae", "patch": None})  # a report without the patch
    assert "score `cae` (the CAE's masked-reconstruction error of each patch:" in old and "--patch" not in old


# -- 3: firmware-sim --set MODEL=relative/path is read from the current folder, and says so --------------------------
def test_a_missing_set_model_path_names_the_set_and_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The path was read from the current folder but the error blamed the mission file ("mission/m.toml:
    reconstruction model enc.onnx does not exist"), though the file was beside it."""
    from edgeae.firmware_sim.cli import main
    from edgeae.firmware_sim.cli_overrides import _mission_with_overrides
    from edgeae.firmware_sim.mission import MISSIONS_DIR, MissionError

    folder = tmp_path / "mission"
    folder.mkdir()
    shutil.copy(MISSIONS_DIR / "rover_mastcamz.toml", folder / "m.toml")
    (folder / "enc.onnx").write_bytes(b"not read by this check")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    argv = ["run", "--mission", "../mission/m.toml", "--frames", "f.png", "--out", str(tmp_path / "o")]
    assert main([*argv, "--set", "reconstruction.model=enc.onnx"]) == 2
    err = capsys.readouterr().err
    assert f"--set reconstruction.model=enc.onnx: no such file enc.onnx in the current folder {elsewhere}" in err
    assert "not beside the mission file" in err and f"{Path('../mission/enc.onnx')} exists: give that path" in err
    assert "m.toml: reconstruction model" not in err and not (tmp_path / "o").exists()
    assert main([*argv, "--set", "anomaly.fallback=nope.onnx"]) == 2
    err = capsys.readouterr().err
    assert "--set anomaly.fallback=nope.onnx: no such file nope.onnx in the current folder" in err
    assert "give that path" not in err  # nothing beside the mission file either

    def args(value: str) -> object:
        import argparse

        return argparse.Namespace(mission="../mission/m.toml", anomaly_model=None, recon_model=None, threads=None,
                                  frame_ms=None, set=[f"reconstruction.model={value}"])  # fmt: skip

    assert _mission_with_overrides(args("../mission/enc.onnx")).reconstruction.model == "../mission/enc.onnx"
    monkeypatch.chdir(folder)  # the same relative name, now in the current folder: taken as written
    assert _mission_with_overrides(args("enc.onnx")).reconstruction.model == "enc.onnx"
    with pytest.raises(MissionError, match=r"no such file /no/such\.onnx"):
        _mission_with_overrides(args("/no/such.onnx"))


# -- 5: the trainer's "best epoch" line, once ------------------------------------------------------------------------
def test_train_cae_says_best_epoch_once(
    moon: np.ndarray, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """``edgeae train cae`` logged "best epoch 1, val loss ..." and then printed "best epoch 1  val loss ...":
    the same line twice on the console."""
    pytest.importorskip("torch")
    import cv2

    from edgeae.cli import main

    data = tmp_path / "data"
    data.mkdir()
    for i, (y, x) in enumerate([(0, 0), (0, 256), (256, 0), (256, 256)]):
        cv2.imwrite(str(data / f"moon_{i}.png"), moon[y : y + 256, x : x + 256])
    argv = ["train", "cae", "--data", str(data), "--epochs", "1", "--crops", "16", "--val-crops", "8",
            "--widths", "4,4,4,4", "--seed", "1", "--threads", "1", "--no-progress",
            "--out", str(tmp_path / "r")]  # fmt: skip
    with caplog.at_level(logging.INFO):
        assert main(argv) == 0
    printed = capsys.readouterr()
    said = printed.out + printed.err + "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.INFO)
    assert said.count("best epoch") == 1, said
    assert "best epoch 1  val loss" in printed.out


# -- 4: without a threshold no patch is "flagged": the top k are sent by rank ----------------------------------------
def test_without_a_threshold_nothing_is_flagged() -> None:
    """``anomaly.flagged`` was 36 of 36 with no threshold: every scored patch counted as flagged."""
    from edgeae.firmware_sim.topk import TermsTopK, TopK

    rng = np.random.default_rng(0)
    s = rng.random(36)
    xs, ys = np.arange(36) % 6 * 64, np.arange(36) // 6 * 64
    raw = rng.integers(0, 255, (36, 1, 4, 4), dtype=np.uint8)
    for threshold, want in ((None, None), (0.5, int((s > 0.5).sum())), (2.0, 0)):
        top = TopK(4, threshold)
        top.offer_batch(s, xs, ys, raw)
        one = TopK(4, threshold)
        for i in range(36):
            one.offer(float(s[i]), int(xs[i]), int(ys[i]), raw[i].transpose(1, 2, 0))
        assert top.flagged == one.flagged == want and top.scored == 36
        assert len(top.ranked()) == (0 if threshold == 2.0 else 4)  # sent: the top 4 by rank, or those above it
    terms = TermsTopK(4, None, 36)
    terms.offer_batch(np.stack([s, s[::-1]], axis=1), xs, ys, raw)
    assert terms.flagged is None and len(terms.ranked()) == 4


# -- docs-by-execution audit: out-of-range pixels, another channel count, CAE options with a VAE ------------------
def test_score_array_refuses_0_255_data_and_another_channel_count() -> None:
    """0-255 data scored ~1e9 with no word; an RGB image into a grey scorer failed with an internal batch shape."""
    from edgeae.anomaly.score import make_scorer, score_array
    from edgeae.predictor import load_predictor

    sc = make_scorer(load_predictor("orbital-gray-vae-lite"))
    img = np.random.default_rng(0).random((128, 128, 1)).astype(np.float32)
    assert len(score_array(img, sc).score) == 4
    with pytest.raises(ValueError, match=r"pixels span \[.*\], but scores are defined on \[0, 1\]"):
        score_array(img * 300, sc)
    with pytest.raises(ValueError, match=r"the image has 3 channel\(s\), the model takes 1"):
        score_array(np.repeat(img, 3, axis=2), sc)


def test_cae_options_with_a_vae_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgeae.cli import main as edgeae_main
    from edgeae.imageio import write_image

    img = tmp_path / "a.png"
    write_image(img, np.random.default_rng(1).random((64, 64)).astype(np.float32))
    out = str(tmp_path / "o.csv")
    rc = edgeae_main(["score", str(img), "--model", "orbital-gray-vae-lite", "-o", out, "--cae-seed", "5"])
    assert rc == 2 and "--cae-seed set the CAE's masked input" in capsys.readouterr().err
    rc = edgeae_main(["score", str(img), "--model", "orbital-gray-vae-lite", "-o", out, "--group", "x"])
    assert rc == 2 and "--group sets the product context of --score context-knn only" in capsys.readouterr().err


def test_a_cae_runs_settings_record_the_effective_keep_and_seed(tmp_path: Path) -> None:
    """--cae-keep/--cae-seed default to None (to tell a given one apart): the CAE run's JSON wrote null (review r8)."""
    import json as _json

    from edgeae.cli import main as edgeae_main
    from edgeae.imageio import write_image

    img = tmp_path / "a.png"
    write_image(img, np.random.default_rng(2).random((128, 128)).astype(np.float32))
    out = tmp_path / "o.csv"
    assert edgeae_main(["score", str(img), "--model", "orbital-gray-gtcae", "-o", str(out), "--no-progress"]) == 0
    settings = _json.loads((tmp_path / "o.csv.json").read_text())
    flat = settings.get("settings", settings)
    assert (flat["cae_keep"], flat["cae_seed"]) == (0.5, 0)


def test_evaluate_refuses_cae_keep_without_a_cae_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgeae.cli import main as edgeae_main

    rc = edgeae_main(["evaluate", "--dataset", "all", "--cae-keep", "0.3", "--out", str(tmp_path / "ev")])
    assert rc == 2 and "give the CAE with --model" in capsys.readouterr().err


def test_bad_repeats_seed_and_loss_are_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """export.latency --repeats 0 failed every file; a negative export/bundle --seed and a NaN or negative gate
    --max-loss-db went through (docs-options fixer, session 31)."""
    from edgeae.export import board, latency

    from edgeae.cli import main as edgeae_main

    with pytest.raises(SystemExit) as e:
        latency.main([str(tmp_path), "--repeats", "0"])
    assert e.value.code == 2 and "--repeats must be at least 1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # argparse refuses it while parsing
        edgeae_main(["export", "rover-rgb-gtcae", "--out", str(tmp_path / "x"), "--seed", "-1"])
    assert e.value.code == 2 and "a seed is 0 to" in capsys.readouterr().err
    assert board.main(["bundle", "rover-rgb-gtcae", "--out", str(tmp_path / "b.npz"), "--seed", "-3"]) == 2
    assert "--seed must be 0 or more" in capsys.readouterr().err
    pytest.importorskip("torch")
    from edgeae.train import gate

    argv = ["rover-rgb-unet2-ground", "--data", "rover_rgb", "--out", str(tmp_path / "g.pt"), "--max-loss-db", "nan"]
    assert gate.main(argv) == 2
    assert "--max-loss-db must be a finite number" in capsys.readouterr().err


def test_scan_report_md_keeps_file_names_with_pipes_and_backticks_in_their_cells() -> None:
    """A name with `|` split a report.md table row into extra columns; one with a backtick ended its code span
    (audit s33 a4, item 11)."""
    from edgeae.scan.report_text import _code

    assert _code("a|b`c.png", cell=True) == "``a\\|b`c.png``"
    assert _code("`x`") == "`` `x` ``" and _code("plain.png") == "`plain.png`"
    row = f"| 1 | {_code('a|b`c.png', cell=True)} | 3 |"
    assert len(re.split(r"(?<!\\)\|", row)) == 5  # four cell borders: three cells


def test_demo_title_says_the_kept_fraction_unrounded() -> None:
    from edgeae.demo import keep_percent

    assert [keep_percent(k) for k in (0.1, 0.004, 0.105, 0.25, 0.05)] == ["10%", "0.4%", "10.5%", "25%", "5%"]
    assert [keep_percent(k) for k in (0.9999, 0.99999, 1e-7, 1.0)] == ["99.99%", ">99.99%", "<0.01%", "100%"]


def test_a_text_column_header_is_left_aligned_like_its_cells() -> None:
    from edgeae.report import table_html

    t = table_html([{"method": "cae", "what it is": "a learned fill", "PSNR": 31.5}])
    assert "<th class='l'>method</th><th class='l'>what it is</th><th>PSNR</th>" in t
    # a lost frame's "–" in the first row does not make a number column a text one (review s33 r1)
    t = table_html([{"link": "lossy", "PSNR (dB)": "–"}, {"link": "clean", "PSNR (dB)": "31.52"}])
    assert "<th class='l'>link</th><th>PSNR (dB)</th>" in t

"""Audit a2 of `edgeae evaluate` (session 33): empty splits, --normalise reaching only the default scorer, bounded
windows, labels that are outside the image, unknown or listed twice, label files and images checked before any
scoring, CAE summaries that say which baselines were not run, and -q."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeae.anomaly.eval_datasets import score_hirise, score_lroc, score_msl
from edgeae.anomaly.eval_methods import _methods, default_scorer, score_frame
from edgeae.anomaly.eval_report import acceptance, acceptance_markdown
from edgeae.anomaly.labels import read_craters, read_hirise_labels
from edgeae.anomaly.multiscale import MultiScale
from edgeae.anomaly.scorer import PatchScorer
from edgeae.cli import main
from edgeae.datasets import MSL_SURFACE_DIR, msl_surface_items


def _predict(x: np.ndarray) -> dict[str, np.ndarray]:
    """A stand-in VAE (numpy, deterministic): latents of patch statistics, a blurred reconstruction."""
    flat = x.reshape(len(x), -1).astype(np.float64)
    mu = np.stack([flat.mean(1), flat.std(1), flat.max(1), flat.min(1)], axis=1)
    x_hat = np.broadcast_to(x.mean(axis=(2, 3), keepdims=True), x.shape)
    return {"score": ((x - x_hat) ** 2).reshape(len(x), -1).sum(1) + (mu**2).sum(1), "x_hat": x_hat, "mu": mu}


@pytest.fixture()
def vae() -> PatchScorer:
    return PatchScorer(_predict, kind="vae", channels=1, keep_latents=True)


def _frames(moon: np.ndarray, vae: PatchScorer, n: int = 3) -> list[Any]:
    ms = default_scorer("lroc_nac_craters")
    out = []
    for i in range(n):
        pix = (moon[i * 100 : i * 100 + 160, 100:260].astype(np.float32) / 255.0)[..., None]
        out.append(score_frame(pix, np.ones(pix.shape[:2], bool), vae, ms, 64, 32, name=f"f{i}.png"))
    return out


# ------------------------------------------------------------------------------------------------ 1: empty splits
def test_an_empty_split_is_one_clear_error_not_an_index_error(tmp_path: Path, vae: PatchScorer) -> None:
    (tmp_path / "hirise_landmarks" / "images").mkdir(parents=True)
    labels = tmp_path / "hirise_landmarks" / "labels.txt"
    labels.write_text("")
    with pytest.raises(ValueError, match=r"no evaluable crops in .*labels\.txt"):
        score_hirise(tmp_path, vae)
    listing = tmp_path / MSL_SURFACE_DIR / "train-calibrated-shuffled.txt"
    listing.parent.mkdir(parents=True)
    for text in ("", "calibrated/0072MR0005610170103642E01_DRCL.JPG 8\n"):  # empty; a train sol only (72 % 4 = 0)
        listing.write_text(text)
        with pytest.raises(ValueError, match=r"no evaluable images in .*train-calibrated-shuffled\.txt"):
            score_msl(tmp_path, vae)
    with pytest.raises(ValueError, match="no evaluable images"):
        score_lroc(tmp_path, vae, files=[])
    with pytest.raises(ValueError, match="no evaluable frames"):
        _methods(vae, [], default_scorer("lroc_nac_craters"), 0)


def test_evaluate_of_an_empty_label_file_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("torch")
    (tmp_path / "d" / "hirise_landmarks" / "images").mkdir(parents=True)
    (tmp_path / "d" / "hirise_landmarks" / "labels.txt").write_text("")
    argv = ["evaluate", "--dataset", "hirise_landmarks", "--no-plots", "--no-progress", "--threads", "1"]
    assert main([*argv, "--data-root", str(tmp_path / "d"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no evaluable crops in" in err[0], err


# ------------------------------------------------------------------------------- 2: --normalise: the default only
def test_normalise_changes_the_default_scorer_and_no_other_column(moon: np.ndarray, vae: PatchScorer) -> None:
    frames = _frames(moon, vae)
    ms = default_scorer("lroc_nac_craters")
    ref = _methods(vae, frames, ms, 0, dataset="lroc_nac_craters")
    for norm in ("pooled", "none"):
        other = _methods(vae, frames, MultiScale(windows=ms.windows, normalise=norm), 0, dataset="lroc_nac_craters")
        assert list(other) == list(ref)
        changed = [k for k in ref if not np.array_equal(ref[k], other[k])]
        assert changed == ["default (multi-scale z)"], (norm, changed)
    # the MSL default is pooled: its candidates stay pooled under --normalise robust_z
    msl = _methods(vae, frames, default_scorer("msl_surface"), 0, dataset="msl_surface")
    msl_z = _methods(vae, frames, MultiScale(windows=ms.windows, normalise="robust_z"), 0, dataset="msl_surface")
    assert [k for k in msl if not np.array_equal(msl[k], msl_z[k])] == ["default (multi-scale z)"]
    assert not np.array_equal(msl["frame-z kNN (mu)"], ref["frame-z kNN (mu)"])  # pooled vs per frame: it differs


# ------------------------------------------------------------------------------------------------ 3: windows
def test_windows_are_bounded_and_a_window_larger_than_the_frames_is_said(
    moon: np.ndarray, vae: PatchScorer, caplog: pytest.LogCaptureFixture
) -> None:
    from edgeae.anomaly.eval_datasets import _phase
    from edgeae.anomaly.multiscale import MAX_WINDOW
    from edgeae.cli import evaluate as cli

    assert cli.MAX_WINDOW == MAX_WINDOW
    with pytest.raises(ValueError, match=f"4 to {MAX_WINDOW} px"):
        MultiScale(windows=(32, 50000))
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--dataset", "lroc_nac_craters", "--windows", "32,50000", "--out", "o"])
    assert exc.value.code == 2
    frames = _frames(moon, vae, n=2)  # 160x160 frames
    with caplog.at_level(logging.WARNING, logger="edgeae"):
        _phase(iter, "lroc_nac_craters", frames, MultiScale(windows=(32, 64)))
        assert not caplog.records
        _phase(iter, "lroc_nac_craters", frames, MultiScale(windows=(32, 200)))
    assert len(caplog.records) == 1 and "200 px window is larger than 2 of the 2 frames" in caplog.text


def test_after_the_bar_one_line_says_what_runs_next(
    moon: np.ndarray, vae: PatchScorer, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgeae.anomaly.eval_datasets import _phase

    frames = _frames(moon, vae, n=2)
    _phase(iter, "msl_surface", frames, MultiScale(windows=(32, 64)))  # no bar drawn: nothing to follow it
    assert capsys.readouterr().err == ""
    _phase(lambda it: it, "msl_surface", frames, MultiScale(windows=(32, 64)))  # a bar: the next phase is said
    assert capsys.readouterr().err == "msl_surface: 2 scored; ranking every method, then the tables and any plots\n"


# ------------------------------------------------------------------------ 4, 6: crater labels, checked up front
def _mosaic(tmp_path: Path, moon: np.ndarray, name: str, rows: list[str] | None) -> Path:
    from edgeae.imageio import write_image

    png = write_image(tmp_path / f"{name}.png", np.ascontiguousarray(moon[:160, :160]))
    if rows is not None:
        (tmp_path / f"{name}.txt").write_text("ID,X,Y,W,H,C_X,CY\n" + "".join(r + "\n" for r in rows))
    return png


def test_crater_rows_not_finite_are_refused_and_outside_the_image_counted(
    tmp_path: Path, moon: np.ndarray, vae: PatchScorer, caplog: pytest.LogCaptureFixture
) -> None:
    from edgeae.anomaly.labels import craters_outside

    f = tmp_path / "c.txt"
    f.write_text("ID,X,Y,W,H,C_X,CY\n0,10,10,8,8,14,14\n1,nan,nan,nan,nan,nan,nan\n")
    with pytest.raises(ValueError, match=r"c\.txt:3: .*finite"):
        read_craters(f)
    assert craters_outside(np.array([[14, 14, 8], [940, 940, 80], [-1, 5, 8], [159.5, 0, 8]]), (160, 160, 1)) == 2
    png = _mosaic(tmp_path, moon, "m", ["0,10,10,40,40,30,30", "9999,900,900,80,80,940,940"])
    with caplog.at_level(logging.WARNING, logger="edgeae"):
        scored = score_lroc(tmp_path, vae, files=[png])
    assert scored.info["craters"] == 2 and scored.info["craters_outside_image"] == {"m.png": 1}
    assert "m.txt: 1 of 2 crater centres lie outside the 160x160 px image" in caplog.text


def test_a_missing_label_file_or_image_fails_before_any_scoring(tmp_path: Path, moon: np.ndarray) -> None:
    calls: list[int] = []

    def counting(x: np.ndarray) -> dict[str, np.ndarray]:
        calls.append(len(x))
        return _predict(x)

    scorer = PatchScorer(counting, kind="vae", channels=1, keep_latents=True)
    files = [_mosaic(tmp_path, moon, "a", ["0,10,10,40,40,30,30"]), _mosaic(tmp_path, moon, "b", None)]
    with pytest.raises(FileNotFoundError, match=r"b\.txt does not exist"):
        score_lroc(tmp_path, scorer, files=files)
    assert calls == []
    (tmp_path / "hirise_landmarks" / "images").mkdir(parents=True)
    (tmp_path / "hirise_landmarks" / "labels.txt").write_text("ESP_000001_1000_RED-0001.jpg 1\n")
    with pytest.raises(FileNotFoundError, match=r"RED-0001\.jpg, listed in .*labels\.txt, does not exist"):
        score_hirise(tmp_path, scorer)
    listing = tmp_path / MSL_SURFACE_DIR / "train-calibrated-shuffled.txt"
    listing.parent.mkdir(parents=True)
    listing.write_text("calibrated/0069MR0004130000103477I01_DRCL.JPG 21\ncalibrated/0077ML0005780000102730I01.JPG 8\n")
    with pytest.raises(FileNotFoundError, match=r"0069MR.*listed in .*does not exist \(and 1 more of the 2"):
        score_msl(tmp_path, scorer)
    assert calls == []


# ------------------------------------------------------------------------------- 5: HiRISE and MSL label lines
def test_hirise_crops_listed_twice_are_refused_and_unknown_classes_counted(
    tmp_path: Path, moon: np.ndarray, vae: PatchScorer, caplog: pytest.LogCaptureFixture
) -> None:
    from edgeae.imageio import write_image

    f = tmp_path / "hirise_landmarks" / "labels.txt"
    (tmp_path / "hirise_landmarks" / "images").mkdir(parents=True)
    f.write_text("ESP_000001_1000_RED-0001.jpg 1\nESP_000001_1000_RED-0002.jpg 0\nESP_000001_1000_RED-0001.jpg 0\n")
    with pytest.raises(ValueError, match=r"labels\.txt:3: ESP_000001_1000_RED-0001\.jpg is listed again .*line 1"):
        read_hirise_labels(f)
    names = [f"ESP_000001_1000_RED-{i:04d}.jpg" for i in range(4)]
    for n in names:
        write_image(tmp_path / "hirise_landmarks" / "images" / n, np.ascontiguousarray(moon[:100, :100]))
    f.write_text("".join(f"{n} {c}\n" for n, c in zip(names, (1, 0, 5, -1), strict=True)))
    with caplog.at_level(logging.WARNING, logger="edgeae"):
        scored = score_hirise(tmp_path, vae)
    assert scored.info["crops"] == 2 and scored.info["classes_not_evaluated"] == {"5": 1, "-1": 1}
    assert "2 crops of classes -1, 5 (not one of 0, 1, 2, 3, 4, 6) are not evaluated" in caplog.text


@pytest.mark.parametrize(
    ("line", "what"),
    [
        ("calibrated/0069MR0004130000103477I01_DRCL.JPG", "expected '<image> <class>'"),
        ("calibrated/0069MR0004130000103477I01_DRCL.JPG 8 extra", "expected '<image> <class>'"),
        ("calibrated/README.txt eight", r"expected .*\(a 4-digit sol, a class number\)"),
    ],
)
def test_an_msl_listing_line_that_is_not_image_and_class_is_refused_with_its_line(
    tmp_path: Path, line: str, what: str
) -> None:
    listing = tmp_path / MSL_SURFACE_DIR / "train-calibrated-shuffled.txt"
    listing.parent.mkdir(parents=True)
    listing.write_text(f"calibrated/0077ML0005780000102730I01_DRCL.JPG 15\n\n{line}\n")
    with pytest.raises(ValueError, match=rf"train-calibrated-shuffled\.txt:3: {what}"):
        msl_surface_items(None, tmp_path)


# ---------------------------------------------------------------------------- 8: baselines a CAE cannot run
def _row(method: str, ap: float) -> dict[str, Any]:
    return {"feature": "craters >= 32 px", "method": method, "ap": ap, "auc": 0.7, "positives": 40, "negatives": 400,
            "improvement": ap / 0.1}  # fmt: skip


def test_a_summary_says_which_baselines_were_not_run_and_never_reads_as_all_met() -> None:
    from edgeae.anomaly.classical import METHODS as CLASSICAL_KNN  # need no latents: a CAE run has them (session 38)

    rows = [_row("default (multi-scale z)", 0.5), _row("cae masked error", 0.3), _row("patch std", 0.2),
            _row("RX (patch features)", 0.2)] + [_row(m, 0.2) for m in CLASSICAL_KNN]  # fmt: skip
    checks = acceptance("lroc_nac_craters", rows)
    assert [c["check"] for c in checks] == [
        "AP vs patch std", "AP vs RX (patch features)", *(f"AP vs {m}" for m in CLASSICAL_KNN),
        "AP vs isolation forest (mu), kNN (mu)",
    ]  # fmt: skip
    assert (
        checks[-1]["passed"] is None and checks[-1]["detail"] == "not run: they rank VAE latents (mu); a CAE has none"
    )
    md = acceptance_markdown(checks)
    assert "| not evaluated |" in md and "checked only against the others" in md
    # a VAE run with every baseline: no such row, the summary as before
    full = [_row("vae a(x)", 0.3) if r["method"] == "cae masked error" else r for r in rows]
    full += [_row("isolation forest (mu)", 0.1), _row("kNN (mu)", 0.1)]
    assert [c["check"] for c in acceptance("lroc_nac_craters", full)][-1] == "AP vs kNN (mu)"
    assert "not run" not in acceptance_markdown(acceptance("lroc_nac_craters", full))


# ------------------------------------------------------------------------------------------------ 9: -q
def test_quiet_prints_one_line_per_dataset_and_the_verdicts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgeae.anomaly import evaluate as library
    from edgeae.cli import evaluate as cli

    def fake(dataset: str, scorer: Any, root: Path, out: Path, **kw: Any) -> dict[str, Any]:
        out.mkdir(parents=True, exist_ok=True)
        (out / "table.md").write_text("### the table\n")
        check = {"dataset": dataset, "feature": "f", "check": "ROC AUC", "value": 0.9, "detail": "0.900",
                 "target": ">= 0.85", "passed": True, "indicative": False, "positives": 20,
                 "negatives": 20}  # fmt: skip
        info = {"sampled": False, "settings": {"model_kind": "vae", "windows": [32], "normalise": "pooled",
                                               "combine": "mean"}}  # fmt: skip
        return {"rows": [], "acceptance": [check], "info": info}

    class Loaded:
        channels = 3
        kind = "vae"

    monkeypatch.setattr(library, "evaluate", fake)
    monkeypatch.setattr("edgeae.predictor.load_predictor", lambda *a, **k: type("P", (), {"metadata": Loaded})())
    monkeypatch.setattr("edgeae.anomaly.score.make_scorer", lambda *a, **k: Loaded())
    argv = ["evaluate", "--dataset", "msl_surface", "--out", str(tmp_path / "o"), "--data-root", str(tmp_path)]
    assert main([*argv, "-q"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out == [f"msl_surface: 0 table rows (score method × feature) -> {tmp_path / 'o' / 'msl_surface'}",
                   f"targets: 1 yes -> {tmp_path / 'o' / 'summary.md'}"]  # fmt: skip
    assert main(argv) == 0  # the default: every table and the summary, as before
    assert "### the table" in capsys.readouterr().out
    assert cli._verdict_line([], tmp_path).startswith("targets: no target checked")

"""The user audit of `edgeae score` and `edgeae evaluate`: outputs never overwrite inputs, the CSV says what its score
is (settings JSON beside it), maps and plots explain themselves, and summary.md gives no verdict a sample cannot
support."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeae.anomaly.evaluate import acceptance, acceptance_markdown
from edgeae.anomaly.score import PatchScores, read_csv
from edgeae.cli import main

FEAT = "hardware and targets"


@pytest.fixture()
def images(tmp_path: Path, moon: np.ndarray) -> dict[str, Path]:
    """Small real images: two grey crops of the moon (one in a subfolder, same name) and a colour one."""
    from edgeae.imageio import write_image

    grey = np.ascontiguousarray(moon[:96, :96])
    return {
        "grey": write_image(tmp_path / "moon.png", grey),
        "twin": write_image(tmp_path / "d2" / "moon.png", np.ascontiguousarray(moon[96:192, :96])),
        "rgb": write_image(tmp_path / "rgb.png", np.ascontiguousarray(np.stack([grey] * 3, axis=-1))),
    }


@pytest.fixture()
def cae(tmp_path: Path) -> Path:
    pytest.importorskip("torch")
    from test_scan_support import tiny_cae

    return tiny_cae(tmp_path / "tiny.pt")


# ------------------------------------------------------------------------------------------------ edgeae score
def test_score_refuses_outputs_that_would_overwrite_an_input_or_each_other(
    tmp_path: Path, images: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Checked before the model is even loaded (a model that does not exist is never reached): -o that is not a
    .csv, an output that resolves to an input (also through a link or another spelling), a map that is the CSV's
    settings file."""
    grey = images["grey"]
    before = grey.read_bytes()
    link = tmp_path / "link.png"
    link.symlink_to(grey)
    cases = [
        ([str(grey), "-o", str(grey)], "-o"),  # the CSV over the image itself
        ([str(grey), "-o", str(tmp_path / "out.png"), "--map", str(tmp_path / "out.png")], "-o"),  # an image name
        ([str(grey), "-o", str(tmp_path / "s.csv"), "--map", str(grey)], "is the input image"),  # one image's map
        ([str(link), "-o", str(tmp_path / "s.csv"), "--map", str(tmp_path / "." / "moon.png")], "is the input image"),
        ([str(tmp_path / "s.csv"), "-o", str(tmp_path / "s.csv")], "is the input image"),
    ]
    (tmp_path / "s.csv").write_text("file,x,y,score,valid_frac\n")
    # two images: the map of one (m_moon.png) is the other image
    other = tmp_path / "m_moon.png"
    other.write_bytes(before)
    cases.append(([str(grey), str(other), "-o", str(tmp_path / "x.csv"), "--map", str(tmp_path / "m.png")], "m_moon"))
    for argv, match in cases:
        assert main(["score", *argv, "--model", "no-such-model", "--no-progress"]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and match in err and "no-such-model" not in err, err
    assert grey.read_bytes() == before and other.read_bytes() == before
    assert not (tmp_path / "x.csv").exists() and not (tmp_path / "out.png").exists()
    assert "a .csv file" in _score_err(capsys, [str(grey), "-o", str(tmp_path / "scores.tif")])


def _score_err(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(["score", *argv, "--model", "no-such-model", "--no-progress"]) == 2
    return capsys.readouterr().err


def test_score_writes_its_settings_beside_the_csv_and_names_maps_by_the_list_given(
    tmp_path: Path, images: dict[str, Path], cae: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """scores.csv.json records the model, the score kind, patch, stride, --min-valid, --views and the version (the
    CSV stays plain rows read_csv reads); a skipped image does not rename the maps of the others; two images of
    the same name are listed by the path given."""
    bad = tmp_path / "bad.png"
    bad.write_text("x\n")
    out = tmp_path / "s.csv"
    argv = [str(images["grey"]), str(bad), str(images["twin"]), "--model", str(cae), "--patch", "32", "-o", str(out)]
    assert main(["score", *argv, "--map", str(tmp_path / "m.png"), "--no-progress", "--threads", "1"]) == 1
    printed = capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.glob("m_*.png")) == ["m_0_moon.png", "m_2_moon.png"]
    top = [line.split()[1] for line in printed.splitlines() if line.startswith("  ")]
    assert set(top) == {str(images["grey"]), str(images["twin"])}  # not "moon.png" twice
    assert len(read_csv(out)) == 2 * 9 and out.read_text().startswith("file,x,y,score,valid_frac\n")
    settings = json.loads((tmp_path / "s.csv.json").read_text())
    assert settings["csv"] == "s.csv" and settings["model"] == str(cae) and settings["model_kind"] == "cae"
    assert (settings["score"], settings["patch"], settings["stride"], settings["min_valid"]) == ("cae", 32, 32, 1.0)
    assert settings["views"] == 1 and settings["edgeae_version"] and settings["skipped"] == [str(bad)]
    assert settings["patches"] == 18 and "masked" in settings["score_meaning"]
    # one good image and a bad one: the map is the documented OUT_<stem>.png, not OUT.png
    argv = [str(images["grey"]), str(bad), "--model", str(cae), "--patch", "32", "-o", str(out)]
    assert main(["score", *argv, "--map", str(tmp_path / "one.png"), "--no-progress", "--threads", "1"]) == 1
    assert (tmp_path / "one_moon.png").is_file() and not (tmp_path / "one.png").exists()


def test_score_warns_of_images_whose_channels_differ_from_the_model(
    images: dict[str, Path], cae: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A grey model given a colour image scores it as grey: said once, with the image named (as edgeae scan does)."""
    argv = [str(images["grey"]), str(images["rgb"]), "--model", str(cae), "--patch", "32"]
    with caplog.at_level("WARNING", logger="edgeae.cli.score"):
        assert main(["score", *argv, "-o", str(tmp_path / "s.csv"), "--no-progress", "--threads", "1"]) == 0
    warned = [r.getMessage() for r in caplog.records if "channels" in r.getMessage()]
    assert len(warned) == 1 and "1 of 2 images is colour" in warned[0] and "rgb.png" in warned[0], warned
    assert "moon.png" not in warned[0].split(":")[-1]


def test_score_refuses_a_negative_cae_seed_while_parsing(images: dict[str, Path], tmp_path: Path) -> None:
    argv = ["score", str(images["grey"]), "--model", "no-such-model", "-o", str(tmp_path / "s.csv")]
    with pytest.raises(SystemExit) as exc:  # argparse, before the model is looked up
        main([*argv, "--cae-seed", "-1"])
    assert exc.value.code == 2


def test_score_keeps_the_map_columns_for_a_map_projected_product_with_no_patch(formats: Path, tmp_path: Path) -> None:
    """A georeferenced product smaller than a patch has no row, but its CSV keeps map_x,map_y,lon,lat."""
    pytest.importorskip("rasterio")
    pytest.importorskip("torch")
    from test_scan_support import tiny_cae

    product = formats / "isis3" / "Ares4_Marth_Crater_3557E_126N_ngate_03_lowres.cub"
    out = tmp_path / "s.csv"
    argv = ["score", str(product), "--model", str(tiny_cae(tmp_path / "t.pt")), "--patch", "32", "-o", str(out)]
    assert main([*argv, "--no-progress", "--threads", "1"]) == 0
    assert out.read_text() == "file,x,y,score,valid_frac,map_x,map_y,lon,lat\n"
    assert read_csv(out) == []


# ------------------------------------------------------------------------------------------------ plots
def _figure(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Keep the figure a plot function saves, to look at what it draws."""
    from edgeae.anomaly import plots

    kept: dict[str, Any] = {}

    def save(fig: Any, path: Any) -> Path:
        kept["fig"] = fig
        fig.canvas.draw()
        return Path(path)

    monkeypatch.setattr(plots, "_save", save)
    return kept


def _texts(fig: Any) -> list[str]:
    return [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text")) if t.get_text()]


def test_score_map_says_what_the_score_is_what_white_is_and_when_nothing_was_scored(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from edgeae.anomaly.plots import save_score_map

    kept = _figure(monkeypatch)
    r = PatchScores("f.png", np.array([0, 32]), np.array([0, 0]), np.array([1.0, 2.0]), np.ones(2), 32, (64, 96))
    save_score_map(tmp_path / "m.png", r, title="f.png: terms-max", score_label="terms-max score")
    texts = _texts(kept["fig"])
    assert "terms-max score" in texts and "f.png: terms-max" in texts
    assert any("white: not scored" in t for t in texts)  # the right third has no patch
    assert not any(t == "anomaly score" for t in texts)
    empty = PatchScores("e.png", np.zeros(0, int), np.zeros(0, int), np.zeros(0), np.zeros(0), 32, (64, 64))
    save_score_map(tmp_path / "e.png", empty, score_label="a(x) score")
    fig = kept["fig"]
    assert "no patch scored" in _texts(fig) and len(fig.axes) == 1  # no colour bar of a made-up range


def test_pr_curves_give_every_method_its_own_style_and_keep_the_legend_off_the_curves(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from edgeae.anomaly.plots import curve_styles, pr_curves

    styles = curve_styles(18)
    assert len({str(c) for c, _ in styles}) == 18  # 18 methods, 18 colours (the 10-colour cycle repeated blue)
    assert len({(str(c), ls) for c, ls in curve_styles(40)}) == 40
    kept = _figure(monkeypatch)
    curves = {f"m{i}": (np.array([1.0, 0.5]), np.array([0.5, 1.0]), 0.7) for i in range(18)}
    pr_curves(tmp_path / "pr.png", curves, 0.3, "t")
    fig = kept["fig"]
    ax = fig.axes[0]
    lines = [ln for ln in ax.get_lines() if ln.get_label().startswith("m")]
    assert len({(str(ln.get_color()), ln.get_linestyle()) for ln in lines}) == 18
    legend, frame = ax.get_legend().get_window_extent(), ax.get_window_extent()
    assert legend.x0 >= frame.x1  # beside the axes, not over the curves


def test_gallery_labels_two_decimals_and_says_what_the_colours_mean(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from edgeae.anomaly.plots import gallery

    kept = _figure(monkeypatch)
    img = np.zeros((64, 64), np.float32)
    gallery(tmp_path / "g.png", [("top", [(img, 0, 0, 3.14159, True), (img, 16, 16, 2.71828, False)])], patch=32)
    texts = _texts(kept["fig"])
    assert "3.14" in texts and "2.72" in texts and "3" not in texts
    assert any("red" in t and "yellow" in t for t in texts)


# ------------------------------------------------------------------------------------------------ edgeae evaluate
def _row(method: str, ap: float | None, auc: float | None, pos: int, neg: int) -> dict[str, Any]:
    imp = None if ap is None else ap / 0.5
    return {"feature": FEAT, "method": method, "ap": ap, "improvement": imp, "auc": auc, "positives": pos,
            "negatives": neg}  # fmt: skip


def test_targets_are_indicative_on_a_sample_or_few_positives_and_unchanged_on_the_whole_split() -> None:
    small = [_row("default (multi-scale z)", 1.0, 1.0, 2, 1)]
    (c,) = acceptance("msl_surface", small, sampled=True)
    assert c["passed"] and c["indicative"]
    md = acceptance_markdown([c])
    assert "indicative (n=2 positives / 1 negative)" in md and "| yes |" not in md and "MISSED" not in md
    (c,) = acceptance("msl_surface", small, sampled=False)  # the whole split, but 2 positives: still no verdict
    assert c["indicative"] and "indicative" in acceptance_markdown([c])
    whole = [_row("default (multi-scale z)", 0.9, 0.90, 40, 200)]
    (c,) = acceptance("msl_surface", whole)
    assert not c["indicative"] and "| >= 0.85 | yes |" in acceptance_markdown([c])
    whole[0]["auc"] = 0.5
    assert "**MISSED**" in acceptance_markdown(acceptance("msl_surface", whole))


def test_a_target_that_cannot_be_computed_has_a_not_evaluated_row() -> None:
    rows = [_row(m, None, None, 0, 3) for m in ("default (multi-scale z)", "patch std")]
    rows = [{**r, "feature": "class 1 crater"} for r in rows]
    (c,) = acceptance("hirise_landmarks", rows, sampled=True)
    assert c["passed"] is None and c["detail"] == "not evaluated: 0 positives in this sample"
    assert "| n/a |" in acceptance_markdown([c]) and "| not evaluated |" in acceptance_markdown([c])


def test_evaluate_help_minimum_matches_the_library() -> None:
    from edgeae.anomaly import evaluate as library
    from edgeae.cli import evaluate as cli

    assert cli.MIN_COUNT == library.MIN_COUNT


@pytest.mark.parametrize("seed", ["-1", str(2**32)])
def test_evaluate_refuses_a_seed_scikit_learn_cannot_take_while_parsing(seed: str, tmp_path: Path) -> None:
    argv = ["evaluate", "--dataset", "msl_surface", "--model", "no-such-model", "--data-root", str(tmp_path / "no")]
    with pytest.raises(SystemExit) as exc:  # argparse, not scikit-learn after the scoring
        main([*argv, "--seed", seed, "--out", str(tmp_path)])
    assert exc.value.code == 2


def test_evaluate_checks_out_before_loading_a_model_or_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    afile = tmp_path / "moon.png"
    afile.write_bytes(b"not a folder")
    argv = ["evaluate", "--dataset", "msl_surface", "--model", "no-such-model", "--data-root", str(tmp_path / "none")]
    assert main([*argv, "--out", str(afile)]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "no-such-model" not in err and len(err.strip().splitlines()) == 1
    assert main([*argv, "--out", str(afile / "sub")]) == 2
    assert "--out" in capsys.readouterr().err


def test_evaluate_rerun_replaces_the_run_before_and_always_writes_summary_and_settings(
    data_root: Path, tmp_path: Path
) -> None:
    """A --limit 3 HiRISE sample (seed 0: no crater crop) into a folder of an earlier run: the earlier plots and
    summary are gone, the user's own files stay (a score map included), summary.md says the crater targets were
    not evaluated, and the run settings and the files written are recorded."""
    pytest.importorskip("torch")
    out = tmp_path / "ev"
    ds = out / "hirise_landmarks"
    ds.mkdir(parents=True)
    for name in ("pr_class_1_crater.png", "tsne_top.png", "notes.txt", "map_mine.png"):
        (ds / name).write_text("earlier run")
    # the results.json of a run from before the outputs were listed: its plots are named by its features
    (ds / "results.json").write_text(json.dumps({"rows": [{"feature": "class 1 crater"}], "info": {}}))
    (out / "summary.md").write_text("| hirise_landmarks | ... | yes |\n")
    argv = ["evaluate", "--dataset", "hirise_landmarks", "--limit", "3", "--no-plots", "--out", str(out)]
    assert main([*argv, "--threads", "1", "--no-progress", "--data-root", str(data_root)]) == 0
    assert sorted(p.name for p in ds.iterdir()) == ["map_mine.png", "notes.txt", "results.json", "table.md"]
    assert json.loads((ds / "results.json").read_text())["outputs"] == ["table.md", "results.json"]
    summary = (out / "summary.md").read_text()
    assert "not evaluated: 0 positives in this sample" in summary and "| yes |" not in summary
    assert "class 1 crater 0 positives / 3 negatives" in summary and "--views 1, --seed 0" in summary
    settings = json.loads((ds / "results.json").read_text())["info"]["settings"]
    assert settings["views"] == 1 and settings["seed"] == 0 and settings["limit"] == 3
    assert settings["windows"] == [32, 64] and settings["normalise"] == "robust_z" and settings["cae_keep"] is None
    assert settings["model"] == "orbital-gray-vae" and settings["model_kind"] == "vae"
    assert settings["fill_nodata"] is False and "no-data filled" not in summary


def test_evaluate_that_stops_leaves_no_summary_of_the_run_before(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the scoring starts, the summary.md of an earlier run into the same folder is gone: a run that stops
    (an error, Ctrl-C) leaves no verdicts beside tables it has replaced."""
    pytest.importorskip("torch")
    from edgeae.anomaly import evaluate as library

    def stop(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise ValueError("stopped")

    monkeypatch.setattr(library, "evaluate", stop)
    (tmp_path / "summary.md").write_text("| yes |\n")
    argv = ["evaluate", "--dataset", "hirise_landmarks", "--out", str(tmp_path), "--data-root", str(data_root)]
    assert main([*argv, "--threads", "1", "--no-progress"]) == 2
    assert not (tmp_path / "summary.md").exists()


def test_evaluate_removes_only_the_files_the_run_before_recorded(tmp_path: Path) -> None:
    """clear_outputs used to delete every pr_*, kde_* and map_*.png in OUT/DATASET: also the map_<stem>.png that
    `edgeae score --map OUT/DATASET/map.png` writes there."""
    from edgeae.anomaly.evaluate import clear_outputs

    ds = tmp_path / "lroc_nac_craters"
    ds.mkdir()
    recorded = ["table.md", "results.json", "pr_any_crater.png", "kde_any_crater.png", "map_M1.png"]
    mine = ["map_M2.png", "pr_mine.png", "kde_mine.png", "notes.txt"]
    for name in [*recorded, "gallery_top16_vs_random16.png", "tsne_top.png", *mine]:
        (ds / name).write_text("x")
    (ds / "results.json").write_text(json.dumps({"rows": [], "outputs": recorded}))
    gone = clear_outputs(ds)
    assert sorted(p.name for p in gone) == sorted([*recorded, "gallery_top16_vs_random16.png", "tsne_top.png"])
    assert sorted(p.name for p in ds.iterdir()) == sorted(mine)
    # a results.json from before the list: the plots its features and first three files would have had
    rows = [{"feature": "craters >= 32 px"}, {"feature": "any crater"}]
    (ds / "results.json").write_text(json.dumps({"rows": rows, "info": {"files": ["M1.png", "M3.png"]}}))
    for name in ("pr_craters_ge_32_px.png", "kde_any_crater.png", "map_M1.png", "map_M3.png"):
        (ds / name).write_text("x")
    assert sorted(p.name for p in clear_outputs(ds)) == [
        "kde_any_crater.png", "map_M1.png", "map_M3.png", "pr_craters_ge_32_px.png", "results.json",
    ]  # fmt: skip
    assert sorted(p.name for p in ds.iterdir()) == sorted(mine)
    # a results.json that lists other files (edited, damaged): only names evaluate could have written, here
    outside = tmp_path / "map_out.png"
    outside.write_text("x")
    listed = ["notes.txt", "../map_out.png", str(outside), "pr_mine.png/..", "."]
    (ds / "results.json").write_text(json.dumps({"outputs": listed}))
    assert [p.name for p in clear_outputs(ds)] == ["results.json"]
    assert outside.is_file() and sorted(p.name for p in ds.iterdir()) == sorted(mine)
    (ds / "results.json").write_text("{not json")
    assert [p.name for p in clear_outputs(ds)] == ["results.json"]


def test_evaluate_records_its_plots_and_the_next_run_removes_those_only(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    from edgeae.anomaly import evaluate as library

    made: list[str] = ["pr_class_1_crater.png", "map_crop.png"]

    def plots(scored: Any, out: Path, dataset: str, seed: int = 0) -> list[Path]:
        for name in made:
            (out / name).write_text("plot")
        return [out / name for name in made]

    monkeypatch.setattr(library, "make_plots", plots)
    out = tmp_path / "ev"
    argv = ["evaluate", "--dataset", "hirise_landmarks", "--limit", "3", "--out", str(out), "--threads", "1"]
    argv += ["--no-progress", "--data-root", str(data_root)]
    assert main(argv) == 0
    ds = out / "hirise_landmarks"
    doc = json.loads((ds / "results.json").read_text())
    assert doc["outputs"] == ["table.md", "results.json", "pr_class_1_crater.png", "map_crop.png"]
    assert [Path(p).name for p in doc["plots"]] == made  # the plots' paths reach the file (they were set after it)
    (ds / "map_moon.png").write_text("edgeae score --map OUT/hirise_landmarks/map.png")
    made.clear()
    assert main(argv) == 0
    assert sorted(p.name for p in ds.iterdir()) == ["map_moon.png", "results.json", "table.md"]

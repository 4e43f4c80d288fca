"""Session 46: what a new user tripped on (an audit from a clean clone), each checked here."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from edgeae.cli import main


def _mosaic(tmp_path: Path) -> Path:
    """A grey PNG with 2x2 repeating gains: what an undemosaiced colour-filter frame looks like."""
    from edgeae.imageio import write_image

    y, x = np.mgrid[0:96, 0:128]
    g = 60 + 40 * np.sin(x / 9) + 30 * np.cos(y / 7)
    m = (g * np.tile(np.array([[1.6, 0.9], [0.9, 0.5]]), (48, 64))).clip(0, 255).astype(np.uint8)
    return write_image(tmp_path / "mosaic.png", m[:, :, None])


def test_downlink_simulate_compare_warns_of_a_mosaic_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """--compare scored its rows over the valid pixels by reading the image a second time, which warned a second time;
    the mask now comes from the samples already read (the file decoded once)."""
    img = _mosaic(tmp_path)
    argv = ["downlink", "simulate", "--image", str(img), "--out", str(tmp_path / "rx.bin"), "--keep", "0.2"]
    with caplog.at_level(logging.WARNING, logger="edgeae"):
        assert main([*argv, "--compare", "jpeg", "--fill", "linear", "--no-progress"]) == 0
    assert caplog.text.count("undemosaiced colour-filter mosaic") == 1
    assert "jpeg" in capsys.readouterr().out


def test_archive_listing_hides_the_readers_log_lines(data_root: Path) -> None:
    """``python -m edgeae.archive`` (docs/archive.md step 1) printed tifffile's own line about a DTM's GDAL_NODATA tag
    before its JSON; third-party log lines now show with -v only, as in every edgeae command. Run as a user runs it
    (a process of its own: pytest's log capture would hide the line either way)."""
    import subprocess
    import sys

    dtm = data_root / "formats" / "geotiff" / "DTEEC_017825_1760_018458_1760_A01.tif"
    if not dtm.is_file():
        pytest.skip(f"{dtm} not in the data folder")
    run = [sys.executable, "-m", "edgeae.archive"]
    quiet = subprocess.run([*run, str(dtm)], capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 0, quiet.stderr
    assert '"driver": "GTiff"' in quiet.stdout and "tifffile" not in quiet.stderr
    loud = subprocess.run([*run, "-v", str(dtm)], capture_output=True, text=True, timeout=120)
    assert loud.returncode == 0 and "GDAL_NODATA" in loud.stderr  # -v shows it


def test_ground_decode_reuses_a_folder_whose_session_assembled_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A decode of the wrong file (no packet in it) exits 1 and leaves a stream.json; rerunning into the same folder
    was refused until the folder was moved away. Now reused; a folder with a real session is still refused."""
    junk = tmp_path / "notes.txt"
    junk.write_bytes(b"not packets " * 100)
    out = tmp_path / "g"
    assert main(["ground", "decode", str(junk), "--out", str(out)]) == 1
    assert (out / "stream.json").is_file()
    assert main(["ground", "decode", str(junk), "--out", str(out)]) == 1  # the same failure, not "already holds"
    assert "already holds" not in capsys.readouterr().err
    (out / "frame_0.png").write_bytes(b"x")  # something a session made: kept, so refused
    assert main(["ground", "decode", str(junk), "--out", str(out)]) == 2
    assert "already holds a ground session" in capsys.readouterr().err


def test_reconstruct_names_what_a_vae_cannot_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgeae.imageio import write_image

    img = write_image(tmp_path / "a.png", np.full((64, 64, 1), 90, np.uint8))
    assert main(["reconstruct", str(img), "--model", "orbital-gray-vae", "-o", str(tmp_path / "r.png")]) == 2
    err = capsys.readouterr().err
    assert "is a 'vae' model, not a 'cae': it cannot fill missing pixels; name a CAE" in err


def test_downlink_simulate_refuses_a_picture_name_for_the_packet_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgeae.imageio import write_image

    img = write_image(tmp_path / "a.png", np.full((64, 64, 1), 90, np.uint8))
    assert main(["downlink", "simulate", "--image", str(img), "--out", str(tmp_path / "rx.PNG")]) == 2
    assert "this is the packet file" in capsys.readouterr().err and not (tmp_path / "rx.PNG").exists()


def test_scan_says_a_missing_archive_does_not_exist(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scan", str(tmp_path / "nowhere"), "--out", str(tmp_path / "s")]) == 2
    assert "'" + str(tmp_path / "nowhere") + "' does not exist" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "dest", "want"),
    [
        (["ground", "decode", "p.bin", "--out", "g", "--model", "m", "--adapt"], "adapt", 100),  # as reconstruct
        (["ground", "decode", "p.bin", "--out", "g"], "adapt", 0),
        (["score", "a.png", "--out", "s.csv"], "output", "s.csv"),
        (["score", "a.png", "-o", "s.csv", "--batch-size", "64"], "batch", 64),
        (["reconstruct", "a.png", "--out", "r.png", "--batch-size", "4"], "batch", 4),
        (["evaluate", "--dataset", "lroc_nac_craters", "--out", "e", "--batch-size", "32"], "batch", 32),
        (["scan", "arch", "-o", "s"], "out", "s"),
        (["demo", "--data-root", "d"], "data", Path("d")),
        (["export", "orbital-gray-vae", "--out", "x", "--data-root", "d"], "data", "d"),
    ],
)
def test_option_names_shared_between_commands(argv: list[str], dest: str, want: object) -> None:
    """The same option under the same name in every command (an audit found --data vs --data-root, -o/--output vs
    --out, --batch vs --batch-size, and --adapt taking an optional number in reconstruct but not in ground decode):
    the other names are accepted as aliases."""
    from edgeae.cli import build_parser

    args = build_parser().parse_args(argv)
    got = getattr(args, dest)
    assert (str(got) if isinstance(want, str) else got) == want
    from edgeae.adapt import AdaptConfig

    assert AdaptConfig().steps == 100


def test_demo_says_the_cae_alone_where_the_cross_checked_cae_is_on_the_page() -> None:
    """The audit's 256-px crop: "the best rebuild is cae (m) cross-checked with linear ... 0.43 dB ahead of blend",
    then "The CAE loses to the best classical method (blend ...)": the second line is of the CAE without the
    cross-check, and now says so."""
    from edgeae.demo.conclusion import conclusion_lines
    from edgeae.demo.context import CROSS, DemoConfig, DemoContext
    from edgeae.reconstruct import Reconstruction

    def r(method: str, psnr: float) -> Reconstruction:
        return Reconstruction(method, np.zeros((2, 2, 1), np.float32), 1.0, {"psnr": psnr, "ssim": 0.9, "mae": 0.01})

    ctx = DemoContext(DemoConfig(cross_check="linear"), model="m")
    ctx.results = [r("cae", 29.91), r(CROSS, 30.43), r("blend", 30.00)]
    ctx.extra["cross_check_report"] = {"alpha_mean": 0.5, "cae_share": 0.5}
    lines = conclusion_lines(ctx)
    assert lines[0].startswith("From 10% of the pixels, the best rebuild is cae (m) cross-checked with linear at 30.43")
    assert lines[1].startswith("The CAE alone loses to the best classical method (blend, 30.00 dB) by 0.09 dB")
    ctx.results = [r("cae", 29.91), r("blend", 30.00)]  # no other CAE on the page: plain "The CAE"
    assert conclusion_lines(ctx)[1].startswith("The CAE loses to the best classical method")


def test_ground_demosaics_a_raw_original_as_the_flight_telemetry_says(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The rover mission demosaics its colour-filter frames on board; its telemetry now says so (``demosaiced``),
    and ``ground decode --original RAW`` demosaics the raw original the same way (the audit: 15.0 dB without
    --bayer, 31.8 with it, and the hint to add it came after the results). --bayer given still wins."""
    import json

    from edgeae.firmware_sim.cli import main as fs_main

    from edgeae.imageio import write_image

    y, x = np.mgrid[0:384, 0:512]
    g = 90 + 50 * np.sin(x / 13) + 40 * np.cos(y / 11) + 20 * np.sin((x + y) / 5)
    m = (g * np.tile(np.array([[1.5, 0.9], [0.9, 0.55]]), (192, 256))).clip(0, 255).astype(np.uint8)
    raw = write_image(tmp_path / "raw.png", np.repeat(m[:, :, None], 3, axis=2))  # R = G = B: a stored mosaic
    fw = tmp_path / "fw"
    assert fs_main(["run", "--mission", "rover_mastcamz", "--frames", str(raw), "--out", str(fw)]) == 0
    tel = [json.loads(line) for line in (fw / "telemetry.jsonl").read_text().splitlines()]
    assert any(r.get("camera", {}).get("demosaiced") for r in tel)
    capsys.readouterr()
    psnr = {}
    for name, extra in (("auto", []), ("given", ["--bayer", "RGGB"])):
        out = tmp_path / name
        assert main(["ground", "decode", str(fw / "downlink"), "--out", str(out), "--original", str(raw), *extra]) == 0
        rep = json.loads((out / "stream.json").read_text())["products"]
        assert rep["telemetry_0"]["telemetry"]["demosaiced"] == "RGGB"
        psnr[name] = rep["frame_0"]["psnr"]
        assert ("original_demosaiced" in rep["frame_0"]) == (name == "auto")
    assert psnr["auto"] == psnr["given"] > 25
    assert "the original demosaiced RGGB as on board" in capsys.readouterr().out


def test_station_ignores_a_telemetry_pattern_it_does_not_know() -> None:
    from edgeae.ground.station import GroundStation

    gs = GroundStation()
    for value, want in (("RGGB", "RGGB"), ("rggb", None), (5, None), (["RGGB"], None), (None, None)):
        gs.reports["telemetry_7"] = {"kind": "telemetry", "telemetry": {"demosaiced": value}}
        assert gs._flight_bayer(7) == want
    gs.reports["telemetry_7"] = {"kind": "telemetry", "telemetry": None}
    assert gs._flight_bayer(7) is None and gs._flight_bayer(8) is None


def test_score_map_draws_the_image_beside_the_scores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, moon: np.ndarray
) -> None:
    """``edgeae score --map m.png`` drew only the coloured cells, with no image to tell which terrain scored high;
    the image (every d-th pixel, read a strip at a time) is now drawn beside them."""
    import edgeae.anomaly.plots as plots
    from edgeae.imageio import write_image

    seen: dict = {}
    real = plots.save_score_map

    def spy(path, scores, **kw):
        seen.update(kw, shape=scores.shape)
        return real(path, scores, **kw)

    monkeypatch.setattr(plots, "save_score_map", spy)
    img = write_image(tmp_path / "moon.png", np.ascontiguousarray(moon[:200, :300]))
    argv = ["score", str(img), "-o", str(tmp_path / "s.csv"), "--map", str(tmp_path / "m.png"), "--no-progress"]
    assert main(argv) == 0
    assert seen["image_downsampled"] and seen["image"].shape[:2] == (200, 300)  # under 800 px a side: every pixel
    assert np.allclose(seen["image"][..., 0], moon[:200, :300] / 255.0, atol=1e-6)
    assert (tmp_path / "m.png").stat().st_size > 0

    from edgeae.strips import preview

    assert preview(img, 7).shape[:2] == (29, 43)  # ceil(200 / 7), ceil(300 / 7)


def test_firmware_sim_says_when_grey_frames_fly_in_a_colour_camera(
    tmp_path: Path, moon: np.ndarray, capsys: pytest.CaptureFixture[str]
) -> None:
    """Grey frames given to the rover mission (a colour-filter camera) fly as grey copied to R, G, B; until session
    46 only each frame's telemetry said so, now the run's console does (a WARNING line, and summary.json)."""
    import json

    from edgeae.firmware_sim.cli import main as fs_main

    from edgeae.imageio import write_image

    grey = write_image(tmp_path / "grey.png", np.ascontiguousarray(moon[:256, :384]))
    out = tmp_path / "fw"
    assert fs_main(["run", "--mission", "rover_mastcamz", "--frames", str(grey), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "WARNING: 1 of 1 frames processed hold one grey channel" in err and "grey.png" in err
    summary = json.loads((out / "summary.json").read_text())
    assert any("copied to R, G and B" in w for w in summary["warnings"])


def test_a_bad_option_value_is_one_line_and_a_missing_argument_keeps_the_usage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--threads 0`` printed the whole usage block, ``--patch 0`` (the command's own check) one line; both are one
    line now. A missing argument still shows the usage, which says what is required."""
    with pytest.raises(SystemExit) as stop:
        main(["score", "a.png", "-o", str(tmp_path / "s.csv"), "--threads", "0"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "usage:" not in err
    assert (
        err.strip() == "edgeae score: error: argument --threads: must be at least 1, got 0 (--help lists the options)"
    )
    with pytest.raises(SystemExit):
        main(["score", "a.png"])
    assert "usage: edgeae score" in capsys.readouterr().err


def test_the_python_api_takes_a_name_or_a_model_where_a_scorer_goes_and_prints_briefly(data_root: Path) -> None:
    """Session 46's API audit: ``score_array(img, "orbital-gray-vae")`` failed with "'str' object is not callable",
    a CAE passed unwrapped with a patch-size error; ``print(frame)`` dumped every pixel, a model printed as
    ``<... object at 0x...>``, ``dir(edgeae)`` listed ``Any`` and ``import_module``."""
    import edgeae

    tycho = data_root / "orbital_gray" / "misc" / "Tycho_LRO.png"
    if not tycho.is_file():
        pytest.skip(f"{tycho} not in the data folder")
    frame = edgeae.read_image(tycho)
    assert repr(frame) == "ImageData('Tycho_LRO.png', 1058x1058x1, 8-bit uint8, 100.0% valid)"
    model = edgeae.load_predictor("orbital-gray-vae")
    assert repr(model) == "TorchPredictor('orbital-gray-vae.pt', vae, 1 channel(s), cpu)"
    crop = frame.pixels[:256, :256]
    wrapped = edgeae.score_array(crop, edgeae.make_scorer(model))
    for given in ("orbital-gray-vae", model):
        got = edgeae.score_array(crop, given)
        assert np.array_equal(got.score, wrapped.score) and set(got.extras) == set(wrapped.extras)
    with pytest.raises(TypeError, match=r"scorer must be edgeae\.make_scorer"):
        edgeae.score_array(crop, 5)
    assert {"Any", "import_module", "TYPE_CHECKING", "annotations"}.isdisjoint(dir(edgeae))
    assert "make_scorer" in dir(edgeae) and "__version__" in dir(edgeae)


def test_the_demo_page_leads_with_its_verdict(tmp_path: Path) -> None:
    """The audit: the demo's answer ("Should you fly it?") was the 7th line of a conclusion at the end of a ~9,000-px
    page. It is now also under the intro, with how the CAE did against the best classical fill."""
    from edgeae.demo.conclusion import verdict_html
    from edgeae.report import Section, render_report

    lines = [
        "From 10% of the pixels, the best rebuild is cae (m) at 31.69 dB PSNR, 0.50 dB ahead of blend.",
        "The CAE alone beats the best classical method (blend, 31.19 dB) by 0.50 dB PSNR.",
        "Should you fly it? On a clean link, no: JPEG 2000 at the same bytes is 9.54 dB better than it <x>.",
    ]
    lead = verdict_html(lines)
    assert "From 10%" not in lead and "The CAE alone beats" in lead and "&lt;x&gt;" in lead
    page = render_report(tmp_path, "t", [Section("Input"), Section("Conclusion")], "intro", lead=lead)
    assert page.index("Verdict") < page.index("<section id='input'>") < page.index("<section id='conclusion'>")
    assert "href='#conclusion'" in page
    assert verdict_html([]) == "" and verdict_html(lines[:1]) == ""


def test_the_flight_report_says_why_patches_were_not_scored_and_what_the_budget_counts() -> None:
    """The audit: "patches scored 110 / 130" with no reason, and "rss peak 128.9 MiB" above a 128 MiB budget in a
    table that says "within budget: yes" (the budget counts RSS growth over boot)."""
    from edgeae.firmware_sim.report_charts import MEMORY_LABELS, _not_scored

    assert _not_scored({"grid": 130, "selected": 130, "scored": 110, "nodata_skipped": 20}) == " (20 no-data)"
    assert _not_scored({"grid": 130, "selected": 65, "scored": 60, "nodata_skipped": 5, "cut_by_deadline": 0}) == (
        " (5 no-data, 65 not selected)"
    )
    assert _not_scored({}) == ""
    assert "boot baseline included" in MEMORY_LABELS["rss_peak_bytes"]
    assert MEMORY_LABELS["within_budget"] == "within budget (RSS growth over boot)"


def test_demo_score_captions_keep_four_figures() -> None:
    from edgeae.demo.anomaly import score_text

    assert [score_text(v) for v in (52.6, 59.91, 0.015491, 28272.1)] == ["52.60", "59.91", "0.01549", "28,272"]


def test_score_maps_draw_labelled_features_to_their_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The audit: every labelled crater of an evaluation map was the same small circle (a 160-px crater like a 33-px
    one); (x, y, diameter) points are now circles of their own size, (x, y) points small markers as before."""
    pytest.importorskip("matplotlib")
    import edgeae.anomaly.plots as plots
    from edgeae.anomaly.score import PatchScores

    radii: list[float] = []
    plt = plots._plt()
    real = plt.Circle

    def circle(xy, radius, **kw):
        radii.append(radius)
        return real(xy, radius, **kw)

    monkeypatch.setattr(plt, "Circle", circle)
    xs, ys = np.meshgrid(np.arange(0, 256, 64), np.arange(0, 256, 64))
    scores = PatchScores("m.png", xs.ravel(), ys.ravel(), np.arange(16.0), np.ones(16), 64, (256, 256))
    img = np.zeros((256, 256, 1), np.float32)
    plots.save_score_map(tmp_path / "a.png", scores, image=img, points=np.array([[40, 40, 160.0], [200, 200, 33.0]]))
    assert radii == [80.0, 16.5, 80.0, 16.5]  # both panels, radius = diameter / 2 at full scale
    radii.clear()
    plots.save_score_map(tmp_path / "b.png", scores, image=img, points=np.array([[40, 40], [200, 200]]))
    assert radii == [] and (tmp_path / "b.png").stat().st_size > 0


def test_init_takes_a_zoo_name_and_model_errors_name_the_run_files(tmp_path: Path) -> None:
    """The training audit: ``--init rover-rgb-gtcae`` said "checkpoint ... does not exist" (a file path only, unlike
    every other MODEL argument); a run's ``last.pt`` given as a model said "no edgeae metadata; was it written by
    edgeae?"; a run folder listed last.pt beside best.pt as if either were the model."""
    torch = pytest.importorskip("torch")
    from edgeae.checkpoint import load_checkpoint
    from edgeae.metadata import MetadataError
    from edgeae.models.cae import CAEConfig
    from edgeae.predictor import resolve_model_path
    from edgeae.train.cae import _warm_start

    zoo = load_checkpoint(resolve_model_path("orbital-gray-gtcae", want="checkpoint"))
    cfg = CAEConfig.from_dict(zoo.metadata.architecture)
    model = type(zoo.model)(cfg)
    info = _warm_start(model, "orbital-gray-gtcae", cfg)
    assert info["file"] == "orbital-gray-gtcae.pt"
    for a, b in zip(model.state_dict().values(), zoo.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(MetadataError, match="--init no-such-model"):
        _warm_start(model, "no-such-model", cfg)

    run = tmp_path / "run"
    run.mkdir()
    torch.save({"version": 1, "model": {}, "optimizer": {}, "scheduler": None, "state": {}}, run / "last.pt")
    with pytest.raises(MetadataError, match=r"is a training state for --resume .*give .*best\.pt"):
        load_checkpoint(run / "last.pt")
    (run / "best.pt").write_bytes((resolve_model_path("orbital-gray-gtcae")).read_bytes())
    (run / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"is a training run's folder; its model is .*best\.pt"):
        resolve_model_path(str(run))


@pytest.mark.parametrize("trainer", ["cae", "vae"])
def test_a_run_is_not_written_inside_its_own_data_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], trainer: str
) -> None:
    """The training audit: ``--data imgs --out imgs`` trained, and the run's loss.png then was a training image of
    the next run on imgs (folders are read recursively), whose resume was refused as "the training data changed"."""
    from edgeae.imageio import write_image

    imgs = tmp_path / "imgs"
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png", "c.png"):
        write_image(imgs / name, (rng.random((160, 160, 1)) * 255).astype(np.uint8))
    for out in (imgs, imgs / "run"):
        assert main(["train", trainer, "--data", str(imgs), "--out", str(out), "--epochs", "1"]) == 2
        assert "is inside the --data folder" in capsys.readouterr().err
    assert sorted(p.name for p in imgs.iterdir()) == ["a.png", "b.png", "c.png"]  # nothing written


def test_train_errors_name_the_flag_not_the_config_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The training audit: "destroy_range must satisfy ...", "data_workers must be a positive integer" named the
    config's fields; the user typed --destroy-range and --data-workers."""
    for flag, value, said in (
        ("--destroy-range", "0.9,0.5", "--destroy-range must satisfy"),
        ("--patience", "-1", "--patience must be >= 0"),
    ):
        argv = ["train", "cae", "--data", str(tmp_path), "--out", str(tmp_path / "o"), flag, value]
        assert main(argv) == 2
        assert said in capsys.readouterr().err

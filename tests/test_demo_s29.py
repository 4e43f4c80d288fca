"""`edgeae demo` audit fixes (session 29): lost frames, honest conclusions, early refusals, small frames."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgeae.demo import DemoConfig, DemoContext, conclusion_lines
from edgeae.reconstruct import Reconstruction

DEAD_LINK = "# Total loss.\n[link]\nseed = 0\ndata_rate_bps = 2_000_000\nlatency_s = 0.5\nloss = 1.0\n"


def _frame(h: int = 64, w: int = 64) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return ((x * 3 + y * 2) % 256 / 255.0).astype(np.float32)[..., None]


def test_lost_frame_report_counts_every_packet_and_keeps_the_grey_psnr() -> None:
    """A frame whose packets all vanish: every packet counts as lost, none as corrupt; the mid-grey PSNR that
    benchmarks/link_comparison.py counts for a lost frame is still there."""
    from edgeae.ground.link import LinkConfig
    from edgeae.ground.pipeline import downlink_frame

    s = (np.arange(48 * 64 * 3).reshape(48, 64, 3) % 251).astype(np.uint8)
    gone = downlink_frame(s, 8, link=LinkConfig(loss=1.0))
    rep = gone.report
    assert rep["frame_lost"] and rep["packets_received"] == 0
    assert rep["packets_lost"] == gone.packets == rep["packets_expected"] and rep["packets_corrupt"] == 0
    grey = np.full(s.shape, 0.5, np.float32)
    from edgeae.metrics import psnr

    assert rep["psnr"] == pytest.approx(float(psnr(s.astype(np.float32) / 255.0, grey)))


def test_a_frame_that_arrived_but_was_not_rebuilt_is_not_reported_lost() -> None:
    """Every packet delivered, the fill failed: the station's own counts and error, not 'lost on the link'."""
    from edgeae.ground.pipeline import downlink_frame

    s = (np.arange(48 * 64 * 3).reshape(48, 64, 3) % 251).astype(np.uint8)

    def broken(img: np.ndarray, known: np.ndarray, notes: object = None) -> np.ndarray:
        raise RuntimeError("the fill broke")

    res = downlink_frame(s, 8, fill=broken)
    rep = res.report
    assert not rep["frame_lost"] and rep["rebuilt"] is False and "the fill broke" in rep.get("error", "")
    assert rep["packets_received"] == res.packets and rep.get("packets_lost", 0) == 0


def test_demo_downlink_shows_a_lost_frame_as_lost(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Table: lost = packets sent, corrupt 0, PSNR –; console: no ground rebuild; conclusion: lost, not a dB cost."""
    import edgeae.reconstruct
    from edgeae.demo import stage_downlink

    monkeypatch.setattr(edgeae.reconstruct, "reconstruct", lambda img, known, method, predictor: img)
    dead = tmp_path / "dead.toml"
    dead.write_text(DEAD_LINK)
    lines: list[str] = []
    ctx = DemoContext(DemoConfig(out=tmp_path, links=("perfect", str(dead))), model="m", say=lines.append)
    ctx.original = _frame()
    ctx.extra["predictor"] = object()
    section = stage_downlink(ctx)
    assert section is not None and "over 2 links" in section.title
    row = next(r for r in section.tables[0] if r["link"] == str(dead))
    assert row["packets received"] == 0 and row["lost"] == row["packets sent"] >= 1 and row["corrupt"] == 0
    assert row["PSNR (dB)"] == "–"
    assert ctx.extra["downlink"][str(dead)]["psnr"] is None and ctx.extra["downlink"][str(dead)]["lost"]
    printed = next(x for x in lines if str(dead) in x)
    assert "frame lost" in printed and "PSNR" not in printed
    assert any("frame lost" in f.caption for f in section.figures)
    ctx.results = [Reconstruction("cae", ctx.original, 1.0, {"psnr": 30.0, "ssim": 0.8, "mae": 0.01})]
    ctx.extra["codec"] = {"budget": 1000, "bytes": 990, "metrics": {"psnr": 35.0}}
    text = " ".join(conclusion_lines(ctx))
    assert f"the frame was lost entirely on {dead}" in text
    assert "cost the sparse rebuild" not in text and "no packet loss changed" not in text


def _dl_ctx(downlink: dict, codec_psnr: float = 35.0) -> DemoContext:
    ctx = DemoContext(DemoConfig(), model="m")
    img = np.zeros((2, 2, 1), np.float32)
    ctx.results = [Reconstruction("cae", img, 1.0, {"psnr": 30.0, "ssim": 0.8, "mae": 0.01})]
    ctx.extra["codec"] = {"budget": 1000, "bytes": 990, "metrics": {"psnr": codec_psnr}}
    ctx.extra["downlink"] = downlink
    return ctx


def test_conclusion_words_lost_frames_without_contradiction() -> None:
    ok = {"psnr": 30.0, "pixels_received": 1.0, "lost": False}
    dead = {"psnr": None, "pixels_received": 0.0, "lost": True}
    both = " ".join(conclusion_lines(_dl_ctx({"perfect": ok, "loss5": dict(ok), "dead": dead}, codec_psnr=25.0)))
    assert "Over the 2 links that delivered the frame, no packet loss changed the ground rebuild; " in both
    assert "the frame was lost entirely on dead" in both
    assert "cost only" not in both and " 0.00 dB" not in both  # a lost frame is not a dB cost
    assert "beat JPEG 2000 at equal bytes by 5.00 dB" in both
    only_dead = " ".join(conclusion_lines(_dl_ctx({"dead": dead})))
    assert "The frame was lost entirely on dead: no link delivered it, so there is no ground rebuild" in only_dead
    assert "(no rebuild at all)" in only_dead and "cost the sparse rebuild" not in only_dead
    one = " ".join(conclusion_lines(_dl_ctx({"perfect": ok})))
    assert "Over the one link given (perfect)" in one and "Over the 1 links" not in one


def test_conclusion_names_the_measures_the_cae_won_and_lost() -> None:
    """The CAE behind on PSNR but ahead on SSIM, MAE and time is not said to lose 'on every other measure'."""
    ctx = DemoContext(DemoConfig(), model="m")
    img = np.zeros((2, 2, 1), np.float32)
    ctx.results = [
        Reconstruction("cae", img, 0.5, {"psnr": 30.0, "ssim": 0.80, "mae": 0.01}),
        Reconstruction("linear", img, 0.9, {"psnr": 31.0, "ssim": 0.70, "mae": 0.02}),
    ]
    text = " ".join(conclusion_lines(ctx))
    assert "every other measure" not in text
    assert "loses to the best classical method (linear, 31.00 dB) by 1.00 dB PSNR; it is ahead on SSIM" in text
    assert "MAE (0.0100 vs 0.0200 for linear)" in text and "time (0.50 s vs 0.90 s for linear)" in text
    ctx.results[1] = Reconstruction("linear", img, 0.1, {"psnr": 29.0, "ssim": 0.70, "mae": 0.02})
    won = " ".join(conclusion_lines(ctx))
    assert "beats the best classical method (linear, 29.00 dB) by 1.00 dB PSNR; it loses on time" in won
    assert "it is ahead on SSIM" in won


def test_conclusion_without_the_cae_still_compares_jpeg2000_with_the_best_sparse_rebuild() -> None:
    ctx = DemoContext(DemoConfig(methods=("normconv",)), model=None)
    img = np.zeros((2, 2, 1), np.float32)
    ctx.results = [
        Reconstruction("normconv", img, 0.1, {"psnr": 31.0, "ssim": 0.7, "mae": 0.02}),
        Reconstruction("jpeg2000", img, 0.1, {"psnr": 41.0, "ssim": 0.9, "mae": 0.01}),
    ]
    ctx.extra["codec"] = {"budget": 1000, "bytes": 990, "metrics": {"psnr": 41.0}}
    text = " ".join(conclusion_lines(ctx))
    assert "JPEG 2000 of the whole frame reaches 41.00 dB: 10.00 dB better than sparse pixels + normconv" in text


def test_conclusion_sets_jpeg2000_against_the_best_sparse_rebuild_shown() -> None:
    from edgeae.demo import CROSS

    ctx = DemoContext(DemoConfig(), model="m")
    img = np.zeros((2, 2, 1), np.float32)
    ctx.results = [
        Reconstruction("cae", img, 1.0, {"psnr": 31.54, "ssim": 0.8, "mae": 0.01}),
        Reconstruction(CROSS, img, 1.0, {"psnr": 31.67, "ssim": 0.8, "mae": 0.01}),
    ]
    ctx.extra["codec"] = {"budget": 1000, "bytes": 990, "metrics": {"psnr": 41.24}}
    ctx.extra["downlink"] = {"perfect": {"psnr": 31.5, "pixels_received": 1.0, "lost": False}}
    text = " ".join(conclusion_lines(ctx))
    assert "9.57 dB better than sparse pixels + cae (m) cross-checked with linear (31.67 dB)" in text
    assert "JPEG 2000 at the same bytes is 9.57 dB better" in text


def test_downlink_without_the_cae_says_it_did_not_run(tmp_path: Path) -> None:
    from edgeae.demo import stage_downlink

    lines: list[str] = []
    ctx = DemoContext(DemoConfig(out=tmp_path, methods=("normconv",), links=("perfect",)), say=lines.append)
    section = stage_downlink(ctx)
    assert section is not None and section.title == "Downlink: not run"
    assert lines == [
        "downlink: not run (the ground station rebuilds with the CAE and --methods has no cae; --links ignored)"
    ]


def test_anomaly_section_skipped_for_a_frame_smaller_than_the_patch(tmp_path: Path) -> None:
    from edgeae.demo import stage_anomaly

    lines: list[str] = []
    ctx = DemoContext(DemoConfig(out=tmp_path), say=lines.append)
    ctx.original = _frame(16, 40)
    section = stage_anomaly(ctx)
    assert section is not None and section.title == "Anomaly scores: not run"
    assert lines == ["anomaly: not run (the 40×16 frame is smaller than the 64×64 patch the scorer reads)"]
    assert "anomaly" not in ctx.extra


def _no_work(*args: object, **kwargs: object) -> None:
    raise AssertionError("the demo ran before its arguments were checked")


@pytest.mark.parametrize(
    ("out", "message"),
    [("afile", "--out {tmp}/afile: is a file"), ("afile/sub", "--out {tmp}/afile/sub/index.html: cannot write")],
)
def test_demo_refuses_an_unusable_out_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], out: str, message: str
) -> None:
    import edgeae.demo
    from edgeae.cli import main

    monkeypatch.setattr(edgeae.demo, "run_demo", _no_work)
    (tmp_path / "afile").write_text("not a folder")
    assert main(["demo", "--out", str(tmp_path / out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message.format(tmp=tmp_path) in err


def test_demo_data_folder_without_the_demo_frame_is_an_error(tmp_path: Path) -> None:
    from edgeae.demo import load_frame

    with pytest.raises(FileNotFoundError, match=r"--data .*nope is not a folder.*or leave it out"):
        load_frame(DemoConfig(data_root=tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match=r"--data .* has no rover_rgb/.*use --source moon"):
        load_frame(DemoConfig(data_root=tmp_path, source="rover"))


def test_demo_rover_frame_missing_names_both_ways_to_point_at_the_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import edgeae.data
    from edgeae.demo import load_frame

    monkeypatch.setattr(edgeae.data, "find_data_root", lambda path=None: None)
    with pytest.raises(FileNotFoundError, match=r"pass --data or set \$EDGEAE_DATA"):
        load_frame(DemoConfig(source="rover"))


def test_demo_image_with_source_or_data_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import edgeae.demo
    from edgeae.cli import main

    with pytest.raises(ValueError, match="replaces the demo frame"):
        DemoConfig(image=tmp_path / "x.png", source="moon")
    with pytest.raises(ValueError, match="replaces the demo frame"):
        DemoConfig(image=tmp_path / "x.png", data_root=tmp_path)
    monkeypatch.setattr(edgeae.demo, "run_demo", _no_work)
    args = ["demo", "--image", "x.png", "--data", str(tmp_path), "--out", str(tmp_path / "o")]
    assert main(args) == 2
    assert "--image x.png is the frame; --data would be ignored: drop it" in capsys.readouterr().err
    # --source auto is the default, not a source that would be ignored; a missing image is said before --out exists
    assert main(["demo", "--image", "x.png", "--source", "auto", "--out", str(tmp_path / "o2")]) == 2
    assert "--image x.png: no such file" in capsys.readouterr().err and not (tmp_path / "o2").exists()
    assert main(["demo", "--out", str(tmp_path / "o3" / "deep"), "--links", "nosuchlink"]) == 2
    assert not (tmp_path / "o3").exists()  # a plain mistake leaves no empty report folder


def test_demo_sh_runs_the_demo_in_the_callers_directory(tmp_path: Path) -> None:
    """Relative --image/--out given to scripts/demo.sh are the caller's, not the repository's."""
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(Path(__file__).parent.parent / "scripts" / "demo.sh", repo / "scripts" / "demo.sh")
    bin_ = repo / ".venv" / "bin"
    bin_.mkdir(parents=True)
    (bin_ / "python").write_text("#!/bin/sh\nexit 0\n")  # stands in for pip: nothing to install
    (bin_ / "edgeae").write_text('#!/bin/sh\necho "cwd=$PWD args=$*"\n')
    for f in ("python", "edgeae"):
        (bin_ / f).chmod(0o755)
    caller = tmp_path / "caller"
    caller.mkdir()
    run = subprocess.run(
        ["bash", str(repo / "scripts" / "demo.sh"), "--image", "x.png", "--out", "o"],
        cwd=caller,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert run.returncode == 0, run.stderr
    assert f"cwd={caller} args=demo --image x.png --out o" in run.stdout


def test_report_intro_names_only_the_sections_shown(tmp_path: Path) -> None:
    pytest.importorskip("skimage")
    from edgeae.demo import run_demo

    cfg = DemoConfig(out=tmp_path / "d", source="moon", methods=("nearest",), anomaly=False, codec=False)
    html = run_demo(cfg).html.read_text()
    assert "Sections: input, reconstructions with their error maps, metrics, conclusion." in html
    assert "<h2>Downlink: not run</h2>" in html


def test_a_run_that_fails_half_way_leaves_the_earlier_metrics_beside_the_earlier_report(tmp_path: Path) -> None:
    """metrics.json was written in the metrics stage: a later failure left it describing the new run beside the
    old index.html. It is written with the report now."""
    from edgeae.demo import SECTIONS, run_demo

    out = tmp_path / "o"
    out.mkdir()
    (out / "metrics.json").write_text('{"image": "earlier"}\n')

    def broken(ctx: DemoContext) -> None:
        raise RuntimeError("a later stage failed")

    stages = [*[s for s in SECTIONS if s.__name__ in ("stage_frame", "stage_reconstruct", "stage_metrics")], broken]
    cfg = DemoConfig(out=out, source="moon", methods=("normconv",), anomaly=False, cross_check=None)
    with pytest.raises(RuntimeError, match="later stage"):
        run_demo(cfg, stages=stages)
    assert (out / "metrics.json").read_text() == '{"image": "earlier"}\n'


def test_demo_moon_source_with_a_data_folder_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The moon frame is scikit-image's: a --data folder given with it would be ignored without a word."""
    import edgeae.demo
    from edgeae.cli import main

    with pytest.raises(ValueError, match="would be unused"):
        DemoConfig(source="moon", data_root=tmp_path)
    monkeypatch.setattr(edgeae.demo, "run_demo", _no_work)
    assert main(["demo", "--source", "moon", "--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "--source moon is scikit-image's bundled frame" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_refusal_after_the_write_check_leaves_no_empty_folders(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """check_writable makes the --out folders to test them; a later refusal removes those still empty."""
    from edgeae.cli import main

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"x")
    out = tmp_path / "new" / "deep" / "rx.bin"
    assert main(["downlink", "simulate", "--image", str(bad), "--link", "perfect", "--out", str(out)]) == 1
    assert "not a PNG" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
    kept = tmp_path / "kept"
    (kept / "deep").mkdir(parents=True)
    (kept / "deep" / "other.txt").write_text("x")
    assert main(["downlink", "simulate", "--image", str(bad), "--out", str(kept / "deep" / "more" / "rx.bin")]) == 1
    assert (kept / "deep" / "other.txt").exists() and not (kept / "deep" / "more").exists()


def test_folders_made_for_several_outputs_are_all_removed_after_a_refusal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two outputs in sibling new folders: the common parent is removed too (the folders of every check are
    removed deepest first, not in the order the checks made them)."""
    from edgeae.cli import main

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"x")
    out = tmp_path / "new"
    argv = ["reconstruct", str(bad), "-o", str(out / "a" / "o.png"), "--metrics-json", str(out / "b" / "m.json")]
    assert main(argv) == 1  # an unreadable input is a data error
    assert "not a PNG" in capsys.readouterr().err
    assert not out.exists()


def test_anomaly_section_says_it_did_not_run_when_every_patch_is_mostly_no_data(tmp_path: Path) -> None:
    """An alpha channel hiding all but a 40×40 corner left no patch to score: the section vanished without a
    line (audit s33 a4, item 6)."""
    from edgeae.demo import stage_anomaly

    pytest.importorskip("onnxruntime")
    lines: list[str] = []
    ctx = DemoContext(DemoConfig(out=tmp_path), say=lines.append)
    ctx.original = _frame(128, 128)
    valid = np.zeros((128, 128), bool)
    valid[:40, :40] = True
    ctx.extra["valid"] = valid
    section = stage_anomaly(ctx)
    assert section is not None and section.title == "Anomaly scores: not run"
    assert lines == [
        "anomaly: not run (no 64×64 patch of the frame has at least 90% valid pixels (9 on the grid, all mostly "
        "no-data))"
    ]

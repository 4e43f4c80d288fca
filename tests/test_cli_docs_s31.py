"""Session 31 docs-by-execution audit (CLIs and docs): ``python -m edgeae.strips`` user errors and its tile bar,
where missing output folders are made, ``kept_indices_rows``' origin, the stale ``^IMAGE`` pointer distances and
``python -m edgeae.archive``'s exit status, each checked against what the docs say."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def _doc(name: str) -> str:
    return " ".join((REPO / name).read_text().split())  # wrapped lines joined


# -- 1. python -m edgeae.strips: one line and exit 2 for a user error; the tile bar ends at its total -----------


@pytest.fixture()
def source(tmp_path: Path) -> Path:
    pytest.importorskip("tifffile")
    from edgeae.imageio import write_image

    p = tmp_path / "src.png"
    write_image(p, np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8))
    return p


def _frame(tmp_path: Path, source: Path) -> Path:
    from edgeae.strips import write_tiled_bigtiff

    return write_tiled_bigtiff(tmp_path / "frame.tif", (128, 128), [source], tile=32, seed=0)


def test_strips_cli_user_errors_are_one_line_and_exit_2(
    tmp_path: Path, source: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each was a traceback (docs/io.md): a missing or unreadable source, a bad tile side, a truncated frame, an
    output that is a folder, a frame that is not there."""
    from edgeae.cli.strips_tool import main

    frame = _frame(tmp_path, source)
    truncated = tmp_path / "truncated.tif"
    truncated.write_bytes(frame.read_bytes()[:3000])
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"garbage")
    out, small = str(tmp_path / "o.tif"), ["--shape", "64", "64", "--tile", "32"]
    cases = {
        "/tmp/nothere-f13.png: no such file": ["make-frame", out, "/tmp/nothere-f13.png", *small],
        "garbage.png: not a PNG": ["make-frame", out, str(garbage), *small],
        "multiple of 16 (TIFF tiles), got 100": ["make-frame", out, str(source), "--tile", "100"],
        "it is a folder": ["make-frame", str(tmp_path), str(source), *small],
        "truncated TIFF": ["stream", str(truncated)],
        "nothere.tif: no such file": ["stream", str(tmp_path / "nothere.tif")],
    }
    for expected, argv in cases.items():
        assert main(argv) == 2, argv
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"python -m edgeae.strips {argv[0]}: error: "), lines
        assert expected in lines[0] and captured.out == ""
    assert not (tmp_path / "o.tif").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["stream", "F", "--patch", "0"],
        ["stream", "F", "--stride", "0"],
        ["stream", "F", "--band-rows", "0"],
        ["stream", "F", "--min-valid", "5"],
        ["make-frame", "O", "S", "--shape", "0", "512"],
        ["make-frame", "O", "S", "--seed", "-1"],
        ["make-frame", "O", "S", "--nodata-margin", "-3"],
    ],
)
def test_strips_cli_refuses_bad_numbers_while_parsing(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """``--patch 0`` was a ValueError traceback; ``--band-rows 0`` and ``--min-valid 5`` ran (kept 0)."""
    from edgeae.cli.strips_tool import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    flag = next(a for a in argv if a.startswith("--"))
    assert f"python -m edgeae.strips {argv[0]}: error: argument {flag}" in capsys.readouterr().err


def test_make_frame_bar_reaches_its_total_and_shows_on_a_terminal_only(
    tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """tifffile stops pulling after the last tile, so a bar wrapped around the generator ended at 15/16."""
    pytest.importorskip("tqdm")
    import edgeae.reconstruct
    from edgeae.cli.strips_tool import main

    argv = ["make-frame", str(tmp_path / "a.tif"), str(source), "--shape", "128", "128", "--tile", "32"]
    assert main(argv) == 0  # stderr is captured, not a terminal: no bar
    assert "tiles" not in capsys.readouterr().err
    monkeypatch.setattr(edgeae.reconstruct, "show_progress", lambda progress, steps, more_than=4: bool(progress))
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "16/16" in captured.err and "15/16" not in captured.err.split("\r")[-1]
    assert json.loads(captured.out)["bytes"] == (tmp_path / "a.tif").stat().st_size


def test_make_frame_failure_keeps_the_earlier_frame(
    tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that fails part-way (a full disk, Ctrl-C) leaves the earlier file, not half a frame."""
    tifffile = pytest.importorskip("tifffile")
    from edgeae.strips import write_tiled_bigtiff

    frame = _frame(tmp_path, source)
    before = frame.read_bytes()

    def failing(path: Path, *args: object, **kwargs: object) -> None:
        Path(path).write_bytes(b"II*\x00 half a frame")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tifffile, "imwrite", failing)
    with pytest.raises(OSError, match="No space left"):
        write_tiled_bigtiff(frame, (128, 128), [source], tile=32, seed=1)
    assert frame.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["frame.tif", "src.png"]


def test_io_doc_states_the_strips_exit_status() -> None:
    assert "both exit status 2; `make-frame` draws its tile bar only on a terminal" in _doc("docs/io.md")


# -- 2. missing output folders: made everywhere but the board tools' result files, as the README says ----------


def test_missing_output_folder_rule_matches_the_readme(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgeae.cli import check_writable
    from edgeae.imageio import write_image

    readme = _doc("README.md")
    assert "A missing output folder is made: by every `edgeae` command" in readme
    assert "`check --json`, `firmware-sim bench --json`) need an existing folder and are refused" in readme
    check_writable(tmp_path / "a" / "b" / "scores.csv", "-o")  # what every edgeae command's output goes through
    assert (tmp_path / "a" / "b").is_dir()
    write_image(tmp_path / "c" / "x.png", np.zeros((4, 4), np.uint8))
    assert (tmp_path / "c" / "x.png").is_file()
    pytest.importorskip("edgeae.export.board")
    from edgeae.export.board import main as board

    missing = tmp_path / "no" / "x.json"
    assert board(["check", str(tmp_path / "b.npz"), "a.onnx", "--json", str(missing)]) == 2  # before the bundle
    assert f"folder {missing.parent} does not exist" in capsys.readouterr().err and not missing.parent.exists()


# -- 3. kept_indices_rows counts from the first pixel of row0 ----------------------------------------------------


@pytest.mark.parametrize("pattern", ["uniform", "jittered"])
def test_kept_indices_rows_origin_is_row0_as_documented(pattern: str) -> None:
    from edgeae.masks import kept_indices_rows, make_mask

    assert "counted from the first pixel of `row0`, not of the frame (add `row0 * W`" in _doc("docs/masks.md")
    full = np.flatnonzero(make_mask(3, (80, 77), 0.1, pattern))
    got = kept_indices_rows(3, (80, 77), 0.1, pattern, 17, 60)
    assert np.array_equal(got + 17 * 77, full[(full >= 17 * 77) & (full < 60 * 77)])


# -- 4. stale ^IMAGE pointers: the documented distance range is what the reader reports ---------------------------


def test_stale_pointer_distances_match_the_doc(formats: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgeae.archive.__main__ import main

    main([str(formats / "pds3")])
    gaps = {}
    for line in capsys.readouterr().out.splitlines():
        r = json.loads(line)
        for w in r.get("warnings", []):
            m = re.search(r"\^IMAGE pointer \(byte (\d+)\) lies inside the label, which ends at byte (\d+)", w)
            if m:
                gaps[Path(r["file"]).name] = int(m[2]) - int(m[1])
    assert len(gaps) == 5 and gaps["h2862_0006_sr2_cropped.img"] == 7, gaps
    lo, hi = min(gaps.values()), max(gaps.values())
    assert f"left its byte pointer {lo}–{hi} bytes before the label's last byte" in _doc("docs/archive.md")


# -- 5. python -m edgeae.archive: exit 1 with a count on stderr when a product fails -----------------------------


def test_archive_cli_says_how_many_products_failed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgeae.archive.__main__ import main

    (tmp_path / "a.lbl").write_text(
        'PDS_VERSION_ID = PDS3\r\n^IMAGE = "X.IMG"\r\nOBJECT = IMAGE\r\n LINES = 2\r\n LINE_SAMPLES = 2\r\n'
        " SAMPLE_BITS = 8\r\n SAMPLE_TYPE = UNSIGNED_INTEGER\r\nEND_OBJECT = IMAGE\r\nEND\r\n"
    )
    assert main([str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "X.IMG named by its ^IMAGE pointer does not exist" in json.loads(captured.out)["error"]
    assert captured.err.strip() == "python -m edgeae.archive: 1 of 1 products could not be read (see their error lines)"
    assert "Exit status: 0 every product was read; 1 some could not be (stderr says how many" in _doc("docs/archive.md")

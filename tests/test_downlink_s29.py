"""``edgeae downlink`` audit fixes (session 29): outputs never overwritten unasked, checks before any work, strict
JSON, lost frames scored one way, the 65,535-packet limit, link files and ground limits that say what is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeae.cli import main

pytest.importorskip("imagecodecs")


@pytest.fixture()
def image(tmp_path: Path) -> Path:
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:48, 0:64]
    img = np.stack([x * 3, y * 4, x + y], axis=2) + rng.integers(0, 6, (48, 64, 3))
    p = tmp_path / "scene.png"
    cv2.imwrite(str(p), img.astype(np.uint8)[:, :, ::-1])
    return p


def _err(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_simulate_never_overwrites_an_input_and_an_earlier_result_only_with_force(
    tmp_path: Path, image: Path, capsys
) -> None:
    before = image.read_bytes()
    assert main(["downlink", "simulate", "--image", str(image), "--out", str(image.with_suffix(".bin"))]) == 0
    capsys.readouterr()
    # its own input: refused, with or without --force (was: the image replaced by packet data, exit 0)
    same = tmp_path / "same.png"
    same.write_bytes(before)
    for force in ([], ["--force"]):
        assert main(["downlink", "simulate", "--image", str(same), "--out", str(same), *force]) == 2
        assert "is the --image" in _err(capsys) and same.read_bytes() == before
    cap = image.with_suffix(".bin")
    recording = cap.read_bytes()
    argv = ["downlink", "simulate", "--products", str(cap), "--link", "loss20", "--out", str(cap), "--force"]
    assert main(argv) == 2 and "is the --products file" in _err(capsys)
    assert cap.read_bytes() == recording
    # an earlier result: refused without --force, replaced with it
    again = ["downlink", "simulate", "--image", str(image), "--keep", "0.3", "--out", str(cap)]
    assert main(again) == 2 and "give --force" in _err(capsys)
    assert cap.read_bytes() == recording
    assert main([*again, "--force"]) == 0
    assert json.loads(cap.with_suffix(".json").read_text())["product"]["keep"] == 0.3


def test_plan_refuses_an_earlier_report_without_force(tmp_path: Path, image: Path, capsys, monkeypatch) -> None:
    from edgeae.ground import science

    def classical(model: str, scorer: str, threads=None, loaded=None):  # no model weights in a fast test
        from edgeae.inpaint import inpaint

        def fill(img: np.ndarray, known: np.ndarray) -> np.ndarray:
            return np.asarray(inpaint(img, known, "telea"), np.float32)

        return fill, lambda b: {"score": b.reshape(len(b), -1).std(axis=1)}

    monkeypatch.setattr(science, "load_models", classical)
    out = tmp_path / "plan"
    out.mkdir()
    (out / "report.json").write_text("{}")
    argv = ["downlink", "plan", "--image", str(image), "--budgets", "0.2", "--links", "perfect", "--patch", "32",
            "--methods", "sparse", "--out", str(out)]  # fmt: skip
    assert main(argv) == 2 and "already holds report.json" in _err(capsys)
    assert (out / "report.json").read_text() == "{}"
    assert main([*argv, "--force"]) == 0
    assert json.loads((out / "report.json").read_text())["rows"]


def test_a_frame_over_65535_layout_2_packets_is_a_clear_error(tmp_path: Path, capsys) -> None:
    from edgeae.wire.packets import WireConfig, packetise
    from edgeae.wire.products import SparseFrame

    values = np.random.default_rng(0).integers(0, 256, (2048 * 2048, 1), dtype=np.uint8)
    frame = SparseFrame(0, 2048, 2048, 1, 8, 1.0, "uniform", 0, 1, values)
    with pytest.raises(ValueError, match=r"needs 87,382 packets.*packet size limit"):  # was struct.error ('H' format)
        packetise(frame, config=WireConfig(128, "none", 2))
    with pytest.raises(ValueError, match=r"needs .* packets.*packet size limit"):  # layout 1 says the same
        packetise(frame, config=WireConfig(128, "none", 1))


def test_unknown_compare_codec_is_refused_before_any_output(tmp_path: Path, image: Path, capsys) -> None:
    out = tmp_path / "c.bin"
    assert main(["downlink", "simulate", "--image", str(image), "--compare", "jpeg2000,foo", "--out", str(out)]) == 2
    assert "unknown codec(s) ['foo']" in _err(capsys)
    assert not out.exists() and not out.with_suffix(".json").exists()  # was: c.bin written, then exit 2
    assert main(["downlink", "simulate", "--image", str(image), "--compare", ",", "--out", str(out)]) == 2
    assert "names no codec" in _err(capsys) and not out.exists()


def test_compare_report_is_strict_json_and_scores_lost_frames_alike(tmp_path: Path, capsys) -> None:
    cv2 = pytest.importorskip("cv2")
    flat = tmp_path / "flat.png"
    cv2.imwrite(str(flat), np.full((32, 48), 90, np.uint8))
    out = tmp_path / "exact.bin"
    argv = ["downlink", "simulate", "--image", str(flat), "--keep", "1", "--codec", "none", "--compare", "jpeg,webp",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    text = out.with_suffix(".json").read_text()
    assert "Infinity" not in text and "NaN" not in text  # was: Infinity for the codecs' exact flat frames
    rows = {r["method"]: r for r in json.loads(text)["compare"]}
    assert [(rows[c]["psnr"], rows[c]["identical"], rows[c]["lost"]) for c in ("jpeg", "webp")] == [
        (120.0, True, False)
    ] * 2  # the ground station's PSNR cap, as its own reports give an exact rebuild
    assert "| identical |" in capsys.readouterr().out
    # every packet lost: the codec frame is lost as the sparse one is (was: psnr 16.7 dB of a mid-grey frame)
    link = tmp_path / "dead.toml"
    link.write_text("[link]\nloss = 1.0\n")
    image = tmp_path / "scene.png"
    cv2.imwrite(str(image), (np.arange(32 * 48).reshape(32, 48) % 251).astype(np.uint8))
    lost = tmp_path / "lost.bin"
    argv = ["downlink", "simulate", "--image", str(image), "--keep", "0.5", "--link", str(link), "--compare",
            "jpeg2000", "--out", str(lost)]  # fmt: skip
    assert main(argv) == 0
    rows = json.loads(lost.with_suffix(".json").read_text())["compare"]
    assert [(r["psnr"], r["lost"]) for r in rows] == [(None, True), (None, True)]


@pytest.mark.parametrize(
    ("toml", "match"),
    [
        ("[link]\n[links]\nloss = 0.5\n", "unknown top-level keys or tables ['links']"),  # was a perfect link
        ("loss = 0.1\n[link]\nseed = 1\n", "unknown top-level keys or tables ['loss']"),
        ("[link]\ncontacts = 5\n", "contacts must be a list of [start_s, end_s] windows"),  # was "'int' object ..."
        ("[link]\ncontacts = [[0, 1, 2]]\n", "contacts must be a list of [start_s, end_s] windows"),
    ],
)
def test_link_file_stray_tables_and_bad_contacts_are_refused(tmp_path: Path, image: Path, capsys, toml, match) -> None:
    link = tmp_path / "t.toml"
    link.write_text(toml)
    argv = ["downlink", "simulate", "--image", str(image), "--link", str(link), "--out", str(tmp_path / "x.bin")]
    assert main(argv) == 2
    err = _err(capsys)
    assert "t.toml" in err and match in err, err
    assert not (tmp_path / "x.bin").exists()


def test_a_described_link_file_still_loads(tmp_path: Path) -> None:
    from edgeae.ground.link import LinkConfig, load_link

    p = tmp_path / "d.toml"
    p.write_text('description = "a poor pass"\n[link]\nloss = 0.2\n')
    assert load_link(p) == LinkConfig(loss=0.2)
    p.write_text('description = "flat form"\nloss = 0.2\n')
    assert load_link(p) == LinkConfig(loss=0.2)


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--model", "telea"], "--model rebuilds the sparse frame for --compare"),
        (["--layout", "1", "--band-rows", "8"], "--band-rows 8 applies to layout 2"),
    ],
)
def test_simulate_refuses_options_it_would_ignore(tmp_path: Path, image: Path, capsys, extra, match) -> None:
    out = tmp_path / "x.bin"
    assert main(["downlink", "simulate", "--image", str(image), *extra, "--out", str(out)]) == 2
    assert match in _err(capsys) and not out.exists()


def test_products_refuse_image_options_and_layout_1_records_no_band_rows(tmp_path: Path, image: Path, capsys) -> None:
    pk = tmp_path / "p.bin"
    assert main(["downlink", "simulate", "--image", str(image), "--layout", "1", "--out", str(pk)]) == 0
    assert json.loads(pk.with_suffix(".json").read_text())["product"]["band_rows"] is None  # was 0 / the flag
    capsys.readouterr()
    argv = ["downlink", "simulate", "--products", str(pk), "--keep", "0.5", "--codec", "none", "--out",
            str(tmp_path / "q.bin")]  # fmt: skip
    assert main(argv) == 2
    assert "--keep, --codec apply to --image" in _err(capsys) and not (tmp_path / "q.bin").exists()


def test_plan_checks_its_options_up_front(tmp_path: Path, image: Path, capsys, monkeypatch) -> None:
    from types import SimpleNamespace

    from edgeae.ground import science

    loaded: list[str] = []
    meta = SimpleNamespace(kind="vae", layout="NCHW", input_shape=(1, 3, 64, 64))

    def vae64(model: str, scorer: str, threads=None, **_):
        loaded.append(scorer)
        return (lambda img, known: img), SimpleNamespace(predictor=SimpleNamespace(metadata=meta))

    monkeypatch.setattr(science, "load_models", vae64)
    base = ["downlink", "plan", "--image", str(image)]
    for extra, match in [
        (["--patch", "32"], "scores 64x64 patches; give --patch 64"),  # was a shape error deep in the scoring
        (["--links", ","], "--links ',' names no link"),  # was: the default links
        (["--budgets", "abc"], "--budgets: 'abc' is not a number"),  # was: could not convert string to float
        (["--budgets", "0.1,2"], "--budgets: budgets must be fractions"),
    ]:
        assert main([*base, *extra]) == 2
        assert match in _err(capsys)
    with pytest.raises(SystemExit) as exc:  # simulate's packet-size check, shared (was not range-checked)
        main([*base, "--max-packet", "10"])
    assert exc.value.code == 2 and "a packet is 128 to" in capsys.readouterr().err
    assert main(["downlink", "plan", "--set", "lroc-nac", "--patch", "32"]) == 2
    assert "--patch applies to --image" in _err(capsys)


def test_limit_values_must_be_whole_numbers() -> None:
    from edgeae.ground.limits import GroundLimits, parse_size

    with pytest.raises(ValueError, match="not a whole number"):  # was silently 5
        GroundLimits.from_pairs(["max_session_packets=5.7"])
    assert parse_size("1.5K") == 1536 and parse_size("1e8") == 10**8
    assert parse_size("2.2G") == int(2.2 * 2**30) and parse_size("0.3M") == int(0.3 * 2**20)  # units round down

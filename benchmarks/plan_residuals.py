"""How far each frame's memory plan is from what the frame grew: ``firmware-sim run`` on a fixed set of real and
generated frames, one fresh process per run, in onnxruntime and LiteRT, at nominal (a roomy budget) and at
``sparse_only`` (the budget just above that level's plan beside what the nominal run's boot held), tabulating
growth − predicted (the frame record's ``memory.rss_growth_peak`` − ``memory_predicted``) per frame, with the
machine and its load.

    python -m benchmarks.plan_residuals --work /tmp/plan_residuals [--out FILE.md] [--runtimes onnx tflite]
        [--levels nominal sparse_only] [--only SUBSTRING ...]

Frames: the rover's Navcam and Mastcam-Z PNGs and the MSL Navcam JPEG (``rover_mastcamz``), the four HiRISE
browse JPEGs, a 256-row-strip TIFF and a ``.npy`` of ``ESP_073435_1870``, the 2048 × 5064 PNG, JPEG and TIFF of
:func:`benchmarks.flight_install.make_frames` and the tiled 4096 × 5064 noise strip of
``tests/test_firmware_budget_s32.py`` (``orbital_nac``). Real frames need ``/work/shared/data`` (``--data``);
missing ones are skipped with a line saying so. About 5 s a run on two cores: all of them take 4-6 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.machine import machine_info

MIB = 2**20
ROOMY = 256 * MIB
ABOVE = MIB // 4  # the sparse_only budget: that level's plan beside what the boot held, plus this
RUNTIMES = {"onnx": "onnxruntime", "tflite": "LiteRT"}


def _toml(name: str) -> dict[str, Any]:
    from edgeae.firmware_sim.mission import resolve_mission

    return tomllib.loads(resolve_mission(name).read_text())


def frame_set(data: Path, work: Path) -> list[tuple[str, str, Path]]:
    """(mission, label, path) of every frame measured, the generated ones written under ``work``."""
    import tifffile

    from benchmarks.flight_install import make_frames
    from edgeae.imagedecode import decode_file

    rover = data / "rover_rgb" / "mars2020_raw"
    hirise = data / "orbital_gray" / "hirise_browse"
    out: list[tuple[str, str, Path]] = []
    for pat in ("NLF_*.png", "ZL0_*.png", "NRB_*.jpg"):
        out += [("rover_mastcamz", p.name[:12], p) for p in sorted(rover.glob(pat))[:1]]
    browse = sorted(hirise.glob("ESP_*.jpg"))
    browse += sorted((data / "train_extra" / "hirise_browse_extra" / "Mars").glob("ESP_072719_1970*.jpg"))
    out += [("orbital_nac", p.name[:15] + " jpg", p) for p in browse]
    gen = work / "frames"
    gen.mkdir(parents=True, exist_ok=True)
    one = [p for p in browse if p.name.startswith("ESP_073435_1870")]
    if one:
        img = np.asarray(decode_file(one[0])[0])
        img = img[..., 0] if img.ndim == 3 else img
        tif, npy = gen / "ESP_073435_1870.tif", gen / "ESP_073435_1870.npy"
        if not tif.exists():
            tifffile.imwrite(tif, img, rowsperstrip=256)
            np.save(npy, np.ascontiguousarray(img))
        out += [("orbital_nac", "ESP_073435_1870 tif", tif), ("orbital_nac", "ESP_073435_1870 npy", npy)]
    made = make_frames(gen / "flight_install")["orbital_nac"]
    out += [("orbital_nac", f"2048x5064 {p.suffix[1:]}", p) for p in made]
    strip = gen / "strip_tiled.tif"
    if not strip.exists():  # tests/test_firmware_budget_s32.py's strip
        rng = np.random.default_rng(3)
        tifffile.imwrite(strip, (80 + 40 * rng.random((4096, 5064))).astype(np.uint8), tile=(256, 256))
    out.append(("orbital_nac", "4096x5064 tiled tif", strip))
    return out


def mission_doc(mission: str, path: Path, runtime: str, budget: int) -> dict[str, Any]:
    from edgeae.firmware_sim.frames import open_frame

    doc = _toml(mission)
    cam = dict(doc["camera"])
    if cam["source"] == "strips":
        h = open_frame(path).header
        cam.update(height=h.height, width=h.width)
    anomaly = {**doc["anomaly"], "prefer": [runtime]}
    return {**doc, "camera": cam, "anomaly": anomaly, "budget": {**doc["budget"], "memory_bytes": budget,
                                                                 "frame_ms": 1e6}}  # fmt: skip


def sparse_plan(doc: dict[str, Any], path: Path) -> int:
    """The frame's plan at sparse_only, as the loop's memory check makes it (its reader, demosaiced when the
    camera has a colour filter)."""
    from edgeae.firmware_sim.budget import LADDER
    from edgeae.firmware_sim.frame_intake import level_plan, reader_plan
    from edgeae.firmware_sim.frames import open_frame
    from edgeae.firmware_sim.mission import mission_from_dict

    m = mission_from_dict(doc)
    reader: Any = open_frame(path)
    if m.camera.bayer:
        from edgeae.firmware_sim.reader_wrappers import Demosaiced

        reader = Demosaiced(reader, m.camera.bayer)
    return int(level_plan(reader_plan(m, reader, 0), LADDER[-1]).total)


def run_one(doc: dict[str, Any], path: Path, out: Path) -> dict[str, Any]:
    """One ``firmware-sim run`` of one frame in a fresh process: its frame record (or the boot's refusal)."""
    out.mkdir(parents=True, exist_ok=True)
    mission = out / "mission.toml"
    mission.write_text(_dump_toml(doc))
    cmd = [str(Path(sys.executable).parent / "firmware-sim"), "run", "--frames", str(path), "--out", str(out / "run"),
           "--mission", str(mission), "--fresh"]  # fmt: skip
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    tel = out / "run" / "telemetry.jsonl"
    frames = [json.loads(x) for x in tel.read_text().splitlines()] if tel.exists() else []
    frames = [r for r in frames if r.get("type") == "frame"]
    if not frames:
        return {"status": "refused", "detail": (done.stderr or done.stdout).strip()[-300:]}
    return dict(frames[-1])


def _dump_toml(doc: dict[str, Any]) -> str:
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return repr(v)

    lines = [f"{k} = {value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    for name, sec in doc.items():
        if isinstance(sec, dict):
            lines += ["", f"[{name}]", *(f"{k} = {value(v)}" for k, v in sec.items())]
    return "\n".join(lines) + "\n"


def row(label: str, runtime: str, level: str, rec: dict[str, Any]) -> dict[str, Any]:
    r: dict[str, Any] = {"frame": label, "runtime": RUNTIMES[runtime], "asked": level, "status": rec.get("status")}
    if "memory_predicted" in rec and "memory" in rec:
        plan, pred = int(rec["memory_plan"]), int(rec["memory_predicted"])
        growth = int(rec["memory"]["rss_growth_peak"])
        r.update(level=(rec.get("level") or {}).get("name"), held=pred - plan, plan=plan, predicted=pred,
                 growth=growth, error=growth - pred)  # fmt: skip
    else:
        r["detail"] = str(rec.get("reason") or rec.get("detail"))[:200]
    return r


def table(rows: list[dict[str, Any]]) -> str:
    def mib(v: Any) -> str:
        return "" if v is None else f"{v / MIB:+.2f}" if isinstance(v, int) and v < 0 else f"{v / MIB:.2f}"

    head = "| frame | runtime | level | held | plan | predicted | growth | growth − predicted |\n" + "|---" * 8 + "|"
    body = []
    for r in rows:
        if "error" in r:
            err = f"{r['error'] / MIB:+.2f}"
            body.append(f"| {r['frame']} | {r['runtime']} | {r['level'] or 'nominal'} | {mib(r['held'])} | "
                        f"{mib(r['plan'])} | {mib(r['predicted'])} | {mib(r['growth'])} | {err} |")  # fmt: skip
        else:
            body.append(f"| {r['frame']} | {r['runtime']} | {r['asked']}: {r['status']} | {r.get('detail', '')} |||||")
    return "\n".join([head, *body])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, required=True, help="scratch folder: generated frames and run outputs")
    ap.add_argument("--data", type=Path, default=Path("/work/shared/data"))
    ap.add_argument("--out", type=Path, help="write the table and machine info here (markdown) and beside it .json")
    ap.add_argument("--runtimes", nargs="+", default=list(RUNTIMES), choices=list(RUNTIMES))
    ap.add_argument("--levels", nargs="+", default=["nominal", "sparse_only"], choices=["nominal", "sparse_only"])
    ap.add_argument("--only", nargs="*", default=[], help="frames whose label contains one of these")
    a = ap.parse_args(argv)
    info = {**machine_info(), "load_1_5_15": os.getloadavg()}  # benchmarks/machine.py's record
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for mission, label, path in frame_set(a.data, a.work):
        if a.only and not any(s in label for s in a.only):
            continue
        for rt in a.runtimes:
            doc = mission_doc(mission, path, rt, ROOMY)
            rec = run_one(doc, path, a.work / "runs" / f"{label.replace(' ', '_')}_{rt}_nominal")
            if "nominal" in a.levels:
                rows.append(row(label, rt, "nominal", rec))
                print(table(rows[-1:]).splitlines()[-1], flush=True)
            if "sparse_only" in a.levels and "memory_predicted" in rec:
                held = int(rec["memory_predicted"]) - int(rec["memory_plan"])
                budget = held + sparse_plan(doc, path) + ABOVE
                doc = mission_doc(mission, path, rt, budget)
                rec = run_one(doc, path, a.work / "runs" / f"{label.replace(' ', '_')}_{rt}_sparse")
                need = re.search(r"([\d,]+) B > \[budget\] memory_bytes", str(rec.get("detail", "")))
                if rec.get("status") == "refused" and need:  # the boot's sparse_only figure is higher: just above it
                    doc = mission_doc(mission, path, rt, int(need.group(1).replace(",", "")) + ABOVE)
                    rec = run_one(doc, path, a.work / "runs" / f"{label.replace(' ', '_')}_{rt}_sparse")
                rows.append(row(label, rt, "sparse_only", rec))
                print(table(rows[-1:]).splitlines()[-1], flush=True)
    info.update(load_after=os.getloadavg(), seconds=round(time.perf_counter() - t0, 1))
    text = f"{table(rows)}\n\nmachine: {json.dumps(info)}\n"
    print(text)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text)
        a.out.with_suffix(".json").write_text(json.dumps({"machine": info, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

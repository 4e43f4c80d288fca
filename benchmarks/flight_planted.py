"""Does the rover mission's flight scorer flag hardware? Planted MSL hardware in rover test frames, in flight.

Frames: ``edgeae.ground.feature_sets.rover_planted`` (rover test frames, centre crops of at most 640 × 1024, two
128-px MSL hardware crops from the MSL set's validation sols planted on 128-px cells, never adjacent), for
``--seeds`` placements. Each frame goes through ``firmware-sim run --mission rover_mastcamz`` (the shipped int8
seed CAE, masked-reconstruction score, 128-px patches, top 6) and, at the same full-resolution pixel budget,
with the rover β-VAE (int8 TFLite, 64-px patches, top 24). A planted crop counts as found when a flagged patch
covers at least half of its cell (or lies inside it). The chance level is what the same number of patches
drawn at random from the frame's grid would find; the classical baseline, patch standard deviation (the ranking
tables' contrast baseline), ranks the same frames' grid offline at each scorer's patch size and top k.
Validation figures: the hardware comes from validation sols and the frames are composites, so a found crop may
owe something to its pasted edges.

    python benchmarks/flight_planted.py --out benchmarks/results/flight_planted [--seeds 4] [--work runs/flight_planted]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from any folder
from benchmarks.machine import machine_info

CELL = 128
CASES = {  # name -> (patch size, top k, extra firmware-sim arguments; "{vae}" = the rover VAE's int8 TFLite file)
    "cae-masked, rover-rgb-gtcae int8 (mission default)": (128, 6, []),
    "vae a(x), rover-rgb-vae int8": (64, 24, ["--anomaly-model", "{vae}", "--set", "anomaly.method=vae",
                                              "--set", "anomaly.patch=64", "--set", "anomaly.stride=64",
                                              "--set", "anomaly.top_k=24", "--set", "anomaly.batch=16"]),
}  # fmt: skip


def make_frames(folder: Path, seeds: int) -> dict[str, tuple[list[tuple[int, int]], np.ndarray]]:
    """Write the planted frames as PNG; {file name: ([(x, y) of each planted 128-px cell], uint8 (H, W, 3) frame)}."""
    import cv2

    from edgeae.ground.feature_sets import rover_planted

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    out: dict[str, tuple[list[tuple[int, int]], np.ndarray]] = {}
    for seed in range(seeds):
        for fr in rover_planted(3, per_frame=2, seed=seed):
            name = f"s{seed}-{fr.name}.png"
            cv2.imwrite(str(folder / name), cv2.cvtColor(fr.samples, cv2.COLOR_RGB2BGR))
            out[name] = ([(int(p["x"]), int(p["y"])) for p in fr.notes["planted"]], fr.samples)
    return out


def covers(cell: tuple[int, int], x: int, y: int, size: int) -> bool:
    cx, cy = cell
    w = max(0, min(cx + CELL, x + size) - max(cx, x))
    h = max(0, min(cy + CELL, y + size) - max(cy, y))
    return w * h >= min(size, CELL) ** 2 / 2


def chance(h: int, w: int, size: int, k: int) -> float:
    """Probability that ``k`` grid patches drawn at random cover a given planted cell (found as above)."""
    n = (h // size) * (w // size)
    good = (CELL // size) ** 2 if size <= CELL else 1  # patches inside the cell (64 px) or the cell's own patch
    return 1.0 - float(np.prod([(n - good - i) / (n - i) for i in range(k)]))


def run(work: Path, seeds: int) -> dict[str, Any]:
    """Frames and firmware-sim outputs go under ``work`` (they hold image data: not for the repository)."""
    from benchmarks.artifacts import zoo_artifact
    from edgeae.anomaly.baselines import patch_std
    from edgeae.ground.feature_sets import grid_positions

    frames = work / "frames"
    planted = make_frames(frames, seeds)
    cells = {n: c for n, (c, _) in planted.items()}
    shapes = {n: (img.shape[0], img.shape[1]) for n, (_, img) in planted.items()}
    vae = zoo_artifact("rover-rgb-vae", "vae", "tflite", "int8")
    res: dict[str, Any] = {"frames": len(cells), "planted": sum(map(len, cells.values())), "cases": {}}
    for name, (size, k, extra) in CASES.items():
        d = work / ("fw-" + name.split(",")[0].replace(" ", "-").replace("(", "").replace(")", ""))
        cmd = [sys.executable, "-m", "edgeae.firmware_sim.cli", "run", "--mission", "rover_mastcamz",
               "--frames", str(frames), "--out", str(d)] + [a.replace("{vae}", str(vae)) for a in extra]  # fmt: skip
        shutil.rmtree(d, ignore_errors=True)  # the output folder is also the runtime's persistent state
        log = d.with_suffix(".log")
        with log.open("w") as f:
            rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=False).returncode
        if rc != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({rc}); see {log}")
        summary = json.loads((d / "summary.json").read_text())
        found = 0
        expected = 0.0
        for a in summary["anomalies"]:
            name_ = os.path.basename(a["source"])
            for cell in cells[name_]:
                found += any(covers(cell, p["x"], p["y"], size) for p in a["patches"])
                expected += chance(*shapes[name_], size, len(a["patches"]))
        res["cases"][name] = {"patch": size, "top_k": k, "found": found, "chance": round(expected, 2),
                              "frames_reported": len(summary["anomalies"]), "command": " ".join(cmd)}  # fmt: skip
    for size, k in ((128, 6), (64, 24)):  # the classical baseline at each scorer's grid and budget
        found, expected = 0, 0.0
        for c, img in planted.values():
            grid = grid_positions(img.shape[0], img.shape[1], size)
            scores = patch_std(np.stack([img[y : y + size, x : x + size] for x, y in grid]))
            top = grid[np.argsort(-scores, kind="stable")[:k]]
            found += sum(any(covers(cell, int(x), int(y), size) for x, y in top) for cell in c)
            expected += len(c) * chance(img.shape[0], img.shape[1], size, k)
        res["cases"][f"patch standard deviation (classical, offline, {size}-px grid)"] = {
            "patch": size, "top_k": k, "found": found, "chance": round(expected, 2), "command": "offline"}  # fmt: skip
    res["machine"] = machine_info()
    return res


def markdown(res: dict[str, Any]) -> str:
    lines = [
        f"Planted MSL hardware (validation sols) in {res['frames']} rover test frames, {res['planted']} planted 128-px "
        "crops, through `firmware-sim run --mission rover_mastcamz`; both scorers flag the same full-resolution "
        "pixels per frame (6 × 128² = 24 × 64²); the classical baseline ranks the same frames offline. Chance: the "
        "expected count for as many patches drawn at random.",
        "",
        "| scorer | patch | top k | planted crops found | chance |",
        "|---|---|---|---|---|",
    ]
    for name, c in res["cases"].items():
        lines.append(f"| {name} | {c['patch']} | {c['top_k']} | {c['found']} of {res['planted']} | {c['chance']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.flight_planted",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seeds", type=int, default=4, help="placements per base frame (3 base frames each)")
    ap.add_argument("--work", type=Path, default=Path("runs/flight_planted"), help="frames and firmware-sim outputs")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    res = run(args.work, args.seeds)
    (args.out / "results.json").write_text(json.dumps(res, indent=1, default=str))
    md = markdown(res)
    (args.out / "results.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

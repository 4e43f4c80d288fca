"""Does the learned reconstruction earn its place? Every model next to the best classical fill, per image.

The acceptance table of issue 11, on images no model was trained on or selected with:

1. the 7 unseen rover test images (``rover_rgb`` test split), 512-px centre crops, keep 0.05 / 0.1 / 0.25:
   PSNR and SSIM of every model and every classical method (normconv, linear, telea, ns, nearest, and since
   session 38 normconv-wide and blend: ``acceptance_report.CLASSICAL``), the best
   classical method *per image*, each model's margin over it, and on how many images the model wins;
2. "do no harm": the smoothest 128×128 window of each test image (sky, haze, shadow; chosen automatically by
   the lowest mean gradient magnitude, never by looking at results), keep 0.1: each model's PSNR minus the
   best classical PSNR on that window;
3. the demo frame exactly as ``edgeae demo`` samples it (whole frame, seed 0, keep 0.1);
4. grey orbital test files (``orbital_gray`` test split, 512-px crops, keep 0.1) with the grey models.

Masks are seeded (seed = image index), so every number is reproducible exactly. Results go to
``results.json`` and ``results.md`` under ``--out``; the acceptance verdicts are computed from the numbers.
The default models are the shipped set of the README's table (``python -m benchmarks --only reconstruction``
names them one by one): the ground and flight CAEs with their int8 files, the previous default and the seed CAE
retrained, and the two grey CAEs; the ground CAE is judged as the default, the flight CAE at +1 dB::

    python benchmarks/reconstruction_acceptance.py --out DIR
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeae.adapt import AdaptConfig, adapt_predictor
from edgeae.crosscheck import CrossCheckConfig, cross_checked_fill
from edgeae.datasets import DEMO_FRAME, split_files
from edgeae.imageio import read_image
from edgeae.masks import make_mask
from edgeae.metrics import compare
from edgeae.reconstruct import Reconstruction, run_method

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from any folder
from benchmarks.acceptance_report import CLASSICAL
from benchmarks.acceptance_report import VARIANTS as VARIANTS
from benchmarks.acceptance_report import markdown as markdown
from benchmarks.acceptance_report import summarise as summarise
from benchmarks.acceptance_report import verdicts as verdicts
from benchmarks.crops import centre_crop as centre_crop
from benchmarks.machine import machine_info

log = logging.getLogger("reconstruction_acceptance")
KEEPS = (0.05, 0.1, 0.25)
GROUND, FLIGHT = "rover-rgb-unet2-ground", "rover-rgb-unet2-flight"
"""The shipped default ground CAE and the flight-budget CAE."""
ROVER_MODELS = (GROUND, FLIGHT, "rover-rgb-gtunet", "rover-rgb-gtcae-v2", f"zoo:{GROUND}/{GROUND}.int8.onnx",
                f"zoo:{FLIGHT}/{FLIGHT}.int8.onnx")  # fmt: skip
"""The default ``--rover-models``: the models of the README's acceptance table (until session 38 the default was
rover-rgb-gtunet alone, the previous default model, judged as the default)."""
GRAY_MODELS = ("orbital-gray-unet2-ground", "orbital-gray-gtunet")
SMOOTH_WINDOW = 128


def smoothest_window(img: np.ndarray, size: int = SMOOTH_WINDOW, step: int = 32) -> tuple[int, int]:
    """(y, x) of the ``size``-px window with the lowest mean gradient magnitude (its content, not results)."""
    grey = img.mean(axis=2)
    gy, gx = np.gradient(grey)
    mag = np.hypot(gy, gx)
    # a window must be free of no-data (exact zeros) so it is a real smooth region, not a margin
    best, where = np.inf, (0, 0)
    for y in range(0, grey.shape[0] - size + 1, step):
        for x in range(0, grey.shape[1] - size + 1, step):
            win = grey[y : y + size, x : x + size]
            if (win <= 0).mean() > 0.01:
                continue
            v = float(mag[y : y + size, x : x + size].mean())
            if v < best:
                best, where = v, (y, x)
    return where


@dataclass(frozen=True)
class Adapted:
    """A method that adapts ``predictor`` to each image first (:mod:`edgeae.adapt`), seeded by the image."""

    predictor: Any
    steps: int


@dataclass(frozen=True)
class CrossChecked:
    """A model mixed with a classical fill by the held-out cross-check (:mod:`edgeae.crosscheck`), seeded by the
    image; ``adapt_steps`` > 0 adapts the model to the image first."""

    predictor: Any
    method: str
    adapt_steps: int = 0


def evaluate(img: np.ndarray, known: np.ndarray, methods: dict[str, Any], seed: int = 0) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    adapted: dict[tuple[int, int], tuple[Any, dict[str, Any], float]] = {}
    for name, predictor in methods.items():
        method = "cae" if predictor is not None else name
        adapt_s = 0.0
        report: dict[str, Any] = {}
        steps = predictor.steps if isinstance(predictor, Adapted) else 0
        steps = predictor.adapt_steps if isinstance(predictor, CrossChecked) else steps
        base = predictor.predictor if isinstance(predictor, (Adapted, CrossChecked)) else predictor
        if steps:  # the +adapt and +adapt+xcheck rows share one adaptation (same model, seed and steps)
            key = (id(base), steps)
            if key not in adapted:
                t0 = time.perf_counter()
                cfg = AdaptConfig(steps=steps, seed=seed)
                tuned = adapt_predictor(base, img, known, cfg, progress=False, report=report)
                adapted[key] = (tuned, dict(report), time.perf_counter() - t0)
            base, cached_report, adapt_s = adapted[key]
            report.update(cached_report)
        if isinstance(predictor, CrossChecked):
            t0 = time.perf_counter()
            xreport: dict[str, Any] = {}
            xcfg = CrossCheckConfig(method=predictor.method, seed=seed)
            filled = cross_checked_fill(img, known, base, xcfg, report=xreport, progress=False)
            r = Reconstruction("cae", filled, time.perf_counter() - t0, compare(img, filled, known))
        else:
            r = run_method(img, known, method, base, progress=False)
        out[name] = {"psnr": float(r.metrics["psnr"]), "ssim": float(r.metrics["ssim"]), "seconds": r.seconds + adapt_s}
        if report:  # which state the held-out check chose (0 = the model as shipped)
            out[name]["chosen_step"] = float(report["chosen_step"])
        if isinstance(predictor, CrossChecked):  # the mean weight of the CAE in the mix
            out[name]["alpha_mean"] = float(xreport["alpha_mean"])
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.reconstruction_acceptance", description=__doc__.splitlines()[0] if __doc__ else None
    )
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--rover-models", default=",".join(ROVER_MODELS),
                   help="comma-separated zoo names / files (RGB; default: the shipped set, %(default)s; '' for none: "
                   "the grey files alone)")  # fmt: skip
    p.add_argument("--gray-models", default=",".join(GRAY_MODELS),
                   help="comma-separated zoo names / files (grey; default %(default)s; '' for none)")  # fmt: skip
    p.add_argument("--default-model", default=None, help="the default ground model (first rover model if unset)")
    p.add_argument("--flight-model", default=None,
                   help=f"the flight-budget model, judged at +1 dB separately (if unset: {FLIGHT} when it is one "
                   "of the rover models)")  # fmt: skip
    p.add_argument("--keeps", default=",".join(str(k) for k in KEEPS))
    p.add_argument("--crop", type=int, default=512)
    p.add_argument("--data", help="shared data folder (default $EDGEAE_DATA or ../shared/data)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument(
        "--adapt-steps", type=int, default=0,
        help="also run the default rover model and the first grey model adapted to each image for this many "
        "steps (edgeae.adapt), as rows MODEL+adapt; 0 = off",
    )  # fmt: skip
    p.add_argument(
        "--cross-check", default="",
        help="also run the default rover model, the flight model and the first grey model mixed with this "
        "classical fill by the held-out cross-check (edgeae.crosscheck), as rows MODEL+xcheck (and "
        "MODEL+adapt+xcheck with --adapt-steps); empty = off",
    )  # fmt: skip
    p.add_argument("--skip-demo", action="store_true", help="leave out the whole demo frame (slowest part)")
    p.add_argument("--report-only", action="store_true", help="rewrite results.md from --out/results.json")
    return p.parse_args(argv)


def judged_models(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """The default ground model and the flight-budget model the verdicts judge: as given, else the first rover
    model and the shipped flight CAE when it is among the rover models (else none)."""
    rover = [m for m in args.rover_models.split(",") if m]
    default = args.default_model or (rover[0] if rover else None)
    return default, args.flight_model or (FLIGHT if FLIGHT in rover else None)


def _load(names: list[str], threads: int | None) -> dict[str, Any]:
    from edgeae.predictor import load_predictor

    return {n: load_predictor(n, threads=threads) for n in names}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        old = json.loads((args.out / "results.json").read_text())
        old["acceptance"] = verdicts(old, old["default_model"], old["flight_model"])
        (args.out / "results.json").write_text(json.dumps(old, indent=2) + "\n")
        (args.out / "results.md").write_text(markdown(old))
        return 0
    rover_models = [m for m in args.rover_models.split(",") if m]
    gray_models = [m for m in args.gray_models.split(",") if m]
    default, args.flight_model = judged_models(args)
    keeps = [float(k) for k in args.keeps.split(",") if k]
    rover = _load(rover_models, args.threads)
    gray = _load(gray_models, args.threads)
    rgb_methods: dict[str, Any] = {**rover, **dict.fromkeys(CLASSICAL)}
    grey_methods: dict[str, Any] = {**gray, **dict.fromkeys(CLASSICAL)}
    if args.adapt_steps:  # the adapted rows count as models: their margins and wins are reported
        if default in rover:
            rgb_methods[f"{default}+adapt"] = Adapted(rover[default], args.adapt_steps)
            rover_models.append(f"{default}+adapt")
        if gray_models:
            grey_methods[f"{gray_models[0]}+adapt"] = Adapted(gray[gray_models[0]], args.adapt_steps)
            gray_models.append(f"{gray_models[0]}+adapt")
    if args.cross_check:
        for steps in (0, args.adapt_steps) if args.adapt_steps else (0,):
            tag = "+adapt+xcheck" if steps else "+xcheck"
            if default in rover:
                rgb_methods[f"{default}{tag}"] = CrossChecked(rover[default], args.cross_check, steps)
                rover_models.append(f"{default}{tag}")
            if gray_models:
                grey_methods[f"{gray_models[0]}{tag}"] = CrossChecked(gray[gray_models[0]], args.cross_check, steps)
                gray_models.append(f"{gray_models[0]}{tag}")
        if args.flight_model in rover:  # the flight-budget model's output cross-checked on the ground
            rgb_methods[f"{args.flight_model}+xcheck"] = CrossChecked(rover[args.flight_model], args.cross_check)
            rover_models.append(f"{args.flight_model}+xcheck")
    t0 = time.perf_counter()
    load_before = os.getloadavg()[0]
    result: dict[str, Any] = {
        "benchmark": "reconstruction_acceptance",
        "command": " ".join([Path(sys.argv[0]).as_posix(), *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine_info(),
        "rover_models": rover_models,
        "gray_models": gray_models,
        "default_model": default,
        "flight_model": args.flight_model,
        "crop": args.crop,
        "rover": {},
    }

    if rover_models:  # --rover-models '': the grey files alone
        files = split_files("rover_rgb", "test", root=args.data)
        images = [(p.name, read_image(p, channels=3).pixels) for p in files]
        for keep in keeps:
            per: dict[str, Any] = {}
            for i, (name, full) in enumerate(images):
                img = centre_crop(full, args.crop)
                per[name] = evaluate(img, make_mask(i, img.shape[:2], keep, "uniform"), rgb_methods, seed=i)
                log.info("rover keep %.2f %s: %s", keep, name, {m: round(v["psnr"], 2) for m, v in per[name].items()})
            result["rover"][str(keep)] = {"per_image": per, **summarise(per, rover_models)}

        smooth: dict[str, Any] = {}
        for i, (name, full) in enumerate(images):
            y, x = smoothest_window(full)
            win = full[y : y + SMOOTH_WINDOW, x : x + SMOOTH_WINDOW]
            smooth[name] = evaluate(win, make_mask(i, win.shape[:2], 0.1, "uniform"), rgb_methods, seed=i)
            smooth[name]["window"] = {"y": y, "x": x, "size": SMOOTH_WINDOW}
        smooth_per = {n: {m: v for m, v in d.items() if m != "window"} for n, d in smooth.items()}
        result["smooth"] = {"per_image": smooth, **summarise(smooth_per, rover_models)}

        if not args.skip_demo:
            from edgeae.data import data_path

            demo = read_image(data_path(DEMO_FRAME, args.data), channels=3).pixels
            known = make_mask(0, demo.shape[:2], 0.1, "uniform")  # edgeae demo's defaults: seed 0, keep 0.1, uniform
            result["demo"] = evaluate(demo, known, rgb_methods)
            log.info("demo frame: %s", {m: round(v["psnr"], 2) for m, v in result["demo"].items()})

    if gray_models:
        gper: dict[str, Any] = {}
        for i, p in enumerate(split_files("orbital_gray", "test", root=args.data)):
            img = centre_crop(read_image(p, channels=1).pixels, args.crop)
            gper[p.name] = evaluate(img, make_mask(i, img.shape[:2], 0.1, "uniform"), grey_methods, seed=i)
        result["gray"] = {"per_image": gper, **summarise(gper, gray_models)}

    result["acceptance"] = verdicts(result, default, args.flight_model)
    result["seconds_total"] = round(time.perf_counter() - t0, 1)
    result["load_1min"] = {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)}
    (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "results.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

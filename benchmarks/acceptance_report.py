"""The acceptance table of benchmarks/reconstruction_acceptance.py (issue 11): from the per-image numbers to the
summary per method (mean, best classical fill per image, each model's margin and wins), the verdict on each
acceptance line, and results.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

# rows derived from a model: adapted to each image, mixed by the cross-check, or both
VARIANTS = ("", "+adapt", "+xcheck", "+adapt+xcheck")
CLASSICAL = ("normconv", "linear", "telea", "ns", "nearest", "normconv-wide", "blend")


def summarise(per_image: dict[str, dict[str, dict[str, float]]], models: list[str]) -> dict[str, Any]:
    """Mean per method, best classical per image, each model's margin and wins."""
    names = list(per_image)
    methods = list(next(iter(per_image.values())))
    mean = {m: {k: float(np.mean([per_image[n][m][k] for n in names])) for k in ("psnr", "ssim")} for m in methods}
    best_classical = {
        n: max((m for m in methods if m in CLASSICAL), key=lambda m: per_image[n][m]["psnr"]) for n in names
    }
    best_psnr = np.array([per_image[n][best_classical[n]]["psnr"] for n in names])
    margins: dict[str, Any] = {}
    for m in models:
        psnr = np.array([per_image[n][m]["psnr"] for n in names])
        margins[m] = {
            "mean_margin_db": float(np.mean(psnr - best_psnr)),
            "min_margin_db": float(np.min(psnr - best_psnr)),
            "wins": int(np.sum(psnr > best_psnr)),
            "n": len(names),
        }
    return {
        "mean": mean,
        "best_classical_per_image": best_classical,
        "best_classical_mean_psnr": float(best_psnr.mean()),
        "margins": margins,
    }


def prefill_copies(
    per_image: dict[str, dict[str, dict[str, float]]], models: list[str], tol_db: float = 0.01
) -> list[str]:
    """The models whose PSNR is normconv's (their U-Net pre-fill) within ``tol_db`` on every image: a model that
    collapsed to its pre-fill (dead ReLUs) and adds nothing learned, however it ranks."""
    rows = list(per_image.values())
    if not rows or any("normconv" not in r for r in rows):
        return []
    return [m for m in models if all(m in r and abs(r[m]["psnr"] - r["normconv"]["psnr"]) <= tol_db for r in rows)]


def _named(m: str, collapsed: list[str]) -> str:
    return f"{Path(m).name} (= its normconv pre-fill on every image: collapsed)" if m in collapsed else Path(m).name


def verdicts(result: dict[str, Any], default: str | None, flight: str | None) -> list[dict[str, Any]]:
    """Each acceptance line of issue 11 with its measured number and whether it holds."""
    out: list[dict[str, Any]] = []
    r10 = result["rover"].get("0.1")
    # the default model, and the same model adapted to each image when the run has that row (--adapt-steps)
    defaults = [f"{default}{v}" for v in VARIANTS if default and r10 and f"{default}{v}" in r10["margins"]]
    for d in defaults:
        m = r10["margins"][d]
        out.append({"check": f"{d}: mean PSNR ≥ best classical + 2.0 dB (keep 0.1)",
                    "measured": f"{m['mean_margin_db']:+.2f} dB", "ok": m["mean_margin_db"] >= 2.0})  # fmt: skip
        out.append({"check": f"{d}: above the best classical method on every image (keep 0.1)",
                    "measured": f"{m['wins']} of {m['n']} (worst {m['min_margin_db']:+.2f} dB)",
                    "ok": m["wins"] == m["n"]})  # fmt: skip
    for name in (f"{flight}{v}" for v in ("", "+xcheck") if flight and r10 and f"{flight}{v}" in r10["margins"]):
        m = r10["margins"][name]
        out.append({"check": f"{name} (flight budget): ≥ best classical + 1.0 dB (keep 0.1)",
                    "measured": f"{m['mean_margin_db']:+.2f} dB", "ok": m["mean_margin_db"] >= 1.0})  # fmt: skip
    if "smooth" in result:
        per = {Path(m).name: v["min_margin_db"] for m, v in result["smooth"]["margins"].items()}
        worst = min(per.values())
        out.append({"check": "do no harm: no model > 0.5 dB below the best classical fill on smooth windows",
                    "measured": "worst per model: " + ", ".join(f"{m} {v:+.2f} dB" for m, v in per.items()),
                    "ok": worst >= -0.5})  # fmt: skip
    if "demo" in result and default:
        d = result["demo"]
        best_other = max(v["psnr"] for k, v in d.items() if k in CLASSICAL)
        for name in (n for n in (f"{default}{v}" for v in VARIANTS) if n in d):
            margin = d[name]["psnr"] - best_other
            out.append({"check": f"demo frame: {name} first by ≥ 1 dB", "measured": f"{margin:+.2f} dB",
                        "ok": margin >= 1.0})  # fmt: skip
    if r10:
        for m in r10["mean"]:
            if ".int8." not in m:
                continue
            fp32 = next((f for f in result["rover_models"] if f == Path(m).name.split(".int8.")[0]), None)
            if fp32 is None:
                continue
            gap = r10["mean"][m]["psnr"] - r10["mean"][fp32]["psnr"]
            out.append({"check": f"{Path(m).name} within 0.3 dB of {fp32} (keep 0.1)",
                        "measured": f"{gap:+.3f} dB", "ok": abs(gap) <= 0.3})  # fmt: skip
    if "gray" in result and result["gray_models"]:
        first = result["gray_models"][0]
        for name in (n for n in (f"{first}{v}" for v in VARIANTS) if n in result["gray"]["margins"]):
            g = result["gray"]["margins"][name]
            out.append({"check": f"{name}: grey orbital ≥ best classical + 1.5 dB (keep 0.1)",
                        "measured": f"{g['mean_margin_db']:+.2f} dB", "ok": g["mean_margin_db"] >= 1.5})  # fmt: skip
    return out


def _held_out_picks(result: dict[str, Any]) -> dict[str, list[int]]:
    """Per set, the step each adapted row's held-out check chose, image by image."""
    sets = {f"rover keep {k}": v["per_image"] for k, v in result["rover"].items()}
    sets |= {"smooth windows": result["smooth"]["per_image"]} if "smooth" in result else {}
    sets |= {"demo frame": {"demo": result["demo"]}} if "demo" in result else {}
    sets |= {"grey": result["gray"]["per_image"]} if "gray" in result else {}
    out: dict[str, list[int]] = {}
    for where, per in sets.items():
        for image in per.values():
            for name, v in image.items():
                if isinstance(v, dict) and "chosen_step" in v:
                    out.setdefault(f"{where} ({Path(name).name})", []).append(int(v["chosen_step"]))
    return out


def markdown(result: dict[str, Any]) -> str:
    lines = ["Reconstruction acceptance (issue 11): every model next to the best classical fill per image.", ""]
    lines += ["| check | measured | holds |", "|---|---|---|"]
    lines += [f"| {v['check']} | {v['measured']} | {'yes' if v['ok'] else '**no**'} |" for v in result["acceptance"]]
    for keep, r in result["rover"].items():
        collapsed = prefill_copies(r["per_image"], result["rover_models"])
        lines += ["", f"Rover test images (7, {result['crop']}-px crops), keep {keep}: mean over images", ""]
        lines += [
            "| method | PSNR (dB) | SSIM | margin over best classical (mean / worst) | wins |",
            "|---|---|---|---|---|",
        ]
        for m, d in sorted(r["mean"].items(), key=lambda kv: -kv[1]["psnr"]):
            mg = r["margins"].get(m)
            extra = (
                f"{mg['mean_margin_db']:+.2f} / {mg['min_margin_db']:+.2f} dB | {mg['wins']}/{mg['n']}" if mg else " | "
            )
            lines.append(f"| {_named(m, collapsed)} | {d['psnr']:.2f} | {d['ssim']:.4f} | {extra} |")
        lines.append(f"| best classical per image | {r['best_classical_mean_psnr']:.2f} | | | |")
    if "smooth" in result:
        s = result["smooth"]
        lines += ["", "Smooth 128-px windows of the same images (keep 0.1): PSNR per image", ""]
        methods = list(s["mean"])
        lines += ["| image | " + " | ".join(Path(m).name for m in methods) + " |", "|---" * (len(methods) + 1) + "|"]
        for n, d in s["per_image"].items():
            lines.append(f"| {n[:28]} | " + " | ".join(f"{d[m]['psnr']:.2f}" for m in methods) + " |")
    if "demo" in result:
        lines += [
            "",
            "Demo frame (whole frame, seed 0, keep 0.1): "
            + ", ".join(
                f"{Path(m).name} {v['psnr']:.2f} dB"
                for m, v in sorted(result["demo"].items(), key=lambda kv: -kv[1]["psnr"])
            ),
        ]
    if "gray" in result:
        g = result["gray"]
        collapsed = prefill_copies(g["per_image"], result["gray_models"])
        lines += ["", "Grey orbital test files (512-px crops, keep 0.1): mean PSNR", ""]
        lines += ["| method | PSNR (dB) | SSIM |", "|---|---|---|"]
        for m, d in sorted(g["mean"].items(), key=lambda kv: -kv[1]["psnr"]):
            lines.append(f"| {_named(m, collapsed)} | {d['psnr']:.2f} | {d['ssim']:.4f} |")
        lines.append(f"| best classical per image | {g['best_classical_mean_psnr']:.2f} | |")
    picks = _held_out_picks(result)
    if picks:
        lines += ["", "The held-out check's pick per adapted row (edgeae.adapt: the step whose state had the lowest "
                  "error on samples set aside from training; 0 = the model as shipped kept):", ""]  # fmt: skip
        lines += [f"- {where}: {', '.join(str(s) for s in steps)}" for where, steps in picks.items()]
    lines += ["", f"Command: `{result['command']}`; {result['seconds_total']} s on "
              f"{result['machine'].get('cpu', '?')}, 1-minute load {result['load_1min']['before']} before, "
              f"{result['load_1min']['after']} after (quality numbers do not depend on load)."]  # fmt: skip
    return "\n".join(lines) + "\n"

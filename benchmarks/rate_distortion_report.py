"""The results of the rate-distortion benchmark (:mod:`benchmarks.rate_distortion`): the rate points summarised
into CompressAI-style curves per method, read at a target bpp, and written as one JSON per method,
``results.json``, ``results.md`` and ``rd.png``."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.rate_distortion_points import Record

DESCRIPTIONS = {
    "sparse+cae (raw)": "kept pixels sent as plain 8-bit values; zoo CAE rebuilds the rest",
    "sparse+cae (delta-deflate)": "kept pixels, wire codec delta-deflate, one stream; zoo CAE rebuilds the rest",
    "sparse+cae (ccsds121)": "kept pixels, wire codec ccsds121 (CCSDS 121.0-B), one stream; zoo CAE rebuilds the rest",
    "sparse+telea (raw)": "kept pixels sent as plain 8-bit values; OpenCV Telea inpainting",
    "sparse+telea (delta-deflate)": "kept pixels, wire codec delta-deflate, one stream; OpenCV Telea inpainting",
    "sparse+telea (ccsds121)": "kept pixels, wire codec ccsds121 (CCSDS 121.0-B), one stream; OpenCV Telea inpainting",
    "latent int8 (raw)": "CAE encoder latents, int8 with a per-tile scale, uncoded; CAE decoder",
    "latent intN (deflate)": "CAE encoder latents, N-bit per-tile-scaled integers, deflate; CAE decoder",
    "jpeg": "OpenCV JPEG (libjpeg, 4:2:0), quality ladder",
    "webp": "imagecodecs WebP (lossy), quality ladder",
    "jpeg2000": "imagecodecs JPEG 2000 (OpenJPEG), target-PSNR ladder",
    "jpegxl": "imagecodecs JPEG XL (libjxl), distance ladder",
}


def summarise(per: dict[str, dict[float, list[Record]]]) -> dict[str, dict[str, Any]]:
    """CompressAI-style curves: per method, rate points sorted by bpp, metrics averaged over images."""
    out = {}
    for method, by_param in per.items():
        params = sorted(by_param, key=lambda p: float(np.mean([r["bpp"] for r in by_param[p]])))
        keys = ("bpp", "psnr", "ms-ssim", "encoding_time", "decoding_time", "bytes")
        res = {k: [float(np.mean([r[k] for r in by_param[p]])) for p in params] for k in keys}
        out[method] = {
            "name": method,
            "description": DESCRIPTIONS.get(method, method),
            "params": params,
            "n_images": min(len(v) for v in by_param.values()),
            "results": res,
        }
    return out


def at_bpp(curve: dict[str, Any], bpp: float, key: str = "psnr") -> float | None:
    """``key`` linearly interpolated at ``bpp`` on a method's curve, or None outside its range."""
    x = np.array(curve["results"]["bpp"])
    y = np.array(curve["results"][key])
    if len(x) == 0 or bpp < x.min() - 1e-9 or bpp > x.max() + 1e-9:
        return None
    if len(x) == 1:
        return float(y[0])
    return float(np.interp(bpp, x, y))


def _at(curve: dict[str, Any], bpp: float) -> str:
    """'PSNR / MS-SSIM' at ``bpp``, or the curve's closest end point when it does not reach ``bpp``."""
    p, s = at_bpp(curve, bpp), at_bpp(curve, bpp, "ms-ssim")
    if p is not None and s is not None:
        return f"{p:.2f} / {s:.4f}"
    r = curve["results"]
    k = int(np.argmin([abs(b - bpp) for b in r["bpp"]]))
    return f"({r['psnr'][k]:.2f} / {r['ms-ssim'][k]:.4f} at {r['bpp'][k]:.2f})"


def markdown(result: dict[str, Any]) -> str:
    t = result["target_bpp"]
    targets = (t / 2, t)
    lines = [
        f"Rate-distortion on {result['n_images']} unseen {result['dataset']}/test images (centre {result['crop']} px "
        f"crops, {result['channels']} channel(s), raw {8 * result['channels']} bpp), model {result['model']}. "
        "Payload bytes only, perfect link.",
        "",
        f"PSNR (dB) / MS-SSIM at {targets[0]:g} and {targets[1]:g} bpp (5% and 10% of raw), interpolated on each "
        "mean curve; in brackets: the curve does not reach that rate, its closest point (value at bpp). Times: "
        "median over rate points of the mean per image, this (shared, 2-core) machine.",
        "",
        f"| method | at {targets[0]:g} bpp | at {targets[1]:g} bpp | bpp range | enc ms/img | dec ms/img |",
        "|---|---:|---:|---|---:|---:|",
    ]
    order = sorted(result["methods"].items(), key=lambda mc: -(at_bpp(mc[1], t) or at_bpp(mc[1], t / 2) or 0.0))
    for m, c in order:
        r = c["results"]
        lines.append(
            f"| {m} | {_at(c, targets[0])} | {_at(c, targets[1])} | {min(r['bpp']):.3f}–{max(r['bpp']):.3f} | "
            f"{1e3 * np.median(r['encoding_time']):.1f} | {1e3 * np.median(r['decoding_time']):.1f} |"
        )
    lines += ["", "Curves (mean over images per rate point): parameter → bpp / PSNR dB / MS-SSIM", ""]
    for m, c in result["methods"].items():
        r = c["results"]
        pts = "; ".join(
            f"{p:g} → {b:.3f} / {q:.2f} / {s:.4f}"
            for p, b, q, s in zip(c["params"], r["bpp"], r["psnr"], r["ms-ssim"], strict=True)
        )
        lines.append(f"- **{m}**: {pts}")
    lines += ["", f"`{result['command']}` ({result['seconds_total']:.0f} s, commit {result['machine'].get('commit')})"]
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for m, c in result["methods"].items():
        r = c["results"]
        style = "s--" if m.startswith("latent") else ("o-" if m.startswith("sparse") else ".-")
        axes[0].plot(r["bpp"], r["psnr"], style, label=m, ms=4)
        msdb = [-10 * np.log10(max(1e-12, 1 - v)) if v == v else np.nan for v in r["ms-ssim"]]
        axes[1].plot(r["bpp"], msdb, style, label=m, ms=4)
    for ax, lab in zip(axes, ("PSNR (dB)", "MS-SSIM (dB, -10 log10(1 - MS-SSIM))"), strict=True):
        ax.axvline(result["target_bpp"], color="grey", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.set_xlabel("bits per pixel")
        ax.set_ylabel(lab)
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Rate-distortion, {result['n_images']} unseen {result['dataset']} test crops ({result['crop']} px)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_outputs(result: dict[str, Any], out: Path) -> None:
    """One CompressAI JSON per method, ``results.json`` and ``results.md`` under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    for m, curve in result["methods"].items():
        (out / f"{re.sub(r'[^a-z0-9]+', '_', m.lower()).strip('_')}.json").write_text(json.dumps(curve, indent=2))
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "results.md").write_text(markdown(result))
    plot(result, out / "rd.png")

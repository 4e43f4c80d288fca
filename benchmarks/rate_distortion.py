"""Rate-distortion on unseen images: sparse pixels + CAE, latent downlink, and image codecs at matched bytes.

For every image of ``--dataset``/``test`` (never trained on), centre-cropped to ``--crop``, 8-bit samples:

- ``sparse+cae`` / ``sparse+telea``: keep a fraction of the pixels (seeded uniform mask; the ground
  regenerates it from the seed, so only the values are sent), rebuild with the zoo CAE
  (:func:`edgeae.reconstruct.reconstruct`) or OpenCV Telea. Bytes: the sampled values as they are
  (``raw``: 8 bits × channels per kept pixel) and losslessly coded, all of a frame's values as one stream, with
  the wire format's ``delta-deflate`` and ``ccsds121`` codecs (:mod:`edgeae.wire.codec`). On the wire each 1 KB
  packet is coded on its own, where ccsds121 is the smaller (``benchmarks/lossless_coding.py``); as one stream
  deflate's dictionary spans the frame and delta-deflate can come out ahead.
- ``latent``: the CAE encoder on 128×128 tiles, latents quantised to N-bit integers
  with one float32 scale per tile (``max|z| / (2**(N-1) - 1)``), deflate-coded (N-bit values in int8
  containers, zlib 9; ``int8 raw``: no coding), then the CAE decoder per tile. The encoder sees each tile
  through one fixed mask keeping ``--latent-keep`` (default 0.5) of the pixels: the gt-CAE was trained on
  50-99% destroyed inputs and encodes a complete tile worse (measured: ~15 dB vs ~22 dB on a rover crop).
- ``jpeg`` (OpenCV), ``jpeg2000``, ``webp``, ``jpegxl`` (imagecodecs) over a ladder of qualities.

Bytes are payload bytes (no packet headers; a frame header of a few bytes is ignored for every method).
bpp = 8 × bytes / (H × W). PSNR over all pixels and channels (data range 1); MS-SSIM as in Wang et al. 2003
(5 scales, weights 0.0448/0.2856/0.3001/0.2363/0.1333, 11×11 Gaussian σ = 1.5, valid filtering, 2×2
average downsampling, per channel then averaged; the pytorch_msssim convention). Times are wall seconds
per image on this machine (CPU, shared), including model inference where there is one.

    .venv/bin/python benchmarks/rate_distortion.py --out runs/rate_distortion [--quick]

Writes one CompressAI-style JSON per method (``{"name", "description", "results": {"bpp", "psnr",
"ms-ssim", "encoding_time", "decoding_time"}}``, means over images per rate point), ``results.json``
(all of them + settings), ``results.md`` and ``rd.png``.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgeae.datasets import split_files
from edgeae.ground import baselines
from edgeae.imageio import read_image
from edgeae.masks import PRNG_VERSION, make_mask
from edgeae.metrics import psnr
from edgeae.reconstruct import reconstruct
from edgeae.wire.codec import CODECS, decode_samples, encode_samples

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from any folder
from benchmarks.machine import machine_info
from benchmarks.reconstruction_sweep import centre_crop

log = logging.getLogger("rate_distortion")

MSSSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
KEEPS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5)
LATENT_BITS = (3, 4, 5, 6, 8)
LADDERS: dict[str, tuple[float, ...]] = {
    "jpeg": (5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95),  # quality
    "webp": (5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95),  # quality
    "jpeg2000": (22, 25, 28, 31, 34, 37, 40, 44, 48),  # target PSNR (dB) of the single quality layer
    "jpegxl": (12.0, 8.0, 6.0, 4.0, 3.0, 2.0, 1.5, 1.0, 0.5),  # butteraugli distance
}
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


# ------------------------------------------------------------------------------------------ MS-SSIM
def _gauss_valid(x: np.ndarray, size: int = 11, sigma: float = 1.5) -> np.ndarray:
    """Separable Gaussian filter of (H, W) keeping only fully covered outputs ('valid')."""
    from scipy.ndimage import correlate1d

    g = np.exp(-((np.arange(size) - size // 2) ** 2) / (2 * sigma**2))
    g /= g.sum()
    y = correlate1d(correlate1d(x, g, axis=0, mode="constant"), g, axis=1, mode="constant")
    r = size // 2
    return y[r : y.shape[0] - r, r : y.shape[1] - r]


def _ssim_cs(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    c1, c2 = 0.01**2, 0.03**2
    mu_a, mu_b = _gauss_valid(a), _gauss_valid(b)
    saa = _gauss_valid(a * a) - mu_a**2
    sbb = _gauss_valid(b * b) - mu_b**2
    sab = _gauss_valid(a * b) - mu_a * mu_b
    cs = (2 * sab + c2) / (saa + sbb + c2)
    lum = (2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1)
    return float(np.mean(lum * cs)), float(np.mean(cs))


def ms_ssim(original: np.ndarray, recon: np.ndarray) -> float:
    """Multi-scale SSIM (Wang 2003) of (H, W[, C]) images in [0, 1]; needs min(H, W) >= 176 (else nan)."""
    a = np.asarray(original, np.float64)
    b = np.asarray(recon, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"cannot compare images of shapes {a.shape} and {b.shape}")
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    if min(a.shape[:2]) < 11 * 2 ** (len(MSSSIM_WEIGHTS) - 1):
        return float("nan")
    w = np.array(MSSSIM_WEIGHTS)
    vals = []
    for c in range(a.shape[2]):
        x, y = a[..., c], b[..., c]
        cs_list = []
        for level in range(len(w)):
            ssim, cs = _ssim_cs(x, y)
            cs_list.append(max(cs, 0.0))
            if level < len(w) - 1:
                h2, w2 = x.shape[0] // 2 * 2, x.shape[1] // 2 * 2
                x = x[:h2, :w2].reshape(h2 // 2, 2, w2 // 2, 2).mean(axis=(1, 3))
                y = y[:h2, :w2].reshape(h2 // 2, 2, w2 // 2, 2).mean(axis=(1, 3))
        vals.append(float(np.prod(np.array(cs_list[:-1]) ** w[:-1]) * max(ssim, 0.0) ** w[-1]))
    return float(np.mean(vals))


# ------------------------------------------------------------------------------------------ methods
Record = dict[str, float]


def _record(orig: np.ndarray, recon: np.ndarray, nbytes: int, enc_s: float, dec_s: float) -> Record:
    h, w = orig.shape[:2]
    recon = np.clip(recon, 0.0, 1.0)
    return {
        "bytes": float(nbytes),
        "bpp": 8.0 * nbytes / (h * w),
        "psnr": psnr(orig, recon),
        "ms-ssim": ms_ssim(orig, recon),
        "encoding_time": enc_s,
        "decoding_time": dec_s,
    }


SAMPLE_CODECS = ("delta-deflate", "ccsds121")
"""Lossless codecs of the kept values, each coding all of a frame's values as one stream (no packets)."""


def sparse_points(
    samples: np.ndarray, seed: int, keeps: tuple[float, ...], fills: dict[str, Any]
) -> Iterator[tuple[str, float, Record]]:
    """(method, keep, record) for every keep fraction and fill (name -> predictor or None for classical): the
    kept values raw and under each of :data:`SAMPLE_CODECS` (same reconstruction, different bytes)."""
    h, w, c = samples.shape
    orig = samples.astype(np.float32) / 255.0
    for keep in keeps:
        t0 = time.perf_counter()
        known = make_mask(seed, (h, w), keep)
        values = samples[known]
        t_sample = time.perf_counter() - t0
        coded = {}
        for name in SAMPLE_CODECS:
            t0 = time.perf_counter()
            blob = encode_samples(values, CODECS[name], 8)
            t_code = time.perf_counter() - t0
            t0 = time.perf_counter()
            got = decode_samples(blob, CODECS[name], np.dtype(np.uint8), values.shape, 8)
            coded[name] = (len(blob), t_code, time.perf_counter() - t0)
        known_g = make_mask(seed, (h, w), keep)  # the ground regenerates the mask from the seed
        img = np.zeros((h, w, c), np.float32)
        img[known_g] = got.astype(np.float32) / 255.0
        for name, predictor in fills.items():
            t0 = time.perf_counter()
            recon = reconstruct(img, known_g, "cae" if predictor is not None else name, predictor, progress=False)
            t_fill = time.perf_counter() - t0
            yield f"sparse+{name} (raw)", keep, _record(orig, recon, values.nbytes, t_sample, t_fill)
            for cname, (nbytes, t_code, t_uncode) in coded.items():
                rec = _record(orig, recon, nbytes, t_sample + t_code, t_uncode + t_fill)
                yield f"sparse+{name} ({cname})", keep, rec


def latent_points(
    samples: np.ndarray, encoder: Callable[[np.ndarray], np.ndarray], decoder: Callable[[np.ndarray], np.ndarray],
    bits: tuple[int, ...], tile: int = 128, input_keep: float = 0.5, seed: int = 0,
) -> Iterator[tuple[str, float, Record]]:  # fmt: skip
    """(method, bits, record): per-tile-scaled N-bit latents, deflate-coded (and int8 uncoded)."""
    from edgeae.tiling import blend_tiles, extract_tiles, tile_positions

    h, w, c = samples.shape
    orig = samples.astype(np.float32) / 255.0
    t0 = time.perf_counter()
    pos = tile_positions(h, w, tile, tile)
    x = np.ascontiguousarray(extract_tiles(orig, pos, tile).transpose(0, 3, 1, 2))
    if input_keep < 1.0:  # the encoder's input as flight and edgeae.ground.pipeline.encode_latents give it
        from edgeae.cae_input import encoder_input_mask, mask_encoder_input

        keep, pattern = encoder_input_mask(getattr(encoder, "metadata", None), input_keep)
        frame_mask = make_mask(seed, (h, w), keep, pattern)[..., None]
        mask_encoder_input(x, extract_tiles(frame_mask, pos, tile)[..., 0])
    z = np.asarray(encoder(x), np.float32)
    t_enc = time.perf_counter() - t0
    zmax = np.abs(z).reshape(len(z), -1).max(axis=1).reshape(-1, 1, 1, 1)
    for nb in bits:
        t0 = time.perf_counter()
        top = 2 ** (nb - 1) - 1
        scale = (np.where(zmax > 0, zmax, 1.0) / top).astype(np.float32)
        q = np.clip(np.round(z / scale), -top, top).astype(np.int8)
        blob = zlib.compress(q.tobytes(), 9)
        t_q = time.perf_counter() - t0
        t0 = time.perf_counter()
        q2 = np.frombuffer(zlib.decompress(blob), np.int8).reshape(q.shape)
        y = np.asarray(decoder(q2.astype(np.float32) * scale), np.float32)
        recon = blend_tiles(y.transpose(0, 2, 3, 1), pos, (h, w, c), tile, window="uniform")
        t_dec = time.perf_counter() - t0
        side = scale.nbytes  # one float32 scale per tile
        yield "latent intN (deflate)", float(nb), _record(orig, recon, len(blob) + side, t_enc + t_q, t_dec)
        if nb == 8:
            yield "latent int8 (raw)", 8.0, _record(orig, recon, q.nbytes + side, t_enc + t_q, t_dec)


def codec_roundtrip(img: np.ndarray, codec: str, q: float) -> tuple[bytes, np.ndarray, float, float]:
    """Encode uint8 (H, W, C) with ``codec`` at ``q``; (bytes, decoded (H, W, C) uint8, enc s, dec s)."""
    if codec not in LADDERS:
        raise ValueError(f"unknown codec {codec!r}; choose from {sorted(LADDERS)}")
    return baselines.roundtrip(img, codec, q)


def codec_points(samples: np.ndarray, codecs: tuple[str, ...]) -> Iterator[tuple[str, float, Record]]:
    orig = samples.astype(np.float32) / 255.0
    for codec in codecs:
        for q in LADDERS[codec]:
            data, out, te, td = codec_roundtrip(samples, codec, q)
            yield codec, float(q), _record(orig, out.astype(np.float32) / 255.0, len(data), te, td)


# ------------------------------------------------------------------------------------------ summary
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


# ------------------------------------------------------------------------------------------ CLI
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.rate_distortion", description=__doc__.splitlines()[0] if __doc__ else None
    )
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--quick", action="store_true", help="3 images, fewer keep fractions")
    p.add_argument("--dataset", default="rover_rgb", choices=("rover_rgb", "orbital_gray"))
    p.add_argument("--model", help="CAE zoo name or .pt checkpoint (default: the dataset's gt-CAE)")
    p.add_argument("--data", help="shared data folder (default $EDGEAE_DATA or ../shared/data)")
    p.add_argument("--crop", type=int, default=512, help="centre crop to at most N×N pixels")
    p.add_argument("--limit", type=int, default=0, help="only the first N test images (0: all)")
    p.add_argument("--keeps", help=f"comma-separated keep fractions (default {','.join(map(str, KEEPS))})")
    p.add_argument("--codecs", default="jpeg,jpeg2000,webp,jpegxl")
    p.add_argument("--no-latent", action="store_true", help="skip the latent downlink")
    p.add_argument(
        "--latent-model", help="CAE with an encoder/decoder split for the latents (default: the dataset's seed gt-CAE)"
    )
    p.add_argument("--latent-keep", type=float, default=0.5, help="fraction of each tile the encoder sees")
    p.add_argument("--seed", type=int, default=0, help="mask seed of image i is seed + i")
    p.add_argument("--threads", type=int, help="torch threads")
    p.add_argument("--render", action="store_true", help="only rewrite results.md and rd.png from --out/results.json")
    return p.parse_args(argv)


# the latent downlink needs the seed CAE's encoder/decoder split (the U-Net variant has skips)
LATENT_MODELS = {3: "rover-rgb-gtcae", 1: "orbital-gray-gtcae"}


def _torch_parts(model: str) -> tuple[Any, Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]:
    """(metadata, encoder, decoder) of a CAE checkpoint as numpy -> numpy functions."""
    import torch

    from edgeae.checkpoint import load_checkpoint
    from edgeae.predictor import resolve_model_path

    ck = load_checkpoint(resolve_model_path(model))
    net = ck.model.eval()

    def run(module: Any) -> Callable[[np.ndarray], np.ndarray]:
        def f(x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return np.concatenate([module(torch.from_numpy(x[i : i + 32])).numpy() for i in range(0, len(x), 32)])

        return f

    return ck.metadata, run(net.encoder), run(net.decoder)


def write_outputs(result: dict[str, Any], out: Path) -> None:
    """One CompressAI JSON per method, ``results.json`` and ``results.md`` under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    for m, curve in result["methods"].items():
        (out / f"{re.sub(r'[^a-z0-9]+', '_', m.lower()).strip('_')}.json").write_text(json.dumps(curve, indent=2))
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "results.md").write_text(markdown(result))
    plot(result, out / "rd.png")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.render:
        write_outputs(json.loads((args.out / "results.json").read_text()), args.out)
        print((args.out / "results.md").read_text())
        return 0
    from edgeae.metadata import sha256_file
    from edgeae.predictor import load_predictor, resolve_model_path
    from edgeae.reconstruct import DEFAULT_MODELS

    channels = 3 if args.dataset == "rover_rgb" else 1
    model = args.model or DEFAULT_MODELS[channels]
    predictor = load_predictor(model, threads=args.threads)
    if int(predictor.metadata.channels) != channels:
        raise SystemExit(f"{model} has {predictor.metadata.channels} channel(s); {args.dataset} has {channels}")
    keeps = tuple(float(k) for k in args.keeps.split(",")) if args.keeps else (
        (0.02, 0.1, 0.3) if args.quick else KEEPS
    )  # fmt: skip
    codecs = tuple(c for c in args.codecs.split(",") if c)
    files = split_files(args.dataset, "test", root=args.data)
    limit = args.limit or (3 if args.quick else 0)
    files = files[:limit] if limit else files
    per: dict[str, dict[float, list[Record]]] = {}
    enc = dec = None
    latent_model = args.latent_model or LATENT_MODELS[channels]
    if not args.no_latent:
        _, enc, dec = _torch_parts(latent_model)
    t_start = time.perf_counter()
    result: dict[str, Any] = {
        "benchmark": "rate_distortion",
        "command": " ".join(["python benchmarks/rate_distortion.py", *(sys.argv[1:] if argv is None else argv)]),
        "machine": machine_info(),
        "dataset": args.dataset,
        "model": model,
        "model_sha256": sha256_file(resolve_model_path(model)),
        "latent_model": latent_model,
        "channels": channels,
        "crop": args.crop,
        "seed": args.seed,
        "prng_version": PRNG_VERSION,
        "keeps": list(keeps),
        "latent_bits": list(LATENT_BITS),
        "latent_input_keep": args.latent_keep,
        "images": [],
        "n_images": 0,
        "target_bpp": 0.1 * 8 * channels,
        "bytes": "payload bytes: sampled values / latents + per-tile scales / codec file; no packet headers",
        "ms_ssim": "Wang 2003, 5 scales, 11x11 Gaussian sigma 1.5, valid filtering, per channel then mean",
    }
    for i, path in enumerate(files):
        px = read_image(path, channels=channels).pixels
        samples = np.round(np.clip(centre_crop(px, args.crop), 0, 1) * 255).astype(np.uint8)
        points = [
            *sparse_points(samples, args.seed + i, keeps, {"cae": predictor, "telea": None}),
            *(latent_points(samples, enc, dec, LATENT_BITS, input_keep=args.latent_keep) if enc and dec else []),
            *codec_points(samples, codecs),
        ]
        for method, param, rec in points:
            per.setdefault(method, {}).setdefault(param, []).append(rec)
        result["images"].append([path.name, list(samples.shape)])
        result["n_images"] = len(result["images"])
        result["methods"] = summarise(per)
        result["seconds_total"] = time.perf_counter() - t_start
        write_outputs(result, args.out)  # after every image, so a cut-off run leaves usable results
        log.info("%s %s: %d rate points (%.0f s)", path.name, samples.shape, len(points), result["seconds_total"])
    print(markdown(result))
    print(f"wrote {args.out}/results.json, results.md, rd.png and one JSON per method")
    return 0


if __name__ == "__main__":
    sys.exit(main())

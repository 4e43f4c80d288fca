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
The rate points of each method are measured in :mod:`benchmarks.rate_distortion_points`, summarised and written
by :mod:`benchmarks.rate_distortion_report`; their names are importable from here too.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgeae.datasets import split_files
from edgeae.imageio import read_image
from edgeae.masks import PRNG_VERSION
from edgeae.masks import make_mask as make_mask
from edgeae.metrics import psnr as psnr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from any folder
from benchmarks.machine import machine_info
from benchmarks.rate_distortion_points import LADDERS as LADDERS
from benchmarks.rate_distortion_points import MSSSIM_WEIGHTS as MSSSIM_WEIGHTS
from benchmarks.rate_distortion_points import SAMPLE_CODECS as SAMPLE_CODECS
from benchmarks.rate_distortion_points import Record as Record
from benchmarks.rate_distortion_points import codec_points as codec_points
from benchmarks.rate_distortion_points import codec_roundtrip as codec_roundtrip
from benchmarks.rate_distortion_points import latent_points as latent_points
from benchmarks.rate_distortion_points import ms_ssim as ms_ssim
from benchmarks.rate_distortion_points import sparse_points as sparse_points
from benchmarks.rate_distortion_report import DESCRIPTIONS as DESCRIPTIONS
from benchmarks.rate_distortion_report import at_bpp as at_bpp
from benchmarks.rate_distortion_report import markdown as markdown
from benchmarks.rate_distortion_report import plot as plot
from benchmarks.rate_distortion_report import summarise as summarise
from benchmarks.rate_distortion_report import write_outputs as write_outputs
from benchmarks.reconstruction_sweep import centre_crop

log = logging.getLogger("rate_distortion")

KEEPS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5)
LATENT_BITS = (3, 4, 5, 6, 8)


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
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="mask seed of image i is seed + i (the sparse methods; the latent downlink's encoder input mask "
        "is seed 0, as published)",
    )
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
    unknown = [c for c in codecs if c not in LADDERS]
    if unknown:
        raise SystemExit(f"--codecs: unknown {unknown}; choose from {', '.join(LADDERS)}")
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

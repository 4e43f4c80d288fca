"""What ``edgeae reconstruct`` needs in memory to fill an image, and the refusal before it allocates.

The figures are measured peak RSS per pixel and channel for each method (the comments say how), rounded up:
an estimate meant to be high, so a refusal is safe and an accepted image fits.
"""

from __future__ import annotations

import argparse

# Peak RSS of `edgeae reconstruct` grows per pixel by A + B × channels bytes, measured per method (session 32:
# /usr/bin/time -f %M on 4 Mpx grey and RGB PNG crops of real frames (HiRISE browse, MarsScapes) at keep 0.1, less
# the RSS on a 64×64 image, 2 cores; grey / RGB B/px: nearest 24.6 / 61.9, linear 111.5 / 136.8, normconv
# 46.5 / 119.8, telea 32.5 / 79.3, ns 29.9 / 70.9; the image, its float copy, the mask, the fill's work arrays, the
# written samples; the metrics work in bands), rounded up by a third. The CAE keeps session 29's figure (grey
# 89-135, RGB 142-188 B/px, rounded up) and adds ~650 MB for PyTorch and the model whatever the size; the
# cross-check's extra fills add little (grey 110 B/px). Nearest on a float32 TIFF with a NaN margin takes more than
# on a PNG (review s32: 35.1 B/px at 4 Mpx, 36.8 at 12 Mpx grey; the declared-valid masks and the masked copy):
# its grey figure is 39 B/px. Session 38, the same way (a 4 Mpx grey HiRISE browse crop, a 2.4 Mpx RGB MarsScapes
# frame): normconv-wide 46.1 / 122.1 as normconv (46.1 / 122.1 in the same run), blend 115.4 / 147.8 (linear 111.0 /
# 135.3 in the same run: blend runs linear, then normconv-wide beside linear's output).
FILL_BYTES_PER_PIXEL = {  # method: (bytes per pixel, bytes per pixel and channel)
    "cae": (130, 40), "linear": (132, 17), "nearest": (14, 25), "normconv": (14, 49), "telea": (12, 32),
    "ns": (12, 28), "normconv-wide": (14, 49), "blend": (132, 22),
}  # fmt: skip
FILL_BASE_BYTES = {"cae": 700 * 2**20, "linear": 80 * 2**20, "blend": 80 * 2**20}  # scipy's Delaunay for linear
TRIANGULATED = ("linear", "blend")  # the fills that triangulate the kept samples
CROSS_CHECK_FACTOR = 1.25
# linear interpolation (and the cross-check, which runs it) triangulates the kept samples: ~1.8 KB more peak RSS
# per kept sample (session 29 review: a 1000×1000 grey PNG, `/usr/bin/time -f %M edgeae reconstruct big.png
# --method linear --keep K -o x.png`, 227 MB at keep 0.1, 1.65 GB at keep 0.9), rounded up
LINEAR_BYTES_PER_SAMPLE = 2048


def fill_bytes(method: str, pixels: int, channels: int, cross_check: bool, kept: int = 0) -> int:
    """Rough, deliberately high estimate of the memory ``edgeae reconstruct`` needs to fill an image from
    ``kept`` samples."""
    base, per_channel = FILL_BYTES_PER_PIXEL.get(method, FILL_BYTES_PER_PIXEL["cae"])
    per_pixel = (base + per_channel * max(channels, 1)) * pixels
    triangulated = LINEAR_BYTES_PER_SAMPLE * kept if method in TRIANGULATED or cross_check else 0
    return int(per_pixel * (CROSS_CHECK_FACTOR if cross_check else 1.0)) + triangulated + FILL_BASE_BYTES.get(method, 0)


def check_memory(args: argparse.Namespace, shape: tuple[int, ...], cross_check: bool, kept: int = 0) -> None:
    """Refuse, before the fill allocates, an image whose fill would not fit in the memory available now."""
    from edgeae.cli import CLIError
    from edgeae.ground import limits  # stdlib only: the same figure the ground station and the CAE batch use

    h, w, c = shape
    need, have = fill_bytes(args.method, h * w, c, cross_check, kept), limits.available_memory()
    if have is not None and need > have:
        raise CLIError(
            f"{args.image}: rebuilding {h}×{w}×{c} with --method {args.method}"
            f"{' and the cross-check' if cross_check else ''} needs about {need / 2**30:.1f} GiB, more than the "
            f"{have / 2**30:.1f} GiB available: crop the image and rebuild the crop (in Python: "
            "px = edgeae.read_image(PATH).pixels[y0:y1, x0:x1], then edgeae.fill(px, "
            "edgeae.make_mask(SEED, px.shape[:2], KEEP), METHOD), edgeae.write_image)"
        )

"""Pack the training and validation files of named datasets for a lent GPU machine.

The device tool sends the repository and what ``carry`` names, 64 MiB in all, and nothing of ``../shared``.
The rover panoramas alone are 88 MB of PNG, so this writes every file of the train and val splits under
``OUT/<same relative path>``: files over ``--min-kb`` that are PNG are re-encoded as JPEG (quality 95, 4:4:4,
~58 dB PSNR against the PNG, far above any reconstruction error in training) under their original names
(edgeae's reader sniffs the content, not the suffix); JPEGs are copied as they are. Test files are never packed.

    python scripts/gpu_pack.py rover_rgb_v2 orbital_gray_v2 --out .gpu/data
    # then, on the device: edgeae train cae --data rover_rgb_v2 --data-root .gpu/data ...

Prints each file's size before and after and the PSNR of the re-encoding.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    import cv2

    from edgeae.data import data_root
    from edgeae.datasets import SPLITS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("datasets", nargs="+", choices=sorted(SPLITS))
    ap.add_argument("--out", default=".gpu/data")
    ap.add_argument("--quality", type=int, default=95)
    ap.add_argument("--min-kb", type=int, default=300, help="re-encode PNGs larger than this (default 300 kB)")
    args = ap.parse_args(argv)
    root, out = data_root(), Path(args.out)
    total_in = total_out = 0
    worst = float("inf")
    for ds in args.datasets:
        for split in ("train", "val"):
            for rel in SPLITS[ds][split]:
                src, dst = root / rel, out / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                size = src.stat().st_size
                if src.suffix.lower() == ".png" and size > args.min_kb * 1000:
                    img = cv2.imread(str(src), cv2.IMREAD_UNCHANGED)
                    if img is None or img.dtype != np.uint8:
                        raise SystemExit(f"{src}: not an 8-bit PNG OpenCV can read")
                    params = [cv2.IMWRITE_JPEG_QUALITY, args.quality]
                    params += [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
                    ok, buf = cv2.imencode(".jpg", img, params)
                    if not ok:
                        raise SystemExit(f"{src}: JPEG encoding failed")
                    back = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED).astype(np.float64)
                    mse = float(np.mean((back - img) ** 2))
                    psnr = 10 * np.log10(255.0**2 / mse) if mse > 0 else float("inf")
                    worst = min(worst, psnr)
                    buf.tofile(dst)
                    note = f"JPEG q{args.quality}, {psnr:.1f} dB"
                else:
                    shutil.copyfile(src, dst)
                    note = "copied"
                total_in += size
                total_out += dst.stat().st_size
                print(f"{ds}/{split}  {rel}  {size / 1e6:.2f} -> {dst.stat().st_size / 1e6:.2f} MB  ({note})")
    print(f"packed {total_in / 1e6:.1f} MB as {total_out / 1e6:.1f} MB under {out}; worst re-encoding {worst:.1f} dB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

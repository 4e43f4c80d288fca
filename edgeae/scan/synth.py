"""Build a synthetic scan archive from the real orbital images: crops, copies, huge strips, corrupt files.

    python -m edgeae.scan.synth --out runs/archive --n 300

Everything is derived from the grey orbital images in the data folder (``orbital_gray/``) and a seed, so
anyone can rebuild the same archive. The folder gets ``SYNTH.json`` (what was written, and which files are
corrupt on purpose) and ``manifest.txt`` (every file, one a line, for ``edgeae scan manifest.txt``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgeae._optional import require

SOURCE_GLOBS = (
    "orbital_gray/lroc_nac_craters/*.png",
    "orbital_gray/hirise_browse/*.jpg",
    "orbital_gray/pycda/selection*.png",
    "orbital_gray/misc/*.png",
)
CORRUPT_KINDS = ("truncated-png", "random-bytes", "empty-jpeg", "truncated-tiff")


def source_images(root: Path, globs: Sequence[str] = SOURCE_GLOBS) -> list[Path]:
    files = sorted(p for g in globs for p in root.glob(g))
    if not files:
        raise FileNotFoundError(f"no orbital images under {root} (looked for {', '.join(globs)})")
    return files


def _corrupt(path: Path, kind: str, sample: bytes, rng: np.random.Generator) -> None:
    if kind == "truncated-png":
        path.write_bytes(sample[: max(64, len(sample) // 3)])
    elif kind == "random-bytes":
        path.write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    elif kind == "empty-jpeg":
        path.write_bytes(b"")
    else:  # a TIFF header whose first IFD points past the end of the file
        path.write_bytes(b"II*\x00" + (10**6).to_bytes(4, "little") + bytes(32))


def build_archive(
    out: str | os.PathLike[str],
    n: int = 300,
    *,
    data: str | os.PathLike[str] | None = None,
    seed: int = 0,
    n_huge: int = 2,
    huge_shape: tuple[int, int] = (16384, 2560),
    n_corrupt: int = 4,
    min_side: int = 96,
    max_side: int = 900,
    source_globs: Sequence[str] = SOURCE_GLOBS,
    progress: bool = True,
) -> dict[str, object]:
    """Write ``n`` images (crops of real orbital images as PNG/JPEG/TIFF in sub-folders, a few exact copies,
    ``n_huge`` tiled BigTIFF strips of ``huge_shape`` and ``n_corrupt`` broken files) under ``out``.

    ``source_globs`` (relative to the data folder) choose the real images the archive is cut from.
    """
    from edgeae.data import data_root
    from edgeae.imageio import read_image, write_image
    from edgeae.strips import write_tiled_bigtiff

    if n < n_huge + n_corrupt + 1:
        raise ValueError(f"n={n} must exceed n_huge + n_corrupt = {n_huge + n_corrupt}")
    root = data_root(data)
    sources = source_images(root, source_globs)
    rng = np.random.default_rng(seed)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    pixels = [np.round(read_image(p, channels=1).pixels[:, :, 0] * 255).astype(np.uint8) for p in sources]
    written: list[str] = []
    corrupt: dict[str, str] = {}
    n_crops = n - n_huge - n_corrupt
    tqdm = require("tqdm").tqdm
    for i in tqdm(range(n_crops), desc="crops", disable=not progress):
        folder = f"orbit_{i // 50:03d}"
        k = int(rng.integers(len(sources)))
        img = pixels[k]
        if i % 40 == 39:  # an exact copy of a whole real image
            name = f"{folder}/copy_{i:04d}{sources[k].suffix}"
            (out_dir / folder).mkdir(exist_ok=True)
            (out_dir / name).write_bytes(sources[k].read_bytes())
            written.append(name)
            continue
        h = int(rng.integers(min_side, min(max_side, img.shape[0]) + 1))
        w = int(rng.integers(min_side, min(max_side, img.shape[1]) + 1))
        y = int(rng.integers(img.shape[0] - h + 1))
        x = int(rng.integers(img.shape[1] - w + 1))
        crop = img[y : y + h, x : x + w]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        ext = (".png", ".png", ".jpg", ".tif")[i % 4]
        name = f"{folder}/crop_{i:04d}{ext}"
        write_image(out_dir / name, np.ascontiguousarray(crop))
        written.append(name)
    for j in range(n_huge):
        name = f"strips/huge_{j:02d}.tif"
        write_tiled_bigtiff(out_dir / name, huge_shape, pixels, seed=seed + 1000 + j, nodata_margin=96, progress=False)
        written.append(name)
    sample = (out_dir / written[0]).read_bytes()
    for j in range(n_corrupt):
        kind = CORRUPT_KINDS[j % len(CORRUPT_KINDS)]
        ext = {"truncated-png": ".png", "random-bytes": ".png", "empty-jpeg": ".jpg", "truncated-tiff": ".tif"}[kind]
        name = f"corrupt/bad_{j:02d}{ext}"
        (out_dir / "corrupt").mkdir(exist_ok=True)
        _corrupt(out_dir / name, kind, sample, rng)
        written.append(name)
        corrupt[name] = kind
    (out_dir / "manifest.txt").write_text("".join(f"{w}\n" for w in sorted(written)))
    info: dict[str, object] = {
        "n": len(written),
        "seed": seed,
        "sources": [str(p.relative_to(root)) for p in sources],
        "huge_shape": list(huge_shape),
        "n_huge": n_huge,
        "corrupt": corrupt,
        "bytes": sum((out_dir / w).stat().st_size for w in written),
    }
    (out_dir / "SYNTH.json").write_text(json.dumps(info, indent=2))
    return info


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edgeae.scan.synth", description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder to write the archive into (e.g. runs/archive)")
    ap.add_argument("--n", type=int, default=300, help="number of files in all (default 300)")
    ap.add_argument(
        "--data", "--data-root", dest="data", default=None, help="data folder (default: $EDGEAE_DATA or ../shared/data)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--huge", type=int, default=2, help="number of huge tiled BigTIFF strips (default 2)")
    ap.add_argument("--huge-shape", default="16384x2560", help="H x W of each huge strip (default 16384x2560)")
    ap.add_argument("--corrupt", type=int, default=4, help="number of corrupt files (default 4)")
    args = ap.parse_args(argv)
    try:
        h, w = (int(v) for v in args.huge_shape.lower().split("x"))
    except ValueError:
        ap.error(f"--huge-shape must look like 16384x2560, got {args.huge_shape!r}")
    if args.huge < 0 or args.corrupt < 0:
        ap.error(f"--huge and --corrupt must be 0 or more, got {args.huge} and {args.corrupt}")
    if args.n < args.huge + args.corrupt + 1:  # build_archive's own check, as a usage error (not a traceback)
        ap.error(
            f"--n {args.n} must be more than --huge + --corrupt = {args.huge + args.corrupt} (the rest are crops of "
            "real images)"
        )
    info = build_archive(
        args.out, args.n, data=args.data, seed=args.seed, n_huge=args.huge, huge_shape=(h, w),
        n_corrupt=args.corrupt, progress=sys.stderr is not None and sys.stderr.isatty(),
    )  # fmt: skip  # a bar on a terminal only, as the edgeae commands draw theirs
    print(f"wrote {info['n']} files ({info['bytes']} bytes) to {args.out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

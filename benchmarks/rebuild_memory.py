"""Peak memory of the ground station's classical fills, bytes per pixel: what ``edgeae.ground.limits.REBUILD_BYTES``
holds and ``--method auto`` picks by.

    python -m benchmarks.rebuild_memory --out DIR [--size 4096] [--methods telea,normconv-wide,linear,blend]

A synthetic ``--size``² frame (a smooth pattern with noise, seed 0), grey and RGB, is sent at keep 0.1 through
``edgeae downlink simulate`` (perfect link) and rebuilt by ``edgeae ground decode --method M`` under
``/usr/bin/time -v``, one process each; its peak RSS less that of the same method on a 16 × 16 frame (the process,
its imports and the method's libraries) over the pixels gives bytes a pixel, and grey and RGB give ``a + b × C``.
About 6 minutes at 4096 px on 2 cores; Linux with GNU time only. Writes ``results.json`` and ``results.md``.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from any folder

METHODS = ("telea", "normconv-wide", "linear", "blend")


def frame(size: int, channels: int) -> np.ndarray:
    """uint8 (size, size, channels): a smooth pattern with noise (seed 0); the colour planes shifted copies."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    g = (127 + 60 * np.sin(x / 37) * np.cos(y / 53) + rng.normal(0, 20, (size, size))).clip(0, 255).astype(np.uint8)
    return g[..., None] if channels == 1 else np.stack([g, np.roll(g, 5, 0), np.roll(g, 9, 1)], -1)


def peak_rss_kb(cmd: list[str]) -> int:
    """Peak RSS (KiB) of ``cmd`` by GNU time; raises when the command fails."""
    res = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr[-800:]}")
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", res.stderr)
    if m is None:
        raise RuntimeError("GNU time printed no maximum resident set size")
    return int(m.group(1))


def packets(work: Path, name: str, img: np.ndarray) -> Path:
    from edgeae.imageio import write_image

    png = work / f"{name}.png"
    write_image(png, img)
    out = work / f"{name}.bin"
    channels = ["--channels", "1"] if img.shape[2] == 1 else []
    cmd = [sys.executable, "-m", "edgeae", "downlink", "simulate", "--image", str(png), "--keep", "0.1", "--out",
           str(out), "--force", "--no-progress", *channels]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True)
    return out


def measure(work: Path, size: int, methods: tuple[str, ...]) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    bins = {(n, c): packets(work, f"{n}{c}", frame(s, c)) for n, s in (("tiny", 16), ("big", size)) for c in (1, 3)}
    for m in methods:
        per: dict[int, float] = {}
        for c in (1, 3):
            kb = {}
            for n in ("tiny", "big"):
                out = work / f"out_{n}{c}_{m}"
                shutil.rmtree(out, ignore_errors=True)
                kb[n] = peak_rss_kb([sys.executable, "-m", "edgeae", "ground", "decode", str(bins[(n, c)]), "--out",
                                     str(out), "--method", m, "--no-progress"])  # fmt: skip
            per[c] = (kb["big"] - kb["tiny"]) * 1024 / (size * size)
            print(f"{m}, {c} channel(s): {per[c]:.1f} B a pixel", file=sys.stderr, flush=True)  # minutes apart
            rows.setdefault(m, {})[f"peak_rss_kib_{c}ch"] = kb
        b = (per[3] - per[1]) / 2
        rows[m].update(bytes_per_pixel_grey=round(per[1], 1), bytes_per_pixel_rgb=round(per[3], 1),
                       a=round(per[1] - b, 1), b=round(b, 1))  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.rebuild_memory", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for results.json and results.md")
    ap.add_argument("--size", type=int, default=4096, help="frame side in pixels (default 4096)")
    ap.add_argument("--methods", default=",".join(METHODS), help=f"fills to measure (default {','.join(METHODS)})")
    args = ap.parse_args(argv)
    if args.size < 64:
        ap.error("--size must be at least 64")
    if not Path("/usr/bin/time").exists():
        ap.error("needs GNU time at /usr/bin/time (Debian: apt-get install time)")
    from benchmarks.machine import machine_info
    from edgeae.ground.limits import REBUILD_BYTES

    args.out.mkdir(parents=True, exist_ok=True)
    work = args.out / "work"
    work.mkdir(exist_ok=True)
    rows = measure(work, args.size, tuple(m for m in args.methods.split(",") if m))
    shutil.rmtree(work, ignore_errors=True)
    res = {"command": "python -m benchmarks.rebuild_memory " + " ".join(sys.argv[1:] if argv is None else argv),
           "size": args.size, "keep": 0.1, "machine": machine_info(), "methods": rows,
           "rebuild_bytes": {m: REBUILD_BYTES.get(m) for m in rows}}  # fmt: skip
    (args.out / "results.json").write_text(json.dumps(res, indent=1) + "\n")
    md = [
        "# Peak memory of the ground's classical fills",
        "",
        f"`{res['command']}`: a {args.size}² frame at keep 0.1, `edgeae ground decode --method M` under GNU time, "
        "less the same method on a 16 × 16 frame; bytes per pixel.",
        "",
        "| method | grey | RGB | a + b × C | REBUILD_BYTES (a, b) |",
        "|---|---:|---:|---|---|",
    ]
    for m, r in rows.items():
        md.append(f"| {m} | {r['bytes_per_pixel_grey']} | {r['bytes_per_pixel_rgb']} | {r['a']} + {r['b']} × C | "
                  f"{REBUILD_BYTES.get(m)} |")  # fmt: skip
    (args.out / "results.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

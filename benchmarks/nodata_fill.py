"""No-data filled before scoring, measured on the HiRISE craters (session 26: the crop's median; session 28: each
patch's own valid mean).

    python -m benchmarks.nodata_fill --out benchmarks/results/nodata_fill [--limit N] [--modes "as read,median"]

``edgeae evaluate --dataset hirise_landmarks`` (every dev crop, or a seeded sample of ``--limit``) once per mode
on the same crops: ``as read`` (a crop's black no-data border reaches the scorers as black), ``median`` (each
crop's invalid pixels set to the median of its valid ones, per channel, before anything scores it: session 26,
not adopted) and ``patch mean`` (each partial patch's invalid pixels set to that patch's valid mean, what
``edgeae score`` and ``edgeae scan`` do since session 28: ``edgeae evaluate --fill-nodata``; the patch scores
and the baselines' tiles, not the 32-px windows of the default's multi-window score). 781 of the 2,522
HiRISE landmark crops hold some no-data. Writes ``results.md`` and ``results.json`` (crater vs other: AP over
random and ROC AUC of every method, each mode).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import numpy as np

FEATURE = "class 1 crater"
MODES = {"as read": "raw", "median": "filled", "patch mean": "patch_mean"}  # mode -> its evaluate folder


Reader = Callable[[Path, int], tuple[np.ndarray, np.ndarray]]  # edgeae.anomaly.eval_datasets._read


def filled_read(read: Reader) -> Reader:
    """``read`` with every invalid pixel of the crop set to the median of its valid pixels, per channel."""

    def fill(path: Path, channels: int) -> tuple[np.ndarray, np.ndarray]:
        pix, valid = read(path, channels)
        if valid.all() or not valid.any():
            return pix, valid
        pix = pix.copy()
        for c in range(pix.shape[2]):
            band = pix[..., c]
            band[~valid] = np.median(band[valid])
        return pix, valid

    return fill


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.nodata_fill", description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--limit", type=int, default=None, help="a seeded sample of this many crops (default: all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--modes", default="as read,median", help=f"comma-separated, of: {', '.join(MODES)}")
    args = ap.parse_args(argv)
    import edgeae.anomaly.eval_datasets as ev  # score_hirise looks _read up there: the patch below must hit it
    from edgeae.cli import main as edgeae_main

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or any(m not in MODES for m in modes):
        ap.error(f"--modes takes a comma-separated list of {', '.join(MODES)}; got {args.modes!r}")
    rows: dict[str, dict[str, dict[str, float]]] = {}
    for how in modes:
        out = args.out / MODES[how]
        argv2 = ["evaluate", "--dataset", "hirise_landmarks", "--out", str(out), "--no-plots", "--no-progress",
                 "--threads", str(args.threads)] + (["--limit", str(args.limit)] if args.limit else [])  # fmt: skip
        if how == "as read":
            rc = edgeae_main(argv2)
        elif how == "median":
            with mock.patch.object(ev, "_read", filled_read(ev._read)):
                rc = edgeae_main(argv2)
        else:
            rc = edgeae_main([*argv2, "--fill-nodata"])
        if rc != 0:
            return rc
        res = json.loads((out / "hirise_landmarks" / "results.json").read_text())
        rows[how] = {
            r["method"]: {"ap_over_random": r["improvement"], "roc_auc": r["auc"]}
            for r in res["rows"]
            if r["feature"] == FEATURE
        }
    methods = list(rows[modes[0]])
    flags = ("" if args.limit is None else f" --limit {args.limit}") + (
        "" if args.modes == "as read,median" else f' --modes "{args.modes}"'
    )
    lines = [
        f"### HiRISE dev crops, {FEATURE} vs other: no-data {' / '.join(modes)}",
        "",
        f"`python -m benchmarks.nodata_fill --out {args.out}{flags}`",
        "",
        "| method | " + " | ".join(f"AP / random, {m}" for m in modes) + " | "
        + " | ".join(f"ROC AUC, {m}" for m in modes) + " |",
        "|---|" + "---:|" * (2 * len(modes)),
    ]  # fmt: skip
    for m in methods:
        aps = " | ".join(f"{rows[h][m]['ap_over_random']:.2f}" for h in modes)
        aucs = " | ".join(f"{rows[h][m]['roc_auc']:.3f}" for h in modes)
        lines.append(f"| {m} | {aps} | {aucs} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    (args.out / "results.json").write_text(json.dumps(rows, indent=2))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

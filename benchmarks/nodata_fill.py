"""Tried, not adopted (session 26): fill no-data pixels with the image's median before scoring.

    python -m benchmarks.nodata_fill --out benchmarks/results/nodata_fill [--limit N]

``edgeae evaluate --dataset hirise_landmarks`` (every dev crop, or a seeded sample of ``--limit``) twice on the
same crops: as it is (a crop's black no-data border reaches the scorers as black), and with each crop's invalid
pixels set to the median of its valid ones (per channel) before anything scores it. 781 of the 2,522 HiRISE
landmark crops hold some no-data. Writes ``results.md`` and ``results.json`` (crater vs other: AP over random and
ROC AUC of every method, both ways). The evaluation reads crops through ``edgeae.anomaly.evaluate._read``; the
filled run replaces that one function for its duration.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from unittest import mock

import numpy as np

FEATURE = "class 1 crater"


def filled_read(read):  # type: ignore[no-untyped-def]
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
    args = ap.parse_args(argv)
    import edgeae.anomaly.evaluate as ev
    from edgeae.cli import main as edgeae_main

    rows: dict[str, dict[str, dict[str, float]]] = {}
    for how in ("as read", "no-data filled"):
        out = args.out / ("raw" if how == "as read" else "filled")
        argv2 = ["evaluate", "--dataset", "hirise_landmarks", "--out", str(out), "--no-plots", "--no-progress",
                 "--threads", str(args.threads)] + (["--limit", str(args.limit)] if args.limit else [])  # fmt: skip
        if how == "as read":
            rc = edgeae_main(argv2)
        else:
            with mock.patch.object(ev, "_read", filled_read(ev._read)):
                rc = edgeae_main(argv2)
        if rc != 0:
            return rc
        res = json.loads((out / "hirise_landmarks" / "results.json").read_text())
        rows[how] = {
            r["method"]: {"ap_over_random": r["improvement"], "roc_auc": r["auc"]}
            for r in res["rows"]
            if r["feature"] == FEATURE
        }
    methods = list(rows["as read"])
    lines = [
        f"### HiRISE dev crops, {FEATURE} vs other: no-data as read vs filled with the crop's median",
        "",
        f"`python -m benchmarks.nodata_fill --out {args.out}" + (f" --limit {args.limit}`" if args.limit else "`"),
        "",
        "| method | AP / random, as read | filled | ROC AUC, as read | filled |",
        "|---|---:|---:|---:|---:|",
    ]
    for m in methods:
        a, b = rows["as read"][m], rows["no-data filled"][m]
        lines.append(
            f"| {m} | {a['ap_over_random']:.2f} | {b['ap_over_random']:.2f} | {a['roc_auc']:.3f} | {b['roc_auc']:.3f} |"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    (args.out / "results.json").write_text(json.dumps(rows, indent=2))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

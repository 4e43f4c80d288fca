"""Compare checkpoints on one training run's validation crops (the crops and masks its ``metrics.json`` used).

    python -m edgeae.train.compare RUN_DIR CHECKPOINT [CHECKPOINT ...] [--threads N] [--json]

A fine-tune validates on crops of its own ``--val-seed``; this measures it and the model it started from on
the *same* crops (:func:`edgeae.train.cae.compare_on_validation`), e.g.
``python -m edgeae.train.compare runs/i11/rover-ground runs/i11/rover-ground/best.pt runs/i11/rover-ground-ft/best.pt``.
"""

from __future__ import annotations

import argparse
import json
import sys

PROG = "python -m edgeae.train.compare"


def main(argv: list[str] | None = None) -> int:
    """Exit status 0, or 2 with a one-line error (a missing run or checkpoint, a VAE, other channels)."""
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="CAE training run folder whose config.json defines the validation crops")
    p.add_argument("checkpoints", nargs="+", help=".pt CAE checkpoints to measure (the run's channel count)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    args = p.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        p.error(f"--threads must be at least 1, got {args.threads}")
    try:
        return _run(args)
    except (OSError, ValueError, ImportError) as exc:  # MetadataError, ResumeError, DataNotFoundError among them
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from edgeae.train.cae import compare_on_validation

    result = compare_on_validation(args.run, args.checkpoints)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    for ck, levels in result.items():
        cells = "  ".join(f"{float(k):.0%}: {m['psnr']:.2f} dB" for k, m in levels.items())
        print(f"{ck}  {cells}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

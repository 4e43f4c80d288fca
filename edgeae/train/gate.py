"""Tune the do-no-harm gate of a trained ``unet2`` CAE on validation images, and write the gated checkpoint.

The gate (``UNet2CAE.gate``) scales the learned residual by var / (var + τ²), var the local variance of the
known samples: smooth regions keep the classical pre-fill. τ is chosen on the dataset's *validation* files
(never test files; a folder of images: its val files as ``edgeae train cae`` splits it, :func:`val_files`): the
largest τ from ``taus`` whose mean PSNR over validation crops stays within
``max_loss_db`` of the ungated model, which keeps the textured regions' gain and protects the smooth ones.
With the chosen τ it then runs the known-block check (:mod:`edgeae.train.known_blocks`) on the same crops and
refuses ``--zoo-name`` when whole known patches raise the error around them beyond its limit.

    python -m edgeae.train.gate runs/i11/rover-ground/best.pt --data rover_rgb_v2 --out gated.pt
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

TAUS = (0.0, 0.004, 0.008, 0.016, 0.032, 0.064)


def with_gate(
    checkpoint: str | os.PathLike[str], tau: float, out: str | os.PathLike[str], smooth_fill: str = "normconv"
) -> Path:
    """Write ``checkpoint`` with ``architecture.gate_tau = tau`` and ``smooth_fill`` (weights unchanged) to
    ``out``."""
    from edgeae.checkpoint import load_checkpoint, save_checkpoint
    from edgeae.metadata import ModelMetadata
    from edgeae.models.cae import GATED_VARIANTS

    ck = load_checkpoint(checkpoint)
    arch = dict(ck.metadata.architecture)
    if arch.get("variant") not in GATED_VARIANTS:
        raise ValueError(f"{checkpoint}: the gate needs a {GATED_VARIANTS} CAE, not {arch.get('variant')!r}")
    arch["gate_tau"] = float(tau)
    if smooth_fill != "normconv":
        arch["smooth_fill"] = smooth_fill
    else:
        arch.pop("smooth_fill", None)
    meta: ModelMetadata = replace(ck.metadata, architecture=arch)
    from edgeae.checkpoint import build_model

    model = build_model(meta)
    model.load_state_dict(ck.model.state_dict())
    metrics = {**ck.metrics, "gate_tau": float(tau), "smooth_fill": smooth_fill}
    return save_checkpoint(out, model, meta, metrics, ck.history)


def val_files(data: str, root: str | None = None) -> list[Path]:
    """The files τ is tuned on: a named dataset's val split, or a folder's val files split by file exactly as
    ``edgeae train cae`` splits it (:func:`edgeae.train.cae_config.split_data`: sorted, every fifth file)."""
    from edgeae.datasets import SPLITS, split_files

    if data in SPLITS:
        return split_files(data, "val", root=root)
    from edgeae.train.cae_config import CAETrainConfig, split_data

    return split_data(CAETrainConfig(data=data, out=""))[1]


def _windows(img: np.ndarray, size: int) -> list[np.ndarray]:
    """The centre crop and the smoothest ``size``-px window (lowest mean gradient) of one image."""
    h, w = img.shape[:2]
    y0, x0 = max(0, (h - 512) // 2), max(0, (w - 512) // 2)
    out = [img[y0 : y0 + 512, x0 : x0 + 512]]
    grey = img.mean(axis=2)
    mag = np.hypot(*np.gradient(grey))
    best, where = np.inf, (0, 0)
    for y in range(0, h - size + 1, 32):
        for x in range(0, w - size + 1, 32):
            if (grey[y : y + size, x : x + size] <= 0).mean() > 0.01:
                continue
            v = float(mag[y : y + size, x : x + size].mean())
            if v < best:
                best, where = v, (y, x)
    out.append(img[where[0] : where[0] + size, where[1] : where[1] + size])
    return out


def tune(
    checkpoint: str | os.PathLike[str],
    data: str,
    taus: tuple[float, ...] = TAUS,
    keep: float = 0.1,
    max_loss_db: float = 0.05,
    root: str | None = None,
    smooth_fill: str = "normconv",
) -> dict[str, Any]:
    """PSNR of each τ on the validation files' centre crops and smooth windows (:func:`val_files` of ``data``, a
    dataset name or a folder of images); the chosen τ."""
    from edgeae.checkpoint import build_model, load_checkpoint
    from edgeae.imageio import read_image
    from edgeae.masks import make_mask
    from edgeae.predictor import TorchPredictor
    from edgeae.reconstruct import run_method

    ck = load_checkpoint(checkpoint)
    c = int(ck.metadata.channels)
    files = val_files(data, root)
    images = [read_image(p, channels=c, detect_nodata=True).pixels for p in files]
    crops, smooth = [], []
    for img in images:
        a, b = _windows(img, 128)
        crops.append(a)
        smooth.append(b)
    classical: dict[str, list[float]] = {"crops": [], "smooth": []}
    for name, group in (("crops", crops), ("smooth", smooth)):
        for i, img in enumerate(group):
            known = make_mask(1000 + i, img.shape[:2], keep, "uniform")
            classical[name].append(
                max(run_method(img, known, m, progress=False).metrics["psnr"] for m in ("normconv", "linear"))
            )
    rows: list[dict[str, Any]] = []
    preds: dict[float, Any] = {}
    for tau in taus:
        arch = {**ck.metadata.architecture, "gate_tau": float(tau)}
        if tau and smooth_fill != "normconv":
            arch["smooth_fill"] = smooth_fill
        model = build_model(replace(ck.metadata, architecture=arch))
        model.load_state_dict(ck.model.state_dict())
        model.eval()
        pred = preds[tau] = TorchPredictor(model, replace(ck.metadata, architecture=arch), f"{checkpoint} (gate {tau})")
        row: dict[str, Any] = {"tau": tau}
        for name, group in (("crops", crops), ("smooth", smooth)):
            ps = []
            for i, img in enumerate(group):
                known = make_mask(1000 + i, img.shape[:2], keep, "uniform")
                ps.append(run_method(img, known, "cae", pred, progress=False).metrics["psnr"])
            row[f"{name}_psnr"] = float(np.mean(ps))
            row[f"{name}_worst_margin_db"] = float(np.min(np.array(ps) - np.array(classical[name])))
        rows.append(row)
        log.info("tau %.4f: %s", tau, row)
    base = rows[0]["crops_psnr"]
    ok = [r for r in rows if r["crops_psnr"] >= base - max_loss_db]
    chosen = max(ok, key=lambda r: r["tau"])
    # do no harm next to known blocks (edgeae.train.known_blocks), with the chosen gate, on the validation crops
    from edgeae.train.known_blocks import MAX_RATIO, MIN_SIDE, known_block_harm

    pred = preds[chosen["tau"]]
    ratios = [known_block_harm(pred, img, seed=2000 + i)["ratio"] for i, img in enumerate(crops)
              if min(img.shape[:2]) >= MIN_SIDE]  # fmt: skip
    blocks = {"ratios": ratios, "max_ratio": max(ratios, default=0.0), "limit": MAX_RATIO,
              "passed": max(ratios, default=0.0) <= MAX_RATIO}  # fmt: skip
    log.info("known blocks: error around them x%.2f at worst (limit x%.1f)", blocks["max_ratio"], MAX_RATIO)
    return {
        "checkpoint": str(checkpoint),
        "data": data,
        "split": "val",
        "val_files": [p.name for p in files],
        "keep": keep,
        "max_loss_db": max_loss_db,
        "classical_best_mean": {k: float(np.mean(v)) for k, v in classical.items()},
        "rows": rows,
        "chosen_tau": chosen["tau"],
        "smooth_fill": smooth_fill,
        "known_blocks": blocks,
    }


PROG = "python -m edgeae.train.gate"


def main(argv: list[str] | None = None) -> int:
    """Exit status 0; 2 with a one-line error (checked before tuning), or when the known-block check refuses
    ``--zoo-name``."""
    from edgeae.models.unet_cae import SMOOTH_FILLS  # a training tool: torch is there anyway

    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("checkpoint", help="best.pt of a complete unet2 / unet2h CAE training run")
    p.add_argument(
        "--data",
        required=True,
        help="dataset whose val split tunes τ (e.g. rover_rgb_v2), or a folder of images: its val files as edgeae "
        "train cae splits it (every fifth file)",
    )
    p.add_argument("--out", required=True, help="gated checkpoint to write (plus OUT.gate.json)")
    p.add_argument(
        "--taus",
        default=",".join(str(t) for t in TAUS),
        help=f"comma list of the τ values tried (default {','.join(str(t) for t in TAUS)})",
    )
    p.add_argument(
        "--max-loss-db",
        type=float,
        default=0.05,
        help="the largest τ whose mean validation PSNR stays within this many dB of the ungated model is chosen "
        "(default 0.05)",
    )
    p.add_argument(
        "--smooth-fill",
        choices=SMOOTH_FILLS,
        default="normconv",
        help="what smooth regions fall back to: the zeroth-order pre-fill, or a local plane fit (exact on gradients)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument(
        "--zoo-name",
        default=None,
        metavar="NAME",
        help="also install the gated checkpoint into the zoo as NAME (a complete run only; a registered zoo model "
        "only by one of the same kind, channels and architecture)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="with --zoo-name: replace a registered zoo model of another architecture or parameter count (never of "
        "another kind or channel count), or a user-installed model another run made (the gated model's run: the "
        "checkpoint's folder)",
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        taus, card_base = _check(args)
        return _run(args, taus, card_base)
    except (OSError, ValueError, ImportError) as exc:  # MetadataError, ZooInstallError, DataNotFoundError among them
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2


def _check(args: argparse.Namespace) -> tuple[tuple[float, ...], dict[str, Any]]:
    """Everything that can be refused, before the tuning starts: (τ values, the run's metrics for the zoo card)."""
    from edgeae.checkpoint import load_checkpoint
    from edgeae.datasets import SPLITS
    from edgeae.models.cae import GATED_VARIANTS

    if not (args.max_loss_db >= 0 and math.isfinite(args.max_loss_db)):  # also refuses NaN
        raise ValueError(f"--max-loss-db must be a finite number of dB, 0 or more, got {args.max_loss_db}")

    try:
        taus = tuple(float(t) for t in args.taus.split(","))
    except ValueError:
        raise ValueError(f"--taus {args.taus!r}: expected comma-separated numbers, e.g. 0,0.016,0.064") from None
    if not taus or any(not (t >= 0 and np.isfinite(t)) for t in taus):
        raise ValueError(f"--taus {args.taus!r}: each τ must be a finite number >= 0")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be at least 1, got {args.threads}")
    if args.force and not args.zoo_name:
        raise ValueError("--force only applies with --zoo-name")
    if args.zoo_name:
        from edgeae.zoo import check_name

        check_name(args.zoo_name)
    if args.data not in SPLITS:
        if not Path(args.data).is_dir():
            raise ValueError(
                f"--data {args.data!r}: the gate tunes τ on the val split of a named dataset "
                f"({', '.join(sorted(SPLITS))}) or of a folder of images; this is neither"
            )
        args.data = str(Path(args.data).resolve())  # recorded in OUT.gate.json: absolute, as train cae keeps it
        val_files(args.data)  # a folder with too few images is refused before the tuning
    ck = load_checkpoint(args.checkpoint)
    variant = ck.metadata.architecture.get("variant", "seed")
    if ck.metadata.kind != "cae" or variant not in GATED_VARIANTS:
        raise ValueError(
            f"{args.checkpoint}: the gate needs a {' / '.join(GATED_VARIANTS)} CAE, not a {ck.metadata.kind} of "
            f"variant {variant!r}"
        )
    card: dict[str, Any] = {}
    if args.zoo_name:
        from edgeae.zoo import check_install, run_complete

        run_metrics = Path(args.checkpoint).parent / "metrics.json"
        card = json.loads(run_metrics.read_text()) if run_metrics.is_file() else dict(ck.metrics)
        if not isinstance(card, dict) or not run_complete(card):
            stop = card.get("stopped") if isinstance(card, dict) else None
            raise ValueError(
                f"--zoo-name {args.zoo_name}: {args.checkpoint} is not from a complete run "
                f"({stop or 'no final metrics'}); finish the run with edgeae train cae --resume first"
            )
        params = sum(int(t.numel()) for t in ck.model.parameters())
        arch = dict(ck.metadata.architecture)
        check_install(args.zoo_name, "cae", ck.metadata.channels, arch, params, force=args.force, run=_run_folder(args))
    return taus, card


def _run_folder(args: argparse.Namespace) -> Path:
    """The training run that made the gated model (the checkpoint's folder, wherever ``--out`` writes): a
    user-installed zoo model of that name is replaced only when this run made it
    (:func:`edgeae.zoo.check_user_model`)."""
    return Path(args.checkpoint).resolve().parent


def _run(args: argparse.Namespace, taus: tuple[float, ...], card_base: dict[str, Any]) -> int:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    result = tune(args.checkpoint, args.data, taus, 0.1, args.max_loss_db, smooth_fill=args.smooth_fill)
    fill = args.smooth_fill if result["chosen_tau"] else "normconv"
    out = with_gate(args.checkpoint, result["chosen_tau"], args.out, fill)
    Path(str(out) + ".gate.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"chosen tau {result['chosen_tau']} -> {out}")
    kb = result["known_blocks"]
    print(f"known blocks: error within 16 px of them x{kb['max_ratio']:.2f} at worst (limit x{kb['limit']})")
    if args.zoo_name and not kb["passed"]:
        print(
            f"not installed into the zoo: known full-resolution blocks raise the error around them "
            f"x{kb['max_ratio']:.2f} (limit x{kb['limit']}; edgeae.train.known_blocks)"
        )
        return 2
    if args.zoo_name:
        metrics = dict(card_base)
        metrics.update(
            gate_tau=result["chosen_tau"],
            smooth_fill=result["smooth_fill"],
            gate_tuning={"split": "val", "rows": result["rows"]},
            known_blocks=result["known_blocks"],
        )
        card = Path(str(out) + ".zoo.json")
        card.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        from edgeae.folder_lock import FolderBusy
        from edgeae.zoo import install, installed_message

        try:
            target = install(args.zoo_name, out, card, force=args.force, run=_run_folder(args))
        except FolderBusy as exc:  # the gated model is written: say how to install it without tuning again
            import shlex

            busy = str(exc).split(": wait")[0]
            call = (
                f"from edgeae.zoo import install; install({args.zoo_name!r}, {str(out)!r}, {str(card)!r}, "
                f"run={str(_run_folder(args))!r}{', force=True' if args.force else ''})"
            )
            raise ValueError(
                f"--zoo-name {args.zoo_name}: {out} is gated and written but not installed ({busy}); install it "
                f"once that one has finished: python -c {shlex.quote(call)}"
            ) from None
        print(installed_message(args.zoo_name, target))
    for r in result["rows"]:
        print(
            f"  tau {r['tau']:<6g} val crops {r['crops_psnr']:.2f} dB (worst {r['crops_worst_margin_db']:+.2f}), "
            f"smooth {r['smooth_psnr']:.2f} dB (worst {r['smooth_worst_margin_db']:+.2f})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

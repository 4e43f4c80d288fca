"""A self-supervised (contrastive) grey encoder for the HiRISE crater ranking (issue 12, session 21; measured, not
shipped).

    python -m benchmarks.hirise_contrastive train --run runs/contrastive --steps 7000 --time-budget 105m --threads 2
    python -m benchmarks.hirise_contrastive train --run runs/contrastive --resume ...   # continue after a stop
    python -m benchmarks.hirise_contrastive evaluate --run runs/contrastive --out benchmarks/results/hirise_contrastive
    python -m benchmarks.hirise_contrastive export --run runs/contrastive --out benchmarks/weights/hirise-contrastive.pt

Session 21's run (the first command) stopped on its time budget after 6,422 steps; ``--steps 7000 --stop-at 6422``
repeats its schedule without the clock, from other initial weights (see below; and ``--stop-at 1000`` etc. the
curve's earlier points). Its encoder alone (1.8 MB, ``export``) is committed as
``benchmarks/weights/hirise-contrastive.pt`` so that ``evaluate --run`` that file and ``benchmarks.encoder_fusion``
rerun in minutes.

Every scorer tried so far for HiRISE crater vs other (target ROC AUC 0.80) describes a patch by what a
*reconstruction* model keeps (VAE latents, reconstruction error): best 0.754 (``frame-z kNN (mu)``). The one kind
left untried was a representation learned to tell places apart rather than to redraw them. This trains a small
SimCLR-style encoder (NT-Xent loss, temperature 0.2; 0.43 M parameters and a 25 k projection head, 32-px input = a
64-px window averaged 2 × 2) on the grey orbital *training* files only (``orbital_gray_v2`` train: the HiRISE
strips, CTX tiles, pycda tiles) and the landmark crops of the HiRISE *training* products (class 0 only, labels
unused): never a dev crop. Two views of one place: random windows of 48-96 px inside one 96-px region, each resized
to 32 px, random rotation by 90° and flip, gamma, blur and noise; each view standardised by its own mean and
deviation (so the encoder cannot lean on brightness, which the frame-z scaling already removes). ``--input-norm
fixed`` keeps brightness instead (a fixed affine map, as the VAE sees its input) and gives each view a random gain
and offset.

``evaluate`` encodes the 25 grid patches (64 px, stride 41) of every dev crop and ranks crops as the candidate does
(a crop's score is its highest patch's): ``frame-z kNN`` (features robust-z scaled within each crop, then the mean
distance to the 20 nearest patches of all crops: :func:`edgeae.anomaly.baselines.frame_z_knn`), ``cosine kNN``
(unit features, same kNN), and ``cosine kNN to training crops`` (each patch against the patches of the training
products' class-0 crops only). ROC AUC crater vs other on all dev crops, the anomaly benchmark's seed-0 sample of
400 and the rest (:func:`benchmarks.hirise_dev.crater_auc_row`).

The training is resumable (model, optimiser, step and NumPy RNG state in ``RUN/checkpoint.pt``, written every 200
steps and at the end of ``--time-budget``; training draws nothing from torch's RNG) and refuses a resume on other
data (the files' SHA-256 manifest). ``--seed`` draws the initial weights (in a forked torch RNG: the caller's is left
as it was) and the views; on a fixed number of steps the run is reproducible on one machine and thread count.
Until session 35 the weights were built before torch was seeded, from torch's own per-process seed, so session 21's
run cannot be regenerated bit for bit; its numbers come from its committed encoder.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.contrastive_input import INPUT as INPUT
from benchmarks.contrastive_input import MAX_DARK as MAX_DARK
from benchmarks.contrastive_input import REGION as REGION
from benchmarks.contrastive_input import VIEW_MIN as VIEW_MIN
from benchmarks.contrastive_input import Sources as Sources
from benchmarks.contrastive_input import encoder_input as encoder_input
from benchmarks.contrastive_input import normalise as normalise
from benchmarks.contrastive_input import standardise as standardise

WINDOW = 64  # the evaluation's patch (px), as the VAE candidate
BATCH = 256  # pairs per step
TEMPERATURE = 0.2
K_NN = 20
CKPT_EVERY = 200


def _duration(text: str) -> float:
    """'90m', '2h', '1h30m', '45s' or seconds -> seconds (:func:`edgeae.train.resume.parse_duration`, the
    training CLI's own reader), as an argparse type."""
    from edgeae.train.resume import parse_duration

    try:
        seconds = parse_duration(text)
    except ValueError:
        seconds = None
    if seconds is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 90m, 2h, 3600)")
    return seconds


def build_encoder(seed: int | None = None) -> Any:
    """Plain conv encoder, (N, 1, 32, 32) -> (N, 128); and a projection head 128 -> 64 for the loss. ``seed``: their
    initial weights are drawn from it (in a forked torch RNG); None: from torch's RNG as it is (to load weights)."""
    import torch
    import torch.nn as nn

    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return build_encoder()

    def block(cin: int, cout: int, stride: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    enc = nn.Sequential(
        *block(1, 32, 1), *block(32, 32, 2),  # 16
        *block(32, 64, 1), *block(64, 64, 2),  # 8
        *block(64, 128, 1), *block(128, 128, 2),  # 4
        *block(128, 128, 1),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )  # fmt: skip
    head = nn.Sequential(nn.Linear(128, 128), nn.ReLU(inplace=True), nn.Linear(128, 64))
    return enc, head


def nt_xent(z1: Any, z2: Any, temperature: float = TEMPERATURE) -> Any:
    import torch
    import torch.nn.functional as F

    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = z1.shape[0]
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n, device=z.device), torch.arange(0, n, device=z.device)])
    return F.cross_entropy(sim, target)


def train(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(args.threads)
    run: Path = args.run
    ckpt_path = run / "checkpoint.pt"
    src = Sources()
    manifest = src.manifest()
    dev = torch.device(args.device)
    enc, head = build_encoder(args.seed)
    enc, head = enc.to(dev), head.to(dev)
    params = list(enc.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-4)
    rng = np.random.default_rng(args.seed)
    step, history = 0, []
    if ckpt_path.exists():
        if not args.resume:
            raise SystemExit(f"{ckpt_path} exists: pass --resume to continue it, or choose another --run")
        ck = torch.load(ckpt_path, weights_only=False, map_location="cpu")
        if ck["manifest"] != manifest:
            raise SystemExit(f"{ckpt_path}: trained on other data (manifest {ck['manifest'][:12]} vs {manifest[:12]})")
        enc.load_state_dict(ck["encoder"])
        head.load_state_dict(ck["head"])
        opt.load_state_dict(ck["optimizer"])
        rng.bit_generator.state = ck["numpy_rng"]  # older checkpoints' "torch_rng" is not needed: no torch draws
        step, history = ck["step"], ck["history"]
        print(f"resumed at step {step}", flush=True)
    elif args.resume:
        raise SystemExit(f"--resume: no checkpoint at {ckpt_path}")
    run.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save({"encoder": enc.state_dict(), "head": head.state_dict(), "optimizer": opt.state_dict(),
                    "numpy_rng": rng.bit_generator.state, "step": step,
                    "history": history, "manifest": manifest, "files": src.files,
                    "config": {"input": INPUT, "batch": BATCH, "temperature": TEMPERATURE, "lr": args.lr,
                               "seed": args.seed, "threads": args.threads, "input_norm": args.input_norm}},
                   tmp)  # fmt: skip
        tmp.replace(ckpt_path)

    enc.train()
    head.train()
    t0, t_data, losses = time.perf_counter(), 0.0, []
    stop = args.steps if args.stop_at is None else min(args.stop_at, args.steps)
    while step < stop and time.perf_counter() - t0 < args.time_budget:
        ta = time.perf_counter()
        a, b = src.pairs(rng, BATCH, args.input_norm)
        t_data += time.perf_counter() - ta
        lr = args.lr * min(1.0, (step + 1) / 200) * 0.5 * (1 + np.cos(np.pi * min(step / args.steps, 1.0)))
        for g in opt.param_groups:
            g["lr"] = lr
        loss = nt_xent(head(enc(torch.from_numpy(a).to(dev))), head(enc(torch.from_numpy(b).to(dev))))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        step += 1
        if step % 50 == 0:
            history.append({"step": step, "loss": float(np.mean(losses)), "lr": lr})
            losses = []
            el = time.perf_counter() - t0
            print(f"step {step}/{args.steps} loss {history[-1]['loss']:.3f} lr {lr:.2e} {el:.0f} s "
                  f"(data {t_data / el:.0%})", flush=True)  # fmt: skip
        if step % CKPT_EVERY == 0:
            save()
    save()
    print(f"stopped at step {step} after {time.perf_counter() - t0:.0f} s; checkpoint {ckpt_path}", flush=True)
    return 0


def checkpoint_path(run: Path) -> Path:
    """A run folder's ``checkpoint.pt``, or ``run`` itself when it is a file (an exported encoder)."""
    path = run / "checkpoint.pt" if run.is_dir() else run
    if not path.is_file():
        raise SystemExit(f"{path}: no such checkpoint")
    return path


def load_encoder(run: Path) -> tuple[Any, str, dict[str, Any]]:
    """The encoder of a run folder or exported file (:func:`checkpoint_path`), in eval mode, with the input
    normalisation it was trained with (old checkpoints: ``window``) and the checkpoint itself."""
    import torch

    ck = torch.load(checkpoint_path(run), weights_only=False, map_location="cpu")
    enc, _ = build_encoder()
    enc.load_state_dict(ck["encoder"])
    enc.eval()
    return enc, ck["config"].get("input_norm", "window"), ck


def export_encoder(args: argparse.Namespace) -> int:
    """The encoder of a run without what only training needs (projection head, optimiser, RNG state): what
    ``evaluate`` and ``benchmarks.encoder_fusion`` read, small enough to commit."""
    import torch

    ck = torch.load(checkpoint_path(args.run), weights_only=False, map_location="cpu")
    keep = {k: ck[k] for k in ("encoder", "config", "step", "history", "manifest", "files") if k in ck}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(keep, args.out)
    print(f"{args.out}: encoder after {ck['step']} steps, {args.out.stat().st_size / 1e6:.1f} MB")
    return 0


def _encode(enc: Any, windows: np.ndarray, how: str) -> np.ndarray:
    import torch

    with torch.no_grad():
        return np.asarray(enc(torch.from_numpy(encoder_input(windows, how))).numpy(), np.float64)


def _crop_windows(path: Path) -> np.ndarray:
    from edgeae.anomaly.evaluate import HIRISE_STRIDE
    from edgeae.imageio import read_image
    from edgeae.tiling import extract_tiles, tile_positions

    img = read_image(path, channels=1).pixels[..., 0]
    h, w = img.shape
    return extract_tiles(img, tile_positions(h, w, WINDOW, HIRISE_STRIDE), WINDOW)


def evaluate(args: argparse.Namespace) -> int:
    import torch

    from benchmarks.hirise_dev import crater_auc_row, dev_crops, write_results
    from benchmarks.machine import machine_info
    from edgeae.anomaly.baselines import frame_z_knn, knn_distance

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    enc, how, ck = load_encoder(args.run)
    images, crops, ref = dev_crops(args.limit)
    feats = [_encode(enc, _crop_windows(images / f), how) for f, _ in crops]
    ref_feats = np.concatenate([_encode(enc, _crop_windows(images / f), how) for f in ref])
    cls = np.array([c for _, c in crops])
    n, k = len(feats), len(feats[0])

    def per_crop(s: np.ndarray) -> np.ndarray:
        return s.reshape(n, k).max(1)

    unit = np.concatenate([f / np.linalg.norm(f, axis=1, keepdims=True) for f in feats])
    ref_unit = ref_feats / np.linalg.norm(ref_feats, axis=1, keepdims=True)
    scores = {
        "contrastive frame-z kNN": per_crop(np.concatenate(frame_z_knn(feats, K_NN))),
        "contrastive cosine kNN": per_crop(knn_distance(unit, K_NN)),
        "contrastive cosine kNN to training crops": per_crop(knn_distance(ref_unit, K_NN, queries=unit)),
    }
    rows = [crater_auc_row(name, s, cls) for name, s in scores.items()]
    lroc = lroc_rows(enc, how)
    res = {"machine": machine_info(args.threads), "lroc": lroc, "crops": n, "craters": int((cls == 1).sum()),
           "other": int((cls == 0).sum()), "reference_crops": len(ref), "k": K_NN, "step": ck["step"],
           "final_loss": ck["history"][-1]["loss"] if ck["history"] else None, "config": ck["config"],
           "history": ck["history"], "rows": rows, "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
    note = (f"HiRISE dev split, {n} crops ({res['craters']} craters, {res['other']} other); crater vs other; "
            f"encoder after {ck['step']} steps of {BATCH} pairs, input {how}. Candidate to beat: frame-z kNN (mu) "
            "of the grey VAE, 0.754 / 0.726 / 0.760 (benchmarks/results/hirise_scales). "
            "Target (issue 12): 0.80.")  # fmt: skip
    write_results(args.out, res, "scorer (contrastive encoder)", note)
    md = ["", "LROC NAC craters (the anomaly benchmark's 10 mosaics, 64-px patches, stride 32; AP over random AP, ROC "
          "AUC). From the anomaly benchmark on the same patches, craters >= 32 px (all / test-split mosaics): kNN (mu) "
          "2.53x / 2.18x, local z 2.53x / 2.53x, isolation forest (mu) 2.40x / 1.96x, patch std 2.17x / 1.94x; "
          ">= 64 px: isolation forest 4.90x, patch std 4.26x.", "",
          "| scorer | feature | positives | AP / random | ROC AUC |", "|---|---|---:|---:|---:|"]  # fmt: skip
    md += [f"| {r['method']} | {r['feature']} | {r['positives']} | {r['improvement']:.2f}x | {r['auc']:.3f} |"
           for r in lroc]  # fmt: skip
    with (args.out / "results.md").open("a") as fh:
        fh.write("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


def lroc_rows(enc: Any, how: str) -> list[dict[str, Any]]:
    """The contrastive features on the anomaly benchmark's LROC patches: AP improvement and ROC AUC of craters
    >= 32 px and >= 64 px, on all 10 mosaics and on the 4 test-split ones."""
    import math

    from edgeae.anomaly.baselines import frame_z_knn, knn_distance
    from edgeae.anomaly.evaluate import LROC_STRIDE, lroc_files
    from edgeae.anomaly.labels import crater_file_for, patch_labels, read_craters
    from edgeae.anomaly.metrics import ranking_summary
    from edgeae.data import data_root
    from edgeae.datasets import SPLITS
    from edgeae.imageio import read_image
    from edgeae.tiling import extract_tiles, tile_positions

    test = {Path(p).name for p in SPLITS["orbital_gray"]["test"]}
    feats, labels32, labels64, in_test = [], [], [], []
    for f in lroc_files(data_root()):
        img = read_image(f, channels=1).pixels[..., 0]
        h, w = img.shape
        pos = tile_positions(h, w, WINDOW, LROC_STRIDE)
        feats.append(_encode(enc, extract_tiles(img, pos, WINDOW), how))
        xy = np.array([(x, y) for y, x in pos])
        craters = read_craters(crater_file_for(f))
        labels32.append(patch_labels(xy, WINDOW, craters, 32.0, math.inf))
        labels64.append(patch_labels(xy, WINDOW, craters, 64.0, math.inf))
        in_test.append(np.full(len(pos), f.name in test))
    unit = np.concatenate([x / np.linalg.norm(x, axis=1, keepdims=True) for x in feats])
    scores = {"contrastive frame-z kNN": np.concatenate(frame_z_knn(feats, K_NN)),
              "contrastive cosine kNN": knn_distance(unit, K_NN)}  # fmt: skip
    y32, y64, t = np.concatenate(labels32), np.concatenate(labels64), np.concatenate(in_test)
    rows = []
    for name, s in scores.items():
        for feature, y, sel in (("craters >= 32 px", y32, slice(None)), ("craters >= 64 px", y64, slice(None)),
                                ("craters >= 32 px (test-split mosaics)", y32, t)):  # fmt: skip
            r = ranking_summary(s[sel], y[sel])
            rows.append({"method": name, "feature": feature, **{k: r[k] for k in ("positives", "improvement", "auc")}})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.hirise_contrastive", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--run", type=Path, required=True)
    t.add_argument("--resume", action="store_true")
    t.add_argument("--steps", type=int, default=6000, help="length of the cosine schedule (default 6000)")
    t.add_argument("--time-budget", type=_duration, default=float("inf"), help="stop cleanly after this (90m, 2h)")
    t.add_argument("--stop-at", type=int, default=None,
                   help="stop after this many steps (the schedule stays --steps long): repeats a run that a time "
                   "budget ended")  # fmt: skip
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--seed", type=int, default=0, help="draws the initial weights and the views (default 0)")
    t.add_argument("--threads", type=int, default=2)
    t.add_argument(
        "--input-norm",
        choices=("window", "fixed"),
        default="window",
        help="window: each view standardised (default); fixed: brightness kept, random gain/offset",
    )
    t.add_argument("--device", default="cpu", help="torch device for training (cpu, cuda); evaluation runs on the CPU")
    e = sub.add_parser("evaluate")
    e.add_argument("--run", type=Path, required=True, help="a run folder or an exported encoder (.pt)")
    e.add_argument("--out", type=Path, required=True)
    e.add_argument("--limit", type=int, default=None, help="the first N dev crops only (a smoke run)")
    e.add_argument("--threads", type=int, default=2)
    x = sub.add_parser("export", help="write a run's encoder alone (no head, optimiser or RNG state) to --out")
    x.add_argument("--run", type=Path, required=True)
    x.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    if getattr(args, "steps", 1) < 1 or getattr(args, "threads", 1) < 1:
        ap.error("--steps and --threads must be at least 1")
    return {"train": train, "evaluate": evaluate, "export": export_encoder}[args.cmd](args)


if __name__ == "__main__":
    raise SystemExit(main())

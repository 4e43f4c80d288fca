"""Measure the score tail of existing artifacts against their PyTorch checkpoint (no re-export).

    python -m edgeae.export.tail rover-rgb-gtcae edgeae/zoo/artifacts/rover-rgb-gtcae/rover-rgb-gtcae.int8.onnx

Runs the checkpoint and each artifact over every patch of the export's tail frames
(:func:`edgeae.export.data_plan.plan_data`: a dataset's test split plus its ``TAIL_EXTRA_FRAMES``; a folder-trained
model's unseen images, else its val files; ``--test DIR``: those images) and the synthetic extremes, and prints the
tail metrics of :func:`edgeae.export.parity.tail_metrics` with the int8 budget's verdict, one JSON line per artifact
(for a VAE also those of the ``terms-max`` flight score, :mod:`edgeae.anomaly.terms`, under ``terms_max``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def measure(
    model: str, artifacts: Sequence[str], data_root: str | None = None, test: str | os.PathLike[str] | None = None
) -> list[dict[str, Any]]:
    """Tail metrics of each artifact of ``model`` (zoo name or .pt checkpoint) against the checkpoint, on the
    export's tail frames (``test``: a folder or file of one's own, the export's ``--test``); warnings logged."""
    from edgeae.firmware_sim.runtime import load_artifact

    from edgeae.checkpoint import load_checkpoint
    from edgeae.predictor import TorchPredictor, resolve_model_path

    from . import calibration as cal
    from .data_plan import plan_data
    from .parity import tail_failures, tail_metrics
    from .tailgate import TAIL_KINDS, tail_scores, tail_terms_max

    path = resolve_model_path(model)
    ck = load_checkpoint(path)
    meta = ck.metadata
    if meta.kind not in TAIL_KINDS:
        raise ValueError(f"{model}: a {meta.kind!r} model has no anomaly score")
    arch = meta.architecture
    channels = int(arch.get("channels", meta.channels))
    side = int(arch.get("tile") or arch.get("patch") or meta.input_shape[-1])
    plan = plan_data(meta, test=test, root=data_root, calibration=False)
    for note in plan.notes:
        log.warning("%s", note)
    frames = [(f.name, cal.frame_patches(f, channels, side)) for f in plan.tail]
    if sum(len(p) for _, p in frames) < 3:
        raise ValueError(
            f"the tail frames ({', '.join(n for n, _ in frames)}) give {sum(len(p) for _, p in frames)} patch(es) of "
            f"{side} px, the tail's Spearman needs at least 3: give --test DIR (more or larger images)"
        )
    ext = cal.extreme_patches(channels, side)
    ref = TorchPredictor(ck.model, meta, str(path))
    ref_scores = [tail_scores(ref, meta.kind, p) for _, p in frames]
    ref_ext = tail_scores(ref, meta.kind, ext)
    lam = (meta.score or {}).get("lambda") if meta.kind == "vae" else None
    patches = [p for _, p in frames]
    ref_tm = tail_terms_max(ref, patches, float(lam)) if lam is not None else None
    out = []
    for a in artifacts:
        pred = load_artifact(a, threads=2)
        got = [tail_scores(pred, meta.kind, p) for p in patches]
        m = tail_metrics(ref_scores, got, (ref_ext, tail_scores(pred, meta.kind, ext)))
        precision = pred.metadata.precision if pred.metadata.precision in ("fp32", "fp16", "int8") else "int8"
        rec: dict[str, Any] = {
            "artifact": str(a),
            **{k: float(np.round(v, 4)) for k, v in m.items()},
            "fails": tail_failures(m, precision),
            "frames": [n for n, _ in frames],
            "patches": int(sum(len(p) for p in patches)),
        }
        if ref_tm is not None and lam is not None:  # the terms-max flight score (edgeae.anomaly.terms)
            tm = tail_metrics(ref_tm, tail_terms_max(pred, patches, float(lam)))
            rec["terms_max"] = {k: float(np.round(v, 4)) for k, v in tm.items()}
            rec["terms_max"]["fails"] = tail_failures(tm, precision)
        out.append(rec)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="zoo name or .pt checkpoint the artifacts were exported from")
    ap.add_argument("artifacts", nargs="+", help=".onnx/.ort/.tflite files")
    ap.add_argument(
        "--data", "--data-root", dest="data", default=None, help="data root (default: $EDGEAE_DATA or ../shared/data)"
    )
    ap.add_argument("--test", default=None, metavar="DIR", help="tail frames of your own (default: the export's)")
    args = ap.parse_args(argv)
    from .filetype import check_artifact_file

    try:
        for a in args.artifacts:  # before the minutes of PyTorch scoring
            check_artifact_file(a)
        recs = measure(args.model, args.artifacts, args.data, args.test)
    except (OSError, ValueError, ImportError) as exc:  # ArtifactError, MetadataError, unknown model: ValueErrors
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for rec in recs:
        print(json.dumps(rec))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The zoo VAEs' tuned λ against the label-free default a folder-trained VAE gets (docs/anomaly.md, "Your own images").

For each model: median(rec) / median(‖μ‖²) over the patches of its own dataset's val split (the default λ of
``edgeae train vae --data FOLDER`` without ``--lambda``), next to the λ its tuning on labelled data chose.

    python scripts/vae_lambda_ratio.py [MODEL ...]      (default: the three zoo VAEs; needs ../shared/data)
"""

from __future__ import annotations

import sys

import numpy as np


def main(argv: list[str]) -> int:
    import torch

    from edgeae.anomaly.score import make_scorer
    from edgeae.checkpoint import load_checkpoint
    from edgeae.datasets import split_files
    from edgeae.predictor import TorchPredictor, resolve_model_path
    from edgeae.train.vae_calibrate import _val_patches

    torch.set_num_threads(2)
    for name in argv or ["rover-rgb-vae", "orbital-gray-vae", "orbital-gray-vae-lite"]:
        ck = load_checkpoint(resolve_model_path(name, want="checkpoint"))
        md = ck.metadata
        data = md.extra.get("data") or "orbital_gray"
        scorer = make_scorer(TorchPredictor(ck.model.eval(), md, "t"))
        res = _val_patches(scorer, split_files(data, "val"), md.channels, 64, 256)
        rec = np.concatenate([r.extras["rec"] for r in res])
        mu2 = np.concatenate([r.extras["mu2"] for r in res])
        ratio = float(np.median(rec) / np.median(mu2))
        tuned = float(md.score["lambda"])
        print(f"{name} ({data} val, {rec.size} patches): tuned λ {tuned:.4g}, median ratio {ratio:.4g}, "
              f"tuned / ratio {tuned / ratio:.3g}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

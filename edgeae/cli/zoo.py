"""``edgeae zoo``: list the models shipped in the package (``--json`` for machines)."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("zoo", help="list the bundled models", description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="print a JSON list of objects instead of a table")
    p.add_argument("--commands", action="store_true", help="also print the command that reproduces each model")
    return p


def summary(metrics: dict[str, Any]) -> str:
    """A short validation-metric string: validation loss, MAE/PSNR at 90% destroyed (CAE), AP (VAE)."""
    if not metrics:
        return "-"
    parts = []
    if "val_loss" in metrics:
        parts.append(f"val loss {metrics['val_loss']:.4g}")
    lv = metrics.get("val_levels", {}).get("0.9")
    if lv:
        parts.append(f"@90% destroyed: MAE {lv['mae']:.4f}, PSNR {lv['psnr']:.1f} dB")
    ap = metrics.get("calibration", {}).get("lambda_ap")
    if isinstance(ap, float):
        parts.append(f"λ-tuning AP {ap:.3f}")
    return ", ".join(parts) or "-"


def _short(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def run(args: argparse.Namespace) -> int:
    from edgeae.zoo import list_models

    models = list_models()
    if args.json:
        print(json.dumps(models, indent=2, sort_keys=True))
        return 0
    rows = [("name", "kind", "ch", "parameters", "training data", "validation metrics")]
    for m in models:
        params = f"{m['parameters']:,}" if isinstance(m.get("parameters"), int) else "-"
        name = m["name"] if m["available"] else f"{m['name']} (weights missing)"
        rows.append(
            (name, m["kind"], str(m["channels"]), params, _short(m.get("training_data", "-")), summary(m["metrics"]))
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1])
    if args.commands:
        print()
        for m in models:
            print(f"{m['name']}: {m['command']}")
    return 0

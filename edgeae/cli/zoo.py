"""``edgeae zoo``: list the models shipped in the package (``--json`` for machines)."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "zoo",
        help="list the bundled models",
        description="List the models shipped in the package and those installed with --zoo-name (every MODEL "
        "argument takes these names): kind, channels, parameters, shipped flight artifacts and metrics (a CAE's on its "
        "validation split, a VAE's AP of its in-sample λ tuning). --json for machines.",
    )
    p.add_argument("--json", action="store_true", help="print a JSON list of objects instead of a table")
    p.add_argument("--commands", action="store_true", help="also print the command that reproduces each model")
    return p


def summary(metrics: dict[str, Any], split: str = "-") -> str:
    """A short metric string: validation PSNR at 90% destroyed (CAE) and its validation ``split`` (:func:`val_split`;
    the MAE is in ``--json``), the in-sample AP of the λ tuning (VAE: λ was chosen on those images, so it is no
    validation figure), else the validation loss."""
    if not metrics:
        return "-"
    parts = []
    lv = metrics.get("val_levels", {}).get("0.9")
    if lv:
        on = f", {split} val" if split != "-" else " (validation)"
        parts.append(f"PSNR {lv['psnr']:.2f} dB{on}")
    ap = metrics.get("calibration", {}).get("lambda_ap")
    if isinstance(ap, float):
        parts.append(f"in-sample λ-tuning AP {ap:.3f}")
    if not parts and "val_loss" in metrics:
        parts.append(f"val loss {metrics['val_loss']:.4g}")
    return ", ".join(parts) or "-"


def val_split(command: str | None) -> str:
    """The validation files a CAE's metrics were measured on, named by the first registered dataset that holds them
    (``rover_rgb_msl`` validates on ``rover_rgb_v2``'s): the ``--data`` of the last training step of the model's
    command; "-" when the command names none (a folder, a VAE). Metrics compare only within one such split."""
    import re

    from edgeae.datasets import SPLITS

    # a training step's own --data: not one of a later step of the chain (steps are joined by "&&")
    found = re.findall(r"edgeae train cae (?:(?!&&).)*?--data (\S+)", command or "")
    if not found or found[-1] not in SPLITS:
        return "-"
    val = SPLITS[found[-1]].get("val")
    return next((name for name, split in SPLITS.items() if split.get("val") == val), found[-1])


def _artifacts(name: str) -> str:
    """The shipped flight artifacts of a zoo model, e.g. "int8 onnx+tflite" ("-" when none ship)."""
    from edgeae.resolve import shipped_artifacts

    files = [p for p in shipped_artifacts(name) if p.name.split(".")[0] == name]
    if not files:
        return "-"
    precisions = sorted({p.name.split(".")[1] for p in files if p.name.count(".") >= 2})
    return f"{'/'.join(precisions)} {'+'.join(sorted({p.suffix[1:] for p in files}))}"


def _short(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def run(args: argparse.Namespace) -> int:
    from edgeae.zoo import list_models

    models = list_models()
    if args.json:
        from edgeae.resolve import shipped_artifacts
        from edgeae.zoo import weights_path

        for m in models:  # for machines: the weights' path and every shipped flight file (encoder/decoder parts too)
            m["weights_path"] = str(weights_path(m["name"]))
            m["flight_artifacts"] = [str(p) for p in shipped_artifacts(m["name"])]
        print(json.dumps(models, indent=2, sort_keys=True))
        return 0
    rows = [("name", "kind", "ch", "params", "flight file", "metrics")]
    for m in models:
        params = f"{m['parameters'] / 1000:.0f} k" if isinstance(m.get("parameters"), int) else "-"
        name = m["name"] if m["available"] else f"{m['name']} *"
        name += " +" if m.get("user_installed") else ""
        split = val_split(m.get("command")) if m["kind"] == "cae" else "-"
        rows.append((name, m["kind"], str(m["channels"]), params, _artifacts(m["name"]), summary(m["metrics"], split)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + _short(r[-1], 40))
    print(
        "metrics: a CAE's PSNR with 90% of the pixels lost, on the validation files of the named dataset\n"
        "(compare CAEs of one dataset only); a VAE's λ-tuning AP is in-sample (no validation figure)"
    )
    if not all(m["available"] for m in models):
        from edgeae.zoo.checkpoints import INSTALL_HINT, weights_package_dir

        print("* weights not in this install yet: edgeae zoo --commands prints the command that trains each model")
        if weights_package_dir() is None and any(not m["available"] and not m.get("user_installed") for m in models):
            print(f"  ({INSTALL_HINT}; the flight files listed above need none of them)")
    if any(m.get("user_installed") for m in models):
        print(f"+ user-installed (--zoo-name): not shipped; NAME.pt and NAME.entry.json are in {_user_zoo()}")
    unread = _user_zoo_unread()
    if unread:
        print(f"the user zoo was not read: {unread}")
    print(defaults_line())
    print("Every MODEL argument takes these names; --json for training data, metrics and file paths.")
    if args.commands:
        print()
        for m in models:
            print(f"{m['name']}: {m['command']}")
    return 0


def _user_zoo() -> str:
    """Where user-installed models live, for the listing's footer ($EDGEAE_ZOO or the user data folder; a checkout's
    older installs stay in edgeae/zoo/weights)."""
    from edgeae.zoo.user import ENV_VAR, user_dir

    try:
        where = str(user_dir())
    except RuntimeError:
        where = "no user zoo folder"
    return f"the user zoo, ${ENV_VAR} ({where}; older installs of a checkout: edgeae/zoo/weights)"


def _user_zoo_unread() -> str:
    """Why the user zoo folder was not read (a relative $EDGEAE_ZOO, no home folder), else ''."""
    from edgeae.zoo.user import user_dir

    try:
        user_dir()
    except RuntimeError as exc:
        return str(exc)
    return ""


def defaults_line() -> str:
    """Which zoo models the commands use when no --model is given (what a user picks by leaving it out)."""
    import textwrap

    from edgeae.cli.scan import DEFAULT_MODEL as SCANNER
    from edgeae.cli.score_checks import DEFAULT_MODELS as SCORERS
    from edgeae.reconstruct import DEFAULT_MODELS as REBUILDERS

    text = (
        f"without --model: reconstruct and demo rebuild with {REBUILDERS[3]} (colour) or {REBUILDERS[1]} (grey); "
        f"score uses {SCORERS[3]} or {SCORERS[1]}, scan {SCANNER}; ground decode fills classically (--method auto)"
    )
    return textwrap.fill(text, width=100, subsequent_indent="  ", break_on_hyphens=False)

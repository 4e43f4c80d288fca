"""The VAE's decoder converted as trained vs in its exact sub-pixel form: CPU time per patch, same run.

Both forms of each zoo VAE are exported with ``edgeae.export`` (int8 ONNX and TFLite, the zoo's calibration;
``ExportConfig.vae_form``) into $EDGEAE_BENCH_ARTIFACTS (default runs/bench-artifacts), then timed round by
round in a rotating order (1 thread, batches of 64 patches, CPU time of the process), so drift hits both forms
alike. Also reported: the scores of the two forms on the same real patches (relative difference) and each
file's XNNPACK delegation (TFLite partitions and whether LiteRT's reference RESIZE_NEAREST_NEIGHBOR is left).

    python benchmarks/vae_form.py --out benchmarks/results/vae_form [--rounds 30]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from any folder
from benchmarks.artifacts import ART_DIR, export_stamp
from benchmarks.machine import machine_info, wait_for_quiet

MODELS = ("orbital-gray-vae", "orbital-gray-vae-lite")
FORMS = ("reference", "subpixel")
FORMATS = ("tflite", "onnx")
BATCH = 64


def form_artifacts(zoo_name: str, form: str) -> dict[str, Path]:
    """int8 ONNX and TFLite files of ``zoo_name`` exported in ``form`` (cached, re-exported when stale)."""
    from edgeae.export.api import ExportConfig, export_model

    folder = ART_DIR / "vae-form" / zoo_name / form
    paths = {fmt: folder / f"{zoo_name}.int8.{fmt}" for fmt in FORMATS}
    stamp = folder / ".export-stamp"
    want = f"{export_stamp(zoo_name)}; exported as {form}"
    if not (all(p.is_file() for p in paths.values()) and stamp.is_file() and stamp.read_text() == want):
        cfg = ExportConfig(formats=FORMATS, precisions=("int8",), latency=False, tail_check=False, vae_form=form)
        export_model(zoo_name, folder, cfg)
        stamp.write_text(want)
    return paths


def tflite_delegation(path: Path) -> dict[str, Any]:
    """Number of XNNPACK partitions and whether the reference nearest-neighbour resize is in the graph."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    ops = [o["op_name"] for o in it._get_ops_details()]
    return {"delegate_partitions": ops.count("DELEGATE"), "resize_nearest": "RESIZE_NEAREST_NEIGHBOR" in ops}


def real_patches(n: int) -> np.ndarray:
    """``n`` 64 × 64 patches of the orbital test frames (the export's own test source), float32 NCHW."""
    from edgeae.export.calibration import extract_patches, split_images

    files = split_images(_checkpoint(MODELS[0]).metadata, "test")
    return extract_patches(files, channels=1, patch=64, count=n, seed=0)


def _checkpoint(zoo_name: str) -> Any:
    from edgeae.checkpoint import load_checkpoint
    from edgeae.predictor import resolve_model_path

    return load_checkpoint(resolve_model_path(zoo_name, "checkpoint"))


def _range(values: list[float]) -> list[float]:
    return [round(min(values), 4), round(max(values), 4)]


def run(rounds: int) -> dict[str, Any]:
    from edgeae.firmware_sim.runtime import load_artifact

    from edgeae.models.vae import count_macs

    x = real_patches(BATCH)
    quiet = wait_for_quiet()
    load_before = os.getloadavg()[0]
    cases: dict[tuple[str, str, str], Any] = {}
    info: dict[str, Any] = {}
    for model in MODELS:
        info[model] = {"macs_per_patch": count_macs(_checkpoint(model).model.config)}
        for form in FORMS:
            for fmt, path in form_artifacts(model, form).items():
                pred = load_artifact(path, threads=1)
                for _ in range(3):
                    pred(x)
                cases[model, form, fmt] = pred
                if fmt == "tflite":
                    info[model][f"{form} delegation"] = tflite_delegation(path)
    keys = list(cases)
    cpu: dict[tuple[str, str, str], list[float]] = {k: [] for k in keys}
    for r in range(rounds):
        for k in keys[r % len(keys) :] + keys[: r % len(keys)]:  # rotate who goes first
            t = time.process_time()
            cases[k](x)
            cpu[k].append((time.process_time() - t) / BATCH * 1e3)
    rows = []
    for model in MODELS:
        for fmt in FORMATS:
            ref, sub = (float(np.median(cpu[model, f, fmt])) for f in FORMS)
            s_ref = np.asarray(cases[model, "reference", fmt](x)["score"], dtype=np.float64)
            s_sub = np.asarray(cases[model, "subpixel", fmt](x)["score"], dtype=np.float64)
            macs = info[model]["macs_per_patch"]
            rows.append({
                "model": model, "runtime": f"{fmt} int8", "reference_ms": round(ref, 4), "subpixel_ms": round(sub, 4),
                "speedup": round(ref / sub, 2), "subpixel_gop_s": round(2 * macs / (sub * 1e-3) / 1e9, 1),
                "score_rel_diff_max": float(np.max(np.abs(s_sub - s_ref) / np.abs(s_ref))),
                **{f"{f}_ms_range": _range(cpu[model, f, fmt]) for f in FORMS},
            })  # fmt: skip
    return {"rows": rows, "models": info, "rounds": rounds, "batch": BATCH, "threads": 1, "quiet_wait": quiet,
            "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2),
            "machine": machine_info(threads=1)}  # fmt: skip


def markdown(res: dict[str, Any]) -> str:
    lines = [
        f"VAE decoder as trained (nearest upsampling + 3×3 conv) vs its exact sub-pixel form; int8, 1 thread, "
        f"batches of {res['batch']} real orbital test patches, {res['rounds']} interleaved rounds (median CPU ms per "
        f"patch, range in brackets); load {res['load_before']} before, {res['load_after']} after.",
        "",
        "| model | runtime | as trained ms/patch | sub-pixel ms/patch | speed-up | sub-pixel GOP/s "
        "| score rel. diff (max) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        ref, sub = r["reference_ms_range"], r["subpixel_ms_range"]
        lines.append(
            f"| {r['model']} | {r['runtime']} | {r['reference_ms']} ({ref[0]}-{ref[1]}) "
            f"| {r['subpixel_ms']} ({sub[0]}-{sub[1]}) | {r['speedup']}× "
            f"| {r['subpixel_gop_s']} | {r['score_rel_diff_max']:.2e} |"
        )  # fmt: skip
    lines.append("")
    for model, i in res["models"].items():
        d = {f: i[f"{f} delegation"] for f in FORMS}
        lines.append(
            f"- {model}: {i['macs_per_patch'] / 1e6:.2f} M MACs per patch (both forms compute the same products); "
            f"TFLite XNNPACK partitions {d['reference']['delegate_partitions']} → "
            f"{d['subpixel']['delegate_partitions']}, "
            f"reference nearest resize {'present' if d['reference']['resize_nearest'] else 'absent'} → "
            f"{'present' if d['subpixel']['resize_nearest'] else 'absent'}."
        )  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.vae_form", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    res = run(args.rounds)
    (args.out / "results.json").write_text(json.dumps(res, indent=1, default=str))
    md = markdown(res)
    (args.out / "results.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

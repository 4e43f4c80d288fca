"""``edgeae export``: a trained model to ONNX / ORT / TFLite artifacts (fp32, int8), with parity proofs."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from edgeae._optional import source_ref
from edgeae.cli import CLIError, check_writable, positive_int, seed_arg

log = logging.getLogger(__name__)

FORMATS = ("onnx", "ort", "tflite")
PRECISIONS = ("fp32", "int8")


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "export",
        help="export a model to ONNX/ORT/TFLite (fp32, int8) and prove parity with PyTorch",
        description="Export a CAE (full model, encoder and decoder) or VAE to flight artifacts with metadata "
        "inside, check each with its format's checker, compare it with PyTorch on held-out real patches "
        "(budgets: fp32 >= 100 dB, int8 >= 40 dB PSNR, VAE score Spearman >= 0.99) and write parity.json "
        "and parity.md with sizes and latencies. Fails (exit 1) when any check fails: a failed file is kept as "
        "NAME.PRECISION.FAILED.EXT, so nothing loads it by name. Files are built in a temporary folder; an earlier "
        "export of the same model in --out is kept (its parity records that still hold are carried into the new "
        "report; a file of an earlier checkpoint this run does not replace is renamed NAME.PRECISION.STALE.EXT); a "
        "folder holding another model's export is refused.",
    )
    p.add_argument("model", metavar="MODEL", help="zoo name or .pt checkpoint")
    p.add_argument("--format", default="all", choices=[*FORMATS, "all"], help="artifact format (default all)")
    p.add_argument("--precision", default="all", choices=[*PRECISIONS, "all"], help="precision (default all)")
    p.add_argument(
        "--calib",
        default=None,
        metavar="DIR",
        help="calibration images (folder or file); default: the model's own val images (its dataset's val split, "
        "or the val files its checkpoint records of the folder it was trained on)",
    )
    p.add_argument(
        "--test",
        default=None,
        metavar="DIR",
        help="parity test images (folder or file), ideally never seen in training or calibration; default: its "
        "dataset's test split, or the images of its training folder that are neither train nor val files (none: "
        "its val files, with a warning that they are not unseen)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument(
        "--name",
        default=None,
        help="the artifacts' file-name stem (default: the zoo name, else the checkpoint's: 'best' for a run's best.pt)",
    )
    p.add_argument("--kinds", default=None, help="comma list of cae,cae-encoder,cae-decoder (default: all)")
    p.add_argument("--n-calib", type=int, default=128, help="calibration patches (default 128)")
    p.add_argument("--n-test", type=int, default=64, help="held-out parity patches (default 64)")
    p.add_argument(
        "--seed",
        type=seed_arg(2**32 - 2),  # its parity patches take seed + 1
        default=0,
        help="patch selection seed: calibration patches, parity patches seed + 1 (default 0)",
    )
    p.add_argument("--no-latency", action="store_true", help="skip the latency measurements")
    p.add_argument(
        "--repeats",
        type=positive_int,
        default=10,
        help="timed runs per latency figure, their median reported (default 10)",
    )
    p.add_argument(
        "--data", "--data-root", dest="data", default=None, help="data root (default: $EDGEAE_DATA or ../shared/data)"
    )
    rng = p.add_mutually_exclusive_group()
    rng.add_argument(
        "--reduce-range", dest="reduce_range", action="store_true", default=True,
        help="int8 ONNX weights in 7 bits (the default): the same parity on every x86 CPU; without VNNI "
        "onnxruntime's int8 kernels saturate on 8-bit weights "
        f"({source_ref('docs/export.md', 'int8 on different CPUs')})",
    )  # fmt: skip
    rng.add_argument(
        "--full-range", dest="reduce_range", action="store_false",
        help="int8 ONNX weights in 8 bits: 0.8-4.8 dB closer to PyTorch on a VNNI host, wrong on x86 "
        "without VNNI (check it there with python -m edgeae.export.board)",
    )  # fmt: skip
    return p


def needs(args: argparse.Namespace) -> dict[str, str]:
    """Optional packages this command imports (checked before the calibration starts)."""
    out = {"torch": "export", "cv2": "export", "tifffile": "export"}
    formats = FORMATS if args.format == "all" else (args.format,)
    if {"onnx", "ort"} & set(formats):
        out.update(onnx="export", onnxscript="export", onnxruntime="export")
    if "tflite" in formats:
        out.update(litert_torch="export", ai_edge_litert="export")
    return out


def run(args: argparse.Namespace) -> int:
    from edgeae.export.api import ExportConfig, ExportFailed, export_model
    from edgeae.train.run_record import command_line

    for flag, value in (("--calib", args.calib), ("--test", args.test)):
        if value is not None and not Path(value).exists():
            raise CLIError(f"{flag} {value} does not exist")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise CLIError(f"--out {args.out} is a file: name a folder for the artifacts and the parity report")
    check_writable(Path(args.out) / "parity.json", "--out")  # before the minutes of calibration and conversion
    if args.calib is None:
        log.info("no --calib given: calibrating on the model's own val images")
    try:
        config = ExportConfig(
            formats=FORMATS if args.format == "all" else (args.format,),
            precisions=PRECISIONS if args.precision == "all" else (args.precision,),
            calib=Path(args.calib) if args.calib else None,
            test=Path(args.test) if args.test else None,
            n_calib=args.n_calib,
            n_test=args.n_test,
            seed=args.seed,
            kinds=tuple(k.strip() for k in args.kinds.split(",")) if args.kinds else None,
            latency=not args.no_latency,
            latency_repeats=args.repeats,
            data_root=Path(args.data) if args.data else None,
            reduce_range=args.reduce_range,
            command=command_line(args._argv) if isinstance(getattr(args, "_argv", None), list) else None,
        )
    except ValueError as exc:
        raise CLIError(str(exc)) from exc
    failed: ExportFailed | None = None
    try:
        if args.name is not None and (not args.name.strip() or "/" in args.name or "\\" in args.name):
            raise CLIError(f"--name {args.name!r}: a file-name stem, without a folder")
        named = {"name": args.name} if args.name else {}
        report = export_model(args.model, args.out, config, **named)
    except ExportFailed as exc:
        failed, report = exc, exc.report
    if report.calibration.get("source") or report.calibration.get("n_patches"):
        print(f"calibration: {report.calibration['source']} ({report.calibration['n_patches']} patches)")
    else:
        print("calibration: none (no int8 artifact asked for)")
    print(f"parity test set: {report.test['source']} ({report.test['n_patches']} patches)")
    for a in report.artifacts:
        if "outputs" not in a.parity:
            print(f"{a.path or a.name + ' (not written)'}  FAILED: {'; '.join(a.failures)}")
            continue
        main = a.parity["outputs"][a.parity["main_output"]]
        rho = f", Spearman {a.parity['spearman']:.4f}" if a.parity.get("spearman") is not None else ""
        verdict = ("ok" if a.passed else "FAILED") + (" (earlier run)" if a.earlier_run else "")
        print(f"{a.path}  {a.size_bytes / 1024:.0f} KB  PSNR vs torch {main['psnr_db']:.1f} dB{rho}  {verdict}")
    print(f"report: {Path(args.out) / 'parity.md'} and parity.json")
    if failed is not None:
        print(f"edgeae export: FAILED: {failed}", file=sys.stderr)
        return 1
    return 0

"""``edgeae demo``: rebuild a real planetary frame from 10% of its pixels and write an HTML report."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from edgeae.cli import positive_int


def register(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "demo",
        help="rebuild a real frame from 10%% of its pixels (zoo CAE vs classical inpainting), HTML report",
        description=(
            "Sample a real frame (the Mastcam-Z demo frame from the shared data when present, else "
            "skimage's moon), rebuild it with the zoo CAE (alone, and cross-checked with linear) and "
            "seven classical fills (telea, ns, linear, nearest, normconv, normconv-wide, blend), compare with "
            "JPEG 2000 given the same bytes, send it over every simulated link preset, "
            "score its patches for anomalies, and write an HTML report (OUT/index.html) that ends with a "
            "conclusion computed from the numbers."
        ),
    )
    p.add_argument("--image", type=Path, help="use this image instead of the demo frame")
    p.add_argument(
        "--source", choices=("auto", "rover", "moon"),
        help="demo frame (not with --image): auto, the default, is rover if the data is present, else moon",
    )  # fmt: skip
    p.add_argument("--out", type=Path, default=Path("edgeae-demo"), help="report folder (default ./edgeae-demo)")
    p.add_argument("--keep", type=float, default=0.1, help="fraction of pixels kept (default 0.1)")
    p.add_argument("--seed", type=int, default=0, help="mask seed (default 0)")
    p.add_argument("--pattern", default="uniform", help="mask pattern: uniform or jittered")
    p.add_argument("--model", help="CAE to use (zoo name or path); default: the zoo model for the frame")
    p.add_argument(
        "--methods",
        default="cae,telea,ns,linear,nearest,normconv,normconv-wide,blend",
        help="comma-separated methods to compare, some of cae, telea, ns, linear, nearest, normconv, normconv-wide and "
        "blend (default: all of them)",
    )
    p.add_argument("--threads", type=positive_int, help="inference threads")
    p.add_argument(
        "--data",
        "--data-root",
        dest="data",
        type=Path,
        help="shared data folder (default $EDGEAE_DATA or ../shared/data)",
    )
    p.add_argument(
        "--links", default=None,
        help="comma-separated link presets for the downlink section (default: every preset; see edgeae links)",
    )  # fmt: skip
    p.add_argument("--no-anomaly", action="store_true", help="skip the anomaly-score section")
    p.add_argument(
        "--adapt", nargs="?", type=int, const=100, default=0, metavar="STEPS",
        help="also show the CAE adapted to the frame's own samples (edgeae.adapt; default 100 steps when given "
        "without a number, ~75 s on 2 cores; 0 = off, the default)",
    )  # fmt: skip
    p.add_argument(
        "--no-cross-check", action="store_true",
        help="leave out the CAE mixed with linear interpolation by the held-out cross-check (edgeae.crosscheck; "
        "shown by default: 4 CAE passes)",
    )  # fmt: skip
    return p


def needs(args: argparse.Namespace) -> dict[str, str]:
    """Optional packages the demo imports (checked before it starts)."""
    return {
        "cv2": "ground", "scipy": "ground", "skimage": "ground", "imagecodecs": "ground", "tqdm": "ground",
        "onnxruntime": "ground",
    }  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from edgeae.cli import CLIError, DataError, check_writable
    from edgeae.demo import DemoConfig, run_demo
    from edgeae.received import NoData
    from edgeae.zoo import UnknownModelError

    if args.image is not None:  # the frame is the image: a source or data folder would be ignored
        given = [f for f, v in (("--source", args.source), ("--data", args.data)) if v not in (None, "auto")]
        if given:
            drop = "them" if len(given) > 1 else "it"
            raise CLIError(f"--image {args.image} is the frame; {' and '.join(given)} would be ignored: drop {drop}")
    if args.source == "moon" and args.data is not None:  # the moon frame comes with scikit-image, not the data
        raise CLIError(f"--source moon is scikit-image's bundled frame; --data {args.data} would be ignored: drop it")
    if args.out.exists() and not args.out.is_dir():
        raise CLIError(f"--out {args.out}: is a file; the demo writes a report folder (index.html, img/, metrics.json)")
    if args.image is not None and not args.image.is_file():
        raise CLIError(f"--image {args.image}: no such file")
    config = DemoConfig(
        out=args.out,
        image=args.image,
        source=args.source or "auto",
        keep=args.keep,
        seed=args.seed,
        pattern=args.pattern,
        model=args.model,
        methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()),
        threads=args.threads,
        data_root=args.data,
        links=tuple(x.strip() for x in args.links.split(",") if x.strip()) if args.links else None,
        anomaly=not args.no_anomaly,
        adapt=args.adapt,
        cross_check=None if args.no_cross_check else "linear",
    )
    if config.links:
        from edgeae.resolve import link_path

        for name in config.links:
            link_path(name)  # an unknown preset fails now, not after the reconstructions
    check_writable(args.out / "index.html", "--out")  # after the plain mistakes (it makes the folder), before the work
    try:
        result = run_demo(config, say=lambda line: print(line, flush=True), progress=True)
    except UnknownModelError as exc:
        raise CLIError(f"{exc} (train it, or pass --model PATH)") from None
    except NoData as exc:  # no pixel of the frame holds data: a data error, status 1, as edgeae reconstruct
        raise DataError(str(exc)) from None
    from edgeae.report import printable

    print(f"demo finished in {result.seconds:.0f} s; report: {printable(str(result.html.resolve()))}")
    return 0

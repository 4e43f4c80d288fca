"""Science per byte: JPEG 2000 vs sparse + CAE vs the prioritised downlink at equal wire bytes per frame.

For per-frame budgets of 2%, 5% and 10% of the raw frame (``--budgets``; packet headers and CRCs count), on
frames with rare labelled features (``edgeae.ground.feature_sets``: an LROC NAC strip with craters ≥ 64 px,
rover frames with planted Curiosity hardware — validation figures: the hardware comes from the MSL set's
validation sols — and strips of HiRISE landmark crops), compare on a perfect link, at 20% independent packet
loss and under Gilbert-Elliott bursts (~9%):

- ``jpeg2000``: the whole frame as one JPEG 2000 file (one codestream: its first lost packet truncates it);
- ``j2k-tiled``: JPEG 2000 as a mission sends it over a lossy link: independent tiles, each its own codestream in
  its own packets, lost tiles concealed from the received ones (``edgeae.ground.tiled_j2k``; tile side
  ``--j2k-tile``, by default per frame and budget a tile per packet: ``tiled_j2k.packet_tile``);
- ``sparse``: sparse samples (payload layout 2, ccsds121) rebuilt with the CAE;
- ``prioritised``: the top-ranked anomaly patches at full resolution in up to ``--patch-share`` of the
  budget, sparse context in the rest (edgeae's flight runtime);
- ``prioritised-j2k``: the same patches with the context as a JPEG 2000 file.

Metrics: feature recall (fraction of labelled feature patches that arrive whole at full resolution),
PSNR over the feature patches' pixels and over the whole frame. Models by zoo name (the defaults follow
``edgeae.reconstruct.DEFAULT_MODELS`` and ``edgeae.ground.science.SCORERS``).

    python benchmarks/science_per_byte.py --out runs/science [--quick]

Writes ``results.json`` and ``results.md`` under ``--out`` (after every set, so a cut run leaves results).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from any folder
from benchmarks.machine import machine_info
from edgeae.ground import science
from edgeae.ground.feature_sets import SETS


def markdown(result: dict) -> str:
    cfg = result["config"]
    rows = result["rows"]
    lines = [
        f"Per-frame budgets {', '.join(f'{b:.0%}' for b in cfg['budgets'])} of the raw frame, in wire bytes "
        f"({cfg['max_packet']}-byte packets, headers and CRCs counted); sample codec {cfg['codec']}; the "
        f"prioritised downlink spends up to {cfg['patch_share']:.0%} of a budget on full-resolution patches "
        f"(each sent {cfg['patch_copies']}×); a codec file's first packet (its header) is sent "
        f"{1 + cfg.get('codec_head_copies', 0)}× (out of the same bytes; j2k-tiled sends each tile once). Feature "
        "recall: labelled feature patches that arrive whole at full resolution; 'exact' = lossless. Models: "
        + "; ".join(f"{s}: rebuild {m}, scorer {sc}" for s, (m, sc) in result["models"].items())
        + f". Size: {result['size']}, {result['seeds']} link seed(s) per lossy condition.",
        "",
        science.markdown(rows),
        *_tiles(rows),
        "Prioritised downlink vs JPEG 2000 on the feature patches' PSNR (dB) at equal bytes, JPEG 2000 as one "
        "codestream and in independent tiles (j2k-tiled; '-': not run):",
        "",
        "| set | budget | link | method | feature PSNR | JPEG 2000 | beats JPEG 2000 | j2k-tiled | beats j2k-tiled |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for v in science.verdicts(rows):
        tiled = "- | -" if v["j2k_tiled"] is None else f"{v['j2k_tiled']:.1f} | {'yes' if v['wins_tiled'] else 'no'}"
        lines.append(
            f"| {v['set']} | {v['budget']:.0%} | {v['link']} | {v['method']} | {v['feature_psnr']:.1f} | "
            f"{v['jpeg2000']:.1f} | {'yes' if v['wins'] else 'no'} | {tiled} |"
        )
    lines += ["", f"{result['seconds']} s; `{result['command']}`"]
    return "\n".join(lines) + "\n"


def _tiles(rows: list[dict]) -> list[str]:
    """The line that says which tile side each set's j2k-tiled rows were sent in, per budget (none without them)."""
    sides: dict[str, dict[str, set[int]]] = {}
    for r in rows:
        if r["method"] == "j2k-tiled":
            sides.setdefault(r["set"], {}).setdefault(science.budget_label(r["budget"]), set()).add(r["tile"])
    if not sides:
        return []
    per = "; ".join(f"{st} " + ", ".join(f"{b} {'/'.join(map(str, sorted(t)))}" for b, t in bud.items())
                    for st, bud in sides.items())  # fmt: skip
    return [f"j2k-tiled tile sides (px) by budget: {per}.", ""]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.science_per_byte", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/science"))
    ap.add_argument("--quick", action="store_true", help="one small frame per set, one link seed")
    ap.add_argument("--sets", default=",".join(SETS), help=f"comma-separated, from {', '.join(SETS)}")
    ap.add_argument("--budgets", default="0.02,0.05,0.1", help="per-frame budgets as fractions of the raw frame")
    ap.add_argument("--seeds", type=int, default=0, help="link seeds per lossy condition (default: 1 quick, 2 full)")
    ap.add_argument("--patch-share", type=float, default=0.5)
    ap.add_argument("--copies", type=int, default=1, help="send each full-resolution patch this many times")
    ap.add_argument("--head-copies", type=int, default=0, help="extra copies of a codec file's first packet")
    ap.add_argument("--max-packet", type=int, default=1024)
    ap.add_argument(
        "--j2k-tile", type=int, default=0,
        help="tile side (px) of j2k-tiled (default 0: per frame and budget, a tile per packet)",
    )  # fmt: skip
    ap.add_argument("--grey-model", help="rebuild model for grey frames (default: the reconstruct default)")
    ap.add_argument("--rgb-model", help="rebuild model for colour frames")
    ap.add_argument("--grey-scorer", help="anomaly scorer for grey frames (default orbital-gray-vae)")
    ap.add_argument("--rgb-scorer", help="anomaly scorer for colour frames (default rover-rgb-vae)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--oracle", action="store_true", help="rank patches by the labels: the bound for any scorer")
    ap.add_argument(
        "--score",
        default=None,
        choices=["a", "terms-max"],
        help="how a VAE scorer ranks patches (default: terms-max for grey frames, the orbital mission's flight "
        "score; a(x) for colour)",
    )
    ap.add_argument("--methods", default=",".join(science.METHODS), help="comma-separated methods to run")
    ap.add_argument("--render", action="store_true", help="only rewrite results.md from results.json")
    args = ap.parse_args(argv)
    if args.render:
        (args.out / "results.md").write_text(markdown(json.loads((args.out / "results.json").read_text())))
        return 0
    cfg = science.PlanConfig(
        budgets=tuple(float(b) for b in args.budgets.split(",")),
        max_packet=args.max_packet,
        patch_share=args.patch_share,
        patch_copies=args.copies,
        codec_head_copies=args.head_copies,
        j2k_tile=args.j2k_tile,
    )
    seeds = args.seeds or (1 if args.quick else 2)
    models = {k: v for k, v in ((1, args.grey_model), (3, args.rgb_model)) if v}
    scorers = {k: v for k, v in ((1, args.grey_scorer), (3, args.rgb_scorer)) if v}
    t0 = time.time()
    result: dict = {
        "benchmark": "science_per_byte",
        "command": " ".join(["science_per_byte.py", *(sys.argv[1:] if argv is None else argv)]),
        "machine": machine_info(),
        "size": "quick" if args.quick else "full",
        "seeds": seeds,
        "config": {**cfg.__dict__, "budgets": list(cfg.budgets)},
        "links": {k: v.to_dict() for k, v in science.LINKS.items()},
        "models": {},
        "rows": [],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.sets.split(","):
        rows = science.run_sets(
            [name], quick=args.quick, cfg=cfg, seeds=seeds, models=models, scorers=scorers, threads=args.threads,
            log=lambda m: print(f"[{time.time() - t0:7.1f} s] {m}", flush=True), oracle=args.oracle,
            methods=tuple(args.methods.split(",")), score=args.score,
        )  # fmt: skip
        result["rows"] += rows
        result["models"][name] = [rows[0]["model"], rows[0]["scorer"]]
        result["seconds"] = round(time.time() - t0, 1)
        (args.out / "results.json").write_text(json.dumps(result, indent=2))
        (args.out / "results.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Parity on the target CPU without PyTorch or the data: a bundle made where the checkpoint is, checked on the board.

onnxruntime picks its int8 kernels by instruction set, so an int8 artifact's outputs, and the ranking of its
anomaly scores, can differ between the machine that exported it and the flight board (docs/export.md). This
module carries the export's parity and tail checks to the board::

    # where the checkpoint and the data are (PyTorch):
    python -m edgeae.export.board bundle orbital-gray-vae --out vae.bundle.npz
    # on the board (numpy + onnxruntime or ai-edge-litert; no PyTorch, no image files):
    python -m edgeae.export.board check vae.bundle.npz orbital-gray-vae.int8.onnx [...] --json board.json
    # ... and which of them is fastest on this board, with how much memory each interpreter takes:
    python -m edgeae.export.board check vae.bundle.npz *.int8.onnx *.int8.tflite --time

The bundle (``.npz``, no pickled objects) holds the same inputs ``edgeae export`` checks parity on (held-out
test-split patches; a decoder's latents), PyTorch's outputs on them, and for a scoring model (VAE, CAE) the
patches of the tail frames, the synthetic extremes and PyTorch's scores of both. ``check`` runs each artifact
over them and applies the export's budgets (:data:`edgeae.export.parity.BUDGETS`, ``TAIL_BUDGETS``), plus one
number the export does not report: ``extreme_rank_shift``, the most frame patches by which an extreme patch
(all-white, checkerboard, noise, ...) moves in its frame's ranking against PyTorch, the planted-block test in
miniature. ``--time`` also times each artifact in fresh processes on this CPU, in windows interleaved with the other
files' (items per second, CPU time, RSS growth, the load), and names the fastest one that passed (and that the
flight guard does not refuse) per model kind, or a tie when the gap is within the windows' spread: which runtime is
faster depends on the CPU (docs/export.md), and a faster interpreter may not fit the mission's memory budget. Each
file gets its own line (a file that cannot be checked an ``error`` line; the others are checked all the same). Exit
status 0 when every artifact passed, 1 when any failed a budget, could not be checked or timed, 2 for a usage error
or an unreadable bundle (nothing checked).
The bundle file itself (writing, reading, its limits) is :mod:`edgeae.export.board_bundle`; the timing windows
and their verdict are :mod:`edgeae.export.board_timing`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .board_bundle import FORMAT_VERSION as FORMAT_VERSION
from .board_bundle import INV255 as INV255
from .board_bundle import MAX_BUNDLE_BYTES as MAX_BUNDLE_BYTES
from .board_bundle import MAX_UNPACKED_BYTES as MAX_UNPACKED_BYTES
from .board_bundle import BundleError as BundleError
from .board_bundle import _unpack_pixels
from .board_bundle import load_bundle as load_bundle
from .board_bundle import make_bundle as make_bundle
from .board_console import TIME_DEFAULTS as TIME_DEFAULTS
from .board_console import TIME_LIMITS as TIME_LIMITS
from .board_console import _check_usage, _check_writable, _result_line, _time_warning
from .board_timing import TIME_ROUNDS as TIME_ROUNDS
from .board_timing import _tie_text
from .board_timing import _time_in_subprocess as _time_in_subprocess
from .board_timing import fastest_passing as fastest_passing
from .board_timing import merge_windows as merge_windows
from .board_timing import time_artifact as time_artifact
from .board_timing import time_interleaved as time_interleaved
from .board_timing import timing_verdict as timing_verdict


def _rank_shift(ref: np.ndarray, got: np.ndarray, ref_ext: np.ndarray, got_ext: np.ndarray) -> int:
    """Most frame patches by which one extreme patch moves in the frame's ranking (test vs reference)."""
    above_ref = (ref[None, :] > ref_ext[:, None]).sum(axis=1)
    above_got = (got[None, :] > got_ext[:, None]).sum(axis=1)
    return int(np.max(np.abs(above_ref - above_got)))


def check_recorded_hash(artifact: str | os.PathLike[str]) -> None:
    """Refuse (:class:`BundleError`) a file whose SHA-256 differs from the one its export recorded, with the
    flight's check (:func:`edgeae.firmware_sim.bench.check_recorded_hash`): a flipped bit can still pass parity
    on a bundle."""
    from edgeae.firmware_sim.bench import check_recorded_hash as flight_check

    flight_check(artifact, BundleError)


def check_artifact(
    summary: dict[str, Any], data: Any, artifact: str | os.PathLike[str], threads: int = 2
) -> dict[str, Any]:
    """Parity (and tail) of one artifact against the bundle's PyTorch outputs, with the export's budgets."""
    from edgeae.firmware_sim.bench import load_model
    from edgeae.firmware_sim.guard import parity_failure

    from edgeae.resolve import interpreter_missing

    from .filetype import check_artifact_file
    from .parity import TAIL_BUDGETS, check_parity, run_batched, tail_failures, tail_metrics
    from .tailgate import tail_scores, tail_terms_max

    check_artifact_file(artifact)  # "0-byte file", "a TFLite flatbuffer, not ONNX": before the runtime's parser
    check_recorded_hash(artifact)
    missing = interpreter_missing(Path(artifact))  # a shipped file: names the sibling this install runs
    if missing:
        raise BundleError(f"{artifact}: {missing}")
    pred = load_model(artifact, threads)  # a truncated or foreign file: "not a valid ONNX/TFLite model"
    kind, precision = pred.metadata.kind, pred.metadata.precision
    made_from = pred.metadata.source_checkpoint_hash
    if made_from and made_from != summary["checkpoint_sha256"]:
        bundled = str(summary["checkpoint_sha256"])
        raise BundleError(f"{artifact}: exported from checkpoint {made_from[:12]}…, the bundle from {bundled[:12]}…")
    if kind not in summary["kinds"]:
        raise BundleError(f"{artifact}: a {kind!r} artifact; the bundle holds {summary['kinds']} of {summary['model']}")
    budget_precision = precision if precision in ("fp32", "fp16", "int8") else "int8"
    x = _unpack_pixels(data, f"{kind}/input")
    ref = {k.rsplit("/", 1)[1]: np.asarray(data[k]) for k in data.files if k.startswith(f"{kind}/ref/")}
    result = check_parity(kind, budget_precision, ref, run_batched(pred, kind, x), source=str(artifact), strict=False)
    rec: dict[str, Any] = {
        "artifact": str(artifact),
        "kind": kind,
        "precision": precision,
        "int8_weights": pred.metadata.extra.get("int8_weights", "8-bit") if precision == "int8" else None,
        **result.to_dict(),
        "psnr_db": result.main_psnr,
    }
    tail = summary.get("tail")
    if tail is not None and tail["kind"] == kind:
        offsets = np.asarray(data["tail/offsets"])
        patches = _unpack_pixels(data, "tail/patches")
        frames = [patches[a:b] for a, b in itertools.pairwise(offsets)]
        ref_all, ref_ext = np.asarray(data["tail/ref"]), np.asarray(data["extremes/ref"])
        ref_frames = [ref_all[a:b] for a, b in itertools.pairwise(offsets)]
        ext = np.asarray(data["extremes.f32"], np.float32)
        got = [tail_scores(pred, kind, f) for f in frames]
        got_ext = tail_scores(pred, kind, ext)
        m = tail_metrics(ref_frames, got, (ref_ext, got_ext))
        shifts = [_rank_shift(r, g, ref_ext, got_ext) for r, g in zip(ref_frames, got, strict=True)]
        m["extreme_rank_shift"] = float(max(shifts))
        bad = tail_failures(m, budget_precision)
        rec["tail"] = {**m, "budget": TAIL_BUDGETS[budget_precision], "passed": not bad, "fails": bad}
        if "tail/ref_terms_max" in data.files and "lambda" in summary:
            tm_ref_all = np.asarray(data["tail/ref_terms_max"])
            tm_ref = [tm_ref_all[a:b] for a, b in itertools.pairwise(offsets)]
            tm = tail_metrics(tm_ref, tail_terms_max(pred, frames, float(summary["lambda"])))
            bad_tm = tail_failures(tm, budget_precision)
            rec["tail_terms_max"] = {**tm, "passed": not bad_tm, "fails": bad_tm}
            bad = bad + bad_tm  # a new list: rec["tail"]["fails"] keeps the tail's own failures only
        rec["passed"] = bool(rec["passed"] and not bad)
    refused = parity_failure(Path(artifact))  # FAILED / STALE / unrecorded: the flight runtime refuses it at boot
    if refused:
        rec["refused_by_flight_guard"] = refused
        rec["passed"] = False
    return rec


def _cpu() -> dict[str, Any]:
    from edgeae.firmware_sim.bench import cpu_record

    info = cpu_record()  # machine, model, SIMD flags, VNNI, int8 saturation: the same record as firmware-sim bench
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        info["onnxruntime"] = None
    return info


def cpu_line(cpu: dict[str, Any]) -> str:
    """The ``cpu`` record of a check, readable: machine, model, VNNI, whether 8-bit int8 ONNX weights saturate here,
    the onnxruntime version."""
    yes_no = {True: "yes", False: "no", None: "unknown"}
    parts = [str(cpu.get("machine") or "unknown machine"), str(cpu.get("cpu_model") or "model unknown")]
    parts.append(f"VNNI {yes_no.get(cpu.get('vnni'), cpu.get('vnni'))}")
    if cpu.get("simd"):
        parts.append(f"SIMD {' '.join(cpu['simd'])}")
    parts.append(f"full-range int8 ONNX saturates here: {yes_no.get(cpu.get('int8_saturates'), '?')}")
    parts.append(f"onnxruntime {cpu.get('onnxruntime') or 'not installed'}")
    return "; ".join(parts)


def resolve_artifact(spec: str) -> str:
    """An artifact argument: a file, or a zoo name as every MODEL argument takes (``orbital-gray-vae``: its shipped
    int8 file for the installed interpreter; ``zoo:NAME/FILE``: that shipped file). A path that does not exist
    is returned as given (its check says so)."""
    from edgeae.resolve import ZOO_PREFIX, model_path

    if Path(spec).exists() or (not spec.startswith(ZOO_PREFIX) and ("/" in spec or Path(spec).suffix)):
        return spec
    return str(model_path(spec, "artifact"))  # NameNotFound (an OSError) names the zoo models


def main(argv: Sequence[str] | None = None) -> int:
    from edgeae.firmware_sim.bench import busy_note, load_1min

    from edgeae.atomic import write_text

    ap = argparse.ArgumentParser(prog="python -m edgeae.export.board", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bundle", help="write a model's parity bundle (needs PyTorch and the data)")
    b.add_argument("model", help="zoo name or .pt checkpoint")
    b.add_argument("--out", required=True, help="bundle file (.npz)")
    b.add_argument(
        "--kinds", default=None,
        help="comma list of the model's graphs: vae for a VAE; cae, cae-encoder, cae-decoder for a CAE (default: all)",
    )  # fmt: skip
    b.add_argument(
        "--n-test", type=int, default=64,
        help="held-out parity patches (default 64, as edgeae export; at most what keeps the bundle under the "
        "size check accepts, from the model's input size)",
    )  # fmt: skip
    b.add_argument("--seed", type=int, default=0, help="the export's --seed (default 0)")
    b.add_argument(
        "--data", "--data-root", dest="data", default=None, help="data root (default: $EDGEAE_DATA or ../shared/data)"
    )
    b.add_argument("--no-tail", action="store_true", help="parity patches only, no tail frames (small bundle)")
    b.add_argument("--test", default=None, metavar="DIR", help="parity and tail images (default: the export's)")
    c = sub.add_parser("check", help="check artifacts against a bundle (needs onnxruntime or ai-edge-litert only)")
    c.add_argument("bundle")
    c.add_argument(
        "artifacts", nargs="+", metavar="ARTIFACT",
        help="an .onnx / .ort / .tflite file, or a zoo name (orbital-gray-vae: its shipped int8 file for the "
        "installed interpreter; zoo:orbital-gray-vae/orbital-gray-vae.int8.tflite: that file)",
    )  # fmt: skip
    c.add_argument("--threads", type=int, default=2)
    c.add_argument("--json", default=None, help="also write the results here")
    c.add_argument(
        "--time", action="store_true",
        help="also time each artifact on this machine (fresh processes, --rounds windows interleaved round-robin "
        "with the other files': items/s, CPU-ms per item, RSS growth, the load) and name the fastest that passed per "
        "model kind, or a tie within noise when the windows' ranges overlap",
    )  # fmt: skip
    c.add_argument("--batch", type=int, default=None, help="items per call when timing (1-4096, default 64)")
    c.add_argument(
        "--seconds", type=float, default=None, help="seconds of calls per artifact when timing (default 2, most 600)"
    )
    c.add_argument(
        "--workers", type=int, default=None,
        help="interpreters called at once when timing (1-64, default 1), each with --threads threads (the flight "
        "loop's scoring workers: the orbital mission runs 2 x 1 thread)",
    )  # fmt: skip
    c.add_argument(
        "--rounds", type=int, default=None,
        help="timing windows per artifact, each in a fresh process, sharing --seconds (1-20, default 3; 1: one "
        "window each, no spread to judge a tie by)",
    )  # fmt: skip
    t = sub.add_parser("time", help="time one artifact on the bundle's inputs; prints one JSON line")
    t.add_argument("bundle")
    t.add_argument("artifact")
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--batch", type=int, default=64)
    t.add_argument("--seconds", type=float, default=2.0)
    t.add_argument("--workers", type=int, default=1)
    args = ap.parse_args(argv)
    if args.cmd == "bundle":
        kinds = args.kinds.split(",") if args.kinds else None
        try:  # what can be checked before minutes of PyTorch work, then one line for whatever fails
            if args.n_test < 1:
                raise ValueError(f"--n-test must be at least 1, got {args.n_test}")
            if args.seed < 0:
                raise ValueError(f"--seed must be 0 or more, got {args.seed}")
            problem = _check_writable(args.out, "--out")  # a probe file: /proc/x.npz is refused now, not at the end
            if problem:
                raise ValueError(problem)
            existed = Path(args.out).exists()
            s = make_bundle(
                args.model, args.out, kinds, args.n_test, args.seed, args.data, not args.no_tail, args.test,
                progress=lambda m: print(f"bundle: {m}", file=sys.stderr, flush=True),
            )  # fmt: skip
        except (BundleError, OSError, ValueError, KeyError) as e:  # MetadataError, UnknownModelError: ValueErrors
            print(f"error: {e}", file=sys.stderr)
            return 2
        n_tail = s.get("tail", {}).get("patches", 0)
        replaced = " (overwrote the earlier file)" if existed else ""
        print(f"{args.out}: {s['bytes'] / 1e6:.1f} MB, kinds {s['kinds']}, tail {n_tail} patches{replaced}")
        return 0
    if args.cmd == "time":
        try:
            summary, data = load_bundle(args.bundle)
            artifact = resolve_artifact(args.artifact)
            rec = time_artifact(summary, data, artifact, args.threads, args.batch, args.seconds, args.workers)
            print(json.dumps(rec))
        except (BundleError, OSError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        return 0
    err = _check_usage(args)
    if err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        summary, data = load_bundle(args.bundle)
    except BundleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    warning = _time_warning(args)
    if warning:
        print(f"WARNING: {warning}", file=sys.stderr)
    cpu = _cpu()
    load_before = load_1min()
    recs: list[dict[str, Any]] = []
    for a in args.artifacts:
        try:
            recs.append(check_artifact(summary, data, resolve_artifact(a), args.threads))
        except Exception as e:  # one file's failure (any kind) goes on its own line; the others are still checked
            msg = str(e) if isinstance(e, ValueError | OSError) else f"{type(e).__name__}: {e}"
            recs.append({"artifact": str(a), "passed": False, "error": msg if str(a) in msg else f"{a}: {msg}"})
    if args.time:
        timed = [r for r in recs if "error" not in r and not r.get("refused_by_flight_guard")]  # never flown
        speeds = time_interleaved(
            args.bundle, [r["artifact"] for r in timed], args.threads, args.batch, args.seconds, args.workers,
            args.rounds,
        )  # fmt: skip
        for r, sp in zip(timed, speeds, strict=True):
            r["speed"] = sp
    cpus = os.cpu_count()
    load = {"before": load_before, "after": load_1min(), "cpus": cpus}
    busy = busy_note((load_before, load["after"]), cpus) if args.time else None
    for r in recs:
        print(_result_line(r))
    fastest, ties = timing_verdict(recs) if args.time else ({}, {})
    for kind, path in fastest.items():
        print(f"fastest passing {kind} artifact here: {path}")
    for kind, paths in ties.items():
        print(f"fastest passing {kind} artifact here: none, a tie within noise ({_tie_text(recs, paths)})")
    if busy:
        print(f"WARNING: {busy}")
    if args.json:
        existed = Path(args.json).exists()
        out = {"bundle": summary, "cpu": cpu, "load_1min": load, "warnings": [busy] if busy else [], "results": recs,
               "fastest_passing": fastest, "tie_within_noise": ties}  # fmt: skip
        write_text(args.json, json.dumps(out, indent=1))  # atomically: no half file on a full disk or a kill
        print(f"results: {args.json}" + (" (overwrote the earlier file)" if existed else ""))
    print(f"cpu: {cpu_line(cpu)}")
    timing_failed = any("error" in (r.get("speed") or {}) for r in recs)
    return 0 if all(r["passed"] for r in recs) and not timing_failed else 1


if __name__ == "__main__":
    raise SystemExit(main())
